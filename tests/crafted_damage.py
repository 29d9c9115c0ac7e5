"""The crafted damage scene: xView2 localisation F1 on the BUILDING output differs from `damage > 0`.

ChangeStar decodes `building = building_prob > 0.5` and `damage = argmax(change) * building`, so
a building pixel whose change argmax is 0 has damage 0 and is still a building. torchange's
evaluator (`torchange.metrics.xview2.evaluate`) scores localisation on `building`; so must we.

The crafted 64x64 scene below makes the two readings differ by hand-computable amounts:

    ground truth   cols 0:32 are buildings: rows 0:16 class 1, 16:32 class 2, 32:48 class 3,
                   48:64 class 4 (512 px each); cols 32:64 background.
    building       cols 0:24 (all rows, 1536 px) and rows 0:16 x cols 32:48 (256 px, a false one).
    change argmax  0 on cols 0:8 (buildings with change class 0), the ground-truth class on
                   cols 8:24, 1 on the false building, 3 off the buildings (masked by `* building`).

    building output: TP 1536, FP 256, FN 512         -> F1_loc = 3072 / 3840 = 0.8
    damage > 0:      TP 1024, FP 256, FN 1024        -> F1_loc = 2048 / 3328 = 8/13
    damage, every class: TP 256, FP 0, FN 256         -> F1 = 2/3, F1_dam = 2/3 (+1e-6)
    score = 0.3 * 0.8 + 0.7 * 2/3 = 0.70667

`CraftedModel` is a test double with the damage model's interface that reads the building
probability from the pre image's red channel and the change class from the post image's green
channel (class * 50), so the CLI and the nodes can be run end to end on this scene.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import torch
from conftest import oracle_python

from rsedit_core.damage import assess
from rsedit_core.damage.model import IMAGENET_MEAN, IMAGENET_STD, DamageProbabilities

TESTS = Path(__file__).resolve().parent
SIZE = 64
F1_LOC = 0.8
F1_LOC_DAMAGE_GT0 = 8 / 13
F1_DAM = 2 / 3
SCORE = 0.3 * F1_LOC + 0.7 * F1_DAM
SMOOTHING_TOL = 1e-6
PARITY_TOL = 1e-9
GREEN_STEP = 50


def crafted_maps() -> dict[str, np.ndarray]:
    """Ground truth, building output, change argmax and decoded damage of the crafted scene."""
    gt = np.zeros((SIZE, SIZE), np.uint8)
    for row, cls in enumerate(range(1, 5)):
        gt[16 * row : 16 * (row + 1), :32] = cls
    building = np.zeros((SIZE, SIZE), bool)
    building[:, :24] = True
    building[:16, 32:48] = True
    change = np.full((SIZE, SIZE), 3, np.uint8)
    change[:, :8] = 0
    change[:, 8:24] = gt[:, 8:24]
    change[:16, 32:48] = 1
    damage = (change * building).astype(np.uint8)
    return {"gt": gt, "building": building, "change": change, "damage": damage}


def crafted_images() -> tuple[np.ndarray, np.ndarray]:
    """Pre (red = building) and post (green = change class * 50) as 8-bit RGB arrays."""
    maps = crafted_maps()
    pre = np.zeros((SIZE, SIZE, 3), np.uint8)
    pre[..., 0] = np.where(maps["building"], 255, 0)
    pre[..., 1] = 90  # unused channels with some content
    post = np.zeros((SIZE, SIZE, 3), np.uint8)
    post[..., 1] = maps["change"] * GREEN_STEP
    post[..., 2] = 40
    return pre, post


class CraftedModel(torch.nn.Module):
    """Damage-model double: building_prob 0.9 where the pre image is red, else 0.1; change
    probabilities peaked at round(post green * 255 / 50). Pixelwise, so tiling changes nothing."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.calls = 0

    def predict_normalized(self, x: torch.Tensor) -> DamageProbabilities:
        self.calls += 1
        mean = torch.tensor(IMAGENET_MEAN * 2, dtype=x.dtype).view(1, 6, 1, 1)
        std = torch.tensor(IMAGENET_STD * 2, dtype=x.dtype).view(1, 6, 1, 1)
        rgb = x * std + mean
        building = torch.where(rgb[:, 0:1] > 0.5, 0.9, 0.1)
        cls = (rgb[:, 4] * 255 / GREEN_STEP).round().clamp(0, 4).long()
        change = torch.nn.functional.one_hot(cls, 5).permute(0, 3, 1, 2).float().mul(8).softmax(1)
        return DamageProbabilities(building, building, change)


def crafted_assessment(**kwargs):
    pre, post = crafted_images()
    as_tensor = lambda a: torch.from_numpy(a).float().div(255).permute(2, 0, 1)[None]  # noqa: E731
    return assess(CraftedModel(), as_tensor(pre), as_tensor(post), **kwargs)


def run_oracle(folder: Path, cases: dict[str, dict[str, np.ndarray]]) -> dict:
    """torchange's reading of each case (see tests/damage_metrics_oracle.py)."""
    python = oracle_python()
    for name, masks in cases.items():
        np.savez(folder / f"{name}.npz", **masks)
    out = folder / "torchange.json"
    result = subprocess.run(
        [
            python,
            str(TESTS / "damage_metrics_oracle.py"),
            str(out),
            *(str(folder / f"{n}.npz") for n in cases),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())
