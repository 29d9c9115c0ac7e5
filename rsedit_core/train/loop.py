"""The training loop: :func:`train` = :func:`~.preparation.prepare`, :func:`~.resume.restore`,
:func:`run_loop`.

``run_loop`` steps through the epochs from a :class:`~.resume.Position`, logs, checkpoints and
validates, stops on a broken data copy, and exports the final editor to ``OUT/editor/``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from ..errors import InputError, RSEditError
from . import checkpoints
from .checkpoints import EDITOR_FOLDER
from .models import export_editor, restore_frozen_parts
from .preparation import TrainingRun, prepare
from .resume import Position, restore
from .runner import StepRunner, memory_in_use_gb
from .validation import log_validation
from .workers import batches

logger = logging.getLogger("rsedit.train")

# Stop once more than --max-corrupt-fraction of the drawn samples were unreadable, counting at
# least this many: a few bad tiles in 62k are expected and skipped, more means a broken copy.
MIN_CORRUPT_TO_STOP = 10


class _Stream:
    """Counts of the drawn samples, and the throughput window (training time only)."""

    def __init__(self, max_corrupt_fraction: float) -> None:
        self.max_corrupt_fraction = max_corrupt_fraction
        self.draws = self.corrupt = 0
        self.window_start, self.window_steps = time.perf_counter(), 0

    def count(self, batch: dict) -> None:
        self.draws += len(batch["index"])
        self.corrupt += int(batch["skipped"].sum())
        if self.corrupt >= MIN_CORRUPT_TO_STOP and self.corrupt > self.max_corrupt_fraction * self.draws:
            raise InputError(
                f"{self.corrupt} of the {self.draws} samples this process has drawn were unreadable images (more "
                f"than --max-corrupt-fraction {self.max_corrupt_fraction}); the data copy looks broken. "
                "Check the files named in the warnings above, re-copy the dataset, or raise the fraction."
            )

    def throughput(self, pairs_per_step: int) -> float:
        elapsed = time.perf_counter() - self.window_start
        rate = self.window_steps * pairs_per_step / max(elapsed, 1e-9)
        self.window_start, self.window_steps = time.perf_counter(), 0
        return rate


def _save(run: TrainingRun, step: int, epoch: int, batches_into_epoch: int) -> None:
    accelerator = run.accelerator
    checkpoints.save_checkpoint(
        run.output_dir,
        step,
        {**run.settings, "step": step, "epoch": epoch, "batches_into_epoch": batches_into_epoch},
        lambda partial: accelerator.save_state(str(partial)),
        run.args.checkpoints_total_limit,
        is_main=run.is_main,
        barrier=accelerator.wait_for_everyone,
    )


def _step_logs(run: TrainingRun, losses: list[torch.Tensor]) -> dict:
    # The loss of the optimisation step: the mean over its micro-batches and processes.
    loss = run.accelerator.gather(torch.stack(losses).mean()[None]).mean().item()
    logs = {"loss": loss, "lr": run.lr_scheduler.get_last_lr()[0]}
    group = run.optimizer.param_groups[0]
    if "d" in group:
        logs["prodigy_d"] = float(group["d"])
    return logs


def export(run: TrainingRun) -> Path:
    """Write ``OUT/editor/`` (EMA or raw weights; the base's own full-precision VAE and text
    encoder) on the main process; returns its path on every process."""
    editor_dir = run.output_dir / EDITOR_FOLDER
    if run.is_main:
        args = run.args
        final = run.accelerator.unwrap_model(run.editor.denoiser)
        if run.ema is not None and args.export_weights == "ema":
            run.ema.copy_to(final.parameters())
        export_editor(run.editor, final, editor_dir)
        if run.weight_dtype != torch.float32:
            restore_frozen_parts(editor_dir, run.editor.root, args.text_encoder, args.position_table)
        if not run.settings.get("exact", True):
            logger.warning("This run was resumed inexactly (see training_state.json: inexact_resumes).")
        logger.info(
            "Done: the editor is %s. Use it with `rsedit edit --model %s`, or copy that folder to "
            "ComfyUI/models/rsedit/.",
            editor_dir,
            editor_dir,
        )
    return editor_dir


def run_loop(run: TrainingRun, position: Position) -> Path:
    """Train from ``position`` to ``--max-train-steps``, then export; returns the editor folder."""
    from tqdm.auto import tqdm

    args, accelerator, loader = run.args, run.accelerator, run.loader
    global_step = position.step
    if global_step >= args.max_train_steps:
        logger.info("Already at step %d of --max-train-steps %d: nothing to train", global_step, args.max_train_steps)
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    epochs = position.epoch + math.ceil((args.max_train_steps - global_step) / steps_per_epoch) + 1
    if run.is_main and args.report_to != "none":
        accelerator.init_trackers("rsedit", config={k: str(v) for k, v in vars(args).items()})

    run_step = StepRunner(
        accelerator, run.editor, run.noise_scheduler, run.optimizer, run.lr_scheduler, run.ema, run.text_feed, args
    )
    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        "Training the %s (base: %s) for %d steps of %d pairs (%d per process x %d processes x %d accumulation)",
        run.editor.backbone.display_name,
        run.base_kind,
        args.max_train_steps,
        total_batch,
        args.train_batch_size,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
    )
    progress = tqdm(total=args.max_train_steps, initial=global_step, desc="steps", disable=not run.is_main)
    stream = _Stream(args.max_corrupt_fraction)
    losses = []
    for epoch in range(position.epoch, epochs):
        if global_step >= args.max_train_steps:
            break
        start = position.batches_into_epoch if epoch == position.epoch else 0
        # Set on the sampler itself: with several processes accelerate's wrappers around a
        # skipping loader do not pass set_epoch down to it.
        run.sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(loader, start) if start else loader
        for at, batch in enumerate(batches(epoch_loader), start=start + 1):
            stream.count(batch)
            losses.append(run_step(batch))
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            stream.window_steps += 1
            progress.update(1)
            logs = _step_logs(run, losses)
            losses.clear()
            if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
                logs["pairs_per_second"] = stream.throughput(total_batch)
                logs["memory_gb"] = memory_in_use_gb(accelerator.device)
            progress.set_postfix(loss=f"{logs['loss']:.4f}")
            accelerator.log(logs, step=global_step)
            paused = time.perf_counter()
            if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
                at_end = at == len(loader)
                _save(run, global_step, epoch + 1 if at_end else epoch, 0 if at_end else at)
            if run.validation_pairs and global_step % args.validation_steps == 0:
                metrics = log_validation(
                    accelerator, run.editor, run.validation_pairs, args, global_step, run.damage_model
                )
                accelerator.log(metrics, step=global_step)
            stream.window_start += time.perf_counter() - paused  # throughput counts training time only
            if global_step >= args.max_train_steps:
                break
    progress.close()
    accelerator.wait_for_everyone()
    if global_step < args.max_train_steps:
        raise RSEditError(f"Training stopped at step {global_step} of {args.max_train_steps}: the data ran out.")
    editor_dir = export(run)
    accelerator.end_training()
    return editor_dir


def train(args) -> Path:
    """Fine-tune an editor as ``args`` (from :func:`~.args.parse_args`) say; returns ``OUT/editor``."""
    run = prepare(args)
    return run_loop(run, restore(run))
