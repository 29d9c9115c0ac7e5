"""Benchmark one training optimisation step (rsedit_core.train.runner) against a plain-PyTorch step.

Both sides load the same random editor (a small 8-channel U-Net, the tiny test VAE and text
encoder) and train on the same batch of 64 px pairs. Time: one fresh process holds both sides and
alternates them, ``--steps`` steps at a time for ``--time-runs`` rounds (the median per side is
kept), so machine noise, which moved separate-process runs by +-20% here, hits both alike.
Memory: each side in its own fresh processes (see harness.py), the lowest of ``--memory-runs``.
"ours" is the training loop's own ``rsedit_core.train.runner.StepRunner`` (accelerate, Prodigy, grad clip,
diffusers' EMAModel);
"reference" is the same step written out in plain PyTorch below, drawing its random numbers in
the same order, so the trained weights must agree. Prints seconds per
step, peak memory, the ours / reference ratios (goal <= 1.05) and the largest weight difference.

    python bench/train_step.py                  # small U-Net, 64 px, batch 8, 8 rounds of 10 steps, CPU fp32
    python bench/train_step.py --steps 3        # quick check
    python bench/train_step.py --unet sd15 --size 512 --batch 32 --device cuda --mixed-precision bf16 \
        --steps 5 --memory-runs 1               # the paper's setting on a GPU: prints s/step and steps/s
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from harness import add_worker_args, measure_sides, print_comparison, worker_main  # noqa: E402

CAPTIONS = [
    "flood water covers the coastal blocks; 12 buildings are destroyed, roads stay",
    "wildfire burns the forest east of the river",
    "new houses are built on the empty lots",
    "",
]
DROPOUT, CLIP, EMA_DECAY = 0.05, 1.0, 0.9999

# A small SD-style U-Net: three resolutions, cross-attention at the first two.
SMALL_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 8,
    "out_channels": 4,
    "block_out_channels": (64, 128, 256),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}


def batch(size: int, count: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "pre": torch.rand(count, 3, size, size, generator=g) * 2 - 1,
        "post": torch.rand(count, 3, size, size, generator=g) * 2 - 1,
        "caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(count)],
    }


def make_ours(args, model_dir: Path, data: dict):
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from rsedit_core.train.models import load_trainable
    from rsedit_core.train.preparation import frozen_to_device
    from rsedit_core.train.runner import StepRunner, make_optimizer
    from rsedit_core.train.text_cache import TextEncoderFeed

    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.device == "cpu")
    dtype = {"bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)
    editor = load_trainable(model_dir, "unet", text_encoder_dtype=dtype).editor
    frozen_to_device(editor, accelerator.device, dtype)
    options = SimpleNamespace(
        optimizer="prodigy",
        learning_rate=1.0,
        betas=(0.9, 0.99),
        weight_decay=0.01,
        prodigy_d0=1e-5,
        conditioning_dropout=DROPOUT,
        max_grad_norm=CLIP,
    )
    denoiser = editor.denoiser.to(accelerator.device)
    ema = EMAModel(denoiser.parameters(), decay=EMA_DECAY, model_cls=type(denoiser), model_config=denoiser.config)
    optimizer = make_optimizer(options, denoiser.parameters())
    schedule = get_scheduler("constant", optimizer=optimizer)
    denoiser, optimizer, schedule = accelerator.prepare(denoiser, optimizer, schedule)
    editor.denoiser = denoiser
    noise = DDPMScheduler.from_config(editor.scheduler_config)
    step = StepRunner(accelerator, editor, noise, optimizer, schedule, ema, TextEncoderFeed(editor), options)

    def run(steps: int) -> torch.Tensor:
        for _ in range(steps):
            step(data)
        return torch.cat([p.detach().flatten() for p in ema.shadow_params])

    return run


def make_reference(args, model_dir: Path, data: dict):
    """The same training step in plain PyTorch, written out by hand: no accelerate, no rsedit_core."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from prodigyopt import Prodigy
    from transformers import CLIPTextModel, CLIPTokenizer

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").to(device).train()
    vae = AutoencoderKL.from_pretrained(model_dir / "vae", torch_dtype=dtype).to(device).requires_grad_(False)
    encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder", torch_dtype=dtype).to(device)
    encoder.eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    noise_scheduler = DDPMScheduler.from_pretrained(model_dir / "scheduler")
    params = list(unet.parameters())
    optimizer = Prodigy(
        params, lr=1.0, betas=(0.9, 0.99), weight_decay=0.01, d0=1e-5, safeguard_warmup=True, use_bias_correction=True
    )
    shadow = [p.detach().clone() for p in params]
    state = {"updates": 0}

    def embed(texts):
        ids = tokenizer(texts, padding="max_length", max_length=encoder.config.max_position_embeddings,
                        truncation=True, return_tensors="pt").input_ids  # fmt: skip
        with torch.no_grad():
            return encoder(ids.to(device))[0]

    empty = embed([""])

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16")

    def step() -> None:
        with torch.no_grad():
            target = vae.encode(data["post"].to(device, dtype)).latent_dist.sample() * vae.config.scaling_factor
            source = vae.encode(data["pre"].to(device, dtype)).latent_dist.mode()
        text = embed(data["caption"])
        n = target.shape[0]
        noise = torch.randn_like(target)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (n,), device=device).long()
        noisy = noise_scheduler.add_noise(target, noise, t)
        p = torch.rand(n, device=device)
        text = torch.where((p < 2 * DROPOUT)[:, None, None], empty, text)
        source = source * (~((p >= DROPOUT) & (p < 3 * DROPOUT))).to(source.dtype)[:, None, None, None]
        with autocast:
            pred = unet(torch.cat([noisy, source], 1), t, encoder_hidden_states=text).sample
        F.mse_loss(pred.float(), noise.float()).backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # diffusers' EMA schedule: decay min(0.9999, (1 + k) / (10 + k)) at update k + 1, 0 at the first.
        state["updates"] += 1
        k = state["updates"] - 1
        decay = 0.0 if k <= 0 else min(EMA_DECAY, (1 + k) / (10 + k))
        with torch.no_grad():
            for s, w in zip(shadow, params, strict=True):
                s.sub_((1 - decay) * (s - w))

    def run(steps: int) -> torch.Tensor:
        for _ in range(steps):
            step()
        return torch.cat([s.flatten() for s in shadow])

    return run


