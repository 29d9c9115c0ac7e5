"""Georeferenced rasters: GeoTIFFs of any band count and bit depth in, the same grid out.

The editor works on three bands in ``0..1``. :func:`read_raster` picks three bands of a GeoTIFF
(red, green, blue by colour interpretation or band name, else the ones asked for), stretches them
from their source values to ``0..1`` (:class:`Stretch`) and keeps everything needed to put the edit
back: CRS, transform, dtype, nodata, band names and the stretch itself (:class:`GeoInfo`).
:func:`write_raster` maps the edit back through the same stretch into the source dtype and writes a
GeoTIFF on the source's grid, nodata kept as nodata, atomically. Bad input raises an
:class:`~rsedit_core.errors.InputError` that says what is wrong and how to fix it.

A scene too large to hold as a float copy is edited window by window: :class:`RasterSource`
resolves bands and stretch as :func:`read_raster` does and reads any window on demand;
:class:`RasterSink` writes windows back as :func:`write_raster` does. The two functions are these
classes applied to the whole scene, so both paths share one implementation.

The stretch syntax (:func:`parse_stretch`, the CLI's ``--stretch``):

``percentile``
    the default: each band stretched linearly between its 2nd and 98th percentiles (over valid
    pixels); 8-bit sources are used as they are (value / 255).
``percentile:P1,P2``
    the P1-th to P2-th percentiles, e.g. ``percentile:1,99``; applied to 8-bit sources too.
``MIN,MAX``
    a fixed range in source values for every band, e.g. ``0,3000`` for 16-bit reflectance;
    ``MIN,MAX;MIN,MAX;MIN,MAX`` gives one range per selected band (red;green;blue).
``none``
    integers divided by their dtype's maximum (65535 for uint16); refused for float sources.

Pixels outside the stretch range are clipped, so only values inside it come back exactly.
This module is imported by the CLI parser: numpy and rasterio are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, require
from .limits import MAX_PIXELS_ENV, max_image_pixels
from .outputs import atomic_output, check_output_path

RASTER_SUFFIXES = (".tif", ".tiff")
STRETCH_KINDS = ("percentile", "range", "none", "8bit")
DEFAULT_PERCENTILES = (2.0, 98.0)
COMPRESSIONS = ("deflate", "lzw", "zstd", "none")
STRETCH_HELP = (
    "'percentile' (2nd-98th percentiles, 8-bit used as is), 'percentile:P1,P2' (e.g. percentile:1,99), "
    "'MIN,MAX' in source values (e.g. 0,3000; or MIN,MAX;MIN,MAX;MIN,MAX per band) or 'none' (integers / dtype max)"
)
#: Percentiles are estimated on a read decimated to about this many pixels (exact below it).
SAMPLE_PIXELS = 1 << 20
#: Reads and writes go by windows of about this many pixels, aligned to the file's blocks.
CHUNK_PIXELS = 1 << 22
#: Tile size of written GeoTIFFs (the COG driver's default).
BLOCK_SIZE = 512

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")
_RGB_NAMES = ("red", "green", "blue")


def is_raster_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a GeoTIFF (by its suffix: :data:`RASTER_SUFFIXES`)."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def _rasterio():
    return require("rasterio", "Reading and writing GeoTIFFs", "rasterio>=1.3")


def _ordinal(value: float) -> str:
    text = _number(value)
    if not float(value).is_integer():
        return f"{text}th"
    number = int(value)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{text}{suffix}"


def _percent(part: int, whole: int) -> str:
    """``part / whole`` as a percentage that never rounds a few pixels to 0% or 100%."""
    share = 100 * part / whole
    if 0 < share < 0.1:
        return "<0.1%"
    if 99.9 < share < 100:
        return ">99.9%"
    return f"{share:.1f}%"


def _number(value: float) -> str:
    """``value`` as short as it round-trips (integers without a decimal point)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


# --------------------------------------------------------------------------------------------------
# Stretch


