"""The RSEdit U-Net editing loop: source conditioning, dual-CFG sampling and decoding.

The loop reproduces diffusers' ``StableDiffusionInstructPix2PixPipeline`` step for step (same
noise draw, scheduler calls and guidance), so results match it to float precision, while
encoding the conditioning once per run instead of once per step and decoding one image at a time.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from .backbones import backbone_for
from .errors import InputError, OutOfMemoryError
from .guidance import check_scales, dual_cfg, guidance_active
from .images import Geometry, fit_to_multiple, to_rgb
from .loading import EditorModel
from .schedulers import DEFAULT, make_scheduler
from .text import TextConditioning, encode_text

logger = logging.getLogger(__name__)

MAX_SEED = 2**64 - 1
StepCallback = Callable[[int, int, torch.Tensor], None]


DEFAULT_TEXT_CFG = {"unet": 7.5, "dit": 4.5}


@dataclass(frozen=True)
class EditSettings:
    """Sampling settings. Defaults follow the paper's quick start: 50 steps, image scale 1.5 and
    text scale 7.5 for the U-Net, 4.5 for the DiT (``text_cfg=None`` picks by backbone)."""

    steps: int = 50
    text_cfg: float | None = None
    image_cfg: float = 1.5
    seed: int = 42
    scheduler: str = DEFAULT
    num_variations: int = 1

    def for_model(self, model: EditorModel) -> EditSettings:
        """These settings with the backbone's default text scale filled in."""
        if self.text_cfg is not None:
            return self
        return replace(self, text_cfg=DEFAULT_TEXT_CFG[model.kind])

    def check(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"steps must be an integer >= 1; got {self.steps!r}. The paper uses 50-100.")
        check_scales(7.5 if self.text_cfg is None else self.text_cfg, self.image_cfg)
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be an integer from 0 to 2**64-1; got {self.seed!r}.")
        if not isinstance(self.num_variations, int) or self.num_variations < 1:
            raise InputError(f"num_variations must be >= 1; got {self.num_variations!r}.")


@dataclass
class SourceLatents:
    """Source latents ``(B, 4, H/8, W/8)`` as the backbone ``kind`` uses them: the VAE posterior
    mode, unscaled for the U-Net, scaled by the VAE factor for the DiT."""

    latents: torch.Tensor
    geometry: Geometry
    notes: list[str] = field(default_factory=list)
    kind: str = "unet"


@dataclass
class EditResult:
    """Edited images ``[N, 3, H, W]`` in ``0..1`` (N = sources x variations, grouped by source) and
    the final latents ``[N, 4, h, w]`` in the model's scaled latent space."""

    images: torch.Tensor
    latents: torch.Tensor
    notes: list[str]


def _out_of_memory(e: BaseException, what: str) -> OutOfMemoryError:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return OutOfMemoryError(
        f"Out of memory while {what}. Try a smaller image or fewer variations, load the model in "
        "fp16/bf16, or let ComfyUI offload other models (--lowvram)."
    )


@torch.no_grad()
def encode_source(model: EditorModel, images: torch.Tensor, size_policy: str = "pad") -> SourceLatents:
    """Encode source images ``[B, C, H, W]`` in ``0..1`` (C = 1, 3 or 4) to the source latent.

    Sides are brought to a multiple of 8 px (U-Net) or 16 px (DiT: VAE factor x patch size)."""
    backbone = backbone_for(model)
    rgb, notes = to_rgb(images)
    fitted, geometry = fit_to_multiple(rgb, size_policy, backbone.size_multiple(model))
    if geometry.original != geometry.processed:
        notes.append(geometry.describe())
    pixels = (fitted * 2 - 1).to(next(model.vae.parameters()).device, model.vae.dtype)
    try:
        latents = backbone.source_latents(model, pixels)
    except torch.OutOfMemoryError as e:
        raise _out_of_memory(e, "encoding the source image") from e
    return SourceLatents(latents, geometry, notes, model.kind)


def _check_inputs_match(model: EditorModel, text: TextConditioning, source: SourceLatents) -> None:
    names = {"unet": "a U-Net editor", "dit": "a DiT editor"}
    for what, kind in (("instruction", text.kind), ("source", source.kind)):
        if kind != model.kind:
            raise InputError(
                f"The {what} was encoded for {names[kind]} but the sampler has {names[model.kind]}. "
                "Connect the same RSEdit Loader to the text encode, source conditioning and sampler nodes."
            )