def interleaved_timing(args: argparse.Namespace) -> None:
    """Time both sides in this process, alternating which goes first; print one JSON line."""
    from harness import _busy_cpu_seconds, _own_cpu_seconds

    runs = {side: make_side(side, args) for side in ("ours", "reference")}
    for run in runs.values():
        run(1)  # warm-up
    seconds: dict[str, list[float]] = {side: [] for side in runs}
    busy, own, start = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    for round_ in range(args.time_runs):
        for side in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
            begin = time.perf_counter()
            runs[side](args.steps)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[side].append((time.perf_counter() - begin) / args.steps)
    other = max(0.0, (_busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own))
    share = other / ((time.perf_counter() - start) * (os.cpu_count() or 1))
    print(
        json.dumps(
            {
                side: {
                    "s_per_step": statistics.median(values),
                    "s_per_step_runs": [round(v, 4) for v in values],
                    "other_cpu_share": share,
                    "other_cpu_s": other,
                }
                for side, values in seconds.items()
            }
        ),
        flush=True,
    )


def make_side(side: str, args: argparse.Namespace):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in batch(args.size, args.batch).items()}
    model_dir = Path(args.model_dir)
    return make_ours(args, model_dir, data) if side == "ours" else make_reference(args, model_dir, data)


def build_editor(directory: Path, unet: str) -> Path:
    """The small U-Net with the tiny test VAE and text encoder, or SD-1.5's U-Net with a 768-wide
    text tower (bench/sampler.py's folder)."""
    if unet == "sd15":
        from sampler import build_editor as build_sd15

        return build_sd15(directory, "sd15")
    from rsedit_core.tiny import save_tiny_editor

    return save_tiny_editor(directory, unet_config=SMALL_UNET_CONFIG)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="training image side in px (multiple of 8)")
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--steps", type=int, default=10, help="optimisation steps per measured run")
    parser.add_argument("--unet", choices=("small", "sd15"), default="small", help="small U-Net or SD-1.5's")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], the same for both sides")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no", help="autocast on both sides")
    parser.add_argument("--time-runs", type=int, default=8, help="alternating timing rounds per side")
    parser.add_argument("--interleave", action="store_true", help="internal: time both sides in one process")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (fastest kept)")
    parser.add_argument("--memory-runs", type=int, default=3, help="memory runs per side (lowest peak kept)")
    add_worker_args(parser)
    args = parser.parse_args()
    if (
        args.size % 8
        or args.size < 8
        or min(args.batch, args.steps, args.repeats, args.memory_runs, args.time_runs) < 1
        or args.threads < 0
    ):
        parser.error(
            "need --size a positive multiple of 8, --batch/--steps/--repeats/--memory-runs >= 1, --threads >= 0"
        )
    if args.interleave:
        interleaved_timing(args)
        return
    if args.worker:
        worker_main(make_side(args.worker, args), args.steps, args.measure, args.repeats, Path(args.out), args.device)
        return
    with tempfile.TemporaryDirectory(prefix="rsedit-train-bench-") as tmp:
        tmp = Path(tmp)
        print("building a random small editor ...", flush=True)
        folder = build_editor(tmp / "editor", args.unet)
        options = {
            "--model-dir": folder,
            "--size": args.size,
            "--batch": args.batch,
            "--steps": args.steps,
            "--threads": args.threads,
            "--repeats": args.repeats,
            "--unet": args.unet,
            "--device": args.device,
            "--mixed-precision": args.mixed_precision,
        }
        print("both sides: alternating time ...", flush=True)
        command = [sys.executable, str(Path(__file__)), "--interleave", "--time-runs", str(args.time_runs)]
        command += [str(item) for pair in options.items() for item in pair]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            raise SystemExit(f"the timing process failed (exit code {done.returncode}):\n{done.stdout}")
        timing = json.loads(lines[-1])
        results = measure_sides(
            Path(__file__),
            {"ours": sys.executable, "reference": sys.executable},
            options,
            tmp,
            memory_runs=args.memory_runs,
            time_runs=0,
        )
        for side in results:
            results[side].update(timing[side])
        diff = (torch.load(tmp / "ours.pt") - torch.load(tmp / "reference.pt")).abs().max().item()
    title = (
        f"rsedit_core.train optimisation step vs a plain-PyTorch step: {args.unet} U-Net, {args.size}x{args.size}, "
        f"batch {args.batch}, Prodigy + clip + EMA, {args.device} {args.mixed_precision}, "
        f"{results['ours']['threads']} threads, median of {args.time_runs} alternating rounds of {args.steps} steps"
    )
    print_comparison(title, results["ours"], results["reference"], goal=1.05)
    for side in ("ours", "reference"):
        print(f"{side}: s/step of each timing run {results[side]['s_per_step_runs']}, "
              f"peak RSS of each memory run (MB) {results[side]['peak_rss_runs_mb']}")  # fmt: skip
    print(f"ours: {1 / results['ours']['s_per_step']:.3f} optimisation steps/s")
    print(f"max abs diff of the EMA weights after the measured run: {diff:.3e}")


if __name__ == "__main__":
    main()
