"""Weight-file and config checks shared by every loader: whole files, clear errors, no code run.

Weights load from safetensors; pickled ``.bin`` files are read only through diffusers/transformers
with ``weights_only=True``. Code shipped with weights is never imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelFormatError

if TYPE_CHECKING:
    import torch

WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def read_config(path: Path) -> dict:
    """A JSON config, or a :class:`ModelFormatError` that names the file."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"Cannot read the config {path}: {e}. Re-download the model folder.") from e
    if not isinstance(config, dict):
        raise ModelFormatError(f"The config {path} is not a JSON object. Re-download the model folder.")
    return config


def check_weights(component_dir: Path) -> Path:
    """Return the component's weight file after checking a safetensors header is whole."""
    for name in WEIGHT_NAMES:
        path = component_dir / name
        if path.is_file():
            break
    else:
        index = sorted(component_dir.glob("*.safetensors.index.json"))
        if index:
            return index[0]
        raise ModelFormatError(
            f"No weights in {component_dir}: expected one of {', '.join(WEIGHT_NAMES)}. "
            "The download may be incomplete; fetch the folder again."
        )
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except Exception as e:
            raise ModelFormatError(
                f"The weight file {path} ({path.stat().st_size:,} bytes) is corrupt or truncated: {e}. "
                "Delete it and download it again."
            ) from e
    return path


def load_component(cls, path: Path, what: str, dtype: torch.dtype):
    """``cls.from_pretrained(path)`` after :func:`check_weights`, with errors that name the folder."""
    check_weights(path)
    try:
        return cls.from_pretrained(path, torch_dtype=dtype)
    except Exception as e:
        raise ModelFormatError(
            f"Could not load the {what} from {path}: {e}. The folder may be incomplete or from an "
            "incompatible library version; download it again."
        ) from e
