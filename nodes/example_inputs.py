"""Put the example workflows' input images in ComfyUI's input folder, so the templates run as loaded.

The images are synthetic (``scripts/make_sample_scene.py``): a drawn coastal town, the same town
with the waterfront around the pier "painted" (alpha 0, which Load Image turns into a MASK of 1), a
drawn 0-4 damage class map of its buildings, and the town as a 4-band 16-bit GeoTIFF with a UTM
georeference and a nodata corner (``scripts/make_sample_geotiff.py``). Existing files are never
overwritten; a deleted one comes back at the next start unless ``RSEDIT_NO_EXAMPLE_INPUTS=1`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "rsedit_core" / "assets"
# input-folder name -> asset file
EXAMPLE_INPUTS = {
    "rsedit_sample_scene.png": "sample_scene.png",
    "rsedit_sample_scene_masked.png": "sample_scene_masked.png",
    "rsedit_sample_damage_target.png": "sample_damage_target.png",
    "rsedit_sample_scene.tif": "sample_scene.tif",
}


def install_example_inputs(input_dir: str | Path) -> list[Path]:
    """Copy the missing example inputs into ``input_dir``; returns what was copied. A folder that
    cannot be written to is logged and skipped: the nodes work without these files."""
    copied = []
    if os.environ.get("RSEDIT_NO_EXAMPLE_INPUTS", "") not in ("", "0"):
        return copied
    for name, asset in EXAMPLE_INPUTS.items():
        target = Path(input_dir) / name
        if target.exists():
            continue
        partial = target.with_name(f".{name}.partial-{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ASSETS / asset, partial)
            os.replace(partial, target)  # never a half-written file under the final name
        except OSError as e:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            logger.warning("Could not copy the example input %s to %s: %s", asset, target, e)
            continue
        copied.append(target)
    if copied:
        logger.info("RSEdit: copied %d example input image(s) to %s", len(copied), input_dir)
    return copied
