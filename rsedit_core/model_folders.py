"""Where an editor is: a folder, a hub id or a ComfyUI ``models/rsedit`` entry, resolved to one
editor folder, with errors that say where we looked and how to get the rest.

The kind of model is read from its configs (``unet/config.json``, ``transformer/config.json``),
never from its name.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .backbones import BACKBONES, component_folders
from .errors import ModelFormatError, ModelNotFoundError, require
from .weights import WEIGHT_NAMES

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EDITOR_LAYOUT = (
    "an RSEdit diffusers folder: model_index.json, unet/ (8 input channels) or transformer/ "
    "(PixArt), vae/, text_encoder/, tokenizer/, scheduler/"
)
EDITOR_PARTS = ("vae", "text_encoder", "tokenizer", "scheduler")


def is_editor_folder(path: Path) -> bool:
    """True when ``path`` holds a backbone config (``unet/`` or ``transformer/``) and is not a
    training checkpoint (which holds only the trained model)."""
    has_backbone = any((path / folder / "config.json").is_file() for folder in component_folders())
    return has_backbone and not (path / "training_state.json").is_file()


def _weights_only(path: Path) -> str | None:
    """The denoiser weight file of a folder that has nothing else (ComfyUI's one-file download)."""
    for folder in component_folders():
        for name in WEIGHT_NAMES:
            if (path / folder / name).is_file() and not (path / folder / "config.json").is_file():
                return f"{folder}/{name}"
    return None


def _walk(base: Path):
    """``os.walk`` that follows links but visits every real folder once (a link loop ends)."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:
            dirnames.clear()
            continue
        seen.add(key)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        yield Path(dirpath), dirnames, filenames


def find_model_folders(search_dirs: Iterable[str | os.PathLike]) -> list[str]:
    """Model folders below each search dir, as paths relative to it (``repo/subfolder`` too).

    Used for ComfyUI's ``models/rsedit`` list, where a release with several editors (one per
    text encoder) shows one entry per editor folder. A folder holding only the denoiser's weight
    file is listed too, so that choosing it says what is missing.
    """
    found: set[str] = set()
    for base in search_dirs:
        base = Path(base)
        if not base.is_dir():
            continue
        for here, dirnames, _ in _walk(base):
            if is_editor_folder(here) or _weights_only(here):
                found.add(here.relative_to(base).as_posix())
                dirnames.clear()
    return sorted(found)


# What an editor (or a fine-tuning base) needs from a hub repo: the component folders' configs,
# tokenizer files and safetensors weights. SD repos also hold .ckpt, fp16, non-EMA and pickled
# copies of every weight (tens of GB), which are never read.
_HUB_SKIP = ["*.ckpt", "*.bin", "*.pth", "*.pt", "*.msgpack", "*.onnx*", "*.fp16.*", "*non_ema*", "*emaonly*"]


def _hub_patterns(subfolder: str | None) -> list[str]:
    prefix = f"{subfolder}/" if subfolder else ""
    parts = ["*.json", "*.txt", "*.model", "*.safetensors"]
    return [f"{prefix}model_index.json", *(f"{prefix}*/{part}" for part in parts), "*.json"]


def _download(repo_id: str, subfolder: str | None) -> Path:
    hub = require("huggingface_hub", "Loading a model by hub id")
    try:
        return Path(
            hub.snapshot_download(repo_id=repo_id, allow_patterns=_hub_patterns(subfolder), ignore_patterns=_HUB_SKIP)
        )
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local cache; unset it or download "
            "the model once with network access"
            if offline
            else "check the id, your network and, for gated repos, `hf auth login`"
        )
        raise ModelNotFoundError(
            f"Could not get '{repo_id}' from the Hugging Face hub: {str(e).rstrip('.')}. {hint}."
        ) from e


def _local_intent(spec: str, search_dirs: Sequence[str | os.PathLike]) -> Path | None:
    """The existing local folder that ``owner/name`` starts with, if any: ``models/RSEdt`` where
    ``models/`` exists is a mistyped path, not a hub id."""
    head = spec.split("/", 1)[0]
    for base in [Path("."), *map(Path, search_dirs)]:
        if (base / head).is_dir():
            return base / head
    return None


def _not_found(spec: str, looked: list[str], near: Path | None) -> ModelNotFoundError:
    hint = ""
    if near is not None:
        name = spec.split("/")[-1]
        options = [p.name for p in near.iterdir() if p.is_dir()] if near.is_dir() else []
        close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
        hint = f" {near} exists but has no '{name}'" + (f"; did you mean {', '.join(close)}?" if close else ".")
        hint += " (Treated as a local path, not a hub id, because that folder exists.)"
    return ModelNotFoundError(
        f"No RSEdit model at '{spec}'.{hint} Looked in: {', '.join(looked)}. Expected {EDITOR_LAYOUT}, "
        f"or a hub id such as {BACKBONES['unet'].release_repo} with subfolder {BACKBONES['unet'].release_subfolder}. "
        "In ComfyUI, put the folder under models/rsedit/."
    )


def _check_complete(root: Path) -> None:
    weights = _weights_only(root)
    if weights and not is_editor_folder(root):
        folder = weights.split("/")[0]
        backbone = next(b for b in BACKBONES.values() if b.component_folder == folder)
        missing = [f"{folder}/config.json", *(f"{p}/" for p in EDITOR_PARTS if not (root / p).is_dir())]
        if not (root / "model_index.json").is_file():
            missing.append("model_index.json")
        target = root.parent if backbone.release_subfolder and root.name == backbone.release_subfolder else root
        raise ModelFormatError(
            f"'{root}' holds only the denoiser's weights ({weights}), as ComfyUI's one-file model download "
            f"leaves it; an editor also needs {', '.join(missing)}. Fetch the whole folder: "
            f"{backbone.fetch_command(str(target))}"
        )


def resolve_model_dir(
    spec: str | os.PathLike,
    subfolder: str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
) -> Path:
    """Turn a path, a hub id or a ComfyUI ``models/rsedit`` entry into an editor folder.

    Accepts the editor folder itself, a path to one of its component folders (``.../unet``), or a
    release root that holds exactly one editor folder. ``allow_download=False`` (ComfyUI nodes)
    never reaches the hub. An ``owner/name`` whose ``owner`` is an existing local folder is a path.
    """
    spec = str(spec)
    candidates = [Path(spec).expanduser()] + [Path(d) / spec for d in search_dirs]
    root = next((c for c in candidates if c.exists()), None)
    looked = [str(c) for c in candidates]
    near = _local_intent(spec, search_dirs) if root is None else None
    if root is None and near is None and allow_download and _HUB_ID.match(spec):
        root = _download(spec, subfolder)
        looked.append(f"hub:{spec}")
    if root is None:
        raise _not_found(spec, looked, near)
    if subfolder:
        root = root / subfolder
        if not root.is_dir():
            raise ModelNotFoundError(f"The model has no subfolder '{subfolder}' (looked for {root}).")
    if root.is_file():
        raise ModelFormatError(f"'{root}' is a single file; RSEdit editors are diffusers folders: {EDITOR_LAYOUT}.")
    if (root / "training_state.json").is_file():
        raise ModelFormatError(
            f"'{root}' is a training checkpoint, which holds only the trained model (and its EMA). Load the "
            f"run's editor/ folder ({root.parent / 'editor'}), written when training ends."
        )
    _check_complete(root)
    if not is_editor_folder(root) and is_editor_folder(root.parent):
        return root.parent
    if not is_editor_folder(root):
        inner = find_model_folders([root])
        if len(inner) == 1:
            _check_complete(root / inner[0])
            return root / inner[0]
        if inner:
            raise ModelNotFoundError(
                f"'{root}' holds several editors: {', '.join(inner)}. Pass one of them "
                "(as a path, or with --subfolder)."
            )
        raise ModelFormatError(
            f"'{root}' is not an RSEdit model folder: it has no unet/ (or transformer/) with a "
            f"config.json. Expected {EDITOR_LAYOUT}."
        )
    missing = [f"{part}/" for part in EDITOR_PARTS if not (root / part).is_dir()]
    if missing:
        raise ModelFormatError(f"{root} has no {', '.join(missing)} folder(s). Expected {EDITOR_LAYOUT}.")
    return root
