"""Put the example workflows' input images in ComfyUI's input folder, so the templates run as loaded.

The images are synthetic (``scripts/make_sample_scene.py``): a drawn coastal town, the same town
with the harbour district "painted" (alpha 0, which Load Image turns into a MASK of 1), and a
drawn 0-4 damage class map of its buildings. Existing files are never overwritten.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "rsedit_core" / "assets"
# input-folder name -> asset file
EXAMPLE_INPUTS = {
    "rsedit_sample_scene.png": "sample_scene.png",
    "rsedit_sample_scene_masked.png": "sample_scene_masked.png",
    "rsedit_sample_damage_target.png": "sample_damage_target.png",
}


def install_example_inputs(input_dir: str | Path) -> list[Path]:
    """Copy the missing example inputs into ``input_dir``; returns what was copied. A folder that
    cannot be written to is logged and skipped: the nodes work without these files."""
    copied = []
    for name, asset in EXAMPLE_INPUTS.items():
        target = Path(input_dir) / name
        if target.exists():
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ASSETS / asset, target)
        except OSError as e:
            logger.warning("Could not copy the example input %s to %s: %s", asset, target, e)
            continue
        copied.append(target)
    if copied:
        logger.info("RSEdit: copied %d example input image(s) to %s", len(copied), input_dir)
    return copied
