"""Cheap step previews: a linear map from scaled latents to RGB, fitted to the model's own VAE.

Decoding every step with the VAE would cost as much as a U-Net call; instead we encode a
random-colour test card once, fit ``rgb ~ A @ latent + b`` by least squares, and reuse it.
"""

from __future__ import annotations

import torch

from .editor import EditorModel


@torch.no_grad()
def fit_latent_to_rgb(model: EditorModel, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``(A [3, C], b [3])`` mapping scaled latents to RGB in ``-1..1`` for this VAE."""
    if "preview_map" in model.cache:
        return model.cache["preview_map"]
    factor = model.vae_scale_factor
    generator = torch.Generator().manual_seed(seed)
    colours = torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1
    card = colours.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
    vae_param = next(model.vae.parameters())
    latents = model.vae.encode(card.to(vae_param.device, vae_param.dtype)).latent_dist.mode()
    latents = latents.float().cpu() * model.vae.config.scaling_factor
    x = latents[0].flatten(1).T
    y = colours[0].flatten(1).T
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution
    result = (solution[:-1].T.contiguous(), solution[-1])
    model.cache["preview_map"] = result
    return result


def latents_to_preview(model: EditorModel, latents: torch.Tensor, max_size: int = 512):
    """A PIL preview of the first latent of ``[N, C, h, w]`` (scaled), upsampled to at most ``max_size``."""
    from PIL import Image

    weight, bias = fit_latent_to_rgb(model)
    latent = latents[0].float().cpu()
    rgb = torch.einsum("oc,chw->ohw", weight, latent) + bias[:, None, None]
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(array)
    if max(image.size) > max_size:  # a big scene's latent grid is already larger than the preview
        image.thumbnail((max_size, max_size), Image.BILINEAR)
        return image
    scale = max(1, min(model.vae_scale_factor, max_size // max(image.size)))
    return image.resize((image.width * scale, image.height * scale), Image.BILINEAR)
