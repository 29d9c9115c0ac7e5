"""Device and dtype names as users type them, checked before any model is loaded."""

from __future__ import annotations

import re

import torch

from .defaults import DEVICE_HELP, DTYPE_NAMES
from .errors import InputError

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.float16, torch.bfloat16), strict=True))
_DEVICE = re.compile(r"^(cpu|cuda|mps)(:(\d+))?$")


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a device that exists on this machine.

    A ``torch.device`` of another kind (``xpu``, ``npu``, DirectML's ``privateuseone``) is one a
    host such as ComfyUI or accelerate chose, and is taken as it is.
    """
    if isinstance(name, torch.device):
        if name.type not in ("cpu", "cuda", "mps"):
            return name
        name = str(name)
    if not isinstance(name, str):
        raise InputError(f"The device must be a name ({DEVICE_HELP}) or a torch.device; got {name!r}.")
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = _DEVICE.match(text)
    if not match:
        raise InputError(f"Unknown device {name!r}; use {DEVICE_HELP}.")
    kind, index = match.group(1), match.group(3)
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise InputError(f"Device {name!r} was asked for, but {build}. Use --device cpu (or auto).")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise InputError(f"Device {name!r} does not exist: this machine has {count} CUDA device(s).")
    if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"Device {name!r} was asked for, but MPS (Apple GPU) is not available here. Use cpu.")
    return torch.device(text)


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``fp32``/``fp16``/``bf16`` (or a floating ``torch.dtype``) as a ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise InputError(f"dtype {dtype} is not a floating dtype; choose one of {', '.join(DTYPES)}.")
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InputError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> str | torch.dtype:
    """``auto`` is fp16 on a GPU and fp32 on the CPU (fp16 matmuls are slow or missing there);
    any other name (or ``torch.dtype``) is checked and returned as given."""
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    torch_dtype(name)
    return name
