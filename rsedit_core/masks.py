"""Mask and region inputs: where an edit may change the scene, read onto the scene's pixel grid.

A mask is float32 ``[H, W]`` in ``0..1`` on the scene's grid (:class:`SceneGrid`): 1 = edit, 0 = keep
the source exactly, values between = soft weights. :func:`load_mask` reads it from

- an **image** (PNG, JPEG, BMP, WebP, GIF; white = edit), on the scene's pixel grid. Colour images
  are read by their luminance (``0.299 R + 0.587 G + 0.114 B``, as PIL's ``L``); an image with an
  alpha channel that holds transparent pixels is read by its **alpha** instead (opaque = edit: a
  drawing on a transparent background), and a note says which. 8-bit levels are ``/255``, 16-bit
  ``/65535``; a file that holds only 0 and 1 (a label mask) is read as 0 = keep, 1 = edit.
- a **raster** (TIFF/GeoTIFF, one band, or RGB/RGBA read as images are). A GeoTIFF mask whose CRS or
  transform differs from the scene's is reprojected onto the scene's grid with
  ``rasterio.warp.reproject`` (nearest); scene pixels it does not cover, and its nodata, are kept (0).
- **polygons**: GeoJSON (``.geojson``/``.json``, read with :mod:`json`), GeoPackage (``.gpkg``) and
  shapefiles (``.shp``, or a ``.zip`` holding one), read with `pyogrio <https://pyogrio.readthedocs.io>`_
  (its wheels bundle GDAL/OGR; rasterio has no vector reader), reprojected from their CRS to the
  scene's with ``rasterio.warp.transform_geom`` and burnt with ``rasterio.features.rasterize``
  (``all_touched=False``: a pixel is inside when its centre is). A GeoJSON without a ``crs`` member
  is EPSG:4326 (longitude, latitude), as RFC 7946 says; a note says it was assumed. Polygons need a
  georeferenced scene.

Grey levels (anti-aliased edges, JPEG noise) are thresholded at ``threshold`` (0.5: ``>=`` edits) by
default, and counted in a note; ``soft=True`` keeps them as soft weights instead. ``grow`` dilates
the mask by that many pixels, then ``feather`` ramps its edge *inside* it (:func:`feather_inside`):
pixels outside the mask stay exactly 0, so the pixel composite leaves them bit for bit the source.
Both measure distance in the octagonal metric (alternating 3x3 square and 4-neighbour cross steps,
each a separable max/min filter in numpy; within 8% of Euclidean and never square-cornered like a
plain separable box); the scene's border does not count as a mask edge.

:func:`load_regions` reads ``--regions FILE.json``: a JSON list of ``{"mask": PATH or inline GeoJSON,
"instruction": TEXT}`` (paths relative to the JSON file; an optional ``"crs"`` for inline
geometries), or a GeoJSON FeatureCollection (or a GeoPackage/shapefile) whose features carry an
``instruction`` property. **Where regions overlap, the later one wins** (like layers painted in
order: a broad region first, details over it), and each region's notes say by how many pixels they
overlap; :func:`overlap_weights` applies the rule (``w_i = v_i * (1 - max_{j > i} v_j)``, which
:func:`rsedit_core.masked.exclusive` does to tensors). ``Region.values`` is each region's own mask,
before the rule. A region that would edit nothing, because its mask is empty or later regions cover
it wholly, is **refused**: dropping it would silently lose its instruction.

Bad input raises an :class:`~rsedit_core.errors.InputError` that says what is wrong and how to fix it.
This module may be imported by the CLI parser: numpy, PIL, rasterio and pyogrio load inside functions.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, require
from .limits import max_image_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
RASTER_SUFFIXES = (".tif", ".tiff")
GEOJSON_SUFFIXES = (".geojson", ".json")
OGR_SUFFIXES = (".gpkg", ".shp", ".zip")
MASK_SUFFIXES = IMAGE_SUFFIXES + RASTER_SUFFIXES + GEOJSON_SUFFIXES + OGR_SUFFIXES
DEFAULT_THRESHOLD = 0.5
#: The CRS a GeoJSON without a ``crs`` member is in (RFC 7946, section 4).
GEOJSON_CRS = "EPSG:4326"
MASK_KINDS_HELP = (
    "a PNG/JPEG/TIFF image (white = edit, black = keep), a single-band GeoTIFF, or polygons as "
    "GeoJSON (.geojson/.json), GeoPackage (.gpkg) or shapefile (.shp)"
)
_POLYGONAL = ("Polygon", "MultiPolygon")
_GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", *_POLYGONAL, "GeometryCollection")
_REGION_KEYS = ("mask", "instruction", "crs")
_INSTRUCTION_FIELDS = ("instruction", "instructio")  # shapefile field names stop at 10 characters


# --------------------------------------------------------------------------------------------------
# The scene's grid and the results


@dataclass(frozen=True)
class SceneGrid:
    """The pixel grid a mask must land on: its size and, for a georeferenced scene, CRS and transform.

    ``crs`` is WKT (or any string rasterio reads, e.g. ``EPSG:32633``); ``transform`` the affine
    ``(a, b, c, d, e, f)`` from pixel (col, row) to CRS coordinates, as ``GeoInfo.transform``.
    ``note`` says how an approximate georeference was made (a scene placed by GCPs).
    """

    height: int
    width: int
    crs: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    note: str | None = None

    def __post_init__(self):
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"A scene grid's {name} must be a whole number of pixels >= 1; got {value!r}.")
        if self.transform is not None and len(tuple(self.transform)) != 6:
            raise InputError(
                f"A scene grid's transform must be the 6 affine terms (a, b, c, d, e, f); got {self.transform!r}."
            )

    @classmethod
    def plain(cls, height: int, width: int) -> SceneGrid:
        """The grid of an image without georeference (a PNG scene): masks must match its size."""
        return cls(int(height), int(width))

    @classmethod
    def from_geo(cls, geo) -> SceneGrid:
        """The grid of a raster read by :mod:`rsedit_core.raster` (its ``GeoInfo``). A scene placed by
        ground control points only gets the affine transform fitted to them, with a note."""
        transform = tuple(float(v) for v in geo.transform) if geo.transform is not None else None
        crs, note = geo.crs, None
        gcps = tuple(getattr(geo, "gcps", ()) or ())
        if transform is None and gcps and getattr(geo, "gcps_crs", None):
            from rasterio.control import GroundControlPoint
            from rasterio.transform import from_gcps

            fitted = from_gcps([GroundControlPoint(row, col, x, y, z) for row, col, x, y, z in gcps])
            transform, crs = tuple(fitted)[:6], geo.gcps_crs
            note = (
                f"the scene is placed by {len(gcps)} ground control points, not a transform: polygons were "
                "rasterised with the affine transform fitted to them (off where the GCPs are not affine)"
            )
        return cls(int(geo.height), int(geo.width), crs, transform, note)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def bounds(self) -> tuple[float, float, float, float] | None:
        """``(xmin, ymin, xmax, ymax)`` of the scene in its CRS (``None`` without a transform)."""
        if self.transform is None:
            return None
        a, b, c, d, e, f = self.transform
        xs, ys = [], []
        for col, row in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height)):
            xs.append(a * col + b * row + c)
            ys.append(d * col + e * row + f)
        return min(xs), min(ys), max(xs), max(ys)

    def describe(self) -> str:
        where = f", {_crs_label(_parse_crs(self.crs, 'the scene'))}" if self.georeferenced else ", no georeference"
        return f"{self.width}x{self.height} px{where}"


@dataclass(eq=False)
class Mask:
    """A mask on the scene's grid: ``values`` float32 ``[H, W]`` in ``0..1`` (1 = edit) and notes."""

    values: Any
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def empty(self) -> bool:
        """Nothing to edit: the edit returns the source unchanged."""
        return not bool((self.values > 0).any())

    @property
    def full(self) -> bool:
        """Every pixel fully edited: the same as an edit without a mask."""
        return bool((self.values >= 1).all())

    @property
    def coverage(self) -> float:
        """The share of the scene's pixels the mask touches (values above 0)."""
        return float((self.values > 0).mean())


