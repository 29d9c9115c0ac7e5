"""One optimisation step and its optimizer: what the training loop runs and ``bench/train_step.py`` times."""

from __future__ import annotations

import os

import torch

from ..errors import require
from .objective import edit_loss, encode_pair


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
    """AdamW, or Prodigy (the paper's) with safeguard warm-up and bias correction."""
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
        fsdp_in_use=deepspeed_in_use(),
    )


def deepspeed_in_use() -> bool:
    """Whether ``accelerate launch`` runs this process under DeepSpeed (read before an Accelerator exists)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def memory_in_use_gb(device: torch.device) -> float:
    """Peak CUDA memory on a GPU, peak resident memory of the process otherwise."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
