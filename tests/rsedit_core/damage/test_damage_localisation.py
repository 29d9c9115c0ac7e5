"""xView2 localisation F1 is scored on the model's BUILDING output, not on `damage > 0`.

ChangeStar decodes `building = building_prob > 0.5` and `damage = argmax(change) * building`, so
a building pixel whose change argmax is 0 has damage 0 and is still a building. torchange's
evaluator (`torchange.metrics.xview2.evaluate`) scores localisation on `building`; so must we.
The crafted scene and its hand-computed figures are in `tests/crafted_damage.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from crafted_damage import (
    F1_DAM,
    F1_LOC,
    F1_LOC_DAMAGE_GT0,
    PARITY_TOL,
    SCORE,
    SIZE,
    SMOOTHING_TOL,
    crafted_assessment,
    crafted_maps,
    run_oracle,
)

from rsedit_core.damage import DamageMetrics, damage_scores
from rsedit_core.errors import InputError


def test_hand_computed_building_versus_damage_above_zero():
    maps = crafted_maps()
    ours = damage_scores(maps["damage"], maps["gt"], pred_building=maps["building"])
    assert (ours.loc_tp, ours.loc_fp, ours.loc_fn, ours.loc_tn) == (1536, 256, 512, 1792)
    assert ours.f1_loc == pytest.approx(F1_LOC, abs=SMOOTHING_TOL)
    assert list(ours.per_class.values()) == pytest.approx([F1_DAM] * 4, abs=SMOOTHING_TOL)
    assert ours.f1_dam == pytest.approx(F1_DAM, abs=2e-6)
    assert ours.score == pytest.approx(SCORE, abs=2e-6)
    # The damage > 0 reading (what the commands used to report) gives another F1_loc, same damage F1.
    old = damage_scores(maps["damage"], maps["gt"])
    assert (old.loc_tp, old.loc_fp, old.loc_fn) == (1024, 256, 1024)
    assert old.f1_loc == pytest.approx(F1_LOC_DAMAGE_GT0, abs=SMOOTHING_TOL)
    assert old.per_class == ours.per_class


def test_assessment_carries_the_building_output_and_scores_with_it():
    maps = crafted_maps()
    result = crafted_assessment()
    assert result.building.dtype == torch.bool and result.building.shape == (1, SIZE, SIZE)
    assert np.array_equal(result.building[0].numpy(), maps["building"])
    assert np.array_equal(result.damage[0].numpy(), maps["damage"])
    # Building pixels with damage 0: the cause of the difference.
    assert int((result.building & (result.damage == 0)).sum()) == SIZE * 8
    assert result.building_fraction() == pytest.approx((1536 + 256) / SIZE**2)
    # The assessment itself, as one [H, W] sample, a batch, or accumulated: all on its building output.
    direct = damage_scores(result, maps["gt"])
    assert direct == damage_scores(maps["damage"], maps["gt"], pred_building=maps["building"])
    assert direct.f1_loc == pytest.approx(F1_LOC, abs=SMOOTHING_TOL)
    assert damage_scores(result, maps["gt"][None]) == direct
    accumulated = DamageMetrics().update(result, maps["gt"]).update(result, maps["gt"]).compute()
    assert (accumulated.loc_tp, accumulated.loc_fp, accumulated.loc_fn) == (3072, 512, 1024)
    assert accumulated.f1_loc == pytest.approx(F1_LOC, abs=SMOOTHING_TOL)
    with pytest.raises(InputError, match="carries its own building output"):
        damage_scores(result, maps["gt"], pred_building=maps["building"])


def test_tiled_crafted_scene_gives_the_same_maps():
    result = crafted_assessment(tile=32)
    assert "tiles of 32 px" in result.notes[0]
    assert damage_scores(result, crafted_maps()["gt"]).f1_loc == pytest.approx(F1_LOC, abs=SMOOTHING_TOL)


def test_building_output_matches_torchange(tmp_path):
    """torchange given the building output reads F1_loc 0.8 on the crafted scene, as we do; given
    only the damage map (its `pred >= 1` default) it reads 8/13, the figure we no longer report."""
    maps = crafted_maps()
    result = crafted_assessment()
    reference = run_oracle(
        tmp_path,
        {
            "building": {"pred": maps["damage"][None], "gt": maps["gt"][None], "pred_building": maps["building"][None]},
            "damage_only": {"pred": maps["damage"][None], "gt": maps["gt"][None]},
        },
    )
    theirs = reference["building"]["samples"][0]["exact"]
    ours = damage_scores(result, maps["gt"])
    print(f"crafted scene: ours F1_loc {ours.f1_loc!r}, torchange {theirs['f1_loc']!r}")
    assert theirs["f1_loc"] == pytest.approx(F1_LOC, abs=SMOOTHING_TOL)
    assert ours.f1_loc == pytest.approx(theirs["f1_loc"], abs=PARITY_TOL)
    assert ours.f1_dam == pytest.approx(theirs["f1_dam"], abs=PARITY_TOL)
    assert ours.score == pytest.approx(theirs["score"], abs=PARITY_TOL)
    assert list(ours.per_class.values()) == pytest.approx(theirs["per_class"], abs=PARITY_TOL)
    dataset = reference["building"]["dataset"]["printed"]
    assert ours.f1_loc == pytest.approx(dataset["f1_loc"], abs=6e-6)
    damage_only = reference["damage_only"]["samples"][0]["exact"]["f1_loc"]
    assert damage_only == pytest.approx(F1_LOC_DAMAGE_GT0, abs=SMOOTHING_TOL)
    assert abs(ours.f1_loc - damage_only) > 0.18
