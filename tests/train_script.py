"""training/train.py run in this process, and the checks its tests share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def script():
    name = "rsedit_train_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "training" / "train.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_script(argv: list[str]) -> int:
    """Run the script in this process, as a fresh process would (accelerate keeps global state)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return script().main(argv)


def script_args(base, data, out, *extra, backbone="unet"):
    return [
        "--backbone", backbone, "--base", str(base), "--data", str(data), "--output-dir", str(out),
        "--resolution", "64", "--train-batch-size", "2", "--gradient-accumulation-steps", "1",
        "--mixed-precision", "no", "--dataloader-num-workers", "0", "--report-to", "none",
        *extra,
    ]  # fmt: skip


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(next(folder.glob("*.safetensors")))


def same_checkpoint(a: Path, b: Path, folder: str = "unet") -> None:
    for part in (folder, f"{folder}_ema"):
        x, y = weights(a / part), weights(b / part)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), part
