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
    monkeypatch.delenv("RSEDIT_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the released repo is neither cached nor reachable
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code = main(["demo", "--steps", "1", "--out", str(tmp_path / "demo.png")])
    err = capsys.readouterr().err
    assert code == 0 and "No RSEdit weights on this machine" in err and "SMOKE RUN" in err
    assert err.count("No RSEdit weights") == 1 and "Falling back" not in err
    assert "the image above" not in err and "demo_SMOKE.png is noise" in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_demo_with_a_model_that_does_not_exist_fails(tmp_path, capsys, monkeypatch, how):
    missing = str(tmp_path / "no-weights-here")
    args = ["demo", "--steps", "1", "--out", str(tmp_path / "demo.png")]
    if how == "flag":
        args += ["--model", missing]
    else:
        monkeypatch.setenv("RSEDIT_MODEL", missing)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "No RSEdit model at" in err and "SMOKE" not in err
    assert not list(tmp_path.glob("demo*.png"))


def test_smoke_image_says_smoke_on_the_image(tmp_path):
    main(["demo", "--smoke", "--steps", "1", "--out", str(tmp_path / "demo.png")])
    with Image.open(tmp_path / "demo_SMOKE.png") as image:
        pixels = np.asarray(image, dtype=np.int32)
    banner, body = pixels[:24], pixels[64:]
    # The banner is dark with white letters: near-black and near-white pixels both present.
    assert (banner.max(axis=-1) < 60).mean() > 0.5 and (banner.min(axis=-1) > 200).sum() > 100
    assert (body.max(axis=-1) < 60).mean() < 0.5


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


def test_edit_tiles_a_large_scene_and_says_so(tiny_editor_dir, tmp_path, capsys):
    pixels = np.random.default_rng(1).integers(0, 256, (96, 200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = tmp_path / "post.png"
    argv = ["edit", "--model", str(tiny_editor_dir), "--image", str(tmp_path / "wide.png"), "--prompt", "x",
            "--out", str(out), "--steps", "1", "--device", "cpu", "--tile", "64", "--tile-overlap", "16"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "tiled: 8 windows of 64 px (2 x 4), 16 px overlap" in err
    assert "sampling [#" in err and "4/8" in err and "8/8" in err  # windows x steps, 4 windows a pass
    with Image.open(out) as image:
        assert image.size == (200, 96)
    assert main([*argv[:-4], "--tile", "40"]) == 1
    assert "tile 40 px is below the 64 px" in capsys.readouterr().err


def test_demo_smoke_with_a_model_is_refused_not_ignored(tmp_path, capsys):
    assert main(["demo", "--smoke", "--model", "some/editor", "--out", str(tmp_path / "d.png")]) == 1
    assert "--smoke runs on tiny random weights and --model names real ones" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_demo_with_an_empty_model_name_fails_instead_of_falling_back(tmp_path, capsys):
    assert main(["demo", "--model", "", "--out", str(tmp_path / "d.png")]) == 1
    assert "No model was given" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
