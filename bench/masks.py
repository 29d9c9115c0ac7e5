"""Benchmark region-aware edits against a plain edit of the same scene, in one run.

Times a plain edit, a masked edit (one instruction, a mask over half the scene) and edits with
N = 2, 3, 4 regions (one instruction each), all with the same editor, scene, seed and steps, and
prints each one's time as a ratio of the plain edit's. Goals: a mask adds under 5%; N regions cost
at most (N + 2) / 3 of a plain edit, because the two branches without an instruction (empty text
with and without the source) are computed once per step for all regions.

    python bench/masks.py                         # SD-1.5-sized random U-Net, 256 px, 4 steps, CPU
    python bench/masks.py --unet tiny --size 128  # quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from sampler import build_editor  # noqa: E402

INSTRUCTIONS = ["flood the eastern blocks", "burn the western fields", "collapse the pier", "snow on the parks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", choices=("tiny", "sd15"), default="sd15")
    parser.add_argument("--size", type=int, default=256, help="scene side in px (multiple of 8)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per case (fastest kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    args = parser.parse_args()
    if args.size % 8 or args.steps < 1 or args.repeats < 1:
        parser.error("--size must be a multiple of 8; --steps and --repeats at least 1")

    from rsedit_core.edit import edit_images
    from rsedit_core.loading import load_editor
    from rsedit_core.settings import EditSettings

    with tempfile.TemporaryDirectory(prefix="rsedit-masks-bench-") as tmp:
        model = load_editor(build_editor(Path(tmp) / "editor", args.unet), dtype=args.dtype, device=args.device)
    size = args.size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    settings = EditSettings(steps=args.steps, seed=0, tile=0)
    half = torch.zeros(size, size)
    half[:, size // 2 :] = 1

    def strips(count: int) -> list[tuple[str, torch.Tensor]]:
        width = size // count
        regions = []
        for index in range(count):
            mask = torch.zeros(size, size)
            mask[:, index * width : (index + 1) * width] = 1
            regions.append((INSTRUCTIONS[index], mask))
        return regions

    cases = {"plain": {}, "mask": {"mask": half}, **{f"{n} regions": {"regions": strips(n)} for n in (2, 3, 4)}}

    def run(kwargs) -> float:
        model.cache.clear()
        start = time.perf_counter()
        edit_images(model, image, INSTRUCTIONS[0], settings=settings, **kwargs)
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run({})  # warm-up
    seconds = {name: min(run(kwargs) for _ in range(args.repeats)) for name, kwargs in cases.items()}
    plain = seconds["plain"]
    print(
        f"\nRSEdit region-aware edits: {args.unet} U-Net, {size}x{size}, {args.steps} steps, {args.device} "
        f"{args.dtype}, {torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(f"{'case':>10} {'s':>8} {'ratio':>7} {'goal':>7}")
    for name, value in seconds.items():
        count = int(name.split()[0]) if name.endswith("regions") else None
        goal = "1.00" if name == "plain" else ("< 1.05" if name == "mask" else f"<= {(count + 2) / 3:.2f}")
        print(f"{name:>10} {value:8.2f} {value / plain:7.3f} {goal:>7}")


if __name__ == "__main__":
    main()
