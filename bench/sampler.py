"""Benchmark RSEdit's U-Net editing loop against diffusers' InstructPix2Pix pipeline.

Both sides load the same random weights from one temp folder (SD-1.5's U-Net by default, with a
768-wide text encoder and the tiny test VAE, so the U-Net dominates) and edit the same image
with the same settings, each measurement in its own fresh process (see harness.py): load, one
untimed 1-step warm-up, then the N-step edit (text encoding, source encoding, sampling and
decoding, as a user sees it). Prints seconds per step, peak memory, the ours / reference ratios
(goal <= 1.0) and the largest difference of the decoded images.

    python bench/sampler.py                                  # SD-1.5-sized U-Net, 256x256, 10 steps, CPU fp32
    python bench/sampler.py --unet tiny --size 64 --steps 3  # quick check
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from harness import add_worker_args, measure_sides, print_comparison, worker_main  # noqa: E402

from rsedit_core.devices import DTYPES  # noqa: E402
from rsedit_core.schedulers import SCHEDULER_NAMES, make_scheduler  # noqa: E402

PROMPT = "flood the coastal area; buildings near the shore collapse, roads inland stay unchanged"
TEXT_CFG, IMAGE_CFG, SEED = 7.5, 1.5, 42

# Stable Diffusion 1.5's UNet2DConditionModel, with InstructPix2Pix's 8 input channels.
SD15_UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 8,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}


def build_editor(directory: Path, unet: str, seed: int = 0) -> Path:
    """Save a random editor folder: the tiny test editor, or one with an SD-1.5-sized U-Net.

    For ``sd15`` the text encoder is replaced by a 768-wide CLIP tower (2 layers, 12 heads, the
    tokenizer's 248 positions) so that its width matches the U-Net's cross-attention.
    """
    from rsedit_core.tiny import save_tiny_editor

    if unet == "tiny":
        return save_tiny_editor(directory, seed=seed)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    save_tiny_editor(directory, seed=seed, unet_config=SD15_UNET_CONFIG)
    tokenizer = CLIPTokenizer.from_pretrained(directory / "tokenizer")
    torch.manual_seed(seed + 1)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=SD15_UNET_CONFIG["cross_attention_dim"],
        intermediate_size=3072,
        num_hidden_layers=2,
        num_attention_heads=12,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    shutil.rmtree(directory / "text_encoder")
    CLIPTextModel(config).save_pretrained(directory / "text_encoder", safe_serialization=True)
    return directory


def source(size: int) -> np.ndarray:
    """A random 8-bit RGB source ``[size, size, 3]``; both sides see exactly these values."""
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_side(side: str, args: argparse.Namespace):
    if args.threads:
        torch.set_num_threads(args.threads)
    if side == "ours":
        from rsedit_core.edit import edit_images
        from rsedit_core.loading import load_editor
        from rsedit_core.settings import EditSettings

        model = load_editor(args.model_dir, dtype=args.dtype, device=args.device)
        pixels = torch.from_numpy(source(args.size)).float().div(255).movedim(-1, 0)[None]

        def run(steps: int) -> torch.Tensor:
            model.cache.clear()  # the reference encodes the prompt on every call
            settings = EditSettings(
                steps=steps, text_cfg=TEXT_CFG, image_cfg=IMAGE_CFG, seed=SEED, scheduler=args.scheduler
            )
            return edit_images(model, pixels, PROMPT, settings=settings).images

        return run
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        args.model_dir, safety_checker=None, requires_safety_checker=False, torch_dtype=DTYPES[args.dtype]
    ).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    folder_scheduler = dict(pipe.scheduler.config)
    image = Image.fromarray(source(args.size))

    def run(steps: int) -> torch.Tensor:
        pipe.scheduler = make_scheduler(args.scheduler, folder_scheduler)
        return pipe(
            PROMPT,
            image=image,
            num_inference_steps=steps,
            guidance_scale=TEXT_CFG,
            image_guidance_scale=IMAGE_CFG,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="pt",
        ).images

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in px (multiple of 8)")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps per measured edit")
    parser.add_argument("--unet", choices=("sd15", "tiny"), default="sd15", help="SD-1.5-sized or the tiny test U-Net")
    parser.add_argument("--scheduler", choices=SCHEDULER_NAMES, default="default", help="the same for both sides")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], the same for both sides")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (fastest kept)")
    add_worker_args(parser)
    args = parser.parse_args()
    if args.size % 8 or args.size < 8:
        parser.error(f"--size must be a positive multiple of 8 (the VAE's downscale); got {args.size}")
    if args.steps < 1 or args.repeats < 1 or args.threads < 0:
        parser.error(
            f"need --steps >= 1, --repeats >= 1, --threads >= 0; got {args.steps}, {args.repeats}, {args.threads}"
        )
    if args.worker:
        worker_main(make_side(args.worker, args), args.steps, args.measure, args.repeats, Path(args.out), args.device)
        return
    with tempfile.TemporaryDirectory(prefix="rsedit-unet-bench-") as tmp:
        tmp = Path(tmp)
        print(f"building a random {args.unet} editor ...", flush=True)
        folder = build_editor(tmp / "editor", args.unet)
        options = {
            "--model-dir": folder,
            "--size": args.size,
            "--steps": args.steps,
            "--scheduler": args.scheduler,
            "--device": args.device,
            "--dtype": args.dtype,
            "--threads": args.threads,
            "--repeats": args.repeats,
        }
        results = measure_sides(Path(__file__), {"ours": sys.executable, "reference": sys.executable}, options, tmp)
        diff = (torch.load(tmp / "ours.pt") - torch.load(tmp / "reference.pt")).abs().max().item()
    title = (
        f"RSEdit U-Net sampler vs diffusers StableDiffusionInstructPix2PixPipeline: {args.unet} U-Net, "
        f"{args.size}x{args.size}, {args.steps} steps, scheduler {args.scheduler}, {args.device} {args.dtype}, "
        f"{results['ours']['threads']} threads, best of {args.repeats}"
    )
    print_comparison(title, results["ours"], results["reference"])
    print(f"max abs diff of decoded images (0..1 scale): {diff:.3e}")


if __name__ == "__main__":
    main()
