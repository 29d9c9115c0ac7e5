"""``rsedit assess``, ``rsedit evaluate`` and ``rsedit convert-damage-model``.

Every input that can be checked is checked before the model is loaded or any work is done:
output paths (extension, never an input, writable folder), device and dtype names, the tile size,
the checkpoint's first bytes, the image files, their sizes, and the ground truth's values. Outputs
are written atomically, so a failure never leaves a half-written file.

xView2 localisation F1 is scored on the model's building output (``building_prob > 0.5``), as
torchange and the xView2 authors' evaluator do, not on ``damage > 0``: a predicted building whose
change class is 0 is still a building.

This module imports no torch at import time (``rsedit --help`` stays fast); the commands do.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from . import defaults
from .errors import InputError
from .outputs import IMAGE_SUFFIXES, JSON_SUFFIXES, atomic_output, check_output_path, write_text_atomic

# From defaults (no torch), so that building the parser stays light.
DTYPE_NAMES = defaults.DTYPE_NAMES
TILE_FLOOR = defaults.DAMAGE_MIN_SIDE
DEFAULT_TILE = defaults.DAMAGE_TILE
# A 0-4 class map must be stored losslessly: JPEG or WebP would change the class values.
MAP_SUFFIXES = (".png", ".tif", ".tiff")
CHECKPOINT_SUFFIXES = (".safetensors",)
SHOWN = 3


def _prepare(args) -> tuple:
    """Device, dtype name, tile and checkpoint file checked before anything heavy happens."""
    from .damage.checkpoint import check_damage_checkpoint_file
    from .damage.inference import check_tile
    from .devices import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    check_tile(args.tile, option="--tile")
    check_damage_checkpoint_file(args.model)
    return device, dtype


def _load_model(path: Path, device, dtype: str):
    from .damage import load_damage_model
    from .devices import DTYPES

    return load_damage_model(path, device=device, dtype=DTYPES[dtype])


def _image_size(path: Path, what: str) -> tuple[int, int]:
    """``(width, height)`` from the file's header, without decoding it; `InputError` for a non-image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{what} {path} is not an image that can be read ({e}). Use PNG, JPEG or TIFF.") from e


