"""Writing: :class:`RasterSink` (a GeoTIFF on the source's grid, window by window) and
:func:`write_raster` (a whole image); tags, creation options, metadata and the COG copy."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..outputs import atomic_output, check_output_path
from . import _io  # _io._windows is called through the module, so one patch reaches every caller
from ._io import RASTER_SUFFIXES, _check_window, _gdal_errors, _rasterio
from .geo import GeoInfo
from .source import RasterSource, _check_source_unchanged
from .stretch import _number

COMPRESSIONS = ("deflate", "lzw", "zstd", "none")
#: Tile size of written GeoTIFFs (the COG driver's default).
BLOCK_SIZE = 512


def _as_image(image, geo: GeoInfo):
    import numpy as np

    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().to("cpu").float().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(
            f"write_raster writes one image [3, H, W] or [1, 3, H, W] in 0..1; got {tuple(image.shape)}. "
            "Write a batch one image at a time."
        )
    height, width = image.shape[1:]
    if (width, height) != (geo.width, geo.height):
        raise InputError(
            f"The edited image is {width}x{height} px but its source {geo.path} is {geo.width}x{geo.height}: a "
            "GeoTIFF is written on its source's grid, so the sizes must match. Undo any resize or padding first "
            "(the size policy 'pad' restores the original size; 'resize' and 'crop' do not)."
        )
    return image


def _as_valid(valid, geo: GeoInfo):
    import numpy as np

    if valid is None:
        return None
    if hasattr(valid, "detach"):
        valid = valid.detach().to("cpu").numpy()
    valid = np.asarray(valid)
    if valid.ndim == 3 and valid.shape[0] == 1:
        valid = valid[0]
    if valid.shape != (geo.height, geo.width):
        raise InputError(
            f"valid must be a [H, W] mask of the source's size {geo.height}x{geo.width} (rows x columns); got "
            f"{tuple(valid.shape)}. Pass the scene's own scene.valid."
        )
    return valid.astype(bool, copy=False)


def _nodata_fits(nodata: float, dtype) -> bool:
    import numpy as np

    if math.isnan(nodata):
        return dtype.kind == "f"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(nodata).is_integer() and info.min <= nodata <= info.max
    return abs(nodata) <= float(np.finfo(dtype).max)


def _off_nodata(nodata: float, dtype):
    """The value of ``dtype`` next to ``nodata``, for valid pixels that would otherwise read as nodata."""
    import numpy as np

    if dtype.kind in "iu":
        step = -1 if nodata >= np.iinfo(dtype).max else 1
        return np.asarray(nodata + step).astype(dtype)
    toward = -np.inf if nodata > 0 else np.inf
    return np.nextafter(np.asarray(nodata, dtype=dtype), np.asarray(toward, dtype=dtype))


def _cog_driver_available() -> bool:
    rasterio = _rasterio()
    with rasterio.Env() as env:
        return "COG" in env.drivers()


_KEEP_WHY = "keep_other_bands copies the other bands from"
_KEEP_REMEDY = "write without keep_other_bands"
_VALID_WHY = "RasterSink takes which pixels are nodata from"
_VALID_REMEDY = "pass each window's mask as write(..., valid=...)"


def _as_pixels(pixels):
    """A window to write as float32 numpy ``[3, h, w]`` (from numpy or torch, ``[3, h, w]`` or ``[1, 3, h, w]``)."""
    import numpy as np

    if hasattr(pixels, "detach"):  # a torch tensor
        pixels = pixels.detach().to("cpu").float().numpy()
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise InputError(
            f"RasterSink.write takes one window of pixels [3, h, w] (or [1, 3, h, w]) in 0..1; got "
            f"{tuple(pixels.shape)}."
        )
    return pixels


class RasterSink:
    """A GeoTIFF on ``geo``'s grid written window by window, as :func:`write_raster` writes a whole image.

    Use it as a context manager: ``with RasterSink(path, geo) as sink: sink.write(0, top, left, pixels)``
    for every window of the scene, each exactly once. ``pixels`` (float32 ``[3, h, w]`` in ``0..1``,
    numpy or torch) is mapped back through ``geo.stretch.inverse`` into the source dtype; pixels
    where the source is invalid (``write(..., valid=)`` when given, else ``source.valid`` of the
    :class:`RasterSource` passed as ``source``, else ``geo.path`` reopened, once) become nodata, or
    are masked by a dataset mask for a source without a nodata value; valid pixels that would
    equal nodata move one step off it. ``keep_other_bands`` copies the unedited bands of the source
    window by window. Windows go to GDAL as they come (any size; full-width row bands top to bottom
    is the usual order): GDAL's block cache holds the partly written :data:`BLOCK_SIZE` tiles until
    later windows complete them, so each tile is compressed once as long as ``GDAL_CACHEMAX`` (5% of
    RAM by default) holds one row of tiles; below that the file is still right, only larger.

    Path, compression and tags are checked at construction, before any file exists; the file is
    created on entering the ``with`` beside ``path``. A clean exit checks that every pixel was
    written, finalises (metadata, tags, COG conversion) and renames it over ``path``; ``notes`` then
    holds :func:`write_raster`'s notes. An exception inside the ``with`` removes the temporary
    file(s) and leaves ``path`` as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        geo: GeoInfo,
        *,
        source: RasterSource | None = None,
        keep_other_bands: bool = False,
        cog: bool = False,
        compress: str = "deflate",
        tags: dict[str, Any] | None = None,
    ):
        import numpy as np

        if source is not None and not isinstance(source, RasterSource):
            raise InputError(f"source must be the RasterSource the edit was read from; got {type(source).__name__}.")
        inputs = [geo.path] + ([source.path] if source is not None else [])
        self.path = check_output_path(path, inputs=inputs, suffixes=RASTER_SUFFIXES, option="The output")
        codec = str(compress).strip().lower()
        if codec not in COMPRESSIONS:
            raise InputError(f"Unknown compression {compress!r}; use one of {', '.join(COMPRESSIONS)}.")
        if source is not None and (
            (source.height, source.width) != (geo.height, geo.width) or tuple(source.geo.bands) != tuple(geo.bands)
        ):
            theirs, ours = (",".join(map(str, bands)) for bands in (source.geo.bands, geo.bands))
            raise InputError(
                f"The source {source.path} ({source.width}x{source.height}, bands {theirs}) is not the scene geo "
                f"describes ({geo.width}x{geo.height}, bands {ours}): pass the RasterSource that geo came from."
            )
        self.geo, self.source, self.keep_other_bands, self.cog, self.codec = geo, source, keep_other_bands, cog, codec
        self.notes: list[str] = []
        self._tags = _merge_tags(geo, tags)
        self._dtype = dtype = np.dtype(geo.dtype)
        self._early: list[str] = []
        nodata = geo.nodata
        if nodata is not None and not _nodata_fits(nodata, dtype):
            self._early.append(
                f"the source's nodata value {_number(nodata)} does not fit {dtype}; invalid pixels are masked"
            )
            nodata = None
        self._nodata = nodata
        self._fill = None if nodata is None else np.asarray(nodata).astype(dtype)
        self._nudged = None if nodata is None or math.isnan(nodata) else _off_nodata(nodata, dtype)
        self._count = geo.count if keep_other_bands else 3
        self._state = "new"
        self._stack: contextlib.ExitStack | None = None
        self._dst = None
        self._reference: RasterSource | None = None
        self._written = 0
        self._collisions = 0
        self._masking = False
        self._unmasked: list[Any] = []  # windows written before the first invalid pixel (mask them later)

    def _source_for(self, why: str, remedy: str) -> RasterSource:
        """The scene's source, for its validity or its other bands: ``source``, else ``geo.path`` reopened once."""
        if self._reference is None:
            if self.source is not None:
                self._check_open_source(why, remedy)
                self._reference = self.source
            else:
                self._reference = RasterSource._for_geo(self.geo, why, remedy)
                self._stack.callback(self._reference.close)
        return self._reference

    def _check_open_source(self, why: str, remedy: str) -> None:
        self.source._check_open("take pixels from")
        _check_source_unchanged(self.source._ds, self.geo, why, remedy)

    def __enter__(self) -> RasterSink:
        rasterio = _rasterio()
        if self._state != "new":
            raise InputError("A RasterSink writes its file once: make a new RasterSink for another file.")
        with contextlib.ExitStack() as stack:
            self._stack = stack
            if self.keep_other_bands:
                self._source_for(_KEEP_WHY, _KEEP_REMEDY)
            self._temporary = temporary = stack.enter_context(atomic_output(self.path))
            self._target = temporary
            if self.cog:
                tiles = self._target = temporary.with_name(temporary.name.replace(".partial", ".tiles"))
                stack.callback(lambda: tiles.unlink(missing_ok=True))
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), _gdal_errors(self.path, "write"):
                self._dst = _create_gtiff(self._target, self.geo, self._count, self._nodata, self.codec, self.cog)
            stack.callback(self._close_dst)
            self._stack = stack.pop_all()
        self._state = "open"
        return self

    def _close_dst(self) -> None:
        if self._dst is not None and not self._dst.closed:
            self._dst.close()

    def write(self, index: int, top: int, left: int, pixels, valid=None, keep=None) -> None:
        """Write ``pixels`` (``[3, h, w]`` in ``0..1``) at rows ``top..``, columns ``left..`` of scene ``index`` (0).

        ``valid``: this window's bool ``[h, w]`` (True = data), instead of the source's own validity.
        ``keep``: this window's bool ``[h, w]`` where the edited bands take the source's own values,
        read raw from the source (a masked edit outside its mask: the source exactly, not the
        stretch's round trip).
        """
        import numpy as np

        rasterio = _rasterio()
        from rasterio.windows import Window

        if self._state != "open":
            raise InputError("RasterSink.write needs the sink open: write inside `with RasterSink(...) as sink:`.")
        if isinstance(index, bool) or index != 0:
            raise InputError(f"A RasterSink holds one scene: write with index 0; got {index!r}.")
        pixels = _as_pixels(pixels)
        geo = self.geo
        top, left, rows, cols = _check_window(geo.height, geo.width, top, left, *pixels.shape[1:], "write")
        if self._written + rows * cols > geo.height * geo.width:
            raise InputError(
                f"More pixels written to {self.path} than the scene's {geo.height}x{geo.width}: write every window "
                "exactly once."
            )
        if valid is None:
            ok = self._source_for(_VALID_WHY, _VALID_REMEDY).valid(top, left, rows, cols)
        else:
            if hasattr(valid, "detach"):
                valid = valid.detach().to("cpu").numpy()
            ok = np.asarray(valid)
            if ok.shape != (rows, cols):
                raise InputError(f"valid must be this window's [h, w] = [{rows}, {cols}] mask; got {tuple(ok.shape)}.")
            ok = ok.astype(bool, copy=False)
        window = Window(left, top, cols, rows)
        others = None
        if self.keep_other_bands:
            reference = self._source_for(_KEEP_WHY, _KEEP_REMEDY)
            with _gdal_errors(reference.path, "read"):
                others = reference._ds.read(window=window)
        out, collisions = _encode(geo, self._dtype, pixels, ok, others, self._fill, self._nudged)
        self._collisions += collisions
        if keep is not None:
            self._keep_source(out, window, np.asarray(keep, dtype=bool), ok)
        dst = self._dst
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), _gdal_errors(self.path, "write"):
            _write_window(dst, out, window)
            if self._nodata is None and not self._masking and not ok.all():
                self._masking = True  # the first invalid pixel: the windows before it get an all-valid mask
                for earlier in self._unmasked:
                    dst.write_mask(np.full((earlier.height, earlier.width), 255, np.uint8), window=earlier)
                self._unmasked.clear()
            if self._masking:
                dst.write_mask(np.where(ok, 255, 0).astype(np.uint8), window=window)
            elif self._nodata is None:
                self._unmasked.append(window)
        self._written += rows * cols

    def _keep_source(self, out, window, keep, ok) -> None:
        """Put the source's raw values of the edited bands where ``keep`` (and the pixel is data)."""
        if keep.shape != out.shape[1:]:
            raise InputError(f"keep must be this window's [h, w] mask; got {tuple(keep.shape)}.")
        where = keep & ok
        if not where.any():
            return
        reference = self._source_for("a masked edit keeps the source's values from", "write without keep")
        with _gdal_errors(reference.path, "read"):
            raw = reference._ds.read(indexes=list(self.geo.bands), window=window)
        for i, band in enumerate(self.geo.bands):
            position = band - 1 if self.keep_other_bands else i
            if position < out.shape[0]:
                out[position][where] = raw[i][where]

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        self._state = "closed"
        if exc_type is not None:
            return stack.__exit__(exc_type, exc, tb)  # removes the temporary file(s); the exception goes on
        try:
            notes = self._finish()
        except BaseException:
            if not stack.__exit__(*sys.exc_info()):
                raise
            return False
        stack.__exit__(None, None, None)  # closes the sources opened here and renames the file into place
        self.notes = notes
        return False

    def _finish(self) -> list[str]:
        rasterio = _rasterio()
        geo, dtype, codec = self.geo, self._dtype, self.codec
        total = geo.height * geo.width
        if self._written != total:
            raise InputError(
                f"Only {self._written:,} of the {total:,} pixels of {self.path} ({geo.width}x{geo.height}) were "
                "written: write every window of the scene before the `with` block ends. Nothing was written."
            )
        notes = list(self._early)
        if not geo.has_georeference():
            if geo.transform is None:
                notes.append(f"{Path(geo.path).name} has no georeference; wrote a plain TIFF")
            else:
                notes.append(f"{Path(geo.path).name} has no CRS; wrote a TIFF with its pixel grid (transform) only")
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), _gdal_errors(self.path, "write"):
            _finish_gtiff(self._dst, geo, self.keep_other_bands, self._tags)
            self._dst.close()
            if self.cog:
                notes.append(_make_cog(self._target, self._temporary, codec, dtype))
        if self._collisions:
            notes.append(
                f"{self._collisions:,} edited pixel values equalled the nodata value {_number(self._nodata)}; moved "
                "one step off it so they stay data"
            )
        if self._masking:
            notes.append("the source has no nodata value: its invalid pixels are marked by a dataset mask")
        if self.keep_other_bands:
            others = [b for b in range(1, geo.count + 1) if b not in geo.bands]
            if others:
                names = ", ".join(geo.band_names(others))
                verb = "it no longer matches" if len(others) == 1 else "they no longer match"
                notes.append(f"{names} copied unchanged from the source: {verb} the edit (use with care)")
            if len(set(geo.bands)) < 3:
                notes.append("a band read more than once was written as the mean of its edited channels")
        what = "Cloud-Optimized GeoTIFF" if self.cog else ("GeoTIFF" if geo.has_georeference() else "TIFF")
        notes.append(f"wrote {self.path} ({what}, {geo.width}x{geo.height}, {self._count} bands, {dtype}, {codec})")
        return notes


