"""The georeference kept beside an edit (:class:`GeoInfo`), band choice and naming, CRS names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .stretch import Stretch, _number

_RGB_NAMES = ("red", "green", "blue")


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
