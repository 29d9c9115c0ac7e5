"""RSEdit models inside ComfyUI: the ``models/rsedit`` folder, ComfyUI's devices and offloading.

Each component (U-Net or DiT, VAE, text encoder) is wrapped in its own ``ModelPatcher`` with the
load and offload devices ComfyUI assigns its role, so ComfyUI's memory manager moves it to the GPU
when a node needs it and offloads it when others do, and ``--cpu-vae``, ``--gpu-only``,
``--lowvram``/``--highvram`` and the VAE precision flags act on RSEdit as on ComfyUI's own models.
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

#: ComfyUI's device functions for each role: (load device, offload device). Looked up by name at
#: call time, so they follow the flags ComfyUI parsed (and tests that replace them).
ROLE_DEVICES = {
    "denoiser": ("get_torch_device", "unet_offload_device"),
    "vae": ("vae_device", "vae_offload_device"),
    "text_encoder": ("text_encoder_device", "text_encoder_offload_device"),
}
PARTS = tuple(ROLE_DEVICES)


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


def role_devices(role: str) -> tuple[torch.device, torch.device]:
    """``(load_device, offload_device)`` that ComfyUI assigns a ``denoiser``, ``vae`` or ``text_encoder``."""
    try:
        load_name, offload_name = ROLE_DEVICES[role]
    except KeyError:
        raise ValueError(f"Unknown RSEdit model part {role!r}; expected one of {', '.join(PARTS)}") from None
    return getattr(mm, load_name)(), getattr(mm, offload_name)()


def vae_dtype(current: torch.dtype, device: torch.device | None = None) -> torch.dtype:
    """The precision ComfyUI wants the VAE in: ``--fp16-vae``/``--bf16-vae``/``--fp32-vae`` win;
    otherwise the loaded precision where ComfyUI deems it usable on the VAE's device, else fp32
    (fp16 weights on a ``--cpu-vae`` CPU are upcast, as ComfyUI does for its own VAEs)."""
    device = mm.vae_device() if device is None else device
    return mm.vae_dtype(device, allowed_dtypes=[current])


def preview_enabled() -> bool:
    """Whether the user wants step previews: ComfyUI's ``--preview-method`` (``args.preview_method``,
    which is ``none`` unless set) is anything but ``LatentPreviewMethod.NoPreviews``."""
    from comfy.cli_args import args

    method = getattr(args, "preview_method", None)
    if method is None:
        return False
    return getattr(method, "value", method) != "none"


def preview_size() -> int:
    """The longest side ComfyUI sends previews at (``--preview-size``, 512 by default)."""
    from comfy.cli_args import args

    return int(getattr(args, "preview_size", 512) or 512)


class _Holder(torch.nn.Module):
    """A plain module around a diffusers/transformers model: ModelPatcher sets ``.device`` on the
    module it manages, which diffusers models expose as a read-only property."""

    def __init__(self, inner: torch.nn.Module, device: torch.device):
        super().__init__()
        self.inner = inner
        self.device = device


def _patcher(module: torch.nn.Module, role: str = "denoiser", dtype: torch.dtype | None = None):
    """A ``ModelPatcher`` with the devices of ``role``; the module starts on the offload device
    (in ``dtype`` if given), where ComfyUI keeps models it has not loaded."""
    load, offload = role_devices(role)
    if dtype is not None and dtype != getattr(next(module.parameters(), None), "dtype", dtype):
        # torch's own cast: diffusers' ``to`` warns about fp32-kept modules on every dtype cast,
        # even with none (AutoencoderKL has none), and then does the same.
        torch.nn.Module.to(module, dtype=dtype)
    module.to(offload)
    return comfy.model_patcher.ModelPatcher(_Holder(module, offload), load_device=load, offload_device=offload)


def _unload(patcher) -> None:
    """Unload one patcher through ComfyUI's memory manager: ``free_memory`` on its device, keeping
    every other loaded model, moves it to its offload device and drops it from ComfyUI's list."""
    others = [loaded for loaded in mm.current_loaded_models if loaded.model is not patcher]
    mm.free_memory(1e30, patcher.load_device, keep_loaded=others)


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
        """Patchers for the three parts with their ComfyUI roles; the VAE is cast to the precision
        ComfyUI assigns VAEs (the core encodes and decodes in ``model.vae.dtype``)."""
        vae = _patcher(model.vae, "vae", vae_dtype(model.vae.dtype))
        return cls(name, model, _patcher(model.denoiser, "denoiser"), vae, _patcher(model.text_encoder, "text_encoder"))

    def _part(self, part: str):
        if part not in PARTS:
            raise ValueError(f"Unknown RSEdit model part {part!r}; expected one of {', '.join(PARTS)}")
        return getattr(self, part)

    def load(self, *parts: str) -> None:
        """Bring the named components (``denoiser``, ``vae``, ``text_encoder``) onto their load devices.

        Full loads: these are plain torch modules, without ComfyUI's low-VRAM weight casting.
        """
        mm.load_models_gpu([self._part(part) for part in parts], force_full_load=True)

    def offload(self, part: str) -> None:
        """Unload one component now, as ComfyUI's ``free_memory`` would when it needs the room
        (used for the T5-XXL encoder once prompts are encoded)."""
        _unload(self._part(part))


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

    def offload(self) -> None:
        _unload(self.patcher)