@dataclass(frozen=True)
class Stretch:
    """A linear map from source values to ``0..1``, one ``low``/``high`` pair per band.

    ``kind`` records where the pair came from: ``"percentile"`` (``percentiles`` says which),
    ``"range"`` (given), ``"none"`` (0 to the integer dtype's maximum) or ``"8bit"`` (0..255).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    kind: str = "range"
    percentiles: tuple[float, float] | None = None

    def __post_init__(self):
        if self.kind not in STRETCH_KINDS:
            raise InputError(f"Unknown stretch kind {self.kind!r}; use one of {', '.join(STRETCH_KINDS)}.")
        if not self.low or len(self.low) != len(self.high):
            raise InputError(
                f"A stretch needs one low and one high value per band; got {len(self.low)} low and "
                f"{len(self.high)} high values."
            )
        for band, (low, high) in enumerate(zip(self.low, self.high, strict=True), start=1):
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise InputError(
                    f"Stretch band {band}: MIN {_number(low)} must be below MAX {_number(high)} (both finite). "
                    "Give the range as MIN,MAX with MIN < MAX, e.g. 0,3000."
                )

    def _columns(self, array):
        import numpy as np

        count = len(self.low)
        if array.ndim < 1 or array.shape[0] != count:
            raise InputError(
                f"This stretch has {count} band(s) but the array has shape {tuple(array.shape)}; "
                f"give [{count}, H, W] (bands first)."
            )
        shape = (count,) + (1,) * (array.ndim - 1)
        low = np.asarray(self.low, dtype=np.float64).reshape(shape)
        high = np.asarray(self.high, dtype=np.float64).reshape(shape)
        return low, high

    def forward(self, array):
        """Source values ``[C, ...]`` -> float32 in ``0..1`` (clipped; NaN -> 0)."""
        import numpy as np

        array = np.asarray(array)
        self._columns(array)
        out = array.astype(np.float32, copy=True)
        self._apply(out)
        return out

    def _apply(self, out) -> None:
        """:meth:`forward` in place on float32 ``out`` ``[C, ...]`` holding source values (a view will do)."""
        import numpy as np

        low, high = self._columns(out)
        out -= low.astype(np.float32)
        out *= (1.0 / (high - low)).astype(np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        out[np.isnan(out)] = 0.0

    def inverse(self, array01, dtype):
        """``[C, ...]`` in ``0..1`` -> source values of ``dtype`` (integers rounded and clipped to its range)."""
        import numpy as np

        dtype = np.dtype(dtype)
        # float32 holds a 16-bit value to well under 0.01 of a level, so rounding is exact; wider types need float64.
        work = np.float32 if dtype.kind in "iu" and dtype.itemsize <= 2 else np.float64
        values = np.array(array01, dtype=work, copy=True)
        low, high = self._columns(values)
        np.clip(values, 0.0, 1.0, out=values)
        values[np.isnan(values)] = 0.0
        values *= (high - low).astype(work)
        values += low.astype(work)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            np.rint(values, out=values)
            np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype, copy=False)

    def as_text(self) -> str:
        """The stretch in :func:`parse_stretch`'s range syntax (reproduces it exactly)."""
        pairs = [f"{_number(low)},{_number(high)}" for low, high in zip(self.low, self.high, strict=True)]
        return pairs[0] if len(set(pairs)) == 1 else ";".join(pairs)

    def describe(self, names: Sequence[str] = ()) -> str:
        """One line: where the stretch came from and each band's range."""
        names = list(names) or [f"band {i}" for i in range(1, len(self.low) + 1)]
        pairs = zip(names, self.low, self.high, strict=False)
        shown = (f"{name} {_number(low)}..{_number(high)}" for name, low, high in pairs)
        ranges = ", ".join(dict.fromkeys(shown))  # a band read twice is listed once
        if self.kind == "8bit":
            return "8-bit values used as is (value / 255)"
        if self.kind == "none":
            return f"no stretch: value / {_number(self.high[0])} (the dtype's maximum)"
        if self.kind == "percentile" and self.percentiles:
            p1, p2 = self.percentiles
            return f"stretched linearly between the {_ordinal(p1)} and {_ordinal(p2)} percentiles: {ranges}"
        return f"stretched linearly over the range {ranges}"


