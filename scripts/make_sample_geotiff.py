"""Write the sample GeoTIFF shipped with RSEdit for ComfyUI, from the synthetic sample scene.

``rsedit_core/assets/sample_scene.tif`` is ``sample_scene.png`` (drawn by ``make_sample_scene.py``;
synthetic, no third-party imagery) turned into what a multispectral product looks like, so the
GeoTIFF workflow has a realistic input:

- 768 x 640 px: the 512 px scene scaled 1.5x (Lanczos) and cropped to 640 rows around the pier, so
  it is larger than the sampler's 512 px tile and the workflow edits it in blended windows;
- four uint16 bands, blue, green, red and near-infrared (band descriptions and colour
  interpretation), in scaled reflectance (x 10000, like Sentinel-2 L2A): each visible band maps
  the PNG's 0..255 onto 100..3000, so the usual fixed stretch ``0,3000`` shows the drawing's own
  colours (the default per-band percentile stretch tints it, as it tints real scenes); the NIR
  band is made up from the colours (bright over vegetation, dark over water): plausible, not
  measured;
- EPSG:32617 (UTM zone 17N), 10 m pixels, placed on the Gulf coast of Florida near Fort Myers
  Beach. The place is nominal: the scene is a drawing, not of that (or any) coast;
- nodata 0, with a small triangular nodata corner in the north-west (the edge of a footprint);
  valid pixels are never 0;
- tiled 256 x 256, band-interleaved, deflate with the horizontal predictor, tags saying what it is.

    python scripts/make_sample_geotiff.py                  # rewrite rsedit_core/assets/sample_scene.tif
    python scripts/make_sample_geotiff.py --out OTHER.tif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "rsedit_core" / "assets"
SOURCE = ASSETS / "sample_scene.png"
OUT = ASSETS / "sample_scene.tif"

WIDTH, HEIGHT = 768, 640
CRS = "EPSG:32617"
PIXEL = 10.0
# Upper-left corner in UTM 17N metres (about 26.45 N, 81.95 W: the Gulf coast near Fort Myers Beach).
ORIGIN = (405_000.0, 2_927_000.0)
NODATA = 0
# Pixels with x + y below this (north-west corner) are nodata.
NODATA_CORNER = 96
BANDS = ("blue", "green", "red", "nir")
# Visible bands: 0..255 -> LOW..LOW + SPAN (scaled reflectance).
LOW, SPAN = 100, 2900


def scene_pixels(source: Path = SOURCE) -> np.ndarray:
    """The sample scene scaled 1.5x and cropped to ``HEIGHT`` rows around the pier: float32 ``[H, W, 3]`` 0..255."""
    with Image.open(source) as opened:
        rgb = opened.convert("RGB")
    scaled = rgb.resize((WIDTH, round(rgb.height * WIDTH / rgb.width)), Image.Resampling.LANCZOS)
    if scaled.height < HEIGHT:
        raise ValueError(f"{source} is {rgb.width}x{rgb.height}: too short to crop {WIDTH}x{HEIGHT} from")
    top = (scaled.height - HEIGHT) // 2
    return np.asarray(scaled.crop((0, top, WIDTH, top + HEIGHT)), dtype=np.float32)


def bands(rgb: np.ndarray) -> np.ndarray:
    """uint16 ``[4, H, W]``: blue, green, red in scaled reflectance, and a made-up NIR; nodata corner 0."""
    r, g, b = (rgb[..., i] / 255.0 for i in range(3))
    visible = [LOW + SPAN * channel for channel in (b, g, r)]
    # Vegetation reflects NIR strongly (green above red), water absorbs it (blue above the rest).
    greenness = np.clip((g - r) / (g + r + 1e-3) * 4.0, 0.0, 1.0)
    wetness = np.clip((b - np.maximum(r, g)) / (b + 1e-3) * 3.0, 0.0, 1.0)
    brightness = (r + g + b) / 3.0
    nir = LOW + 2600 * brightness + 2800 * greenness
    nir = nir * (1.0 - 0.85 * wetness)
    out = np.rint(np.stack([*visible, nir])).clip(1, 10_000).astype(np.uint16)  # valid pixels are never 0
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    out[:, xx + yy < NODATA_CORNER] = NODATA
    return out


def write(path: Path = OUT, source: Path = SOURCE) -> Path:
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    data = bands(scene_pixels(source))
    profile = dict(
        driver="GTiff",
        width=WIDTH,
        height=HEIGHT,
        count=len(BANDS),
        dtype="uint16",
        crs=CRS,
        transform=from_origin(*ORIGIN, PIXEL, PIXEL),
        nodata=NODATA,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=2,
        zlevel=9,
        interleave="band",  # compresses better than pixel interleaving here (1.9 MB against 2.1 MB)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with rasterio.open(partial, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(BANDS, start=1):
            dst.set_band_description(index, name)
        dst.colorinterp = [ColorInterp[name] for name in BANDS]
        dst.update_tags(
            TIFFTAG_IMAGEDESCRIPTION="RSEdit sample scene: synthetic (drawn by scripts/make_sample_scene.py), "
            "not real imagery; placed nominally in UTM 17N",
            SOURCE="rsedit_core/assets/sample_scene.png via scripts/make_sample_geotiff.py",
            UNITS="scaled reflectance x 10000 (visible bands from the drawing, NIR made up)",
        )
    partial.replace(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output GeoTIFF (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    path = write(args.out)
    print(f"wrote {path} ({WIDTH}x{HEIGHT}, {len(BANDS)} bands uint16, {CRS}, {PIXEL:g} m; {path.stat().st_size:,} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
