"""GDAL plumbing shared by reading and writing: files checked and opened with clear errors, GDAL's
errors told as :class:`~rsedit_core.errors.InputError`, block-aligned windows, validity from nodata
and masks, window checks."""

from __future__ import annotations

import contextlib
import math
import operator
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, require

RASTER_SUFFIXES = (".tif", ".tiff")
#: Reads and writes go by windows of about this many pixels, aligned to the file's blocks.
CHUNK_PIXELS = 1 << 22


def is_raster_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a GeoTIFF (by its suffix: :data:`RASTER_SUFFIXES`)."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def _rasterio():
    return require("rasterio", "Reading and writing GeoTIFFs", "rasterio>=1.3")


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