@dataclass(eq=False)
class Region:
    """One (mask, instruction) pair of a per-region edit. ``values`` is the region's own mask, before
    the overlap rule (:func:`overlap_weights`: the later region wins)."""

    values: Any
    instruction: str
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def coverage(self) -> float:
        return float((self.values > 0).mean())


# --------------------------------------------------------------------------------------------------
# load_mask


def load_mask(
    path: str | os.PathLike,
    grid,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    soft: bool = False,
    grow: int = 0,
    feather: int = 0,
    resize: bool = False,
    max_pixels: int | None = None,
) -> Mask:
    """Read the mask at ``path`` onto ``grid`` (a :class:`SceneGrid`, or a raster's ``GeoInfo``).

    See the module docstring for the sources and rules. ``threshold`` (``0 < t <= 1``) splits grey
    levels into keep and edit unless ``soft``; ``grow`` and ``feather`` are in pixels; ``resize``
    stretches an image mask of another size onto the grid (nearest) instead of refusing it. An empty
    mask is returned with a note (the edit then returns the source), not refused.
    """
    grid = _as_grid(grid)
    options = _check_options(threshold, soft, grow, feather, resize)
    path = Path(path).expanduser()
    _check_file(path)
    kind = _kind(path)
    notes: list[str] = []
    if kind == "vector":
        layer = _read_vector_file(path)
        values = _rasterise(layer, grid, notes)
    else:
        values = _read_raster_mask(path, kind, grid, resize, max_image_pixels(max_pixels), notes)
    return _finish(values, str(path), options, notes)


def mask_from_geojson(
    geojson: dict,
    grid,
    *,
    crs: str | None = None,
    where: str = "the inline geometry",
    grow: int = 0,
    feather: int = 0,
) -> Mask:
    """A mask from a GeoJSON geometry, Feature or FeatureCollection held in memory (an inline region).

    ``crs`` (e.g. ``EPSG:32633``) wins over the object's own ``crs`` member; without either it is
    EPSG:4326, with a note. Polygons are binary, so threshold, soft and resize do not apply.
    """
    grid = _as_grid(grid)
    options = _check_options(DEFAULT_THRESHOLD, False, grow, feather, False)
    return _mask_from_layer(_geojson_layer(geojson, where, crs), grid, options)


def _mask_from_layer(layer: _Layer, grid: SceneGrid, options: _Options) -> Mask:
    notes: list[str] = []
    values = _rasterise(layer, grid, notes)
    return _finish(values, layer.where, options, notes)


def _as_grid(grid) -> SceneGrid:
    if isinstance(grid, SceneGrid):
        return grid
    if all(hasattr(grid, name) for name in ("height", "width", "crs", "transform")):
        return SceneGrid.from_geo(grid)
    raise InputError(
        f"The mask's scene grid must be a SceneGrid (SceneGrid.plain(height, width) for an image, "
        f"SceneGrid.from_geo(geo) for a GeoTIFF) or a raster's GeoInfo; got {type(grid).__name__}."
    )


@dataclass(frozen=True)
class _Options:
    threshold: float
    soft: bool
    grow: int
    feather: int
    resize: bool


def _check_options(threshold, soft, grow, feather, resize) -> _Options:
    problems = []
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < float(threshold) <= 1:
        problems.append(f"threshold must be a number above 0 and at most 1 (default 0.5); got {threshold!r}")
    for name, value in (("grow", grow), ("feather", feather)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            problems.append(f"{name} must be a whole number of pixels >= 0 (0 = off); got {value!r}")
    for name, value in (("soft", soft), ("resize", resize)):
        if not isinstance(value, bool):
            problems.append(f"{name} must be True or False; got {value!r}")
    if problems:
        raise InputError("Mask options: " + "; ".join(problems) + ".")
    return _Options(float(threshold), soft, int(grow), int(feather), resize)


def _finish(values, where: str, options: _Options, notes: list[str]) -> Mask:
    """Threshold (or keep soft), grow, feather; add the coverage notes."""
    import numpy as np

    values = np.nan_to_num(values.astype(np.float32, copy=False), nan=0.0)
    grey = int(np.count_nonzero((values > 0) & (values < 1)))
    if grey:
        share = _share(grey, values.size)
        if options.soft:
            notes.append(
                f"{grey:,} px ({share}) of the mask are grey: kept as soft weights (edit strength = grey level)"
            )
        else:
            notes.append(
                f"{grey:,} px ({share}) of the mask are grey (between black and white, e.g. anti-aliased edges or "
                f"JPEG noise): thresholded at {options.threshold:g} (>= {options.threshold:g} edits, below keeps); "
                "to use grey levels as soft edit weights instead, ask for a soft mask (soft=True)"
            )
            values = (values >= options.threshold).astype(np.float32)
    if options.grow:
        before = int(np.count_nonzero(values))
        values = grow_mask(values, options.grow)
        if before:
            notes.append(
                f"mask grown by {options.grow} px ({before:,} -> {int(np.count_nonzero(values)):,} px to edit)"
            )
    if options.feather:
        values = feather_inside(values, options.feather)
        if values.any():
            notes.append(f"mask feathered {options.feather} px inside its edge (pixels outside it are kept exactly)")
    edited = int(np.count_nonzero(values))
    if edited == 0:
        notes.append(f"the mask {where} is empty (no pixel to edit): the edit returns the source unchanged")
    elif edited == values.size and bool((values >= 1).all()):
        notes.append("the mask covers the whole scene: the edit is the same as without a mask")
    else:
        notes.append(f"mask: {edited:,} px ({_share(edited, values.size)} of the scene) to edit")
    return Mask(np.ascontiguousarray(values, dtype=np.float32), notes, where)


def _share(part: int, whole: int) -> str:
    share = 100.0 * part / max(1, whole)
    if 0 < share < 0.1:
        return "under 0.1%"
    if 99.9 < share < 100:
        return "over 99.9%"
    return f"{share:.1f}%"


# --------------------------------------------------------------------------------------------------
# Files: what they are


def _check_file(path: Path, what: str = "mask") -> None:
    if not path.exists():
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"No {what} at {path}: the folder {folder} does not exist. Check the path.")
        relative = "" if path.is_absolute() else f" (relative paths start from {Path.cwd()})"
        raise InputError(f"No {what} at {path}: the file does not exist. Check the name{relative}.")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a {what} file: give the path of one file inside it.")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file (a device, pipe or socket); give the path of a {what} file.")
    if path.stat().st_size == 0:
        raise InputError(
            f"Cannot read {path} as a {what}: the file is empty (0 bytes), so the export or copy that made it "
            "did not finish. Export it again."
        )


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image", "PNG"),
    (b"\xff\xd8\xff", "image", "JPEG"),
    (b"GIF87a", "image", "GIF"),
    (b"GIF89a", "image", "GIF"),
    (b"BM", "image", "BMP"),
    (b"II*\x00", "raster", "TIFF"),
    (b"MM\x00*", "raster", "TIFF"),
    (b"II+\x00", "raster", "TIFF"),
    (b"MM\x00+", "raster", "TIFF"),
    (b"SQLite format 3\x00", "vector", "GeoPackage"),
    (b"\x00\x00\x27\x0a", "vector", "shapefile"),
    (b"PK\x03\x04", "vector", "zip"),
)


