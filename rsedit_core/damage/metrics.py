"""xView2 building-damage metrics: localisation F1, damage F1 and the combined score.

Masks hold xView2 damage classes (the xBD order): 0 background, 1 no-damage, 2 minor-damage,
3 major-damage, 4 destroyed; ground truth may also hold 255, an unclassified building.

- Localisation is scored on every pixel, building against background: `F1_loc` is the F1 of the
  building class. On the ground-truth side a building is class >= 1 (255 included). On the
  prediction side it is the model's BUILDING output, `sigmoid(building logit) > 0.5` (ChangeStar's
  `t1_semantic_prediction > 0.5`, as torchange's and the xView2 authors' evaluators read it), not
  `damage > 0`: decoding is `damage = argmax(change) * building`, so a predicted building whose
  change class is 0 has damage 0 and is still a localisation positive. Pass that mask as
  `pred_building`, or pass the `DamageAssessment` itself as `pred`, which does so. Without it the
  prediction's building is `pred >= 1`, right only for a map with no separate building output.
- Damage is scored only on ground-truth building pixels with a known class (`1 <= gt <= 4`).
  There, each class `c` in 1..4 is scored one-vs-rest on a 5x5 confusion matrix (rows ground
  truth, columns prediction): `TP_c = M[c, c]`, `FP_c = column c minus TP_c`,
  `FN_c = row c minus TP_c`. A predicted background (0) on a ground-truth building is therefore
  a false negative of that building's class and a false positive of none.
- `F1_dam = 4 / sum_c 1 / (F1_c + 1e-6)`, the harmonic mean of the four class F1s;
  `score = 0.3 * F1_loc + 0.7 * F1_dam` (the xView2 challenge score).
- Over a dataset the confusion counts are summed over all samples first and the F1s computed
  once from the sums, as the xView2 scorer and torchange do; this is not the mean of per-sample F1.

F1 follows torchange 0.0.4 (`torchange.metrics.xview2.mixed_score` on the tables of
`ever.metric.PixelMetric.summary_all`) term for term: `P = TP / (TP + FP + 1e-7)`,
`R = TP / (TP + FN + 1e-7)`, `F1 = 2PR / (P + R + 1e-7)`. These smoothing terms change an F1 by
at most about 1e-7 and make a class with no ground truth and no prediction score F1 = 0 (not NaN),
which the harmonic mean then turns into `F1_dam` of about 4e-6. We differ on two points, neither
of which moves a reported digit: counts are int64 and F1 float64 (ever counts in float32, exact
up to 2**24 pixels per cell), and values are not rounded to 5 decimals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError

if TYPE_CHECKING:
    from .inference import DamageAssessment

DAMAGE_CLASS_NAMES = ("background", "no-damage", "minor-damage", "major-damage", "destroyed")
IGNORE_INDEX = 255
NUM_DAMAGE_CLASSES = len(DAMAGE_CLASS_NAMES)

# ever.metric.pixel.EPS: the smoothing in torchange's precision, recall and F1.
_F1_EPS = 1e-7
# The xView2 scorer's harmonic-mean epsilon (xview2_metrics.py, repeated in torchange).
_HARMONIC_EPS = 1e-6
_LOC_WEIGHT = 0.3
_DAM_WEIGHT = 0.7

MaskLike = np.ndarray | torch.Tensor


def _is_assessment(x: object) -> bool:
    """A `DamageAssessment` (or anything with its `damage` and `building` maps), not a mask."""
    return not isinstance(x, np.ndarray | torch.Tensor) and hasattr(x, "damage") and hasattr(x, "building")


def _from_assessment(pred, gt, pred_building):
    """Unpack an assessment into its damage map and its building output (the localisation mask).

    A one-image assessment `(1, H, W)` scored against one `[H, W]` ground truth is squeezed to
    `[H, W]`.
    """
    if not _is_assessment(pred):
        return pred, pred_building
    if pred_building is not None:
        raise InputError(
            "pred_building was given together with a DamageAssessment, which carries its own building output; "
            "pass one of them."
        )
    damage, building = pred.damage, pred.building
    if damage.ndim == 3 and damage.shape[0] == 1 and getattr(gt, "ndim", 0) == 2:
        damage, building = damage[0], building[0]
    return damage, building


@dataclass
class ClassCounts:
    """One-vs-rest confusion counts of one damage class on ground-truth building pixels."""

    tp: int
    fp: int
    fn: int
    gt_pixels: int


@dataclass
class DamageScores:
    """xView2 scores of a sample or a dataset. All F1 values are in 0..1.

    Attributes:
        f1_loc: building-vs-background F1 over all pixels.
        f1_dam: harmonic mean of the four damage-class F1s (with xView2's 1e-6 epsilon).
        f1_weighted: damage-class F1s weighted by their ground-truth pixel counts (0.0 when
            there are no scorable building pixels).
        score: `0.3 * f1_loc + 0.7 * f1_dam`.
        per_class: damage class name -> F1, for no-damage, minor-damage, major-damage, destroyed.
        loc_tp, loc_fp, loc_fn, loc_tn: localisation pixel counts (building is positive).
        damage_counts: damage class name -> its `ClassCounts`.
        pixels: pixels scored for localisation.
        damage_pixels: ground-truth building pixels with a known class (where damage is scored).
    """

    f1_loc: float
    f1_dam: float
    f1_weighted: float
    score: float
    per_class: dict[str, float]
    loc_tp: int
    loc_fp: int
    loc_fn: int
    loc_tn: int
    damage_counts: dict[str, ClassCounts]
    pixels: int
    damage_pixels: int

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dict (nested dicts for the per-class values)."""
        return asdict(self)


def _f1(tp: float, fp: float, fn: float) -> float:
    precision = tp / (tp + fp + _F1_EPS)
    recall = tp / (tp + fn + _F1_EPS)
    return 2.0 * precision * recall / (precision + recall + _F1_EPS)


def _as_int_array(x: MaskLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    elif not isinstance(x, np.ndarray):
        raise InputError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}.")
    if x.dtype == np.bool_:
        return x.astype(np.int64)
    if not np.issubdtype(x.dtype, np.integer):
        raise InputError(
            f"{name} must hold integer class indices, got dtype {x.dtype}. "
            "Convert it first, e.g. mask.round().astype(np.int64) or tensor.long()."
        )
    if x.ndim not in (2, 3):
        raise InputError(f"{name} must be [H, W] or [B, H, W], got shape {tuple(x.shape)}.")
    return x.astype(np.int64, copy=False)


def _listed(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return shown + (f", ... ({len(values)} distinct values)" if len(values) > limit else "")


def check_ground_truth(gt: MaskLike, name: str = "ground truth") -> None:
    """Raise `InputError` unless ``gt`` holds only xView2 classes 0..4 and 255 (unclassified).

    Callers run it on a ground truth before the model is loaded, so that a wrong file costs nothing.
    """
    gt = _as_int_array(gt, name)
    bad_gt = ((gt < 0) | (gt > 4)) & (gt != IGNORE_INDEX)
    if bad_gt.any():
        raise InputError(
            f"{name} holds values outside {{0, 1, 2, 3, 4, {IGNORE_INDEX}}}: {_listed(np.unique(gt[bad_gt]))}. "
            f"Expected xView2 classes 0 background .. 4 destroyed, and {IGNORE_INDEX} for unclassified buildings."
        )


def _check_values(pred: np.ndarray, gt: np.ndarray) -> None:
    check_ground_truth(gt)
    bad_pred = (pred < 0) | (pred > 4)
    if bad_pred.any():
        raise InputError(
            f"prediction holds values outside 0..4: {_listed(np.unique(pred[bad_pred]))}. "
            "Predictions must be damage classes 0 background .. 4 destroyed (no ignore value)."
        )


class DamageMetrics:
    """Accumulates xView2 confusion counts over samples; `compute()` scores the sums.

    Example:
        metrics = DamageMetrics()
        for pre, post, gt in samples:
            metrics.update(assess(model, pre, post), gt)  # localisation on the building output
        scores = metrics.compute()
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated count."""
        # Rows ground truth, columns prediction; building is index 1.
        self._loc = np.zeros((2, 2), dtype=np.int64)
        self._dam = np.zeros((NUM_DAMAGE_CLASSES, NUM_DAMAGE_CLASSES), dtype=np.int64)

    @property
    def localization_confusion(self) -> np.ndarray:
        """Copy of the `(2, 2)` int64 localisation confusion matrix (rows ground truth)."""
        return self._loc.copy()

    @property
    def damage_confusion(self) -> np.ndarray:
        """Copy of the `(5, 5)` int64 damage confusion matrix on scored pixels (rows ground truth)."""
        return self._dam.copy()

    def update(
        self,
        pred: MaskLike | DamageAssessment,
        gt: MaskLike,
        *,
        pred_building: MaskLike | None = None,
        gt_building: MaskLike | None = None,
    ) -> DamageMetrics:
        """Add one sample `[H, W]` or a batch `[B, H, W]` to the counts.

        Args:
            pred: predicted damage classes, integers in 0..4; or the `DamageAssessment` that
                `assess` returned, whose damage map and building output are then both used (the
                right call for a model's output).
            gt: ground-truth damage classes, integers in {0..4, 255}; 255 is a building of
                unknown damage, left out of the damage scores.
            pred_building: optional predicted building mask (bool or 0/1), same shape. Give it
                whenever the model has a separate building output (ChangeStar's
                `building_prob > 0.5`, `DamageAssessment.building`): localisation is then scored on
                it, so a building with damage class 0 counts, and damage predicted outside it is set
                to 0 (xView2's single-map constraint). Default: the assessment's building output
                when `pred` is one, else `pred >= 1`.
            gt_building: optional ground-truth building mask (the pre-disaster footprints),
                same shape; nonzero is building. Default: `gt >= 1`.

        Returns:
            self, so that `DamageMetrics().update(p, g).compute()` reads as one line.
        """
        pred, pred_building = _from_assessment(pred, gt, pred_building)
        pred_a = _as_int_array(pred, "prediction")
        gt_a = _as_int_array(gt, "ground truth")
        masks = {"pred_building": pred_building, "gt_building": gt_building}
        arrays = {k: _as_int_array(v, k) for k, v in masks.items() if v is not None}
        shapes = {"prediction": pred_a.shape, "ground truth": gt_a.shape} | {k: v.shape for k, v in arrays.items()}
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())
            raise InputError(f"mask shapes differ: {listed}. Resize them to one [H, W] or [B, H, W] shape.")
        _check_values(pred_a, gt_a)

        if "pred_building" in arrays:
            pred_loc = arrays["pred_building"] != 0
            pred_a = pred_a * pred_loc
        else:
            pred_loc = pred_a >= 1
        gt_loc = arrays["gt_building"] != 0 if "gt_building" in arrays else gt_a >= 1

        loc_index = gt_loc.ravel().astype(np.int64) * 2 + pred_loc.ravel()
        self._loc += np.bincount(loc_index, minlength=4).reshape(2, 2)

        scored = (gt_a >= 1) & (gt_a != IGNORE_INDEX)
        dam_index = gt_a[scored] * NUM_DAMAGE_CLASSES + pred_a[scored]
        counts = np.bincount(dam_index, minlength=NUM_DAMAGE_CLASSES**2)
        self._dam += counts.reshape(NUM_DAMAGE_CLASSES, NUM_DAMAGE_CLASSES)
        return self

    def compute(self) -> DamageScores:
        """Score the accumulated counts. Raises `InputError` if no pixel was added."""
        pixels = int(self._loc.sum())
        if pixels == 0:
            raise InputError("no pixels to score: call DamageMetrics.update() with at least one non-empty mask pair.")
        tn, fp, fn, tp = (int(v) for v in self._loc.ravel())
        f1_loc = _f1(tp, fp, fn)

        per_class: dict[str, float] = {}
        damage_counts: dict[str, ClassCounts] = {}
        for c in range(1, NUM_DAMAGE_CLASSES):
            name = DAMAGE_CLASS_NAMES[c]
            c_tp = int(self._dam[c, c])
            c_gt = int(self._dam[c].sum())
            c_fp = int(self._dam[:, c].sum()) - c_tp
            damage_counts[name] = ClassCounts(tp=c_tp, fp=c_fp, fn=c_gt - c_tp, gt_pixels=c_gt)
            per_class[name] = _f1(c_tp, c_fp, c_gt - c_tp)

        f1s = list(per_class.values())
        f1_dam = len(f1s) / sum(1.0 / (f + _HARMONIC_EPS) for f in f1s)
        damage_pixels = sum(c.gt_pixels for c in damage_counts.values())
        f1_weighted = (
            sum(per_class[n] * damage_counts[n].gt_pixels for n in per_class) / damage_pixels if damage_pixels else 0.0
        )
        return DamageScores(
            f1_loc=f1_loc,
            f1_dam=f1_dam,
            f1_weighted=f1_weighted,
            score=_LOC_WEIGHT * f1_loc + _DAM_WEIGHT * f1_dam,
            per_class=per_class,
            loc_tp=tp,
            loc_fp=fp,
            loc_fn=fn,
            loc_tn=tn,
            damage_counts=damage_counts,
            pixels=pixels,
            damage_pixels=damage_pixels,
        )


def damage_scores(
    pred: MaskLike | DamageAssessment,
    gt: MaskLike,
    *,
    pred_building: MaskLike | None = None,
    gt_building: MaskLike | None = None,
) -> DamageScores:
    """xView2 scores of one sample `[H, W]` (a `[B, H, W]` batch is scored as one pooled sample).

    Arguments as in `DamageMetrics.update`. Note that a sample with no ground-truth building of
    some class gets F1 = 0 for that class, and so `F1_dam` near 0, even for a perfect
    prediction: per-sample scores are for inspection; report dataset scores from `DamageMetrics`.
    """
    return DamageMetrics().update(pred, gt, pred_building=pred_building, gt_building=gt_building).compute()