@dataclass(frozen=True)
class StretchSpec:
    """A stretch as asked for, before the raster is read: see :func:`parse_stretch`.

    ``percentiles`` is ``None`` for the plain default ``percentile`` (which leaves 8-bit sources
    as they are); ``ranges`` holds the ``(MIN, MAX)`` pairs of a ``range``.
    """

    kind: str
    percentiles: tuple[float, float] | None = None
    ranges: tuple[tuple[float, float], ...] = ()

    def text(self) -> str:
        if self.kind == "percentile" and self.percentiles is None:
            return "percentile"
        if self.kind == "percentile":
            return "percentile:{},{}".format(*map(_number, self.percentiles))
        if self.kind == "range":
            return ";".join(f"{_number(low)},{_number(high)}" for low, high in self.ranges)
        return self.kind


def parse_stretch(text: str | StretchSpec | Stretch | None) -> StretchSpec | Stretch:
    """Parse the stretch syntax of this module's docstring; a :class:`Stretch` passes through."""
    if text is None:
        return StretchSpec("percentile")
    if isinstance(text, (StretchSpec, Stretch)):
        return text
    if not isinstance(text, str):
        raise InputError(f"The stretch must be text such as 'percentile' or '0,3000'; got {text!r}.")
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("percentile", "percentiles", ""):
        return StretchSpec("percentile")
    if lowered == "none":
        return StretchSpec("none")
    if lowered.startswith("percentile"):
        rest = lowered[len("percentile") :].lstrip("s").strip()
        match = _PAIR.match(rest[1:]) if rest[:1] in (":", "=") else None
        if match is None:
            raise InputError(
                f"Cannot read the stretch {text!r}: write percentiles as percentile:P1,P2, e.g. percentile:2,98."
            )
        p1, p2 = float(match.group(1)), float(match.group(2))
        if not 0 <= p1 < p2 <= 100:
            raise InputError(
                f"Stretch {text!r}: the percentiles must satisfy 0 <= P1 < P2 <= 100; got {_number(p1)} and "
                f"{_number(p2)}. Use e.g. percentile:2,98."
            )
        return StretchSpec("percentile", (p1, p2))
    parts = raw.split(";")
    ranges = []
    for part in parts:
        match = _PAIR.match(part)
        if match is None:
            raise InputError(f"Unknown stretch {text!r}; use {STRETCH_HELP}.")
        low, high = float(match.group(1)), float(match.group(2))
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise InputError(
                f"Stretch {text!r}: MIN {_number(low)} must be below MAX {_number(high)}. Give the range as "
                "MIN,MAX in source values with MIN < MAX, e.g. 0,3000."
            )
        ranges.append((low, high))
    if len(ranges) not in (1, 3):
        raise InputError(
            f"Stretch {text!r} has {len(ranges)} ranges; give one MIN,MAX for every band or three "
            "(MIN,MAX;MIN,MAX;MIN,MAX, in red;green;blue order)."
        )
    return StretchSpec("range", ranges=tuple(ranges))


