"""Training checkpoints: atomic writes, rotation, ``--resume latest`` and compatibility checks.

A checkpoint is ``checkpoint-N/`` holding accelerate's state (optimizer, LR scheduler, RNG
states of every process, data position) and diffusers folders of the model and its EMA
(``unet/`` + ``unet_ema/`` or ``transformer/`` + ``transformer_ema/``), plus
``training_state.json``. It is written into ``checkpoint-N.partial/`` and renamed only once
complete and flushed to disk, so a crash or a full disk mid-save leaves every earlier
checkpoint whole; leftovers of an interrupted save are ignored and removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError, RSEditError

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.json"
# The final editor goes beside the checkpoints in the run folder, so copying it never drags them along.
EDITOR_FOLDER = "editor"
PARTIAL_SUFFIX = ".partial"
_NAME = re.compile(r"^checkpoint-(\d+)$")

# Settings a checkpoint must share with the run that resumes it: they change what the saved
# optimizer and model states mean. Others (batch size, data) only change what comes next.
MUST_MATCH = ("backbone", "denoiser_config", "optimizer", "use_ema", "text_encoder", "position_table")
SHOULD_MATCH = (
    "base",
    "resolution",
    "train_batch_size",
    "gradient_accumulation_steps",
    "num_processes",
    "seed",
    "data",
    "conditioning_dropout",
    "ema_decay",
)


class CheckpointError(RSEditError):
    """A checkpoint cannot be written or resumed."""


def checkpoint_folders(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every ``checkpoint-N`` folder under ``output_dir`` as ``(step, path)``, oldest first, whole
    or not (a save in progress is ``checkpoint-N.partial`` and never among them)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``output_dir`` as ``(step, path)``, oldest first."""
    return [(step, path) for step, path in checkpoint_folders(output_dir) if (path / STATE_FILE).is_file()]


def remove_partial(output_dir: str | os.PathLike) -> list[Path]:
    """Delete what an interrupted save left behind; returns what was removed."""
    output_dir = Path(output_dir)
    removed = [p for p in output_dir.glob(f"checkpoint-*{PARTIAL_SUFFIX}") if p.is_dir()] if output_dir.is_dir() else []
    for path in removed:
        logger.warning("Removing %s, left by an interrupted checkpoint save", path)
        shutil.rmtree(path, ignore_errors=True)
    return removed