def write_raster(
    path: str | os.PathLike,
    image,
    geo: GeoInfo,
    *,
    valid=None,
    keep_other_bands: bool = False,
    cog: bool = False,
    compress: str = "deflate",
    tags: dict[str, Any] | None = None,
) -> list[str]:
    """Write an edit back on its source's grid as a GeoTIFF; returns notes.

    ``image``: ``[3, H, W]`` (or ``[1, 3, H, W]``, numpy or torch) in ``0..1`` of the source's size.
    It is mapped back through ``geo.stretch`` into the source dtype; the file has the source's CRS,
    transform (or GCPs), size, dtype and nodata. Where ``valid`` (``scene.valid``) is False the
    pixels are written as nodata, or, for a source without a nodata value, masked by a dataset mask;
    ``valid=None`` writes every pixel as data. Valid pixels whose value would equal nodata are moved
    one step off it. By default the three edited bands are written (descriptions kept, colour
    interpretation red, green, blue); ``keep_other_bands`` writes every band of the source in its
    order, the edited ones in place of the selected bands and the others copied unchanged.
    ``cog``: a Cloud-Optimized GeoTIFF. ``compress``: deflate, lzw, zstd or none. ``tags``: dataset
    tags written after the source's own and the RSEDIT_* ones (bands, stretch, source, and RSEDIT_TAGS
    naming the caller's keys, which a later write over this file as a source then drops).
    The file is written beside ``path`` and renamed over it when complete; the source is never
    overwritten. This is :class:`RasterSink` fed the image in windows of about :data:`CHUNK_PIXELS`.
    """
    import numpy as np

    sink = RasterSink(path, geo, keep_other_bands=keep_other_bands, cog=cog, compress=compress, tags=tags)
    image = _as_image(image, geo)
    valid = _as_valid(valid, geo)
    notes: list[str] = []
    if valid is None and geo.nodata is not None:
        notes.append("no valid mask given: every pixel written as data (pass valid=scene.valid to keep nodata)")
    with sink:
        for window in _io._windows(geo.height, geo.width, (BLOCK_SIZE, BLOCK_SIZE)):
            rows, cols = window.toslices()
            ok = np.broadcast_to(True, (window.height, window.width)) if valid is None else valid[rows, cols]
            sink.write(0, window.row_off, window.col_off, image[:, rows, cols], valid=ok)
    return notes + sink.notes


