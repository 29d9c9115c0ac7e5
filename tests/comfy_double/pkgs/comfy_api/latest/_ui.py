"""Test double of ``comfy_api.latest._ui``: what a node returns in ``NodeOutput(ui=...)``.

``as_dict()`` gives the same shapes as ComfyUI, which end up under the node's id in
``/history/<prompt_id>`` ``outputs``: ``PreviewText("x")`` -> ``{"text": ("x",)}``;
``PreviewImage(images)`` saves PNGs to the temp folder and gives
``{"images": [{"filename", "subfolder", "type": "temp"}], "animated": (False,)}``.
The double writes plain PNGs without workflow metadata.
"""

from __future__ import annotations

import os
import uuid

import folder_paths
import numpy as np
import torch
from PIL import Image as PILImage

from ._io import FolderType, _UIOutput


class SavedResult(dict):
    def __init__(self, filename: str, subfolder: str, type: FolderType):
        super().__init__(filename=filename, subfolder=subfolder, type=type.value)

    @property
    def filename(self) -> str:
        return self["filename"]

    @property
    def subfolder(self) -> str:
        return self["subfolder"]

    @property
    def type(self) -> FolderType:
        return FolderType(self["type"])


class SavedImages(_UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False):
        self.results = results
        self.is_animated = is_animated

    def as_dict(self) -> dict:
        return {"images": self.results, "animated": (self.is_animated,)}


def _save_pngs(images: torch.Tensor, folder_type: FolderType) -> list[SavedResult]:
    directory = folder_paths.get_directory_by_type(folder_type.value)
    os.makedirs(directory, exist_ok=True)
    prefix = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}"
    results = []
    for i, image in enumerate(images):
        array = np.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
        name = f"{prefix}_{i + 1:05}_.png"
        PILImage.fromarray(array).save(os.path.join(directory, name), compress_level=1)
        results.append(SavedResult(name, "", folder_type))
    return results


class PreviewImage(_UIOutput):
    """Preview of an ``IMAGE`` batch ``[B,H,W,C]`` in 0..1."""

    def __init__(self, image: torch.Tensor, animated: bool = False, cls=None, **kwargs):
        self.values = _save_pngs(image, FolderType.temp)
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    """Preview of a ``MASK`` ``[B,H,W]`` (or ``[H,W]``) in 0..1, shown as grey images."""

    def __init__(self, mask: torch.Tensor, animated: bool = False, cls=None, **kwargs):
        preview = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(preview, animated, cls, **kwargs)


class PreviewText(_UIOutput):
    """Text shown on the node."""

    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}
