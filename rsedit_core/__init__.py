"""RSEdit: text-guided editing of remote-sensing images, as a library.

    from rsedit_core import load_editor, edit_images, EditSettings, load_image, save_image

    editor = load_editor("models/rsedit/RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14", device="cuda", dtype="fp16")
    image, notes = load_image("scene.png")                      # [1, 3, H, W] in 0..1
    result = edit_images(editor, image, "flood the coastal blocks", settings=EditSettings(steps=50))
    save_image(result.images[0], "flooded.png")

Importing this package is light: the names below load their modules (and torch, diffusers) on
first use, so ``rsedit --help`` and ComfyUI's start-up stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_editor": "loading",
    "EditorModel": "editor",
    "EditSettings": "settings",
    "EditResult": "edit",
    "edit_images": "edit",
    "run_edit": "edit",
    "edit_scene": "edit",
    "decode": "edit",
    "TensorSource": "scene",
    "TensorSink": "scene",
    "RasterSource": "raster",
    "RasterSink": "raster",
    "read_raster": "raster",
    "write_raster": "raster",
    "load_mask": "masks",
    "load_regions": "masks",
    "SceneGrid": "masks",
    "fidelity_report": "fidelity",
    "build_instruction": "instructions",
    "severity_ladder": "instructions",
    "encode_text": "text",
    "TextConditioning": "text",
    "encode_source": "conditioning",
    "SourceLatents": "conditioning",
    "load_image": "images",
    "save_image": "images",
    "BACKBONES": "backbones",
    "Backbone": "backbones",
    "get_backbone": "backbones",
    "RSEditError": "errors",
    "InputError": "errors",
    "ModelNotFoundError": "errors",
    "ModelFormatError": "errors",
    "OutOfMemoryError": "errors",
    "MissingDependencyError": "errors",
    "load_damage_model": "damage",
    "assess": "damage",
    "damage_scores": "damage",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rsedit_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from .backbones import BACKBONES, Backbone, get_backbone
    from .conditioning import SourceLatents, encode_source
    from .damage import assess, damage_scores, load_damage_model
    from .edit import EditResult, decode, edit_images, edit_scene, run_edit
    from .editor import EditorModel
    from .errors import (
        InputError,
        MissingDependencyError,
        ModelFormatError,
        ModelNotFoundError,
        OutOfMemoryError,
        RSEditError,
    )
    from .fidelity import fidelity_report
    from .images import load_image, save_image
    from .instructions import build_instruction, severity_ladder
    from .loading import load_editor
    from .masks import SceneGrid, load_mask, load_regions
    from .raster import RasterSink, RasterSource, read_raster, write_raster
    from .scene import TensorSink, TensorSource
    from .settings import EditSettings
    from .text import TextConditioning, encode_text
