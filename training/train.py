"""Fine-tune an RSEdit editor (U-Net or PixArt DiT) on bi-temporal pairs.

    accelerate launch training/train.py --backbone unet --base stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --text-encoder LRSCLIP_ViT-L-14.pt --data /data/RSCC --output-dir runs/rsedit-unet

The defaults are the paper's recipe (REFERENCE §3): Prodigy (lr 1.0, betas 0.9/0.99, weight
decay 0.01, d0 1e-5, safeguard warm-up, bias correction), constant schedule, grad-norm clip 1.0,
EMA 0.9999, conditioning dropout 0.05, bf16, global batch 32, 30k steps. Models, text encoding,
conditioning and the objective come from ``rsedit_core``; this script owns the loop. See
``training/README.md``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from rsedit_core.errors import InputError, RSEditError, require
from rsedit_core.train import checkpoints
from rsedit_core.train.args import parse_args, run_settings
from rsedit_core.train.data import EditPairDataset, EpochSampler, discover_pairs
from rsedit_core.train.models import export_editor, load_trainable, restore_frozen_parts
from rsedit_core.train.objective import edit_loss, encode_pair
from rsedit_core.train.text_cache import CachedTextFeed, TextEncoderFeed, build_text_cache
from rsedit_core.train.validation import load_validation_pairs, run_validation

logger = logging.getLogger("rsedit.train")

# Stop once more than --max-corrupt-fraction of the drawn samples were unreadable, counting at
# least this many: a few bad tiles in 62k are expected and skipped, more means a broken copy.
MIN_CORRUPT_TO_STOP = 10
# The final editor goes beside the checkpoints, so copying it never drags them along.
EDITOR_FOLDER = "editor"


class StepRunner:
    """One optimisation step on a batch: encode, loss, backward, clip, step, EMA. Shared with
    ``bench/train_step.py`` so the benchmark times exactly what training runs."""

    def __init__(self, accelerator, editor, noise_scheduler, optimizer, lr_scheduler, ema, text_feed, args) -> None:
        self.accelerator = accelerator
        self.editor = editor
        self.backbone = editor.backbone
        self.noise_scheduler = noise_scheduler
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.ema = ema
        self.text_feed = text_feed
        self.args = args

    def __call__(self, batch: dict) -> torch.Tensor:
        accelerator = self.accelerator
        with accelerator.accumulate(self.editor.denoiser):
            target, source = encode_pair(self.editor, self.backbone, batch["pre"], batch["post"])
            text = self.text_feed(batch["caption"], accelerator.device)
            with accelerator.autocast():
                loss = edit_loss(
                    self.editor,
                    self.backbone,
                    self.noise_scheduler,
                    target,
                    source,
                    text,
                    self.args.conditioning_dropout,
                )
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.editor.denoiser.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients and self.ema is not None:
            self.ema.step(accelerator.unwrap_model(self.editor.denoiser).parameters())
        return loss.detach()


def make_optimizer(args, params):
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.learning_rate, betas=args.betas, weight_decay=args.weight_decay)
    prodigy = require("prodigyopt", "The Prodigy optimizer (the paper's)", "prodigyopt")
    return prodigy.Prodigy(
        params,
        lr=args.learning_rate,
        betas=args.betas,
        weight_decay=args.weight_decay,
        d0=args.prodigy_d0,
        safeguard_warmup=True,
        use_bias_correction=True,
        # Prodigy's step-size estimate needs a reduction across processes when each one holds only
        # a shard of the optimizer state (DeepSpeed ZeRO).
        fsdp_in_use=os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true",
    )


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


def memory_in_use_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def log_validation(accelerator, editor, pairs, args, step: int, damage_model) -> dict:
    from rsedit_core.images import save_image
    from rsedit_core.settings import EditSettings

    settings = EditSettings(steps=args.validation_num_inference_steps, seed=args.seed)
    plain = replace(editor, denoiser=accelerator.unwrap_model(editor.denoiser))
    # Validation must not move the global RNG that a resumed run restores from the checkpoint.
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


def _frozen_to_device(editor, device: torch.device, weight_dtype: torch.dtype) -> None:
    """The VAE in the training precision; the text encoder was loaded in it (keeping the layers
    transformers pins to fp32, such as T5's ``wo``), so it only moves."""
    # .to(dtype) is skipped in fp32: diffusers warns on any dtype cast, even a no-op one.
    editor.vae.to(device, *([] if weight_dtype == torch.float32 else [weight_dtype]))
    editor.text_encoder.to(device)


def _refuse_unsupported(accelerator) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        raise InputError(
            "FSDP is not supported: the EMA and the diffusers checkpoints need the whole model on every "
            "process, which FSDP shards. Use plain data parallel (--multi_gpu) or DeepSpeed ZeRO-2 "
            "(training/configs/deepspeed_zero2.yaml), which shard only gradients and optimizer state."
        )


def train(args) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    _refuse_unsupported(accelerator)
    is_main = accelerator.is_main_process
    if not is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.remove_partial(output_dir)
    # Each process draws its own noise, timesteps and dropout; each one's RNG state is checkpointed.
    set_seed(args.seed, device_specific=True)

    # Everything a user can get wrong is checked before the (possibly minutes-long) model load.
    pairs, report, source = discover_pairs(
        args.data,
        annotation=args.annotation,
        exclude=args.exclude,
        default_caption=args.default_caption,
        check_images=not args.skip_image_check,
    )
    needed = args.train_batch_size * accelerator.num_processes
    if len(pairs) < needed:
        raise InputError(
            f"{report.summary()} One optimisation step needs at least {needed} pairs "
            f"(--train-batch-size {args.train_batch_size} x {accelerator.num_processes} processes)."
        )
    validation = discover_pairs(args.validation_data) if args.validation_data and is_main else None
    resume = checkpoints.resolve_resume(args.resume, output_dir)

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
    _frozen_to_device(editor, accelerator.device, weight_dtype)
    denoiser = editor.denoiser
    if args.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    if accelerator.device.type == "cuda" and not args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    noise_scheduler = DDPMScheduler.from_config(editor.scheduler_config)
    settings = run_settings(args, editor, accelerator.num_processes, report)
    if resume is not None:
        for warning in checkpoints.check_compatible(checkpoints.read_state(resume), settings, resume):
            logger.warning("%s", warning)

    validation_pairs, damage_model = [], None
    if validation is not None:
        validation_pairs = load_validation_pairs(
            editor, validation[0], validation[2], args.resolution, args.validation_pairs
        )
        if args.damage_model:
            from rsedit_core.damage.checkpoint import load_damage_model

            damage_model = load_damage_model(args.damage_model, device=accelerator.device)
    if args.text_embeddings_cache:
        build_text_cache(
            editor,
            [p.caption for p in pairs],
            args.text_embeddings_cache,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            barrier=accelerator.wait_for_everyone,
        )
        text_feed = CachedTextFeed(args.text_embeddings_cache)
        editor.text_encoder.to("cpu")
    else:
        text_feed = TextEncoderFeed(editor)

    ema = None
    if args.ema_decay > 0:
        ema = EMAModel(
            denoiser.parameters(), decay=args.ema_decay, model_cls=type(denoiser), model_config=denoiser.config
        )
        ema.to(accelerator.device)
    register_checkpoint_hooks(accelerator, type(denoiser), editor.backbone.component_folder, ema)

    optimizer = make_optimizer(args, denoiser.parameters())
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
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
    denoiser, optimizer, loader, lr_scheduler = accelerator.prepare(denoiser, optimizer, loader, lr_scheduler)
    editor.denoiser = denoiser

    # Where the data stream stands: accelerate also steps at the end of an epoch whose batch count
    # is not a multiple of the accumulation, so the position is recorded rather than derived.
    global_step, first_epoch, skip = 0, 0, 0
    if resume is not None:
        saved = checkpoints.read_state(resume)
        accelerator.load_state(str(resume))
        if ema is not None:
            ema.decay = args.ema_decay  # the flag wins over the decay stored with the EMA
        global_step, first_epoch, skip = saved["step"], saved["epoch"], saved["batches_into_epoch"]
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", resume, global_step, first_epoch, skip)
        if is_main:
            checkpoints.set_aside_newer(output_dir, global_step)
    elif args.resume:
        logger.info("--resume %s: no checkpoint in %s yet, starting from step 0", args.resume, output_dir)
    if global_step >= args.max_train_steps:
        logger.info("Already at step %d of --max-train-steps %d: nothing to train", global_step, args.max_train_steps)

    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    epochs = first_epoch + math.ceil((args.max_train_steps - global_step) / steps_per_epoch) + 1
    if is_main and args.report_to != "none":
        accelerator.init_trackers("rsedit", config={k: str(v) for k, v in vars(args).items()})

    run_step = StepRunner(accelerator, editor, noise_scheduler, optimizer, lr_scheduler, ema, text_feed, args)
    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        "Training the %s (base: %s) for %d steps of %d pairs (%d per process x %d processes x %d accumulation)",
        editor.backbone.display_name,
        trainable.base_kind,
        args.max_train_steps,
        total_batch,
        args.train_batch_size,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
    )

    def save(step: int, epoch: int, batches_into_epoch: int) -> None:
        checkpoints.save_checkpoint(
            output_dir,
            step,
            {**settings, "step": step, "epoch": epoch, "batches_into_epoch": batches_into_epoch},
            lambda partial: accelerator.save_state(str(partial)),
            args.checkpoints_total_limit,
            is_main=is_main,
            barrier=accelerator.wait_for_everyone,
        )

    progress = tqdm(total=args.max_train_steps, initial=global_step, desc="steps", disable=not is_main)
    draws = corrupt = 0
    losses = []
    window_start, window_steps = time.perf_counter(), 0
    for epoch in range(first_epoch, epochs):
        if global_step >= args.max_train_steps:
            break
        start = skip if epoch == first_epoch else 0
        # Set on the sampler itself: with several processes accelerate's wrappers around a
        # skipping loader do not pass set_epoch down to it.
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(loader, start) if start else loader
        for position, batch in enumerate(epoch_loader, start=start + 1):
            draws += len(batch["index"])
            corrupt += int(batch["skipped"].sum())
            if corrupt >= MIN_CORRUPT_TO_STOP and corrupt > args.max_corrupt_fraction * draws:
                raise InputError(
                    f"{corrupt} of the {draws} samples this process has drawn were unreadable images (more "
                    f"than --max-corrupt-fraction {args.max_corrupt_fraction}); the data copy looks broken. "
                    "Check the files named in the warnings above, re-copy the dataset, or raise the fraction."
                )
            losses.append(run_step(batch))
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            window_steps += 1
            progress.update(1)
            # The loss of the optimisation step: the mean over its micro-batches and processes.
            loss = accelerator.gather(torch.stack(losses).mean()[None]).mean().item()
            losses.clear()
            logs = {"loss": loss, "lr": lr_scheduler.get_last_lr()[0]}
            group = optimizer.param_groups[0]
            if "d" in group:
                logs["prodigy_d"] = float(group["d"])
            if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
                elapsed = time.perf_counter() - window_start
                logs["pairs_per_second"] = window_steps * total_batch / max(elapsed, 1e-9)
                logs["memory_gb"] = memory_in_use_gb(accelerator.device)
                window_start, window_steps = time.perf_counter(), 0
            progress.set_postfix(loss=f"{loss:.4f}")
            accelerator.log(logs, step=global_step)
            paused = time.perf_counter()
            if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
                at_end = position == len(loader)
                save(global_step, epoch + 1 if at_end else epoch, 0 if at_end else position)
            if validation_pairs and global_step % args.validation_steps == 0:
                metrics = log_validation(accelerator, editor, validation_pairs, args, global_step, damage_model)
                accelerator.log(metrics, step=global_step)
            window_start += time.perf_counter() - paused  # throughput counts training time only
            if global_step >= args.max_train_steps:
                break
    progress.close()
    accelerator.wait_for_everyone()
    if global_step < args.max_train_steps:
        raise RSEditError(f"Training stopped at step {global_step} of {args.max_train_steps}: the data ran out.")
    editor_dir = output_dir / EDITOR_FOLDER
    if is_main:
        final = accelerator.unwrap_model(denoiser)
        if ema is not None and args.export_weights == "ema":
            ema.copy_to(final.parameters())
        export_editor(editor, final, editor_dir)
        if weight_dtype != torch.float32:
            restore_frozen_parts(editor_dir, editor.root, args.text_encoder, args.position_table)
        logger.info(
            "Done: the editor is %s. Use it with `rsedit edit --model %s`, or copy that folder to "
            "ComfyUI/models/rsedit/.",
            editor_dir,
            editor_dir,
        )
    accelerator.end_training()
    return editor_dir


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        args = parse_args(argv)
        train(args)
    except RSEditError as e:
        logger.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
