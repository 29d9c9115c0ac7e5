"""The command line of ``training/train.py``: every flag, its help, and the checks after parsing."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from ..backbones import BACKBONES, NAMES, get_backbone
from ..defaults import MIN_SIZE
from ..errors import InputError
from .checkpoints import EDITOR_FOLDER

PAPER_BATCH = 32


# numpy's and Python's RNGs take 32-bit seeds; accelerate's set_seed adds the process index to it.
MAX_SEED = 2**32 - 1
# Integer flags and their smallest value; all are checked together, after parsing.
INT_MINIMUMS = {
    "resolution": MIN_SIZE,
    "train_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "max_train_steps": 1,
    "checkpointing_steps": 1,
    "checkpoints_total_limit": 1,
    "logging_steps": 1,
    "validation_pairs": 1,
    "validation_steps": 1,
    "validation_num_inference_steps": 1,
    "dataloader_num_workers": 0,
    "lr_warmup_steps": 0,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="accelerate launch training/train.py",
        description="Fine-tune an RSEdit editor on bi-temporal pairs. Defaults follow the paper's recipe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--backbone",
        choices=NAMES,
        required=True,
        help="; ".join(f"{b.name}: {b.display_name}, {b.mode}" for b in BACKBONES.values()) + ".",
    )
    model.add_argument(
        "--base",
        required=True,
        help="Base model folder or hub id: a text-to-image SD folder (conv_in is widened to 8 "
        "channels), an RSEdit/InstructPix2Pix folder (continued), or a PixArt-alpha 512 folder.",
    )
    model.add_argument("--base-subfolder", default=None, help="Subfolder of --base holding the model, if any.")
    model.add_argument(
        "--text-encoder",
        default=None,
        help="U-Net only: swap the text encoder for a raw DGTRS-CLIP/Long-CLIP .pt or a "
        "CLIPTextModel folder of the U-Net's cross-attention width (768 for SD-1.5).",
    )
    model.add_argument(
        "--position-table",
        choices=("effective", "plain"),
        default="effective",
        help="Which position table of a Long-CLIP .pt to use (see the README).",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        help="RSCC root (RSCC_qvq.jsonl + images), a folder of pairs with a CSV/JSONL, an "
        "annotation file, a datasets.save_to_disk folder, or hf:<hub id>.",
    )
    data.add_argument("--annotation", default=None, help="Annotation file to read instead of the ones searched.")
    data.add_argument(
        "--exclude",
        default=None,
        help="File listing pre_image paths to leave out (default: <data>/test_set.txt if present).",
    )
    data.add_argument(
        "--default-caption",
        default=None,
        help="Caption for records without one (default: such records are skipped and counted).",
    )
    data.add_argument(
        "--skip-image-check",
        action="store_true",
        help="Do not open every image header before training (faster start on huge datasets).",
    )
    data.add_argument(
        "--resolution",
        type=int,
        default=512,
        help="Training size in pixels: images are resized (shorter side) and cropped to it.",
    )
    data.add_argument("--random-crop", action="store_true", help="Random (paired) crop instead of a centre crop.")
    data.add_argument(
        "--random-flip", action="store_true", help="Random horizontal and vertical flips, identical for pre and post."
    )
    data.add_argument("--dataloader-num-workers", type=int, default=4, help="Data loading worker processes.")
    data.add_argument(
        "--max-corrupt-fraction",
        type=float,
        default=0.01,
        help="Stop when more than this share of drawn samples were unreadable images.",
    )
    data.add_argument(
        "--text-embeddings-cache",
        default=None,
        help="Folder to pre-compute caption embeddings into (reused when valid); the text "
        "encoder is then moved off the accelerator for the run.",
    )
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--train-batch-size", type=int, default=4, help="Pairs per process per forward pass.")
    opt.add_argument(
        "--gradient-accumulation-steps",
        type=int,
        default=8,
        help="Forward passes per optimisation step (4 x 8 = the paper's batch 32 on one GPU).",
    )
    opt.add_argument("--max-train-steps", type=int, default=30000, help="Optimisation steps to train for.")
    opt.add_argument(
        "--optimizer",
        choices=("prodigy", "adamw"),
        default="prodigy",
        help="prodigy (the paper's; it adapts its own step size) or adamw.",
    )
    opt.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Learning rate (default: 1.0 for Prodigy, which adapts its own step, 1e-4 for AdamW).",
    )
    opt.add_argument(
        "--betas",
        type=float,
        nargs=2,
        default=None,
        help="Adam betas (default: 0.9 0.99 for Prodigy, 0.9 0.999 for AdamW).",
    )
    opt.add_argument("--weight-decay", type=float, default=0.01, help="Decoupled weight decay.")
    opt.add_argument("--prodigy-d0", type=float, default=1e-5, help="Prodigy's initial step-size estimate.")
    opt.add_argument(
        "--lr-scheduler",
        default="constant",
        choices=("constant", "constant_with_warmup", "linear", "cosine"),
        help="Learning-rate schedule (the paper keeps it constant).",
    )
    opt.add_argument("--lr-warmup-steps", type=int, default=0, help="Warm-up steps for the schedules that use them.")
    opt.add_argument("--max-grad-norm", type=float, default=1.0, help="Gradient-norm clip (0 turns it off).")
    opt.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay of the weights (0 turns EMA off).")
    opt.add_argument(
        "--conditioning-dropout",
        type=float,
        default=0.05,
        help="q of the conditioning dropout: text dropped when p < 2q, source when q <= p < 3q.",
    )
    opt.add_argument(
        "--mixed-precision",
        choices=("no", "fp16", "bf16"),
        default="bf16",
        help="Autocast precision; the frozen VAE and text encoder are stored in it too.",
    )
    opt.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="Recompute activations in the backward pass: less memory, about 20-30%% slower.",
    )
    opt.add_argument("--no-tf32", action="store_true", help="Do not allow TF32 matmuls on Ampere+ GPUs.")
    opt.add_argument("--seed", type=int, default=42, help="Seed of the data order, augmentation, noise and dropout.")
    out = p.add_argument_group("checkpoints, logs and validation")
    out.add_argument(
        "--output-dir", required=True, help="Run folder: checkpoints, logs, validation images, and the final editor."
    )
    out.add_argument("--checkpointing-steps", type=int, default=500, help="Save a checkpoint every N steps.")
    out.add_argument(
        "--checkpoints-total-limit",
        type=int,
        default=3,
        help="Keep only the newest N checkpoints (an SD-1.5 checkpoint with EMA and Prodigy state is ~20 GB).",
    )
    out.add_argument(
        "--resume",
        default=None,
        help="'latest' (a fresh start if there is none), a checkpoint-N name or a checkpoint path.",
    )
    out.add_argument(
        "--resume-inexact",
        action="store_true",
        help="Resume even when a checkpoint's RNG state files are unreadable: those processes are reseeded, "
        "so the run no longer matches an uninterrupted one (logged and recorded in later checkpoints).",
    )
    out.add_argument(
        "--export-weights", choices=("ema", "raw"), default="ema", help="Which weights the final editor folder gets."
    )
    out.add_argument(
        "--report-to",
        choices=("tensorboard", "wandb", "none"),
        default="tensorboard",
        help="Tracker for loss, learning rate, Prodigy's d, throughput and memory.",
    )
    out.add_argument("--logging-steps", type=int, default=10, help="Throughput/memory logging interval.")
    out.add_argument(
        "--validation-data",
        default=None,
        help="Pairs to edit at each validation (same forms as --data; a 'mask' column gives "
        "ground-truth damage maps for F1).",
    )
    out.add_argument("--validation-pairs", type=int, default=4, help="How many validation pairs to edit.")
    out.add_argument("--validation-steps", type=int, default=500, help="Validate every N steps.")
    out.add_argument("--validation-num-inference-steps", type=int, default=20, help="Sampling steps.")
    out.add_argument(
        "--damage-model",
        default=None,
        help="ChangeStar1x256 checkpoint: score validation edits with xView2 F1 (needs masks).",
    )
    return p


def _number_problems(args: argparse.Namespace) -> list[str]:
    """Every numeric flag out of its range (NaN and infinities included), in flag order."""
    problems = []
    for dest, minimum in INT_MINIMUMS.items():
        if getattr(args, dest) < minimum:
            problems.append(f"--{dest.replace('_', '-')} must be an integer >= {minimum}, got {getattr(args, dest)}")
    floats = {
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "prodigy_d0": args.prodigy_d0,
        "max_grad_norm": args.max_grad_norm,
        "ema_decay": args.ema_decay,
        "conditioning_dropout": args.conditioning_dropout,
        "max_corrupt_fraction": args.max_corrupt_fraction,
    }
    finite = {}
    for dest, value in floats.items():
        if value is not None and not math.isfinite(value):
            problems.append(f"--{dest.replace('_', '-')} must be a finite number, got {value}")
        else:
            finite[dest] = value
    if args.betas is not None and not all(math.isfinite(b) and 0 <= b < 1 for b in args.betas):
        problems.append(f"--betas {' '.join(map(str, args.betas))} must be two numbers each within [0, 1)")
    ranges = (
        ("learning_rate", lambda v: v > 0, "must be > 0"),
        ("weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("prodigy_d0", lambda v: v > 0, "must be > 0"),
        ("max_grad_norm", lambda v: v >= 0, "must be >= 0 (0 turns clipping off)"),
        ("ema_decay", lambda v: 0 <= v < 1, "must be within [0, 1) (0 turns EMA off)"),
        ("conditioning_dropout", lambda v: 0 <= v <= 1 / 3, "must be within 0..1/3 (3q <= 1)"),
        ("max_corrupt_fraction", lambda v: 0 <= v <= 1, "must be within 0..1"),
    )
    for dest, ok, rule in ranges:
        value = finite.get(dest)
        if value is not None and not ok(value):
            problems.append(f"--{dest.replace('_', '-')} {value} {rule}")
    processes = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    if not 0 <= args.seed <= MAX_SEED - (processes - 1):
        limit = "2**32-1" if processes == 1 else f"{MAX_SEED - processes + 1} (each process adds its index)"
        problems.append(f"--seed {args.seed} must be within 0..{limit}: numpy's RNG takes 32-bit seeds")
    return problems


def _output_dir_problems(args: argparse.Namespace) -> list[str]:
    """The run folder must be a writable folder of its own: never a file, never inside the base
    model (checkpoints would mix with its weights), never the folder the base was loaded from."""
    output = Path(args.output_dir).expanduser().absolute()
    if output.exists() and not output.is_dir():
        return [f"--output-dir {args.output_dir} is a file; give a folder"]
    ancestor = output
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return [f"--output-dir {args.output_dir}: {ancestor} is a file, not a folder"]
    try:  # os.access says yes to root even on read-only mounts: try a folder there, as the run will
        tempfile.TemporaryDirectory(prefix=".rsedit-write-check-", dir=ancestor).cleanup()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        return [f"--output-dir {args.output_dir}: cannot create folders in {ancestor} ({reason}); choose a folder "
                "you can write to"]  # fmt: skip
    base = Path(args.base).expanduser()
    if not base.exists():
        return []  # a hub id
    base, resolved = base.resolve(), output.resolve()
    if resolved == base or base in resolved.parents:
        return [
            f"--output-dir {args.output_dir} is inside the base model folder {base}: checkpoints and the "
            "exported editor would mix with its weights; choose a folder outside it"
        ]
    export = resolved / EDITOR_FOLDER
    if base == export or export in base.parents:
        return [
            f"--base {args.base} is this run's own export folder ({export}), which the run replaces when it "
            "ends; copy it elsewhere first or choose another --output-dir"
        ]
    return []


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill backbone- and optimizer-dependent defaults and refuse every inconsistent or out-of-range
    setting at once, in one message, before anything is loaded."""
    problems = _number_problems(args)
    backbone = get_backbone(args.backbone)
    multiple = backbone.nominal_size_multiple
    if args.resolution % multiple:
        problems.append(
            f"--resolution {args.resolution} must be a multiple of {multiple} for the {backbone.display_name}"
        )
    if args.text_encoder and not backbone.supports_text_encoder_swap:
        problems.append(f"--text-encoder applies to the U-Net only; the {backbone.display_name} keeps its own")
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        problems.append("--mixed-precision fp16 needs a CUDA GPU (CPU autocast lacks fp16 kernels); use bf16 or no")
    if args.damage_model and not args.validation_data:
        problems.append("--damage-model scores validation edits: give --validation-data too")
    if args.damage_model and not Path(args.damage_model).is_file():
        problems.append(f"--damage-model {args.damage_model} does not exist")
    if args.resume_inexact and not args.resume:
        problems.append("--resume-inexact only applies together with --resume")
    problems += _output_dir_problems(args)
    if problems:
        raise InputError("Invalid training arguments: " + "; ".join(problems) + ".")
    if args.learning_rate is None:
        args.learning_rate = 1.0 if args.optimizer == "prodigy" else 1e-4
    if args.betas is None:
        args.betas = (0.9, 0.99) if args.optimizer == "prodigy" else (0.9, 0.999)
    args.betas = tuple(args.betas)
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return check_args(build_parser().parse_args(argv))


def run_settings(args: argparse.Namespace, editor, num_processes: int, report) -> dict:
    """What a checkpoint records about its run (checked on resume, see ``checkpoints.MUST_MATCH``).
    Without an ``editor`` (before the model is loaded) the denoiser config is ``None``."""
    denoiser = getattr(editor, "denoiser", None)
    config = dict(denoiser.config) if hasattr(denoiser, "config") else {}
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    return {
        "backbone": args.backbone,
        "base": os.path.abspath(args.base) if os.path.exists(args.base) else str(args.base),
        "denoiser_config": None if editor is None else json.loads(json.dumps(config, default=list)),
        "optimizer": args.optimizer,
        "use_ema": args.ema_decay > 0,
        "text_encoder": None if args.text_encoder is None else os.path.abspath(args.text_encoder),
        "position_table": args.position_table if args.text_encoder else None,
        "conditioning_dropout": args.conditioning_dropout,
        "ema_decay": args.ema_decay,
        "resolution": args.resolution,
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": num_processes,
        "seed": args.seed,
        "data": hashlib.sha1(report.summary().encode()).hexdigest()[:12],
        # Whether this run matches an uninterrupted one; a resume under --resume-inexact records itself here.
        "exact": True,
        "inexact_resumes": [],
    }
