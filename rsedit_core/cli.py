"""The ``rsedit`` command line: ``rsedit edit`` and ``rsedit demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

from .errors import ModelNotFoundError, RSEditError
from .images import SIZE_POLICIES, load_image, save_image, stack_sources
from .loading import DTYPES, load_editor
from .sampler import MAX_SEED, EditSettings, edit_images
from .schedulers import SCHEDULER_NAMES

logger = logging.getLogger("rsedit")

RELEASED_REPO = "BiliSakura/RSEdit-UNet-text-ablation"
RELEASED_SUBFOLDER = "DGTRS-CLIP-ViT-L-14"
DEMO_PROMPT = (
    "Flood the coastal town after a hurricane: brown seawater covers the beach, the promenade and "
    "the streets of the two blocks nearest the shore, the buildings there stand in water up to "
    "their roofs; the pier is submerged; roads further inland, the farm fields and the parks stay "
    "dry and unchanged."
)


def sample_scene() -> Path:
    """The synthetic demo scene shipped with the package (see scripts/make_sample_scene.py)."""
    return Path(str(resources.files("rsedit_core") / "assets" / "sample_scene.png"))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dtype(name: str, device: torch.device) -> str:
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return name


def _progress(step: int, total: int, _latents) -> None:
    width = 30
    done = width * step // total
    print(f"\r  sampling [{'#' * done}{'.' * (width - done)}] {step}/{total}", end="", file=sys.stderr)
    if step == total:
        print(file=sys.stderr)


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed must be from 0 to 2**64-1, got {value}")
    return value


def _add_sampling_args(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument(
        "--negative-prompt", default="", help="Text to steer away from (default: empty, as in the paper)."
    )
    parser.add_argument(
        "--steps", type=int, default=steps, help=f"Denoising steps (default {steps}; the paper's figures use 100)."
    )
    parser.add_argument(
        "--text-cfg",
        type=float,
        default=7.5,
        help="Text guidance s_T: higher follows the instruction more (default 7.5).",
    )
    parser.add_argument(
        "--image-cfg",
        type=float,
        default=1.5,
        help="Image guidance s_I: higher stays closer to the source (default 1.5).",
    )
    parser.add_argument("--seed", type=_seed, default=42, help="Noise seed, 0..2**64-1 (default 42, the paper's).")
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULER_NAMES,
        default="default",
        help="Sampler; 'default' uses the model folder's own.",
    )
    parser.add_argument(
        "--size-policy",
        choices=SIZE_POLICIES,
        default="pad",
        help="How to reach a multiple of 8 px: pad (default, keeps every pixel), resize or crop.",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    parser.add_argument(
        "--dtype", choices=["auto", *DTYPES], default="auto", help="Weights dtype (default: fp16 on GPU, fp32 on CPU)."
    )
    parser.add_argument(
        "--text-encoder-dtype",
        choices=["same", *DTYPES],
        default="same",
        help="Text encoder dtype (default: as --dtype); bf16 halves the DiT's T5-XXL.",
    )
    parser.add_argument("--num-images", type=int, default=1, help="Variations per source image (different noise).")


def _output_paths(out: Path, sources: int, variations: int) -> list[Path]:
    if sources * variations == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{s}_{v}{out.suffix}") for s in range(sources) for v in range(variations)]


def _run(args, model_spec: str, subfolder: str | None, images: list[Path], prompt: str, out: Path, label: str) -> int:
    device = _device(args.device)
    start = time.perf_counter()
    model = load_editor(
        model_spec,
        subfolder=subfolder,
        dtype=_dtype(args.dtype, device),
        text_encoder_dtype=None if args.text_encoder_dtype == "same" else args.text_encoder_dtype,
        device=device,
        text_encoder=getattr(args, "text_encoder", None),
        position_table=getattr(args, "position_table", "effective"),
    )
    loaded = [load_image(path) for path in images]
    for path, (_, notes) in zip(images, loaded, strict=False):
        for note in notes:
            print(f"  {path.name}: {note}", file=sys.stderr)
    sources = stack_sources([tensor for tensor, _ in loaded])
    settings = EditSettings(
        steps=args.steps,
        text_cfg=args.text_cfg,
        image_cfg=args.image_cfg,
        seed=args.seed,
        scheduler=args.scheduler,
        num_variations=args.num_images,
    )
    backbone = "U-Net" if model.kind == "unet" else "PixArt DiT"
    print(f"{label}: {backbone} editor {model.root} on {device} ({model.dtype})", file=sys.stderr)
    result = edit_images(
        model,
        sources,
        prompt,
        negative_prompt=args.negative_prompt,
        size_policy=args.size_policy,
        settings=settings,
        callback=_progress,
    )
    for note in result.notes:
        print(f"  {note}", file=sys.stderr)
    paths = _output_paths(out, sources.shape[0], args.num_images)
    for image, path in zip(result.images, paths, strict=False):
        save_image(image, path)
        print(f"wrote {path}")
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def cmd_edit(args) -> int:
    return _run(args, args.model, args.subfolder, args.image, args.prompt, args.out, "RSEdit")


SMOKE_BANNER = (
    "SMOKE RUN: tiny random weights, built on the fly. This checks that the install and the whole\n"
    "editing path work; the output image is noise, not an edit. For a real edit, download the\n"
    f"released weights ({RELEASED_REPO}, subfolder {RELEASED_SUBFOLDER}) and pass --model."
)


def cmd_demo(args) -> int:
    scene = sample_scene()
    if not args.smoke:
        spec = args.model or os.environ.get("RSEDIT_MODEL") or RELEASED_REPO
        subfolder = args.subfolder if args.model else (None if os.environ.get("RSEDIT_MODEL") else RELEASED_SUBFOLDER)
        try:
            return _run(args, spec, subfolder, [scene], DEMO_PROMPT, args.out, "RSEdit demo (real weights)")
        except ModelNotFoundError as e:
            print(f"No RSEdit weights found: {e}\nFalling back to a smoke run.\n", file=sys.stderr)
    from .tiny import save_tiny_editor

    print("=" * 78 + "\n" + SMOKE_BANNER + "\n" + "=" * 78, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="rsedit-smoke-") as tmp:
        folder = save_tiny_editor(Path(tmp) / "tiny-rsedit")
        args.steps = min(args.steps, 8)
        out = args.out.with_name(f"{args.out.stem}_SMOKE{args.out.suffix}")
        code = _run(args, str(folder), None, [scene], DEMO_PROMPT, out, "RSEdit SMOKE RUN (random weights)")
    print("SMOKE RUN finished: the pipeline works; the image above is not an edit.", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsedit", description="Text-guided editing of remote-sensing images (RSEdit)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Show debug logs.")
    commands = parser.add_subparsers(dest="command", required=True)

    edit = commands.add_parser("edit", help="Edit images following a text instruction.")
    edit.add_argument("--model", required=True, help="Editor folder, hub id (owner/name) or models/rsedit entry.")
    edit.add_argument("--subfolder", help="Subfolder of the model (e.g. DGTRS-CLIP-ViT-L-14 in the released repo).")
    edit.add_argument("--image", required=True, nargs="+", type=Path, help="Source image(s) of one size.")
    edit.add_argument("--prompt", required=True, help="The edit instruction (up to 248 tokens for DGTRS-CLIP).")
    edit.add_argument(
        "--out", required=True, type=Path, help="Output PNG; several outputs get _<source>_<variation> suffixes."
    )
    edit.add_argument("--text-encoder", help="Swap the text encoder: a Long-CLIP .pt or a CLIPTextModel folder.")
    edit.add_argument(
        "--position-table",
        choices=["effective", "plain"],
        default="effective",
        help="Long-CLIP .pt only: position table to use (default effective).",
    )
    _add_sampling_args(edit, steps=50)
    edit.set_defaults(func=cmd_edit)

    demo = commands.add_parser(
        "demo", help="Edit the shipped sample scene (a smoke run on random weights if none are found)."
    )
    demo.add_argument(
        "--model", help=f"Editor to use (default: $RSEDIT_MODEL, else {RELEASED_REPO}/{RELEASED_SUBFOLDER})."
    )
    demo.add_argument("--subfolder", help="Subfolder of --model.")
    demo.add_argument(
        "--smoke", action="store_true", help="Use tiny random weights (checks the install; output is noise)."
    )
    demo.add_argument("--out", type=Path, default=Path("rsedit_demo.png"), help="Output PNG (default rsedit_demo.png).")
    _add_sampling_args(demo, steps=50)
    demo.set_defaults(func=cmd_demo)

    from .cli_damage import add_commands

    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if getattr(args, "num_images", 1) < 1 or getattr(args, "steps", 1) < 1:
        print("rsedit: error: --steps and --num-images must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except RSEditError as e:
        print(f"rsedit: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