def _read_mask(path: Path, what: str = "ground truth"):
    """A 0-4 (255 ignored) class map ``(H, W)`` read and checked; `InputError` names the file."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .damage.inference import read_damage_map
    from .damage.metrics import check_ground_truth

    if not path.is_file():
        raise InputError(f"No damage mask at {path} ({what}).")
    try:
        with Image.open(path) as image:
            image.load()
            values = read_damage_map(np.asarray(image))
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{what} {path} is not an image that can be read ({e}). Give a 0-4 class PNG.") from e
    check_ground_truth(values, name=f"{what} {path}")
    return values


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _save_map(damage, path: Path) -> None:
    import numpy as np
    from PIL import Image

    with atomic_output(path) as temporary:
        Image.fromarray(damage.numpy().astype(np.uint8), mode="L").save(temporary)


def _save_image(image, path: Path) -> None:
    from .images import save_image  # writes atomically itself

    save_image(image, path)


def _score_line(scores: dict) -> str:
    return f"F1_loc {scores['f1_loc']:.4f}  F1_dam {scores['f1_dam']:.4f}  score {scores['score']:.4f}"


def cmd_assess(args) -> int:
    from .damage.inference import check_scene_pair

    sources = [args.pre, args.post, args.model, *([args.gt] if args.gt else [])]
    out_map = check_output_path(args.out_map, inputs=sources, suffixes=MAP_SUFFIXES, option="--out-map")
    overlay_path = None
    if args.overlay:
        overlay_path = check_output_path(args.overlay, inputs=sources, suffixes=IMAGE_SUFFIXES, option="--overlay")
        if overlay_path.resolve() == out_map.resolve():
            raise InputError(f"--overlay and --out-map both name {out_map}; give the overlay another file name.")
    json_path = (
        check_output_path(args.json, inputs=sources, suffixes=JSON_SUFFIXES, option="--json") if args.json else None
    )
    device, dtype = _prepare(args)

    from .images import load_image

    # The images are read (and their sizes compared) before the model: a wrong file costs nothing.
    pre, pre_notes = load_image(args.pre)
    post, post_notes = load_image(args.post)
    pre_size, post_size = (pre.shape[-1], pre.shape[-2]), (post.shape[-1], post.shape[-2])
    check_scene_pair(pre_size, post_size, f"--pre {args.pre}, --post {args.post}")
    truth = None
    if args.gt:
        truth = _read_mask(args.gt, "--gt")
        gt_size = (truth.shape[1], truth.shape[0])
        if gt_size != pre_size:
            raise InputError(
                f"--gt {args.gt} is {_size_text(gt_size)} but the scene (--pre {args.pre}) is {_size_text(pre_size)} "
                "(width x height). The ground truth is scored pixel by pixel; give the mask of this scene."
            )
    from .damage import assess, damage_scores
    from .damage.inference import overlay

    model = _load_model(args.model, device, dtype)
    result = assess(model, pre, post, tile=args.tile)
    _save_map(result.damage[0], out_map)
    print(f"wrote {out_map} (0 background, 1 no, 2 minor, 3 major, 4 destroyed)")
    if overlay_path:
        _save_image(overlay(post, result.damage)[0], overlay_path)
        print(f"wrote {overlay_path}")
    notes = [f"pre: {n}" for n in pre_notes] + [f"post: {n}" for n in post_notes] + result.notes
    report = {"fractions": result.class_fractions(), "building_fraction": result.building_fraction(), "notes": notes}
    if truth is not None:
        # Localisation on the building output (the assessment carries it), as torchange scores it.
        report["scores"] = damage_scores(result, truth).to_dict()
        report["localisation"] = "building output (building_prob > 0.5)"
        print(f"{_score_line(report['scores'])}  (F1_loc on the model's building output)")
    print(f"  building (the model's building output): {report['building_fraction']:.2%} of pixels")
    for name, share in report["fractions"].items():
        print(f"  {name}: {share:.2%} of pixels")
    for note in notes:
        print(f"  note: {note}")
    if json_path:
        write_text_atomic(json_path, json.dumps(report, indent=2))
        print(f"wrote {json_path}")
    return 0


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _split_entries(split: Path, needs: tuple[str, ...]) -> list[tuple[int, dict]]:
    """``(line number, entry)`` of each non-blank JSONL line; every malformed line is named at once."""
    if split.is_dir():
        raise InputError(f"--split {split} is a folder; give the JSONL file.")
    if not split.is_file():
        raise InputError(f"No split file at {split}.")
    try:
        text = split.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{split} is not UTF-8 text ({e}); expected JSONL (one JSON object a line).") from e
    entries, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{split}:{number} is not valid JSON: {e}")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{split}:{number} is a JSON {type(entry).__name__}, not an object")
            continue
        missing = [key for key in needs if key not in entry]
        if missing:
            problems.append(f"{split}:{number} lacks key(s) {', '.join(missing)}")
            continue
        bad = [key for key in needs if not isinstance(entry[key], str) or not entry[key].strip()]
        if bad:
            what = "a non-empty path string" if len(bad) == 1 else "non-empty path strings"
            problems.append(f"{split}:{number}: {', '.join(bad)} must be {what}")
            continue
        entries.append((number, entry))
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} lines in all)" if len(problems) > 10 else "")
        raise InputError(f"{shown}. Each line must be a JSON object with keys {', '.join(needs)}.")
    if not entries:
        raise InputError(f"{split} lists no samples; expected JSONL lines with {', '.join(needs)}.")
    return entries


@dataclass
class _Sample:
    line: int
    filename: str
    pre: Path
    post: Path
    mask: Path
    resize_post: tuple[int, int] | None = None  # (width, height) of the post image when it is resized


@dataclass
class _Plan:
    samples: list[_Sample]
    missing: list[str]
    missing_samples: int
    refused: list[dict]


def _plan(entries: list[tuple[int, dict]], base: Path, args) -> _Plan:
    """Check every sample's files before the model is loaded: presence, image headers, sizes, mask values."""
    samples, missing, refused = [], [], []
    missing_samples = 0
    for line, entry in entries:
        filename = entry.get("filename") or Path(entry["post_image"]).name
        pre = _resolve(base, entry["pre_image"])
        post = args.results / entry["filename"] if args.results else _resolve(base, entry["post_image"])
        mask = _resolve(base, entry["mask"])
        absent = [str(p) for p in (pre, post, mask) if not p.is_file()]
        if absent:
            missing.extend(absent)
            missing_samples += 1
            continue
        where = f"{args.split}:{line}"
        pre_size = _image_size(pre, f"{where}: pre_image")
        post_size = _image_size(post, f"{where}: post image")
        mask_size = _image_size(mask, f"{where}: mask")
        reasons = []
        if min(pre_size) < TILE_FLOOR:
            reasons.append(f"scene {_size_text(pre_size)} is below {TILE_FLOOR} px a side")
        if mask_size != pre_size:
            reasons.append(f"mask {_size_text(mask_size)} differs from pre {_size_text(pre_size)}")
        resize = None
        if post_size != pre_size:
            if args.resize_post:
                resize = post_size
            else:
                reasons.append(
                    f"post {_size_text(post_size)} differs from pre {_size_text(pre_size)} "
                    "(pass --resize-post to resize it)"
                )
        if reasons:
            refused.append({"line": line, "filename": filename, "post": str(post), "reason": "; ".join(reasons)})
            continue
        _read_mask(mask, f"{where}: mask")
        samples.append(_Sample(line, filename, pre, post, mask, resize))
    return _Plan(samples, missing, missing_samples, refused)


