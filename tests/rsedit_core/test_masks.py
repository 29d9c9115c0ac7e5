"""Mask and region inputs (rsedit_core.masks): images, GeoTIFFs, polygons, grow/feather, regions, bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as transform_points

from rsedit_core.errors import InputError
from rsedit_core.masks import (
    Mask,
    SceneGrid,
    feather_inside,
    grow_mask,
    load_mask,
    load_regions,
    mask_from_geojson,
    overlap_weights,
)

H, W = 37, 53  # odd on purpose
UTM = "EPSG:32633"
# A UTM scene: 10 m pixels, origin (top-left) at E 500000, N 4000000.
ORIGIN = (500000.0, 4000000.0)


def utm_grid(height: int = H, width: int = W, origin=ORIGIN, pixel: float = 10.0) -> SceneGrid:
    return SceneGrid(height, width, CRS.from_string(UTM).to_wkt(), tuple(from_origin(*origin, pixel, pixel))[:6])


def png(path: Path, array, mode: str | None = None) -> Path:
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def geotiff(path: Path, array, crs=UTM, transform=None, nodata=None) -> Path:
    array = np.asarray(array)
    bands = array[None] if array.ndim == 2 else array
    profile = dict(driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0])
    profile.update(dtype=str(bands.dtype), crs=crs, transform=transform or from_origin(*ORIGIN, 10, 10))
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
    return path


def rectangle(x0, y0, x1, y1) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def pixel_box(col0, row0, col1, row1, origin=ORIGIN, pixel=10.0) -> dict:
    """A polygon in scene coordinates along pixel edges: cols col0..col1-1, rows row0..row1-1."""
    x0, y0 = origin
    return rectangle(x0 + col0 * pixel, y0 - row0 * pixel, x0 + col1 * pixel, y0 - row1 * pixel)


def collection(*geometries, crs: str | None = None, **props) -> dict:
    features = [{"type": "Feature", "geometry": g, "properties": dict(props)} for g in geometries]
    out: dict = {"type": "FeatureCollection", "features": features}
    if crs:
        out["crs"] = {"type": "name", "properties": {"name": crs}}
    return out


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def expected(rows: slice, cols: slice, shape=(H, W)) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    out[rows, cols] = 1
    return out


def wkb_polygon(*rings) -> bytes:
    out = struct.pack("<BII", 1, 3, len(rings))
    for ring in rings:
        out += struct.pack("<I", len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)
    return out


def box_ring(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def write_ogr(path: Path, wkbs, crs, driver, instructions=None, geometry_type="Polygon"):
    pyogrio = pytest.importorskip("pyogrio")
    fields, data = ([], []) if instructions is None else (["instruction"], [np.array(instructions, dtype=object)])
    pyogrio.raw.write(
        str(path),
        np.array(wkbs, dtype=object),
        field_data=data,
        fields=fields,
        geometry_type=geometry_type,
        crs=crs,
        driver=driver,
    )
    return path


def joined(mask) -> str:
    return " | ".join(mask.notes)


# --------------------------------------------------------------------------------------------------
# Image masks


def test_binary_png_on_an_odd_sized_scene(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[5:20, 10:31] = 255
    mask = load_mask(png(tmp_path / "m.png", array), SceneGrid.plain(H, W))
    assert isinstance(mask, Mask) and mask.values.dtype == np.float32 and mask.values.shape == (H, W)
    np.testing.assert_array_equal(mask.values, expected(slice(5, 20), slice(10, 31)))
    assert not mask.empty and not mask.full
    assert "grey" not in joined(mask) and "315 px" in joined(mask)


def test_anti_aliased_grey_is_thresholded_with_a_note_or_kept_soft(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[5:20, 10:30] = 255
    array[20, 10:30] = 128  # an anti-aliased edge: 128/255 >= 0.5 -> edit
    array[4, 10:30] = 100  # 100/255 < 0.5 -> keep
    path = png(tmp_path / "aa.png", array)
    mask = load_mask(path, SceneGrid.plain(H, W))
    np.testing.assert_array_equal(mask.values, expected(slice(5, 21), slice(10, 30)))
    assert "40 px" in joined(mask) and "thresholded at 0.5" in joined(mask) and "soft=True" in joined(mask)
    soft = load_mask(path, SceneGrid.plain(H, W), soft=True)
    np.testing.assert_allclose(soft.values, array.astype(np.float32) / 255, atol=1e-7)
    assert "soft weights" in joined(soft)
    strict = load_mask(path, SceneGrid.plain(H, W), threshold=0.9)
    np.testing.assert_array_equal(strict.values, expected(slice(5, 20), slice(10, 30)))


def test_rgba_with_a_transparent_background_uses_its_alpha(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: brightness says nothing
    rgba[10:15, 3:9, 3] = 255  # the painted, opaque part
    mask = load_mask(png(tmp_path / "rgba.png", rgba, "RGBA"), SceneGrid.plain(H, W))
    np.testing.assert_array_equal(mask.values, expected(slice(10, 15), slice(3, 9)))
    assert "alpha was used (opaque = edit" in joined(mask)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    opaque[..., :3] = 0
    opaque[1:4, 1:4, :3] = 255
    mask = load_mask(png(tmp_path / "opaque.png", opaque, "RGBA"), SceneGrid.plain(H, W))
    np.testing.assert_array_equal(mask.values, expected(slice(1, 4), slice(1, 4)))
    assert "alpha" not in joined(mask)


def test_colour_masks_are_read_by_luminance_with_a_note(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[2:6, 2:6] = 255  # white: edit
    rgb[10:14, 10:14, 0] = 255  # pure red: luminance 0.299 -> keep
    mask = load_mask(png(tmp_path / "rgb.png", rgb), SceneGrid.plain(H, W))
    np.testing.assert_array_equal(mask.values, expected(slice(2, 6), slice(2, 6)))
    assert "luminance" in joined(mask) and "pure red" in joined(mask)


def test_16_bit_png_masks(tmp_path):
    array = np.zeros((H, W), np.uint16)
    array[3:9, 4:12] = 65535
    array[9, 4:12] = 20000  # grey, below half
    path = tmp_path / "m16.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode == "I;16"
    mask = load_mask(path, SceneGrid.plain(H, W))
    np.testing.assert_array_equal(mask.values, expected(slice(3, 9), slice(4, 12)))
    assert "8 px" in joined(mask)
    soft = load_mask(path, SceneGrid.plain(H, W), soft=True)
    assert soft.values[9, 4] == pytest.approx(20000 / 65535)


def test_label_masks_of_zeros_and_ones(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[0:3, 0:3] = 1
    mask = load_mask(png(tmp_path / "label.png", array), SceneGrid.plain(H, W))
    np.testing.assert_array_equal(mask.values, expected(slice(0, 3), slice(0, 3)))
    assert "only the values 0 and 1" in joined(mask)


def test_jpeg_masks_say_they_are_lossy(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[8:24, 8:40] = 255
    path = tmp_path / "m.jpg"
    Image.fromarray(array).save(path, quality=90)
    mask = load_mask(path, SceneGrid.plain(H, W))
    assert "lossy" in joined(mask)
    assert mask.values[16, 24] == 1 and mask.values[0, 0] == 0


def test_empty_and_full_masks_are_not_errors(tmp_path):
    empty = load_mask(png(tmp_path / "black.png", np.zeros((H, W), np.uint8)), SceneGrid.plain(H, W))
    assert empty.empty and not empty.values.any() and "returns the source unchanged" in joined(empty)
    full = load_mask(png(tmp_path / "white.png", np.full((H, W), 255, np.uint8)), SceneGrid.plain(H, W))
    assert full.full and "whole scene" in joined(full)
    # Feathering a full mask keeps it full: the scene's border is not a mask edge.
    assert load_mask(tmp_path / "white.png", SceneGrid.plain(H, W), feather=5).full


def test_another_size_is_refused_with_the_size_needed_unless_resized(tmp_path):
    array = np.zeros((20, 30), np.uint8)
    array[:10, :15] = 255
    path = png(tmp_path / "small.png", array)
    with pytest.raises(InputError, match=r"30x20 px but the scene is 53x37 px.*53x37 px.*resize=True"):
        load_mask(path, SceneGrid.plain(H, W))
    mask = load_mask(path, SceneGrid.plain(40, 60), resize=True)
    assert mask.values.shape == (40, 60)
    np.testing.assert_array_equal(mask.values, expected(slice(0, 20), slice(0, 30), (40, 60)))
    assert "resized to the scene's 60x40 px (nearest neighbour)" in joined(mask)
    rotated = png(tmp_path / "rotated.png", np.zeros((W, H), np.uint8))
    with pytest.raises(InputError, match="turned by 90 degrees"):
        load_mask(rotated, SceneGrid.plain(H, W))


# --------------------------------------------------------------------------------------------------
# GeoTIFF masks


def test_geotiff_mask_on_the_same_grid(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[2:7, 30:50] = 1
    mask = load_mask(geotiff(tmp_path / "m.tif", array), utm_grid())
    np.testing.assert_array_equal(mask.values, expected(slice(2, 7), slice(30, 50)))
    assert "reproject" not in joined(mask)


def test_geotiff_mask_on_a_shifted_grid_is_resampled_onto_the_scene(tmp_path):
    # The mask raster starts 3 columns east and 2 rows south of the scene and is 10 x 10 px.
    array = np.zeros((10, 10), np.uint8)
    array[1:4, 2:6] = 255
    path = geotiff(tmp_path / "shift.tif", array, transform=from_origin(ORIGIN[0] + 30, ORIGIN[1] - 20, 10, 10))
    mask = load_mask(path, utm_grid())
    np.testing.assert_array_equal(mask.values, expected(slice(3, 6), slice(5, 9)))
    assert "reprojected onto the scene's grid" in joined(mask)
    assert f"{H * W - 100:,} px of the scene are outside the mask raster" in joined(mask)


def test_geotiff_mask_in_another_crs_is_reprojected_nearest(tmp_path):
    # A lon/lat mask raster covering the scene at ~1 m, white over a UTM rectangle of pixels 10..29.
    scene = utm_grid()
    xs, ys = [ORIGIN[0] - 100, ORIGIN[0] + W * 10 + 100], [ORIGIN[1] + 100, ORIGIN[1] - H * 10 - 100]
    lons, lats = transform_points(UTM, "EPSG:4326", [xs[0], xs[1], xs[0], xs[1]], [ys[0], ys[0], ys[1], ys[1]])
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    size = 800
    transform = rasterio.transform.from_bounds(west, south, east, north, size, size)
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    lon, lat = rasterio.transform.xy(transform, rows.ravel() - 0.5, cols.ravel() - 0.5)
    ex, ny = transform_points("EPSG:4326", UTM, lon, lat)
    ex, ny = np.asarray(ex).reshape(size, size), np.asarray(ny).reshape(size, size)
    inside = (ex > ORIGIN[0] + 100) & (ex < ORIGIN[0] + 300) & (ny < ORIGIN[1] - 100) & (ny > ORIGIN[1] - 300)
    path = geotiff(tmp_path / "ll.tif", (inside * 255).astype(np.uint8), crs="EPSG:4326", transform=transform)
    mask = load_mask(path, scene)
    np.testing.assert_array_equal(mask.values, expected(slice(10, 30), slice(10, 30)))
    assert "reprojected from EPSG:4326" in joined(mask)


def test_geotiff_mask_nodata_is_kept(tmp_path):
    array = np.full((H, W), 255, np.uint8)
    array[:, :10] = 7  # nodata
    mask = load_mask(geotiff(tmp_path / "nd.tif", array, nodata=7), utm_grid())
    np.testing.assert_array_equal(mask.values, expected(slice(0, H), slice(10, W)))
    assert f"{H * 10:,} px of the mask are nodata" in joined(mask)


def test_geotiff_mask_outside_the_scene_names_both_bounds(tmp_path):
    path = geotiff(tmp_path / "far.tif", np.ones((5, 5), np.uint8), transform=from_origin(600000, 4000000, 10, 10))
    with pytest.raises(InputError, match=r"does not overlap the scene.*x 500000.0..500530.0.*x 600000.0..600050.0"):
        load_mask(path, utm_grid())


def test_geotiff_masks_with_several_bands_are_refused(tmp_path):
    path = geotiff(tmp_path / "two.tif", np.zeros((2, H, W), np.uint8))
    with pytest.raises(InputError, match=r"has 2 bands.*gdal_translate -b 1"):
        load_mask(path, utm_grid())


def test_scene_grid_from_a_read_geotiff(tmp_path):
    from rsedit_core.raster import read_raster

    scene = geotiff(tmp_path / "scene.tif", np.random.default_rng(0).integers(0, 255, (3, H, W), dtype=np.uint8))
    grid = SceneGrid.from_geo(read_raster(scene).geo)
    assert (grid.height, grid.width) == (H, W) and grid.georeferenced
    assert grid.transform == tuple(from_origin(*ORIGIN, 10, 10))[:6]
    assert "EPSG:32633" in grid.describe()
    mask = mask_from_geojson(pixel_box(1, 2, 3, 5), grid, crs=UTM)
    np.testing.assert_array_equal(mask.values, expected(slice(2, 5), slice(1, 3)))


def test_scene_grid_from_gcps_fits_a_transform_with_a_note():
    from types import SimpleNamespace

    x0, y0 = ORIGIN
    gcps = (
        (0, 0, x0, y0, 0),
        (0, W, x0 + 10 * W, y0, 0),
        (H, 0, x0, y0 - 10 * H, 0),
        (H, W, x0 + 10 * W, y0 - 10 * H, 0),
    )
    geo = SimpleNamespace(
        height=H, width=W, crs=None, transform=None, gcps=gcps, gcps_crs=CRS.from_string(UTM).to_wkt()
    )
    grid = SceneGrid.from_geo(geo)
    assert grid.georeferenced and np.allclose(grid.transform, utm_grid().transform)
    mask = mask_from_geojson(pixel_box(2, 2, 4, 4), geo, crs=UTM)  # a GeoInfo is taken as the grid too
    np.testing.assert_array_equal(mask.values, expected(slice(2, 4), slice(2, 4)))
    assert "ground control points" in joined(mask)


def test_scene_grids_are_checked():
    with pytest.raises(InputError, match="height must be a whole number"):
        SceneGrid.plain(0, 5)
    with pytest.raises(InputError, match="SceneGrid"):
        load_mask("m.png", (H, W))


# --------------------------------------------------------------------------------------------------
# Vector masks


def test_geojson_in_lon_lat_without_crs_against_hand_computed_pixels(tmp_path):
    # On UTM 33N, (15 E, 0 N) is exactly (E 500000, N 0). Near it, 0.00018 deg of longitude is
    # 0.9996 * 6378137 m * 0.00018 * pi / 180 = 20.03 m and 0.00018 deg of latitude 19.90 m.
    # Scene: 10 m pixels from (E 499950, N 50): pixel centres at E 499955 + 10 c, N 45 - 10 r.
    # Inside |dE| <= 20.03, |dN| <= 19.90: E 499985..500015 -> cols 3..6; N 15..-15 -> rows 3..6.
    d = 0.00018
    path = write_json(tmp_path / "p.geojson", collection(rectangle(15 - d, -d, 15 + d, d)))
    grid = utm_grid(10, 10, origin=(499950.0, 50.0))
    mask = load_mask(path, grid)
    np.testing.assert_array_equal(mask.values, expected(slice(3, 7), slice(3, 7), (10, 10)))
    assert 'no "crs" member: read as EPSG:4326 (longitude, latitude), as RFC 7946 says' in joined(mask)
    assert "reprojected from EPSG:4326 to the scene's EPSG:32633" in joined(mask)


def test_geojson_in_lon_lat_matches_the_utm_pixels_it_was_made_from(tmp_path):
    xs = [ORIGIN[0] + 100, ORIGIN[0] + 300, ORIGIN[0] + 300, ORIGIN[0] + 100]
    ys = [ORIGIN[1] - 50, ORIGIN[1] - 50, ORIGIN[1] - 250, ORIGIN[1] - 250]
    lons, lats = transform_points(UTM, "EPSG:4326", xs, ys)
    ring = [[lon, lat] for lon, lat in zip(lons, lats, strict=True)]
    path = write_json(tmp_path / "p.json", {"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    mask = load_mask(path, utm_grid())
    np.testing.assert_array_equal(mask.values, expected(slice(5, 25), slice(10, 30)))


@pytest.mark.parametrize("name", ["EPSG:32633", "urn:ogc:def:crs:EPSG::32633"])
def test_polygon_in_the_scene_crs_with_a_hole(tmp_path, name):
    outer = pixel_box(10, 5, 30, 25)["coordinates"][0]
    hole = pixel_box(15, 10, 20, 15)["coordinates"][0]
    path = write_json(tmp_path / "p.geojson", collection({"type": "Polygon", "coordinates": [outer, hole]}, crs=name))
    mask = load_mask(path, utm_grid())
    want = expected(slice(5, 25), slice(10, 30))
    want[10:15, 15:20] = 0
    np.testing.assert_array_equal(mask.values, want)
    assert "reprojected" not in joined(mask) and "RFC 7946" not in joined(mask)


def test_polygons_reaching_beyond_the_scene_are_cut_with_a_note(tmp_path):
    path = write_json(tmp_path / "p.geojson", collection(pixel_box(-5, -5, 4, 3), crs=UTM))
    mask = load_mask(path, utm_grid())
    np.testing.assert_array_equal(mask.values, expected(slice(0, 3), slice(0, 4)))
    assert "beyond the scene" in joined(mask)


def test_geopackage_and_shapefile_polygons(tmp_path):
    ring = box_ring(ORIGIN[0] + 20, ORIGIN[1] - 30, ORIGIN[0] + 80, ORIGIN[1] - 90)
    want = expected(slice(3, 9), slice(2, 8))
    gpkg = write_ogr(tmp_path / "m.gpkg", [wkb_polygon(ring)], UTM, "GPKG")
    np.testing.assert_array_equal(load_mask(gpkg, utm_grid()).values, want)
    shp = write_ogr(tmp_path / "m.shp", [wkb_polygon(ring)], UTM, "ESRI Shapefile")
    np.testing.assert_array_equal(load_mask(shp, utm_grid()).values, want)
    # In lon/lat: reprojected like GeoJSON.
    lons, lats = transform_points(UTM, "EPSG:4326", [x for x, _ in ring], [y for _, y in ring])
    lonlat = write_ogr(tmp_path / "ll.gpkg", [wkb_polygon(list(zip(lons, lats, strict=True)))], "EPSG:4326", "GPKG")
    mask = load_mask(lonlat, utm_grid())
    np.testing.assert_array_equal(mask.values, want)
    assert "reprojected from EPSG:4326" in joined(mask)


def test_zipped_shapefiles_and_geopackages_with_several_layers(tmp_path):
    import zipfile

    ring = box_ring(ORIGIN[0], ORIGIN[1] - 20, ORIGIN[0] + 30, ORIGIN[1])
    write_ogr(tmp_path / "m.shp", [wkb_polygon(ring)], UTM, "ESRI Shapefile")
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as archive:
        for suffix in (".shp", ".shx", ".dbf", ".prj"):
            archive.write(tmp_path / f"m{suffix}", f"m{suffix}")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.zip", utm_grid()).values, expected(slice(0, 2), slice(0, 3)))
    pyogrio = pytest.importorskip("pyogrio")
    gpkg = write_ogr(tmp_path / "two.gpkg", [wkb_polygon(ring)], UTM, "GPKG")
    pyogrio.raw.write(
        str(gpkg),
        np.array([wkb_polygon(ring)], dtype=object),
        [],
        [],
        layer="roads",
        geometry_type="Polygon",
        crs=UTM,
        driver="GPKG",
    )
    with pytest.raises(InputError, match=r"has 2 layers with geometries \(two, roads\).*ogr2ogr"):
        load_mask(gpkg, utm_grid())


def test_vector_files_without_a_crs_are_refused(tmp_path):
    shp = write_ogr(tmp_path / "m.shp", [wkb_polygon(box_ring(0, 0, 1, 1))], UTM, "ESRI Shapefile")
    (tmp_path / "m.prj").unlink()
    with pytest.raises(InputError, match=r"has no CRS.*\.prj"):
        load_mask(shp, utm_grid())


def test_vector_masks_need_a_georeferenced_scene(tmp_path):
    path = write_json(tmp_path / "p.geojson", collection(pixel_box(1, 1, 3, 3), crs=UTM))
    with pytest.raises(InputError, match=r"need a georeferenced scene.*GeoTIFF.*image on the scene's pixel grid"):
        load_mask(path, SceneGrid.plain(H, W))


def test_polygons_outside_the_scene_name_both_bounds(tmp_path):
    path = write_json(tmp_path / "far.geojson", collection(rectangle(700000, 100, 700100, 200), crs=UTM))
    with pytest.raises(InputError) as info:
        load_mask(path, utm_grid())
    message = str(info.value)
    assert "entirely outside the scene" in message
    assert "x 500000.0..500530.0, y 3999630.0..4000000.0" in message
    assert "x 700000.0..700100.0, y 100..200" in message


def test_lon_lat_polygons_outside_the_scene_say_the_crs_was_assumed(tmp_path):
    path = write_json(tmp_path / "far.geojson", collection(rectangle(20, 10, 20.01, 10.01)))
    with pytest.raises(InputError, match=r"entirely outside.*read as EPSG:4326, since the file has no \"crs\" member"):
        load_mask(path, utm_grid())


def test_swapped_lat_lon_gets_a_hint(tmp_path):
    lons, lats = transform_points(UTM, "EPSG:4326", [ORIGIN[0] + 100, ORIGIN[0] + 200], [ORIGIN[1] - 100] * 2)
    lon0, lon1, lat = lons[0], lons[1], lats[0]
    swapped = rectangle(lat - 0.0005, lon0, lat + 0.0005, lon1)  # (lat, lon) pairs
    with pytest.raises(InputError, match="swapped"):
        load_mask(write_json(tmp_path / "s.geojson", swapped), utm_grid())


def test_projected_coordinates_without_a_crs_member_are_explained(tmp_path):
    path = write_json(tmp_path / "p.geojson", collection(pixel_box(1, 1, 3, 3)))  # UTM numbers, no crs
    with pytest.raises(InputError, match=r"not longitudes and latitudes.*no \"crs\" member.*EPSG:4326"):
        load_mask(path, utm_grid())


def test_unknown_crs_is_refused(tmp_path):
    path = write_json(tmp_path / "p.geojson", collection(pixel_box(1, 1, 3, 3), crs="EPSG:999999"))
    with pytest.raises(InputError, match=r"Unknown CRS 'EPSG:999999'.*EPSG:NNNN"):
        load_mask(path, utm_grid())
    linked = collection(pixel_box(1, 1, 3, 3))
    linked["crs"] = {"type": "link", "properties": {"href": "http://example.com/crs"}}
    with pytest.raises(InputError, match="Unknown CRS.*link"):
        load_mask(write_json(tmp_path / "l.geojson", linked), utm_grid())


def test_empty_polygon_files_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"holds no polygons \(no features\)"):
        load_mask(write_json(tmp_path / "e.geojson", collection()), utm_grid())
    nulls = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None, "properties": {}}]}
    with pytest.raises(InputError, match="1 features, none with a geometry"):
        load_mask(write_json(tmp_path / "n.geojson", nulls), utm_grid())


def test_points_and_lines_are_refused_with_the_fix(tmp_path):
    point = {"type": "Point", "coordinates": [ORIGIN[0] + 5, ORIGIN[1] - 5]}
    path = write_json(tmp_path / "pt.geojson", collection(pixel_box(1, 1, 3, 3), point, crs=UTM))
    with pytest.raises(InputError, match=r"feature 1 is a Point.*Buffer"):
        load_mask(path, utm_grid())


def test_polygons_thinner_than_a_pixel_give_an_empty_mask_with_a_note(tmp_path):
    sliver = rectangle(ORIGIN[0] + 1, ORIGIN[1] - 1, ORIGIN[0] + 3, ORIGIN[1] - 3)
    mask = load_mask(write_json(tmp_path / "s.geojson", collection(sliver, crs=UTM)), utm_grid())
    assert mask.empty and "cover no pixel centre" in joined(mask) and "returns the source unchanged" in joined(mask)


# --------------------------------------------------------------------------------------------------
# Files that are not masks


def test_files_that_are_not_masks(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"not an image, a raster or a vector file.*GeoJSON"):
        load_mask(text, SceneGrid.plain(H, W))
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    with pytest.raises(InputError, match="named .png but its contents are not that format"):
        load_mask(fake, SceneGrid.plain(H, W))
    with pytest.raises(InputError, match="does not exist"):
        load_mask(tmp_path / "missing.png", SceneGrid.plain(H, W))
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_mask(tmp_path / "zero.png", SceneGrid.plain(H, W))
    with pytest.raises(InputError, match="folder"):
        load_mask(tmp_path, SceneGrid.plain(H, W))
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "Polygon", ')
    with pytest.raises(InputError, match="not valid JSON.*line 1"):
        load_mask(broken, utm_grid())
    regions = write_json(tmp_path / "regions.json", [{"mask": "a.png", "instruction": "x"}])
    with pytest.raises(InputError, match="regions file"):
        load_mask(regions, utm_grid())


def test_mask_options_are_checked(tmp_path):
    path = png(tmp_path / "m.png", np.zeros((H, W), np.uint8))
    for options, words in (
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"grow": -1}, "grow"),
        ({"feather": 2.5}, "feather"),
        ({"soft": "yes"}, "soft"),
    ):
        with pytest.raises(InputError, match=words):
            load_mask(path, SceneGrid.plain(H, W), **options)


# --------------------------------------------------------------------------------------------------
# Grow and feather


def test_grow_dilates_in_the_octagonal_metric():
    values = np.zeros((21, 21), np.float32)
    values[10, 10] = 1
    grown = grow_mask(values, 4)
    assert set(np.unique(grown)) == {0.0, 1.0}
    assert grown[10, 6] == grown[10, 14] == grown[6, 10] == 1 and grown[10, 5] == 0  # 4 px along the axes
    assert grown[7, 7] == 1 and grown[6, 6] == 0  # corners cut: not a square
    assert grow_mask(values, 0).sum() == 1
    # At the border the mask grows only inwards.
    edge = np.zeros((5, 5), np.float32)
    edge[0, 0] = 1
    assert grow_mask(edge, 1).sum() == 3  # one step: the 4 neighbours (diagonals are sqrt(2) away)


def test_grow_through_load_mask(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[10:12, 10:12] = 255
    mask = load_mask(png(tmp_path / "m.png", array), SceneGrid.plain(H, W), grow=2)
    assert mask.values[8, 10] == 1 and mask.values[7, 10] == 0 and "grown by 2 px (4 -> " in joined(mask)


def test_feather_stays_inside_the_mask_and_ramps_monotonically():
    values = np.zeros((40, 60), np.float32)
    values[5:35, 10:50] = 1
    values[20:25, 0:10] = 1  # a part touching the scene's left border
    out = feather_inside(values, 4)
    assert (out[values == 0] == 0).all()  # outside: exactly 0
    assert (out <= values).all() and out.dtype == np.float32
    column = out[5:20, 30]
    assert np.all(np.diff(column) >= 0)  # monotone inward from the top edge
    np.testing.assert_allclose(column[:6], [0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert out[22, 0] > 0  # the border is not an edge
    np.testing.assert_array_equal(feather_inside(values, 0), values)
    full = np.ones((7, 9), np.float32)
    np.testing.assert_array_equal(feather_inside(full, 3), full)


def test_feather_scales_soft_masks_and_never_touches_outside(tmp_path):
    array = np.zeros((H, W), np.uint8)
    array[5:30, 5:45] = 200
    mask = load_mask(png(tmp_path / "soft.png", array), SceneGrid.plain(H, W), soft=True, feather=3)
    assert (mask.values[array == 0] == 0).all()
    assert mask.values.max() == pytest.approx(200 / 255)
    assert mask.values[5, 20] == pytest.approx(200 / 255 / 4)
    assert "feathered 3 px inside" in joined(mask)


# --------------------------------------------------------------------------------------------------
# Regions


def two_regions(tmp_path) -> Path:
    east = np.zeros((H, W), np.uint8)
    east[:, 20:] = 255
    (tmp_path / "masks").mkdir()
    png(tmp_path / "masks" / "east.png", east)
    items = [
        {"mask": "masks/east.png", "instruction": "flood the eastern blocks"},
        {"mask": pixel_box(10, 5, 30, 15), "crs": UTM, "instruction": "burn the fields"},
    ]
    return write_json(tmp_path / "regions.json", items)


def test_two_regions_later_wins_on_overlap(tmp_path):
    regions = load_regions(two_regions(tmp_path), utm_grid())
    assert [r.instruction for r in regions] == ["flood the eastern blocks", "burn the fields"]
    np.testing.assert_array_equal(regions[0].values, expected(slice(0, H), slice(20, W)))
    np.testing.assert_array_equal(regions[1].values, expected(slice(5, 15), slice(10, 30)))
    overlap = "regions 1 and 2 overlap on 100 px"
    assert any(overlap in n and "region 2, wins" in n for n in regions[0].notes)
    assert any(overlap in n for n in regions[1].notes)
    first, second = overlap_weights([r.values for r in regions])
    assert (first[5:15, 20:30] == 0).all() and (second[5:15, 20:30] == 1).all()
    assert (first + second).max() == 1 and first.sum() == regions[0].values.sum() - 100


def test_overlap_weights_with_a_feathered_later_region_never_sum_above_one():
    a = np.zeros((20, 20), np.float32)
    a[:, :12] = 1
    b = feather_inside(np.pad(np.ones((10, 10), np.float32), 5), 3)
    wa, wb = overlap_weights([a, b])
    np.testing.assert_array_equal(wb, b)
    assert (wa + wb <= 1 + 1e-6).all()
    assert np.allclose((wa + wb)[a > 0], 1)  # no dip where the later region's edge ramps over the earlier


def test_regions_from_a_feature_collection_with_instructions(tmp_path):
    features = collection(pixel_box(0, 0, 5, 5), crs=UTM, instruction="flood")
    features["features"].append(
        {"type": "Feature", "geometry": pixel_box(10, 10, 12, 12), "properties": {"instruction": "burn"}}
    )
    regions = load_regions(write_json(tmp_path / "fc.geojson", features), utm_grid(), feather=1)
    assert [r.instruction for r in regions] == ["flood", "burn"]
    assert regions[1].values[10, 10] == 0.5 and (regions[1].values > 0).sum() == 4


def test_regions_from_lon_lat_features_say_the_crs_was_assumed(tmp_path):
    lons, lats = transform_points(UTM, "EPSG:4326", [ORIGIN[0] + 100, ORIGIN[0] + 300], [ORIGIN[1] - 100] * 2)
    lons2, lats2 = transform_points(UTM, "EPSG:4326", [ORIGIN[0] + 100], [ORIGIN[1] - 300])
    ring = rectangle(lons[0], lats[0], lons[1], lats2[0])
    fc = collection(ring, instruction="flood")
    regions = load_regions(write_json(tmp_path / "fc.json", fc), utm_grid())
    assert any("read as EPSG:4326" in n for n in regions[0].notes)


def test_regions_from_a_geopackage(tmp_path):
    wkbs = [wkb_polygon(box_ring(ORIGIN[0], ORIGIN[1] - 50, ORIGIN[0] + 50, ORIGIN[1]))]
    gpkg = write_ogr(tmp_path / "r.gpkg", wkbs, UTM, "GPKG", instructions=["flood the corner"])
    regions = load_regions(gpkg, utm_grid())
    assert regions[0].instruction == "flood the corner"
    np.testing.assert_array_equal(regions[0].values, expected(slice(0, 5), slice(0, 5)))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ([], "is empty: it lists no region"),
        ({"mask": "a.png", "instruction": "x"}, "holds a JSON dict, not a list"),
        (collection(), "is empty"),
        (["a.png"], r"Item 0 \(region 1 of 1\).*is a string, not an object"),
        ([{"instruction": "flood"}], r"Item 0 .*has no 'mask'"),
        (
            [{"mask": "m.png", "instruction": "ok"}, {"mask": "m.png"}],
            r"Item 1 \(region 2 of 2\).*has no 'instruction'",
        ),
        ([{"mask": "m.png", "instruction": 3}], r"instruction is a number \(3\), not text"),
        ([{"mask": "m.png", "instruction": "  "}], "instruction is empty"),
        ([{"mask": 5, "instruction": "x"}], r"must be a path .* or an inline GeoJSON geometry"),
        ([{"mask": "black.png", "instruction": "flood"}], r"Item 0 .*'flood'.*mask is empty.*remove the item"),
        ([{"mask": "nope.png", "instruction": "flood"}], r"Item 0 .*No mask at .*nope.png"),
        (collection(pixel_box(0, 0, 2, 2), crs=UTM), r"has no 'instruction'.*\"instruction\" property"),
    ],
)
def test_bad_regions_files(tmp_path, content, words):
    png(tmp_path / "m.png", np.full((H, W), 255, np.uint8))
    png(tmp_path / "black.png", np.zeros((H, W), np.uint8))
    with pytest.raises(InputError, match=words):
        load_regions(write_json(tmp_path / "regions.json", content), utm_grid())


def test_a_region_covered_wholly_by_later_ones_is_refused(tmp_path):
    items = [
        {"mask": pixel_box(2, 2, 4, 4), "crs": UTM, "instruction": "small"},
        {"mask": pixel_box(0, 0, 10, 10), "crs": UTM, "instruction": "large"},
    ]
    with pytest.raises(InputError, match=r"Region 1 .*'small'.*covered wholly by later regions.*Put it after"):
        load_regions(write_json(tmp_path / "regions.json", items), utm_grid())
    regions = load_regions(write_json(tmp_path / "fine.json", items[::-1]), utm_grid())
    assert [r.instruction for r in regions] == ["large", "small"]


def test_unknown_region_keys_are_noted(tmp_path):
    items = [{"mask": pixel_box(0, 0, 3, 3), "crs": UTM, "instruction": "flood", "strength": 2}]
    regions = load_regions(write_json(tmp_path / "regions.json", items), utm_grid())
    assert any("strength" in n and "not used" in n for n in regions[0].notes)


# --------------------------------------------------------------------------------------------------
# Structure


def test_importing_masks_loads_nothing_heavy():
    code = (
        "import sys, rsedit_core.masks\n"
        "print(sorted(m for m in ('numpy', 'torch', 'PIL', 'rasterio', 'pyogrio') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