def _kind(path: Path) -> str:
    """``image``, ``raster`` or ``vector`` from the file's first bytes (the suffix only breaks ties)."""
    with open(path, "rb") as file:
        head = file.read(64)
    suffix = path.suffix.lower()
    for magic, kind, name in _MAGIC:
        if head.startswith(magic):
            if name == "zip" and suffix != ".zip":
                break
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "vector"
    if suffix in MASK_SUFFIXES:
        raise InputError(
            f"Cannot read {path} as a mask: it is named {suffix} but its contents are not that format (it begins "
            f"{head[:12]!r}); it may be truncated, damaged or mislabelled. Re-export it; a mask is {MASK_KINDS_HELP}."
        )
    raise InputError(
        f"Cannot read {path} as a mask: it is not an image, a raster or a vector file (extension "
        f"{suffix or '(none)'!r}, it begins {head[:12]!r}). Give {MASK_KINDS_HELP}."
    )


# --------------------------------------------------------------------------------------------------
# Image and raster masks


def _read_raster_mask(path: Path, kind: str, grid: SceneGrid, resize: bool, limit: int, notes: list[str]):
    if kind == "image":
        values = _read_image(path, grid, resize, limit, notes)
        return _fit(values, path, grid, resize, notes)
    rasterio = require("rasterio", "Reading TIFF masks", "rasterio>=1.3")
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as ds:
                _check_size(path, ds.width, ds.height, limit)
                values = _raster_values(ds, path, notes)
                mask_crs = ds.crs
                mask_transform = None if ds.transform.is_identity else ds.transform
        except InputError:
            raise
        except (RasterioError, OSError) as e:
            raise InputError(
                f"Cannot read {path} as a raster mask: GDAL says: {str(e).strip() or type(e).__name__}. It is "
                "truncated or damaged, or not a TIFF: re-export it."
            ) from e
    if mask_transform is not None and grid.transform is not None:
        if mask_crs is not None and grid.crs is not None:
            scene_crs = _parse_crs(grid.crs, "the scene")
            if mask_crs == scene_crs and _same_transform(mask_transform, grid) and values.shape == grid.shape:
                return values
            return _reproject(values, path, mask_crs, mask_transform, grid, scene_crs, notes)
        if _same_transform(mask_transform, grid) and values.shape == grid.shape:
            return values
        raise InputError(
            f"The mask {path} has a transform but "
            + ("no CRS" if mask_crs is None else "the scene has none")
            + ", and its grid differs from the scene's, so it cannot be placed on it. Assign the CRS "
            "(gdal_edit.py -a_srs EPSG:NNNN FILE), or give a mask on the scene's pixel grid."
        )
    if mask_transform is not None and mask_crs is not None:
        notes.append(f"the mask's georeference ({_crs_label(mask_crs)}) was not used: the scene has none")
    elif grid.georeferenced:
        notes.append("the mask has no georeference: it was taken to be on the scene's pixel grid")
    return _fit(values, path, grid, resize, notes)


def _check_size(path: Path, width: int, height: int, limit: int) -> None:
    if limit and width * height > limit:
        raise InputError(
            f"The mask {path} is {width}x{height} = {width * height:,} px, over the limit of {limit:,} px that guards "
            "against decompression bombs. Give a mask the size of the scene, or raise the limit (max_pixels)."
        )