def parse_bands(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"3,2,1"`` (1-based, commas or spaces) -> ``(3, 2, 1)``: three bands (red, green, blue) or one (grey)."""
    if text is None:
        return None
    if isinstance(text, str):
        items = [item for item in re.split(r"[\s,]+", text.strip()) if item]
        try:
            bands = tuple(int(item) for item in items)
        except ValueError:
            raise InputError(
                f"Cannot read the bands {text!r}: give 1-based band numbers separated by commas, "
                "e.g. 3,2,1 (red, green, blue) or 1 for a single band shown as grey."
            ) from None
    else:
        try:
            bands = tuple(int(item) for item in text)
        except (TypeError, ValueError):
            raise InputError(f"The bands must be whole numbers such as (3, 2, 1); got {text!r}.") from None
        if any(isinstance(item, bool) or float(item) != int(item) for item in text):
            raise InputError(f"The bands must be whole numbers such as (3, 2, 1); got {text!r}.")
    if len(bands) not in (1, 3):
        raise InputError(
            f"Give 3 bands (red, green, blue, e.g. 3,2,1) or 1 band (shown as grey); got {len(bands)}: {text!r}."
        )
    if any(band < 1 for band in bands):
        raise InputError(f"Band numbers start at 1; got {text!r}. Use e.g. 3,2,1.")
    return bands


# --------------------------------------------------------------------------------------------------
# Georeference


@dataclass
class GeoInfo:
    """What :func:`write_raster` needs to put an edit back on its source's grid (plain values only)."""

    path: str
    crs: str | None
    transform: tuple[float, float, float, float, float, float] | None
    width: int
    height: int
    dtype: str
    count: int
    nodata: float | None
    band_descriptions: tuple[str | None, ...]
    colorinterp: tuple[str, ...]
    bands: tuple[int, int, int]
    stretch: Stretch
    tags: dict[str, str] = field(default_factory=dict)
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    #: Ground control points ``(row, col, x, y, z)`` and their CRS (WKT), for scenes without a transform.
    gcps: tuple[tuple[float, float, float, float, float], ...] = ()
    gcps_crs: str | None = None
    #: Whether the source has a dataset mask or alpha band (rather than, or beside, a nodata value).
    has_mask: bool = False

    def has_georeference(self) -> bool:
        return (self.crs is not None and self.transform is not None) or bool(self.gcps)

    def crs_name(self) -> str | None:
        """The CRS as a short name: ``EPSG:32633``, else its WKT name; ``None`` without a CRS."""
        wkt = self.crs or (self.gcps_crs if self.gcps else None)
        return _crs_name(wkt) if wkt else None

    def band_names(self, bands: Sequence[int] | None = None) -> list[str]:
        """``"band 3 (R)"`` for each of ``bands`` (default: the selected ones)."""
        return [_band_name(b, self.band_descriptions, self.colorinterp) for b in (bands or self.bands)]

    def describe(self) -> str:
        """One line for notes: size, bands, dtype, CRS, nodata."""
        bands = ",".join(map(str, self.bands))
        if self.gcps:
            where = f"{len(self.gcps)} GCPs in {self.crs_name() or 'an unknown CRS'}"
        elif self.crs is not None:
            where = self.crs_name()
        else:
            where = "no CRS" + ("" if self.transform is None else " (pixel grid only)")
        nodata = "no nodata" if self.nodata is None else f"nodata {_number(self.nodata)}"
        mask = ", masked" if self.has_mask else ""
        return f"{self.width}x{self.height} px, bands {bands} of {self.count}, {self.dtype}, {where}, {nodata}{mask}"


def _crs_name(wkt: str) -> str:
    try:
        from rasterio.crs import CRS

        authority = CRS.from_wkt(wkt).to_authority()
        if authority:
            return f"{authority[0]}:{authority[1]}"
    except Exception:  # an unusual WKT: fall back to its name
        pass
    match = re.search(r'^\s*\w+\s*\[\s*"([^"]+)"', wkt)
    return match.group(1) if match else "a custom CRS"


def _band_name(band: int, descriptions: Sequence[str | None], colorinterp: Sequence[str]) -> str:
    label = descriptions[band - 1] if band - 1 < len(descriptions) else None
    if not label and band - 1 < len(colorinterp) and colorinterp[band - 1] not in ("undefined", "gray", "grey"):
        label = colorinterp[band - 1]
    return f"band {band} ({label})" if label else f"band {band}"


def _band_list(count: int, descriptions: Sequence[str | None], colorinterp: Sequence[str]) -> str:
    shown = [_band_name(b, descriptions, colorinterp).removeprefix("band ") for b in range(1, min(count, 12) + 1)]
    return ", ".join(shown) + (f", ... ({count} in all)" if count > 12 else "")


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


# --------------------------------------------------------------------------------------------------
# Reading


def _check_file(path: Path) -> None:
    if not path.exists():
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"No raster at {path}: the folder {folder} does not exist. Check the path.")
        raise InputError(
            f"No raster at {path}: the file does not exist. Check the name"
            + ("" if path.is_absolute() else f" (relative paths start from {Path.cwd()})")
            + "."
        )
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a raster file: give the path of one GeoTIFF inside it.")
    if path.stat().st_size == 0:
        raise InputError(f"Cannot read {path}: the file is empty (0 bytes). Re-export or re-download it.")


