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
    predicted = assess(model.model, pre.movedim(-1, 1), post.movedim(-1, 1))
    # Localisation on the assessment's building output (which the assessment passes itself).
    scores = damage_scores(predicted, (truth[..., 0] * 255).round().long().numpy())
    damage_only = damage_scores(predicted.damage.numpy(), (truth[..., 0] * 255).round().long().numpy())
    assert abs(scores.f1_loc - damage_only.f1_loc) > 0.01  # the random model's buildings of change class 0
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


class _Unloadable:
    """A damage-model input that fails the test if the node gets as far as loading it."""

    def load(self):
        raise AssertionError("the model was loaded before the bad input was refused")


class _Crafted:
    """The CraftedModel double of test_damage_localisation, in the loader output's shape."""

    def __init__(self):
        from crafted_damage import CraftedModel

        self.model = CraftedModel()

    def load(self):
        pass


def _execute(nodes, damage_model, pre, post, **extra):
    from comfy_double.runner import run_node

    return run_node(nodes["RSEditDamageAssessment"], damage_model=damage_model, pre=pre, post=post, **extra)


def test_report_scores_localisation_on_the_building_output(nodes):
    from crafted_damage import crafted_images, crafted_maps

    pre, post = (torch.from_numpy(a).float().div(255)[None] for a in crafted_images())
    truth = torch.from_numpy(crafted_maps()["gt"]).float().div(255)[None, ..., None].repeat(1, 1, 1, 3)
    report = _execute(nodes, _Crafted(), pre, post, ground_truth=truth, tile=1024).args[-1]
    # 0.8 on the building output; damage > 0 would read 8/13 = 0.6154 here.
    assert "F1_loc 0.8000  F1_dam 0.6667  score 0.7067" in report
    assert "building pixels: 43.8% of the scene (the model's building output)" in report  # 1792 / 4096
    assert "change class 0: 28.6% of buildings" in report  # 512 / 1792
    mask = torch.from_numpy(crafted_maps()["gt"]).float().div(255)[None]
    assert "F1_loc 0.8000" in _execute(nodes, _Crafted(), pre, post, ground_truth_mask=mask, tile=1024).args[-1]


@pytest.mark.parametrize(
    ("post_shape", "fragments"),
    [
        ((1, 64, 96, 3), ["pre and post differ in size", "pre is 80x64, post is 96x64", "Upscale Image", "width 80"]),
        ((1, 48, 80, 3), ["pre is 80x64, post is 80x48"]),
        ((2, 64, 80, 3), ["1 pre image(s) but 2 post image(s)"]),
    ],
)
def test_pre_and_post_mismatch_is_refused_before_loading(nodes, scenes, post_shape, fragments):
    pre, _ = scenes
    with pytest.raises(Exception) as info:
        _execute(nodes, _Unloadable(), pre, torch.rand(post_shape), tile=1024)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kind", "shape", "fragments"),
    [
        ("ground_truth", (1, 64, 64, 3), ["ground_truth is 64x64 but the scene (pre) is 80x64"]),
        ("ground_truth_mask", (1, 80, 64), ["ground_truth_mask is 64x80 but the scene (pre) is 80x64"]),
        ("ground_truth", (3, 64, 80, 3), ["ground_truth holds 3 maps for 1 scene(s)"]),
    ],
)
def test_ground_truth_mismatch_is_refused_before_loading(nodes, scenes, kind, shape, fragments):
    pre, post = scenes
    with pytest.raises(Exception) as info:
        _execute(nodes, _Unloadable(), pre, post, tile=1024, **{kind: torch.zeros(shape)})
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_ground_truth_values_and_tile_are_refused_before_loading(nodes, scenes):
    pre, post = scenes
    mask = torch.zeros(1, 64, 80)
    mask[0, 5, 5] = 9 / 255
    with pytest.raises(Exception, match="ground_truth_mask holds values outside .*: 9"):
        _execute(nodes, _Unloadable(), pre, post, ground_truth_mask=mask, tile=1024)
    with pytest.raises(Exception, match="tile 100 .* multiple of 32 px, at least 32 .*try 96 or 128"):
        _execute(nodes, _Unloadable(), pre, post, tile=100)