def _read_image(path: Path, grid: SceneGrid, resize: bool, limit: int, notes: list[str]):
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    # The image loader's guard of PIL's globals: no pixel limit while the header is read (RSEdit checks the
    # size itself, so a Sentinel-2-sized mask is not refused by PIL's 89 Mpx default), then RSEdit's limit.
    from .images import _pil_guards

    try:
        with _pil_guards(limit) as arm:
            with Image.open(path) as opened:
                _check_size(path, opened.width, opened.height, limit)
                arm()
                if not resize:
                    width, height = opened.size
                    if opened.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                        width, height = height, width
                    _check_same_size(path, height, width, grid)
                frames = getattr(opened, "n_frames", 1)
                opened.seek(0)
                turned = opened.getexif().get(0x0112, 1) != 1
                image = ImageOps.exif_transpose(opened) if turned else opened
                image.load()
                mode = image.mode
                if mode == "P":
                    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                    mode = image.mode
                if mode in ("LA", "PA"):
                    image, mode = image.convert("RGBA"), "RGBA"
                if mode not in ("1", "L", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I", "F"):
                    image = image.convert("RGB")
                array = np.asarray(image)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(
            f"The mask {path} has more pixels than PIL's decompression-bomb guard allows ({e}). Give a mask the "
            "size of the scene."
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(
            f"Cannot read {path} as a mask image: {e}. It is truncated or damaged: re-export it as PNG."
        ) from e
    if turned:
        notes.append(f"the mask's EXIF orientation was applied ({image.width}x{image.height} upright), as for images")
    if frames and frames > 1:
        notes.append(f"{path} has {frames} frames or pages; only the first was used")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        notes.append("JPEG is lossy: its compression noise turns edges grey; a PNG mask is exact")
    if array.ndim == 3:
        rgb = array[..., :3].astype(np.int64)
        if array.shape[-1] == 4 and (array[..., 3] < 255).any():
            transparent = _share(int(np.count_nonzero(array[..., 3] < 255)), array[..., 3].size)
            notes.append(
                f"the mask image has an alpha channel with transparent pixels ({transparent}): "
                "its alpha was used (opaque = edit, transparent = keep) and its colours ignored; to use its "
                "brightness instead, save it without alpha (white = edit on black)"
            )
            return _unit_values(array[..., 3], path, notes)
        if (rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any():
            notes.append(
                "the mask image is in colour: it was read by its luminance (0.299 R + 0.587 G + 0.114 B, so pure "
                "red is 30% grey); paint the area to edit white on black to be sure"
            )
        # PIL's own integer luminance, so that white is exactly 255.
        array = ((rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000).astype(np.uint8)
    return _unit_values(array, path, notes)


def _raster_values(ds, path: Path, notes: list[str]):
    """One band of a TIFF mask in 0..1 (NaN where it has no data); RGB(A) read as images are."""
    import numpy as np

    interp = [ci.name for ci in ds.colorinterp]
    count = ds.count
    alpha = [i + 1 for i, name in enumerate(interp) if name == "alpha"]
    if count == 1:
        band = ds.read(1)
        nodata = ds.nodata
        invalid = ~ds.read_masks(1).astype(bool) if nodata is None else _equal_nodata(band, nodata)
        values = _unit_values(band, path, notes, invalid)
    elif count in (3, 4) and ds.dtypes[0] == "uint8":
        array = ds.read()  # [C, H, W]
        if count == 4 and alpha == [4] and (array[3] < 255).any():
            notes.append(
                "the mask raster has an alpha band with transparent pixels: its alpha was used (opaque = edit, "
                "transparent = keep)"
            )
            return _unit_values(array[3], path, notes)
        rgb = array[:3].astype(np.int64)
        if (rgb[0] != rgb[1]).any() or (rgb[1] != rgb[2]).any():
            notes.append("the mask raster is in colour: it was read by its luminance (0.299 R + 0.587 G + 0.114 B)")
        lum = ((rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114 + 500) // 1000).astype(np.uint8)
        values = _unit_values(lum, path, notes)
    else:
        raise InputError(
            f"The mask {path} has {count} bands ({', '.join(interp)}, {ds.dtypes[0]}); a mask has one band "
            "(or is an 8-bit RGB/RGBA image). Extract the band that marks the area to edit, e.g. "
            f"gdal_translate -b 1 {path.name} {path.stem}_mask.tif."
        )
    return values


def _equal_nodata(band, nodata: float):
    import numpy as np

    if isinstance(nodata, float) and math.isnan(nodata):
        return np.isnan(band) if band.dtype.kind == "f" else np.zeros(band.shape, bool)
    return band == nodata


def _unit_values(array, path: Path, notes: list[str], invalid=None):
    """Mask levels as float32 in 0..1, NaN where ``invalid`` (nodata) or not finite."""
    import numpy as np

    if array.dtype == bool:
        values = array.astype(np.float32)
    elif array.dtype.kind in "iu":
        valid = array if invalid is None else array[~invalid]
        low, high = (int(valid.min()), int(valid.max())) if valid.size else (0, 0)
        if low < 0:
            raise InputError(
                f"The mask {path} holds negative values (down to {low}): a mask is 0 = keep up to 1, 255 or 65535 "
                "= edit. Rescale it, or set the value that marks no data as its nodata."
            )
        if high <= 1:
            scale = 1
            if high == 1 and path.suffix.lower() not in RASTER_SUFFIXES:  # 0/1 is usual in GeoTIFFs
                notes.append("the mask holds only the values 0 and 1 (a label mask): read as 0 = keep, 1 = edit")
        elif high <= 255:
            scale = 255
            if array.dtype.itemsize > 1:
                notes.append(
                    f"the {array.dtype} mask holds values up to {high} only: read as 8-bit levels (255 = edit)"
                )
        elif high <= 65535:
            scale = 65535
        else:
            raise InputError(
                f"The mask {path} holds values up to {high}: a mask is 0 = keep up to 1, 255 or 65535 = edit. "
                "Rescale it (e.g. to 0/255 in 8 bits)."
            )
        values = array.astype(np.float32) / np.float32(scale)
    elif array.dtype.kind == "f":
        values = array.astype(np.float32)
        finite = np.isfinite(values) & (True if invalid is None else ~invalid)
        valid = values[finite]
        low, high = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise InputError(
                f"The float mask {path} spans {low:g}..{high:g}: a mask is 0..1 (1 = edit). Rescale it to 0..1."
            )
        if high > 1:
            values = values / np.float32(255)
            notes.append(f"the float mask spans {low:g}..{high:g}: read as 8-bit levels (/255)")
        invalid = ~finite
    else:
        raise InputError(f"The mask {path} has {array.dtype} pixels; give an 8- or 16-bit grey mask (white = edit).")
    if invalid is not None and invalid.any():
        values = np.where(invalid, np.float32(np.nan), values)
        notes.append(f"{int(np.count_nonzero(invalid)):,} px of the mask are nodata: kept (not edited)")
    return values


def _check_same_size(path: Path, height: int, width: int, grid: SceneGrid) -> None:
    if (height, width) == grid.shape:
        return
    hint = ""
    if (width, height) == grid.shape:
        hint = " It is the scene's size turned by 90 degrees: rotate it back."
    raise InputError(
        f"The mask {path} is {width}x{height} px but the scene is {grid.width}x{grid.height} px: a mask must be "
        f"on the scene's pixel grid, {grid.width}x{grid.height} px.{hint} Export the mask at the scene's size "
        "(e.g. draw it over the scene itself), give it as a GeoTIFF or polygons on the scene's georeference, or "
        "ask for it to be resized (resize=True: nearest neighbour)."
    )


def _fit(values, path: Path, grid: SceneGrid, resize: bool, notes: list[str]):
    """``values`` on the grid's size: as it is, or resized (nearest) when asked."""
    import numpy as np

    height, width = values.shape
    if (height, width) == grid.shape:
        return values
    if not resize:
        _check_same_size(path, height, width, grid)
    rows = np.minimum(((np.arange(grid.height) + 0.5) * height / grid.height).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(grid.width) + 0.5) * width / grid.width).astype(np.int64), width - 1)
    stretched = abs(width / height - grid.width / grid.height) > 0.01 * grid.width / grid.height
    notes.append(
        f"the mask ({width}x{height} px) was resized to the scene's {grid.width}x{grid.height} px (nearest neighbour)"
        + (": its aspect ratio differs, so it is stretched" if stretched else "")
    )
    return values[rows[:, None], cols[None, :]]


def _same_transform(transform, grid: SceneGrid) -> bool:
    a, b, c, d, e, f = tuple(transform)[:6]
    ga, gb, gc, gd, ge, gf = grid.transform
    pixel = max(abs(ga), abs(gb), abs(gd), abs(ge)) or 1.0
    scale_ok = all(abs(x - y) <= 1e-9 * pixel for x, y in ((a, ga), (b, gb), (d, gd), (e, ge)))
    return scale_ok and abs(c - gc) <= 1e-3 * pixel and abs(f - gf) <= 1e-3 * pixel


def _reproject(values, path: Path, mask_crs, mask_transform, grid: SceneGrid, scene_crs, notes: list[str]):
    import numpy as np
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    out = np.full(grid.shape, np.nan, dtype=np.float32)
    reproject(
        source=np.ascontiguousarray(values, dtype=np.float32),
        destination=out,
        src_transform=mask_transform,
        src_crs=mask_crs,
        src_nodata=np.nan,
        dst_transform=Affine(*grid.transform),
        dst_crs=scene_crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    missing = np.isnan(out)
    if missing.all():
        mask_bounds = _transform_bounds(mask_transform, values.shape, mask_crs, scene_crs)
        raise InputError(
            f"The mask raster {path} does not overlap the scene: the scene covers {_bounds_text(grid.bounds())} and "
            f"the mask {_bounds_text(mask_bounds)} in {_crs_label(scene_crs)}. Check that the mask belongs to this "
            "scene and that its CRS is right."
        )
    same = "" if mask_crs == scene_crs else f" from {_crs_label(mask_crs)}"
    notes.append(f"the mask raster was reprojected{same} onto the scene's grid ({_crs_label(scene_crs)}, nearest)")
    outside = int(np.count_nonzero(missing))
    if outside:
        notes.append(f"{outside:,} px of the scene are outside the mask raster or on its nodata: kept (not edited)")
    return out


def _transform_bounds(transform, shape, src_crs, dst_crs):
    from rasterio.warp import transform_bounds

    height, width = shape
    a, b, c, d, e, f = tuple(transform)[:6]
    xs = [a * col + b * row + c for col, row in ((0, 0), (width, 0), (0, height), (width, height))]
    ys = [d * col + e * row + f for col, row in ((0, 0), (width, 0), (0, height), (width, height))]
    try:
        return transform_bounds(src_crs, dst_crs, min(xs), min(ys), max(xs), max(ys))
    except Exception:  # bounds that do not project: name them in the mask's own CRS
        return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------------------------------
# CRS


def _parse_crs(value, where: str):
    """A rasterio CRS from WKT, ``EPSG:NNNN``, a URN or a rasterio CRS; an :class:`InputError` if unknown."""
    rasterio = require("rasterio", "Placing masks on a georeferenced scene", "rasterio>=1.3")
    from rasterio.crs import CRS

    if isinstance(value, CRS):
        return value
    try:
        with rasterio.Env():  # GDAL's errors become the exception, not a line on stderr
            return CRS.from_user_input(value)
    except Exception as e:
        text = str(value)
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InputError(
            f"Unknown CRS {shown!r} in {where}: GDAL/PROJ cannot read it ({str(e).strip() or type(e).__name__}). "
            "Give the CRS as EPSG:NNNN (e.g. EPSG:32633 for UTM zone 33N) or as WKT."
        ) from e


def _crs_label(crs) -> str:
    try:
        authority = crs.to_authority()
        if authority:
            return f"{authority[0]}:{authority[1]}"
    except Exception:  # a custom CRS: its name
        pass
    match = re.search(r'^\s*\w+\s*\[\s*"([^"]+)"', crs.to_wkt() or "")
    return match.group(1) if match else "a custom CRS"


def _bounds_text(bounds) -> str:
    if bounds is None:
        return "(unknown)"
    xmin, ymin, xmax, ymax = (f"{v:.1f}" if abs(v) >= 1e4 else f"{v:.6g}" for v in bounds)
    return f"x {xmin}..{xmax}, y {ymin}..{ymax}"


# --------------------------------------------------------------------------------------------------
# Vector masks


@dataclass
class _Layer:
    """Polygons read from a file or an inline object: ``features`` as (index, geometry, properties)."""

    where: str
    features: list[tuple[int, dict, dict]]
    crs: Any
    notes: list[str]
    assumed_crs: bool = False


def _read_vector_file(path: Path) -> _Layer:
    if path.suffix.lower() in OGR_SUFFIXES or not _looks_like_json(path):
        return _read_ogr(path)
    obj = _read_json(path, "mask")
    if isinstance(obj, list):
        raise InputError(
            f'{path} is a JSON list, not GeoJSON: it looks like a regions file ([{{"mask": ..., "instruction": '
            "...}, ...]). Pass it as the regions file (--regions), or give a GeoJSON of polygons as the mask."
        )
    return _geojson_layer(obj, str(path), None)


def _looks_like_json(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def _read_json(path: Path, what: str):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"Cannot read {path} as a {what}: it is not UTF-8 text ({e.reason}). Save it as UTF-8.") from e
    except OSError as e:
        raise InputError(f"Cannot read {path}: {e.strerror or e}. Check that the file is readable.") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. Fix the file (a JSON "
            "checker or an editor with JSON support shows where)."
        ) from e


def _geojson_crs(obj: dict, where: str):
    """The CRS named by a (2008-style) GeoJSON ``crs`` member, or ``None`` when there is none."""
    member = obj.get("crs")
    if member is None:
        return None
    if isinstance(member, str):
        return _parse_crs(member, where)
    if isinstance(member, dict):
        props = member.get("properties") or {}
        kind = str(member.get("type", "")).lower()
        if kind == "name" and isinstance(props, dict) and props.get("name"):
            return _parse_crs(str(props["name"]), where)
        if kind == "epsg" and isinstance(props, dict) and props.get("code") is not None:
            return _parse_crs(f"EPSG:{props['code']}", where)
    raise InputError(
        f'Unknown CRS in {where}: its "crs" member is {json.dumps(member)[:120]}, which RSEdit cannot read '
        '(linked CRSs are not supported). Write it as {"type": "name", "properties": {"name": "EPSG:NNNN"}}, '
        "or remove it and give the coordinates in EPSG:4326 (longitude, latitude)."
    )


def _geojson_layer(obj, where: str, crs: str | None) -> _Layer:
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise InputError(
            f'{where} is not GeoJSON: expected an object with a "type" (FeatureCollection, Feature or a geometry '
            f"such as Polygon); got {type(obj).__name__}. Export the polygons as GeoJSON."
        )
    kind = obj["type"]
    if kind == "FeatureCollection":
        items = obj.get("features")
        if not isinstance(items, list):
            raise InputError(f'{where}: a FeatureCollection needs a "features" list. Fix or re-export the file.')
        raw = items
    elif kind == "Feature":
        raw = [obj]
    elif kind in _GEOMETRY_TYPES:
        raw = [{"type": "Feature", "geometry": obj, "properties": {}}]
    else:
        raise InputError(
            f"{where} is not GeoJSON: its type is {kind!r}; expected FeatureCollection, Feature or a geometry "
            f"({', '.join(_GEOMETRY_TYPES)})."
        )
    features = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("type") != "Feature":
            raise InputError(f"{where}: feature {index} is not a GeoJSON Feature object. Fix or re-export the file.")
        props = item.get("properties") or {}
        features.append((index, item.get("geometry"), props if isinstance(props, dict) else {}))
    notes: list[str] = []
    assumed = False
    if crs is not None:
        parsed = _parse_crs(crs, where)
    else:
        parsed = _geojson_crs(obj, where)
        if parsed is None:
            parsed, assumed = _parse_crs(GEOJSON_CRS, where), True
            notes.append(
                f'{where} has no "crs" member: read as EPSG:4326 (longitude, latitude), as RFC 7946 says GeoJSON is'
            )
    return _Layer(where, features, parsed, notes, assumed)


def _read_ogr(path: Path) -> _Layer:
    pyogrio = require("pyogrio", f"Reading {path.suffix or 'vector'} masks (GeoPackage, shapefile)", "pyogrio>=0.7")
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        layers = [(str(name), kind) for name, kind in pyogrio.list_layers(path)]
        geometric = [name for name, kind in layers if kind not in (None, "None", "Unknown") or len(layers) == 1]
        if not geometric:
            raise InputError(
                f"{path} has no layer with geometries ({len(layers)} attribute tables only): it holds no polygons. "
                "Save the polygons of the area to edit into it."
            )
        if len(geometric) > 1:
            raise InputError(
                f"{path} has {len(geometric)} layers with geometries ({', '.join(geometric[:8])}): RSEdit cannot tell "
                f"which one is the mask. Save the one you mean into its own file, e.g. ogr2ogr -f GPKG "
                f"mask.gpkg {path.name} {geometric[0]}."
            )
        meta, _, geometry, field_data = pyogrio.raw.read(path, layer=geometric[0], force_2d=True)
    except InputError:
        raise
    except (DataSourceError, DataLayerError, OSError, RuntimeError, ValueError) as e:
        sidecars = ""
        if path.suffix.lower() == ".shp":
            sidecars = (
                " A shapefile needs its .shx and .dbf (and .prj for its CRS) beside the .shp, or zip them together."
            )
        raise InputError(
            f"Cannot read {path} as polygons: GDAL says: {str(e).strip() or type(e).__name__}. It is truncated, "
            f"damaged or not a GeoPackage/shapefile: re-export it.{sidecars}"
        ) from e
    where = str(path)
    crs_text = meta.get("crs")
    if not crs_text:
        fix = (
            "put its .prj file beside the .shp"
            if path.suffix.lower() == ".shp"
            else f"assign it, e.g. ogr2ogr -a_srs EPSG:NNNN fixed{path.suffix} {path.name}"
        )
        raise InputError(
            f"{path} has no CRS, so its polygons cannot be placed on the scene (unknown CRS): {fix}, or export the "
            "polygons as GeoJSON in EPSG:4326."
        )
    crs = _parse_crs(crs_text, where)
    names = [str(n) for n in meta.get("fields", [])]
    features = []
    for index, wkb in enumerate(geometry):
        props = {name: _plain(column[index]) for name, column in zip(names, field_data, strict=False)}
        geom = None if wkb is None else _wkb_to_geojson(bytes(wkb), where, index)
        features.append((index, geom, props))
    return _Layer(where, features, crs, [])


def _plain(value):
    """A numpy scalar from pyogrio as a plain Python value."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _wkb_to_geojson(data: bytes, where: str, index: int) -> dict | None:
    """A GeoJSON mapping from (ISO or extended) WKB; ``None`` for an empty geometry."""
    try:
        geometry, _ = _read_wkb(memoryview(data), 0)
    except (struct.error, ValueError, IndexError) as e:
        raise InputError(f"{where}: feature {index} has a damaged geometry ({e}). Repair or re-export the file.") from e
    return geometry


def _read_wkb(buf, pos: int):
    import numpy as np

    order = "<" if buf[pos] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", buf, pos + 1)
    pos += 5
    has_z, has_m = bool(code & 0x80000000), bool(code & 0x40000000)
    if code & 0x20000000:  # EWKB SRID
        pos += 4
    code &= 0x0FFFFFFF
    base, flavour = code % 1000, code // 1000
    dims = 2 + (has_z or flavour in (1, 3)) + (has_m or flavour in (2, 3))

    def points(count: int, at: int):
        coords = np.frombuffer(buf, dtype=order + "f8", count=count * dims, offset=at).reshape(count, dims)
        return coords[:, :2].tolist(), at + 8 * count * dims

    def count_at(at: int) -> tuple[int, int]:
        return struct.unpack_from(order + "I", buf, at)[0], at + 4

    if base == 1:
        coords, pos = points(1, pos)
        return ({"type": "Point", "coordinates": coords[0]} if not math.isnan(coords[0][0]) else None), pos
    if base == 2:
        n, pos = count_at(pos)
        coords, pos = points(n, pos)
        return {"type": "LineString", "coordinates": coords}, pos
    if base == 3:
        rings, pos = count_at(pos)
        out = []
        for _ in range(rings):
            n, pos = count_at(pos)
            coords, pos = points(n, pos)
            out.append(coords)
        return ({"type": "Polygon", "coordinates": out} if out else None), pos
    if base in (4, 5, 6, 7):
        n, pos = count_at(pos)
        parts = []
        for _ in range(n):
            part, pos = _read_wkb(buf, pos)
            if part is not None:
                parts.append(part)
        if base == 7:
            return ({"type": "GeometryCollection", "geometries": parts} if parts else None), pos
        name = {4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon"}[base]
        return ({"type": name, "coordinates": [p["coordinates"] for p in parts]} if parts else None), pos
    raise ValueError(f"geometry type {code} (curves, surfaces or TINs) is not supported")


def _polygonal(geometry: dict) -> str | None:
    """``None`` if ``geometry`` is made of polygons only; else the type that is not."""
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        for part in geometry.get("geometries") or []:
            bad = _polygonal(part) if isinstance(part, dict) else "a non-object"
            if bad:
                return bad
        return None
    return None if kind in _POLYGONAL else str(kind)


def _has_coordinates(geometry: dict) -> bool:
    if geometry.get("type") == "GeometryCollection":
        return any(isinstance(g, dict) and _has_coordinates(g) for g in geometry.get("geometries") or [])
    coords = geometry.get("coordinates")
    return isinstance(coords, list) and len(coords) > 0


def _polygons(layer: _Layer) -> list[tuple[int, dict]]:
    """The layer's polygons, checked; features without geometry are left out with a note."""
    kept, empty = [], 0
    for index, geometry, _ in layer.features:
        if geometry is None or (isinstance(geometry, dict) and not _has_coordinates(geometry)):
            empty += 1
            continue
        if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
            raise InputError(f"{layer.where}: feature {index}'s geometry is not a GeoJSON geometry object. Fix it.")
        bad = _polygonal(geometry)
        if bad:
            raise InputError(
                f"{layer.where}: feature {index} is a {bad}, but a mask is made of areas: only Polygon and "
                "MultiPolygon geometries mark pixels to edit. Buffer points and lines into polygons first (e.g. in "
                "QGIS: Vector > Geoprocessing > Buffer, or ogr2ogr -dialect sqlite -sql 'SELECT ST_Buffer(geom, 10) "
                "FROM layer'), or remove that feature."
            )
        kept.append((index, geometry))
    if not kept:
        what = f"{len(layer.features)} features, none with a geometry" if layer.features else "no features"
        raise InputError(
            f"{layer.where} holds no polygons ({what}): there is nothing to mark for editing. Draw the area to edit "
            "as polygons and save them, or check that the right file was exported."
        )
    if empty:
        layer.notes.append(f"{empty} feature(s) of {layer.where} have no geometry and were left out")
    return kept


def _coordinate_bounds(geometries: Iterable[dict]):
    import numpy as np

    arrays = []

    def walk(value):
        if isinstance(value, dict):
            if value.get("type") == "GeometryCollection":
                for part in value.get("geometries") or []:
                    walk(part)
            else:
                walk(value.get("coordinates"))
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], numbers.Real):
            arrays.append(value[:2])
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for geometry in geometries:
        walk(geometry)
    if not arrays:
        return None
    coords = np.asarray(arrays, dtype=np.float64)
    return float(coords[:, 0].min()), float(coords[:, 1].min()), float(coords[:, 0].max()), float(coords[:, 1].max())


def _overlaps(a, b) -> bool:
    return a is not None and b is not None and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _rasterise(layer: _Layer, grid: SceneGrid, notes: list[str]):
    import numpy as np

    polygons = _polygons(layer)
    notes.extend(layer.notes)
    if not grid.georeferenced:
        raise InputError(
            f"The polygons in {layer.where} need a georeferenced scene (a GeoTIFF with a CRS and a transform) to be "
            f"placed on, but the scene ({grid.width}x{grid.height} px) has no georeference. Give the scene as its "
            "GeoTIFF, or give the mask as an image on the scene's pixel grid (white = edit)."
        )
    from affine import Affine
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    scene_crs = _parse_crs(grid.crs, "the scene")
    geometries = [g for _, g in polygons]
    source_bounds = _coordinate_bounds(geometries)
    if layer.crs.is_geographic and source_bounds is not None:
        xmin, ymin, xmax, ymax = source_bounds
        if xmin < -360 or xmax > 360 or ymin < -90.5 or ymax > 90.5:
            origin = (
                'has no "crs" member, so it is read as EPSG:4326' if layer.assumed_crs else "is in a geographic CRS"
            )
            raise InputError(
                f"The coordinates in {layer.where} ({_bounds_text(source_bounds)}) are not longitudes and latitudes, "
                f"but the file {origin}. They look projected (the scene is in {_crs_label(scene_crs)}): name their "
                'CRS in the file ("crs": {"type": "name", "properties": {"name": "EPSG:NNNN"}}, or the regions '
                'item\'s "crs"), or re-export the polygons in EPSG:4326.'
            )
    if layer.crs != scene_crs:
        try:
            geometries = transform_geom(layer.crs, scene_crs, geometries)
        except Exception as e:
            raise InputError(
                f"Cannot reproject the polygons in {layer.where} from {_crs_label(layer.crs)} to the scene's "
                f"{_crs_label(scene_crs)}: {str(e).strip() or type(e).__name__}. Check their coordinates and CRS."
            ) from e
        notes.append(f"polygons reprojected from {_crs_label(layer.crs)} to the scene's {_crs_label(scene_crs)}")
    bounds, scene = _coordinate_bounds(geometries), grid.bounds()
    if not _overlaps(bounds, scene):
        hint, origin = "", f" (reprojected from {_crs_label(layer.crs)})" if layer.crs != scene_crs else ""
        if layer.assumed_crs:
            origin = ' (read as EPSG:4326, since the file has no "crs" member)'

        if layer.crs.is_geographic and source_bounds is not None:
            swapped = [_swap_axes(g) for _, g in polygons]
            try:
                flipped = transform_geom(layer.crs, scene_crs, swapped) if layer.crs != scene_crs else swapped
                if _overlaps(_coordinate_bounds(flipped), scene):
                    hint = " With longitude and latitude swapped they would fall inside: GeoJSON wants (lon, lat)."
            except Exception:  # swapped coordinates that do not project: no hint
                pass
        raise InputError(
            f"The polygons in {layer.where} lie entirely outside the scene: in {_crs_label(scene_crs)} the scene "
            f"covers {_bounds_text(scene)} and the polygons {_bounds_text(bounds)}{origin}.{hint} Check that they "
            "belong to this scene and that their CRS is right."
        )
    try:
        burnt = rasterize(
            ((g, 1) for g in geometries),
            out_shape=grid.shape,
            transform=Affine(*grid.transform),
            fill=0,
            all_touched=False,
            dtype="uint8",
        )
    except Exception as e:
        raise InputError(
            f"Cannot rasterise the polygons in {layer.where}: {str(e).strip() or type(e).__name__}. Check that "
            "their coordinates are well formed (rings of [x, y] pairs, each ring closed)."
        ) from e
    if not (bounds[0] >= scene[0] and bounds[1] >= scene[1] and bounds[2] <= scene[2] and bounds[3] <= scene[3]):
        notes.append("the polygons reach beyond the scene: only their part inside it is used")
    if grid.note:
        notes.append(grid.note)
    if not burnt.any():
        notes.append(
            f"the polygons in {layer.where} overlap the scene but cover no pixel centre (they are thinner than a "
            "pixel, or lie in the scene's corner outside its footprint)"
        )
    return burnt.astype(np.float32)


def _swap_axes(geometry: dict) -> dict:
    def swap(value):
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], numbers.Real):
            return [value[1], value[0], *value[2:]]
        return [swap(v) for v in value] if isinstance(value, (list, tuple)) else value

    if geometry.get("type") == "GeometryCollection":
        return {**geometry, "geometries": [_swap_axes(g) for g in geometry.get("geometries") or []]}
    return {**geometry, "coordinates": swap(geometry.get("coordinates"))}


