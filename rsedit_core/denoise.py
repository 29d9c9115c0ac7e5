"""The dual-CFG denoising loop, the same for every backbone.

The loop reproduces diffusers' ``StableDiffusionInstructPix2PixPipeline`` step for step (same
noise draw, scheduler calls and guidance), so results match it to float precision, while encoding
the conditioning once per run. Inputs arrive checked (:func:`rsedit_core.edit.run_edit`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

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


def _branches(texts: list[TextConditioning], n: int, active: bool, device, dtype):
    """Embeddings and text masks of the model batch in the branch order ``[instruction_1 + source,
    ..., instruction_R + source, empty + source, empty + zero source]`` (only the first branch when
    guidance is off). With one instruction this is the usual three-branch batch."""
    first = texts[0]
    if active:
        embeds = [t.embeds for t in texts] + [first.negative_embeds, first.negative_embeds]
        masks = [t.mask for t in texts] + [first.negative_mask, first.negative_mask]
    else:
        embeds, masks = [first.embeds], [first.mask]
    embeds = torch.cat([e.to(device, dtype).repeat(n, 1, 1) for e in embeds])
    mask = None if first.mask is None else torch.cat([m.to(device).repeat(n, 1) for m in masks])
    return embeds, mask


@dataclass
class Regions:
    """Where an edit may change the scene, at latent resolution (``[1, 1, h, w]`` in 0..1, 1 = edit).

    ``mask`` is the union; with several instructions, ``weights[r]`` is where instruction ``r``
    guides (disjoint, summing to ``mask``). Outside ``mask`` the latent is held to the source,
    noised to each step's level (blended latent diffusion), so the edit inside sees its context.
    """

    mask: torch.Tensor
    texts: list[TextConditioning] = field(default_factory=list)
    weights: list[torch.Tensor] = field(default_factory=list)


@torch.no_grad()
def denoise(
    model: EditorModel,
    text: TextConditioning,
    source: SourceLatents,
    settings: EditSettings,
    callback: StepCallback | None = None,
    plan: TilePlan | None = None,
    regions: Regions | None = None,
) -> torch.Tensor:
    """Run the loop on checked inputs (``settings.text_cfg`` filled in); returns scaled latents
    ``[B * variations, 4, h, w]``, grouped by source.

    With a tiled ``plan`` every step predicts each window (``settings.window_batch`` windows per
    forward pass), blends the predictions and steps the scheduler once on the whole latent.
    With ``regions`` the latent outside ``regions.mask`` follows the noised source at every step;
    several instructions (``regions.texts``) each guide their own region, sharing the two branches
    without an instruction, so R regions cost R + 2 predictions a step instead of 3 R.
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
    noise_draw = torch.randn(shape, generator=generator, dtype=dtype).to(device)
    latents = noise_draw * scheduler.init_noise_sigma

    texts = regions.texts if regions is not None and regions.texts else [text]
    weights = [w.to(device, torch.float32) for w in regions.weights] if regions is not None else []
    active = guidance_active(settings.text_cfg, settings.image_cfg)
    step_kwargs = _step_kwargs(scheduler, generator)
    timesteps = scheduler.timesteps
    factor = model.vae_scale_factor
    keep = _Keep(model, scheduler, image_latents, noise_draw, regions, device) if regions is not None else None
    if keep is not None:
        latents = keep(latents, 0)

    branch_inputs: dict[int, tuple] = {}

    def guided(noisy: torch.Tensor, image: torch.Tensor, t, windows=None) -> torch.Tensor:
        """The guided prediction for a batch of (window) latents and their source latents."""
        count = len(texts) + 2 if active else 1
        if noisy.shape[0] not in branch_inputs:  # built once per batch size, not at every step
            branch_inputs[noisy.shape[0]] = _branches(texts, noisy.shape[0], active, device, dtype)
        embeds, mask = branch_inputs[noisy.shape[0]]
        condition = torch.cat([image] * (count - 1) + [torch.zeros_like(image) if active else image])
        noise = backbone.predict(model, noisy.repeat(count, 1, 1, 1), condition, t, embeds, mask)
        if not active:
            return noise
        *with_text, with_image, unconditional = noise.chunk(count)
        if len(with_text) == 1:
            return dual_cfg(with_text[0], with_image, unconditional, settings.text_cfg, settings.image_cfg)
        guided_noise = unconditional + settings.image_cfg * (with_image - unconditional)
        for prediction, weight in zip(with_text, weights, strict=True):
            region = weight if windows is None else torch.cat([weight[w].expand(n, -1, -1, -1) for w in windows])
            guided_noise = guided_noise + region.to(dtype) * settings.text_cfg * (prediction - with_image)
        return guided_noise

    tiled = plan is not None and plan.tiled
    batches = plan.batches(settings.window_batch) if tiled else [[0]]
    tile_weights, inverse = plan.weights(device, torch.float32) if tiled else (None, None)
    windows_per_step = len(plan.windows) if tiled else 1
    total, done = len(timesteps) * windows_per_step, 0
    what = f"sampling {n} image(s) of {shape[-1] * factor}x{shape[-2] * factor}"
    if tiled:
        what += f" in {len(plan.windows)} windows of {plan.tile} px, {settings.window_batch} per pass"
    with out_of_memory_advice(what):
        for index, t in enumerate(timesteps):
            scaled = scheduler.scale_model_input(latents, t)
            if not tiled:
                noise = guided(scaled, image_latents, t)
            else:
                noise = torch.zeros_like(latents, dtype=torch.float32)
                finished = done
                for number, batch in enumerate(batches, start=1):
                    windows = [plan.windows[i].slices for i in batch]
                    crops = guided(
                        torch.cat([scaled[w] for w in windows]),
                        torch.cat([image_latents[w] for w in windows]),
                        t,
                        windows if len(texts) > 1 else None,
                    )
                    for crop, w, i in zip(crops.split(n), windows, batch, strict=True):
                        noise[w] += crop.float() * tile_weights[i]
                    finished += len(batch)
                    if number < len(batches) and callback is not None:  # progress (and cancel) between windows
                        callback(finished, total, latents)
                noise = (noise * inverse).to(latents.dtype)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
            if keep is not None:
                latents = keep(latents, index + 1)
            done += windows_per_step
            if callback is not None:
                callback(done, total, latents)
    return latents


class _Keep:
    """Holds the latent outside the edit mask to the source, noised to the level the sampler is at:
    after step ``i`` (``i`` of ``steps`` done) the source gets the noise of timestep ``i``, and the
    clean source after the last step."""

    def __init__(self, model, scheduler, image_latents, noise, regions, device):
        self.scheduler = scheduler
        self.clean = model.backbone.target_latents(model, image_latents)
        self.noise = noise
        self.mask = regions.mask.to(device, torch.float32)
        self.timesteps = scheduler.timesteps

    def __call__(self, latents: torch.Tensor, done: int) -> torch.Tensor:
        if done >= len(self.timesteps):
            held = self.clean
        else:
            t = self.timesteps[done : done + 1].repeat(self.clean.shape[0])
            held = self.scheduler.add_noise(self.clean, self.noise, t)
        mixed = self.mask * latents.float() + (1 - self.mask) * held.float()
        return mixed.to(latents.dtype)
