"""The damage nodes against the ComfyUI test double, with a random ChangeStar1x256 in models/changestar."""

from __future__ import annotations

import asyncio

import pytest
import torch
from comfy_double import reset_comfy_double
from conftest import place_file

CHECKPOINT = "changestar1x256_random.safetensors"


@pytest.fixture
def nodes(pack, tmp_path, damage_checkpoint):
    import folder_paths

    reset_comfy_double()
    folder_paths.models_dir = str(tmp_path / "models")
    place_file(damage_checkpoint, tmp_path / "models" / "changestar" / CHECKPOINT)
    (tmp_path / "models" / "changestar" / "notes.txt").write_text("not a model")
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


@pytest.fixture
def scenes():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 64, 80, 3, generator=g), torch.rand(1, 64, 80, 3, generator=g)


def _run(nodes, pre, post, **extra):
    from comfy_double.runner import run_node

    model = run_node(nodes["RSEditDamageLoader"], checkpoint=CHECKPOINT, dtype="fp32")[0]
    return model, run_node(nodes["RSEditDamageAssessment"], damage_model=model, pre=pre, post=post, tile=1024, **extra)


def test_loader_lists_checkpoints_only(nodes):
    options = {spec.id: spec for spec in nodes["RSEditDamageLoader"].define_schema().inputs}["checkpoint"].options
    assert options == [CHECKPOINT]


def test_assessment_outputs_match_core(nodes, scenes):
    from rsedit_core.damage import assess

    pre, post = scenes
    model, output = _run(nodes, pre, post)
    overlay, damage_map, *masks, report = output.args
    expected = assess(model.model, pre.movedim(-1, 1), post.movedim(-1, 1))
    assert overlay.shape == damage_map.shape == (1, 64, 80, 3)
    for cls, mask in enumerate(masks, start=1):
        assert mask.shape == (1, 64, 80) and torch.equal(mask.bool(), expected.damage == cls)
    assert "building pixels" in report and "F1" not in report
    assert output.ui.as_dict()["text"][0] == report


def test_ground_truth_gives_f1(nodes, scenes):
    from rsedit_core.damage import assess, damage_scores

    pre, post = scenes
    truth = torch.zeros(1, 64, 80, 3)
    truth[:, 10:30, 10:40] = 2 / 255
    truth[:, 40:60, 50:70] = 4 / 255
    model, output = _run(nodes, pre, post, ground_truth=truth)
    predicted = assess(model.model, pre.movedim(-1, 1), post.movedim(-1, 1)).damage.numpy()
    scores = damage_scores(predicted, (truth[..., 0] * 255).round().long().numpy())
    report = output.args[-1]
    assert f"F1_loc {scores.f1_loc:.4f}  F1_dam {scores.f1_dam:.4f}  score {scores.score:.4f}" in report


def test_ground_truth_mask_with_bad_values_is_refused(nodes, scenes):
    pre, post = scenes
    mask = torch.zeros(1, 64, 80)
    mask[0, 0, :2] = 7 / 255
    with pytest.raises(Exception, match="7"):
        _run(nodes, pre, post, ground_truth_mask=mask)


def test_pre_and_post_of_different_sizes(nodes, scenes):
    pre, _ = scenes
    with pytest.raises(Exception, match="differ in size"):
        _run(nodes, pre, torch.rand(1, 64, 96, 3))
