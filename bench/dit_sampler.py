"""Benchmark RSEdit's DiT editing loop against the reference loop on identical random weights.

Both sides load one random PixArt folder (XL-2 512 transformer by default; a tiny T5 and VAE so
the transformer dominates) and edit the same image with the same settings, each in its own
process (see harness.py). Prints seconds per step, peak memory, the ours / reference ratios
(goal <= 1.0), the largest difference of the decoded images, and what the in-context
concatenation costs: the tokens the transformer sees per step.

    python bench/dit_sampler.py                      # PixArt XL-2 at 256x256, 2 steps, CPU fp32
    python bench/dit_sampler.py --model tiny --size 64 --steps 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from harness import add_worker_args, measure_sides, print_comparison, worker_main  # noqa: E402

PROMPT = "flood the coastal area; buildings near the shore collapse, roads inland stay unchanged"
TEXT_CFG, IMAGE_CFG, SEED = 4.5, 1.5, 42

# PixArt-alpha XL-2 (512): 28 blocks of width 1152 (16 heads x 72). caption_channels follows the
# benchmark's small T5 (the real T5-XXL is 4096 wide; text encoding is outside the timed loop's cost).
XL2_CONFIG = {
    "sample_size": 64,
    "num_layers": 28,
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "patch_size": 2,
    "cross_attention_dim": 1152,
    "caption_channels": 32,
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
}


def source(size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_side(side: str, args):
    from PIL import Image

    if side == "ours":
        from rsedit_core.edit import edit_images
        from rsedit_core.loading import load_editor
        from rsedit_core.settings import EditSettings

        model = load_editor(args.model_dir)
        pixels = torch.from_numpy(source(args.size)).float().div(255).movedim(-1, 0)[None]

        def run(steps: int) -> torch.Tensor:
            model.cache.clear()  # the reference encodes the prompt on every call
            settings = EditSettings(steps=steps, text_cfg=TEXT_CFG, image_cfg=IMAGE_CFG, seed=SEED)
            return edit_images(model, pixels, PROMPT, settings=settings).images

        return run
    from reference_loops import load_reference_pipeline, reference_dit_edit

    pipe = load_reference_pipeline(Path(args.model_dir))
    image = Image.fromarray(source(args.size))

    def run(steps: int) -> torch.Tensor:
        return reference_dit_edit(pipe, image, PROMPT, steps=steps, text_cfg=TEXT_CFG, image_cfg=IMAGE_CFG, seed=SEED)

    return run


def token_report(size: int, patch: int = 2, factor: int = 8) -> str:
    grid = size // factor // patch
    plain, canvas = grid * grid, 2 * grid * grid
    return (
        f"tokens per image: {canvas} on the source+target canvas vs {plain} for plain PixArt at {size} px; "
        f"{3 * canvas} per step with the 3 guidance branches; self-attention pairs x{(canvas / plain) ** 2:.0f}, "
        f"linear layers x{canvas / plain:.0f} per image"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in px (multiple of 16)")
    parser.add_argument("--steps", type=int, default=2, help="sampling steps per measured edit")
    parser.add_argument("--model", choices=("xl", "tiny"), default="xl", help="PixArt XL-2 or the tiny test model")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (fastest kept)")
    add_worker_args(parser)
    args = parser.parse_args()
    if args.size % 16 or args.size < 64:
        parser.error(f"--size must be a multiple of 16 and >= 64; got {args.size}")
    if args.worker:
        worker_main(make_side(args.worker, args), args.steps, args.measure, args.repeats, Path(args.out))
        return
    from rsedit_core.tiny import save_tiny_dit

    with tempfile.TemporaryDirectory(prefix="rsedit-dit-bench-") as tmp:
        tmp = Path(tmp)
        print(f"building a random {args.model} PixArt folder ...", flush=True)
        folder = save_tiny_dit(tmp / "dit", transformer_config=XL2_CONFIG if args.model == "xl" else None)
        options = {"--model-dir": folder, "--size": args.size, "--steps": args.steps, "--repeats": args.repeats}
        sides = {"ours": sys.executable, "reference": sys.executable}
        results = measure_sides(Path(__file__), sides, options, tmp)
        diff = (torch.load(tmp / "ours.pt") - torch.load(tmp / "reference.pt")).abs().max().item()
    title = (
        f"RSEdit DiT sampler vs the reference loop: PixArt {args.model}, {args.size}x{args.size}, {args.steps} steps, "
        f"DPM-Solver multistep, CPU fp32, {results['ours']['threads']} threads"
    )
    print_comparison(title, results["ours"], results["reference"])
    print(f"max abs diff of decoded images (0..1 scale): {diff:.3e}")
    print(token_report(args.size))


if __name__ == "__main__":
    main()
