"""rsedit assess / evaluate / convert-damage-model on a random ChangeStar1x256."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rsedit_core.cli import main
from rsedit_core.damage import DamageMetrics, assess, load_damage_model


def _write(path, array):
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def split(tmp_path):
    """Three samples in the RSCC-RSEdit-Test-Split layout (paths relative to the JSONL)."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    lines = []
    for i in range(3):
        _write(tmp_path / "images" / f"pre_{i}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        _write(tmp_path / "images" / f"post_{i}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[8:30, 8:30] = i + 1
        mask[40:60, 40:60] = 255
        _write(tmp_path / "images" / f"mask_{i}.png", mask)
        lines.append(
            {
                "pre_image": f"images/pre_{i}.png",
                "post_image": f"images/post_{i}.png",
                "mask": f"images/mask_{i}.png",
                "change_caption": "buildings collapse",
                "filename": f"post_{i}.png",
            }
        )
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_assess_writes_map_overlay_and_report(damage_checkpoint, split, tmp_path):
    images = split.parent / "images"
    code = main(
        [
            "assess",
            "--model",
            str(damage_checkpoint),
            "--pre",
            str(images / "pre_0.png"),
            "--post",
            str(images / "post_0.png"),
            "--gt",
            str(images / "mask_0.png"),
            "--out-map",
            str(tmp_path / "map.png"),
            "--overlay",
            str(tmp_path / "ov.png"),
            "--json",
            str(tmp_path / "r.json"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    with Image.open(tmp_path / "map.png") as written:
        assert written.mode == "L" and written.size == (64, 64)
        damage = np.asarray(written)
    model = load_damage_model(damage_checkpoint)
    pre = np.asarray(Image.open(images / "pre_0.png"), dtype=np.float32) / 255
    post = np.asarray(Image.open(images / "post_0.png"), dtype=np.float32) / 255
    import torch

    expected = assess(
        model, torch.from_numpy(pre).permute(2, 0, 1)[None], torch.from_numpy(post).permute(2, 0, 1)[None]
    )
    assert np.array_equal(damage, expected.damage[0].numpy())
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["scores"]) >= {"f1_loc", "f1_dam", "score", "per_class"}


def test_evaluate_accumulates_over_split(damage_checkpoint, split, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(damage_checkpoint), "--split", str(split), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    model = load_damage_model(damage_checkpoint)
    expected = DamageMetrics()
    import torch

    for i in range(3):
        load = lambda name: torch.from_numpy(  # noqa: E731
            np.asarray(Image.open(split.parent / "images" / name), dtype=np.float32) / 255
        ).permute(2, 0, 1)[None]
        result = assess(model, load(f"pre_{i}.png"), load(f"post_{i}.png"))
        expected.update(result.damage[0].numpy(), np.asarray(Image.open(split.parent / "images" / f"mask_{i}.png")))
    scores = expected.compute()
    assert metrics["f1_dam"] == pytest.approx(scores.f1_dam) and metrics["samples_scored"] == 3
    assert "F1_dam" in capsys.readouterr().out


def test_evaluate_reports_missing_results(damage_checkpoint, split, tmp_path, capsys):
    results = tmp_path / "generated"
    results.mkdir()
    Image.open(split.parent / "images" / "post_1.png").save(results / "post_1.png")
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(damage_checkpoint),
                "--split",
                str(split),
                "--results",
                str(results),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    assert metrics["samples_scored"] == 1 and len(metrics["missing_files"]) == 2
    assert "2 of 3 samples skipped" in capsys.readouterr().out


def test_evaluate_empty_split_and_all_missing(damage_checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert (
        main(["evaluate", "--model", str(damage_checkpoint), "--split", str(empty), "--json", str(tmp_path / "x")]) == 1
    )
    assert "lists no samples" in capsys.readouterr().err
    gone = tmp_path / "gone.jsonl"
    gone.write_text(json.dumps({"pre_image": "a.png", "post_image": "b.png", "mask": "c.png", "filename": "b.png"}))
    assert (
        main(["evaluate", "--model", str(damage_checkpoint), "--split", str(gone), "--json", str(tmp_path / "x")]) == 1
    )
    assert "Nothing was scored" in capsys.readouterr().err


def test_convert_damage_model(damage_checkpoint, tmp_path):
    out = tmp_path / "converted.safetensors"
    assert main(["convert-damage-model", str(damage_checkpoint), str(out)]) == 0
    assert load_damage_model(out) is not None
