"""GeoTIFF reading and writing: every file is made here with rasterio in ``tmp_path`` (odd sizes,
UTM and geographic CRSs, 8/16-bit and float, 1/3/4 bands, nodata, masks, no CRS), read, edited
and written back; the output must sit on the source's grid with the source's dtype and nodata."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from rsedit_core import raster
from rsedit_core.errors import InputError
from rsedit_core.images import MAX_PIXELS_ENV
from rsedit_core.raster import (
    GeoInfo,
    Stretch,
    StretchSpec,
    is_raster_path,
    parse_bands,
    parse_stretch,
    read_raster,
    write_raster,
)
from rsedit_core.raster import _io as raster_io
from rsedit_core.raster import sink as raster_sink
from rsedit_core.raster import source as raster_source

H, W = 37, 53
UTM = ("EPSG:32633", Affine(10.0, 0.0, 499_980.0, 0.0, -10.0, 4_600_020.0))
GEOGRAPHIC = ("EPSG:4326", Affine(0.0001, 0.0, 14.25, 0.0, -0.0001, 41.5))
BGRN = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]


@pytest.fixture(autouse=True)
def _no_env_limit(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


def values(dtype: str, count: int, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """Band data across most of the dtype's useful range (distinct per band)."""
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(1, 256, (count, height, width)).astype(np.uint8)
    if dtype == "uint16":
        return (rng.integers(1, 4000, (count, height, width)) + 500 * np.arange(count)[:, None, None]).astype(np.uint16)
    return rng.uniform(0.0, 0.6, (count, height, width)).astype(np.float32)


