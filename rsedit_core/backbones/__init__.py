"""The RSEdit backbones and their registry.

- :data:`UNET`: Stable Diffusion U-Net, channel concatenation (:mod:`.unet`).
- :data:`DIT`: PixArt-alpha DiT, token concatenation (:mod:`.dit`).

A third backbone is one module with a :class:`Backbone` subclass, added to :data:`BACKBONES`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, ModelFormatError
from ..weights import read_config
from .base import Backbone, LoadedParts
from .dit import DIT
from .unet import UNET

BACKBONES: dict[str, Backbone] = {backbone.name: backbone for backbone in (UNET, DIT)}
NAMES = tuple(BACKBONES)


def get_backbone(name: str) -> Backbone:
    """The backbone registered under ``name`` (``unet``, ``dit``)."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise InputError(f"Unknown backbone {name!r}; choose one of {', '.join(NAMES)}.") from None


def component_folders() -> tuple[str, ...]:
    """The denoiser folder names that mark an editor folder (``unet``, ``transformer``)."""
    return tuple(backbone.component_folder for backbone in BACKBONES.values())


def detect_backbone(root: Path, text_to_image_ok: bool = False) -> tuple[Backbone, dict]:
    """The backbone whose denoiser config ``root`` holds, checked, and that config.

    ``text_to_image_ok`` accepts a 4-channel text-to-image U-Net (a fine-tuning base).
    """
    for backbone in BACKBONES.values():
        if backbone.claims(root):
            config = read_config(root / backbone.component_folder / "config.json")
            backbone.check_config(root, config, text_to_image_ok)
            return backbone, config
    folders = " or ".join(f"{name}/" for name in component_folders())
    raise ModelFormatError(f"{root} has no {folders} with a config.json, so no RSEdit backbone was found in it.")


__all__ = [
    "BACKBONES",
    "DIT",
    "NAMES",
    "UNET",
    "Backbone",
    "LoadedParts",
    "component_folders",
    "detect_backbone",
    "get_backbone",
]