@contextlib.contextmanager
def _gdal_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn GDAL's errors into an :class:`InputError` that quotes GDAL's reason."""
    from rasterio.errors import RasterioError

    try:
        yield
    except (InputError, MemoryError):
        raise
    except RasterioError as e:
        reason = str(e).strip() or type(e).__name__
        if doing == "read":
            raise InputError(
                f"Cannot read {path} as a raster: GDAL says: {reason}. It is not a GeoTIFF (or another raster "
                "GDAL can open), or it is truncated or damaged: re-export or re-download it."
            ) from e
        raise InputError(
            f"Could not write {path}: GDAL says: {reason}. Check that the disk has space and the folder is writable."
        ) from e


def _open(path: Path):
    rasterio = _rasterio()
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with _gdal_errors(path, "read"):
            return rasterio.open(path)


def _windows(height: int, width: int, block: tuple[int, int], target: int | None = None):
    """Windows covering the raster, aligned to ``block`` (rows, cols), about ``target`` pixels each
    (default :data:`CHUNK_PIXELS`); never smaller than one block."""
    from rasterio.windows import Window

    target = CHUNK_PIXELS if target is None else target
    block_h, block_w = max(1, min(block[0], height)), max(1, min(block[1], width))
    if block_h * width <= target:
        cols = width
        rows = max(block_h, target // width // block_h * block_h)
    else:
        rows = block_h
        cols = max(block_w, target // block_h // block_w * block_w)
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            yield Window(col, row, min(cols, width - col), min(rows, height - row))


def _mask_bands(ds, bands: Sequence[int]) -> list[int]:
    """The bands whose GDAL mask (dataset mask, alpha or per-band mask) must be read; nodata is tested directly."""
    from rasterio.enums import MaskFlags

    needed: list[int] = []
    dataset_mask_read = False
    for band in bands:
        flags = ds.mask_flag_enums[band - 1]
        if MaskFlags.all_valid in flags or MaskFlags.nodata in flags:
            continue
        if MaskFlags.per_dataset in flags:
            if dataset_mask_read:
                continue
            dataset_mask_read = True
        needed.append(band)
    return needed


def _validity(raw, nodata, is_float: bool, masks: Sequence[Any]):
    """``[H, W]`` True where no band of ``raw [U, H, W]`` is nodata (or non-finite) and every mask is set."""
    import numpy as np

    valid = np.ones(raw.shape[1:], dtype=bool)
    if nodata is not None:
        hits = np.isnan(raw) if math.isnan(nodata) else raw == nodata
        valid &= ~hits.any(axis=0)
    if is_float:
        valid &= np.isfinite(raw).all(axis=0)
    for mask in masks:
        valid &= mask > 0
    return valid


def _choose_bands(ds, bands, path: Path) -> tuple[tuple[int, int, int], list[str]]:
    descriptions = tuple(ds.descriptions)
    colorinterp = tuple(ci.name for ci in ds.colorinterp)
    listing = _band_list(ds.count, descriptions, colorinterp)
    if bands is not None:
        bands = parse_bands(bands)
        bad = [b for b in bands if b > ds.count]
        if bad:
            raise InputError(
                f"Band {bad[0]} is out of range: {path} has {ds.count} band{'s' if ds.count != 1 else ''} "
                f"({listing}). Choose bands between 1 and {ds.count}"
                + (", e.g. 3,2,1." if ds.count >= 3 else ", e.g. 1.")
            )
        if len(bands) == 1:
            name = _band_name(bands[0], descriptions, colorinterp)
            return (bands[0],) * 3, [f"{name} of {path.name} repeated to grey RGB (a single band was chosen)"]
        return bands, []
    if ds.count == 1:
        return (1, 1, 1), [f"{path.name} has one band; it is repeated to grey RGB"]
    if ds.count == 2:
        raise InputError(
            f"{path} has 2 bands ({listing}); RSEdit edits three (red, green, blue) or one shown as grey. "
            "Choose which to use with bands, e.g. 1 (grey) or 1,2,2."
        )
    found = [colorinterp.index(name) + 1 if colorinterp.count(name) == 1 else None for name in _RGB_NAMES]
    if all(found):
        how = "colour interpretation"
    else:
        found = []
        for name in _RGB_NAMES:
            pattern = re.compile(rf"\b{name}\b(?!\s*[-_ ]?\s*edge)", re.IGNORECASE)
            hits = [i for i, text in enumerate(descriptions, start=1) if text and pattern.search(text)]
            found.append(hits[0] if len(hits) == 1 else None)
        how = "band descriptions"
    if all(found):
        chosen = tuple(found)
        if chosen == (1, 2, 3) and ds.count == 3:
            return chosen, []
        names = ", ".join(_band_name(b, descriptions, colorinterp) for b in chosen)
        return chosen, [f"red, green, blue taken from {names} of {path.name} (by {how})"]
    names = ", ".join(_band_name(b, descriptions, colorinterp) for b in (1, 2, 3))
    return (1, 2, 3), [
        f"{path.name}: no colour interpretation or band names say which bands are red, green and blue; "
        f"{names} used as red, green, blue (choose others with bands, e.g. 3,2,1)"
    ]


def _sample(ds, unique: Sequence[int], nodata, is_float: bool, mask_bands: Sequence[int]):
    """The selected bands read decimated to about :data:`SAMPLE_PIXELS` (nearest), and their validity."""
    from rasterio.enums import Resampling

    factor = max(1, math.ceil(math.sqrt(ds.width * ds.height / SAMPLE_PIXELS)))
    shape = (max(1, math.ceil(ds.height / factor)), max(1, math.ceil(ds.width / factor)))
    raw = ds.read(list(unique), out_shape=(len(unique), *shape), resampling=Resampling.nearest)
    masks = [ds.read_masks(b, out_shape=shape, resampling=Resampling.nearest) for b in mask_bands]
    return raw, _validity(raw, nodata, is_float, masks)


def _resolve_stretch(spec, dtype, channels, sample, path: Path, labels=()) -> tuple[Stretch | None, list[str]]:
    """The :class:`Stretch` for ``spec`` on this source; ``sample()`` gives ``(values [U, ...], valid)``
    per unique band (named by ``labels``) and ``channels`` maps each of the 3 channels to its row in it.
    ``None`` when the sample holds no valid pixel (the caller retries on every pixel)."""
    import numpy as np

    is_int = dtype.kind in "iu"
    if isinstance(spec, Stretch):
        if len(spec.low) == 1:
            spec = Stretch(spec.low * 3, spec.high * 3, spec.kind, spec.percentiles)
        if len(spec.low) != 3:
            raise InputError(f"The stretch given has {len(spec.low)} bands; give one for each of the 3 bands read.")
        return spec, []
    if spec.kind == "range":
        ranges = spec.ranges * 3 if len(spec.ranges) == 1 else spec.ranges
        return Stretch(tuple(r[0] for r in ranges), tuple(r[1] for r in ranges), "range"), []
    if spec.kind == "none":
        if not is_int:
            raise _no_maximum(path, dtype, *sample())
        top = float(np.iinfo(dtype).max)
        return Stretch((0.0,) * 3, (top,) * 3, "none"), []
    if spec.percentiles is None and dtype == np.uint8:
        return Stretch((0.0,) * 3, (255.0,) * 3, "8bit"), []
    p1, p2 = spec.percentiles or DEFAULT_PERCENTILES
    values, valid = sample()
    low, high, notes = [], [], []
    per_band = {}
    for row in sorted(set(channels)):
        picked = values[row][valid]
        if picked.size == 0:
            return None, []
        lo, hi = (float(v) for v in np.percentile(picked, [p1, p2]))
        if is_int:
            lo, hi = float(math.floor(lo)), float(math.ceil(hi))
        else:  # both ends representable in the source dtype, so 0 and 1 map back onto them exactly
            lo, hi = float(dtype.type(lo)), float(dtype.type(hi))
        if hi <= lo:
            lo, hi = float(picked.min()), float(picked.max())
        if hi <= lo:
            hi = lo + (1.0 if is_int else max(abs(lo), 1.0) * 1e-3)
            label = labels[row] if row < len(labels) else f"band {row + 1}"
            notes.append(f"{label} is constant ({_number(lo)}) over its valid pixels; it reads as black")
        per_band[row] = (lo, hi)
    for row in channels:
        low.append(per_band[row][0])
        high.append(per_band[row][1])
    return Stretch(tuple(low), tuple(high), "percentile", (p1, p2)), notes


def _no_maximum(path: Path, dtype, values, valid) -> InputError:
    import numpy as np

    picked = values[:, valid]
    picked = picked[np.isfinite(picked)]
    seen = f" (its values run from {_number(picked.min())} to {_number(picked.max())})" if picked.size else ""
    return InputError(
        f"Stretch 'none' divides integers by their dtype's maximum, but {path} holds {dtype} values, which have "
        f"none{seen}. Give the range of its values instead, e.g. stretch '0,1' for reflectance in 0..1 or "
        "'0,10000' for scaled reflectance, or use the default 'percentile'."
    )


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


def _check_window(height: int, width: int, top, left, rows, cols, doing: str) -> tuple[int, int, int, int]:
    """``top, left, rows, cols`` as ints, refused unless they name a non-empty window inside ``height x width``."""
    try:
        top, left, rows, cols = (operator.index(v) for v in (top, left, rows, cols))
    except TypeError:
        raise InputError(
            f"Cannot {doing} the window top={top!r}, left={left!r}, {rows!r}x{cols!r}: give whole numbers of pixels."
        ) from None
    if top < 0 or left < 0 or rows < 1 or cols < 1 or top + rows > height or left + cols > width:
        raise InputError(
            f"Cannot {doing} rows {top}..{top + rows - 1}, columns {left}..{left + cols - 1}: the window must be at "
            f"least 1x1 and lie inside the scene ({height} rows x {width} columns, 0-based)."
        )
    return top, left, rows, cols


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
        for window in _windows(self.height, self.width, self._block):
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
    """Read three bands of a GeoTIFF for editing; see :class:`RasterScene` and the module docstring.

    ``bands``: three 1-based band numbers (red, green, blue) or one (repeated to grey); by default
    red, green, blue by colour interpretation, else by band description, else bands 1-3 (noted).
    ``stretch``: text in the module's syntax, a :class:`StretchSpec` or a :class:`Stretch` (e.g.
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
        for window in _windows(height, width, source._block):
            rows, cols = window.toslices()
            valid[rows, cols] = source._window(window, out=image[:, rows, cols])[1]
        invalid = int(valid.size - np.count_nonzero(valid))
        notes = source._notes((invalid, valid.size, False))
        return RasterScene(image=image, valid=valid, geo=source.geo, notes=notes)


