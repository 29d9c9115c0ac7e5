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

One concern per module: :mod:`.stretch` (the stretch syntax, :class:`Stretch`, :class:`StretchSpec`),
:mod:`.geo` (:class:`GeoInfo`, band choice and names), :mod:`._io` (opening with clear errors,
windows, validity), :mod:`.source` (reading) and :mod:`.sink` (writing, tags, COG).
This package is imported by the CLI parser: numpy and rasterio are imported inside the functions.
"""

from __future__ import annotations

from ._io import CHUNK_PIXELS, RASTER_SUFFIXES, is_raster_path
from .geo import GeoInfo, parse_bands
from .sink import BLOCK_SIZE, COMPRESSIONS, RasterSink, write_raster
from .source import SAMPLE_PIXELS, RasterScene, RasterSource, read_raster
from .stretch import DEFAULT_PERCENTILES, STRETCH_HELP, STRETCH_KINDS, Stretch, StretchSpec, parse_stretch

__all__ = [
    "BLOCK_SIZE",
    "CHUNK_PIXELS",
    "COMPRESSIONS",
    "DEFAULT_PERCENTILES",
    "RASTER_SUFFIXES",
    "SAMPLE_PIXELS",
    "STRETCH_HELP",
    "STRETCH_KINDS",
    "GeoInfo",
    "RasterScene",
    "RasterSink",
    "RasterSource",
    "Stretch",
    "StretchSpec",
    "is_raster_path",
    "parse_bands",
    "parse_stretch",
    "read_raster",
    "write_raster",
]
