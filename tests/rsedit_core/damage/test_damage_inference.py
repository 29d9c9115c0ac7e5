"""Damage assessment on scenes of any size: padding, tiling and blending, decoding, rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsedit_core.damage import ChangeStar1x256
from rsedit_core.damage.inference import assess, colour_map, overlay, read_damage_map
from rsedit_core.damage.model import DamageProbabilities
from rsedit_core.errors import InputError


class PointwiseModel(torch.nn.Module):
    """A test double with the damage model's interface whose output at a pixel depends on that
    pixel alone, so tiled and untiled runs must agree exactly wherever blending is right."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.building = torch.nn.Conv2d(6, 1, 1)
        self.change = torch.nn.Conv2d(6, 5, 1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator)
        self.calls: list[tuple[int, ...]] = []

    def predict_normalized(self, x):
        self.calls.append(tuple(x.shape))
        return DamageProbabilities(self.building(x).sigmoid(), self.building(x).sigmoid(), self.change(x).softmax(1))


@pytest.fixture(scope="module")
def damage_model():
    torch.manual_seed(0)
    return ChangeStar1x256().eval().requires_grad_(False)


def _pair(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


def test_tiled_equals_untiled_for_pointwise_model():
    model = PointwiseModel()
    pre, post = _pair(150, 230)
    whole = assess(model, pre, post, tile=256)
    tiled = assess(model, pre, post, tile=64, overlap=16, batch_size=3)
    assert model.calls[0] == (1, 6, 256, 256)
    assert all(shape[-2:] == (64, 64) for shape in model.calls[1:]) and max(s[0] for s in model.calls[1:]) == 3
    assert torch.allclose(whole.change_prob, tiled.change_prob, atol=1e-6)
    assert torch.allclose(whole.building_prob, tiled.building_prob, atol=1e-6)
    assert tiled.damage.shape == (1, 150, 230) and "tiles of 64 px" in tiled.notes[0]


def test_small_scene_is_padded_square_and_cropped_back(damage_model):
    pre, post = _pair(64, 96)
    result = assess(damage_model, pre, post)
    assert result.change_prob.shape == (1, 5, 64, 96) and result.building.shape == (1, 64, 96)
    padded = torch.zeros(1, 6, 96, 96)
    from rsedit_core.damage import normalize_pair

    padded[..., :64, :] = normalize_pair(pre, post)
    with torch.no_grad():
        direct = damage_model.predict_normalized(padded)
    assert torch.allclose(result.change_prob, direct.change_prob[..., :64, :], atol=1e-6)
    assert "96x64 padded to 96x96" in result.notes[0]


def test_decoding_rule():
    model = PointwiseModel()
    result = assess(model, *_pair(40, 40))
    expected = result.change_prob.argmax(1) * (result.building_prob[:, 0] > 0.5)
    assert torch.equal(result.damage.long(), expected)
    assert result.damage.dtype == torch.uint8 and sum(result.class_fractions().values()) == pytest.approx(1.0)


def test_batches_equal_single_runs():
    model = PointwiseModel()
    pre, post = _pair(48, 64)
    pre2, post2 = _pair(48, 64, seed=1)
    both = assess(model, torch.cat([pre, pre2]), torch.cat([post, post2]))
    second = assess(model, pre2, post2)
    assert torch.allclose(both.change_prob[1:], second.change_prob, atol=1e-6)


@pytest.mark.parametrize(
    ("pre", "post", "message"),
    [
        ((1, 3, 64, 64), (1, 3, 64, 72), "differ in size"),
        ((1, 3, 16, 64), (1, 3, 16, 64), "at least 32 px"),
    ],
)
def test_bad_sizes(pre, post, message):
    with pytest.raises(InputError, match=message):
        assess(PointwiseModel(), torch.rand(pre), torch.rand(post))


def test_ground_truth_reading():
    png = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.uint8)
    assert read_damage_map(png).tolist() == png.tolist()
    as_image = torch.from_numpy(png).float()[..., None].repeat(1, 1, 3) / 255.0
    assert read_damage_map(as_image).tolist() == png.tolist()
    assert read_damage_map(as_image[..., 0]).tolist() == png.tolist()
    with pytest.raises(InputError, match="shape"):
        read_damage_map(np.zeros((2, 3, 4, 5)))


def test_colour_map_and_overlay():
    damage = torch.tensor([[[0, 1], [3, 4]]], dtype=torch.uint8)
    colours = colour_map(damage)
    assert colours[0, :, 0, 1].tolist() == pytest.approx([46 / 255, 204 / 255, 64 / 255])
    post = torch.full((1, 3, 2, 2), 0.2)
    tinted = overlay(post, damage, legend=False)
    assert tinted[0, :, 0, 0].tolist() == pytest.approx([0.2, 0.2, 0.2])
    assert tinted[0, 0, 1, 1].item() == pytest.approx(0.5 * 0.2 + 0.5 * 220 / 255)
    with_legend = overlay(torch.zeros(1, 3, 64, 128), torch.zeros(1, 64, 128, dtype=torch.uint8))
    assert with_legend.shape == (1, 3, 64, 128) and with_legend.max() > 0