def _interp(ds) -> tuple[str, ...]:
    return tuple(ci.name for ci in ds.colorinterp)


def _geo_info(ds, path: Path, chosen, stretch: Stretch, dtype, nodata, mask_bands) -> GeoInfo:
    transform = ds.transform
    gcps, gcps_crs = ds.gcps if ds.gcps else ([], None)
    return GeoInfo(
        path=str(path),
        crs=ds.crs.to_wkt() if ds.crs else None,
        transform=None if transform.is_identity else tuple(float(v) for v in tuple(transform)[:6]),
        width=ds.width,
        height=ds.height,
        dtype=str(dtype),
        count=ds.count,
        nodata=nodata,
        band_descriptions=tuple(ds.descriptions),
        colorinterp=_interp(ds),
        bands=tuple(chosen),
        stretch=stretch,
        tags={str(k): str(v) for k, v in ds.tags().items()},
        scales=tuple(float(v) for v in ds.scales),
        offsets=tuple(float(v) for v in ds.offsets),
        gcps=tuple((float(g.row), float(g.col), float(g.x), float(g.y), float(g.z or 0.0)) for g in gcps),
        gcps_crs=gcps_crs.to_wkt() if gcps and gcps_crs else None,
        has_mask=bool(mask_bands),
    )


# --------------------------------------------------------------------------------------------------
# Writing


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


def _check_source_unchanged(src, geo: GeoInfo, why: str, remedy: str) -> None:
    now = (src.width, src.height, src.count, str(src.dtypes[0]))
    then = (geo.width, geo.height, geo.count, geo.dtype)
    if now != then:
        raise InputError(
            f"{why} {geo.path}, but that file changed since it was read ({then[0]}x{then[1]}, {then[2]} bands, "
            f"{then[3]} then; {now[0]}x{now[1]}, {now[2]} bands, {now[3]} now). Read it again, or {remedy}."
        )


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

    def write(self, index: int, top: int, left: int, pixels, valid=None) -> None:
        """Write ``pixels`` (``[3, h, w]`` in ``0..1``) at rows ``top..``, columns ``left..`` of scene ``index`` (0).

        ``valid``: this window's bool ``[h, w]`` (True = data), instead of the source's own validity.
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
        for window in _windows(geo.height, geo.width, (BLOCK_SIZE, BLOCK_SIZE)):
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