def resolve_resume(spec: str | None, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``--resume`` names: ``latest`` (None if there is none yet: a fresh start),
    a ``checkpoint-N`` name inside ``output_dir``, or a path.

    ``latest`` is the newest ``checkpoint-N`` folder, whole or not: one whose files are gone (even
    all of them) is a damaged checkpoint for :func:`~rsedit_core.train.integrity.check_checkpoint`
    to refuse with the fix, never "no checkpoint yet" (a fresh start would later rotate it away)."""
    if not spec:
        return None
    if spec == "latest":
        found = checkpoint_folders(output_dir)
        return found[-1][1] if found else None
    path = Path(spec)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / spec
    if not (path / STATE_FILE).is_file():
        available = ", ".join(p.name for _, p in list_checkpoints(output_dir)) or "none"
        raise InputError(
            f"--resume {spec}: {path} is not a complete checkpoint (no {STATE_FILE}). "
            f"Checkpoints in {output_dir}: {available}. Use --resume latest or one of those names."
        )
    return path


def read_state(path: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot read {Path(path) / STATE_FILE}: {e}. Resume from an earlier checkpoint.") from e


def set_aside_newer(output_dir: str | os.PathLike, step: int) -> list[Path]:
    """After resuming from step ``step``, rename later checkpoints (an abandoned continuation) to
    ``checkpoint-N.superseded`` so that ``--resume latest`` and rotation never pick them (damaged
    ones too). Nothing is deleted."""
    moved = []
    for later_step, path in checkpoint_folders(output_dir):
        if later_step > step:
            target = path.with_name(path.name + ".superseded")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(path, target)
            logger.warning("Resumed from step %d: set %s aside as %s", step, path.name, target.name)
            moved.append(target)
    return moved


def check_compatible(saved: dict, current: dict, where: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Raise if ``saved`` (a checkpoint's run settings) cannot be resumed by ``current``; return
    warnings for settings that differ but only change what comes next. ``skip`` leaves out keys
    not known yet (the denoiser config, before the model is loaded)."""
    differences = []
    for key in MUST_MATCH:
        if key not in skip and saved.get(key) != current.get(key):
            differences.append(f"{key}: checkpoint {_short(saved.get(key))}, this run {_short(current.get(key))}")
    if differences:
        raise CheckpointError(
            f"{where} was written by an incompatible run: " + "; ".join(differences) + ". Resume with the "
            "checkpoint's settings, or start a new run in another --output-dir."
        )
    return [
        f"{key} differs (checkpoint {_short(saved.get(key))}, this run {_short(current.get(key))}): "
        "resuming, but the continuation will not match an uninterrupted run exactly"
        for key in SHOULD_MATCH
        if key not in skip and saved.get(key) != current.get(key)
    ]


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def begin_checkpoint(output_dir: str | os.PathLike, step: int) -> Path:
    """Create an empty ``checkpoint-N.partial`` to save into (main process only)."""
    partial = Path(output_dir) / f"checkpoint-{step}{PARTIAL_SUFFIX}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def finish_checkpoint(partial: Path, state: dict, total_limit: int | None) -> Path:
    """Write the state file, flush, rename ``checkpoint-N.partial`` to ``checkpoint-N`` and
    delete the oldest complete checkpoints beyond ``total_limit`` (main process only)."""
    (partial / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    _fsync_tree(partial)
    final = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
    if final.exists():
        stale = final.with_name(final.name + ".old")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final, stale)
        os.replace(partial, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(partial, final)
    if total_limit:
        older = [path for _, path in list_checkpoints(final.parent) if path != final]
        for old in older[: max(0, len(older) + 1 - total_limit)]:
            logger.info("Removing %s (--checkpoints-total-limit %d)", old, total_limit)
            shutil.rmtree(old, ignore_errors=True)
    return final


def abandon_checkpoint(partial: Path, error: BaseException, output_dir: str | os.PathLike) -> CheckpointError:
    """Clean up a failed save and explain what is still safe to resume from."""
    shutil.rmtree(partial, ignore_errors=True)
    previous = list_checkpoints(output_dir)
    kept = (
        f"The previous checkpoint {previous[-1][1].name} is untouched and loadable"
        if previous
        else "No earlier checkpoint exists"
    )
    return CheckpointError(
        f"Could not write {partial.name[: -len(PARTIAL_SUFFIX)]} in {output_dir}: {error}. {kept}. "
        "Free disk space (or point --output-dir at a larger disk), then rerun with --resume latest."
    )


def save_checkpoint(
    output_dir: str | os.PathLike,
    step: int,
    state: dict,
    write: Callable[[Path], None],
    total_limit: int | None,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Save ``checkpoint-<step>`` atomically: ``write(partial_dir)`` runs on every process (each
    process stores its own RNG state; model and optimizer files come from the main process), then
    the main process finishes and rotates."""
    partial = Path(output_dir) / f"checkpoint-{step}{PARTIAL_SUFFIX}"
    if is_main:
        begin_checkpoint(output_dir, step)
    barrier()
    try:
        write(partial)
        barrier()
        if is_main:
            final = finish_checkpoint(partial, state, total_limit)
            logger.info("Saved %s", final)
    except Exception as e:
        # A full disk surfaces as OSError, torch's "unexpected pos" RuntimeError or a
        # SafetensorError depending on the writer; all of them leave the same half-written folder.
        raise abandon_checkpoint(partial, e, output_dir) from e
    barrier()
    return partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