def _merge_tags(geo: GeoInfo, tags: dict[str, Any] | None) -> dict[str, str]:
    """The source's tags, less those an earlier RSEdit write added (listed in RSEDIT_TAGS, so an edit of
    an edit carries no stale seed or instruction), then RSEdit's own and the caller's."""
    stale = {key for key in geo.tags.get("RSEDIT_TAGS", "").split(",") if key}
    merged = {key: value for key, value in geo.tags.items() if key not in stale}
    merged.update(
        RSEDIT_SOURCE=Path(geo.path).name,
        RSEDIT_BANDS=",".join(map(str, geo.bands)),
        RSEDIT_STRETCH=geo.stretch.as_text(),
    )
    for key, value in (tags or {}).items():
        key = str(key).strip()
        if not key or "=" in key or any(c.isspace() for c in key):
            raise InputError(f"Tag name {key!r} cannot be written: use a name without spaces or '=', e.g. 'seed'.")
        merged[key] = "" if value is None else str(value)
    merged["RSEDIT_TAGS"] = ",".join(str(key).strip() for key in tags or {})
    return merged


def _creation_options(codec: str, dtype, fast: bool = False) -> dict[str, Any]:
    """GeoTIFF creation options; ``fast``: zstd at level 1 (for tiles that are read once, then removed)."""
    options: dict[str, Any] = {"tiled": True, "blockxsize": BLOCK_SIZE, "blockysize": BLOCK_SIZE, "BIGTIFF": "IF_SAFER"}
    if codec != "none":
        options["compress"] = codec
        options["predictor"] = 3 if dtype.kind == "f" else 2
        options["NUM_THREADS"] = "ALL_CPUS"  # GDAL compresses tiles in parallel
        if fast:
            options["compress"], options["ZSTD_LEVEL"] = "zstd", 1
    return options


