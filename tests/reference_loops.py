"""The DiT reference loop the parity test and bench/dit_sampler.py compare against.

Written straight from the method's description, independently of ``rsedit_core``: diffusers'
``PixArtAlphaPipeline.encode_prompt`` (mask on, no caption cleaning, 120 tokens), noise from a CPU
generator, the source resized with LANCZOS to the target size and encoded as posterior mode x
scaling factor, source left of the noisy latent on the width, the right half's first 4 output
channels, dual CFG, ``scheduler.step`` (with the generator, for stochastic schedulers).
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from PIL import Image


def load_reference_pipeline(folder, dtype: torch.dtype = torch.float32):
    """A stock ``PixArtAlphaPipeline`` assembled from the folder's components (the folder's own
    model_index may name a custom pipeline class, which is not run)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5EncoderModel, T5Tokenizer

    pipe = PixArtAlphaPipeline(
        tokenizer=T5Tokenizer.from_pretrained(folder / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype),
        vae=AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype),
        transformer=PixArtTransformer2DModel.from_pretrained(folder / "transformer", torch_dtype=dtype),
        scheduler=DPMSolverMultistepScheduler.from_pretrained(folder / "scheduler"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.inference_mode()
def reference_dit_edit(
    pipe,
    image: Image.Image,
    prompt: str,
    *,
    steps: int,
    text_cfg: float,
    image_cfg: float,
    seed: int,
    size: tuple[int, int] | None = None,
    scheduler=None,
    step_callback=None,
) -> torch.Tensor:
    """Edit one PIL image; returns ``[1, 3, H, W]`` in 0..1. ``size`` is the target ``(h, w)``."""
    vae, transformer = pipe.vae, pipe.transformer
    height, width = size or (image.height, image.width)
    if image.size != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    pixels = pixels.permute(2, 0, 1)[None] * 2 - 1
    source = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor

    embeds, mask, negative, negative_mask = pipe.encode_prompt(
        prompt,
        do_classifier_free_guidance=True,
        negative_prompt="",
        device="cpu",
        clean_caption=False,
        max_sequence_length=120,
    )
    scheduler = scheduler or type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator("cpu").manual_seed(seed)
    latent_w = width // 8
    latents = torch.randn((1, 4, height // 8, latent_w), generator=generator) * scheduler.init_noise_sigma
    guided = text_cfg > 1 and image_cfg >= 1
    # As diffusers pipelines do: stochastic schedulers draw their noise from the same generator.
    accepts_generator = "generator" in inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": generator} if accepts_generator else {}
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(latents, t)
        if guided:
            x = torch.cat([x, x, x])
            src = torch.cat([source, source, torch.zeros_like(source)])
            text, text_mask = torch.cat([embeds, negative, negative]), torch.cat([mask, negative_mask, negative_mask])
        else:
            src, text, text_mask = source, embeds, mask
        canvas = torch.cat([src, x], dim=-1)
        out = transformer(
            canvas,
            encoder_hidden_states=text,
            encoder_attention_mask=text_mask,
            timestep=t.reshape(1).expand(canvas.shape[0]),
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
        eps = out[..., latent_w:][:, :4]
        if guided:
            eps_text, eps_image, eps_uncond = eps.chunk(3)
            eps = eps_uncond + text_cfg * (eps_text - eps_image) + image_cfg * (eps_image - eps_uncond)
        latents = scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        if step_callback is not None:
            step_callback()
    decoded = vae.decode(latents / vae.config.scaling_factor).sample
    return (decoded / 2 + 0.5).clamp(0, 1)
