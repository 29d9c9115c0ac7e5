"""RSEdit models inside ComfyUI: the ``models/rsedit`` folder and ComfyUI-managed offloading.

Each component (U-Net or DiT, VAE, text encoder) is wrapped in its own ``ModelPatcher`` so
ComfyUI's memory manager moves it to the GPU when a node needs it and offloads it when others do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch

from ..rsedit_core.editor import EditorModel
from ..rsedit_core.model_folders import find_model_folders

FOLDER = "rsedit"


def register_model_folder() -> None:
    """Add ``models/rsedit`` (extra_model_paths.yaml may add more under the ``rsedit`` key)."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def search_dirs() -> list[str]:
    try:
        return list(folder_paths.get_folder_paths(FOLDER))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, FOLDER)]


def list_models() -> list[str]:
    return find_model_folders(search_dirs())


class _Holder(torch.nn.Module):
    """A plain module around a diffusers/transformers model: ModelPatcher sets ``.device`` on the
    module it manages, which diffusers models expose as a read-only property."""

    def __init__(self, inner: torch.nn.Module, device: torch.device):
        super().__init__()
        self.inner = inner
        self.device = device


def _patcher(module: torch.nn.Module):
    offload = mm.unet_offload_device()
    return comfy.model_patcher.ModelPatcher(
        _Holder(module, offload), load_device=mm.get_torch_device(), offload_device=offload
    )


@dataclass
class ComfyEditor:
    """The ``RSEDIT_MODEL`` value: a loaded editor and the patchers ComfyUI manages."""

    name: str
    model: EditorModel
    denoiser: object
    vae: object
    text_encoder: object

    @classmethod
    def wrap(cls, name: str, model: EditorModel) -> ComfyEditor:
        return cls(name, model, _patcher(model.denoiser), _patcher(model.vae), _patcher(model.text_encoder))

    def load(self, *parts: str) -> None:
        """Bring the named components (``denoiser``, ``vae``, ``text_encoder``) onto the compute device.

        Full loads: these are plain torch modules, without ComfyUI's low-VRAM weight casting.
        """
        mm.load_models_gpu([getattr(self, part) for part in parts], force_full_load=True)

    def offload(self, part: str) -> None:
        """Move one component back to the offload device now, as ComfyUI's ``free_memory`` would
        when it needs the room (used for the T5-XXL encoder once prompts are encoded)."""
        patcher = getattr(self, part)
        for index, loaded in enumerate(mm.current_loaded_models):
            if loaded.model is patcher:
                if loaded.model_unload():
                    mm.current_loaded_models.pop(index)
                mm.soft_empty_cache()
                return


@dataclass
class ComfyModule:
    """A single torch module under ComfyUI's memory management (the damage model)."""

    model: torch.nn.Module
    patcher: object

    @classmethod
    def wrap(cls, model: torch.nn.Module) -> ComfyModule:
        return cls(model, _patcher(model))

    def load(self) -> None:
        mm.load_models_gpu([self.patcher], force_full_load=True)
