"""Reference xView2 metric values from torchange for the damage-metrics parity test.

Run with an interpreter that has torchange 0.0.4 and ever-beta, never with the project's own
environment:

    /work/oracle-venv/bin/python tests/damage_metrics_oracle.py OUT.json MASKS.npz [MORE.npz ...]

Each .npz holds `pred` and `gt` (`(N, H, W)` integers) and optionally `pred_building` and
`gt_building` (same shape, nonzero is building). Each sample goes through torchange's own
evaluation steps (`torchange.metrics.xview2.evaluate`, minus the model): the single-map
constraint `dam_pred = loc_pred * dam_pred`, `_accumulate_loc` and `_accumulate_dam` into
`ever.metric.PixelMetric` operators, `summary_all` and `mixed_score`.

OUT.json maps each .npz file's stem to its results; two readings are written for each sample
and for the dataset (counts of all samples in that file summed):

- `exact`: `summary_all` on the confusion matrix cast to float64 and rounded to 15 decimals, the
  same formulas without ever's float32 arithmetic and 5-decimal rounding;
- `printed`: `summary_all` as torchange calls it (float32, 5 decimals), what its evaluation reports.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import version
from pathlib import Path

import ever as er
import numpy as np
import torch
from torchange.metrics.xview2 import _accumulate_dam, _accumulate_loc, mixed_score

LOGGER = logging.getLogger("damage_metrics_oracle")
LOGGER.setLevel(logging.WARNING)  # summary_all logs its table at INFO.


def _scores(loc_op, dam_op, exact: bool) -> dict:
    if exact:
        loc_tb = loc_op.summary_all(dense_cm=loc_op.dense_cm.astype(np.float64), dec=15)
        dam_tb = dam_op.summary_all(dense_cm=dam_op.dense_cm.astype(np.float64), dec=15)
    else:
        loc_tb, dam_tb = loc_op.summary_all(), dam_op.summary_all()
    loc_f1, dam_f1, final_f1, dam_f1s = mixed_score(loc_tb, dam_tb)
    return {
        "f1_loc": float(loc_f1),
        "f1_dam": float(dam_f1),
        "score": float(final_f1),
        "per_class": [float(f) for f in dam_f1s],
    }


def evaluate_file(masks_path: str) -> dict:
    data = np.load(masks_path)
    pred, gt = data["pred"], data["gt"]
    pred_building = data["pred_building"] if "pred_building" in data else pred >= 1
    gt_building = data["gt_building"] if "gt_building" in data else gt

    total_loc = er.metric.PixelMetric(2, None, logger=LOGGER)
    total_dam = er.metric.PixelMetric(5, None, logger=LOGGER)
    samples = []
    for i in range(pred.shape[0]):
        loc_pred = torch.from_numpy(pred_building[i] != 0)
        dam_pred = loc_pred * torch.from_numpy(pred[i]).long()
        gt_loc = torch.from_numpy(gt_building[i].astype(np.int64))
        gt_dam = torch.from_numpy(gt[i].astype(np.int64))
        loc_op = er.metric.PixelMetric(2, None, logger=LOGGER)
        dam_op = er.metric.PixelMetric(5, None, logger=LOGGER)
        for lop, dop in ((loc_op, dam_op), (total_loc, total_dam)):
            _accumulate_loc(lop, gt_loc, loc_pred)
            _accumulate_dam(dop, gt_dam, dam_pred)
        samples.append({"exact": _scores(loc_op, dam_op, True), "printed": _scores(loc_op, dam_op, False)})

    dataset = {"exact": _scores(total_loc, total_dam, True), "printed": _scores(total_loc, total_dam, False)}
    return {"samples": samples, "dataset": dataset}


def main(out_path: str, *masks_paths: str) -> None:
    result = {Path(p).stem: evaluate_file(p) for p in masks_paths}
    result["versions"] = {name: version(name) for name in ("torchange", "ever-beta", "torch", "numpy")}
    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
