"""The dual-CFG denoising loop, the same for every backbone.

The loop reproduces diffusers' ``StableDiffusionInstructPix2PixPipeline`` step for step (same
noise draw, scheduler calls and guidance), so results match it to float precision, while encoding
the conditioning once per run. Inputs arrive checked (:func:`rsedit_core.edit.run_edit`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from .conditioning import SourceLatents
from .editor import EditorModel
from .errors import out_of_memory_advice
from .guidance import dual_cfg, guidance_active
from .schedulers import make_scheduler
from .settings import EditSettings
from .text import TextConditioning

StepCallback = Callable[[int, int, torch.Tensor], None]


def _step_kwargs(scheduler, generator: torch.Generator) -> dict:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict = {}
    if "eta" in params:
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def _branches(text: TextConditioning, source: SourceLatents, n: int, active: bool, device, dtype):
    """Embeddings, masks and source latents of the model batch, in the branch order
    ``[instruction + source, empty + source, empty + zero source]`` (one branch when guidance is off)."""
    branches = 3 if active else 1
    embeds = [text.embeds, text.negative_embeds, text.negative_embeds][:branches]
    embeds = torch.cat([e.to(device, dtype).repeat(n, 1, 1) for e in embeds])
    mask = None
    if text.mask is not None:
        masks = [text.mask, text.negative_mask, text.negative_mask][:branches]
        mask = torch.cat([m.to(device).repeat(n, 1) for m in masks])
    return embeds, mask


@torch.no_grad()
def denoise(
    model: EditorModel,
    text: TextConditioning,
    source: SourceLatents,
    settings: EditSettings,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run the loop on checked inputs (``settings.text_cfg`` filled in); returns scaled latents
    ``[B * variations, 4, h, w]``, grouped by source.

    ``callback(step, total, latents)`` runs after each step; an exception raised there (a
    cancel) stops the run and leaves the model untouched.
    """
    backbone = model.backbone
    scheduler = make_scheduler(settings.scheduler, model.scheduler_config)
    device, dtype = model.device, model.denoiser.dtype
    scheduler.set_timesteps(settings.steps, device=device)
    image_latents = source.latents.to(device, dtype).repeat_interleave(settings.num_variations, dim=0)
    n = image_latents.shape[0]
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    shape = (n, model.vae.config.latent_channels, *image_latents.shape[-2:])
    latents = torch.randn(shape, generator=generator, dtype=dtype).to(device) * scheduler.init_noise_sigma

    active = guidance_active(settings.text_cfg, settings.image_cfg)
    branches = 3 if active else 1
    embeds, mask = _branches(text, source, n, active, device, dtype)
    condition = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)][:branches])
    step_kwargs = _step_kwargs(scheduler, generator)
    timesteps = scheduler.timesteps
    factor = model.vae_scale_factor
    with out_of_memory_advice(f"sampling {n} image(s) of {shape[-1] * factor}x{shape[-2] * factor}"):
        for index, t in enumerate(timesteps):
            scaled = scheduler.scale_model_input(latents, t)
            noise = backbone.predict(model, scaled.repeat(branches, 1, 1, 1), condition, t, embeds, mask)
            if active:
                noise = dual_cfg(*noise.chunk(3), settings.text_cfg, settings.image_cfg)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
            if callback is not None:
                callback(index + 1, len(timesteps), latents)
    return latents
