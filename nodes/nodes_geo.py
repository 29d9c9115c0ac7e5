"""GeoTIFF nodes (V3): RSEdit Load GeoTIFF and RSEdit Save GeoTIFF.

ComfyUI's own Load Image and Save Image read and write 8-bit pictures and drop the georeference.
These two keep it: the loader reads a GeoTIFF from ComfyUI's input folder with
:func:`~rsedit_core.raster.read_raster` (bands chosen, stretched to ``0..1``) and passes its
:class:`~rsedit_core.raster.GeoInfo` on as ``GEO``; the saver maps an IMAGE back through that
stretch with :func:`~rsedit_core.raster.write_raster` into a GeoTIFF on the source's grid (same
CRS, transform, size, dtype and nodata) in ComfyUI's output folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import comfy.model_management as mm
import folder_paths
import numpy as np
from comfy.cli_args import args as comfy_args
from comfy_api.latest import io, ui

from ..rsedit_core import __version__
from ..rsedit_core.errors import InputError
from ..rsedit_core.raster import COMPRESSIONS, RASTER_SUFFIXES, STRETCH_HELP, RasterSource, read_raster, write_raster

RSEditGeo = io.Custom("RSEDIT_GEO")
CATEGORY = "RSEdit/geo"
LOAD_NAME = "RSEdit Load GeoTIFF"
SAVE_NAME = "RSEdit Save GeoTIFF"
DEFAULT_PREFIX = "rsedit/geotiff"


# --------------------------------------------------------------------------------------------------
# Loading


def list_geotiffs() -> list[str]:
    """The GeoTIFFs in ComfyUI's input folder and its immediate subfolders (``sub/scene.tif``),
    sorted; hidden files and folders are skipped. Read at every schema request, so ComfyUI's
    Refresh lists files added since the start."""
    root = folder_paths.get_input_directory()
    found: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_file() and entry.name.lower().endswith(RASTER_SUFFIXES):
                found.append(entry.name)
            elif entry.is_dir():
                for child in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if not child.name.startswith(".") and child.is_file():
                        if child.name.lower().endswith(RASTER_SUFFIXES):
                            found.append(f"{entry.name}/{child.name}")
        except OSError:  # a folder that vanished or cannot be read: list the rest
            continue
    return sorted(found)


def _input_path(image: str) -> tuple[str | None, str]:
    """The file ``image`` names in ComfyUI's input folder (or the folder its ``[output]``/``[temp]``
    annotation names), and a message for the user when there is none."""
    name, base = folder_paths.annotated_filepath(str(image))
    base = os.path.abspath(base or folder_paths.get_input_directory())
    path = os.path.abspath(os.path.join(base, name))
    if not name or os.path.commonpath((base, path)) != base:
        return None, f"{LOAD_NAME}: {image!r} is not a file inside ComfyUI's input folder; choose one from the list."
    if not os.path.isfile(path):
        return None, (
            f"{LOAD_NAME}: no GeoTIFF named {image!r} in {base}. Put the .tif there (or in a subfolder of it) and "
            "press Refresh (R), then choose it from the list."
        )
    return path, ""


class RSEditLoadGeoTIFF(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditLoadGeoTIFF",
            display_name=LOAD_NAME,
            category=CATEGORY,
            description="Loads a GeoTIFF (8/16-bit or float, any band count, with its CRS and nodata) from ComfyUI's "
            "input folder: three bands stretched to a 0..1 IMAGE, the georeference as GEO for RSEdit Save "
            "GeoTIFF, and the nodata pixels as a MASK.",
            inputs=[
                io.Combo.Input(
                    "image",
                    options=list_geotiffs(),
                    tooltip="A .tif/.tiff in ComfyUI's input folder or one of its subfolders (press R after adding "
                    "files). COGs work too.",
                ),
                io.String.Input(
                    "bands",
                    default="",
                    tooltip="Which bands become red, green, blue: 1-based numbers such as 3,2,1 (or one band, shown as "
                    "grey). Empty = automatic: by colour interpretation or band names, else 1,2,3.",
                ),
                io.String.Input(
                    "stretch",
                    default="percentile",
                    tooltip=f"How source values map to 0..1: {STRETCH_HELP}. The same stretch maps the edit back "
                    "when saving.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The three chosen bands, stretched to 0..1 [1,H,W,3]."),
                RSEditGeo.Output(
                    display_name="geo",
                    tooltip="CRS, transform, dtype, nodata, bands and stretch of the source, for RSEdit Save GeoTIFF.",
                ),
                io.Mask.Output(
                    display_name="nodata",
                    tooltip="1 where the source is nodata or masked (black in the image), 0 on data [1,H,W].",
                ),
            ],
        )

    @classmethod
    def validate_inputs(cls, image: str) -> bool | str:
        path, problem = _input_path(image)
        return True if path is not None else problem

    @classmethod
    def fingerprint_inputs(cls, image: str, **kwargs):
        """Re-run when the file changes (ComfyUI otherwise reuses its cached output for the same name)."""
        path, _ = _input_path(image)
        try:
            stat = os.stat(path) if path else None
        except OSError:
            stat = None
        return (image, stat.st_mtime_ns, stat.st_size) if stat else (image, None)

    @classmethod
    def execute(cls, image: str, bands: str = "", stretch: str = "percentile") -> io.NodeOutput:
        import torch

        path, problem = _input_path(image)
        if path is None:
            raise InputError(problem)
        scene = read_raster(path, bands=bands.strip() or None, stretch=stretch)
        pixels = torch.from_numpy(scene.image).movedim(0, -1).unsqueeze(0).contiguous()
        nodata = torch.from_numpy(~scene.valid).float().unsqueeze(0)
        return io.NodeOutput(pixels, scene.geo, nodata, ui=ui.PreviewText("\n".join(scene.notes)))


# --------------------------------------------------------------------------------------------------
# Saving


def _output_folder(prefix: str) -> tuple[Path, str, str]:
    """``(folder, file stem, subfolder)`` for ``filename_prefix`` inside ComfyUI's output folder;
    a prefix that would leave it is refused (as Save Image refuses it)."""
    output = os.path.abspath(folder_paths.get_output_directory())
    text = str(prefix).strip()
    if not text:
        raise InputError(f"{SAVE_NAME}: filename_prefix is empty; give one such as {DEFAULT_PREFIX!r}.")
    normal = os.path.normpath(text)
    subfolder, stem = os.path.dirname(normal), os.path.basename(normal)
    folder = os.path.abspath(os.path.join(output, subfolder))
    try:
        inside = os.path.commonpath((output, folder)) == output
    except ValueError:  # another drive (Windows)
        inside = False
    if os.path.isabs(text) or not inside or stem in ("", ".", ".."):
        raise InputError(
            f"{SAVE_NAME}: filename_prefix {prefix!r} points outside ComfyUI's output folder ({output}); files are "
            f"only written inside it. Use a relative prefix such as {DEFAULT_PREFIX!r} (subfolders are created)."
        )
    relative = os.path.relpath(folder, output)
    return Path(folder), stem, "" if relative == "." else relative.replace(os.sep, "/")


def _next_counter(folder: Path, stem: str) -> int:
    """One above the highest ``{stem}_NNNNN_`` in ``folder`` (any extension, as Save Image counts)."""
    pattern = re.compile(rf"{re.escape(os.path.normcase(stem))}_(\d+)_")
    highest = 0
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names:
        match = pattern.match(os.path.normcase(name))
        if match:
            highest = max(highest, int(match.group(1)))
    return highest + 1


def _check_images(images, geo) -> None:
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise InputError(f"{SAVE_NAME}: images must be a ComfyUI IMAGE [B,H,W,3]; got shape {tuple(images.shape)}.")
    height, width = images.shape[1:3]
    if (width, height) != (geo.width, geo.height):
        raise InputError(
            f"{SAVE_NAME}: the image is {width}x{height} px but its GEO ({Path(geo.path).name}) is "
            f"{geo.width}x{geo.height} px (width x height). A GeoTIFF is written on its source's grid, so the image "
            "must keep the loader's size: a node in between changed it (an upscaler such as Upscale Image By or a "
            "model upscaler, a crop, a resize). Connect the sampler's image straight to this node (RSEdit keeps the "
            "source's size), or save a resized image with Save Image, which writes no georeference."
        )


def _nodata_masks(mask, images, geo) -> list | None:
    """One bool ``[H, W]`` validity (True = data) per image from the MASK (1 = nodata), or ``None``."""
    if mask is None:
        return None
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3 or tuple(mask.shape[1:]) != (geo.height, geo.width):
        raise InputError(
            f"{SAVE_NAME}: the nodata mask is {mask.shape[-1]}x{mask.shape[-2]} but the image and its GEO are "
            f"{geo.width}x{geo.height} (width x height). Connect the nodata output of the RSEdit Load GeoTIFF that "
            "gave the GEO."
        )
    if mask.shape[0] not in (1, images.shape[0]):
        raise InputError(
            f"{SAVE_NAME}: {mask.shape[0]} nodata masks for {images.shape[0]} images; give one mask for all images or "
            "one per image."
        )
    valid = mask.detach().float().cpu().numpy() < 0.5
    return [valid[min(i, valid.shape[0] - 1)] for i in range(images.shape[0])]


def _source_validity(geo) -> tuple[object, list[str]]:
    """The source's own validity ``[H, W]`` (reopening ``geo.path``), or all data with a note saying why."""
    path = Path(geo.path)
    everything = np.ones((geo.height, geo.width), dtype=bool)
    can_be_invalid = geo.nodata is not None or geo.has_mask or np.dtype(geo.dtype).kind == "f"
    if not can_be_invalid:
        return everything, []
    advice = "connect the loader's nodata mask to this node to keep nodata"
    if not path.is_file():
        return everything, [
            f"no nodata mask connected and the source {path.name} is gone, so every pixel was written as data "
            f"({advice})"
        ]
    try:
        with RasterSource.open(path, bands=geo.bands, stretch=geo.stretch) as source:
            if (source.width, source.height) != (geo.width, geo.height):
                raise InputError(f"it is now {source.width}x{source.height}, not {geo.width}x{geo.height}")
            valid = source.valid(0, 0, geo.height, geo.width)
    except InputError as e:
        return everything, [
            f"no nodata mask connected and the source {path.name} could not be read again ({e}), so every pixel was "
            f"written as data ({advice})"
        ]
    return valid, [f"nodata taken from the source {path.name} (no nodata mask connected)"]


