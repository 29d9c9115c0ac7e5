"""rsedit edit on GeoTIFFs: read and written by windows, the output on the source's grid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from rsedit_core.cli import main


def _geotiff(path, *, width=150, height=100, count=4, dtype="uint16", crs="EPSG:32633", nodata=0, seed=0):
    rng = np.random.default_rng(seed)
    data = (rng.random((count, height, width)) * 3000 + 200).astype(dtype)
    data[:, :8, :12] = nodata
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs,
        transform=from_origin(500000, 4000000, 10, 10), nodata=nodata,
    ) as ds:  # fmt: skip
        ds.write(data)
        ds.descriptions = ("blue", "green", "red", "nir")[:count]
    return path


def _edit(model, image, out, *extra):
    argv = ["edit", "--model", str(model), "--image", str(image), "--prompt", "flood the fields", "--out", str(out),
            "--steps", "1", "--device", "cpu", *extra]  # fmt: skip
    return main(argv)


def test_geotiff_in_geotiff_out_on_the_same_grid(tiny_editor_dir, tmp_path, capsys):
    source = _geotiff(tmp_path / "scene.tif")
    out = tmp_path / "edit.tif"
    assert _edit(tiny_editor_dir, source, out, "--tile", "64", "--tile-overlap", "16", "--keep-other-bands") == 0
    err = capsys.readouterr().err
    assert "by band descriptions" in err and "tiled: " in err and "band 4 (nir) copied unchanged" in err
    with rasterio.open(source) as a, rasterio.open(out) as b:
        assert (b.crs, b.transform, b.width, b.height, b.dtypes, b.nodata) == (
            a.crs, a.transform, a.width, a.height, a.dtypes, a.nodata
        )  # fmt: skip
        edited, original = b.read(), a.read()
        assert (edited[:, :8, :12] == 0).all()  # nodata stays nodata
        assert np.array_equal(edited[3], original[3])  # NIR copied
        valid = edited[:3, 8:, 12:]
        assert valid.min() >= 1 and valid.max() <= 3200 + 200
        tags = b.tags()
        assert tags["RSEDIT_INSTRUCTION"] == "flood the fields" and tags["RSEDIT_STEPS"] == "1"
        assert tags["RSEDIT_TEXT_CFG"] == "7.5" and tags["RSEDIT_SEED"] == "42" and "RSEDIT_VERSION" in tags


def test_geotiff_to_png_and_png_to_tiff_say_what_is_lost(tiny_editor_dir, tmp_path, capsys):
    source = _geotiff(tmp_path / "scene.tif", count=3)
    assert _edit(tiny_editor_dir, source, tmp_path / "edit.png") == 0
    assert ".png keeps no georeference" in capsys.readouterr().err
    with Image.open(tmp_path / "edit.png") as image:
        assert image.size == (150, 100)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "plain.png")
    assert _edit(tiny_editor_dir, tmp_path / "plain.png", tmp_path / "plain_edit.tif") == 0
    assert "no georeference (not a GeoTIFF): wrote a plain TIFF" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size-policy", "resize"], "would change the scene's pixel grid"),
        (["--bands", "5,2,1"], "band"),
        (["--stretch", "3000,100"], "MIN"),
        (["--tile", "32"], "tile 32 px is below the 64 px"),
        (["--cog", "--out-png"], "--cog apply to GeoTIFF outputs"),
    ],
)
def test_bad_geotiff_input_is_refused_before_the_model_loads(tmp_path, capsys, extra, message):
    source = _geotiff(tmp_path / "scene.tif")
    out = tmp_path / ("edit.png" if "--out-png" in extra else "edit.tif")
    extra = [e for e in extra if e != "--out-png"]
    assert _edit(tmp_path / "no-such-model", source, out, *extra) == 1  # refused before the missing model matters
    err = capsys.readouterr().err
    assert message in err and "no-such-model" not in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_the_source_geotiff_is_never_the_output(tmp_path, capsys):
    source = _geotiff(tmp_path / "scene.tif")
    before = source.read_bytes()
    assert _edit(tmp_path / "no-such-model", source, source) == 1
    assert "scene.tif" in capsys.readouterr().err and source.read_bytes() == before


def test_two_geotiffs_in_one_run_are_refused(tmp_path, capsys):
    a, b = _geotiff(tmp_path / "a.tif"), _geotiff(tmp_path / "b.tif", seed=1)
    argv = ["edit", "--model", "m", "--image", str(a), str(b), "--prompt", "x", "--out", str(tmp_path / "o.tif")]
    assert main(argv) == 1
    assert "Edit one GeoTIFF per run" in capsys.readouterr().err
