"""``rsedit assess``, ``rsedit evaluate`` and ``rsedit convert-damage-model``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .damage import DAMAGE_CLASS_NAMES, DamageMetrics, assess, convert_checkpoint, damage_scores, load_damage_model
from .damage.inference import overlay, read_damage_map
from .errors import InputError
from .images import load_image, save_image
from .loading import DTYPES


def _model(args):
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    dtype = args.dtype if args.dtype != "auto" else ("fp16" if device.type == "cuda" else "fp32")
    return load_damage_model(args.model, device=device, dtype=DTYPES[dtype])


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise InputError(f"No damage mask at {path}.")
    with Image.open(path) as image:
        return read_damage_map(np.asarray(image))


def _save_map(damage: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(damage.numpy().astype(np.uint8), mode="L").save(path)


def cmd_assess(args) -> int:
    model = _model(args)
    pre, _ = load_image(args.pre)
    post, _ = load_image(args.post)
    result = assess(model, pre, post, tile=args.tile)
    _save_map(result.damage[0], args.out_map)
    print(f"wrote {args.out_map} (0 background, 1 no, 2 minor, 3 major, 4 destroyed)")
    if args.overlay:
        save_image(overlay(post, result.damage)[0], args.overlay)
        print(f"wrote {args.overlay}")
    report = {"fractions": result.class_fractions(), "notes": result.notes}
    if args.gt:
        report["scores"] = damage_scores(result.damage[0].numpy(), _read_mask(args.gt)).to_dict()
        scores = report["scores"]
        print(f"F1_loc {scores['f1_loc']:.4f}  F1_dam {scores['f1_dam']:.4f}  score {scores['score']:.4f}")
    for name, share in report["fractions"].items():
        print(f"  {name}: {share:.2%} of pixels")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def _split_entries(split: Path) -> list[dict]:
    if not split.is_file():
        raise InputError(f"No split file at {split}.")
    entries = []
    for number, line in enumerate(split.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise InputError(f"{split}:{number} is not valid JSON: {e}") from e
    if not entries:
        raise InputError(f"{split} lists no samples; expected JSONL lines with pre_image, post_image, mask, filename.")
    return entries


def cmd_evaluate(args) -> int:
    entries = _split_entries(args.split)
    base = args.root or args.split.parent
    model = _model(args)
    metrics = DamageMetrics()
    missing: list[str] = []
    skipped = 0
    for index, entry in enumerate(entries, start=1):
        pre_path = _resolve(base, entry["pre_image"])
        post_path = args.results / entry["filename"] if args.results else _resolve(base, entry["post_image"])
        mask_path = _resolve(base, entry["mask"])
        absent = [str(p) for p in (pre_path, post_path, mask_path) if not p.is_file()]
        if absent:
            missing.extend(absent)
            skipped += 1
        else:
            pre, _ = load_image(pre_path)
            post, _ = load_image(post_path)
            if post.shape != pre.shape:
                post = torch.nn.functional.interpolate(post, size=pre.shape[-2:], mode="bilinear", align_corners=False)
            result = assess(model, pre, post, tile=args.tile)
            metrics.update(result.damage[0].numpy(), _read_mask(mask_path))
        print(f"\r  evaluating {index}/{len(entries)} ({skipped} skipped: missing files)", end="", file=sys.stderr)
    print(file=sys.stderr)
    scored = len(entries) - skipped
    if skipped:
        print(f"{skipped} of {len(entries)} samples skipped, {len(missing)} files missing; first: {missing[:3]}")
    if scored == 0:
        raise InputError(f"Nothing was scored: all {len(entries)} samples of {args.split} have missing files.")
    scores = metrics.compute()
    print(f"F1_dam {scores.f1_dam:.4f}  F1_loc {scores.f1_loc:.4f}  score {scores.score:.4f}")
    for name in DAMAGE_CLASS_NAMES[1:]:
        print(f"  {name}: F1 {scores.per_class[name]:.4f}")
    result = {"samples": len(entries), "samples_scored": scored, "missing_files": missing, **scores.to_dict()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def cmd_convert(args) -> int:
    out = convert_checkpoint(args.input, args.output)
    print(f"wrote {out}")
    return 0


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="ChangeStar1x256 checkpoint (.pth or .safetensors).")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available).")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="Default fp16 on GPU, fp32 on CPU.")
    parser.add_argument("--tile", type=int, default=1024, help="Largest side run at once; larger scenes are tiled.")


def add_commands(commands) -> None:
    assess_parser = commands.add_parser("assess", help="Map building damage between a pre and a post image.")
    _model_args(assess_parser)
    assess_parser.add_argument("--pre", required=True, type=Path, help="Pre-disaster image.")
    assess_parser.add_argument("--post", required=True, type=Path, help="Post-disaster (e.g. edited) image.")
    assess_parser.add_argument("--gt", type=Path, help="Ground-truth 0-4 damage PNG (255 ignored) for F1 scores.")
    assess_parser.add_argument("--out-map", required=True, type=Path, help="Predicted 0-4 damage map (1-channel PNG).")
    assess_parser.add_argument("--overlay", type=Path, help="Post image with buildings tinted by class.")
    assess_parser.add_argument("--json", type=Path, help="Report with class fractions (and scores with --gt).")
    assess_parser.set_defaults(func=cmd_assess)

    evaluate = commands.add_parser("evaluate", help="Score a test split (RSCC-RSEdit-Test-Split JSONL) with xView2 F1.")
    _model_args(evaluate)
    evaluate.add_argument("--split", required=True, type=Path, help="JSONL: pre_image, post_image, mask, filename.")
    evaluate.add_argument("--root", type=Path, help="Base of relative paths (default: the split file's folder).")
    evaluate.add_argument("--results", type=Path, help="Folder of generated post images named by 'filename'.")
    evaluate.add_argument("--json", required=True, type=Path, help="Where to write the metrics.")
    evaluate.set_defaults(func=cmd_evaluate)

    convert = commands.add_parser(
        "convert-damage-model", help="Check a ChangeStar checkpoint and save it as safetensors."
    )
    convert.add_argument("input", type=Path, help="The published .pth checkpoint.")
    convert.add_argument("output", type=Path, help="The .safetensors file to write.")
    convert.set_defaults(func=cmd_convert)
