"""Validation during training: edit a fixed set of pairs and, optionally, score the edits.

The same pairs, seed and settings are used at every validation, so the logged images show how
the editor changes over training. With a damage model and ground-truth masks (the RSCC test
split's ``mask`` images, values 0..4), the edits are scored the way the paper scores them: the
damage model assesses (pre, edit) and xView2 F1 is computed against the masks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..edit import edit_images
from ..editor import EditorModel
from ..settings import EditSettings

logger = logging.getLogger(__name__)


@dataclass
class ValidationPair:
    """``pre`` ``(1, 3, H, W)`` in 0..1, its instruction, and an optional ground-truth damage map
    ``(H, W)`` uint8 in 0..4."""

    name: str
    pre: torch.Tensor
    caption: str
    damage_truth: np.ndarray | None = None


@dataclass
class ValidationResult:
    """Edits ``(N, 3, H, W)`` in 0..1 (one per pair, in order) and scalar metrics to log."""

    edits: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def run_validation(
    model: EditorModel,
    pairs: list[ValidationPair],
    settings: EditSettings,
    damage_model=None,
) -> ValidationResult:
    """Edit every pair with ``settings`` (a fixed seed); score with ``damage_model`` where masks exist.

    The denoiser is put in eval mode for the edits and back in train mode after. Randomness
    comes from the settings' seed, never from the global generator, so validating does not
    change the training run.
    """
    denoiser = model.denoiser
    was_training = denoiser.training
    denoiser.eval()
    try:
        edits = [edit_images(model, pair.pre, pair.caption, settings=settings).images for pair in pairs]
    finally:
        denoiser.train(was_training)
    edited = torch.cat(edits).float().cpu()
    metrics: dict[str, float] = {}
    scored = [(pair, edit) for pair, edit in zip(pairs, edited, strict=True) if pair.damage_truth is not None]
    if damage_model is not None and scored:
        from ..damage.inference import assess
        from ..damage.metrics import DamageMetrics

        counts = DamageMetrics()
        device = next(damage_model.parameters()).device
        for pair, edit in scored:
            result = assess(damage_model, pair.pre.to(device), edit[None].to(device))
            counts.update(result.damage[0].cpu().numpy(), pair.damage_truth)
        scores = counts.compute()
        metrics = {"val/f1_dam": scores.f1_dam, "val/f1_loc": scores.f1_loc, "val/xview2_score": scores.score}
        logger.info("Validation on %d pairs: F1_dam %.4f, F1_loc %.4f", len(scored), scores.f1_dam, scores.f1_loc)
    return ValidationResult(edited, metrics)


def load_validation_pairs(model: EditorModel, pairs: list, source, resolution: int, limit: int) -> list[ValidationPair]:
    """The first ``limit`` of ``pairs`` (from :func:`~rsedit_core.train.data.discover_pairs`),
    centre-cropped to ``resolution``, with their ground-truth damage maps when the records name a
    ``mask``.

    Their instructions are encoded now, so validation never needs the text encoder again (it
    may be moved off the accelerator when a text-embedding cache is used).
    """
    from PIL import Image

    from ..damage.inference import read_damage_map
    from ..text import encode_text
    from .data import EditPairDataset

    pairs = pairs[:limit]
    dataset = EditPairDataset(pairs, source, resolution)
    loaded = []
    for i, pair in enumerate(pairs):
        pre = (dataset[i]["pre"][None] + 1) / 2
        truth = None
        if pair.mask:
            with Image.open(pair.mask) as image:
                truth = read_damage_map(np.asarray(image))
            if truth.shape != tuple(pre.shape[-2:]):
                logger.warning(
                    "Validation mask %s is %s, not %s: F1 is not computed for this pair",
                    pair.mask,
                    truth.shape,
                    tuple(pre.shape[-2:]),
                )
                truth = None
        encode_text(model, pair.caption)
        name = Path(str(pair.pre)).stem if isinstance(pair.pre, str) else f"pair-{pair.pre}"
        loaded.append(ValidationPair(f"{i:02d}-{name}", pre, pair.caption, truth))
    scored = sum(p.damage_truth is not None for p in loaded)
    logger.info("Validation: %d pairs (%d with damage masks)", len(loaded), scored)
    return loaded


def log_validation(accelerator, editor: EditorModel, pairs: list[ValidationPair], args, step: int, damage_model=None):
    """Validate the editor of a running training (main process): edits saved under
    ``OUT/validation/step-N/`` and sent to TensorBoard; returns the metrics to log. The global RNG
    a resumed run restores is left as it was."""
    from ..images import save_image

    settings = EditSettings(steps=args.validation_num_inference_steps, seed=args.seed)
    plain = replace(editor, denoiser=accelerator.unwrap_model(editor.denoiser))
    with torch.random.fork_rng(devices=[accelerator.device] if accelerator.device.type == "cuda" else []):
        result = run_validation(plain, pairs, settings, damage_model)
    folder = Path(args.output_dir) / "validation" / f"step-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    for pair, edit in zip(pairs, result.edits, strict=True):
        save_image(edit[None], folder / f"{pair.name}.png")
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            images = result.edits.clamp(0, 1).numpy()
            tracker.writer.add_images("validation", images, step, dataformats="NCHW")
    return result.metrics