def cmd_evaluate(args) -> int:
    json_path = check_output_path(args.json, inputs=[args.split, args.model], suffixes=JSON_SUFFIXES, option="--json")
    device, dtype = _prepare(args)
    for option, folder in (("--root", args.root), ("--results", args.results)):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{option} {folder} is not a folder.")
    needs = ("pre_image", "mask", "filename") if args.results else ("pre_image", "post_image", "mask")
    entries = _split_entries(args.split, needs)
    base = args.root or args.split.parent
    plan = _plan(entries, base, args)
    total = len(entries)
    if plan.missing_samples:
        print(
            f"{plan.missing_samples} of {total} samples skipped, {len(plan.missing)} files missing; "
            f"first: {plan.missing[:SHOWN]}"
        )
    if plan.refused:
        first = [f"line {r['line']} ({r['filename']}): {r['reason']}" for r in plan.refused[:SHOWN]]
        print(f"{len(plan.refused)} of {total} samples refused; first: {first}")
    if not plan.samples:
        first = [f"line {r['line']}: {r['reason']}" for r in plan.refused[:SHOWN]]
        raise InputError(
            f"Nothing was scored: of the {total} samples of {args.split}, {plan.missing_samples} have missing files"
            + (f" (first: {plan.missing[:SHOWN]})" if plan.missing else "")
            + f" and {len(plan.refused)} were refused"
            + (f" (first: {'; '.join(first)})" if first else "")
            + "."
        )

    import torch.nn.functional as F

    from .damage import DAMAGE_CLASS_NAMES, DamageMetrics, assess, damage_scores
    from .images import load_image

    model = _load_model(args.model, device, dtype)
    metrics = DamageMetrics()
    rows, resized = [], []
    refused_before = len(plan.refused)
    for index, sample in enumerate(plan.samples, start=1):
        pre, _ = load_image(sample.pre)
        post, _ = load_image(sample.post)
        if post.shape[-2:] != pre.shape[-2:] and sample.resize_post is None:
            # Sizes the headers did not show (an EXIF orientation turns an image on loading).
            if not args.resize_post:
                post_size, pre_size = (post.shape[-1], post.shape[-2]), (pre.shape[-1], pre.shape[-2])
                reason = f"post {_size_text(post_size)} differs from pre {_size_text(pre_size)} once loaded"
                plan.refused.append(
                    {"line": sample.line, "filename": sample.filename, "post": str(sample.post), "reason": reason}
                )
                continue
            sample.resize_post = (post.shape[-1], post.shape[-2])
        if sample.resize_post is not None:
            post = F.interpolate(post, size=pre.shape[-2:], mode="bilinear", align_corners=False)
            size = {"from": _size_text(sample.resize_post), "to": _size_text((pre.shape[-1], pre.shape[-2]))}
            resized.append({"line": sample.line, "filename": sample.filename, **size})
        truth = _read_mask(sample.mask, f"{args.split}:{sample.line}: mask")
        result = assess(model, pre, post, tile=args.tile)
        # The assessment carries the building output, which localisation is scored on.
        metrics.update(result, truth)
        own = damage_scores(result, truth)
        row = {"line": sample.line, "filename": sample.filename}
        rows.append(row | {"f1_loc": own.f1_loc, "f1_dam": own.f1_dam, "score": own.score})
        print(f"\r  evaluating {index}/{len(plan.samples)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    if resized:
        first = [f"{r['filename']} {r['from']} -> {r['to']}" for r in resized[:SHOWN]]
        print(
            f"{len(resized)} post image(s) resized to their pre image's size (--resize-post, bilinear); first: {first}"
        )
    if not rows:
        raise InputError(f"Nothing was scored: every sample of {args.split} was refused (see above).")
    refused_late = plan.refused[refused_before:]
    if refused_late:
        first = [f"line {r['line']} ({r['filename']}): {r['reason']}" for r in refused_late[:SHOWN]]
        print(f"{len(refused_late)} more sample(s) refused once loaded; first: {first}")
    scores = metrics.compute()
    print(
        f"F1_dam {scores.f1_dam:.4f}  F1_loc {scores.f1_loc:.4f}  score {scores.score:.4f}  "
        "(F1_loc on the model's building output)"
    )
    for name in DAMAGE_CLASS_NAMES[1:]:
        print(f"  {name}: F1 {scores.per_class[name]:.4f}")
    result = {
        "samples": total,
        "samples_scored": len(rows),
        "samples_missing_files": plan.missing_samples,
        "missing_files": plan.missing,
        "samples_refused": len(plan.refused),
        "refused": plan.refused,
        "resized_post": resized,
        "localisation": "building output (building_prob > 0.5)",
        **scores.to_dict(),
        "per_sample": rows,
    }
    write_text_atomic(json_path, json.dumps(result, indent=2))
    print(f"wrote {json_path}")
    return 0


def cmd_convert(args) -> int:
    from .damage import convert_checkpoint

    check_output_path(args.output, inputs=[args.input], suffixes=CHECKPOINT_SUFFIXES, option="output")
    out = convert_checkpoint(args.input, args.output, suffixes=CHECKPOINT_SUFFIXES)
    print(f"wrote {out}")
    return 0


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="ChangeStar1x256 checkpoint (.pth or .safetensors).")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available, the default), cpu, cuda, cuda:N or mps."
    )
    parser.add_argument(
        "--dtype", choices=["auto", *DTYPE_NAMES], default="auto", help="Default fp16 on GPU, fp32 on CPU."
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=DEFAULT_TILE,
        help=f"Largest side run at once: a multiple of 32, at least {TILE_FLOOR} (default {DEFAULT_TILE}, the size "
        "the weights were fine-tuned on). Larger scenes are tiled, neighbouring tiles sharing min(128, tile/4) px.",
    )


