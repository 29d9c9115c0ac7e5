"""Where an editor is: a folder, a hub id or a ComfyUI ``models/rsedit`` entry, resolved to one
editor folder, with errors that say where we looked and how to get the rest.

The kind of model is read from its configs (``unet/config.json``, ``transformer/config.json``),
never from its name.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from .backbones import BACKBONES, component_folders, detect_backbone
from .errors import InputError, ModelFormatError, ModelNotFoundError, RSEditError, require
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


def _subfolder_names(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    except OSError:
        return []


class _Problem(NamedTuple):
    index: int  # of the first component that fails
    absent: bool  # it just does not exist (rather than a loop, a broken link, a file)
    sentence: str
    reached: Path  # the deepest folder that exists


def _first_problem(path: Path) -> _Problem | None:
    """Where ``path`` stops leading anywhere, naming the first component that is absent, a symlink
    loop, a broken symlink, a file where a folder must be, or unreadable; None when the path
    exists. An absolute path is walked from its root and a relative one from the current folder,
    so ``''`` and ``.`` parts (``/x``, ``./x``, ``a//b``) never stand for a name."""
    parts = path.parts
    current, names = (Path(parts[0]), parts[1:]) if path.anchor else (Path(), parts)
    for index, name in enumerate(names):
        here = current / name
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            close = difflib.get_close_matches(name, _subfolder_names(current), n=3, cutoff=0.5)
            rest = names[index + 1 :]
            guesses = ", ".join(str(Path(current, guess, *rest)) for guess in close)
            sentence = f"{here} does not exist" + (f"; did you mean {guesses}?" if guesses else ".")
            return _Problem(index, True, sentence, current)
        except PermissionError:
            sentence = f"{current} cannot be read (permission denied), so {here} cannot be reached."
            return _Problem(index, False, sentence, current)
        except OSError as e:
            return _Problem(index, False, f"{here} cannot be reached ({e.strerror or e}).", current)
        if stat.S_ISLNK(info.st_mode):
            try:
                os.stat(here)
            except OSError as e:
                target = os.readlink(here)
                if e.errno == errno.ELOOP:
                    sentence = (
                        f"{here} is a symlink loop (it links to {target}, which leads back to it); point the link "
                        "at the real folder."
                    )
                else:
                    sentence = f"{here} is a broken symlink: it links to {target}, which does not exist."
                return _Problem(index, False, sentence, current)
        if index < len(names) - 1 and not here.is_dir():
            return _Problem(index, False, f"{here} is a file, not a folder.", current)
        current = here
    return None


def _explicitly_local(spec: str) -> bool:
    """``/x``, ``./x``, ``../x``, ``~/x`` (and Windows drive paths) are paths, never hub ids."""
    return Path(spec).is_absolute() or spec.startswith((".", "~", os.sep)) or bool(Path(spec).drive)


def _local_problem(spec: str, candidates: list[Path]) -> _Problem | None:
    """What is missing when ``spec`` is meant as a local path (None: it may be a hub id).

    The candidate that leads furthest is described. A spec whose first component exists (or is a
    link or a file) is local: ``models/RSEdt`` where ``models/`` exists is a mistyped path.
    """
    problems = [problem for problem in map(_first_problem, candidates) if problem is not None]
    if not problems:
        return None
    problem = max(problems, key=lambda p: p.index)
    return problem if problem.index > 0 or not problem.absent or _explicitly_local(spec) else None


def _not_found(spec: str, looked: list[str], problem: _Problem | None, hub_possible: bool) -> ModelNotFoundError:
    hint = f" {problem.sentence}" if problem else ""
    if problem and problem.index > 0 and hub_possible and not _explicitly_local(spec):
        hint += f" (Treated as a local path, not a hub id, because {problem.reached} exists.)"
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


def _check_parts(root: Path) -> None:
    missing = [f"{part}/" for part in EDITOR_PARTS if not (root / part).is_dir()]
    if missing:
        raise ModelFormatError(f"{root} has no {', '.join(missing)} folder(s). Expected {EDITOR_LAYOUT}.")


def editor_problem(root: Path, text_to_image_ok: bool = False) -> RSEditError | None:
    """Why ``root`` is not an editor that :func:`~rsedit_core.loading.load_editor` would load (its
    configs are read, no weights), or None. ``text_to_image_ok`` also accepts a fine-tuning base."""
    try:
        if (root / "training_state.json").is_file():
            raise ModelFormatError(f"'{root}' is a training checkpoint, not an editor.")
        _check_complete(root)
        _check_parts(root)
        detect_backbone(root, text_to_image_ok)
    except RSEditError as e:
        return e
    return None


def _one_inner_editor(root: Path, text_to_image_ok: bool) -> Path:
    """The one editor below ``root``. Folders that only look like one (a text-to-image model, a
    partial download) are never offered as editors; when nothing else is there, the one found
    explains itself."""
    found = find_model_folders([root])
    if not found:
        raise ModelFormatError(
            f"'{root}' is not an RSEdit model folder: it has no unet/ (or transformer/) with a "
            f"config.json. Expected {EDITOR_LAYOUT}."
        )
    problems = {name: editor_problem(root / name, text_to_image_ok) for name in found}
    editors = [name for name in found if problems[name] is None]
    others = [name for name in found if problems[name] is not None]
    if len(editors) == 1:
        return root / editors[0]
    if len(found) == 1:
        raise problems[found[0]]
    skipped = f" Not editors, so not offered: {', '.join(others)}." if others else ""
    if editors:
        raise ModelNotFoundError(
            f"'{root}' holds several editors: {', '.join(editors)}. Pass one of them "
            f"(as a path, or with --subfolder).{skipped}"
        )
    reasons = "; ".join(f"{name}: {problems[name]}" for name in others)
    raise ModelFormatError(f"'{root}' holds no editor that can be loaded. Found: {reasons}")


def resolve_model_dir(
    spec: str | os.PathLike,
    subfolder: str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
    text_to_image_ok: bool = False,
) -> Path:
    """Turn a path, a hub id or a ComfyUI ``models/rsedit`` entry into an editor folder.

    Accepts the editor folder itself, a path to one of its component folders (``.../unet``), or a
    release root that holds exactly one editor folder (``text_to_image_ok``: or one fine-tuning
    base). ``allow_download=False`` (ComfyUI nodes) never reaches the hub. An ``owner/name`` whose
    ``owner`` is an existing local folder is a path.
    """
    if not isinstance(spec, str | os.PathLike):
        raise InputError(f"The model must be a path or a hub id (a string); got {type(spec).__name__}.")
    spec = os.fspath(spec)
    if isinstance(spec, bytes) or not spec.strip():
        raise InputError(
            f"No model was given (the model path is {spec!r}). Pass an editor folder, a hub id such as "
            f"{BACKBONES['unet'].release_repo} (with subfolder {BACKBONES['unet'].release_subfolder}) or a "
            "ComfyUI models/rsedit entry; for the current folder, write '.'."
        )
    candidates = [Path(spec).expanduser()] + [Path(d) / spec for d in search_dirs]
    root = next((c for c in candidates if c.exists()), None)
    looked = list(dict.fromkeys(str(c) for c in candidates))
    problem = _local_problem(spec, candidates) if root is None else None
    hub_possible = allow_download and bool(_HUB_ID.match(spec))
    if root is None and problem is None and hub_possible:
        root = _download(spec, subfolder)
        looked.append(f"hub:{spec}")
    if root is None:
        raise _not_found(spec, looked, problem, hub_possible)
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
        return _one_inner_editor(root, text_to_image_ok)
    _check_parts(root)
    return root