def _create_gtiff(target: Path, geo: GeoInfo, count: int, nodata, codec: str, fast: bool = False):
    """The tiled GeoTIFF on ``geo``'s grid, open for writing. ``fast``: the intermediate tiles of a COG,
    compressed cheaply (the COG copy compresses with ``codec``)."""
    import numpy as np

    rasterio = _rasterio()
    from rasterio.crs import CRS
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import Affine

    dtype = np.dtype(geo.dtype)
    profile: dict[str, Any] = dict(
        driver="GTiff", width=geo.width, height=geo.height, count=count, dtype=dtype.name, nodata=nodata
    )
    profile.update(_creation_options(codec, dtype, fast=fast and codec != "none"))
    if geo.crs is not None:
        profile["crs"] = CRS.from_wkt(geo.crs)
    if geo.transform is not None:
        profile["transform"] = Affine(*geo.transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(target, "w", **profile)


def _encode(geo: GeoInfo, dtype, pixels, ok, others, fill, nudged) -> tuple[Any, int]:
    """One window in source values ``[count, h, w]``, and how many values were moved off nodata.

    ``pixels`` ``[3, h, w]`` in ``0..1``; ``ok`` its validity; ``others``: the window of every source
    band (``keep_other_bands``), the edited ones then replaced; ``fill``/``nudged``: nodata and its
    neighbour (``None`` without nodata: invalid pixels are black, under a dataset mask)."""
    import numpy as np

    values = geo.stretch.inverse(pixels, dtype)
    unique = sorted(set(geo.bands))
    if others is not None:
        out = others
        for band in unique:
            picked = [i for i, b in enumerate(geo.bands) if b == band]
            if len(picked) == 1:
                out[band - 1] = values[picked[0]]
            else:
                mean = values[picked].astype(np.float64).mean(axis=0)
                out[band - 1] = (np.rint(mean) if dtype.kind in "iu" else mean).astype(dtype)
        edited = [b - 1 for b in unique]
    else:
        out = values
        edited = [0, 1, 2]
    bad = None if ok.all() else ~ok
    collisions = 0
    for index in edited:
        band = out[index]  # a view: changed in place
        if nudged is not None:
            hits = band == fill
            if bad is not None:
                hits &= ok
            hit_count = int(np.count_nonzero(hits))
            if hit_count:
                band[hits] = nudged
                collisions += hit_count
        if bad is not None:  # nodata, or black under a dataset mask (as the source had it)
            band[bad] = fill if fill is not None else 0
    return out, collisions


def _finish_gtiff(dst, geo: GeoInfo, all_bands: bool, tags: dict[str, str]) -> None:
    """GCPs, band descriptions, colour interpretation, scales/offsets and tags, once the pixels are written."""
    from rasterio.crs import CRS
    from rasterio.enums import ColorInterp

    if geo.gcps and geo.transform is None:
        from rasterio.control import GroundControlPoint

        points = [GroundControlPoint(row=r, col=c, x=x, y=y, z=z) for r, c, x, y, z in geo.gcps]
        dst.gcps = (points, CRS.from_wkt(geo.gcps_crs) if geo.gcps_crs else None)
    bands_written = list(range(1, geo.count + 1)) if all_bands else list(geo.bands)
    for index, band in enumerate(bands_written, start=1):
        description = geo.band_descriptions[band - 1] if band - 1 < len(geo.band_descriptions) else None
        if description:
            dst.set_band_description(index, description)
    if all_bands:
        dst.colorinterp = [ColorInterp[name] for name in geo.colorinterp]
    else:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    scales = [geo.scales[b - 1] if b - 1 < len(geo.scales) else 1.0 for b in bands_written]
    offsets = [geo.offsets[b - 1] if b - 1 < len(geo.offsets) else 0.0 for b in bands_written]
    if any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets):
        dst.scales, dst.offsets = scales, offsets
    dst.update_tags(**tags)


