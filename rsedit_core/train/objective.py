"""The RSEdit training objective, shared by both backbones.

DDPM noise at timesteps drawn uniformly from ``[0, num_train_timesteps)``; the target is the noise
(epsilon models) or the velocity (v-prediction), as the scheduler config says. Conditioning
dropout teaches the unconditional predictions that dual classifier-free guidance needs. The
source conditioning is :class:`rsedit_core.backbones.Backbone`'s, so training and sampling can
never disagree; for the DiT its prediction is the target half of the canvas only, so the loss
never sees the source tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..editor import EditorModel
from ..errors import ModelFormatError

CONDITIONING_DROPOUT = 0.05


@dataclass
class TextBatch:
    """Text conditioning for a batch: ``embeds (B, L, D)``, ``mask (B, L)`` for T5 (else None),
    and the empty prompt's ``empty_embeds (1, L, D)`` / ``empty_mask (1, L)``."""

    embeds: torch.Tensor
    mask: torch.Tensor | None
    empty_embeds: torch.Tensor
    empty_mask: torch.Tensor | None


def conditioning_dropout(
    batch_size: int, probability: float, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample dropout masks ``(drop_text, drop_source)``, both bool ``(B,)``.

    One draw ``p ~ U[0, 1)`` per sample: the text is replaced by the empty prompt when
    ``p < 2q`` and the source latent by zeros when ``q <= p < 3q``. Each happens with probability
    ``2q``, both together with probability ``q`` (InstructPix2Pix's scheme, ``q = 0.05``).
    """
    p = torch.rand(batch_size, device=device, generator=generator)
    return p < 2 * probability, (p >= probability) & (p < 3 * probability)


def training_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the denoiser learns to predict: the noise, or ``alpha_t * noise - sigma_t * x0`` for
    v-prediction."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ModelFormatError(
        f"The scheduler's prediction_type is {kind!r}; training supports 'epsilon' and 'v_prediction'. "
        "Fix scheduler/scheduler_config.json of the base model."
    )


@torch.no_grad()
def encode_pair(model: EditorModel, backbone: Backbone, pre: torch.Tensor, post: torch.Tensor):
    """Latents of a batch of pairs in ``-1..1`` ``(B, 3, H, W)``: the target is a posterior sample
    times the scaling factor (what the diffusion process noises); the source is the backbone's
    conditioning latent (posterior mode; scaled for the DiT only)."""
    dtype = model.vae.dtype
    target = model.vae.encode(post.to(dtype)).latent_dist.sample() * model.vae.config.scaling_factor
    return target, backbone.source_latents(model, pre.to(dtype))


def edit_loss(
    model: EditorModel,
    backbone: Backbone,
    noise_scheduler,
    target_latents: torch.Tensor,
    source_latents: torch.Tensor,
    text: TextBatch,
    dropout: float = CONDITIONING_DROPOUT,
) -> torch.Tensor:
    """The MSE between the denoiser's prediction and the training target for one batch.

    ``target_latents`` and ``source_latents`` are ``(B, 4, h, w)`` from :func:`encode_pair`;
    ``model.denoiser`` may be a distributed wrapper (only its forward is called).
    """
    batch = target_latents.shape[0]
    device = target_latents.device
    noise = torch.randn_like(target_latents)
    steps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (batch,), device=device).long()
    noisy = noise_scheduler.add_noise(target_latents, noise, timesteps)
    target = training_target(noise_scheduler, target_latents, noise, timesteps)

    drop_text, drop_source = conditioning_dropout(batch, dropout, device=device)
    embeds = torch.where(drop_text[:, None, None], text.empty_embeds.to(text.embeds.dtype), text.embeds)
    mask = None
    if text.mask is not None:
        mask = torch.where(drop_text[:, None], text.empty_mask.to(text.mask.dtype), text.mask)
    source = source_latents * (~drop_source).to(source_latents.dtype)[:, None, None, None]

    prediction = backbone.predict(model, noisy, source, timesteps, embeds, mask)
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")