# --------------------------------------------------------------------------------------------------
# Grow and feather


def _step(a, op, square: bool):
    """One 3x3 ``op`` (``np.maximum`` or ``np.minimum``) step over ``a``: the square (separable: rows
    then columns) or the 4-neighbour cross. Neighbours beyond the border are ignored, so the border
    never counts as background for an erosion and never adds for a dilation."""
    out = a.copy()
    op(out[1:], a[:-1], out=out[1:])
    op(out[:-1], a[1:], out=out[:-1])
    rows = out if square else a
    result = out.copy() if square else out
    op(result[:, 1:], rows[:, :-1], out=result[:, 1:])
    op(result[:, :-1], rows[:, 1:], out=result[:, :-1])
    return result


def _box(support, pad: int, shape):
    """Row and column slices of the bounding box of ``support`` grown by ``pad`` (clipped to ``shape``)."""
    import numpy as np

    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    top, bottom = max(0, rows[0] - pad), min(shape[0], rows[-1] + 1 + pad)
    left, right = max(0, cols[0] - pad), min(shape[1], cols[-1] + 1 + pad)
    return slice(top, bottom), slice(left, right)


def grow_mask(values, px: int):
    """``values`` ``[H, W]`` dilated by ``px`` pixels (octagonal metric; a grey dilation for soft
    masks: each pixel takes the largest value within ``px``). ``px = 0`` returns a copy."""
    import numpy as np

    values = np.asarray(values, dtype=np.float32)
    out = values.copy()
    if px <= 0 or not (values > 0).any():
        return out
    box = _box(values > 0, px, values.shape)
    part = out[box]
    for step in range(px):
        part = _step(part, np.maximum, square=step % 2 == 1)
    out[box] = part
    return out