def _write_window(dst, out, window) -> None:
    """One window of every band (a seam for tests that simulate a failure mid-write)."""
    dst.write(out, window=window)


def _make_cog(tiles: Path, target: Path, codec: str, dtype) -> str:
    """Copy the tiled GeoTIFF ``tiles`` to ``target`` as a COG; returns a note saying how."""
    _rasterio()  # installed, or a MissingDependencyError saying how
    import rasterio.shutil
    from rasterio.enums import Resampling

    compress = "NONE" if codec == "none" else codec.upper()
    if _cog_driver_available():
        rasterio.shutil.copy(
            tiles,
            target,
            driver="COG",
            COMPRESS=compress,
            PREDICTOR="YES" if codec != "none" else "NO",
            BLOCKSIZE=BLOCK_SIZE,
            OVERVIEWS="AUTO",
            RESAMPLING="AVERAGE",
            BIGTIFF="IF_SAFER",
            NUM_THREADS="ALL_CPUS",
        )
        with rasterio.open(target) as done:
            levels = len(done.overviews(1))
        return f"Cloud-Optimized GeoTIFF written by GDAL's COG driver ({levels} overview levels)"
    with rasterio.open(tiles, "r+") as ds:
        factors, size = [], max(ds.width, ds.height)
        while size / (2 ** (len(factors) + 1)) >= BLOCK_SIZE / 2:
            factors.append(2 ** (len(factors) + 1))
        if factors:
            ds.build_overviews(factors, Resampling.average)
    options = {"COMPRESS": compress, "TILED": "YES", "COPY_SRC_OVERVIEWS": "YES", "BIGTIFF": "IF_SAFER"}
    options["NUM_THREADS"] = "ALL_CPUS"
    options.update(BLOCKXSIZE=BLOCK_SIZE, BLOCKYSIZE=BLOCK_SIZE)
    if codec != "none":
        options["PREDICTOR"] = 3 if dtype.kind == "f" else 2
    rasterio.shutil.copy(tiles, target, driver="GTiff", **options)
    return (
        f"this GDAL has no COG driver: wrote a tiled GeoTIFF with {len(factors)} overview levels copied ahead of the "
        "data (cloud-optimized layout, not checked by the COG driver)"
    )