def add_commands(commands) -> None:
    assess_parser = commands.add_parser("assess", help="Map building damage between a pre and a post image.")
    _model_args(assess_parser)
    assess_parser.add_argument("--pre", required=True, type=Path, help="Pre-disaster image.")
    assess_parser.add_argument(
        "--post", required=True, type=Path, help="Post-disaster (e.g. edited) image, the size of --pre."
    )
    assess_parser.add_argument(
        "--gt", type=Path, help="Ground-truth 0-4 damage PNG (255 ignored), the size of --pre, for F1 scores."
    )
    assess_parser.add_argument(
        "--out-map", required=True, type=Path, help="Predicted 0-4 damage map: a 1-channel .png/.tif (lossless)."
    )
    assess_parser.add_argument("--overlay", type=Path, help="Post image with buildings tinted by class.")
    assess_parser.add_argument("--json", type=Path, help="Report (.json) with class fractions (and scores with --gt).")
    assess_parser.set_defaults(func=cmd_assess)

    evaluate = commands.add_parser("evaluate", help="Score a test split (RSCC-RSEdit-Test-Split JSONL) with xView2 F1.")
    _model_args(evaluate)
    evaluate.add_argument("--split", required=True, type=Path, help="JSONL: pre_image, post_image, mask, filename.")
    evaluate.add_argument("--root", type=Path, help="Base of relative paths (default: the split file's folder).")
    evaluate.add_argument("--results", type=Path, help="Folder of generated post images named by 'filename'.")
    evaluate.add_argument(
        "--resize-post",
        action="store_true",
        help="Resize a post image whose size differs from its pre image (bilinear) instead of refusing the sample; "
        "the resized samples are listed in the output.",
    )
    evaluate.add_argument(
        "--json", required=True, type=Path, help="Where to write the metrics (.json), per-sample rows included."
    )
    evaluate.set_defaults(func=cmd_evaluate)

    convert = commands.add_parser(
        "convert-damage-model", help="Check a ChangeStar checkpoint and save it as safetensors."
    )
    convert.add_argument("input", type=Path, help="The published .pth checkpoint.")
    convert.add_argument("output", type=Path, help="The .safetensors file to write (never the input).")
    convert.set_defaults(func=cmd_convert)