def feather_inside(values, px: int):
    """``values`` ``[H, W]`` with a ramp of ``px`` pixels inside its edge: a pixel at distance ``d``
    (1 = touching a pixel outside the mask, octagonal metric) is scaled by ``min(1, d / (px + 1))``.

    Pixels outside the mask (0) stay exactly 0 and values never grow, so a composite with this weight
    leaves everything outside the original mask bit for bit the source; the ramp rises monotonically
    inward. The scene's border is not an edge (a mask covering the scene stays full). Parts narrower
    than ``2 * px`` never reach full weight. ``px = 0`` returns a copy.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float32)
    out = values.copy()
    support = values > 0
    if px <= 0 or not support.any():
        return out
    box = _box(support, 1, values.shape)  # one ring of background (or the border) around the mask
    current = support[box]
    depth = current.astype(np.uint16)
    for step in range(px):
        current = _step(current, np.minimum, square=step % 2 == 1)
        if not current.any():
            break
        depth += current
    ramp = np.minimum(depth, px + 1).astype(np.float32) / np.float32(px + 1)
    out[box] = out[box] * ramp
    return out


# --------------------------------------------------------------------------------------------------
# Regions


def load_regions(path: str | os.PathLike, grid, **mask_options) -> list[Region]:
    """Read a regions file (see the module docstring) onto ``grid``; ``mask_options`` go to
    :func:`load_mask` (threshold, soft, grow, feather, resize, max_pixels) for every region.

    Region order matters: where regions overlap, the later one wins (:func:`overlap_weights`);
    each region's notes say on how many pixels. A region that would edit nothing is refused.
    """
    grid = _as_grid(grid)
    path = Path(path).expanduser()
    _check_file(path, "regions file")
    if path.suffix.lower() in OGR_SUFFIXES or not _looks_like_json(path):
        items = _feature_items(_read_ogr(path), str(path))
    else:
        obj = _read_json(path, "regions file")
        if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
            items = _feature_items(_geojson_layer(obj, str(path), None), str(path))
        elif isinstance(obj, list):
            items = [(index, item, str(path)) for index, item in enumerate(obj)]
        else:
            raise InputError(
                f"The regions file {path} holds a JSON {type(obj).__name__}, not a list: write it as a list of "
                '[{"mask": "east.png", "instruction": "flood the eastern blocks"}, ...], or as a GeoJSON '
                'FeatureCollection whose features carry an "instruction" property.'
            )
    if not items:
        raise InputError(
            f"The regions file {path} is empty: it lists no region. Add at least one "
            '{"mask": PATH_OR_GEOMETRY, "instruction": TEXT}, or edit with a single mask and instruction instead.'
        )
    regions = [
        _load_region(index, item, where, path.parent, grid, mask_options, len(items)) for index, item, where in items
    ]
    _check_overlaps(regions, str(path))
    return regions


def _feature_items(layer: _Layer, where: str) -> list[tuple[int, Any, str]]:
    """A FeatureCollection (or vector file) as region items: each feature one region, in order."""
    items = []
    for index, geometry, props in layer.features:
        instruction = next((props[k] for k in _INSTRUCTION_FIELDS if k in props), None)
        item: dict[str, Any] = {"mask": _Inline(geometry, layer.crs, layer.assumed_crs)}
        if instruction is not None or any(k in props for k in _INSTRUCTION_FIELDS):
            item["instruction"] = instruction
        items.append((index, item, where))
    return items


@dataclass
class _Inline:
    """A feature's geometry from a regions FeatureCollection, with the collection's CRS."""

    geometry: Any
    crs: Any
    assumed: bool


def _load_region(index: int, item, where: str, base: Path, grid: SceneGrid, options: dict, total: int) -> Region:
    label = f"item {index} (region {index + 1} of {total}) of {where}"
    title = label[:1].upper() + label[1:]  # to start a sentence
    if not isinstance(item, dict):
        raise InputError(
            f'{title} is {_json_type(item)}, not an object: write it as {{"mask": ..., "instruction": ...}}.'
        )
    missing = [key for key in ("mask", "instruction") if key not in item]
    if missing:
        example = '{"mask": "east.png", "instruction": "flood the eastern blocks"}'
        raise InputError(
            f"{title} has no {' and no '.join(repr(k) for k in missing)}: each region needs both, e.g. {example}"
            + (
                ' (for a FeatureCollection: an "instruction" property on each feature).'
                if isinstance(item.get("mask"), _Inline)
                else "."
            )
        )
    instruction = item["instruction"]
    if not isinstance(instruction, str):
        raise InputError(
            f"{title}: its instruction is {_json_type(instruction)} ({json.dumps(instruction, default=str)[:60]}),"
            ' not text. Write it as a string, e.g. "instruction": "burn the western fields".'
        )
    if not instruction.strip():
        raise InputError(f'{title}: its instruction is empty. Say what to do in that region, e.g. "flood the fields".')
    notes: list[str] = []
    unknown = [str(k) for k in item if k not in _REGION_KEYS]
    if unknown:
        notes.append(f"key(s) {', '.join(unknown)} of {label} are not used (a region has mask, instruction, crs)")
    source = item["mask"]
    crs = item.get("crs")
    if crs is not None and not isinstance(crs, str):
        raise InputError(f'{title}: "crs" must be text such as "EPSG:32633"; got {json.dumps(crs, default=str)[:60]}.')
    if isinstance(source, _Inline):
        if source.geometry is None:
            raise InputError(f"{title}: the feature has no geometry, so the region marks nothing. Draw its polygon.")
        layer = _Layer(label, [(index, source.geometry, {})], source.crs, [], source.assumed and crs is None)
        if crs is not None:
            layer.crs = _parse_crs(crs, label)
        elif source.assumed:
            layer.notes.append(f'{where} has no "crs" member: read as EPSG:4326 (longitude, latitude), per RFC 7946')
        mask = _mask_from_layer(layer, grid, _check_options(DEFAULT_THRESHOLD, False, *_vector_options(options), False))
    elif isinstance(source, dict):
        grow, feather = _vector_options(options)
        mask = mask_from_geojson(
            source, grid, crs=crs, where=f"the inline geometry of {label}", grow=grow, feather=feather
        )
    elif isinstance(source, str) and source.strip():
        mask_path = Path(source).expanduser()
        if not mask_path.is_absolute():
            mask_path = base / mask_path
        if crs is not None:
            notes.append(f'"crs" of {label} is only used for inline geometries; the file {mask_path} names its own')
        try:
            mask = load_mask(mask_path, grid, **options)
        except InputError as e:
            raise InputError(f"{title}: {e}") from e
    else:
        raise InputError(
            f'{title}: its "mask" must be a path (relative to the regions file) or an inline GeoJSON geometry; '
            f"got {json.dumps(source, default=str)[:60]}."
        )
    if mask.empty:
        raise InputError(
            f"{title} ({instruction!r}): its mask is empty, so the region would edit nothing and its instruction "
            "would be lost. Fix the mask (white = edit; polygons inside the scene), or remove the item."
        )
    return Region(mask.values, instruction, notes + mask.notes, mask.source)


def _json_type(value) -> str:
    """What a JSON value is, in JSON's words ("a number", "a list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), f"a {type(value).__name__}")


