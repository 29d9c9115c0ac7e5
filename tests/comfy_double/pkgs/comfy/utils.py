"""Test double of the parts of ``comfy.utils`` that nodes use.

``ProgressBar`` behaves as in ComfyUI: it remembers the global hook that is set when the bar is
created and calls it on every update. Inside the ComfyUI server that hook (installed by
``main.py``) first calls ``comfy.model_management.throw_exception_if_processing_interrupted()``,
which is how a "Cancel" reaches a running node. ``comfy_double.install_comfy_double`` installs
an equivalent hook, so the double behaves like the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK: Callable[..., None] | None = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function: Callable[..., None] | None) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    """Progress reporter; ``update_absolute(value, total, preview)`` is also the interrupt point."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


def load_torch_file(
    ckpt: str, safe_load: bool = False, device: torch.device | None = None, return_metadata: bool = False
):
    """Load a ``.safetensors``/``.sft`` file or a torch pickle into a state dict.

    Like ComfyUI: a pickle holding a ``state_dict`` key, or a single dict-valued key, is unwrapped.
    The double always loads pickles with ``weights_only=True``.
    """
    device = device or torch.device("cpu")
    metadata = None
    if ckpt.lower().endswith((".safetensors", ".sft")):
        import safetensors

        with safetensors.safe_open(ckpt, framework="pt", device=device.type) as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
            if return_metadata:
                metadata = f.metadata()
    else:
        loaded = torch.load(ckpt, map_location=device, weights_only=True)
        if "state_dict" in loaded:
            sd = loaded["state_dict"]
        elif len(loaded) == 1 and isinstance(next(iter(loaded.values())), dict):
            sd = next(iter(loaded.values()))
        else:
            sd = loaded
    return (sd, metadata) if return_metadata else sd


def common_upscale(samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str) -> torch.Tensor:
    """Resize ``[B,C,H,W]`` samples to ``height x width`` (``crop="center"`` keeps the aspect ratio).

    The double supports the ``torch.nn.functional.interpolate`` modes ComfyUI passes through
    ("nearest-exact", "bilinear", "bicubic", "area") and "lanczos" (through Pillow on 8-bit
    images, as ComfyUI does); ComfyUI's own "bislerp" is not reproduced.
    """
    if samples.ndim != 4:
        raise NotImplementedError("the comfy double's common_upscale handles [B,C,H,W] tensors only")
    if upscale_method == "bislerp":
        raise NotImplementedError(f"the comfy double does not implement upscale_method={upscale_method!r}")
    if crop == "center":
        old_h, old_w = samples.shape[-2:]
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        samples = samples[..., y : old_h - y, x : old_w - x]
    if upscale_method == "lanczos":
        return _lanczos(samples, width, height)
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=upscale_method)


def _lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    resized = []
    for image in samples:
        array = np.clip(255.0 * image.movedim(0, -1).float().cpu().numpy(), 0, 255).astype(np.uint8)
        pil = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
        out = np.asarray(pil.resize((width, height), Image.LANCZOS), dtype=np.float32) / 255.0
        resized.append(torch.from_numpy(out.reshape(height, width, -1)).movedim(-1, 0))
    return torch.stack(resized).to(samples.device, samples.dtype)
