"""How each RSEdit backbone is conditioned on the source latent.

- U-Net, **channel concatenation** (InstructPix2Pix): the source latent is the VAE posterior mode,
  *not* scaled; the U-Net sees ``cat([noisy, source], dim=1)`` with 8 channels.
- PixArt DiT, **in-context (token) concatenation**: the source latent is the posterior mode
  *times* the VAE scaling factor, placed left of the noisy latent along the width,
  ``(B, 4, h, 2w)``. The stock transformer patchifies this canvas (its position table is
  recomputed for the ``h/2 x w`` patch grid with the pretrained base size, so columns step by
  0.5), every token shares one timestep, and the prediction is the right half's first 4
  channels (PixArt also predicts sigma in channels 4..7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .loading import EditorModel


@dataclass(frozen=True)
class Backbone:
    """The conditioning rule of one backbone kind."""

    kind: str
    mode: str
    scale_source: bool

    def size_multiple(self, model: EditorModel) -> int:
        """Pixel multiple a source must have: the VAE factor, times the patch size for the DiT."""
        if self.kind == "dit":
            return model.vae_scale_factor * model.denoiser.config.patch_size
        return model.vae_scale_factor

    def source_latents(self, model: EditorModel, pixels: torch.Tensor) -> torch.Tensor:
        """Source latents from pixels in ``-1..1``: the posterior mode, scaled for the DiT."""
        latents = model.vae.encode(pixels).latent_dist.mode()
        return latents * model.vae.config.scaling_factor if self.scale_source else latents

    def predict(
        self,
        model: EditorModel,
        latents: torch.Tensor,
        source: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """The noise prediction for scheduler-scaled ``latents`` ``(N, 4, h, w)`` given ``source``."""
        if self.kind == "unet":
            model_input = torch.cat([latents, source], dim=1)
            return model.denoiser(model_input, timestep, encoder_hidden_states=embeds, return_dict=False)[0]
        width = latents.shape[-1]
        canvas = torch.cat([source, latents], dim=-1)
        timesteps = timestep.reshape(-1).to(latents.device).expand(canvas.shape[0])
        output = model.denoiser(
            canvas,
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            timestep=timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]
        return output[..., width:][:, : latents.shape[1]]


CHANNEL_CONCAT = Backbone("unet", "channel concatenation", scale_source=False)
TOKEN_CONCAT = Backbone("dit", "token concatenation", scale_source=True)


def backbone_for(model: EditorModel) -> Backbone:
    return TOKEN_CONCAT if model.kind == "dit" else CHANNEL_CONCAT