def _vector_options(options: dict) -> tuple[int, int]:
    """The load_mask options that apply to polygons: grow and feather (polygons are binary)."""
    return options.get("grow", 0), options.get("feather", 0)


def overlap_weights(values: Sequence) -> list:
    """The overlap rule, later wins: ``w_i = v_i * (1 - max_{j > i} v_j)`` for masks ``v`` in order.

    For binary masks each pixel goes wholly to the last region that covers it; a feathered later
    region hands its edge over smoothly. The weights never sum above 1 (outside every region the
    source is kept). :func:`rsedit_core.masked.exclusive` applies the same rule to tensors.
    """
    import numpy as np

    taken = np.zeros_like(np.asarray(values[0], dtype=np.float32))
    out = []
    for v in reversed(values):
        v = np.asarray(v, dtype=np.float32)
        out.append(v * (1 - taken))
        taken = np.maximum(taken, v)
    return out[::-1]


def _check_overlaps(regions: list[Region], where: str) -> None:
    """Note every overlap (later wins); refuse a region that later ones cover wholly."""
    import numpy as np

    weights = overlap_weights([r.values for r in regions])
    supports = [r.values > 0 for r in regions]
    for i, region in enumerate(regions):
        for j in range(i + 1, len(regions)):
            shared = int(np.count_nonzero(supports[i] & supports[j]))
            if shared:
                own = int(np.count_nonzero(supports[i]))
                text = (
                    f"regions {i + 1} and {j + 1} overlap on {shared:,} px ({_share(shared, own)} of region {i + 1}): "
                    f"the later one, region {j + 1}, wins there"
                )
                region.notes.append(text)
                regions[j].notes.append(text)
        if not (weights[i] > 0).any():
            raise InputError(
                f"Region {i + 1} of {where} ({region.instruction!r}) is covered wholly by later regions, which win on "
                "overlap, so it would edit nothing and its instruction would be lost. Put it after them in the list, "
                "shrink the regions that cover it, or remove it."
            )
