"""Benchmark large-scene editing: time per megapixel and peak memory as the scene grows.

Edits scenes of about 1, 4 and 16 megapixels (sides ``base``, ``2 base`` and ``4 base``) with the
same window settings through ``rsedit_core.edit.edit_scene``, each measurement in its own fresh
process: the scene is generated window by window (a smooth synthetic field, never held whole) and
the edit is written to a sink that keeps only a checksum, as a GeoTIFF sink would stream it to
disk. Prints seconds per megapixel and the peak RSS growth of each size, their ratios to the
first size (goals: time per megapixel within 1.15x, peak memory within 1.2x), and the overlap
overhead: seconds per megapixel of the first scene against one window of the tile's size.

    python bench/scene.py                                   # tiny random editor, 1024/2048/4096 px, CPU
    python bench/scene.py --unet sd15 --device cuda --dtype fp16   # an SD-1.5-sized U-Net on a GPU
    python bench/scene.py --base 256 --tile 128 --steps 2   # quick check
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from harness import PeakRSS, _fix_malloc_thresholds, run_side  # noqa: E402
from sampler import build_editor  # noqa: E402

PROMPT = "flood the low-lying districts along the river; roads and fields inland stay unchanged"


class SyntheticScene:
    """A ``height x width`` RGB scene computed per window (sums of sines), so no copy of it exists."""

    count = 1

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width

    def read(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        y = torch.arange(top, top + height, dtype=torch.float32)[:, None]
        x = torch.arange(left, left + width, dtype=torch.float32)[None, :]
        channels = [0.5 + 0.25 * torch.sin(x / (40 + 9 * c)) * torch.cos(y / (55 + 7 * c)) for c in range(3)]
        return torch.stack(channels)[None]


class ChecksumSink:
    """Keeps the sum of what is written and how many pixels, nothing else."""

    def __init__(self):
        self.total, self.pixels = 0.0, 0

    def write(self, index: int, top: int, left: int, pixels: torch.Tensor) -> None:
        self.total += float(pixels.double().sum())
        self.pixels += pixels.shape[-1] * pixels.shape[-2]


def worker(args: argparse.Namespace) -> None:
    from rsedit_core.edit import edit_scene
    from rsedit_core.loading import load_editor
    from rsedit_core.settings import EditSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_editor(args.model_dir, dtype=args.dtype, device=args.device)
    settings = EditSettings(steps=args.steps, seed=0, tile=args.tile, tile_overlap=args.overlap)
    cuda = torch.device(args.device).type == "cuda"

    def run(side: int, steps: int) -> ChecksumSink:
        sink = ChecksumSink()
        edit_scene(model, SyntheticScene(side, side), [sink], PROMPT, settings=EditSettings(**{**settings.__dict__,
                   "steps": steps}))  # fmt: skip
        if cuda:
            torch.cuda.synchronize()
        return sink

    run(min(args.side, args.tile), 1)  # warm-up: one window, one step
    if args.measure == "time":
        start = time.perf_counter()
        sink = run(args.side, args.steps)
        result = {"seconds": time.perf_counter() - start}
    else:
        _fix_malloc_thresholds()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            sink = run(args.side, args.steps)
        result = {"peak_rss_mb": (rss.peak - rss.before) / 2**20}
        if cuda:
            result["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - before) / 2**20
    assert sink.pixels == args.side * args.side, (sink.pixels, args.side)
    result["mean"] = sink.total / (3 * sink.pixels)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=1024, help="side of the smallest scene in px (default 1024)")
    parser.add_argument("--tile", type=int, default=512, help="window size in px (default 512)")
    parser.add_argument("--overlap", type=int, default=128, help="window overlap in px (default 128)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per edit (default 4)")
    parser.add_argument("--unet", choices=("tiny", "sd15"), default="tiny", help="the random editor's U-Net size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--measure", default="time", help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.base % 16 or args.tile % 16 or args.overlap % 16 or not 0 < 2 * args.overlap <= args.tile:
        parser.error("--base, --tile and --overlap must be multiples of 16, with 0 < 2 x overlap <= tile")
    sides = {"1x": args.base, "4x": 2 * args.base, "16x": 4 * args.base}
    with tempfile.TemporaryDirectory(prefix="rsedit-scene-bench-") as tmp:
        folder = build_editor(Path(tmp) / "editor", args.unet)
        common = {
            "--worker": "scene",
            "--model-dir": folder,
            "--tile": args.tile,
            "--overlap": args.overlap,
            "--steps": args.steps,
            "--device": args.device,
            "--dtype": args.dtype,
            "--threads": args.threads,
        }
        results = {}
        for name, side in {"window": args.tile, **sides}.items():
            options = {**common, "--side": side}
            print(f"{name} ({side}x{side}): time, memory ...", flush=True)
            timed = run_side(sys.executable, Path(__file__), options, "time")
            memory = run_side(sys.executable, Path(__file__), options, "memory")
            results[name] = {**timed, **memory, "mp": side * side / 1e6}
    print(
        f"\nRSEdit scene editing: {args.unet} U-Net, tile {args.tile} px, overlap {args.overlap} px, "
        f"{args.steps} steps, {args.device} {args.dtype}"
    )
    first = results["1x"]
    print(f"{'scene':>14} {'MP':>6} {'s/MP':>8} {'ratio':>6} {'peak MB':>9} {'ratio':>6}")
    for name in ("window", *sides):
        r = results[name]
        per_mp = r["seconds"] / r["mp"]
        memory_key = "peak_cuda_mb" if "peak_cuda_mb" in r else "peak_rss_mb"
        side = int(math.sqrt(r["mp"] * 1e6) + 0.5)
        print(
            f"{f'{side}x{side}':>14} {r['mp']:6.2f} {per_mp:8.3f} {per_mp / (first['seconds'] / first['mp']):6.2f} "
            f"{r[memory_key]:9.1f} {r[memory_key] / first[memory_key]:6.2f}"
        )
    overhead = (first["seconds"] / first["mp"]) / (results["window"]["seconds"] / results["window"]["mp"])
    print(f"overlap overhead (s/MP of the {args.base} px scene / s/MP of one {args.tile} px window): {overhead:.2f}x")


if __name__ == "__main__":
    main()