def _upstream_sampler(prompt, node_id) -> dict | None:
    """The one RSEdit Dual-CFG Sampler upstream of this node in the queued graph, or ``None``."""
    if not isinstance(prompt, dict) or node_id is None or str(node_id) not in prompt:
        return None
    seen, stack, samplers = set(), [str(node_id)], []
    while stack:
        current = stack.pop()
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        node = prompt[current]
        if current != str(node_id) and node.get("class_type") == "RSEditSampler":
            samplers.append(node)
            continue
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                stack.append(value[0])
    return samplers[0] if len(samplers) == 1 else None


def _linked(prompt, node: dict, name: str, class_type: str) -> dict | None:
    link = (node.get("inputs") or {}).get(name)
    if isinstance(link, list) and len(link) == 2 and prompt.get(str(link[0]), {}).get("class_type") == class_type:
        return prompt[str(link[0])]
    return None


def provenance_tags(prompt, node_id) -> dict[str, str]:
    """Tags from the queued graph: the instruction, model and settings of the one sampler upstream,
    when they are constants there (a linked value is left out). Empty with ``--disable-metadata``."""
    if getattr(comfy_args, "disable_metadata", False):
        return {}
    sampler = _upstream_sampler(prompt, node_id)
    if sampler is None:
        return {}
    tags: dict[str, str] = {}
    inputs = sampler.get("inputs") or {}
    names = {
        "seed": "RSEDIT_SEED",
        "steps": "RSEDIT_STEPS",
        "text_cfg": "RSEDIT_TEXT_CFG",
        "image_cfg": "RSEDIT_IMAGE_CFG",
        "scheduler": "RSEDIT_SCHEDULER",
        "tile": "RSEDIT_TILE",
    }
    for key, tag in names.items():
        value = inputs.get(key)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            tags[tag] = f"{value:g}" if isinstance(value, float) else str(value)
    if tags.get("RSEDIT_TEXT_CFG") == "0":
        tags["RSEDIT_TEXT_CFG"] = "default (the editor's own)"
    if tags.get("RSEDIT_TILE") == "0":
        tags["RSEDIT_TILE"] = "off"
    text = _linked(prompt, sampler, "conditioning", "RSEditTextEncode")
    if text is not None:
        for key, tag in (("instruction", "RSEDIT_INSTRUCTION"), ("negative", "RSEDIT_NEGATIVE_PROMPT")):
            if isinstance(text["inputs"].get(key), str):
                tags[tag] = text["inputs"][key]
    loader = _linked(prompt, sampler, "rsedit_model", "RSEditLoader")
    if loader is not None and isinstance(loader["inputs"].get("model"), str):
        tags["RSEDIT_MODEL"] = loader["inputs"]["model"]
    return tags


