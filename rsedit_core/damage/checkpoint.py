"""Load and convert ChangeStar1x256 damage-model checkpoints.

The published file (`EVER-Z/Changen2-ChangeStar1x256`, key `s0_xView2_changestar_vitb_1x256`)
is a plain fp32 PyTorch state dict. We also accept the same weights wrapped by training code
(`{"model": ...}`, `{"state_dict": ...}`, `{"module": ...}`), with `module.` (DataParallel) or
`_orig_mod.` (torch.compile) prefixes, or saved as safetensors. The file format is read from
the file's first bytes, not its name. Pickles are read with `weights_only=True`, so a file that
would run code when unpickled is refused. Weights are loaded strictly: upstream loads them with
`strict=False`, which silently accepts the wrong file.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from ..devices import resolve_device, torch_dtype
from ..errors import InputError, ModelFormatError, ModelNotFoundError
from .model import ChangeStar1x256

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model", "module")
PREFIXES = ("module.", "_orig_mod.")
SHOWN = 10
_DOWNLOAD_HINT = (
    "RSEdit's damage scoring needs the xView2 fine-tuned ChangeStar1x256 (ViT-B, 1 building + 5 change "
    "classes): file for key 's0_xView2_changestar_vitb_1x256' in the Hugging Face repo EVER-Z/Changen2-ChangeStar1x256."
)


def _file_kind(path: Path) -> str:
    """`"torch"` (zip or legacy pickle) or `"safetensors"`, from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise ModelFormatError(
        f"{path} is neither a PyTorch checkpoint (.pth/.pt) nor a safetensors file (first bytes {head!r}). "
        + _DOWNLOAD_HINT
    )


def _read_file(path: Path) -> object:
    if _file_kind(path) == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise ModelFormatError(f"Could not read {path} as safetensors: {e}. Re-download or re-convert it.") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFormatError(
            f"Refused to load {path}: it holds Python objects other than tensors, and unpickling them could run "
            f"code. RSEdit only reads weights. If you made this file, save model.state_dict() instead "
            f"(or convert it with a trusted script to safetensors). Details: {e}"
        ) from e
    except Exception as e:
        raise ModelFormatError(f"Could not read {path} as a PyTorch checkpoint: {e}. The file may be truncated.") from e


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Descend through `state_dict`/`model`/`module` wrappers to the flat tensor dict."""
    for _ in range(len(WRAPPER_KEYS) + 1):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    found = sorted(map(str, obj))[:SHOWN] if isinstance(obj, Mapping) else type(obj).__name__
    raise ModelFormatError(
        f"{path} holds no flat state dict of tensors (found {found}); looked inside the wrapper keys "
        f"{', '.join(WRAPPER_KEYS)}. " + _DOWNLOAD_HINT
    )


def _strip_prefixes(key: str) -> str:
    while key.startswith(PREFIXES):
        key = key.split(".", 1)[1]
    return key


def check_damage_checkpoint_file(path: str | os.PathLike) -> Path:
    """Cheap checks of a checkpoint path before anything is loaded: the file exists and its first
    bytes are those of a PyTorch checkpoint or a safetensors file. Returns the path.

    Raises `ModelNotFoundError` (no such file, or a folder) or `ModelFormatError` (another kind of file).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a folder; give the damage-model checkpoint file itself. " + _DOWNLOAD_HINT)
    if not path.is_file():
        raise ModelNotFoundError(f"No damage-model checkpoint at {path}. " + _DOWNLOAD_HINT)
    _file_kind(path)
    return path


def read_damage_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint as a flat `{key: tensor}` dict with wrappers and prefixes removed (no checks)."""
    path = check_damage_checkpoint_file(path)
    state = _unwrap(_read_file(path), path)
    return {_strip_prefixes(k): v for k, v in state.items()}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict key of `ChangeStar1x256` with its shape (built without allocating weights)."""
    with torch.device("meta"):
        model = ChangeStar1x256()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_damage_state_dict(state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Raise `ModelFormatError` unless `state` has exactly the keys and shapes of `ChangeStar1x256`.

    The message lists missing and unexpected keys (the first 10 of each, with counts) and every
    shape mismatch as expected vs found.
    """
    expected = expected_shapes()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if mismatched:
        shapes = [f"{k} expected {expected[k]}, found {tuple(state[k].shape)}" for k in mismatched]
        parts.append(f"{len(mismatched)} shape mismatches: {_listing(shapes)}")
    hint = _DOWNLOAD_HINT
    change = state.get("head.change_conv.0.weight")
    if change is not None and change.shape[0] != expected["head.change_conv.0.weight"][0]:
        hint = (
            f"This checkpoint has {change.shape[0]} change class(es), so it is another Changen2 model "
            f"(e.g. binary change s1c1/s9c1), not the damage model. " + hint
        )
    raise ModelFormatError(f"{source} is not a ChangeStar1x256 damage checkpoint: {'; '.join(parts)}. {hint}")


def load_damage_model(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
) -> ChangeStar1x256:
    """Load a ChangeStar1x256 checkpoint strictly; return the model in eval mode without gradients.

    Accepts `.pth`/`.pt` (read with `weights_only=True`) or safetensors, wrapped or prefixed as
    described in the module docstring. Raises `ModelNotFoundError` for a missing file and
    `ModelFormatError` for anything that is not exactly this model's weights. ``device`` and
    ``dtype`` (a floating ``torch.dtype`` or ``fp32``/``fp16``/``bf16``) are checked before the file
    is read, with the CLI's messages.
    """
    device = resolve_device(device)
    if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
        raise InputError(f"The damage model needs a floating dtype (float32, float16, bfloat16); got {dtype}.")
    dtype = torch_dtype(dtype)
    state = read_damage_state_dict(path)
    check_damage_state_dict(state, path)
    with torch.device("meta"):
        model = ChangeStar1x256()
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)
    logger.info("Loaded damage model from %s (%d tensors)", path, len(state))
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def convert_checkpoint(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    suffixes: tuple[str, ...] | None = None,
    option: str = "output",
) -> Path:
    """Check a damage checkpoint and write its bare state dict as safetensors to `out_path`.

    The output is checked before the input is read: it must not be the input file (or an existing
    folder), its folder must be writable, and with `suffixes` (the CLI passes `(".safetensors",)`)
    its extension must be one of them. It is written atomically, so a failed conversion leaves no
    partial file and an existing file at `out_path` intact.
    """
    from safetensors.torch import save_file

    from ..outputs import atomic_output, check_output_path

    out, source = Path(out_path).expanduser(), Path(in_path).expanduser()
    same = os.path.samefile(out, source) if out.is_file() and source.is_file() else out.resolve() == source.resolve()
    if same:
        raise InputError(f"Refusing to convert {in_path} onto itself; choose another output path.")
    wanted = suffixes or (out.suffix.lower() or ".safetensors",)
    out = check_output_path(out, inputs=[source], suffixes=wanted, option=option)
    check_damage_checkpoint_file(source)
    state = read_damage_state_dict(source)
    check_damage_state_dict(state, in_path)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    with atomic_output(out) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pt"})
    return out
