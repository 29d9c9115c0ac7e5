"""The source condition: API images checked once, fitted to the backbone's multiple, encoded.

An editor is conditioned on the clean source latent; how (channel or token concatenation, scaled
or not) is the backbone's rule (:meth:`~rsedit_core.backbones.Backbone.source_latents`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .backbones import Backbone
from .editor import EditorModel, check_editor
from .errors import InputError, out_of_memory_advice
from .images import Geometry, fit_to_multiple, to_rgb
from .scene import TensorSource, encode_tiles
from .tiling import check_tiling, default_overlap, plan_tiles, resolve_tile, whole


@dataclass
class SourceLatents:
    """Source latents ``(B, 4, H/8, W/8)`` as ``backbone`` uses them (the VAE posterior mode,
    unscaled for the U-Net, scaled by the VAE factor for the DiT)."""

    latents: torch.Tensor
    geometry: Geometry
    backbone: Backbone
    notes: list[str] = field(default_factory=list)
    #: The RGB source on the fitted canvas ``[B, 3, H', W']`` in 0..1 (CPU), which a masked edit
    #: composites over; None where the source was streamed (:func:`rsedit_core.edit.edit_scene`).
    pixels: torch.Tensor | None = None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_images(images) -> None:
    """Refuse API images that are not ``[B, C, H, W]`` floats in ``0..1`` with C in 1, 3, 4."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor [B, C, H, W] in 0..1; got {type(images).__name__}.")
    if images.dim() == 3:
        raise InputError(
            f"images has shape {tuple(images.shape)}: the batch axis is missing. Pass images[None] "
            "([1, C, H, W]) for one image."
        )
    if images.dim() != 4:
        raise InputError(f"images must be [B, C, H, W]; got {images.dim()} axes {tuple(images.shape)}.")
    if images.shape[0] == 0:
        raise InputError("images is an empty batch (B = 0); pass at least one image.")
    if images.shape[1] not in (1, 3, 4):
        hint = (
            " It looks channels-last ([B, H, W, C], ComfyUI's layout): use images.movedim(-1, 1)."
            if (images.shape[-1] in (1, 3, 4))
            else ""
        )
        raise InputError(f"images must have 1, 3 or 4 channels on axis 1; got shape {tuple(images.shape)}.{hint}")
    if not images.is_floating_point():
        raise InputError(f"images must be floats in 0..1; got {images.dtype}. Divide 8-bit images by 255.")
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or infinite values; clean or clamp them before editing.")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = (
            " They look like 0..255: divide by 255."
            if high > 1.5
            else " They look like -1..1: use (images + 1) / 2."
            if low < -0.05
            else " Clamp them with images.clamp(0, 1)."
        )
        raise InputError(f"images must lie in 0..1; they span {low:.4g}..{high:.4g}.{hint}")


@torch.no_grad()
def encode_source(
    model: EditorModel, images: torch.Tensor, size_policy: str = "pad", tile: int | None = None
) -> SourceLatents:
    """Encode source images ``[B, C, H, W]`` in ``0..1`` (C = 1, 3 or 4) to the source latent.

    Sides are brought to the backbone's multiple (8 px for the U-Net, 16 px for the DiT: VAE
    factor x patch size) by ``size_policy``; the notes say what was done. Scenes larger than a
    tile (``tile``: px, None = the default rule of :func:`rsedit_core.tiling.resolve_tile`, 0 =
    never) are encoded by blended VAE tiles, so memory does not grow with the scene.
    """
    check_editor(model)
    check_images(images)
    if tile is not None:
        check_tiling(tile, default_overlap(tile) if _is_int(tile) else 0, 1, model.size_multiple)
    rgb, notes = to_rgb(images)
    fitted, geometry = fit_to_multiple(rgb, size_policy, model.size_multiple)
    if geometry.original != geometry.processed:
        notes.append(geometry.describe())
    factor = model.vae_scale_factor
    latent_size = (fitted.shape[-2] // factor, fitted.shape[-1] // factor)
    vae_tile, _ = resolve_tile(tile, tuple(fitted.shape[-2:]))
    plan = (
        plan_tiles(latent_size, vae_tile, default_overlap(vae_tile), factor) if vae_tile else whole(latent_size, factor)
    )
    if plan.tiled:
        notes.append(f"encoded by {len(plan.windows)} blended VAE windows of {plan.tile} px")
    with out_of_memory_advice("encoding the source image"):
        latents = encode_tiles(model, TensorSource(fitted), plan)
    return SourceLatents(latents, geometry, model.backbone, notes, fitted.float().cpu())
