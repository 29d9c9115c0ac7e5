"""xView2 damage metrics: hand-computed cases, dataset accumulation, input checks, parity with torchange.

The parity tests run `tests/damage_metrics_oracle.py` under the interpreter named by
`TORCHANGE_PYTHON` (an environment with torchange 0.0.4 and ever-beta) and are skipped without it.

Expected values below are the exact `2TP / (2TP + FP + FN)`; our F1 carries torchange's 1e-7
smoothing (see `rsedit_core.damage.metrics`), so they are compared with `abs=1e-6`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import oracle_python

from rsedit_core.damage.metrics import DamageMetrics, damage_scores
from rsedit_core.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
SMOOTHING_TOL = 1e-6
PARITY_TOL = 1e-9
NAMES = ("no-damage", "minor-damage", "major-damage", "destroyed")

# 16 pixels. Buildings (gt >= 1, 255 included) are the right-hand block and the bottom-left
# 2x2; the two 255 pixels are buildings of unknown damage.
GT = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 0, 255],
        [3, 4, 0, 255],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [2, 3, 0, 1],
        [0, 4, 1, 2],
    ],
    dtype=np.uint8,
)


def test_hand_computed_4x4():
    s = damage_scores(PRED, GT)
    # Localisation over all 16 pixels, building = class >= 1 (the 255 pixels are buildings):
    # TP (0,2) (0,3) (1,2) (2,0) (2,1) (2,3) (3,1) (3,3) = 8; FP (0,1) (3,2) = 2;
    # FN (1,3) (3,0) = 2; TN (0,0) (1,0) (1,1) (2,2) = 4. F1 = 16 / (16 + 2 + 2) = 0.8.
    assert (s.loc_tp, s.loc_fp, s.loc_fn, s.loc_tn, s.pixels) == (8, 2, 2, 4, 16)
    assert s.f1_loc == pytest.approx(0.8, abs=SMOOTHING_TOL)
    # Damage on the 8 GT pixels with class 1..4 (gt, pred):
    # (0,2) 1,1  (0,3) 1,1  (1,2) 1,1  (1,3) 1,0  (2,0) 2,2  (2,1) 2,3  (3,0) 3,0  (3,1) 4,4.
    # The 255 pixels are skipped although pred says 1 and 2 there (not FP of class 1 or 2).
    # no-damage TP 3 FN 1 -> 6/7; minor TP 1 FN 1 -> 2/3; major TP 0 FP 1 ((2,1)) FN 1 -> 0;
    # destroyed TP 1 -> 1. Predicted background on a GT building ((1,3), (3,0)) is an FN of
    # that building's class and an FP of no class.
    counts = {n: (c.tp, c.fp, c.fn, c.gt_pixels) for n, c in s.damage_counts.items()}
    assert counts == {
        "no-damage": (3, 0, 1, 4),
        "minor-damage": (1, 0, 1, 2),
        "major-damage": (0, 1, 1, 1),
        "destroyed": (1, 0, 0, 1),
    }
    assert s.damage_pixels == 8
    expected = {"no-damage": 6 / 7, "minor-damage": 2 / 3, "major-damage": 0.0, "destroyed": 1.0}
    assert s.per_class == pytest.approx(expected, abs=SMOOTHING_TOL)
    assert s.per_class["major-damage"] == 0.0  # 0 / (0 + eps), never NaN
    # The zero class dominates the harmonic mean through its epsilon:
    # F1_dam = 4 / (7/6 + 3/2 + 1/1e-6 + 1) = 4 / 1000003.667 = 3.99998533e-6.
    assert s.f1_dam == pytest.approx(3.99998533e-6, rel=1e-8)
    assert s.score == pytest.approx(0.3 * 0.8 + 0.7 * 3.99998533e-6, abs=SMOOTHING_TOL)
    # Weighted by GT pixels 4, 2, 1, 1: (4 * 6/7 + 2 * 2/3 + 0 + 1) / 8 = 121/168.
    assert s.f1_weighted == pytest.approx(121 / 168, abs=SMOOTHING_TOL)


def test_perfect_prediction_and_epsilon_of_a_perfect_class():
    s = damage_scores(np.where(GT == 255, 1, GT), GT)
    assert s.f1_loc == pytest.approx(1.0, abs=SMOOTHING_TOL)
    assert all(v == pytest.approx(1.0, abs=SMOOTHING_TOL) for v in s.per_class.values())
    # 4 / (4 / (1 + 1e-6)) = 1 + 1e-6, up to the 1e-7 smoothing.
    assert s.f1_dam == pytest.approx(1.0 + 1e-6, abs=2e-7)
    assert s.score == pytest.approx(1.0 + 0.7e-6, abs=2e-7)


def test_ignored_pixels_count_for_localisation_only():
    unknown = GT == 255
    base = damage_scores(PRED, GT)
    for value in range(5):
        s = damage_scores(np.where(unknown, value, PRED), GT)
        assert s.per_class == base.per_class
        assert s.damage_counts == base.damage_counts
        # Predicting building on both 255 pixels gives 2 TP; predicting background 2 FN.
        assert (s.loc_tp, s.loc_fn) == ((6 + 2, 2) if value else (6, 2 + 2))


def test_a_class_absent_from_gt_and_prediction_scores_zero():
    gt = np.array([[1, 1], [0, 0]])
    s = damage_scores(gt.copy(), gt)
    assert s.per_class["no-damage"] == pytest.approx(1.0, abs=SMOOTHING_TOL)
    assert [s.per_class[n] for n in NAMES[1:]] == [0.0, 0.0, 0.0]
    # 4 / (1/(1 + 1e-6) + 3 / 1e-6) = 1.33333289e-6
    assert s.f1_dam == pytest.approx(4 / (1 / (1 + 1e-6) + 3e6), rel=1e-7)
    assert s.f1_weighted == pytest.approx(1.0, abs=SMOOTHING_TOL)


def test_no_building_anywhere_scores_zero_not_nan():
    s = damage_scores(np.zeros((3, 3), np.int64), np.zeros((3, 3), np.int64))
    assert (s.f1_loc, s.f1_weighted, s.damage_pixels, s.loc_tn) == (0.0, 0.0, 0, 9)
    assert s.f1_dam == pytest.approx(1e-6)
    assert json.loads(json.dumps(s.to_dict()))["per_class"] == dict.fromkeys(NAMES, 0.0)


def test_separate_building_maps():
    gt = np.array([[1, 2], [0, 0]])
    pred = np.array([[0, 3], [0, 0]])
    default = damage_scores(pred, gt)  # building = pred >= 1: TP 1 FN 1 -> 2/3
    assert default.f1_loc == pytest.approx(2 / 3, abs=SMOOTHING_TOL)
    assert default.damage_counts["major-damage"].fp == 1
    # A building predicted with damage class 0 ((0,0)) counts for localisation.
    both = damage_scores(pred, gt, pred_building=np.array([[1, 1], [0, 0]]))
    assert both.f1_loc == pytest.approx(1.0, abs=SMOOTHING_TOL)
    assert both.damage_counts == default.damage_counts
    # Damage outside the predicted buildings is set to 0 (xView2's single-map constraint).
    masked = damage_scores(pred, gt, pred_building=np.array([[True, False], [False, False]]))
    assert masked.damage_counts["major-damage"].fp == 0
    assert masked.damage_counts["minor-damage"].fn == 1
    # GT footprints from another map (the pre-disaster mask): (1,1) becomes a missed building.
    pre = damage_scores(pred, gt, gt_building=np.array([[1, 1], [0, 1]]))
    assert (pre.loc_tp, pre.loc_fn) == (1, 2)
    assert pre.damage_counts == default.damage_counts


def test_accumulation_sums_counts_before_f1():
    # Sample 1 is perfect; sample 2 misses its one no-damage building and predicts three false ones.
    gt = np.array([[[1, 1, 1, 1]], [[1, 0, 0, 0]]])
    pred = np.array([[[1, 1, 1, 1]], [[0, 1, 1, 1]]])
    per_sample = [damage_scores(p, g) for p, g in zip(pred, gt, strict=True)]
    assert [s.f1_loc for s in per_sample] == pytest.approx([1.0, 0.0], abs=SMOOTHING_TOL)
    metrics = DamageMetrics()
    for p, g in zip(pred, gt, strict=True):
        metrics.update(p, g)
    pooled = metrics.compute()
    # Summed counts TP 4 FP 3 FN 1: F1_loc = 8 / 12 = 2/3, not the per-sample mean 1/2.
    assert (pooled.loc_tp, pooled.loc_fp, pooled.loc_fn) == (4, 3, 1)
    assert pooled.f1_loc == pytest.approx(2 / 3, abs=SMOOTHING_TOL)
    # no-damage: TP 4 FN 1 (FP 0, the false buildings are on GT background) -> 8/9, not (1 + 0) / 2.
    assert pooled.per_class["no-damage"] == pytest.approx(8 / 9, abs=SMOOTHING_TOL)
    # One batched [B, H, W] update, or torch tensors, give the same counts.
    assert DamageMetrics().update(pred, gt).compute() == pooled
    assert DamageMetrics().update(torch.from_numpy(pred), torch.from_numpy(gt).to(torch.uint8)).compute() == pooled
    np.testing.assert_array_equal(metrics.localization_confusion, [[0, 3], [1, 4]])
    metrics.reset()
    with pytest.raises(InputError, match="no pixels to score"):
        metrics.compute()


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(InputError, match=r"prediction \(4, 5\), ground truth \(4, 4\)"):
        damage_scores(np.zeros((4, 5), np.int64), GT)
    with pytest.raises(InputError, match=r"pred_building \(2, 2\)"):
        damage_scores(PRED, GT, pred_building=np.zeros((2, 2), bool))
    with pytest.raises(InputError, match=r"\[H, W\] or \[B, H, W\], got shape \(16,\)"):
        damage_scores(PRED.ravel(), GT.ravel())


def test_bad_values_are_listed():
    gt = GT.copy()
    gt[0, 0], gt[0, 1] = 7, 9
    with pytest.raises(InputError, match=r"ground truth holds values outside .*: 7, 9\. "):
        damage_scores(PRED, gt)
    with pytest.raises(InputError, match=r"ground truth .*: -1\."):
        damage_scores(PRED, np.where(GT == 0, -1, GT.astype(np.int64)))
    with pytest.raises(InputError, match=r"prediction holds values outside 0\.\.4: 5, 255\."):
        damage_scores(np.where(GT == 255, 255, np.where(PRED == 4, 5, PRED)), GT)
    with pytest.raises(InputError, match="integer class indices, got dtype float32"):
        damage_scores(PRED.astype(np.float32), GT)
    with pytest.raises(InputError, match="numpy array or a torch tensor, got list"):
        damage_scores(PRED.tolist(), GT)


def test_1024_masks_are_fast():
    import time

    rng = np.random.default_rng(0)
    gt = rng.choice(np.array([0, 1, 2, 3, 4, 255], np.uint8), (1024, 1024))
    pred = rng.integers(0, 5, (1024, 1024), dtype=np.uint8)
    start = time.perf_counter()
    s = damage_scores(pred, gt)
    assert time.perf_counter() - start < 2.0  # about 0.07 s on one core
    assert s.pixels == 1024 * 1024


def _structured_masks(seed: int, n: int = 6, size: int = 96, building_maps: bool = False) -> dict[str, np.ndarray]:
    """xView2-like masks: rectangular buildings of mixed damage (some 255) and an imperfect prediction.

    Sample 0 has no GT building at all and sample 1 only no-damage buildings, so that the
    zero-denominator and epsilon paths are compared too.
    """
    rng = np.random.default_rng(seed)
    gt = np.zeros((n, size, size), np.uint8)
    pred = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(8, 16)):
            h, w = rng.integers(3, 14, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            cls = rng.choice([1, 2, 3, 4, 255], p=[0.45, 0.2, 0.15, 0.15, 0.05]) if i != 1 else 1
            if i != 0:
                gt[i, y : y + h, x : x + w] = cls
            if rng.random() < 0.15:
                continue  # missed building
            dy, dx = rng.integers(-2, 3, 2)
            guess = cls if cls != 255 and rng.random() < 0.6 else rng.integers(1, 5)
            pred[i, max(y + dy, 0) : y + dy + h, max(x + dx, 0) : x + dx + w] = guess
        for _ in range(2):  # false buildings
            y, x = rng.integers(0, size - 6, 2)
            pred[i, y : y + 6, x : x + 6] = rng.integers(1, 5)
        noise = rng.random((size, size)) < 0.02
        pred[i][noise] = rng.integers(0, 5, int(noise.sum()))
    masks = {"pred": pred, "gt": gt}
    if building_maps:
        flip = rng.random(pred.shape) < 0.05
        masks["pred_building"] = (pred >= 1) ^ flip
        masks["gt_building"] = ((gt >= 1) ^ (rng.random(gt.shape) < 0.01)).astype(np.uint8)
    return masks


PARITY_CASES = {"classes_only": dict(seed=0), "building_maps": dict(seed=1, building_maps=True)}


@pytest.fixture(scope="module")
def parity(tmp_path_factory) -> dict:
    python = oracle_python()
    folder = tmp_path_factory.mktemp("damage-metrics-oracle")
    cases = {name: _structured_masks(**kwargs) for name, kwargs in PARITY_CASES.items()}
    for name, masks in cases.items():
        np.savez(folder / f"{name}.npz", **masks)
    out = folder / "torchange.json"
    npz_files = [str(folder / f"{name}.npz") for name in cases]
    result = subprocess.run(
        [python, str(ROOT / "tests" / "damage_metrics_oracle.py"), str(out), *npz_files],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {"cases": cases, "torchange": json.loads(out.read_text())}


def _building_kwargs(masks: dict[str, np.ndarray], i: int | None) -> dict[str, np.ndarray]:
    pick = slice(None) if i is None else i
    return {k: masks[k][pick] for k in ("pred_building", "gt_building") if k in masks}


def _assert_matches(ours, theirs: dict, tol: float, dam_tol: float) -> None:
    assert ours.f1_loc == pytest.approx(theirs["f1_loc"], abs=tol, rel=0)
    assert list(ours.per_class.values()) == pytest.approx(theirs["per_class"], abs=tol, rel=0)
    assert ours.f1_dam == pytest.approx(theirs["f1_dam"], abs=dam_tol, rel=0)
    assert ours.score == pytest.approx(theirs["score"], abs=dam_tol, rel=0)


@pytest.mark.parametrize("case", PARITY_CASES)
def test_per_sample_matches_torchange(parity, case):
    masks, reference = parity["cases"][case], parity["torchange"][case]
    for i, theirs in enumerate(reference["samples"]):
        ours = damage_scores(masks["pred"][i], masks["gt"][i], **_building_kwargs(masks, i))
        _assert_matches(ours, theirs["exact"], PARITY_TOL, PARITY_TOL)
    assert reference["samples"][0]["exact"]["per_class"] == [0.0] * 4  # no GT building
    assert reference["samples"][1]["exact"]["per_class"][1:] == [0.0] * 3  # no-damage only


@pytest.mark.parametrize("case", PARITY_CASES)
def test_dataset_matches_torchange(parity, case):
    masks, reference = parity["cases"][case], parity["torchange"][case]
    metrics = DamageMetrics()
    for i in range(masks["pred"].shape[0]):
        metrics.update(masks["pred"][i], masks["gt"][i], **_building_kwargs(masks, i))
    ours = metrics.compute()
    _assert_matches(ours, reference["dataset"]["exact"], PARITY_TOL, PARITY_TOL)
    assert 0.2 < ours.f1_dam < 0.9  # a realistic dataset: every class scored
    # What torchange's evaluation prints (float32, 5 decimals) agrees to its printed precision;
    # the harmonic mean amplifies the rounding of small class F1s, hence the wider F1_dam bound.
    _assert_matches(ours, reference["dataset"]["printed"], 6e-6, 1e-4)
    batched = DamageMetrics().update(masks["pred"], masks["gt"], **_building_kwargs(masks, None)).compute()
    assert batched == ours
