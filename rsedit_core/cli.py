"""The ``rsedit`` command line: ``rsedit edit`` and ``rsedit demo`` (damage commands in :mod:`.cli_damage`).

Only argparse and the light default/registry modules are imported here, so ``rsedit --help``
answers at once; torch, diffusers and the models load when a command runs. Every check that needs
no model (settings, device, output paths, input images) runs before the model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from importlib import resources
from pathlib import Path

from . import defaults
from .backbones import UNET
from .errors import ModelNotFoundError, RSEditError
from .schedulers import SCHEDULER_NAMES

logger = logging.getLogger("rsedit")

DEMO_PROMPT = (
    "Flood the coastal town after a hurricane: brown seawater covers the beach, the promenade and "
    "the streets of the two blocks nearest the shore, the buildings there stand in water up to "
    "their roofs; the pier is submerged; roads further inland, the farm fields and the parks stay "
    "dry and unchanged."
)
SMOKE_LABEL = "SMOKE RUN: random weights, not an edit"
SMOKE_BANNER = (
    "SMOKE RUN: tiny random weights, built on the fly. This checks that the install and the whole\n"
    "editing path work; the output image is noise, not an edit, and is stamped SMOKE RUN. For a real\n"
    f"edit, download the released weights ({UNET.release_repo}, subfolder {UNET.release_subfolder})\n"
    "and pass --model (README, Models)."
)


def sample_scene() -> Path:
    """The synthetic demo scene shipped with the package (see scripts/make_sample_scene.py)."""
    return Path(str(resources.files("rsedit_core") / "assets" / "sample_scene.png"))


def _progress(step: int, total: int, _latents) -> None:
    width = 30
    done = width * step // total
    print(f"\r  sampling [{'#' * done}{'.' * (width - done)}] {step}/{total}", end="", file=sys.stderr)
    if step == total:
        print(file=sys.stderr)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {text!r}") from None
    if not 0 <= value <= defaults.MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed must be from 0 to 2**64-1, got {value}")
    return value


def _pixels(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of pixels (0 = no limit), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = no limit), got {text}")
    return value


def _add_sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--negative-prompt",
        default=defaults.NEGATIVE_PROMPT,
        help="Text to steer away from (default: empty, as in the paper).",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=defaults.STEPS,
        help=f"Denoising steps (default {defaults.STEPS}; the paper's figures use {defaults.PAPER_STEPS}).",
    )
    parser.add_argument(
        "--text-cfg",
        type=float,
        default=None,
        help=f"Text guidance s_T: higher follows the instruction more; <= 1 turns guidance off "
        f"(default: the editor's, {defaults.text_cfg_by_backbone()}).",
    )
    parser.add_argument(
        "--image-cfg",
        type=float,
        default=defaults.IMAGE_CFG,
        help=f"Image guidance s_I: higher stays closer to the source (default {defaults.IMAGE_CFG}).",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=defaults.SEED,
        help=f"Noise seed, 0..2**64-1 (default {defaults.SEED}, the paper's).",
    )
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULER_NAMES,
        default=defaults.SCHEDULER,
        help="Sampler; 'default' uses the model folder's own (Euler for RSEdit-UNet, DPM-Solver for RSEdit-DiT).",
    )
    parser.add_argument(
        "--size-policy",
        choices=defaults.SIZE_POLICIES,
        default=defaults.SIZE_POLICY,
        help="How to reach the editor's multiple (8 px U-Net, 16 px DiT): pad (default, keeps every pixel), "
        "resize or crop.",
    )
    parser.add_argument("--device", default="auto", help=f"Where to run: {defaults.DEVICE_HELP} (default auto).")
    parser.add_argument(
        "--dtype",
        choices=["auto", *defaults.DTYPE_NAMES],
        default="auto",
        help="Weights dtype (default auto: fp16 on a GPU, fp32 on the CPU).",
    )
    parser.add_argument(
        "--text-encoder-dtype",
        choices=["same", *defaults.DTYPE_NAMES],
        default="same",
        help="Text encoder dtype (default: as --dtype); bf16 halves the DiT's T5-XXL.",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=defaults.VARIATIONS,
        help="Variations per source image, each from other noise (default 1).",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help=f"Scenes larger than this (px) are edited in overlapping windows of this size, denoised together "
        f"at every step, so there are no seams (default {defaults.TILE}, the editors' training size; 0 = always "
        "one piece).",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        help=f"Overlap of the windows in px (default: a quarter of the tile, at most {defaults.TILE_OVERLAP}).",
    )
    parser.add_argument(
        "--window-batch",
        type=int,
        default=defaults.WINDOW_BATCH,
        help=f"Windows per forward pass (default {defaults.WINDOW_BATCH}); lower it if memory runs out.",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=_pixels,
        default=None,
        help="Refuse larger input images (decompression-bomb guard; default $RSEDIT_MAX_IMAGE_PIXELS or "
        "the built-in limit; 0 = no limit).",
    )


def _output_paths(out: Path, sources: int, variations: int) -> list[Path]:
    if sources * variations == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{s}_{v}{out.suffix}") for s in range(sources) for v in range(variations)]


def _run(args, model_spec: str, subfolder: str | None, images: list[Path], prompt: str, out: Path, label: str) -> int:
    from .devices import resolve_device, resolve_dtype
    from .outputs import check_output_path
    from .settings import EditSettings

    start = time.perf_counter()
    settings = EditSettings(
        steps=args.steps,
        text_cfg=args.text_cfg,
        image_cfg=args.image_cfg,
        seed=args.seed,
        scheduler=args.scheduler,
        num_variations=args.num_images,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        window_batch=args.window_batch,
    )
    settings.check()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    paths = [check_output_path(p, inputs=images) for p in _output_paths(out, len(images), args.num_images)]
    from .raster import is_raster_path

    if any(is_raster_path(path) for path in images):
        return _run_scene(args, model_spec, subfolder, images, prompt, paths, label, settings, device, dtype, start)
    sources = _read_sources(images, args.max_image_pixels)
    report_path = _check_report(args, images, paths)
    from .masks import SceneGrid

    mask, regions = _read_regions(args, SceneGrid.plain(*sources.shape[-2:]))

    from .edit import edit_images
    from .images import save_image

    model = _load(args, model_spec, subfolder, device, dtype)
    print(f"{label}: {model.describe()} on {device} ({model.dtype})", file=sys.stderr)
    result = edit_images(
        model,
        sources,
        prompt,
        negative_prompt=args.negative_prompt,
        size_policy=args.size_policy,
        settings=settings,
        callback=_progress,
        mask=mask,
        regions=regions,
    )
    for note in result.notes:
        print(f"  {note}", file=sys.stderr)
    images_out = result.images
    if getattr(args, "stamp", None):
        from .images import stamp_label

        images_out = [stamp_label(image, args.stamp) for image in images_out]
    for image, path in zip(images_out, paths, strict=True):
        save_image(image, path)
        if is_raster_path(path):
            print(f"  {path.name}: the source has no georeference (not a GeoTIFF): wrote a plain TIFF", file=sys.stderr)
        print(f"wrote {path}")
    if report_path is not None:
        _write_report(report_path, args, prompt, settings.for_model(model), result.notes, paths, result.fidelity)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _check_report(args, images, paths):
    from .outputs import JSON_SUFFIXES, check_output_path

    if getattr(args, "report", None) is None:
        return None
    return check_output_path(args.report, inputs=[*images, *paths], suffixes=JSON_SUFFIXES, option="--report")


def _read_regions(args, grid):
    """The mask or the (instruction, mask) regions named on the command line, read before the model loads."""
    from .errors import InputError
    from .masks import load_mask, load_regions

    if getattr(args, "mask", None) is None and getattr(args, "regions", None) is None:
        return None, None  # (rsedit demo has neither)
    options = dict(
        threshold=args.mask_threshold, soft=args.soft_mask, grow=args.mask_grow, feather=args.mask_feather,
        resize=args.resize_mask,
    )  # fmt: skip
    if args.mask is not None and args.regions is not None:
        raise InputError("Give --mask (one instruction) or --regions (several), not both.")
    if args.mask is not None:
        loaded = load_mask(args.mask, grid, **options)
        for note in loaded.notes:
            print(f"  {args.mask.name}: {note}", file=sys.stderr)
        return loaded.values, None
    if args.regions is not None:
        loaded = load_regions(args.regions, grid, **options)
        for index, region in enumerate(loaded):
            for note in region.notes:
                print(f"  region {index}: {note}", file=sys.stderr)
        return None, [(region.instruction, region.values) for region in loaded]
    return None, None


def _write_report(path, args, prompt, settings, notes, outputs, fidelity) -> None:
    import json
    import math

    from . import __version__
    from .outputs import write_text_atomic

    def finite(value):
        return None if isinstance(value, float) and math.isinf(value) else value

    report = {
        "version": __version__,
        "instruction": prompt,
        "mask": None if args.mask is None else str(args.mask),
        "regions": None if args.regions is None else str(args.regions),
        "settings": {
            "steps": settings.steps,
            "text_cfg": settings.text_cfg,
            "image_cfg": settings.image_cfg,
            "seed": settings.seed,
            "scheduler": settings.scheduler,
            "tile": settings.tile,
        },  # fmt: skip
        "notes": notes,
        "outputs": [
            {"path": str(out), **({k: {m: finite(v) for m, v in r[k].items()} for k in r} if r else {})}
            for out, r in zip(outputs, fidelity or [None] * len(outputs), strict=True)
        ],
        "psnr_note": "psnr null = infinite (the region is unchanged)",
    }
    write_text_atomic(path, json.dumps(report, indent=2))
    print(f"wrote {path}")


def _load(args, model_spec: str, subfolder: str | None, device, dtype):
    from .loading import load_editor

    return load_editor(
        model_spec,
        subfolder=subfolder,
        dtype=dtype,
        text_encoder_dtype=None if args.text_encoder_dtype == "same" else args.text_encoder_dtype,
        device=device,
        text_encoder=getattr(args, "text_encoder", None),
        position_table=getattr(args, "position_table", "effective"),
    )


def _scene_tags(args, model, model_spec: str, prompt: str, settings) -> dict[str, str]:
    from . import __version__

    settings = settings.for_model(model)
    return {
        "RSEDIT_INSTRUCTION": prompt,
        "RSEDIT_NEGATIVE_PROMPT": args.negative_prompt,
        "RSEDIT_MODEL": model_spec,
        "RSEDIT_BACKBONE": model.backbone.name,
        "RSEDIT_SEED": str(settings.seed),
        "RSEDIT_TEXT_CFG": f"{settings.text_cfg:g}",
        "RSEDIT_IMAGE_CFG": f"{settings.image_cfg:g}",
        "RSEDIT_STEPS": str(settings.steps),
        "RSEDIT_SCHEDULER": settings.scheduler,
        "RSEDIT_TILE": "off" if settings.tile == 0 else str(settings.tile or defaults.TILE),
        "RSEDIT_VERSION": __version__,
    }


def _run_scene(args, model_spec, subfolder, images, prompt, paths, label, settings, device, dtype, start) -> int:
    """A GeoTIFF source: read and written by windows (edit_scene); GeoTIFF outputs on its grid."""
    import contextlib

    from .errors import InputError
    from .raster import RasterSink, RasterSource, is_raster_path

    if len(images) != 1:
        raise InputError(f"Edit one GeoTIFF per run; got {len(images)} --image files. Run rsedit edit once per scene.")
    if args.size_policy != "pad":
        raise InputError(
            f"--size-policy {args.size_policy} would change the scene's pixel grid; a GeoTIFF is edited with "
            "--size-policy pad (the default), which keeps it."
        )
    raster_options = dict(keep_other_bands=args.keep_other_bands, cog=args.cog, compress=args.compress)
    with RasterSource.open(images[0], bands=args.bands, stretch=args.stretch, max_pixels=args.max_image_pixels) as src:
        for note in src.notes:
            print(f"  {images[0].name}: {note}", file=sys.stderr)
        if args.regions is not None:
            raise InputError(
                "--regions is not supported for GeoTIFF sources yet; edit one region at a time with --mask, or "
                "convert the scene to PNG for a multi-region edit."
            )
        if args.report is not None:
            raise InputError("--report is not supported for GeoTIFF sources yet (the scene is streamed).")
        from .masks import SceneGrid

        mask, _ = _read_regions(args, SceneGrid.from_geo(src.geo))
        for path in paths:  # checked before the model loads; nothing is created yet
            if is_raster_path(path):
                RasterSink(path, src.geo, source=src, **raster_options)
            elif args.keep_other_bands or args.cog:
                raise InputError(f"--keep-other-bands and --cog apply to GeoTIFF outputs; {path.name} is not one.")
        model = _load(args, model_spec, subfolder, device, dtype)
        print(f"{label}: {model.describe()} on {device} ({model.dtype})", file=sys.stderr)
        tags = _scene_tags(args, model, model_spec, prompt, settings)
        from .edit import edit_scene
        from .images import save_image
        from .scene import TensorSink

        with contextlib.ExitStack() as stack:
            sinks = [
                stack.enter_context(RasterSink(path, src.geo, source=src, tags=tags, **raster_options))
                if is_raster_path(path)
                else TensorSink(1, src.height, src.width)
                for path in paths
            ]
            notes = edit_scene(
                model,
                src,
                sinks,
                prompt,
                negative_prompt=args.negative_prompt,
                settings=settings,
                callback=_progress,
                mask=mask,
            )
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        for sink, path in zip(sinks, paths, strict=True):
            if isinstance(sink, TensorSink):
                save_image(sink.images[0], path)
                print(f"  {path.name}: {path.suffix} keeps no georeference; use a .tif --out for that", file=sys.stderr)
            for note in getattr(sink, "notes", []):
                print(f"  {path.name}: {note}", file=sys.stderr)
            print(f"wrote {path}")
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _read_sources(images: list[Path], max_pixels: int | None):
    from .images import check_min_size, load_image, stack_sources

    loaded = [load_image(path, max_pixels=max_pixels) for path in images]
    for path, (_, notes) in zip(images, loaded, strict=True):
        for note in notes:
            print(f"  {path.name}: {note}", file=sys.stderr)
    sources = stack_sources([tensor for tensor, _ in loaded])
    check_min_size(*sources.shape[-2:])  # before the model loads
    return sources


def cmd_edit(args) -> int:
    return _run(args, args.model, args.subfolder, args.image, args.prompt, args.out, "RSEdit")


def _smoke(args, scene: Path) -> int:
    import tempfile

    from .tiny import save_tiny_editor

    print("=" * 78 + "\n" + SMOKE_BANNER + "\n" + "=" * 78, file=sys.stderr)
    out = args.out.with_name(f"{args.out.stem}_SMOKE{args.out.suffix}")
    args.stamp = SMOKE_LABEL
    with tempfile.TemporaryDirectory(prefix="rsedit-smoke-") as tmp:
        folder = save_tiny_editor(Path(tmp) / "tiny-rsedit")
        args.steps = min(args.steps, 8)
        code = _run(args, str(folder), None, [scene], DEMO_PROMPT, out, "RSEdit SMOKE RUN (random weights)")
    print(
        f"SMOKE RUN finished: the install works. {out} is noise from random weights, stamped SMOKE RUN; "
        "it is not an edit.",
        file=sys.stderr,
    )
    return code


def cmd_demo(args) -> int:
    scene = sample_scene()
    if args.smoke and args.model:
        from .errors import InputError

        raise InputError(
            "--smoke runs on tiny random weights and --model names real ones: give one of them "
            f"(rsedit demo --model {args.model} for a real edit, rsedit demo --smoke to check the install)."
        )
    if args.smoke:
        return _smoke(args, scene)
    chosen = args.model if args.model is not None else (os.environ.get("RSEDIT_MODEL") or None)
    if chosen is not None:  # an empty name is the loader's to refuse, never a reason to fall back
        # A model the user named must be used or fail: a smoke run would hide the mistake.
        subfolder = args.subfolder if args.model else None
        return _run(args, chosen, subfolder, [scene], DEMO_PROMPT, args.out, "RSEdit demo (real weights)")
    try:
        return _run(
            args,
            UNET.release_repo,
            UNET.release_subfolder,
            [scene],
            DEMO_PROMPT,
            args.out,
            "RSEdit demo (real weights)",
        )
    except ModelNotFoundError as e:
        logger.debug("released weights not available: %s", e)
        print(
            f"No RSEdit weights on this machine ({UNET.release_repo} is neither cached nor downloadable here), "
            "so this is a smoke run on tiny random weights. For a real edit, get the weights (README, Models) "
            "and run: rsedit demo --model PATH\n",
            file=sys.stderr,
        )
    return _smoke(args, scene)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsedit", description="Text-guided editing of remote-sensing images (RSEdit)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Show debug logs.")
    commands = parser.add_subparsers(dest="command", required=True)

    edit = commands.add_parser("edit", help="Edit images following a text instruction.")
    edit.add_argument("--model", required=True, help="Editor folder, hub id (owner/name) or models/rsedit entry.")
    edit.add_argument(
        "--subfolder", help=f"Subfolder of the model (e.g. {UNET.release_subfolder} in the released repo)."
    )
    edit.add_argument("--image", required=True, nargs="+", type=Path, help="Source image(s) of one size.")
    edit.add_argument(
        "--prompt",
        required=True,
        help="The edit instruction: up to 246 tokens with DGTRS-CLIP, 75 with plain CLIP, 119 with the DiT's T5; "
        "more is cut and reported.",
    )
    edit.add_argument(
        "--out",
        required=True,
        type=Path,
        help="Output image (.png, .jpg, .tif, ...); several outputs get _<source>_<variation> suffixes. "
        "Never one of the inputs.",
    )
    edit.add_argument(
        "--text-encoder", help="U-Net only: swap the text encoder for a Long-CLIP .pt or a CLIPTextModel folder."
    )
    edit.add_argument(
        "--position-table",
        choices=["effective", "plain"],
        default="effective",
        help="Long-CLIP .pt only: position table to use (default effective).",
    )
    _add_sampling_args(edit)
    region = edit.add_argument_group("Masks and regions (outside them the output is the source, pixel for pixel)")
    region.add_argument(
        "--mask",
        type=Path,
        help="Where to edit: an image (white = edit) on the scene's grid, a single-band GeoTIFF, or polygons "
        "(GeoJSON, GeoPackage, shapefile) rasterised onto a GeoTIFF scene's grid.",
    )
    region.add_argument(
        "--regions",
        type=Path,
        help='Several instructions, each for its own region: a JSON list of {"mask": PATH or GeoJSON geometry, '
        '"instruction": TEXT} (or a GeoJSON FeatureCollection with an "instruction" property); --prompt is then '
        "not used. Where regions overlap, the later one wins.",
    )
    region.add_argument("--mask-grow", type=int, default=0, help="Grow the mask by this many px (default 0).")
    region.add_argument(
        "--mask-feather", type=int, default=0, help="Feather the mask's edge over this many px, inside it (default 0)."
    )
    region.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="Grey levels at or above this edit (default 0.5); see --soft-mask.",
    )
    region.add_argument("--soft-mask", action="store_true", help="Use a grey mask's levels as blend weights.")
    region.add_argument(
        "--resize-mask", action="store_true", help="Resize an image mask of another size onto the scene (nearest)."
    )
    region.add_argument(
        "--report",
        type=Path,
        help="Write a JSON report: settings, notes and, per output, the pixels changed inside and outside the "
        "mask with PSNR and SSIM.",
    )
    geo = edit.add_argument_group("GeoTIFF sources (read and written by windows, the output on the source's grid)")
    geo.add_argument(
        "--bands",
        help="1-based bands to edit as red,green,blue, e.g. 3,2,1 (default: by colour interpretation or band "
        "names, else 1,2,3).",
    )
    geo.add_argument(
        "--stretch",
        default="percentile",
        help="How source values map to the model's 0..1 (and back): 'percentile' (default: 2nd-98th per band, "
        "8-bit as is), 'percentile:P1,P2', 'MIN,MAX' in source values (or one MIN,MAX per band, ';'-separated) "
        "or 'none'.",
    )
    geo.add_argument(
        "--keep-other-bands",
        action="store_true",
        help="Copy the bands not edited (e.g. NIR) into the output unchanged; they no longer match the edit.",
    )
    geo.add_argument("--cog", action="store_true", help="Write a Cloud-Optimized GeoTIFF.")
    geo.add_argument(
        "--compress",
        choices=("deflate", "lzw", "zstd", "none"),
        default="deflate",
        help="GeoTIFF compression (default deflate).",
    )
    edit.set_defaults(func=cmd_edit)

    demo = commands.add_parser(
        "demo", help="Edit the shipped sample scene (a labelled smoke run on random weights if no weights are found)."
    )
    demo.add_argument(
        "--model",
        help=f"Editor to use (default: $RSEDIT_MODEL, else {UNET.release_repo}/{UNET.release_subfolder}); "
        "one that does not exist is an error.",
    )
    demo.add_argument("--subfolder", help="Subfolder of --model.")
    demo.add_argument(
        "--smoke", action="store_true", help="Use tiny random weights (checks the install; output is noise)."
    )
    demo.add_argument(
        "--out", type=Path, default=Path("rsedit_demo.png"), help="Output image (default rsedit_demo.png)."
    )
    _add_sampling_args(demo)
    demo.set_defaults(func=cmd_demo)

    from .cli_damage import add_commands

    add_commands(commands)
    __import__(f"{__package__}.cli_instructions", fromlist=["add_commands"]).add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from .quiet import quiet_optional_messages

    quiet_optional_messages()
    try:
        return args.func(args)
    except RSEditError as e:
        print(f"rsedit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rsedit: interrupted; nothing was written under a final name.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
