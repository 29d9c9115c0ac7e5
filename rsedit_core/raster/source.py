"""Reading: :class:`RasterSource` (three bands of a GeoTIFF, window by window, stretched to ``0..1``)
and :func:`read_raster` (the whole scene, as a :class:`RasterScene`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..limits import MAX_PIXELS_ENV, max_image_pixels
from . import _io  # _io._windows is called through the module, so one patch reaches every caller
from ._io import _check_file, _check_window, _gdal_errors, _mask_bands, _open, _validity
from .geo import GeoInfo, _band_name, _choose_bands, _geo_info, _interp
from .stretch import Stretch, StretchSpec, _no_maximum, _number, _resolve_stretch, parse_stretch

#: Percentiles are estimated on a read decimated to about this many pixels (exact below it).
SAMPLE_PIXELS = 1 << 20


def _percent(part: int, whole: int) -> str:
    """``part / whole`` as a percentage that never rounds a few pixels to 0% or 100%."""
    share = 100 * part / whole
    if 0 < share < 0.1:
        return "<0.1%"
    if 99.9 < share < 100:
        return ">99.9%"
    return f"{share:.1f}%"


@dataclass
class RasterScene:
    """A raster read for editing: ``image`` float32 ``[3, H, W]`` in ``0..1``, ``valid`` bool ``[H, W]``."""

    image: Any
    valid: Any
    geo: GeoInfo
    notes: list[str] = field(default_factory=list)

    def as_tensor(self):
        """The image as a torch tensor ``[1, 3, H, W]`` (shares memory with ``image``)."""
        import torch

        return torch.from_numpy(self.image).unsqueeze(0)


def _sample(ds, unique: Sequence[int], nodata, is_float: bool, mask_bands: Sequence[int]):
    """The selected bands read decimated to about :data:`SAMPLE_PIXELS` (nearest), and their validity."""
    from rasterio.enums import Resampling

    factor = max(1, math.ceil(math.sqrt(ds.width * ds.height / SAMPLE_PIXELS)))
    shape = (max(1, math.ceil(ds.height / factor)), max(1, math.ceil(ds.width / factor)))
    raw = ds.read(list(unique), out_shape=(len(unique), *shape), resampling=Resampling.nearest)
    masks = [ds.read_masks(b, out_shape=shape, resampling=Resampling.nearest) for b in mask_bands]
    return raw, _validity(raw, nodata, is_float, masks)


def _too_large(path: Path, width: int, height: int, limit: int, whole: bool) -> InputError:
    pixels = width * height
    start = f"{path} is {width}x{height} = {pixels:,} pixels, over the limit of {limit:,} pixels that guards "
    if whole:
        return InputError(
            f"{start}against exhausting memory. Reading it needs about {pixels * 13 / 1e9:.1f} GB (three float32 bands "
            f"and a mask). If you have the memory, raise the limit: set the environment variable "
            f"{MAX_PIXELS_ENV} to {pixels} or more (0 = no limit), pass max_pixels= to read_raster, or use the "
            "CLI's --max-image-pixels. Or cut the scene into tiles first (e.g. gdal_translate -srcwin)."
        )
    return InputError(
        f"{start}against decompression bombs and exhausting memory (windows are read one at a time, but an edit "
        f"still holds the scene's latents). If the scene is meant to be this large, raise the limit: set the "
        f"environment variable {MAX_PIXELS_ENV} to {pixels} or more (0 = no limit), pass max_pixels= to "
        "RasterSource.open, or use the CLI's --max-image-pixels."
    )


def _invalid_note(invalid: int, total: int, nodata, estimated: bool) -> str:
    if estimated:
        what = f"about {_percent(invalid, total)} of the pixels (estimated from a decimated read)"
    else:
        what = f"{invalid:,} pixels ({_percent(invalid, total)})"
    return f"{what} are nodata or masked: black in the image, " + (
        "written back as nodata" if nodata is not None else "masked again on write"
    )


def _check_source_unchanged(src, geo: GeoInfo, why: str, remedy: str) -> None:
    now = (src.width, src.height, src.count, str(src.dtypes[0]))
    then = (geo.width, geo.height, geo.count, geo.dtype)
    if now != then:
        raise InputError(
            f"{why} {geo.path}, but that file changed since it was read ({then[0]}x{then[1]}, {then[2]} bands, "
            f"{then[3]} then; {now[0]}x{now[1]}, {now[2]} bands, {now[3]} now). Read it again, or {remedy}."
        )


class RasterSource:
    """Three bands of a GeoTIFF read window by window, stretched to ``0..1`` exactly like :func:`read_raster`.

    :meth:`open` chooses the bands, checks the file and resolves the stretch as :func:`read_raster`
    does (same notes and errors; percentiles from a decimated read of about :data:`SAMPLE_PIXELS`
    pixels), without reading the scene into memory. :meth:`read` gives one window as float32
    ``[1, 3, h, w]`` in ``0..1`` (invalid pixels black), :meth:`valid` its bool ``[h, w]`` mask.
    The GDAL dataset stays open between reads (one handle per source) until :meth:`close` or the
    end of a ``with`` block. ``count`` is 1 (one scene); ``geo`` carries the resolved stretch, so a
    :class:`RasterSink` maps an edit back through it. Not thread-safe.
    """

    def __init__(self, ds, path: Path):
        """Internal: use :meth:`open`."""
        self._ds = ds
        self.path = path
        self.height, self.width = ds.height, ds.width
        self.count = 1
        self.geo: GeoInfo
        self.notes: list[str] = []
        self._head: list[str] = []
        self._tail: list[str] = []
        self._last_valid: tuple[tuple[int, int, int, int], Any] | None = None

    def _select(self, chosen: Sequence[int], nodata: float | None, dtype) -> None:
        """Which bands are read, and how their validity is told."""
        self._unique = sorted(set(chosen))
        self._channels = [self._unique.index(b) for b in chosen]
        self._nodata = nodata
        self._is_float = dtype.kind == "f"
        self._mask_bands = _mask_bands(self._ds, self._unique)
        self._block = self._ds.block_shapes[self._unique[0] - 1]

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        bands: str | Sequence[int] | None = None,
        stretch: str | StretchSpec | Stretch | None = "percentile",
        max_pixels: int | None = None,
    ) -> RasterSource:
        """Open a GeoTIFF for windowed reading; the arguments are :func:`read_raster`'s.

        ``notes`` are :func:`read_raster`'s, except that the share of nodata pixels of a scene larger
        than :data:`SAMPLE_PIXELS` is estimated from the decimated read (and says so).
        """
        return cls._open(path, bands, stretch, max_pixels, whole=False)

    @classmethod
    def _open(cls, path, bands, stretch, max_pixels, *, whole: bool) -> RasterSource:
        """``whole``: the caller (:func:`read_raster`) reads every pixel and counts the invalid ones itself."""
        spec = parse_stretch(stretch)
        limit = max_image_pixels(max_pixels)
        path = Path(path).expanduser()
        _check_file(path)
        ds = _open(path)
        try:
            source = cls(ds, path)
            with _gdal_errors(path, "read"):
                source._resolve(spec, bands, limit, whole)
        except BaseException:
            ds.close()
            raise
        return source

    @classmethod
    def _for_geo(cls, geo: GeoInfo, why: str, remedy: str) -> RasterSource:
        """The source ``geo`` was read from, reopened with ``geo``'s bands and stretch as they are.
        ``why`` / ``remedy`` complete the errors for a source that is gone or changed."""
        import numpy as np

        path = Path(geo.path)
        if not path.is_file():
            raise InputError(f"{why} {path}, which no longer exists. Restore it, or {remedy}.")
        ds = _open(path)
        try:
            _check_source_unchanged(ds, geo, why, remedy)
            source = cls(ds, path)
            source._select(geo.bands, geo.nodata, np.dtype(geo.dtype))
            source.geo = geo
        except BaseException:
            ds.close()
            raise
        return source

    def _resolve(self, spec, bands, limit: int, whole: bool) -> None:
        import numpy as np

        ds, path = self._ds, self.path
        if ds.count == 0:
            subdatasets = list(getattr(ds, "subdatasets", []) or [])
            hint = f" It holds subdatasets; open one of them, e.g. {subdatasets[0]!r}." if subdatasets else ""
            raise InputError(f"{path} has no raster bands.{hint} Give a GeoTIFF with 1 or more bands.")
        dtype = np.dtype(ds.dtypes[0])
        if dtype.kind not in "iuf" or len(set(ds.dtypes)) != 1:
            raise InputError(
                f"{path} holds {', '.join(sorted(set(ds.dtypes)))} bands; RSEdit reads integer or float bands of one "
                "type. Convert it first, e.g. gdal_translate -ot Float32."
            )
        width, height = ds.width, ds.height
        if limit and width * height > limit:
            raise _too_large(path, width, height, limit, whole)
        chosen, band_notes = _choose_bands(ds, bands, path)
        nodata = None if ds.nodata is None else float(ds.nodata)
        self._select(chosen, nodata, dtype)
        unique, channels, mask_bands = self._unique, self._channels, self._mask_bands
        if self._is_float and isinstance(spec, StretchSpec) and spec.kind == "none":  # refused before any full read
            raise _no_maximum(path, dtype, *_sample(ds, unique, nodata, self._is_float, mask_bands))

        sample = None

        def sampled():
            nonlocal sample
            if sample is None:
                sample = _sample(ds, unique, nodata, self._is_float, mask_bands)
            return sample

        labels = [_band_name(b, ds.descriptions, _interp(ds)) for b in unique]
        resolved, stretch_notes = _resolve_stretch(spec, dtype, channels, sampled, path, labels)
        if not whole:
            sampled()  # the share of invalid pixels, for the notes
        total = width * height
        invalid = None
        if sample is not None and sample[1].any():
            seen = sample[1]
            invalid = (int(seen.size - np.count_nonzero(seen)), seen.size, seen.size < total)
        else:  # no sample taken, or it holds no valid pixel: look at every pixel, window by window
            count, values = self._scan(values=resolved is None, every=resolved is None or not whole)
            if not count:
                what = f"nodata (value {_number(nodata)})" if nodata is not None else "masked"
                if nodata is not None and mask_bands:
                    what = f"nodata (value {_number(nodata)}) or masked"
                raise InputError(
                    f"Every pixel of {', '.join(labels)} in {path} is {what}, so there is nothing to edit. Check that "
                    "this is the right file and bands (a tile outside the scene's footprint?); if the nodata value is "
                    "wrong, fix it with gdal_edit.py -a_nodata VALUE or remove it with gdal_edit.py -unsetnodata."
                )
            if resolved is None:  # the decimated read missed every valid pixel: use them all

                def every():
                    return values, np.ones(values.shape[1], dtype=bool)

                resolved, stretch_notes = _resolve_stretch(spec, dtype, channels, every, path, labels)
            if not whole:
                invalid = (total - count, total, False)
        self.geo = geo = _geo_info(ds, path, chosen, resolved, dtype, nodata, mask_bands)

        clipped = (
            "" if resolved.kind in ("8bit", "none") else " (values outside are clipped; a wider MIN,MAX keeps them)"
        )
        summary = f"{path.name}: {geo.describe()}; {resolved.describe(geo.band_names())}{clipped}"
        self._head = [*band_notes, summary, *stretch_notes]
        if not geo.has_georeference():
            self._tail = [
                f"{path.name} has no georeference (no CRS and no transform); the edit will be written as a plain TIFF"
                if geo.transform is None
                else f"{path.name} has no CRS; the edit will be written with its pixel grid (transform) only"
            ]
        self.notes = self._notes(invalid)

    def _notes(self, invalid: tuple[int, int, bool] | None) -> list[str]:
        """The notes, with the count (or estimate) ``(invalid, total, estimated)`` of invalid pixels."""
        middle = [_invalid_note(*invalid[:2], self._nodata, invalid[2])] if invalid and invalid[0] else []
        return [*self._head, *middle, *self._tail]

    def _raw(self, window):
        """The unique selected bands of ``window`` in source values ``[U, h, w]``, and its validity ``[h, w]``."""
        ds = self._ds
        with _gdal_errors(self.path, "read"):
            raw = ds.read(self._unique, window=window)
            masks = [ds.read_masks(b, window=window) for b in self._mask_bands]
        return raw, _validity(raw, self._nodata, self._is_float, masks)

    def _scan(self, *, values: bool, every: bool) -> tuple[int, Any]:
        """The valid pixels, window by window: ``(how many, their values [U, N] or None)``. ``every``: count
        them all (else stop at the first); ``values``: keep their values, thinned by 2 whenever more than
        4 x :data:`SAMPLE_PIXELS` are kept (so memory stays bounded)."""
        import numpy as np

        count, parts, kept, stride = 0, [], 0, 1
        for window in _io._windows(self.height, self.width, self._block):
            raw, valid = self._raw(window)
            found = int(np.count_nonzero(valid))
            count += found
            if found and not every:
                break
            if found and values:
                parts.append(raw[:, valid][:, ::stride])
                kept += parts[-1].shape[1]
                if kept > 4 * SAMPLE_PIXELS:
                    parts = [np.concatenate(parts, axis=1)[:, ::2]]
                    kept, stride = parts[0].shape[1], stride * 2
        return count, (np.concatenate(parts, axis=1) if parts else None)

    def _check_open(self, doing: str) -> None:
        if self._ds.closed:
            raise InputError(f"Cannot {doing} {self.path}: this RasterSource is closed. Open it again.")

    def _window(self, window, out=None):
        """``window`` stretched: float32 ``[3, h, w]`` (into ``out`` when given) and its validity."""
        import numpy as np

        raw, valid = self._raw(window)
        image = np.empty((3, *valid.shape), dtype=np.float32) if out is None else out
        for channel, row in enumerate(self._channels):
            image[channel] = raw[row]
        self.geo.stretch._apply(image)
        image[:, ~valid] = 0.0
        return image, valid

    def read(self, top: int, left: int, height: int, width: int):
        """Rows ``top..top+height-1`` and columns ``left..left+width-1`` as float32 ``[1, 3, h, w]`` in ``0..1``
        (a torch tensor), stretched like :func:`read_raster`; nodata and masked pixels are 0."""
        import torch
        from rasterio.windows import Window

        self._check_open("read")
        key = _check_window(self.height, self.width, top, left, height, width, "read")
        image, valid = self._window(Window(key[1], key[0], key[3], key[2]))
        self._last_valid = (key, valid)
        return torch.from_numpy(image).unsqueeze(0)

    def valid(self, top: int, left: int, height: int, width: int):
        """The window's numpy bool ``[h, w]``: True where every selected band holds data (not nodata, not masked,
        finite). Free after :meth:`read` of the same window."""
        import numpy as np
        from rasterio.windows import Window

        self._check_open("read")
        key = _check_window(self.height, self.width, top, left, height, width, "read")
        if self._last_valid is not None and self._last_valid[0] == key:
            return self._last_valid[1].copy()
        if self._nodata is None and not self._is_float and not self._mask_bands:
            return np.ones((key[2], key[3]), dtype=bool)  # nothing can be invalid: no need to read
        return self._raw(Window(key[1], key[0], key[3], key[2]))[1]

    def close(self) -> None:
        """Close the GDAL dataset (idempotent)."""
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ds.closed else "open"
        return f"RasterSource({str(self.path)!r}, {self.width}x{self.height}, bands {self.geo.bands}, {state})"


def read_raster(
    path: str | os.PathLike,
    bands: str | Sequence[int] | None = None,
    stretch: str | StretchSpec | Stretch | None = "percentile",
    max_pixels: int | None = None,
) -> RasterScene:
    """Read three bands of a GeoTIFF for editing; see :class:`RasterScene` and :mod:`rsedit_core.raster`.

    ``bands``: three 1-based band numbers (red, green, blue) or one (repeated to grey); by default
    red, green, blue by colour interpretation, else by band description, else bands 1-3 (noted).
    ``stretch``: text in :func:`parse_stretch`'s syntax, a :class:`StretchSpec` or a :class:`Stretch` (e.g.
    ``scene.geo.stretch`` of another tile of the same scene, so both stretch alike).
    ``max_pixels``: the pixel limit of :func:`rsedit_core.limits.max_image_pixels` (and its
    ``RSEDIT_MAX_IMAGE_PIXELS``), checked before anything is read.
    The scene is read by :class:`RasterSource` in windows of about :data:`CHUNK_PIXELS`, each stretched
    straight into the one full-size array.
    """
    import numpy as np

    with RasterSource._open(path, bands, stretch, max_pixels, whole=True) as source:
        height, width = source.height, source.width
        image = np.empty((3, height, width), dtype=np.float32)
        valid = np.empty((height, width), dtype=bool)
        for window in _io._windows(height, width, source._block):
            rows, cols = window.toslices()
            valid[rows, cols] = source._window(window, out=image[:, rows, cols])[1]
        invalid = int(valid.size - np.count_nonzero(valid))
        notes = source._notes((invalid, valid.size, False))
        return RasterScene(image=image, valid=valid, geo=source.geo, notes=notes)
