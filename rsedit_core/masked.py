"""Region-aware edits: masks checked and fitted to the canvas, the latent regions, the final composite.

A masked edit changes the scene only where its mask is above 0 (1 = edit). During sampling the
latent outside the mask follows the source, noised to each step's level (blended latent
diffusion, :class:`rsedit_core.denoise.Regions`), so what is edited inside blends with its
surroundings; at the end the decoded edit is composited over the source in pixel space with the
mask as the weight, so every pixel outside the mask *is* the source, bit for bit. A soft or
feathered mask (:func:`rsedit_core.masks.feather_inside`) only ever ramps inside the mask.

Several (instruction, mask) regions each guide their own part of the scene; where regions
overlap, the later one wins, as in :mod:`rsedit_core.masks`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError
from .images import Geometry


def check_mask(mask, batch: int, height: int, width: int, what: str = "mask") -> torch.Tensor:
    """A mask for ``batch`` source images of ``height`` x ``width`` px as ``[1 or B, 1, H, W]`` float32 in 0..1.

    Accepted: ``[H, W]``, ``[1, H, W]``, ``[B, H, W]`` (ComfyUI's MASK), ``[1 or B, 1, H, W]``;
    bool, integer 0/1 or float 0..1 values. Another size than the images is refused with the size
    needed (resize it on purpose, e.g. with :func:`rsedit_core.masks.load_mask` ``resize=True``).
    """
    if not isinstance(mask, torch.Tensor):
        try:
            import numpy as np

            mask = torch.from_numpy(np.asarray(mask))
        except Exception as e:
            raise InputError(f"The {what} must be a tensor or array [H, W] in 0..1; got {type(mask).__name__}.") from e
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, batch):
        raise InputError(
            f"The {what} has shape {tuple(mask.shape)}; give [H, W], [B, H, W] or [B, 1, H, W] with B = 1 or {batch}."
        )
    if tuple(mask.shape[-2:]) != (height, width):
        raise InputError(
            f"The {what} is {mask.shape[-1]}x{mask.shape[-2]} px but the scene is {width}x{height} px: a mask must "
            "lie on the scene's pixel grid. Make it at the scene's size (or resize it on purpose)."
        )
    mask = mask.float()
    if not torch.isfinite(mask).all() or float(mask.min()) < 0 or float(mask.max()) > 1:
        raise InputError(f"The {what} must hold values in 0..1 (1 = edit); clean or rescale it.")
    return mask


def fit_mask(mask: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The mask on the canvas the source was fitted to: zero in the padding (never edited), cropped
    with the source, or resized (nearest) with it."""
    if geometry.original == geometry.processed:
        return mask
    (h, w), (ph, pw), (top, left) = geometry.original, geometry.processed, geometry.offset
    if geometry.policy == "pad":
        return F.pad(mask, (left, pw - w - left, top, ph - h - top))
    if geometry.policy == "crop":
        return mask[..., top : top + ph, left : left + pw]
    return F.interpolate(mask, size=(ph, pw), mode="nearest")


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Where the latent may change: every latent pixel whose ``factor`` x ``factor`` block touches
    the mask (the decoded edit must cover the mask; outside it the composite restores the source)."""
    return F.max_pool2d((mask > 0).float(), factor)


def exclusive(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Region weights with overlaps given to the later region, so they never sum above 1."""
    taken = torch.zeros_like(masks[0])
    out = []
    for mask in reversed(masks):
        out.append(mask * (1 - taken))
        taken = torch.maximum(taken, mask)
    return out[::-1]


def composite(source: torch.Tensor, edit: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``edit`` where ``weight`` is 1, ``source`` where it is 0 (exactly: those pixels are copied),
    a blend in between. ``source`` ``[B, 3, H, W]`` is matched to ``edit`` ``[B * V, 3, H, W]``."""
    repeats = edit.shape[0] // source.shape[0]
    source = source.repeat_interleave(repeats, dim=0).to(edit.dtype)
    weight = weight.to(edit.dtype)
    if weight.shape[0] != 1:
        weight = weight.repeat_interleave(repeats, dim=0)
    return torch.where(weight > 0, source * (1 - weight) + edit * weight, source)
