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
from .tiling import TilePlan

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
    plan: TilePlan | None = None,
) -> torch.Tensor:
    """Run the loop on checked inputs (``settings.text_cfg`` filled in); returns scaled latents
    ``[B * variations, 4, h, w]``, grouped by source.

    With a tiled ``plan`` every step predicts each window (``settings.window_batch`` windows per
    forward pass), blends the predictions and steps the scheduler once on the whole latent.
    ``callback(done, total, latents)`` runs after each step, or after each batch of windows when
    tiled, counting windows (``total`` = steps x windows); an exception raised there (a cancel)
    stops the run and leaves the model untouched.
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
    step_kwargs = _step_kwargs(scheduler, generator)
    timesteps = scheduler.timesteps
    factor = model.vae_scale_factor

    def guided(noisy: torch.Tensor, image: torch.Tensor, t) -> torch.Tensor:
        """The dual-CFG prediction for a batch of (window) latents and their source latents."""
        embeds, mask = _branches(text, source, noisy.shape[0], active, device, dtype)
        condition = torch.cat([image, image, torch.zeros_like(image)][:branches])
        noise = backbone.predict(model, noisy.repeat(branches, 1, 1, 1), condition, t, embeds, mask)
        return dual_cfg(*noise.chunk(3), settings.text_cfg, settings.image_cfg) if active else noise

    tiled = plan is not None and plan.tiled
    batches = plan.batches(settings.window_batch) if tiled else [[0]]
    weights, inverse = plan.weights(device, torch.float32) if tiled else (None, None)  # blended in fp32
    windows_per_step = len(plan.windows) if tiled else 1
    total, done = len(timesteps) * windows_per_step, 0
    what = f"sampling {n} image(s) of {shape[-1] * factor}x{shape[-2] * factor}"
    if tiled:
        what += f" in {len(plan.windows)} windows of {plan.tile} px, {settings.window_batch} per pass"
    with out_of_memory_advice(what):
        for t in timesteps:
            scaled = scheduler.scale_model_input(latents, t)
            if not tiled:
                noise = guided(scaled, image_latents, t)
            else:
                noise = torch.zeros_like(latents, dtype=torch.float32)
                finished = done
                for number, batch in enumerate(batches, start=1):
                    windows = [plan.windows[i].slices for i in batch]
                    crops = guided(
                        torch.cat([scaled[w] for w in windows]), torch.cat([image_latents[w] for w in windows]), t
                    )
                    for crop, w, i in zip(crops.split(n), windows, batch, strict=True):
                        noise[w] += crop.float() * weights[i]
                    finished += len(batch)
                    if number < len(batches) and callback is not None:  # progress (and cancel) between windows
                        callback(finished, total, latents)
                noise = (noise * inverse).to(latents.dtype)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
            done += windows_per_step
            if callback is not None:
                callback(done, total, latents)
    return latents
