"""A checkpoint checked file by file before any model is loaded.

accelerate's ``load_state`` reads a checkpoint as it finds it: a truncated ``optimizer.bin`` fails
deep inside ``torch.load`` after the models have loaded, and an unreadable ``random_states_N.pkl``
is only logged at INFO ("Could not load random states") while the run goes on, no longer exact.
:func:`check_checkpoint` reads every file that a resume needs first (the state file fully; RNG
states fully, validated against fresh generators; optimizer and scheduler files as zip archives
with their checksums; model folders' configs and safetensors headers) and refuses with the file
named and the fix. Only damaged RNG states can be accepted, with ``--resume-inexact``: they change
which random numbers come next, not what the saved weights and optimizer state mean.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoints import MUST_MATCH, STATE_FILE, CheckpointError, list_checkpoints

logger = logging.getLogger(__name__)

POSITION_KEYS = ("step", "epoch", "batches_into_epoch")
RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")
OPTIMIZER_FILE, SCHEDULER_FILE, DEEPSPEED_FOLDER = "optimizer.bin", "scheduler.bin", "pytorch_model"
# Zip members of torch files up to this size are read in full to verify their CRC-32; larger ones
# (an SD-1.5 Prodigy state is ~14 GB) only have their directory checked against the file size.
CRC_LIMIT = 256 * 2**20
# How many older checkpoints are checked to name one to resume from instead.
OLDER_TO_TRY = 3


def rng_file(index: int) -> str:
    return f"random_states_{index}.pkl"


@dataclass
class CheckpointReport:
    """What :func:`inspect_checkpoint` found. ``state`` is the parsed state file (``{}`` when it is
    unreadable); ``rng_states`` maps a process index to its verified RNG states; ``fatal`` problems
    stop a resume; ``rng_problems`` (process index -> problem) stop it unless ``--resume-inexact``
    is given."""

    path: Path
    state: dict = field(default_factory=dict)
    rng_states: dict[int, dict] = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)
    rng_problems: dict[int, str] = field(default_factory=dict)

    @property
    def inexact(self) -> list[str]:
        return list(self.rng_problems.values())

    @property
    def whole(self) -> bool:
        return not self.fatal and not self.inexact


def _first_line(error: BaseException) -> str:
    """``Type: first sentence`` of an error (torch's zip errors run to five sentences)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 120 and ". " in text[20:]:
        text = text[: text.index(". ", 20) + 1]
    return f"{type(error).__name__}: {text}".rstrip(": ")


def _read_state(path: Path) -> tuple[dict, list[str]]:
    file = path / STATE_FILE
    if not file.is_file():
        return {}, [f"{file} is missing"]
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, [f"{file} is not readable JSON ({_first_line(e)})"]
    if not isinstance(state, dict):
        return {}, [f"{file} is not a JSON object"]
    missing = [key for key in (*POSITION_KEYS, *MUST_MATCH) if key not in state]
    if missing:
        return state, [f"{file} lacks {', '.join(missing)}"]
    bad = [k for k in POSITION_KEYS if not isinstance(state[k], int) or isinstance(state[k], bool) or state[k] < 0]
    if bad:
        return state, [f"{file} has invalid {', '.join(f'{k}={state[k]!r}' for k in bad)}"]
    return state, []


def _torch_file_problem(file: Path) -> str | None:
    """``torch.save`` writes a zip archive: truncation loses its directory, which sits at the end."""
    if not file.is_file():
        return f"{file} is missing"
    size = file.stat().st_size
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"{file} ({size:,} bytes) is truncated: member {info.filename} runs past its end"
            if size <= CRC_LIMIT:
                broken = archive.testzip()
                if broken is not None:
                    return f"{file} is corrupt: member {broken} fails its checksum"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"{file} ({size:,} bytes) is truncated or not a torch file ({_first_line(e)})"
    return None


def _model_folder_problems(folder: Path) -> list[str]:
    if not folder.is_dir():
        return [f"{folder} is missing"]
    problems = []
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            problems.append(f"{folder / 'config.json'} is not a JSON object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problems.append(f"{folder / 'config.json'} is not readable JSON ({_first_line(e)})")
    files = sorted(folder.glob("*.safetensors"))
    for index in folder.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"{index} is not a readable shard index ({_first_line(e)})")
            continue
        problems += [f"{folder / shard} (listed in {index.name}) is missing" for shard in sorted(shards)
                     if not (folder / shard).is_file()]  # fmt: skip
    if not files:
        return [*problems, f"{folder} holds no safetensors weights"]
    from safetensors import safe_open

    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            problems.append(f"{file} ({file.stat().st_size:,} bytes) is truncated or corrupt ({_first_line(e)})")
    return problems


def read_rng_states(file: Path, need_cuda: bool) -> tuple[dict | None, str | None]:
    """The RNG states of one process, loaded as accelerate loads them and tried on fresh
    generators (the global ones are untouched); or the problem that stops them from applying."""
    if not file.is_file():
        return None, f"{file} is missing"
    from accelerate.utils import load

    try:
        states = load(file)
    except Exception as e:  # noqa: BLE001 - torch.load fails in many ways on a damaged pickle
        return None, f"{file} is unreadable ({_first_line(e)})"
    if not isinstance(states, dict):
        return None, f"{file} does not hold RNG states"
    missing = [key for key in RNG_KEYS if key not in states]
    if missing:
        return None, f"{file} lacks {', '.join(missing)}"
    try:
        random.Random().setstate(states["random_state"])
        np.random.RandomState().set_state(states["numpy_random_seed"])
        torch.Generator().set_state(states["torch_manual_seed"])
    except Exception as e:  # noqa: BLE001 - each RNG raises its own type on a bad state
        return None, f"{file} holds an invalid RNG state ({_first_line(e)})"
    if need_cuda:
        cuda = states.get("torch_cuda_manual_seed")
        if not isinstance(cuda, list | tuple) or not all(torch.is_tensor(s) and s.dtype == torch.uint8 for s in cuda):
            return None, f"{file} holds no CUDA RNG state (written by a run without a GPU?)"
    return states, None


def inspect_checkpoint(
    path: str | os.PathLike,
    *,
    num_processes: int,
    component_folder: str,
    use_ema: bool,
    deepspeed: bool = False,
    need_cuda: bool | None = None,
) -> CheckpointReport:
    """Check every file a resume of ``path`` reads; nothing is loaded into a model."""
    path = Path(path)
    report = CheckpointReport(path)
    if path.is_dir() and not any(path.iterdir()):
        report.fatal = [f"{path} is empty: every file of the checkpoint is gone"]
        return report
    report.state, report.fatal = _read_state(path)
    report.fatal += _model_folder_problems(path / component_folder)
    if use_ema:
        report.fatal += _model_folder_problems(path / f"{component_folder}_ema")
    if deepspeed:
        folder = path / DEEPSPEED_FOLDER
        if not folder.is_dir():
            report.fatal.append(f"{folder} (DeepSpeed's model and optimizer state) is missing")
        else:
            report.fatal += [p for f in sorted(folder.rglob("*.pt")) if (p := _torch_file_problem(f))]
    else:
        report.fatal += [p for p in [_torch_file_problem(path / OPTIMIZER_FILE)] if p]
    # Under DeepSpeed (never run by our CI) the schedule is saved by accelerate too, unless the
    # DeepSpeed config owns it; there it is checked when present.
    if not deepspeed or (path / SCHEDULER_FILE).exists():
        report.fatal += [p for p in [_torch_file_problem(path / SCHEDULER_FILE)] if p]
    if need_cuda is None:
        need_cuda = torch.cuda.is_available()
    saved = report.state.get("num_processes", num_processes)
    saved = saved if isinstance(saved, int) and saved > 0 else num_processes
    # Processes the checkpoint never had keep their seeded state; check_compatible warns about that.
    for index in range(min(num_processes, saved)):
        states, problem = read_rng_states(path / rng_file(index), need_cuda)
        if problem:
            report.rng_problems[index] = problem
        else:
            report.rng_states[index] = states
    return report


def _older_whole(report: CheckpointReport, **expected) -> tuple[Path | None, bool]:
    """The newest older checkpoint beside ``report.path`` that passes the same checks, and whether
    there is any older checkpoint at all."""
    match = re.match(r"^checkpoint-(\d+)$", report.path.name)
    limit = int(match.group(1)) if match else report.state.get("step")
    if not isinstance(limit, int):
        return None, True
    older = [p for step, p in list_checkpoints(report.path.parent) if step < limit]
    for candidate in reversed(older[-OLDER_TO_TRY:]):
        if inspect_checkpoint(candidate, **expected).whole:
            return candidate, True
    return None, bool(older)


def check_checkpoint(
    path: str | os.PathLike,
    *,
    allow_inexact: bool = False,
    check_state: Callable[[dict], None] | None = None,
    **expected,
) -> CheckpointReport:
    """:func:`inspect_checkpoint`, then raise a :class:`CheckpointError` naming every damaged file
    and the fix, unless the only problems are RNG states and ``allow_inexact`` is set.
    ``check_state(state)`` runs first when the state file is whole (the compatibility check: a
    checkpoint of another kind of run is told as such, not as missing files)."""
    report = inspect_checkpoint(path, **expected)
    if check_state is not None and report.state and not any(STATE_FILE in p for p in report.fatal):
        check_state(report.state)
    if report.whole or (allow_inexact and not report.fatal):
        return report
    older, any_older = _older_whole(report, **expected)
    if older:
        fixes = [
            f"resume from an older checkpoint ({older.name} passes these checks: --resume {older.name})",
            "or start afresh in a new --output-dir",
        ]
    elif any_older:
        fixes = [
            "resume from an older checkpoint (--resume checkpoint-N; none of the newest older ones is whole)",
            "or start afresh in a new --output-dir",
        ]
    else:
        fixes = [
            f"start afresh in a new --output-dir (there is no older checkpoint in {report.path.parent})",
            f"or remove {report.path} to train from step 0 in this one",
        ]
    if not report.fatal:
        fixes.append(
            "or pass --resume-inexact to continue with those processes reseeded: the run will then no "
            "longer match an uninterrupted one"
        )
    problems = [*report.fatal, *report.inexact]
    raise CheckpointError(
        f"Cannot resume from {report.path}: " + "; ".join(problems) + ". The checkpoint is damaged (a copy "
        "cut short, a full disk or a failing drive). To continue, " + ", ".join(fixes) + "."
    )
