"""The RSEdit error family.

Every message says what failed, where we looked and how to fix it, so that the same text reads
well in a terminal and in ComfyUI's error dialog.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class RSEditError(Exception):
    """Base class of every error RSEdit raises on purpose."""


class ModelNotFoundError(RSEditError):
    """No model at the given path, hub id or ComfyUI model folder."""


class ModelFormatError(RSEditError):
    """A model was found but its layout, config or weights are not what RSEdit expects."""


class InputError(RSEditError):
    """A user input (image, prompt, number) cannot be used as given."""


class OutOfMemoryError(RSEditError):
    """The accelerator ran out of memory during a run."""


class MissingDependencyError(RSEditError):
    """An optional package is needed for this feature."""


def require(module: str, feature: str, pip_name: str | None = None):
    """Import an optional dependency or raise an install hint.

    Returns the imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{feature} needs the '{pip_name or module}' package, which is not installed. "
            f"Install it with: pip install {pip_name or module}"
        ) from e


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    # The CPU allocator raises a plain RuntimeError.
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in str(error) or "DefaultCPUAllocator" in str(error)
    )


@contextlib.contextmanager
def out_of_memory_advice(what: str, advice: str = "") -> Iterator[None]:
    """Turn running out of memory, on a GPU or on the CPU, into an :class:`OutOfMemoryError`
    with the same advice in both cases; every other error passes through unchanged."""
    try:
        yield
    except Exception as e:
        if isinstance(e, RSEditError) or not _is_out_of_memory(e):
            raise
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemoryError(
            f"Out of memory while {what}. "
            + (
                advice
                or "Try a smaller image or fewer variations, load the model in fp16/bf16 on a GPU, "
                "close other programs, or in ComfyUI let it offload other models (--lowvram)."
            )
        ) from e
