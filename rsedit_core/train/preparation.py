"""Everything a training run needs before its first step, gathered in a :class:`TrainingRun`.

:func:`prepare` checks what a user can get wrong before the (possibly minutes-long) model load:
the data (every pair), the batch against the data, the validation data, and the checkpoint to
resume (every file, see :mod:`.integrity`, and the settings that must match). Then it loads the
base, makes it trainable, and builds the EMA, optimizer, schedule and data loader.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbones import get_backbone
from ..editor import EditorModel
from ..errors import InputError
from . import checkpoints
from .args import MAX_SEED, run_settings
from .data import EditPairDataset, EpochSampler, discover_pairs
from .integrity import CheckpointReport, check_checkpoint
from .models import load_trainable
from .runner import make_optimizer
from .text_cache import CachedTextFeed, TextEncoderFeed, build_text_cache
from .validation import load_validation_pairs

logger = logging.getLogger("rsedit.train")


@dataclass
class TrainingRun:
    """A prepared run. ``editor.denoiser`` is the module accelerate prepared (wrapped when
    distributed); ``settings`` is what every checkpoint records; ``checkpoint`` is the checked
    checkpoint to resume from (``None`` for a fresh start); ``resume_differences`` are the settings
    it differs in that only change what comes next (warned about, and recorded by the resume)."""

    args: argparse.Namespace
    accelerator: Any
    output_dir: Path
    editor: EditorModel
    base_kind: str
    weight_dtype: torch.dtype
    settings: dict
    noise_scheduler: Any
    optimizer: Any
    lr_scheduler: Any
    ema: Any
    text_feed: Any
    sampler: EpochSampler
    loader: Any
    checkpoint: CheckpointReport | None = None
    resume_differences: list[str] = field(default_factory=list)
    validation_pairs: list = field(default_factory=list)
    damage_model: Any = None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def resume(self) -> Path | None:
        return None if self.checkpoint is None else self.checkpoint.path


def frozen_to_device(editor, device: torch.device, weight_dtype: torch.dtype) -> None:
    """The VAE in the training precision; the text encoder was loaded in it (keeping the layers
    transformers pins to fp32, such as T5's ``wo``), so it only moves."""
    # .to(dtype) is skipped in fp32: diffusers warns on any dtype cast, even a no-op one.
    editor.vae.to(device, *([] if weight_dtype == torch.float32 else [weight_dtype]))
    editor.text_encoder.to(device)


def refuse_unsupported(accelerator) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        raise InputError(
            "FSDP is not supported: the EMA and the diffusers checkpoints need the whole model on every "
            "process, which FSDP shards. Use plain data parallel (--multi_gpu) or DeepSpeed ZeRO-2 "
            "(training/configs/deepspeed_zero2.yaml), which shard only gradients and optimizer state."
        )


def make_accelerator(args: argparse.Namespace):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    refuse_unsupported(accelerator)
    if args.seed + accelerator.num_processes - 1 > MAX_SEED:
        raise InputError(
            f"--seed {args.seed} plus the process index exceeds 2**32-1 with {accelerator.num_processes} "
            f"processes; use a seed <= {MAX_SEED - accelerator.num_processes + 1}."
        )
    return accelerator


def check_resume(args: argparse.Namespace, accelerator, report) -> CheckpointReport | None:
    """The checkpoint ``--resume`` names, every file checked and the settings that must match
    compared, before any model is loaded; ``None`` for a fresh start."""
    from accelerate.utils import DistributedType

    path = checkpoints.resolve_resume(args.resume, args.output_dir)
    if path is None:
        return None
    early = run_settings(args, None, accelerator.num_processes, report)

    def compatible(state: dict) -> None:
        checkpoints.check_compatible(state, early, path, skip=("denoiser_config",))

    return check_checkpoint(
        path,
        allow_inexact=args.resume_inexact,
        check_state=compatible,
        num_processes=accelerator.num_processes,
        component_folder=get_backbone(args.backbone).component_folder,
        use_ema=args.ema_decay > 0,
        deepspeed=accelerator.distributed_type == DistributedType.DEEPSPEED,
        need_cuda=accelerator.device.type == "cuda",
    )


def _open_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"Cannot create --output-dir {output_dir}: {e}. Choose a folder you can write to.") from e
    checkpoints.remove_partial(output_dir)


