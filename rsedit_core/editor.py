"""The loaded editor: its backbone, components and per-model caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .backbones import Backbone
from .errors import InputError


@dataclass
class EditorModel:
    """A loaded RSEdit editor.

    ``backbone`` is the conditioning rule (:data:`~rsedit_core.backbones.UNET` or
    :data:`~rsedit_core.backbones.DIT`); ``denoiser`` is the U-Net or the transformer.
    ``text_max_length`` is the number of text positions (248 for DGTRS-CLIP, 77 for CLIP, 120 for
    PixArt's T5). ``scheduler_config`` is the folder's own scheduler, used when no other is chosen.
    """

    backbone: Backbone
    denoiser: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    root: Path
    text_max_length: int
    dtype: torch.dtype
    text_encoder_source: str = "folder"
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Pixel multiple a source must have (8 for the U-Net, 16 for PixArt XL-2)."""
        return self.backbone.size_multiple(self)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler_config.get("num_train_timesteps", 1000))

    def describe(self) -> str:
        return f"{self.backbone.display_name} editor ({self.backbone.mode}) from {self.root}"


def check_editor(model) -> None:
    """Refuse anything but a loaded :class:`EditorModel` (a path, a ComfyUI wrapper) at an API entry point."""
    if not isinstance(model, EditorModel):
        hint = " Load it first: model = load_editor(path)." if isinstance(model, str | Path) else ""
        raise InputError(f"model must be an EditorModel from load_editor(); got {type(model).__name__}.{hint}")