def _step_kwargs(scheduler, generator: torch.Generator) -> dict:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict = {}
    if "eta" in params:
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


@torch.no_grad()
def sample(
    model: EditorModel,
    text: TextConditioning,
    source: SourceLatents,
    settings: EditSettings,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run the dual-CFG denoising loop; returns scaled latents ``[B * variations, 4, h, w]``.

    ``callback(step, total, latents)`` runs after each step; an exception raised there (a
    cancel) stops the run and leaves the model untouched.
    """
    settings = settings.for_model(model)
    settings.check()
    _check_inputs_match(model, text, source)
    backbone = backbone_for(model)
    scheduler = make_scheduler(settings.scheduler, model.scheduler_config)
    device, dtype = model.device, model.denoiser.dtype
    scheduler.set_timesteps(settings.steps, device=device)
    image_latents = source.latents.to(device, dtype).repeat_interleave(settings.num_variations, dim=0)
    n = image_latents.shape[0]
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    shape = (n, model.vae.config.latent_channels, *image_latents.shape[-2:])
    latents = torch.randn(shape, generator=generator, dtype=dtype).to(device) * scheduler.init_noise_sigma

    active = guidance_active(settings.text_cfg, settings.image_cfg)
    # Branch order: [instruction + source, empty + source, empty + zero source].
    branches = 3 if active else 1
    embeds = [text.embeds, text.negative_embeds, text.negative_embeds][:branches]
    embeds = torch.cat([e.to(device, dtype).repeat(n, 1, 1) for e in embeds])
    mask = None
    if text.mask is not None:
        masks = [text.mask, text.negative_mask, text.negative_mask][:branches]
        mask = torch.cat([m.to(device).repeat(n, 1) for m in masks])
    condition = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)][:branches])
    step_kwargs = _step_kwargs(scheduler, generator)
    timesteps = scheduler.timesteps
    try:
        for index, t in enumerate(timesteps):
            scaled = scheduler.scale_model_input(latents, t)
            noise = backbone.predict(model, scaled.repeat(branches, 1, 1, 1), condition, t, embeds, mask)
            if active:
                noise = dual_cfg(*noise.chunk(3), settings.text_cfg, settings.image_cfg)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
            if callback is not None:
                callback(index + 1, len(timesteps), latents)
    except torch.OutOfMemoryError as e:
        raise _out_of_memory(e, f"sampling {n} image(s) of {shape[-1] * 8}x{shape[-2] * 8}") from e
    return latents


@torch.no_grad()
def decode(model: EditorModel, latents: torch.Tensor, geometry: Geometry | None = None) -> torch.Tensor:
    """Decode scaled latents to ``[N, 3, H, W]`` float32 in ``0..1``, one image at a time to
    bound memory, and undo the source's size policy."""
    scale = model.vae.config.scaling_factor
    images = []
    try:
        for latent in latents.split(1):
            decoded = model.vae.decode(latent.to(model.vae.dtype) / scale, return_dict=False)[0]
            images.append((decoded / 2 + 0.5).clamp(0, 1).float())
    except torch.OutOfMemoryError as e:
        raise _out_of_memory(e, "decoding the edited latents") from e
    output = torch.cat(images)
    return geometry.restore(output) if geometry is not None else output


def run_edit(
    model: EditorModel,
    text: TextConditioning,
    source: SourceLatents,
    settings: EditSettings,
    callback: StepCallback | None = None,
) -> EditResult:
    """Sample and decode: the whole edit once text and source are encoded."""
    settings = settings.for_model(model)
    latents = sample(model, text, source, settings, callback)
    images = decode(model, latents, source.geometry)
    notes = [*source.notes, f"instruction: {text.report.summary()}"]
    if not guidance_active(settings.text_cfg, settings.image_cfg):
        notes.append(
            f"guidance off (text {settings.text_cfg} <= 1 or image {settings.image_cfg} < 1): "
            "plain conditional prediction"
        )
    return EditResult(images, latents, notes)


def edit_images(
    model: EditorModel,
    images: torch.Tensor,
    prompt: str,
    *,
    negative_prompt: str = "",
    size_policy: str = "pad",
    settings: EditSettings | None = None,
    callback: StepCallback | None = None,
) -> EditResult:
    """Edit source images ``[B, C, H, W]`` in ``0..1`` following ``prompt``."""
    settings = settings or EditSettings()
    settings.check()
    text = encode_text(model, prompt, negative_prompt)
    source = encode_source(model, images, size_policy)
    return run_edit(model, text, source, settings, callback)