def _training_pairs(args: argparse.Namespace, num_processes: int):
    """The training pairs, their report and source kind; refused when one step cannot be filled."""
    pairs, report, source = discover_pairs(
        args.data,
        annotation=args.annotation,
        exclude=args.exclude,
        default_caption=args.default_caption,
        check_images=not args.skip_image_check,
    )
    needed = args.train_batch_size * num_processes
    if len(pairs) < needed:
        raise InputError(
            f"{report.summary()} One optimisation step needs at least {needed} pairs "
            f"(--train-batch-size {args.train_batch_size} x {num_processes} processes)."
        )
    return pairs, report, source


def _text_feed(args: argparse.Namespace, editor, pairs, accelerator):
    """Text features from a disk cache built once (the encoder then leaves the GPU), or on the fly."""
    if not args.text_embeddings_cache:
        return TextEncoderFeed(editor)
    build_text_cache(
        editor,
        [p.caption for p in pairs],
        args.text_embeddings_cache,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        barrier=accelerator.wait_for_everyone,
    )
    editor.text_encoder.to("cpu")
    return CachedTextFeed(args.text_embeddings_cache)


def _data_loader(args: argparse.Namespace, pairs, source):
    """The resumable epoch sampler and the loader over the paired, augmented dataset."""
    dataset = EditPairDataset(
        pairs,
        source,
        args.resolution,
        random_crop=args.random_crop,
        random_flip=args.random_flip,
        seed=args.seed,
    )
    sampler = EpochSampler(len(dataset), seed=args.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
        # A private generator: creating a loader iterator must not draw from the global RNG, whose
        # state the checkpoint restores (exact resume).
        generator=torch.Generator().manual_seed(args.seed),
    )
    return sampler, loader


def prepare(args: argparse.Namespace) -> TrainingRun:
    """Check the inputs, load and wrap everything; see the module docstring for the order."""
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    output_dir = Path(args.output_dir)
    accelerator = make_accelerator(args)
    is_main = accelerator.is_main_process
    if not is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if is_main:
        _open_output_dir(output_dir)
    # Each process draws its own noise, timesteps and dropout; each one's RNG state is checkpointed.
    set_seed(args.seed, device_specific=True)

    # Everything a user can get wrong is checked before the (possibly minutes-long) model load.
    pairs, report, source = _training_pairs(args, accelerator.num_processes)
    validation = discover_pairs(args.validation_data) if args.validation_data and is_main else None
    checkpoint = check_resume(args, accelerator, report)

    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    trainable = load_trainable(
        args.base,
        args.backbone,
        subfolder=args.base_subfolder,
        text_encoder=args.text_encoder,
        position_table=args.position_table,
        text_encoder_dtype=weight_dtype,
    )
    editor = trainable.editor
    frozen_to_device(editor, accelerator.device, weight_dtype)
    denoiser = editor.denoiser
    if args.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    if accelerator.device.type == "cuda" and not args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    noise_scheduler = DDPMScheduler.from_config(editor.scheduler_config)
    settings = run_settings(args, editor, accelerator.num_processes, report)
    differences = []
    if checkpoint is not None:
        differences = checkpoints.check_compatible(checkpoint.state, settings, checkpoint.path)
        for warning in differences:
            logger.warning("%s", warning)

    validation_pairs, damage_model = [], None
    if validation is not None:
        validation_pairs = load_validation_pairs(
            editor, validation[0], validation[2], args.resolution, args.validation_pairs
        )
        if args.damage_model:
            from ..damage.checkpoint import load_damage_model

            damage_model = load_damage_model(args.damage_model, device=accelerator.device)
    text_feed = _text_feed(args, editor, pairs, accelerator)
    ema = None
    if args.ema_decay > 0:
        ema = EMAModel(
            denoiser.parameters(), decay=args.ema_decay, model_cls=type(denoiser), model_config=denoiser.config
        )
        ema.to(accelerator.device)
    from .resume import register_checkpoint_hooks

    register_checkpoint_hooks(accelerator, type(denoiser), editor.backbone.component_folder, ema)

    optimizer = make_optimizer(args, denoiser.parameters())
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    sampler, loader = _data_loader(args, pairs, source)
    denoiser, optimizer, loader, lr_scheduler = accelerator.prepare(denoiser, optimizer, loader, lr_scheduler)
    editor.denoiser = denoiser
    return TrainingRun(
        args=args,
        accelerator=accelerator,
        output_dir=output_dir,
        editor=editor,
        base_kind=trainable.base_kind,
        weight_dtype=weight_dtype,
        settings=settings,
        noise_scheduler=noise_scheduler,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        ema=ema,
        text_feed=text_feed,
        sampler=sampler,
        loader=loader,
        checkpoint=checkpoint,
        resume_differences=differences,
        validation_pairs=validation_pairs,
        damage_model=damage_model,
    )
