"""rsedit edit --mask / --regions / --report: the source kept outside, checked before the model loads."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from rsedit_core.cli import main


def _files(tmp_path, size=(150, 110)):
    width, height = size
    scene = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    Image.fromarray(scene).save(tmp_path / "scene.png")
    mask = np.zeros((height, width), np.uint8)
    mask[20:80, 30:120] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    west = np.zeros((height, width), np.uint8)
    west[:, :40] = 255
    Image.fromarray(west).save(tmp_path / "west.png")
    return scene, mask > 0, west > 0


def _edit(model, tmp_path, *extra, out="edit.png"):
    argv = ["edit", "--model", str(model), "--image", str(tmp_path / "scene.png"), "--prompt", "flood the fields",
            "--out", str(tmp_path / out), "--steps", "1", "--device", "cpu", *extra]  # fmt: skip
    return main(argv)


def test_mask_keeps_the_source_file_exact_outside_and_reports(tiny_editor_dir, tmp_path, capsys):
    scene, inside, _ = _files(tmp_path)
    assert (
        _edit(tiny_editor_dir, tmp_path, "--mask", str(tmp_path / "mask.png"), "--report", str(tmp_path / "r.json"))
        == 0
    )
    edited = np.asarray(Image.open(tmp_path / "edit.png"))
    assert np.array_equal(edited[~inside], scene[~inside]) and not np.array_equal(edited[inside], scene[inside])
    assert "outside: unchanged (PSNR inf, SSIM 1.000)" in capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    outside = report["outputs"][0]["outside"]
    assert outside["changed"] == 0 and outside["psnr"] is None and outside["ssim"] == 1.0
    assert report["settings"]["steps"] == 1 and report["mask"].endswith("mask.png")


def test_regions_file_edits_each_region_and_keeps_the_rest(tiny_editor_dir, tmp_path, capsys):
    scene, inside, west = _files(tmp_path)
    regions = [{"mask": "mask.png", "instruction": "flood the fields"}, {"mask": "west.png", "instruction": "burn it"}]
    (tmp_path / "regions.json").write_text(json.dumps(regions))
    assert _edit(tiny_editor_dir, tmp_path, "--regions", str(tmp_path / "regions.json")) == 0
    edited = np.asarray(Image.open(tmp_path / "edit.png"))
    keep = ~(inside | west)
    assert np.array_equal(edited[keep], scene[keep])
    assert "2 regions, each guided by its own instruction" in capsys.readouterr().err


def test_bad_masks_are_refused_before_the_model_loads(tmp_path, capsys):
    _files(tmp_path)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "small.png")
    missing = tmp_path / "no-such-model"
    assert _edit(missing, tmp_path, "--mask", str(tmp_path / "small.png")) == 1
    err = capsys.readouterr().err
    assert "150x110" in err and "no-such-model" not in err
    assert _edit(missing, tmp_path, "--mask", str(tmp_path / "mask.png"), "--regions", str(tmp_path / "r.json")) == 1
    assert "not both" in capsys.readouterr().err
    assert _edit(missing, tmp_path, "--mask", str(tmp_path / "mask.png"), "--report", str(tmp_path / "r.txt")) == 1
    assert "--report" in capsys.readouterr().err
    assert not (tmp_path / "edit.png").exists()


def test_a_geotiff_with_a_mask_keeps_its_raw_values_outside(tiny_editor_dir, tmp_path, capsys):
    import rasterio
    from test_cli_geotiff import _geotiff

    source = _geotiff(tmp_path / "scene.tif")  # 150 x 100, 4 bands uint16
    mask = np.zeros((100, 150), np.uint8)
    mask[20:80, 30:120] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    argv = ["edit", "--model", str(tiny_editor_dir), "--image", str(source), "--prompt", "flood", "--out",
            str(tmp_path / "edit.tif"), "--steps", "1", "--device", "cpu", "--mask", str(tmp_path / "m.png"),
            "--keep-other-bands"]  # fmt: skip
    assert main(argv) == 0
    with rasterio.open(source) as a, rasterio.open(tmp_path / "edit.tif") as b:
        outside = mask == 0
        assert np.array_equal(b.read()[:, outside], a.read()[:, outside])
    assert main([*argv[:-3], "--regions", str(tmp_path / "r.json")]) == 1
    assert "--regions is not supported for GeoTIFF sources yet" in capsys.readouterr().err