def make_tif(
    path: Path,
    data: np.ndarray,
    *,
    georef=UTM,
    nodata=None,
    colorinterp=None,
    descriptions=None,
    mask=None,
    tags=None,
    gcps=None,
) -> Path:
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=str(data.dtype), nodata=nodata)
    if georef is not None:
        profile.update(crs=georef[0], transform=georef[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as ds:
            _fill(ds, data, colorinterp, descriptions, mask, tags, gcps)
    return path


def _fill(ds, data, colorinterp, descriptions, mask, tags, gcps) -> None:
    ds.write(data)
    if colorinterp is not None:
        ds.colorinterp = colorinterp
    for band, text in enumerate(descriptions or [], start=1):
        ds.set_band_description(band, text)
    if mask is not None:
        ds.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    if tags:
        ds.update_tags(**tags)
    if gcps is not None:
        ds.gcps = gcps


def assert_same_grid(out: Path, source: Path) -> None:
    with rasterio.open(out) as o, rasterio.open(source) as s:
        assert o.crs == s.crs
        assert o.transform == s.transform
        assert (o.width, o.height) == (s.width, s.height)
        assert o.dtypes[0] == s.dtypes[0]
        assert o.nodata == s.nodata or (np.isnan(o.nodata) and np.isnan(s.nodata))


def inverted(scene) -> np.ndarray:
    """A stand-in edit that changes every pixel (so nodata pixels must be put back, not kept)."""
    return (1.0 - scene.image).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# The matrix: CRS x dtype x band count, nodata everywhere


@pytest.mark.parametrize("georef", [UTM, GEOGRAPHIC], ids=["utm32633", "epsg4326"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("count", [1, 3, 4])
def test_round_trip_keeps_grid_dtype_nodata_and_values(tmp_path, georef, dtype, count):
    data = values(dtype, count)
    nodata = 0 if dtype != "float32" else -9999.0
    data[:, :4, :7] = nodata  # a nodata corner
    data[1 % count, 20, 30] = nodata  # one band only: the pixel is invalid all the same
    kwargs = {"colorinterp": BGRN, "descriptions": ["B", "G", "R", "NIR"]} if count == 4 else {}
    source = make_tif(tmp_path / "src.tif", data, georef=georef, nodata=nodata, **kwargs)

    scene = read_raster(source)
    assert scene.image.shape == (3, H, W) and scene.image.dtype == np.float32
    assert scene.image.min() >= 0 and scene.image.max() <= 1
    assert scene.valid.shape == (H, W) and scene.valid.dtype == bool
    invalid = (data == nodata).any(axis=0) if count != 4 else (data[:3] == nodata).any(axis=0)
    np.testing.assert_array_equal(scene.valid, ~invalid)
    assert (scene.image[:, ~scene.valid] == 0).all()
    expected_bands = {1: (1, 1, 1), 3: (1, 2, 3), 4: (3, 2, 1)}[count]
    assert scene.geo.bands == expected_bands
    assert scene.geo.stretch.kind == ("8bit" if dtype == "uint8" else "percentile")
    assert scene.geo.crs_name() == georef[0]
    assert georef[0] in scene.geo.describe() and dtype in scene.geo.describe()
    if count == 1:
        assert any("repeated to grey" in n for n in scene.notes)
        np.testing.assert_array_equal(scene.image[0], scene.image[2])

    out = tmp_path / "out.tif"
    notes = write_raster(out, scene.image, scene.geo, valid=scene.valid)
    assert any("wrote" in n for n in notes)
    assert_same_grid(out, source)
    with rasterio.open(out) as o:
        assert o.count == 3
        written = o.read()
        assert o.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    source_bands = data[[b - 1 for b in scene.geo.bands]]
    # Nodata stays nodata; valid pixels come back within one grey level of the stretched scale.
    assert (written[:, ~scene.valid] == nodata).all()
    stretch = scene.geo.stretch
    for channel in range(3):
        low, high = stretch.low[channel], stretch.high[channel]
        orig = source_bands[channel][scene.valid].astype(np.float64)
        back = written[channel][scene.valid].astype(np.float64)
        assert back.min() >= low and back.max() <= high  # values in the stretch range
        inside = (orig >= low) & (orig <= high)
        assert inside.mean() > 0.9
        assert np.abs(back[inside] - orig[inside]).max() <= (high - low) / 255

    # An edit that changes every pixel: invalid pixels are still written as nodata.
    edited = tmp_path / "edited.tif"
    write_raster(edited, inverted(scene), scene.geo, valid=scene.valid)
    with rasterio.open(edited) as o:
        written = o.read()
    assert (written[:, ~scene.valid] == nodata).all()
    assert (written[:, scene.valid] != nodata).all()


def test_sixteen_bit_round_trip_through_eight_bit_quantisation(tmp_path):
    """Even an edit quantised to 8 bits (what a PNG-based path would do) comes back within one
    grey level of the stretched scale."""
    data = values("uint16", 3)
    source = make_tif(tmp_path / "s.tif", data, nodata=None)
    scene = read_raster(source, stretch="0,5000")
    stretch = scene.geo.stretch
    assert stretch.kind == "range" and stretch.low == (0.0,) * 3 and stretch.high == (5000.0,) * 3
    exact = stretch.inverse(stretch.forward(data), np.uint16)
    assert np.abs(exact.astype(int) - data).max() == 0  # forward + inverse alone is exact
    quantised = np.round(scene.image * 255) / 255
    back = stretch.inverse(quantised, np.uint16).astype(np.float64)
    assert np.abs(back - data).max() <= 5000 / 255


def test_stretch_forward_inverse_units():
    stretch = Stretch((100.0, 0.0), (1100.0, 10.0))
    array = np.array([[0, 100, 600, 1100, 5000], [-5, 0, 5, 10, 20]], dtype=np.int32)
    forward = stretch.forward(array)
    assert forward.dtype == np.float32
    np.testing.assert_allclose(forward, [[0, 0, 0.5, 1, 1], [0, 0, 0.5, 1, 1]], atol=1e-6)
    np.testing.assert_array_equal(stretch.inverse(forward, "int16"), [[100, 100, 600, 1100, 1100], [0, 0, 5, 10, 10]])
    wide = Stretch((0.0,), (70000.0,))
    assert wide.inverse(np.array([[1.0]]), np.uint16)[0, 0] == 65535  # clipped to the dtype
    assert Stretch((-0.5,), (0.5,)).inverse(np.array([[0.25]]), np.float32).dtype == np.float32
    assert Stretch((0.0, 1.0), (5.0, 2.5)).as_text() == "0,5;1,2.5"
    assert Stretch((0.0,) * 3, (3000.0,) * 3).as_text() == "0,3000"
    with pytest.raises(InputError, match="must be below MAX"):
        Stretch((5.0,), (5.0,))
    with pytest.raises(InputError, match="3 band"):
        Stretch((0.0,) * 3, (1.0,) * 3).forward(np.zeros((2, 4, 4)))


# --------------------------------------------------------------------------------------------------
# Band choice


def test_rgb_by_colour_interpretation_and_keep_other_bands_copies_nir(tmp_path):
    data = values("uint16", 4)
    source = make_tif(
        tmp_path / "bgrn.tif", data, nodata=0, colorinterp=BGRN, descriptions=["B", "G", "R", "NIR"], tags={"K": "v"}
    )
    scene = read_raster(source)
    assert scene.geo.bands == (3, 2, 1)
    assert any("colour interpretation" in n for n in scene.notes)
    assert scene.geo.band_descriptions == ("B", "G", "R", "NIR")
    out = tmp_path / "kept.tif"
    notes = write_raster(out, inverted(scene), scene.geo, valid=scene.valid, keep_other_bands=True)
    assert any("band 4 (NIR)" in n and "no longer matches the edit" in n for n in notes)
    assert_same_grid(out, source)
    with rasterio.open(out) as o:
        assert o.count == 4
        assert o.descriptions == ("B", "G", "R", "NIR")
        assert o.colorinterp == tuple(BGRN)
        written = o.read()
        assert o.tags()["K"] == "v"  # the source's own tags are kept
    np.testing.assert_array_equal(written[3], data[3])  # NIR unchanged
    assert not np.array_equal(written[2], data[2])  # the edited red band replaced red
    # The default output holds the 3 edited bands in R, G, B order with their descriptions.
    plain = tmp_path / "plain.tif"
    write_raster(plain, scene.image, scene.geo, valid=scene.valid)
    with rasterio.open(plain) as o:
        assert o.count == 3 and o.descriptions == ("R", "G", "B")


def test_rgb_by_band_description_and_fallback_to_bands_1_to_3(tmp_path):
    data = values("uint16", 5)
    named = make_tif(tmp_path / "named.tif", data, descriptions=["Blue", "Green", "Red edge 1", "B04 red", "NIR"])
    scene = read_raster(named)
    assert scene.geo.bands == (4, 2, 1)  # "Red edge" is not red
    assert any("band descriptions" in n for n in scene.notes)
    anonymous = read_raster(make_tif(tmp_path / "anon.tif", data))
    assert anonymous.geo.bands == (1, 2, 3)
    assert any("used as red, green, blue" in n for n in anonymous.notes)
    chosen = read_raster(named, bands="5,4,3")
    assert chosen.geo.bands == (5, 4, 3) and not chosen.notes[0].startswith("red, green")
    grey = read_raster(named, bands=[5])
    assert grey.geo.bands == (5, 5, 5) and any("repeated to grey" in n for n in grey.notes)


def test_keep_other_bands_with_a_band_read_twice_writes_the_mean(tmp_path):
    data = values("uint16", 1)
    source = make_tif(tmp_path / "pan.tif", data, nodata=0)
    scene = read_raster(source)
    edit = scene.image.copy()
    edit[0] = 0.0  # channels differ: the single band gets their mean
    out = tmp_path / "pan_out.tif"
    notes = write_raster(out, edit, scene.geo, valid=scene.valid, keep_other_bands=True)
    assert any("mean" in n for n in notes)
    with rasterio.open(out) as o:
        assert o.count == 1
        written = o.read(1).astype(np.float64)
    stretch = scene.geo.stretch
    expected = np.rint((stretch.inverse(edit, np.uint16).astype(np.float64)).mean(axis=0))
    np.testing.assert_array_equal(written, expected)


# --------------------------------------------------------------------------------------------------
# Masks, float nodata, no CRS, GCPs


@pytest.mark.parametrize("windows", ["one", "many"])
def test_dataset_mask_is_read_and_written_back_as_a_mask(tmp_path, monkeypatch, windows):
    if windows == "many":
        monkeypatch.setattr(raster_io, "CHUNK_PIXELS", 16)
        monkeypatch.setattr(raster_sink, "BLOCK_SIZE", 16)
    data = values("uint16", 3)
    mask = np.ones((H, W), bool)
    mask[-5:, :] = False
    mask[10, 10] = False
    source = make_tif(tmp_path / "masked.tif", data, mask=mask)
    scene = read_raster(source)
    np.testing.assert_array_equal(scene.valid, mask)
    assert scene.geo.has_mask and scene.geo.nodata is None
    out = tmp_path / "masked_out.tif"
    notes = write_raster(out, inverted(scene), scene.geo, valid=scene.valid)
    assert any("dataset mask" in n for n in notes)
    assert_same_grid(out, source)
    with rasterio.open(out) as o:
        np.testing.assert_array_equal(o.read_masks(1) > 0, mask)
        assert o.nodata is None
        assert (o.read()[:, ~mask] == 0).all()  # black under the mask, as in the source convention
    cog = tmp_path / "masked_cog.tif"
    write_raster(cog, inverted(scene), scene.geo, valid=scene.valid, cog=True)
    with rasterio.open(cog) as o:
        np.testing.assert_array_equal(o.read_masks(1) > 0, mask)


def test_alpha_band_marks_invalid_pixels(tmp_path):
    data = values("uint8", 4)
    data[3] = 255
    data[3, :6] = 0
    source = make_tif(
        tmp_path / "rgba.tif",
        data,
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
    )
    scene = read_raster(source)
    assert scene.geo.bands == (1, 2, 3)
    assert not scene.valid[:6].any() and scene.valid[6:].all()
    assert scene.geo.stretch.kind == "8bit"
    np.testing.assert_allclose(scene.image[:, 6:], data[:3, 6:] / 255.0, atol=1e-6)


def test_float_nan_nodata_and_non_finite_pixels(tmp_path):
    data = values("float32", 3)
    data[:, 0, :] = np.nan
    data[2, 5, 5] = np.inf
    source = make_tif(tmp_path / "nan.tif", data, nodata=float("nan"), georef=GEOGRAPHIC)
    scene = read_raster(source, stretch="0,0.6")
    assert not scene.valid[0].any() and not scene.valid[5, 5] and scene.valid[1:].sum() == (H - 1) * W - 1
    out = tmp_path / "nan_out.tif"
    write_raster(out, scene.image, scene.geo, valid=scene.valid)
    assert_same_grid(out, source)
    with rasterio.open(out) as o:
        written = o.read()
    assert np.isnan(written[:, ~scene.valid]).all()
    back = written[:, scene.valid]
    assert np.abs(back - data[:, scene.valid]).max() <= 0.6 / 255 / 100  # float32: no grey levels lost at all
    with pytest.raises(InputError, match="Stretch 'none'.*float32.*values run from"):
        read_raster(source, stretch="none")


def test_crs_less_tiff_reads_with_a_note_and_writes_a_plain_tiff(tmp_path):
    data = values("uint16", 3)
    source = make_tif(tmp_path / "plain.tif", data, georef=None)
    out = tmp_path / "plain_out.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in notes, never as a warning
        scene = read_raster(source)
        notes = write_raster(out, scene.image, scene.geo, valid=scene.valid)
    assert not scene.geo.has_georeference() and scene.geo.crs is None and scene.geo.transform is None
    assert any("no georeference" in n for n in scene.notes)
    assert "no CRS" in scene.geo.describe()
    assert any("has no georeference; wrote a plain TIFF" in n for n in notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        assert_same_grid(out, source)
        with rasterio.open(out) as o:
            assert o.crs is None and o.transform.is_identity


def test_gcps_travel_with_the_scene(tmp_path):
    data = values("uint16", 3)
    points = [
        GroundControlPoint(row=0, col=0, x=14.0, y=41.0),
        GroundControlPoint(row=0, col=W, x=14.1, y=41.0),
        GroundControlPoint(row=H, col=0, x=14.0, y=40.9),
    ]
    source = make_tif(tmp_path / "gcps.tif", data, georef=None, gcps=(points, CRS.from_epsg(4326)))
    scene = read_raster(source)
    assert scene.geo.has_georeference() and len(scene.geo.gcps) == 3
    assert "3 GCPs in EPSG:4326" in scene.geo.describe()
    out = tmp_path / "gcps_out.tif"
    write_raster(out, scene.image, scene.geo)
    with rasterio.open(out) as o:
        gcps, crs = o.gcps
    assert crs.to_epsg() == 4326 and [(g.row, g.col, g.x, g.y) for g in gcps] == [
        (g.row, g.col, g.x, g.y) for g in points
    ]


def test_constant_band_round_trips(tmp_path):
    data = values("uint16", 3)
    data[1] = 1234
    scene = read_raster(make_tif(tmp_path / "flat.tif", data, descriptions=["x", "flat", "z"]))
    assert any("band 2 (flat) is constant (1234)" in n for n in scene.notes)
    write_raster(tmp_path / "flat_out.tif", scene.image, scene.geo)
    with rasterio.open(tmp_path / "flat_out.tif") as o:
        assert (o.read(2) == 1234).all()


def test_valid_pixels_never_land_on_nodata(tmp_path):
    data = values("uint16", 3)
    data[:, 0, 0] = 0
    source = make_tif(tmp_path / "n.tif", data, nodata=0)
    scene = read_raster(source, stretch="none")
    black = np.zeros_like(scene.image)
    out = tmp_path / "black.tif"
    notes = write_raster(out, black, scene.geo, valid=scene.valid)
    assert any("moved one step off it" in n for n in notes)
    with rasterio.open(out) as o:
        written = o.read()
    assert (written[:, ~scene.valid] == 0).all() and (written[:, scene.valid] == 1).all()
    assert any("no valid mask given" in n for n in write_raster(tmp_path / "all.tif", black, scene.geo))


# --------------------------------------------------------------------------------------------------
# Outputs: tags, COG, compression, atomic writes, tensors


def test_tags_and_tensor_input(tmp_path):
    source = make_tif(tmp_path / "t.tif", values("uint16", 3), nodata=0)
    scene = read_raster(source)
    tags = {"instruction": "add a road\nacross the field", "model": "RSEdit-UNet", "seed": 7, "steps": 20}
    out = tmp_path / "tagged.tif"
    write_raster(out, scene.as_tensor(), scene.geo, valid=torch.from_numpy(scene.valid), tags=tags)
    with rasterio.open(out) as o:
        written = o.tags()
    assert written["instruction"] == "add a road\nacross the field" and written["seed"] == "7"
    assert written["RSEDIT_BANDS"] == "1,2,3" and written["RSEDIT_SOURCE"] == "t.tif"
    assert parse_stretch(written["RSEDIT_STRETCH"]).kind == "range"
    again = read_raster(source, stretch=written["RSEDIT_STRETCH"])
    assert again.geo.stretch.low == scene.geo.stretch.low and again.geo.stretch.high == scene.geo.stretch.high
    assert written["RSEDIT_TAGS"] == "instruction,model,seed,steps"
    # An edit of that edit keeps no stale tags of the first one.
    second = read_raster(out)
    write_raster(tmp_path / "second.tif", second.image, second.geo, tags={"instruction": "remove the road"})
    with rasterio.open(tmp_path / "second.tif") as o:
        again_tags = o.tags()
    assert again_tags["instruction"] == "remove the road" and "seed" not in again_tags
    assert again_tags["RSEDIT_SOURCE"] == "tagged.tif" and again_tags["RSEDIT_TAGS"] == "instruction"
    with pytest.raises(InputError, match="Tag name"):
        write_raster(tmp_path / "bad.tif", scene.image, scene.geo, tags={"a b": 1})


@pytest.mark.parametrize("driver", ["cog", "fallback"])
def test_cog_output_is_readable_with_overviews(tmp_path, monkeypatch, driver):
    if driver == "fallback":
        monkeypatch.setattr(raster_sink, "_cog_driver_available", lambda: False)
    height, width = 700, 1100
    data = values("uint16", 3, height=height, width=width)
    data[:, :10] = 0
    source = make_tif(tmp_path / "big.tif", data, nodata=0)
    scene = read_raster(source)
    out = tmp_path / "big_cog.tif"
    notes = write_raster(out, scene.image, scene.geo, valid=scene.valid, cog=True, compress="zstd")
    assert any(("COG driver" if driver == "cog" else "no COG driver") in n for n in notes)
    assert sorted(os.listdir(tmp_path)) == ["big.tif", "big_cog.tif"]  # no intermediate left behind
    assert_same_grid(out, source)
    with rasterio.open(out) as o:
        assert o.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert o.tags()["RSEDIT_SOURCE"] == "big.tif"
        assert o.profile["tiled"] and o.overviews(1)
        assert o.compression.value.lower() == "zstd"
        if driver == "cog":
            assert o.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        written = o.read()
        assert (written[:, :10] == 0).all()
        assert o.read(1, out_shape=(height // 4, width // 4)).shape == (height // 4, width // 4)


@pytest.mark.parametrize("compress", ["deflate", "lzw", "zstd", "none"])
def test_compressions(tmp_path, compress):
    source = make_tif(tmp_path / "c.tif", values("uint16", 3))
    scene = read_raster(source)
    out = tmp_path / f"{compress}.tif"
    write_raster(out, scene.image, scene.geo, compress=compress.upper())
    with rasterio.open(out) as o:
        assert (o.compression.value.lower() if o.compression else "none") == compress


def test_atomic_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    height, width = 300, 200
    source = make_tif(tmp_path / "a.tif", values("uint16", 3, height=height, width=width), nodata=0)
    scene = read_raster(source)
    monkeypatch.setattr(raster_io, "CHUNK_PIXELS", 64 * 64)
    monkeypatch.setattr(raster_sink, "BLOCK_SIZE", 64)
    calls = []
    real = raster_sink._write_window

    def failing(dst, out, window):
        calls.append(window)
        if len(calls) == 3:
            raise OSError("No space left on device (simulated)")
        real(dst, out, window)

    monkeypatch.setattr(raster_sink, "_write_window", failing)
    out = tmp_path / "out.tif"
    with pytest.raises(OSError, match="simulated"):
        write_raster(out, scene.image, scene.geo, valid=scene.valid)
    assert len(calls) == 3 and not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]
    # An earlier output under that name is left exactly as it was; a COG write cleans up both files.
    out.write_bytes(b"earlier")
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        write_raster(out, scene.image, scene.geo, valid=scene.valid, cog=True)
    assert out.read_bytes() == b"earlier" and sorted(os.listdir(tmp_path)) == ["a.tif", "out.tif"]


def test_windowed_reads_and_writes_match_one_window(tmp_path, monkeypatch):
    data = values("uint16", 4, height=H * 3, width=W * 2)
    data[:, 5:9, 11:40] = 0
    source = make_tif(tmp_path / "w.tif", data, nodata=0, colorinterp=BGRN)
    whole = read_raster(source)
    write_raster(tmp_path / "whole.tif", inverted(whole), whole.geo, valid=whole.valid, keep_other_bands=True)
    monkeypatch.setattr(raster_io, "CHUNK_PIXELS", 17)  # many small windows with ragged edges
    monkeypatch.setattr(raster_sink, "BLOCK_SIZE", 16)
    windows = []
    real = raster_io._windows
    monkeypatch.setattr(raster_io, "_windows", lambda *a, **k: windows.append(list(real(*a, **k))) or iter(windows[-1]))
    pieces = read_raster(source)
    with rasterio.open(source) as ds:
        strip = ds.block_shapes[0][0]
    assert len(windows[0]) == -(-H * 3 // strip) > 1  # the source is striped: one strip a window, at least
    np.testing.assert_array_equal(pieces.image, whole.image)
    np.testing.assert_array_equal(pieces.valid, whole.valid)
    write_raster(tmp_path / "pieces.tif", inverted(pieces), pieces.geo, valid=pieces.valid, keep_other_bands=True)
    assert len(windows[1]) == -(-H * 3 // 16) * -(-W * 2 // 16)  # written one 16 x 16 tile at a time
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "pieces.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_percentiles_of_big_rasters_come_from_a_decimated_read(tmp_path, monkeypatch):
    data = values("uint16", 3, height=400, width=300)
    data[:, :40] = 0
    source = make_tif(tmp_path / "p.tif", data, nodata=0)
    exact = read_raster(source).geo.stretch
    monkeypatch.setattr(raster_source, "SAMPLE_PIXELS", 5_000)
    shapes, sampled_valid = [], []
    real = raster_source._sample

    def spy(ds, *args):
        values_, valid = real(ds, *args)
        shapes.append(values_.shape)
        sampled_valid.append(valid)
        return values_, valid

    monkeypatch.setattr(raster_source, "_sample", spy)
    approx = read_raster(source).geo.stretch
    assert shapes and shapes[0][1] * shapes[0][2] <= 5_000
    for low, high, a_low, a_high in zip(exact.low, exact.high, approx.low, approx.high, strict=True):
        assert abs(a_low - low) < 0.03 * (high - low) and abs(a_high - high) < 0.03 * (high - low)
    # A decimated read that misses every valid pixel: the percentiles come from all of them.
    sparse = np.zeros_like(data)
    sparse[:, 1::50, 1::50] = data[:, 1::50, 1::50]
    shapes.clear()
    few = read_raster(make_tif(tmp_path / "few.tif", sparse, nodata=0))
    assert shapes and not sampled_valid[-1].any()  # the sample found none
    assert few.geo.stretch.kind == "percentile" and few.valid.sum() == np.count_nonzero((sparse != 0).all(axis=0))
    assert any(">99.9%" in n for n in few.notes)
    picked = sparse[0][few.valid]
    assert np.floor(np.percentile(picked, 2)) == few.geo.stretch.low[0]
    # A Stretch from one read applies unchanged to another (e.g. tiles of one scene).
    assert read_raster(source, stretch=approx).geo.stretch == approx


def test_geo_info_pickles_without_open_handles(tmp_path):
    scene = read_raster(make_tif(tmp_path / "g.tif", values("uint16", 4), nodata=0, colorinterp=BGRN))
    copy = pickle.loads(pickle.dumps(scene.geo))
    assert isinstance(copy, GeoInfo) and copy == scene.geo
    assert isinstance(copy.transform, tuple) and len(copy.transform) == 6 and isinstance(copy.crs, str)
    assert copy.colorinterp == ("blue", "green", "red", "undefined")


# --------------------------------------------------------------------------------------------------
# Parsing


def test_parse_stretch_syntax():
    assert parse_stretch("percentile") == StretchSpec("percentile")
    assert parse_stretch(None) == StretchSpec("percentile")
    assert parse_stretch("Percentile:1, 99.5") == StretchSpec("percentile", (1.0, 99.5))
    assert parse_stretch("0,3000") == StretchSpec("range", ranges=((0.0, 3000.0),))
    assert parse_stretch("-0.1,0.4;0,1e4;5,6").ranges == ((-0.1, 0.4), (0.0, 10000.0), (5.0, 6.0))
    assert parse_stretch("NONE") == StretchSpec("none")
    for spec in ("percentile", "percentile:1,99", "0,3000", "0,1;0,2;0,3", "none"):
        assert parse_stretch(spec).text() == spec
    for bad, message in [
        ("3000,0", "MIN 3000 must be below MAX 0"),
        ("5,5", "must be below MAX"),
        ("linear", "Unknown stretch 'linear'"),
        ("0,1;0,2", "has 2 ranges"),
        ("percentile:98,2", "0 <= P1 < P2 <= 100"),
        ("percentile:2", "percentile:P1,P2"),
        ("percentile:0,101", "0 <= P1 < P2 <= 100"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_stretch(bad)


def test_parse_bands_and_suffixes():
    assert parse_bands("3,2,1") == (3, 2, 1) and parse_bands("4 3 2") == (4, 3, 2) and parse_bands("7") == (7,)
    assert parse_bands((3, 2, 1)) == (3, 2, 1) and parse_bands(None) is None
    for bad, message in [("3,2", "Give 3 bands"), ("0,1,2", "start at 1"), ("r,g,b", "1-based band numbers")]:
        with pytest.raises(InputError, match=message):
            parse_bands(bad)
    assert is_raster_path("a/B.TIF") and is_raster_path("x.tiff") and not is_raster_path("x.png")


def test_module_imports_light():
    code = (
        "import sys, rsedit_core.raster as r\n"
        "r.parse_stretch('0,3000'); r.parse_bands('3,2,1')\n"
        "print(sorted(m for m in ('numpy', 'rasterio', 'torch') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


# --------------------------------------------------------------------------------------------------
# Bad input


def test_unreadable_files_say_what_gdal_says(tmp_path):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster at all\n")
    with pytest.raises(InputError, match=r"Cannot read .*notes.tif as a raster: GDAL says: .*re-download"):
        read_raster(text)
    good = make_tif(tmp_path / "good.tif", values("uint16", 3))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match="GDAL says"):
        read_raster(cut)
    with pytest.raises(InputError, match="does not exist"):
        read_raster(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="is a folder"):
        read_raster(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_raster(tmp_path / "empty.tif")


def test_bands_out_of_range_and_two_band_files(tmp_path):
    source = make_tif(tmp_path / "s2.tif", values("uint16", 4), descriptions=["B2", "B3", "B4", "B8"])
    with pytest.raises(InputError, match=r"Band 5 is out of range: .* has 4 bands \(1 \(B2\), 2 \(B3\), 3 \(B4\), 4 "):
        read_raster(source, bands="5,3,2")
    two = make_tif(tmp_path / "two.tif", values("uint16", 2))
    with pytest.raises(InputError, match="has 2 bands.*Choose which to use"):
        read_raster(two)
    assert read_raster(two, bands="1,2,2").geo.bands == (1, 2, 2)


def test_scene_entirely_nodata(tmp_path):
    data = np.zeros((3, H, W), np.uint16)
    with pytest.raises(InputError, match=r"Every pixel .* is nodata \(value 0\).*gdal_edit.py"):
        read_raster(make_tif(tmp_path / "empty_scene.tif", data, nodata=0))
    masked = make_tif(tmp_path / "masked_scene.tif", values("uint16", 3), mask=np.zeros((H, W), bool))
    with pytest.raises(InputError, match="is masked"):
        read_raster(masked)


def test_pixel_limit(tmp_path, monkeypatch):
    source = make_tif(tmp_path / "s.tif", values("uint16", 3))
    with pytest.raises(InputError, match=rf"53x37 = 1,961 pixels, over the limit of 1,000.*{MAX_PIXELS_ENV}"):
        read_raster(source, max_pixels=1000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(InputError, match="over the limit"):
        read_raster(source)
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    assert read_raster(source).image.shape == (3, H, W)


def test_write_refusals(tmp_path):
    source = make_tif(tmp_path / "src.tif", values("uint16", 3), nodata=0)
    scene = read_raster(source)
    with pytest.raises(InputError, match="is the input file.*never overwrites a source"):
        write_raster(source, scene.image, scene.geo)
    with pytest.raises(InputError, match="never overwrites"):
        write_raster(tmp_path / "." / "src.tif", scene.image, scene.geo)
    with pytest.raises(InputError, match=r"edited image is 48x32 px but its source .* is 53x37.*same|sizes must match"):
        write_raster(tmp_path / "o.tif", scene.image[:, :32, :48], scene.geo)
    with pytest.raises(InputError, match=r"\[3, H, W\]"):
        write_raster(tmp_path / "o.tif", scene.image[:2], scene.geo)
    with pytest.raises(InputError, match="valid must be"):
        write_raster(tmp_path / "o.tif", scene.image, scene.geo, valid=scene.valid[:5])
    with pytest.raises(InputError, match="Unknown compression 'jpeg'"):
        write_raster(tmp_path / "o.tif", scene.image, scene.geo, compress="jpeg")
    with pytest.raises(InputError, match="unknown extension '.png'"):
        write_raster(tmp_path / "o.png", scene.image, scene.geo)
    source.rename(tmp_path / "moved.tif")
    with pytest.raises(InputError, match="no longer exists"):
        write_raster(tmp_path / "o.tif", scene.image, scene.geo, keep_other_bands=True)
    make_tif(source, values("uint16", 4))
    with pytest.raises(InputError, match="changed since it was read"):
        write_raster(tmp_path / "o.tif", scene.image, scene.geo, keep_other_bands=True)
    assert sorted(os.listdir(tmp_path)) == ["moved.tif", "src.tif"]


# --------------------------------------------------------------------------------------------------
# Windowed access: RasterSource and RasterSink


def _sources(tmp_path: Path) -> dict[str, Path]:
    """Scenes of ragged sizes covering nodata, NaN, a dataset mask, an alpha band, grey and 4 bands."""
    height, width = 61, 83
    bgrn = values("uint16", 4, height=height, width=width)
    bgrn[:, :5, :9] = 0
    bgrn[2, 30, 40] = 0
    floats = values("float32", 3, seed=1, height=height, width=width)
    floats[:, 10, :] = np.nan
    floats[1, 3, 3] = np.inf
    mask = np.ones((height, width), bool)
    mask[-7:, :] = False
    mask[20, 20] = False
    rgba = values("uint8", 4, seed=2, height=height, width=width)
    rgba[3] = 255
    rgba[3, :, :11] = 0
    grey = values("uint16", 1, seed=3, height=height, width=width)
    grey[0, 40:, 70:] = 7
    return {
        "bgrn_nodata": make_tif(tmp_path / "bgrn.tif", bgrn, nodata=0, colorinterp=BGRN),
        "float_nan": make_tif(tmp_path / "nan.tif", floats, nodata=float("nan"), georef=GEOGRAPHIC),
        "dataset_mask": make_tif(
            tmp_path / "masked.tif", values("uint16", 3, seed=4, height=height, width=width), mask=mask
        ),
        "alpha": make_tif(
            tmp_path / "rgba.tif",
            rgba,
            colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
        ),
        "grey_nodata": make_tif(tmp_path / "grey.tif", grey, nodata=7, georef=None),
    }


SOURCE_CASES = ["bgrn_nodata", "float_nan", "dataset_mask", "alpha", "grey_nodata"]


@pytest.mark.parametrize("case", SOURCE_CASES)
def test_every_window_of_a_source_equals_read_raster(tmp_path, case):
    path = _sources(tmp_path)[case]
    stretch = "0,0.6" if case == "float_nan" else "percentile"
    scene = read_raster(path, stretch=stretch)
    with raster.RasterSource.open(path, stretch=stretch) as source:
        assert (source.height, source.width, source.count) == (*scene.image.shape[1:], 1)
        assert repr(source.geo) == repr(scene.geo)  # repr: a NaN nodata never equals itself
        assert source.notes == scene.notes  # a small scene: the same notes exactly
        image = np.full_like(scene.image, -1.0)
        valid = np.zeros_like(scene.valid)
        for top in range(0, source.height, 16):  # ragged windows: 16 x 23, cut short at the edges
            for left in range(0, source.width, 23):
                rows, cols = min(16, source.height - top), min(23, source.width - left)
                window = source.read(top, left, rows, cols)
                assert isinstance(window, torch.Tensor) and window.dtype == torch.float32
                assert window.shape == (1, 3, rows, cols)
                image[:, top : top + rows, left : left + cols] = window[0].numpy()
                ok = source.valid(top, left, rows, cols)
                assert ok.dtype == bool and ok.shape == (rows, cols)
                valid[top : top + rows, left : left + cols] = ok
        np.testing.assert_array_equal(image, scene.image)
        np.testing.assert_array_equal(valid, scene.valid)
        # valid() of a window never read, and a single pixel and the whole scene.
        np.testing.assert_array_equal(source.valid(3, 5, 40, 50), scene.valid[3:43, 5:55])
        np.testing.assert_array_equal(source.read(9, 8, 1, 1)[0].numpy(), scene.image[:, 9:10, 8:9])
        np.testing.assert_array_equal(source.read(0, 0, source.height, source.width)[0].numpy(), scene.image)
    assert "closed" in repr(source)


def test_a_source_of_a_large_scene_estimates_its_nodata_share(tmp_path, monkeypatch):
    data = values("uint16", 3, height=400, width=300)
    data[:, :100] = 0  # a quarter of the scene
    source_path = make_tif(tmp_path / "big.tif", data, nodata=0)
    scene = read_raster(source_path)
    assert any("30,000 pixels (25.0%) are nodata" in n for n in scene.notes)
    monkeypatch.setattr(raster_source, "SAMPLE_PIXELS", 5_000)
    with raster.RasterSource.open(source_path) as source:
        estimate = [n for n in source.notes if "nodata or masked" in n]
        assert estimate and estimate[0].startswith("about 2") and "estimated from a decimated read" in estimate[0]
        assert len(source.notes) == len(scene.notes)
    # Every stretch takes the decimated read, so even a fixed range gets the estimate.
    with raster.RasterSource.open(source_path, stretch="0,4000") as source:
        assert any("estimated" in n for n in source.notes)
    # A sample that misses every valid pixel: the source counts them (and takes percentiles from them).
    sparse = np.zeros_like(data)
    sparse[:, 1::50, 1::50] = data[:, 1::50, 1::50]
    few = make_tif(tmp_path / "few.tif", sparse, nodata=0)
    whole = read_raster(few)
    with raster.RasterSource.open(few) as source:
        assert source.geo.stretch == whole.geo.stretch
        assert source.notes == whole.notes and any(">99.9%" in n for n in source.notes)


def test_counting_every_valid_pixel_keeps_a_bounded_number_of_values(tmp_path, monkeypatch):
    """The scan behind a sample that missed every valid pixel: exact count, values thinned as they pile up."""
    data = values("uint16", 3, height=200, width=200)
    data[:, ::3, ::3] = 0
    source_path = make_tif(tmp_path / "grid.tif", data, nodata=0)
    valid = (data != 0).all(axis=0)
    with raster.RasterSource.open(source_path) as source:
        monkeypatch.setattr(raster_source, "SAMPLE_PIXELS", 100)  # thinned above 400 values kept
        monkeypatch.setattr(raster_io, "CHUNK_PIXELS", 1_000)
        count, kept = source._scan(values=True, every=True)
        assert count == int(valid.sum())
        assert kept.shape[0] == 3 and 100 < kept.shape[1] < count // 8
        assert set(np.unique(kept[0])) <= set(np.unique(data[0][valid]))
        low, high = np.percentile(kept[0], [2, 98])
        exact_low, exact_high = np.percentile(data[0][valid], [2, 98])
        assert abs(low - exact_low) < 0.05 * 4000 and abs(high - exact_high) < 0.05 * 4000
        first, nothing = source._scan(values=False, every=False)  # stops at the first window with data
        assert 0 < first < count and nothing is None


def test_source_refuses_what_read_raster_refuses(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        raster.RasterSource.open(tmp_path / "missing.tif")
    two = make_tif(tmp_path / "two.tif", values("uint16", 2))
    with pytest.raises(InputError, match="has 2 bands.*Choose which to use"):
        raster.RasterSource.open(two)
    empty = make_tif(tmp_path / "empty.tif", np.zeros((3, H, W), np.uint16), nodata=0)
    for stretch in ("percentile", "0,3000"):
        with pytest.raises(InputError, match=r"Every pixel .* is nodata \(value 0\)"):
            raster.RasterSource.open(empty, stretch=stretch)
    source_path = make_tif(tmp_path / "s.tif", values("uint16", 3))
    with pytest.raises(InputError, match=rf"over the limit of 1,000 .*decompression bombs.*{MAX_PIXELS_ENV}"):
        raster.RasterSource.open(source_path, max_pixels=1000)
    source = raster.RasterSource.open(source_path, bands="3,2,1")
    assert source.geo.bands == (3, 2, 1)
    for window in [(-1, 0, 5, 5), (0, 0, 0, 5), (H - 4, 0, 5, 5), (0, W - 1, 1, 2), (0.5, 0, 1, 1)]:
        with pytest.raises(InputError, match="window|whole numbers"):
            source.read(*window)
    source.close()
    source.close()  # idempotent
    with pytest.raises(InputError, match="closed"):
        source.read(0, 0, 1, 1)


def file_content(path: Path) -> dict:
    """Everything a reader sees in a GeoTIFF, for comparing two writes of one edit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return {
                "pixels": ds.read(),
                "masks": np.stack([ds.read_masks(b) for b in range(1, ds.count + 1)]),
                "mask_flags": [[f.name for f in flags] for flags in ds.mask_flag_enums],
                "tags": ds.tags(),
                "structure": ds.tags(ns="IMAGE_STRUCTURE"),
                "meta": (ds.crs, ds.transform, ds.width, ds.height, ds.count, ds.dtypes, str(ds.nodata)),
                "bands": (ds.descriptions, ds.colorinterp, ds.scales, ds.offsets, ds.block_shapes),
                "overviews": ds.overviews(1),
                "gcps": [(g.row, g.col, g.x, g.y) for g in ds.gcps[0]],
            }


def assert_same_content(a: Path, b: Path) -> None:
    left, right = file_content(a), file_content(b)
    for key in left:
        if isinstance(left[key], np.ndarray):
            np.testing.assert_array_equal(left[key], right[key], err_msg=key)
        else:
            assert left[key] == right[key], key


def _edit(scene) -> np.ndarray:
    """Changes every pixel, and puts some at 0 (which maps onto nodata 0 under a 0,MAX stretch)."""
    edit = inverted(scene)
    edit[:, 12:15, 30:60] = 0.0
    return edit


def _bands(height: int, heights=(7, 13, 1, 29, 5)):
    """Full-width row bands of cycling, arbitrary heights: (top, rows)."""
    top, index = 0, 0
    while top < height:
        rows = min(heights[index % len(heights)], height - top)
        yield top, rows
        top, index = top + rows, index + 1


@pytest.mark.parametrize(
    ("case", "options"),
    [
        ("bgrn_nodata", {}),
        ("bgrn_nodata", {"keep_other_bands": True}),
        ("float_nan", {}),
        ("dataset_mask", {}),
        ("dataset_mask", {"keep_other_bands": True, "compress": "zstd"}),
        ("alpha", {"keep_other_bands": True}),
        ("grey_nodata", {"keep_other_bands": True}),
        ("grey_nodata", {"compress": "none"}),
    ],
)
@pytest.mark.parametrize("validity", ["source", "reopened"])
def test_sink_fed_row_bands_writes_what_write_raster_writes(tmp_path, monkeypatch, case, options, validity):
    monkeypatch.setattr(raster_sink, "BLOCK_SIZE", 16)  # bands cross tile rows at every height
    path = _sources(tmp_path)[case]
    stretch = {"float_nan": "0,0.6", "grey_nodata": "0,4000", "bgrn_nodata": "0,4000"}.get(case, "percentile")
    scene = read_raster(path, stretch=stretch)
    edit = _edit(scene)
    tags = {"instruction": "add a road", "seed": 3}
    expected = write_raster(tmp_path / "whole.tif", edit, scene.geo, valid=scene.valid, tags=tags, **options)
    source = raster.RasterSource.open(path, stretch=stretch)
    with raster.RasterSink(
        tmp_path / "bands.tif", source.geo, source=source if validity == "source" else None, tags=tags, **options
    ) as sink:
        for top, rows in _bands(source.height):
            pixels = torch.from_numpy(edit[:, top : top + rows]) if top % 2 else edit[:, top : top + rows]
            sink.write(0, top, 0, pixels)
        assert not (tmp_path / "bands.tif").exists()  # only renamed into place on a clean exit
    source.close()
    assert_same_content(tmp_path / "whole.tif", tmp_path / "bands.tif")
    assert [n.replace("bands.tif", "whole.tif") for n in sink.notes] == expected
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_sink_nodata_collisions_and_notes(tmp_path):
    path = _sources(tmp_path)["bgrn_nodata"]
    with raster.RasterSource.open(path, stretch="0,4000") as source:
        edit = np.zeros((3, source.height, source.width), np.float32)  # every value maps onto nodata 0
        with raster.RasterSink(tmp_path / "black.tif", source.geo, source=source) as sink:
            for top, rows in _bands(source.height, (20,)):
                sink.write(0, top, 0, edit[:, top : top + rows])
        valid = source.valid(0, 0, source.height, source.width)
    count = int(valid.sum()) * 3
    assert any(f"{count:,} edited pixel values equalled the nodata value 0" in n for n in sink.notes)
    with rasterio.open(tmp_path / "black.tif") as o:
        written = o.read()
    assert (written[:, ~valid] == 0).all() and (written[:, valid] == 1).all()


def test_sink_writes_a_cog(tmp_path):
    height, width = 700, 1100
    data = values("uint16", 3, height=height, width=width)
    data[:, :10] = 0
    path = make_tif(tmp_path / "big.tif", data, nodata=0)
    scene = read_raster(path)
    write_raster(tmp_path / "whole_cog.tif", scene.image, scene.geo, valid=scene.valid, cog=True)
    with raster.RasterSource.open(path) as source:
        with raster.RasterSink(tmp_path / "bands_cog.tif", source.geo, source=source, cog=True) as sink:
            for top, rows in _bands(height, (100, 37, 250)):
                sink.write(0, top, 0, source.read(top, 0, rows, width)[0])
    assert any("COG driver" in n for n in sink.notes)
    assert_same_content(tmp_path / "whole_cog.tif", tmp_path / "bands_cog.tif")
    with rasterio.open(tmp_path / "bands_cog.tif") as o:
        assert o.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and o.overviews(1)
    assert sorted(os.listdir(tmp_path)) == ["bands_cog.tif", "big.tif", "whole_cog.tif"]


@pytest.mark.parametrize("cog", [False, True])
def test_an_exception_inside_the_sink_leaves_nothing(tmp_path, cog):
    path = _sources(tmp_path)["bgrn_nodata"]
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / "out.tif"
    source = raster.RasterSource.open(path)
    with (
        pytest.raises(RuntimeError, match="cancelled"),
        raster.RasterSink(out, source.geo, source=source, cog=cog) as sink,
    ):
        sink.write(0, 0, 0, source.read(0, 0, 10, source.width))
        assert len(os.listdir(tmp_path)) > len(before)  # the temporary file(s) exist meanwhile
        raise RuntimeError("cancelled")
    assert not out.exists() and sorted(os.listdir(tmp_path)) == before
    # An earlier file under that name is left as it was.
    out.write_bytes(b"earlier")
    with pytest.raises(RuntimeError), raster.RasterSink(out, source.geo, source=source, cog=cog) as sink:
        sink.write(0, 0, 0, source.read(0, 0, 10, source.width))
        raise RuntimeError("cancelled")
    assert out.read_bytes() == b"earlier" and sorted(os.listdir(tmp_path)) == sorted([*before, "out.tif"])
    out.unlink()
    # A clean exit with rows missing is refused the same way.
    with pytest.raises(InputError, match=r"Only 830 of the 5,063 pixels"), raster.RasterSink(out, source.geo) as sink:
        sink.write(0, 0, 0, source.read(0, 0, 10, source.width))
    assert sorted(os.listdir(tmp_path)) == before
    source.close()


def test_sink_refusals(tmp_path):
    path = _sources(tmp_path)["bgrn_nodata"]
    before = sorted(os.listdir(tmp_path))
    source = raster.RasterSource.open(path)
    geo = source.geo
    with pytest.raises(InputError, match="never overwrites a source"):
        raster.RasterSink(path, geo)
    with pytest.raises(InputError, match="Unknown compression"):
        raster.RasterSink(tmp_path / "o.tif", geo, compress="jpeg")
    with pytest.raises(InputError, match="Tag name"):
        raster.RasterSink(tmp_path / "o.tif", geo, tags={"a b": 1})
    with pytest.raises(InputError, match="source must be the RasterSource"):
        raster.RasterSink(tmp_path / "o.tif", geo, source="bgrn.tif")
    with raster.RasterSource.open(path, bands="1,2,3") as other, pytest.raises(InputError, match="not the scene geo"):
        raster.RasterSink(tmp_path / "o.tif", geo, source=other)
    sink = raster.RasterSink(tmp_path / "o.tif", geo)
    with pytest.raises(InputError, match="needs the sink open"):
        sink.write(0, 0, 0, np.zeros((3, 1, 1), np.float32))
    assert sorted(os.listdir(tmp_path)) == before  # nothing is created before the `with`
    pixels = source.read(0, 0, 5, source.width)[0]
    for call, message in [
        (lambda s: s.write(1, 0, 0, pixels), "index 0"),
        (lambda s: s.write(0, source.height - 2, 0, pixels), "inside the scene"),
        (lambda s: s.write(0, 0, 1, pixels), "inside the scene"),
        (lambda s: s.write(0, 0, 0, pixels[:2]), r"\[3, h, w\]"),
        (lambda s: s.write(0, 0, 0, pixels, valid=np.ones((4, 4), bool)), "valid must be"),
    ]:
        with pytest.raises(InputError, match=message), raster.RasterSink(tmp_path / "o.tif", geo) as sink:
            call(sink)
    with pytest.raises(InputError, match="More pixels written"), raster.RasterSink(tmp_path / "o.tif", geo) as sink:
        for _ in range(20):
            sink.write(0, 0, 0, pixels)
    with pytest.raises(InputError, match="writes its file once"), sink:
        pass
    assert sorted(os.listdir(tmp_path)) == before
    # Without a source and without valid=, the sink reopens geo.path; when it is gone, it says so.
    source.close()
    path.rename(tmp_path / "moved.tif")
    with (
        pytest.raises(InputError, match="no longer exists.*valid="),
        raster.RasterSink(tmp_path / "o.tif", geo) as sink,
    ):
        sink.write(0, 0, 0, pixels)
    with raster.RasterSink(tmp_path / "o.tif", geo) as sink:  # each window's own mask needs no source
        sink.write(0, 0, 0, np.zeros((3, geo.height, geo.width), np.float32), valid=np.ones((geo.height, geo.width)))
    assert sorted(os.listdir(tmp_path)) == sorted(["moved.tif", "o.tif", *before[1:]])


MEMORY_SCRIPT = """
import resource, sys
import numpy as np, rasterio, torch
from rsedit_core.raster import RasterSource

def peak_mb():
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20

torch.zeros(1)
with rasterio.open(sys.argv[1]) as ds:  # GDAL itself loaded before the baseline
    ds.read(1, window=((0, 1), (0, 1)))
before = peak_mb()
checksum = 0.0
with RasterSource.open(sys.argv[1]) as source:
    for top in range(0, source.height, 512):
        for left in range(0, source.width, 512):
            rows, cols = min(512, source.height - top), min(512, source.width - left)
            checksum += float(source.read(top, left, rows, cols).sum()) + int(source.valid(top, left, rows, cols).sum())
print(peak_mb() - before, checksum)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX")
def test_reading_window_by_window_needs_far_less_than_a_float_copy(tmp_path):
    height = width = 4000
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=width, height=height, count=4, dtype="uint16", nodata=0, crs=UTM[0])
    profile.update(transform=UTM[1], tiled=True, blockxsize=512, blockysize=512)
    cols = (np.arange(width, dtype=np.uint32) * 7) % 4000 + 1
    with rasterio.open(path, "w", **profile) as ds:
        for top in range(0, height, 500):
            rows = np.arange(top, top + 500, dtype=np.uint32)[:, None]
            band = ((rows * 13 + cols[None]) % 4000 + 1).astype(np.uint16)
            ds.write(np.stack([band + 100 * b for b in range(4)]), window=((top, top + 500), (0, width)))
    float_copy_mb = 3 * height * width * 4 / 2**20  # what read_raster holds: 183 MiB
    # GDAL's block cache is its own, bounded consumer (GDAL_CACHEMAX, by default 5% of RAM, which would
    # keep the whole decoded file here); pinned small, the measurement is RSEdit's own allocations.
    env = {**os.environ, "GDAL_CACHEMAX": "32"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path)], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    growth_mb = float(result.stdout.split()[0])
    assert growth_mb < float_copy_mb / 3, f"peak RSS grew {growth_mb:.0f} MiB (a float copy is {float_copy_mb:.0f})"


def test_reading_a_raster_imports_no_torch(tmp_path):
    path = make_tif(tmp_path / "s.tif", values("uint16", 3), nodata=0)
    code = (
        "import sys\n"
        "from rsedit_core.raster import read_raster, write_raster\n"
        f"scene = read_raster({str(path)!r})\n"
        f"write_raster({str(tmp_path / 'o.tif')!r}, scene.image, scene.geo, valid=scene.valid)\n"
        "print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
