"""The GeoTIFF nodes against the ComfyUI test double, on small GeoTIFFs written with rasterio into a
temporary input folder: a 4-band uint16 UTM scene with a nodata corner, a 3-band uint8 EPSG:4326 one
and one without any georeference."""

from __future__ import annotations

import asyncio
import importlib
import os
import warnings

import numpy as np
import pytest
import torch
from comfy_double import reset_comfy_double

rasterio = pytest.importorskip("rasterio")
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.errors import NotGeoreferencedWarning  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

WIDTH, HEIGHT = 96, 80
UTM = from_origin(405_000.0, 2_927_000.0, 10.0, 10.0)


@pytest.fixture
def nodes(pack, tmp_path, monkeypatch):
    """The pack's nodes with empty input and output folders in ``tmp_path`` (no example inputs)."""
    import folder_paths

    reset_comfy_double()
    monkeypatch.setenv("RSEDIT_NO_EXAMPLE_INPUTS", "1")
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    (tmp_path / "input").mkdir()
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


def input_error() -> type:
    """The pack's own InputError (the pack is imported as ComfyUI imports it, under its folder's name)."""
    return importlib.import_module("rsedit_pack.rsedit_core.errors").InputError


def corner() -> np.ndarray:
    """The nodata corner of the UTM scene: ``[H, W]`` True in the north-west triangle."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return xx + yy < 20


def utm_values(seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).integers(200, 3000, (4, HEIGHT, WIDTH)).astype(np.uint16)
    data[:, corner()] = 0
    return data


def write_utm(path, data=None, nodata=0):
    """4-band uint16 (blue, green, red, nir), EPSG:32617, 10 m, nodata 0 in a corner."""
    data = utm_values() if data is None else data
    profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=4, dtype="uint16", crs="EPSG:32617",
                   transform=UTM, nodata=nodata)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(("blue", "green", "red", "nir"), start=1):
            dst.set_band_description(i, name)
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    return data


def write_rgb8(path):
    """3-band uint8 RGB in EPSG:4326, no nodata."""
    data = np.random.default_rng(1).integers(0, 256, (3, HEIGHT, WIDTH)).astype(np.uint8)
    profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8", crs="EPSG:4326",
                   transform=from_origin(-81.95, 26.45, 1e-4, 1e-4), photometric="RGB")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def write_plain(path):
    """3-band uint16 without CRS or transform."""
    data = np.random.default_rng(2).integers(0, 4000, (3, HEIGHT, WIDTH)).astype(np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint16") as dst:
            dst.write(data)
    return data


@pytest.fixture
def inputs(nodes, tmp_path):
    folder = tmp_path / "input"
    return {
        "utm": write_utm(folder / "utm16.tif"),
        "rgb8": write_rgb8(folder / "rgb8.tif"),
        "plain": write_plain(folder / "plain.tif"),
    }


def load(nodes, image, **extra):
    from comfy_double.runner import run_node

    return run_node(nodes["RSEditLoadGeoTIFF"], image=image, bands=extra.pop("bands", ""),
                    stretch=extra.pop("stretch", "percentile"), **extra)  # fmt: skip


def save(nodes, images, geo, **extra):
    from comfy_double.runner import run_node

    widgets = dict(filename_prefix="rsedit/geotiff", compress="deflate", cog=False, keep_other_bands=False)
    widgets.update(extra)
    return run_node(nodes["RSEditSaveGeoTIFF"], images=images, geo=geo, **widgets)


def text(output) -> str:
    return output.ui.as_dict()["text"][0]


def test_schemas(nodes):
    loader = {spec.id: spec for spec in nodes["RSEditLoadGeoTIFF"].define_schema().inputs}
    assert list(loader) == ["image", "bands", "stretch"]
    assert (loader["bands"].default, loader["stretch"].default) == ("", "percentile")
    assert "percentile:P1,P2" in loader["stretch"].tooltip
    info = nodes["RSEditLoadGeoTIFF"].GET_NODE_INFO_V1()
    assert info["output"] == ["IMAGE", "RSEDIT_GEO", "MASK"] and info["category"] == "RSEdit/geo"
    saver = nodes["RSEditSaveGeoTIFF"].GET_NODE_INFO_V1()
    assert saver["output_node"] is True and saver["output"] == []
    assert list(saver["input"]["required"]) == ["images", "geo", "filename_prefix", "compress", "cog",
                                                "keep_other_bands"]  # fmt: skip
    assert list(saver["input"]["optional"]) == ["nodata_mask"]
    required = saver["input"]["required"]
    assert required["compress"][1]["options"] == ["deflate", "lzw", "zstd", "none"]
    assert required["compress"][1]["default"] == "deflate" and required["filename_prefix"][1]["default"] == (
        "rsedit/geotiff"
    )
    assert required["cog"][1]["default"] is False and required["keep_other_bands"][1]["default"] is False


def test_lists_geotiffs_one_level_deep_and_refreshes(nodes, tmp_path):
    folder = tmp_path / "input"
    write_rgb8(folder / "b.tif")
    (folder / "sub").mkdir()
    write_rgb8(folder / "sub" / "a.TIFF")
    (folder / "sub" / "deeper").mkdir()
    write_rgb8(folder / "sub" / "deeper" / "too_deep.tif")
    (folder / "picture.png").write_bytes(b"png")
    (folder / ".hidden.tif").write_bytes(b"x")
    (folder / ".cache").mkdir()
    write_rgb8(folder / ".cache" / "c.tif")

    def options():
        return {spec.id: spec for spec in nodes["RSEditLoadGeoTIFF"].define_schema().inputs}["image"].options

    assert options() == ["b.tif", "sub/a.TIFF"]
    write_rgb8(folder / "added.tif")  # what ComfyUI's Refresh shows: the schema is rebuilt on every request
    assert options() == ["added.tif", "b.tif", "sub/a.TIFF"]
    image, geo, _ = load(nodes, "sub/a.TIFF").args
    assert image.shape == (1, HEIGHT, WIDTH, 3) and geo.path == str(folder / "sub" / "a.TIFF")


def test_load_uint16_utm_with_nodata(nodes, inputs, tmp_path):
    from rsedit_core.raster import read_raster

    output = load(nodes, "utm16.tif")
    image, geo, mask = output.args
    assert image.shape == (1, HEIGHT, WIDTH, 3) and image.dtype == torch.float32
    assert image.is_contiguous() and 0 <= image.min() and image.max() <= 1
    expected = read_raster(tmp_path / "input" / "utm16.tif")
    assert torch.equal(image[0], torch.from_numpy(expected.image).movedim(0, -1))
    assert geo.crs_name() == "EPSG:32617" and geo.transform == tuple(UTM)[:6]
    assert (geo.width, geo.height, geo.dtype, geo.count, geo.nodata) == (WIDTH, HEIGHT, "uint16", 4, 0.0)
    assert geo.bands == (3, 2, 1)  # red, green, blue found by colour interpretation
    assert mask.shape == (1, HEIGHT, WIDTH) and mask.dtype == torch.float32
    assert torch.equal(mask[0].bool(), torch.from_numpy(corner()))
    assert image[0][torch.from_numpy(corner())].abs().max() == 0  # nodata is black
    notes = text(output)
    assert "EPSG:32617" in notes and "nodata 0" in notes and "percentiles" in notes
    assert f"{int(corner().sum()):,} pixels" in notes


def test_load_bands_and_fixed_stretch(nodes, inputs):
    image, geo, _ = load(nodes, "utm16.tif", bands=" 4,3,2 ", stretch="0,3000").args
    raw = inputs["utm"][[3, 2, 1]].astype(np.float32)
    expected = np.clip(raw / 3000, 0, 1)
    expected[:, corner()] = 0
    assert geo.bands == (4, 3, 2) and geo.stretch.as_text() == "0,3000"
    assert np.allclose(image[0].movedim(-1, 0).numpy(), expected, atol=1e-6)
    grey, geo, _ = load(nodes, "utm16.tif", bands="4").args
    assert geo.bands == (4, 4, 4) and torch.equal(grey[..., 0], grey[..., 2])


def test_load_uint8_epsg4326_as_is(nodes, inputs):
    output = load(nodes, "rgb8.tif")
    image, geo, mask = output.args
    assert np.allclose(image[0].movedim(-1, 0).numpy(), inputs["rgb8"].astype(np.float32) / 255, atol=1e-6)
    assert geo.crs_name() == "EPSG:4326" and geo.nodata is None and geo.bands == (1, 2, 3)
    assert mask.shape == (1, HEIGHT, WIDTH) and mask.max() == 0
    assert "8-bit values used as is" in text(output)


def test_save_keeps_the_grid_dtype_and_nodata(nodes, inputs, tmp_path):
    image, geo, mask = load(nodes, "utm16.tif", stretch="0,3000").args
    output = save(nodes, image, geo, nodata_mask=mask)
    path = tmp_path / "output" / "rsedit" / "geotiff_00001_.tif"
    assert text(output).startswith("saved rsedit/geotiff_00001_.tif in ComfyUI's output folder")
    with rasterio.open(path) as written, rasterio.open(tmp_path / "input" / "utm16.tif") as source:
        assert written.crs == source.crs and written.transform == source.transform
        assert (written.width, written.height, written.dtypes[0], written.nodata) == (WIDTH, HEIGHT, "uint16", 0)
        assert written.count == 3 and written.descriptions == ("red", "green", "blue")
        data = written.read()
        tags = written.tags()
    assert (data[:, corner()] == 0).all() and (data[:, ~corner()] != 0).all()
    # Inside the stretch range (0..3000) the values come back exactly: the edit here is the identity.
    assert np.array_equal(data, inputs["utm"][[2, 1, 0]])
    assert tags["RSEDIT_VERSION"] and tags["RSEDIT_NODE"] == "RSEdit Save GeoTIFF (RSEditSaveGeoTIFF)"
    assert tags["RSEDIT_SOURCE"] == "utm16.tif" and tags["RSEDIT_BANDS"] == "3,2,1"
    assert tags["RSEDIT_STRETCH"] == "0,3000"


def test_an_edit_marked_nodata_by_the_mask_is_written_as_nodata(nodes, inputs, tmp_path):
    image, geo, mask = load(nodes, "utm16.tif").args
    edited = torch.full_like(image, 0.5)
    painted = mask.clone()
    painted[:, 60:, 80:] = 1.0
    save(nodes, edited, geo, nodata_mask=painted)
    with rasterio.open(tmp_path / "output" / "rsedit" / "geotiff_00001_.tif") as written:
        data = written.read()
        valid = written.dataset_mask() > 0
    assert np.array_equal(~valid, painted[0].bool().numpy())
    assert (data[:, ~valid] == 0).all() and (data[:, valid] > 0).all()


def test_counter_names_and_batches(nodes, inputs, tmp_path):
    image, geo, mask = load(nodes, "utm16.tif").args
    folder = tmp_path / "output" / "rsedit"
    save(nodes, image, geo, nodata_mask=mask)
    save(nodes, image, geo, nodata_mask=mask)
    (folder / "geotiff_00007_.png").write_bytes(b"a Save Image file with the same prefix")
    (folder / "other_00100_.tif").write_bytes(b"another prefix")
    batch = torch.cat([image, 1 - image])
    output = save(nodes, batch, geo, nodata_mask=mask)
    assert "geotiff_00008_.tif, rsedit/geotiff_00009_.tif" in text(output)
    names = sorted(p.name for p in folder.glob("geotiff_*.tif"))
    assert names == ["geotiff_00001_.tif", "geotiff_00002_.tif", "geotiff_00008_.tif", "geotiff_00009_.tif"]
    with rasterio.open(folder / "geotiff_00008_.tif") as a, rasterio.open(folder / "geotiff_00009_.tif") as b:
        assert a.tags()["RSEDIT_IMAGE"] == "1 of 2" and b.tags()["RSEDIT_IMAGE"] == "2 of 2"
        assert not np.array_equal(a.read(), b.read())
    one_mask_each = save(nodes, batch, geo, nodata_mask=torch.cat([mask, mask]), filename_prefix="top")
    assert text(one_mask_each).startswith("saved top_00001_.tif, top_00002_.tif")
    assert (tmp_path / "output" / "top_00002_.tif").is_file()
    hidden = save(nodes, image, geo, nodata_mask=mask, filename_prefix=".cache/x/geo")
    assert text(hidden).startswith("saved .cache/x/geo_00001_.tif")


def test_without_a_mask_nodata_comes_from_the_source_while_it_exists(nodes, inputs, tmp_path):
    image, geo, _ = load(nodes, "utm16.tif").args
    output = save(nodes, image, geo)
    assert "nodata taken from the source utm16.tif" in text(output)
    with rasterio.open(tmp_path / "output" / "rsedit" / "geotiff_00001_.tif") as written:
        assert np.array_equal(written.dataset_mask() == 0, corner())
    os.remove(tmp_path / "input" / "utm16.tif")
    output = save(nodes, image, geo)
    assert "the source utm16.tif is gone, so every pixel was written as data" in text(output)
    with rasterio.open(tmp_path / "output" / "rsedit" / "geotiff_00002_.tif") as written:
        assert (written.dataset_mask() > 0).all()
    with pytest.raises(input_error(), match="keep_other_bands copies the unedited bands"):
        save(nodes, image, geo, keep_other_bands=True)


def test_keep_other_bands_and_cog(nodes, inputs, tmp_path):
    image, geo, mask = load(nodes, "utm16.tif", stretch="0,3000").args
    output = save(nodes, image, geo, nodata_mask=mask, keep_other_bands=True, cog=True, compress="zstd")
    assert "copied unchanged from the source" in text(output) and "Cloud-Optimized" in text(output)
    with rasterio.open(tmp_path / "output" / "rsedit" / "geotiff_00001_.tif") as written:
        assert written.count == 4 and written.descriptions == ("blue", "green", "red", "nir")
        assert np.array_equal(written.read(), inputs["utm"])
        assert written.profile["compress"] == "zstd"


def test_uint8_and_crs_less_round_trips(nodes, inputs, tmp_path):
    image, geo, mask = load(nodes, "rgb8.tif").args
    save(nodes, image, geo, nodata_mask=mask, filename_prefix="rgb")
    with rasterio.open(tmp_path / "output" / "rgb_00001_.tif") as written:
        assert written.crs.to_epsg() == 4326 and written.nodata is None and written.dtypes[0] == "uint8"
        assert np.array_equal(written.read(), inputs["rgb8"])
    output = load(nodes, "plain.tif")
    assert "no georeference" in text(output)
    image, geo, mask = output.args
    saved = save(nodes, image, geo, nodata_mask=mask, filename_prefix="plain")
    assert "wrote a plain TIFF" in text(saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        written = rasterio.open(tmp_path / "output" / "plain_00001_.tif")
    with written:
        assert written.crs is None and (written.width, written.height, written.dtypes[0]) == (WIDTH, HEIGHT, "uint16")


def test_a_resized_image_is_refused_with_the_fix(nodes, inputs, tmp_path):
    image, geo, mask = load(nodes, "utm16.tif").args
    upscaled = torch.nn.functional.interpolate(image.movedim(-1, 1), scale_factor=2).movedim(1, -1)
    with pytest.raises(input_error()) as refused:
        save(nodes, upscaled, geo, nodata_mask=mask)
    message = str(refused.value)
    assert f"{2 * WIDTH}x{2 * HEIGHT}" in message and f"{WIDTH}x{HEIGHT}" in message and "upscaler" in message
    with pytest.raises(input_error(), match="the nodata mask is 48x40"):
        save(nodes, image, geo, nodata_mask=mask[:, :40, :48])
    with pytest.raises(input_error(), match="3 nodata masks for 2 images"):
        save(nodes, torch.cat([image, image]), geo, nodata_mask=torch.cat([mask] * 3))
    assert not (tmp_path / "output" / "rsedit").exists()


@pytest.mark.parametrize("prefix", ["../outside", "rsedit/../../outside", "/tmp/rsedit_absolute", "", ".."])
def test_a_prefix_outside_the_output_folder_is_refused(nodes, inputs, tmp_path, prefix):
    image, geo, mask = load(nodes, "utm16.tif").args
    with pytest.raises(input_error(), match="filename_prefix"):
        save(nodes, image, geo, nodata_mask=mask, filename_prefix=prefix)
    assert not list(tmp_path.glob("outside*")) and not list(tmp_path.glob("**/*_00001_.tif"))


def test_bad_rasters_give_errors_and_the_next_run_works(nodes, inputs, tmp_path):
    from comfy_double.runner import NodeExecutionError, PromptValidationError, run_api_graph

    folder = tmp_path / "input"
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    write_utm(folder / "empty.tif", np.zeros((4, HEIGHT, WIDTH), np.uint16))
    with pytest.raises(input_error(), match="Cannot read .*broken.tif as a raster"):
        load(nodes, "broken.tif")
    with pytest.raises(input_error(), match="Band 5 is out of range.*has 4 bands"):
        load(nodes, "utm16.tif", bands="5,4,3")
    with pytest.raises(input_error(), match="Every pixel .* is nodata"):
        load(nodes, "empty.tif")
    with pytest.raises(input_error(), match="MIN 3000 must be below MAX 0"):
        load(nodes, "utm16.tif", stretch="3000,0")
    with pytest.raises(input_error(), match="Unknown stretch"):
        load(nodes, "utm16.tif", stretch="gamma")
    with pytest.raises(PromptValidationError, match="no GeoTIFF named 'gone.tif'"):
        load(nodes, "gone.tif")
    with pytest.raises(PromptValidationError, match="not a file inside ComfyUI's input folder"):
        load(nodes, "../input/utm16.tif/../../../etc/passwd")

    def graph(image: str) -> dict:
        return {
            "1": {"class_type": "RSEditLoadGeoTIFF", "inputs": {"image": image, "bands": "", "stretch": "percentile"}},
            "2": {
                "class_type": "RSEditSaveGeoTIFF",
                "inputs": {"images": ["1", 0], "geo": ["1", 1], "nodata_mask": ["1", 2],
                           "filename_prefix": "rsedit/geotiff", "compress": "deflate", "cog": False,
                           "keep_other_bands": False},
            },
        }  # fmt: skip

    classes = list(nodes.values())
    with pytest.raises(NodeExecutionError) as failed:
        run_api_graph(graph("broken.tif"), classes)
    assert failed.value.node_type == "RSEditLoadGeoTIFF" and "GDAL says" in failed.value.exception_message
    run = run_api_graph(graph("utm16.tif"), classes)
    assert run.ui["2"]["text"][0].startswith("saved rsedit/geotiff_00001_.tif")
    assert "EPSG:32617" in run.ui["1"]["text"][0]


def test_provenance_comes_from_the_one_upstream_sampler(nodes, monkeypatch):
    import comfy.cli_args
    from rsedit_pack.nodes.nodes_geo import provenance_tags

    prompt = {
        "1": {"class_type": "RSEditLoader", "inputs": {"model": "RSEdit-DiT", "dtype": "auto"}},
        "2": {"class_type": "RSEditTextEncode", "inputs": {"rsedit_model": ["1", 0], "instruction": "flood it",
                                                           "negative": ""}},
        "5": {"class_type": "RSEditSampler", "inputs": {"rsedit_model": ["1", 0], "conditioning": ["2", 0],
                                                        "source": ["4", 0], "seed": 7, "steps": 20, "text_cfg": 0.0,
                                                        "image_cfg": 1.5, "scheduler": "default", "tile": 512}},
        "8": {"class_type": "ImageScaleBy", "inputs": {"image": ["5", 0]}},
        "9": {"class_type": "RSEditSaveGeoTIFF", "inputs": {"images": ["8", 0]}},
        "10": {"class_type": "RSEditSaveGeoTIFF", "inputs": {"images": ["12", 0]}},
        "12": {"class_type": "ImageStitch", "inputs": {"image1": ["5", 0], "image2": ["13", 0]}},
        "13": {"class_type": "RSEditSampler", "inputs": {"seed": 8}},
    }  # fmt: skip
    assert provenance_tags(prompt, "9") == {
        "RSEDIT_SEED": "7",
        "RSEDIT_STEPS": "20",
        "RSEDIT_TEXT_CFG": "default (the editor's own)",
        "RSEDIT_IMAGE_CFG": "1.5",
        "RSEDIT_SCHEDULER": "default",
        "RSEDIT_TILE": "512",
        "RSEDIT_INSTRUCTION": "flood it",
        "RSEDIT_NEGATIVE_PROMPT": "",
        "RSEDIT_MODEL": "RSEdit-DiT",
    }
    assert provenance_tags(prompt, "10") == {}  # two samplers upstream: which one made the pixels is unknown
    assert provenance_tags(None, "9") == {} and provenance_tags(prompt, None) == {}
    monkeypatch.setattr(comfy.cli_args.args, "disable_metadata", True)
    assert provenance_tags(prompt, "9") == {}


def test_the_sample_geotiff_loads_as_the_workflow_expects(pack, tmp_path):
    """The shipped sample: 4 bands uint16 in UTM 17N, nodata corner, larger than the 512 px tile."""
    import folder_paths

    reset_comfy_double()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    extension = asyncio.run(pack.comfy_entrypoint())
    nodes = {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}
    output = load(nodes, "rsedit_sample_scene.tif", stretch="0,3000")
    image, geo, mask = output.args
    assert image.shape == (1, 640, 768, 3) and geo.crs_name() == "EPSG:32617" and geo.transform[0] == 10.0
    assert geo.bands == (3, 2, 1) and geo.dtype == "uint16" and geo.nodata == 0.0
    assert 0 < mask.mean() < 0.02 and mask[0, 0, 0] == 1 and mask[0, -1, -1] == 0
