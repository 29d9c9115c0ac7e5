"""The RSEdit error family.

Every message says what failed, where we looked and how to fix it, so that the same text reads
well in a terminal and in ComfyUI's error dialog.
"""

from __future__ import annotations


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
