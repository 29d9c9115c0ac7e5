"""The rsedit command line on tiny random weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsedit_core.cli import main, sample_scene


@pytest.fixture
def scene_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (72, 80, 3), dtype=np.uint8)
    path = tmp_path / "pre.png"
    Image.fromarray(pixels).save(path)
    return path


def test_edit_writes_png(tiny_editor_dir, scene_file, tmp_path, capsys):
    out = tmp_path / "post.png"
    code = main(
        [
            "edit",
            "--model",
            str(tiny_editor_dir),
            "--image",
            str(scene_file),
            "--prompt",
            "flood the area",
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    with Image.open(out) as image:
        assert image.size == (80, 72) and image.mode == "RGB"
    assert "instruction: 3/246 tokens" in capsys.readouterr().err


def test_edit_variations_named_per_source(tiny_editor_dir, scene_file, tmp_path):
    out = tmp_path / "post.png"
    main(
        [
            "edit",
            "--model",
            str(tiny_editor_dir),
            "--image",
            str(scene_file),
            str(scene_file),
            "--prompt",
            "x",
            "--out",
            str(out),
            "--steps",
            "1",
            "--num-images",
            "2",
        ]
    )
    assert sorted(p.name for p in tmp_path.glob("post_*.png")) == [f"post_{s}_{v}.png" for s in (0, 1) for v in (0, 1)]


def test_missing_model_is_an_error_not_a_traceback(scene_file, tmp_path, capsys):
    code = main(
        [
            "edit",
            "--model",
            str(tmp_path / "none"),
            "--image",
            str(scene_file),
            "--prompt",
            "x",
            "--out",
            str(tmp_path / "o.png"),
        ]
    )
    assert code == 1
    assert "rsedit: error: No RSEdit model at" in capsys.readouterr().err


def test_demo_smoke_is_labelled(tmp_path, capsys):
    code = main(["demo", "--smoke", "--steps", "2", "--out", str(tmp_path / "demo.png")])
    err = capsys.readouterr().err
    assert code == 0 and "SMOKE RUN" in err and "not an edit" in err
    with Image.open(tmp_path / "demo_SMOKE.png") as image, Image.open(sample_scene()) as scene:
        assert image.size == scene.size == (512, 512)
    assert not (tmp_path / "demo.png").exists()


def test_demo_without_weights_falls_back_to_smoke(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RSEDIT_MODEL", str(tmp_path / "no-weights-here"))
    code = main(["demo", "--steps", "1", "--out", str(tmp_path / "demo.png")])
    err = capsys.readouterr().err
    assert code == 0 and "No RSEdit weights found" in err and "SMOKE RUN" in err


def test_edit_with_dit_editor(tiny_dit_dir, scene_file, tmp_path, capsys):
    out = tmp_path / "post.png"
    code = main(
        [
            "edit",
            "--model",
            str(tiny_dit_dir),
            "--image",
            str(scene_file),
            "--prompt",
            "Flood the area",
            "--out",
            str(out),
            "--steps",
            "2",
            "--text-encoder-dtype",
            "bf16",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0 and "PixArt DiT editor" in err and "80x72 -> 80x80 (pad" in err
    with Image.open(out) as image:
        assert image.size == (80, 72)
