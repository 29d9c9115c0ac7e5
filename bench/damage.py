"""Benchmark our ChangeStar1x256 against torchange's on identical random weights.

torchange (with torchvision) lives in its own interpreter (``scripts/setup_oracle.sh``), given
by ``--torchange-python`` or ``$TORCHANGE_PYTHON``. The parent saves one random state dict; each
side loads it in a fresh process (see harness.py) and runs the model on the same normalised
512-px pair. Prints seconds per forward pass, peak memory, ours / torchange ratios (goal <= 1.0)
and the largest difference of the change probabilities.

    python bench/damage.py [--size 512] [--passes 3] [--torchange-python .venv-oracle/bin/python]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from harness import add_worker_args, measure_sides, print_comparison, worker_main  # noqa: E402


def normalised_input(size: int) -> torch.Tensor:
    """A fixed ImageNet-normalised pre+post pair ``(1, 6, S, S)``, the model's input layout."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 6, size, size, generator=generator)
    mean = torch.tensor([0.485, 0.456, 0.406] * 2).view(1, 6, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225] * 2).view(1, 6, 1, 1)
    return (pixels - mean) / std


def make_side(side: str, args):
    from safetensors.torch import load_file

    x = normalised_input(args.size)
    state = load_file(str(Path(args.model_dir) / "changestar.safetensors"))
    if side == "ours":
        from rsedit_core.damage import ChangeStar1x256

        model = ChangeStar1x256()
        model.load_state_dict(state, strict=True)
        forward = lambda: model.predict_normalized(x).change_prob  # noqa: E731
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from torchange.models.changen2 import changestar_1x256

        model = changestar_1x256("vitb", "s1c5", changen2_pretrained=None)
        model.load_state_dict(state, strict=True)
        forward = lambda: model(x).change_prediction  # noqa: E731
    model.eval().requires_grad_(False)

    def run(passes: int) -> torch.Tensor:
        with torch.no_grad():
            for _ in range(passes):
                output = forward()
        return output

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square input side, a multiple of 32")
    parser.add_argument("--passes", type=int, default=3, help="forward passes per timed run")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (fastest kept)")
    parser.add_argument("--torchange-python", default=os.environ.get("TORCHANGE_PYTHON"), help="oracle interpreter")
    add_worker_args(parser)
    args = parser.parse_args()
    if args.worker:
        worker_main(make_side(args.worker, args), args.passes, args.measure, args.repeats, Path(args.out))
        return
    if not args.torchange_python:
        parser.error("needs torchange's interpreter: --torchange-python or $TORCHANGE_PYTHON (scripts/setup_oracle.sh)")
    from safetensors.torch import save_file

    from rsedit_core.damage import ChangeStar1x256

    with tempfile.TemporaryDirectory(prefix="rsedit-damage-bench-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        save_file(ChangeStar1x256().state_dict(), str(tmp / "changestar.safetensors"))
        options = {"--model-dir": tmp, "--size": args.size, "--passes": args.passes, "--repeats": args.repeats}
        results = measure_sides(
            Path(__file__), {"ours": sys.executable, "torchange": args.torchange_python}, options, tmp
        )
        diff = (torch.load(tmp / "ours.pt") - torch.load(tmp / "torchange.pt")).abs().max().item()
    title = f"ChangeStar1x256 (ViT-B, s1c5), ours vs torchange: {args.size} px, CPU fp32, random weights"
    print_comparison(title, results["ours"], results["torchange"], unit="s/forward")
    print(f"max abs diff of change probabilities: {diff:.3e}")


if __name__ == "__main__":
    main()