class RSEditSaveGeoTIFF(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditSaveGeoTIFF",
            display_name=SAVE_NAME,
            category=CATEGORY,
            description="Saves images as GeoTIFFs on the grid of the GeoTIFF they came from (same CRS, transform, "
            "size, dtype and nodata; the loader's stretch undone) in ComfyUI's output folder, one file per image.",
            inputs=[
                io.Image.Input("images", tooltip="The edited images; each must be the size of the GEO's raster."),
                RSEditGeo.Input("geo", tooltip="The geo output of the RSEdit Load GeoTIFF the images came from."),
                io.Mask.Input(
                    "nodata_mask",
                    optional=True,
                    tooltip="1 = write as nodata (connect the loader's nodata output). Without it the nodata pixels "
                    "are taken from the source file, if it is still there.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default=DEFAULT_PREFIX,
                    tooltip="File name start inside ComfyUI's output folder (subfolders allowed); files are named "
                    "PREFIX_00001_.tif, PREFIX_00002_.tif, ...",
                ),
                io.Combo.Input(
                    "compress",
                    options=list(COMPRESSIONS),
                    default="deflate",
                    tooltip="Compression (lossless): deflate, lzw, zstd or none.",
                ),
                io.Boolean.Input(
                    "cog",
                    default=False,
                    tooltip="Write a Cloud-Optimized GeoTIFF (with overviews) instead of a plain tiled GeoTIFF.",
                ),
                io.Boolean.Input(
                    "keep_other_bands",
                    default=False,
                    tooltip="Also copy the source's unedited bands (e.g. NIR) unchanged, in the source's band order; "
                    "they no longer match the edit. Needs the source file.",
                ),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls,
        images,
        geo,
        filename_prefix: str = DEFAULT_PREFIX,
        compress: str = "deflate",
        cog: bool = False,
        keep_other_bands: bool = False,
        nodata_mask=None,
    ) -> io.NodeOutput:
        # Everything checkable is checked before the first file is written.
        folder, stem, subfolder = _output_folder(filename_prefix)
        _check_images(images, geo)
        masks = _nodata_masks(nodata_mask, images, geo)
        notes: list[str] = []
        if keep_other_bands and not Path(geo.path).is_file():
            raise InputError(
                f"{SAVE_NAME}: keep_other_bands copies the unedited bands from the source {geo.path}, which no longer "
                "exists. Restore it, or turn keep_other_bands off."
            )
        if masks is None:
            valid, notes = _source_validity(geo)
            masks = [valid] * images.shape[0]
        tags = {"RSEDIT_VERSION": __version__, "RSEDIT_NODE": f"{SAVE_NAME} (RSEditSaveGeoTIFF)"}
        tags.update(provenance_tags(cls.hidden.prompt, cls.hidden.unique_id))
        folder.mkdir(parents=True, exist_ok=True)
        counter = _next_counter(folder, stem)
        written: list[str] = []
        for index, image in enumerate(images):
            mm.throw_exception_if_processing_interrupted()
            pixels = image.movedim(-1, 0)
            pixels = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels[:3]
            name = f"{stem}_{counter + index:05}_.tif"
            image_tags = dict(tags)
            if images.shape[0] > 1:
                image_tags["RSEDIT_IMAGE"] = f"{index + 1} of {images.shape[0]}"
            notes += write_raster(
                folder / name,
                pixels.float().clamp(0, 1),
                geo,
                valid=masks[index],
                keep_other_bands=keep_other_bands,
                cog=cog,
                compress=compress,
                tags=image_tags,
            )
            written.append(f"{subfolder}/{name}" if subfolder else name)
        if images.shape[-1] == 4:
            notes.append("the images' fourth (alpha) channel was not written")
        text = "\n".join([f"saved {', '.join(written)} in ComfyUI's output folder", *dict.fromkeys(notes)])
        return io.NodeOutput(ui=ui.PreviewText(text))


NODES = [RSEditLoadGeoTIFF, RSEditSaveGeoTIFF]
