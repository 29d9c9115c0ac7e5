"""Masked and multi-region edits: the source kept exactly outside, the edit blended with its context."""

from __future__ import annotations

import pytest
import torch

from rsedit_core.edit import edit_images
from rsedit_core.errors import InputError
from rsedit_core.settings import EditSettings

PROMPT = "flood the fields"


def _scene(height=70, width=101, seed=0):
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _box(height=70, width=101, rows=(10, 50), cols=(20, 70)):
    mask = torch.zeros(height, width)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = 1
    return mask


@pytest.mark.parametrize("editor", ["tiny_editor", "tiny_dit"])
def test_outside_the_mask_is_the_source_bit_for_bit(editor, request):
    model = request.getfixturevalue(editor)
    image, mask = _scene(), _box()
    result = edit_images(model, image, PROMPT, settings=EditSettings(steps=2, num_variations=2), mask=mask)
    assert result.images.shape == (2, 3, 70, 101)
    outside = mask == 0
    for edited in result.images:
        assert torch.equal(edited[:, outside], image[0][:, outside])
        assert not torch.equal(edited[:, ~outside], image[0][:, ~outside])
    report = result.fidelity[0]
    assert report["outside"]["changed"] == 0 and report["outside"]["psnr"] == float("inf")
    assert report["outside"]["ssim"] == 1.0 and report["inside"]["changed"] > 0.5
    assert any(n.startswith("masked edit: ") for n in result.notes)


def test_empty_mask_returns_the_source_and_a_full_mask_the_plain_edit(tiny_editor):
    image, settings = _scene(), EditSettings(steps=2, seed=3)
    empty = edit_images(tiny_editor, image, PROMPT, settings=settings, mask=torch.zeros(70, 101))
    assert torch.equal(empty.images, image) and "the mask is empty" in empty.notes[-1]
    plain = edit_images(tiny_editor, image, PROMPT, settings=settings)
    full = edit_images(tiny_editor, image, PROMPT, settings=settings, mask=torch.ones(70, 101))
    assert torch.equal(full.images, plain.images)


def test_the_inside_depends_on_the_context_not_a_paste_back(tiny_editor):
    """A paste-back (edit everything, composite) would give the plain edit inside the mask; blended
    latent diffusion holds the outside to the source during sampling, which changes the inside, and
    a different outside changes it again."""
    image, mask, settings = _scene(), _box(), EditSettings(steps=3, seed=1)
    inside = mask > 0
    plain = edit_images(tiny_editor, image, PROMPT, settings=settings).images[0][:, inside]
    masked = edit_images(tiny_editor, image, PROMPT, settings=settings, mask=mask).images[0][:, inside]
    assert (masked - plain).abs().max() > 1e-3
    other = image.clone()
    other[..., ~inside] = 1 - other[..., ~inside]  # the same inside, another context
    elsewhere = edit_images(tiny_editor, other, PROMPT, settings=settings, mask=mask).images[0][:, inside]
    assert (elsewhere - masked).abs().max() > 1e-3


def test_two_regions_keep_the_rest_and_cost_r_plus_2_branches(tiny_editor, monkeypatch):
    image = _scene(64, 96)
    east, west = _box(64, 96, (0, 64), (56, 96)), _box(64, 96, (0, 64), (0, 32))
    backbone = type(tiny_editor.backbone)
    batches, predict = [], backbone.predict

    def counting(self, model, latents, *rest):
        batches.append(latents.shape[0])
        return predict(self, model, latents, *rest)

    monkeypatch.setattr(backbone, "predict", counting)
    regions = [("flood the eastern blocks", east), ("burn the western fields", west)]
    result = edit_images(tiny_editor, image, "", settings=EditSettings(steps=2), regions=regions)
    assert batches == [4, 4]  # two instructions + empty with source + empty without: 4, not 6
    outside = (east + west) == 0
    assert torch.equal(result.images[0][:, outside], image[0][:, outside])
    assert "2 regions, each guided by its own instruction" in " ".join(result.notes)


def test_masked_edit_of_a_tiled_scene(tiny_editor):
    image = _scene(96, 200)
    mask = _box(96, 200, (20, 80), (30, 170))
    settings = EditSettings(steps=1, tile=64, tile_overlap=16)
    result = edit_images(tiny_editor, image, PROMPT, settings=settings, mask=mask)
    assert torch.equal(result.images[0][:, mask == 0], image[0][:, mask == 0])
    assert any(n.startswith("tiled: ") for n in result.notes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": torch.ones(64, 64)}, "is 64x64 px but the scene is 101x70 px"),
        ({"mask": torch.full((70, 101), 2.0)}, "values in 0..1"),
        ({"mask": torch.ones(70, 101), "regions": [("a", torch.ones(70, 101))]}, "not both"),
        ({"regions": []}, "non-empty list"),
        (
            {
                "regions": [("a", torch.ones(70, 101)), ("b", torch.ones(70, 101))],
                "settings": EditSettings(text_cfg=1.0),
            },
            "need text guidance",
        ),  # fmt: skip
    ],
)
def test_bad_masks_are_refused_before_any_model_runs(tiny_editor, kwargs, message):
    with pytest.raises(InputError, match=message):
        edit_images(tiny_editor, _scene(), PROMPT, **kwargs)


def test_a_masked_geotiff_edit_keeps_the_raw_16_bit_values_outside(tiny_editor, tmp_path):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from rsedit_core.edit import edit_scene
    from rsedit_core.raster import RasterSink, RasterSource

    data = (np.random.default_rng(0).random((4, 90, 130)) * 3000 + 200).astype("uint16")
    data[:, :5, :5] = 0
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=130, height=90, count=4, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500000, 4000000, 10, 10), nodata=0) as ds:  # fmt: skip
        ds.write(data)
    mask = _box(90, 130, (20, 70), (30, 100))
    settings = EditSettings(steps=1, tile=64, tile_overlap=16)
    with RasterSource.open(path) as source:
        with RasterSink(tmp_path / "edit.tif", source.geo, source=source, keep_other_bands=True) as sink:
            notes = edit_scene(tiny_editor, source, [sink], PROMPT, settings=settings, mask=mask)
    assert any(n.startswith("masked edit: ") for n in notes)
    with rasterio.open(tmp_path / "edit.tif") as out:
        edited = out.read()
    outside = (mask == 0).numpy()
    assert np.array_equal(edited[:, outside], data[:, outside])  # raw values, not the stretch's round trip
    assert not np.array_equal(edited[:3, ~outside], data[:3, ~outside])
    with RasterSource.open(path) as source:  # an empty mask writes the source itself
        with RasterSink(tmp_path / "same.tif", source.geo, source=source) as sink:
            edit_scene(tiny_editor, source, [sink], PROMPT, settings=settings, mask=torch.zeros(90, 130))
    with rasterio.open(tmp_path / "same.tif") as out:
        assert np.array_equal(out.read(), data[:3])
