"""Dual classifier-free guidance (InstructPix2Pix, used by both RSEdit backbones)."""

from __future__ import annotations

import torch

# Branch order in the model batch: [text + image, empty text + image, empty text + zero image].
BRANCHES = ("text", "image", "uncond")


def guidance_active(text_scale: float, image_scale: float) -> bool:
    """Guidance runs three branches only when ``s_T > 1`` and ``s_I >= 1``; otherwise the
    plain conditional prediction (instruction + source) is used, as in the reference pipeline."""
    return text_scale > 1.0 and image_scale >= 1.0


def dual_cfg(
    eps_text: torch.Tensor, eps_image: torch.Tensor, eps_uncond: torch.Tensor, text_scale: float, image_scale: float
) -> torch.Tensor:
    """``eps = u + s_T (t - i) + s_I (i - u)`` for predictions ``t, i, u`` of the three branches."""
    return eps_uncond + text_scale * (eps_text - eps_image) + image_scale * (eps_image - eps_uncond)
