"""Restoring a prepared run from its checked checkpoint, exactly or (when asked) knowingly not.

accelerate's ``load_state`` restores the model and EMA (through :func:`register_checkpoint_hooks`),
the optimizer, the LR schedule and each process's RNG states. It only logs at INFO when an RNG
state does not load, so :func:`restore` does not rely on it: the states verified by
:mod:`.integrity` are compared after the load and applied again where accelerate left them
unrestored. A process whose RNG file was damaged is resumed only under ``--resume-inexact``: it
is reseeded from ``(seed, step, process)``, a warning says so, and ``training_state.json`` of
every later checkpoint records it (``exact: false`` and ``inexact_resumes``), as it records a
resume with settings that change what comes next (``checkpoints.SHOULD_MATCH``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RSEditError
from . import checkpoints
from .checkpoints import CheckpointError

logger = logging.getLogger("rsedit.train")


@dataclass(frozen=True)
class Position:
    """Where the run stands: optimisation steps done, the epoch, and batches into that epoch.
    Recorded, not derived: accelerate also steps at the end of an epoch whose batch count is not a
    multiple of the accumulation."""

    step: int = 0
    epoch: int = 0
    batches_into_epoch: int = 0


def register_checkpoint_hooks(accelerator, denoiser_cls, folder: str, ema) -> None:
    """Store the model (and its EMA) in checkpoints as diffusers folders instead of raw state dicts."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(Path(output_dir) / folder, safe_serialization=True)
            if ema is not None:
                ema.save_pretrained(str(Path(output_dir) / f"{folder}_ema"))
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        while models:
            model = models.pop()
            saved = denoiser_cls.from_pretrained(Path(input_dir) / folder)
            accelerator.unwrap_model(model).load_state_dict(saved.state_dict())
            del saved
        if ema is not None:
            saved_ema = type(ema).from_pretrained(str(Path(input_dir) / f"{folder}_ema"), model_cls=denoiser_cls)
            ema.load_state_dict(saved_ema.state_dict())
            ema.to(accelerator.device)
            del saved_ema

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _rng_matches(states: dict) -> bool:
    if random.getstate() != states["random_state"]:
        return False
    if not torch.equal(torch.get_rng_state(), states["torch_manual_seed"]):
        return False
    ours, saved = np.random.get_state(), states["numpy_random_seed"]
    return all(np.array_equal(a, b) for a, b in zip(ours, saved, strict=True))


def _apply_rng(states: dict) -> None:
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    if torch.cuda.is_available() and "torch_cuda_manual_seed" in states:
        torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])


def reseed(seed: int, step: int, process_index: int) -> int:
    """Seed Python's, numpy's and torch's global RNGs for an inexact continuation; returns the seed."""
    value = (seed + 1_000_003 * (step + 1) + process_index) % 2**32
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)  # every CUDA device too
    return value


def _load(run) -> None:
    try:
        run.accelerator.load_state(str(run.resume))
    except RSEditError:
        raise
    except Exception as e:
        text = str(e).strip().splitlines()
        raise CheckpointError(
            f"Could not load {run.resume}: {type(e).__name__}: {text[0] if text else ''}. Its files passed the "
            "checks, so it was most likely written by another version of RSEdit or its libraries. Resume from "
            "another checkpoint (--resume checkpoint-N) or start afresh in a new --output-dir."
        ) from e


def restore(run) -> Position:
    """Load the run's checkpoint into it (every process) and return where to continue."""
    args, accelerator = run.args, run.accelerator
    if run.checkpoint is None:
        if args.resume:
            logger.info("--resume %s: no checkpoint in %s yet, starting from step 0", args.resume, run.output_dir)
        return Position()
    report, saved = run.checkpoint, run.checkpoint.state
    position = Position(saved["step"], saved["epoch"], saved["batches_into_epoch"])
    _load(run)
    if run.ema is not None:
        run.ema.decay = args.ema_decay  # the flag wins over the decay stored with the EMA
    index = accelerator.process_index
    states = report.rng_states.get(index)
    if states is not None and not _rng_matches(states):
        logger.warning("accelerate left the RNG states of process %d unrestored; applying %s", index, report.path)
        _apply_rng(states)
    elif index in report.rng_problems:
        reseed(args.seed, position.step, index)
        # accelerate's micro-batch counter comes from that file too; it restarts with every epoch.
        accelerator.step = position.batches_into_epoch
    history = list(saved.get("inexact_resumes", []))
    problems = [*report.inexact, *run.resume_differences]
    if problems:
        history.append({"step": position.step, "checkpoint": report.path.name, "problems": problems})
    if report.rng_problems and run.is_main:
        logger.warning(
            "Resuming %s INEXACTLY (--resume-inexact): %s. The RNG of process(es) %s was reseeded, so "
            "this run no longer matches an uninterrupted one; later checkpoints record it "
            "(training_state.json: exact false).",
            report.path,
            "; ".join(report.inexact),
            ", ".join(map(str, sorted(report.rng_problems))),
        )
    run.settings["exact"] = not history
    run.settings["inexact_resumes"] = history
    logger.info(
        "Resumed from %s at step %d (epoch %d, batch %d)",
        report.path,
        position.step,
        position.epoch,
        position.batches_into_epoch,
    )
    if run.is_main:
        checkpoints.set_aside_newer(run.output_dir, position.step)
    return position
