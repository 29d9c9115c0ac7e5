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
        main(["evaluate", "--model", str(damage_checkpoint), "--split", str(empty), "--json", str(tmp_path / "x.json")])
        == 1
    )
    assert "lists no samples" in capsys.readouterr().err
    gone = tmp_path / "gone.jsonl"
    gone.write_text(json.dumps({"pre_image": "a.png", "post_image": "b.png", "mask": "c.png", "filename": "b.png"}))
    assert (
        main(["evaluate", "--model", str(damage_checkpoint), "--split", str(gone), "--json", str(tmp_path / "x.json")])
        == 1
    )
    assert "Nothing was scored" in capsys.readouterr().err


def test_convert_damage_model(damage_checkpoint, tmp_path):
    out = tmp_path / "converted.safetensors"
    assert main(["convert-damage-model", str(damage_checkpoint), str(out)]) == 0
    assert load_damage_model(out) is not None


# ---------------------------------------------------------------------------------------------
# Localisation on the building output, per-sample rows, parity with torchange.


def _crafted_split(folder, samples=2, post_size=None):
    """Samples of the crafted scene of test_damage_localisation (F1_loc 0.8 on the building output,
    8/13 on damage > 0); `post_size` makes the last sample's post image another size."""
    from crafted_damage import crafted_images, crafted_maps

    pre, post = crafted_images()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(samples):
        _write(folder / "images" / f"pre_{i}.png", pre)
        image = Image.fromarray(post)
        if post_size is not None and i == samples - 1:
            image = image.resize(post_size, Image.NEAREST)
        image.save(folder / "images" / f"post_{i}.png")
        _write(folder / "images" / f"mask_{i}.png", crafted_maps()["gt"])
        lines.append(
            {
                "pre_image": f"images/pre_{i}.png",
                "post_image": f"images/post_{i}.png",
                "mask": f"images/mask_{i}.png",
                "filename": f"post_{i}.png",
            }
        )
    path = folder / "crafted.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture
def crafted_model(monkeypatch):
    """`rsedit` commands run the CraftedModel double instead of loading the checkpoint."""
    from crafted_damage import CraftedModel

    import rsedit_core.cli_damage as cli_damage

    loaded = []

    def load(path, device, dtype):
        loaded.append((path, device, dtype))
        return CraftedModel()

    monkeypatch.setattr(cli_damage, "_load_model", load)
    return loaded


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a command gets as far as loading the model."""
    import rsedit_core.cli_damage as cli_damage

    def load(*_):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(cli_damage, "_load_model", load)


def test_evaluate_scores_localisation_on_the_building_output(damage_checkpoint, tmp_path, crafted_model, capsys):
    from crafted_damage import F1_DAM, F1_LOC, SCORE

    split = _crafted_split(tmp_path)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(damage_checkpoint), "--split", str(split), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    # 0.8, not the 8/13 = 0.615 that damage > 0 gives on this scene.
    assert metrics["f1_loc"] == pytest.approx(F1_LOC, abs=1e-6)
    assert (metrics["loc_tp"], metrics["loc_fp"], metrics["loc_fn"]) == (2 * 1536, 2 * 256, 2 * 512)
    assert metrics["f1_dam"] == pytest.approx(F1_DAM, abs=2e-6) and metrics["score"] == pytest.approx(SCORE, abs=2e-6)
    assert metrics["localisation"].startswith("building output")
    rows = metrics["per_sample"]
    assert [r["filename"] for r in rows] == ["post_0.png", "post_1.png"] and [r["line"] for r in rows] == [1, 2]
    for row in rows:
        assert row["f1_loc"] == pytest.approx(F1_LOC, abs=1e-6) and row["f1_dam"] == pytest.approx(F1_DAM, abs=2e-6)
    assert "F1_loc 0.8000" in capsys.readouterr().out


def test_assess_scores_localisation_on_the_building_output(damage_checkpoint, tmp_path, crafted_model, capsys):
    from crafted_damage import F1_LOC, crafted_maps

    split = _crafted_split(tmp_path, samples=1)
    images = split.parent / "images"
    report_path = tmp_path / "r.json"
    argv = [
        "assess", "--model", str(damage_checkpoint), "--pre", str(images / "pre_0.png"),
        "--post", str(images / "post_0.png"), "--gt", str(images / "mask_0.png"),
        "--out-map", str(tmp_path / "map.png"), "--json", str(report_path),
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["scores"]["f1_loc"] == pytest.approx(F1_LOC, abs=1e-6)
    assert report["building_fraction"] == pytest.approx((1536 + 256) / 64**2)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "map.png")), crafted_maps()["damage"])
    assert "F1_loc 0.8000" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial*"))  # atomic writes leave no temporary files


def test_evaluate_matches_torchange_on_random_changestar(damage_checkpoint, split, tmp_path):
    """The random ChangeStar calls every pixel a building (building_prob 0.52..0.65) and gives
    change class 0 to most of them: the building output and damage > 0 differ widely. Our
    `rsedit evaluate` JSON equals torchange's evaluator fed with the building output."""
    import torch
    from conftest import oracle_python
    from crafted_damage import run_oracle

    oracle_python()
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(damage_checkpoint), "--split", str(split), "--json", str(out)]) == 0
    ours = json.loads(out.read_text())
    model = load_damage_model(damage_checkpoint)
    load = lambda name: torch.from_numpy(  # noqa: E731
        np.asarray(Image.open(split.parent / "images" / name), dtype=np.float32) / 255
    ).permute(2, 0, 1)[None]
    results = [assess(model, load(f"pre_{i}.png"), load(f"post_{i}.png")) for i in range(3)]
    gt = np.stack([np.asarray(Image.open(split.parent / "images" / f"mask_{i}.png")) for i in range(3)])
    damage = np.stack([r.damage[0].numpy() for r in results])
    building = np.stack([r.building[0].numpy() for r in results])
    assert (building & (damage == 0)).mean() > 0.3  # the two readings really differ here
    folder = tmp_path / "oracle"
    folder.mkdir()
    reference = run_oracle(
        folder,
        {"building": {"pred": damage, "gt": gt, "pred_building": building}, "damage_only": {"pred": damage, "gt": gt}},
    )
    theirs = reference["building"]["dataset"]["exact"]
    print(f"random ChangeStar split: ours F1_loc {ours['f1_loc']!r}, torchange {theirs['f1_loc']!r}")
    for key in ("f1_loc", "f1_dam", "score"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9, rel=0)
    assert list(ours["per_class"].values()) == pytest.approx(theirs["per_class"], abs=1e-9, rel=0)
    for row, sample in zip(ours["per_sample"], reference["building"]["samples"], strict=True):
        assert row["f1_loc"] == pytest.approx(sample["exact"]["f1_loc"], abs=1e-9, rel=0)
        assert row["f1_dam"] == pytest.approx(sample["exact"]["f1_dam"], abs=1e-9, rel=0)
    old = reference["damage_only"]["dataset"]["exact"]["f1_loc"]
    print(f"random ChangeStar split: torchange on damage > 0 would read F1_loc {old!r}")
    assert abs(ours["f1_loc"] - old) > 0.05


# ---------------------------------------------------------------------------------------------
# Bad inputs: each refused with a clear message before the model is loaded, nothing written.


def _assess_argv(checkpoint, images, tmp_path, **overrides):
    options = {
        "--model": str(checkpoint),
        "--pre": str(images / "pre_0.png"),
        "--post": str(images / "post_0.png"),
        "--out-map": str(tmp_path / "out" / "map.png"),
        "--device": "cpu",
    } | overrides
    return ["assess", *(item for pair in options.items() if pair[1] is not None for item in pair)]


def _refused(argv, capsys, *fragments):
    assert main(argv) == 1
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"--out-map": "OUT/map"}, ["--out-map", "has no file extension", ".png"]),
        ({"--out-map": "OUT/map.jpg"}, ["unknown extension '.jpg'", ".png, .tif, .tiff"]),
        ({"--out-map": "PRE"}, ["is the input file", "never overwrites a source"]),
        ({"--gt": "GT", "--out-map": "GT"}, ["--out-map", "is the input file"]),
        ({"--model": "OUT/map.png", "--out-map": "OUT/map.png"}, ["--out-map", "is the input file"]),
        ({"--out-map": "OUT/map.png", "--overlay": "POST"}, ["--overlay", "is the input file"]),
        ({"--out-map": "OUT/map.png", "--overlay": "OUT/map.png"}, ["--overlay and --out-map both name"]),
        ({"--json": "OUT/report.txt"}, ["--json", "unknown extension '.txt'", ".json"]),
        ({"--out-map": "OUT/folder.png"}, ["is an existing folder"]),
        ({"--out-map": "OUT/file.txt/map.png"}, ["is a file, not a folder"]),
        ({"--device": "gpu"}, ["Unknown device 'gpu'", "cpu, cuda"]),
        ({"--device": "cuda"}, ["Device 'cuda' was asked for", "--device cpu"]),
        ({"--device": "cuda:3"}, ["cuda:3"]),
        ({"--tile": "48"}, ["--tile 48", "multiple of 32", "at least 32", "try 32 or 64"]),
        ({"--tile": "16"}, ["--tile 16", "at least 32", "try 32"]),
        ({"--tile": "0"}, ["--tile 0", "at least 32"]),
        ({"--tile": "-64"}, ["--tile -64", "at least 32"]),
        ({"--model": "OUT/absent.safetensors"}, ["No damage-model checkpoint at"]),
        ({"--model": "OUT/file.txt"}, ["neither a PyTorch checkpoint", "nor a safetensors"]),
        ({"--pre": "OUT/file.txt"}, ["file.txt", "text file"]),
        ({"--post": "OUT/post_wide.png"}, ["differ in size", "pre is 64x64, post is 96x64"]),
        ({"--gt": "OUT/mask_wide.png"}, ["--gt", "is 96x64 but the scene", "is 64x64"]),
        ({"--gt": "OUT/mask_bad.png"}, ["mask_bad.png", "values outside", ": 7"]),
    ],
)
def test_assess_refuses_bad_inputs_before_loading(
    damage_checkpoint, split, tmp_path, capsys, no_model, overrides, fragments
):
    import torch

    if overrides.get("--device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    images = split.parent / "images"
    out = tmp_path / "out"
    out.mkdir()
    (out / "folder.png").mkdir()
    (out / "file.txt").write_text("not an image")
    rng = np.random.default_rng(1)
    _write(out / "post_wide.png", rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    _write(out / "mask_wide.png", np.zeros((64, 96), np.uint8))
    bad = np.zeros((64, 64), np.uint8)
    bad[0, 0] = 7
    _write(out / "mask_bad.png", bad)
    names = {
        "OUT": str(out),
        "PRE": str(images / "pre_0.png"),
        "POST": str(images / "post_0.png"),
        "GT": str(images / "mask_0.png"),
    }
    resolved = {}
    for key, value in overrides.items():
        for name, path in names.items():
            value = value.replace(name, path)
        resolved[key] = value
    before = sorted(p.name for p in out.iterdir())
    _refused(_assess_argv(damage_checkpoint, images, tmp_path, **resolved), capsys, *fragments)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written


def test_assess_refuses_an_unwritable_folder(damage_checkpoint, split, tmp_path, capsys, no_model, monkeypatch):
    import os

    images = split.parent / "images"
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    argv = _assess_argv(damage_checkpoint, images, tmp_path, **{"--out-map": str(locked / "map.png")})
    _refused(argv, capsys, "is not writable")


def test_assess_tile_floor_runs_and_help_names_it(damage_checkpoint, split, tmp_path, crafted_model, capsys):
    from rsedit_core.cli import build_parser

    images = split.parent / "images"
    argv = _assess_argv(damage_checkpoint, images, tmp_path, **{"--tile": "32"})
    assert main(argv) == 0
    assert "tiles of 32 px" in capsys.readouterr().out
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("assess", "evaluate"):
        assert "a multiple of 32, at least 32" in " ".join(commands[name].format_help().split())


def test_a_failed_write_leaves_no_partial_file(damage_checkpoint, split, tmp_path, crafted_model, monkeypatch):
    from PIL import Image as PILImage

    images = split.parent / "images"
    real_save = PILImage.Image.save

    def failing_save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        if "overlay" in str(fp):
            raise OSError("No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", failing_save)
    argv = _assess_argv(damage_checkpoint, images, tmp_path, **{"--overlay": str(tmp_path / "out" / "overlay.png")})
    assert main(argv) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["map.png"]


def _evaluate(checkpoint, split, tmp_path, *extra):
    return ["evaluate", "--model", str(checkpoint), "--split", str(split), "--json", str(tmp_path / "m.json"), *extra]


@pytest.mark.parametrize(
    ("lines", "extra", "fragments"),
    [
        (["[1, 2]"], [], ["test.jsonl:1 is a JSON list, not an object"]),
        (["GOOD", "3"], [], ["test.jsonl:2 is a JSON int, not an object"]),
        (["GOOD", '"images/pre_0.png"'], [], ["test.jsonl:2 is a JSON str, not an object"]),
        (["{not json"], [], ["test.jsonl:1 is not valid JSON"]),
        (['{"pre_image": "images/pre_0.png"}'], [], ["test.jsonl:1 lacks key(s) post_image, mask"]),
        (["GOOD", '{"pre_image": "a.png", "post_image": "b.png", "mask": null}'], [], ["test.jsonl:2: mask must be"]),
        (["GOOD"], ["--results", "RESULTS"], ["test.jsonl:1 lacks key(s) filename"]),
        (["GOOD"], ["--results", "ABSENT"], ["--results", "is not a folder"]),
        (["GOOD"], ["--root", "ABSENT"], ["--root", "is not a folder"]),
        (["GOOD"], ["--device", "gpu"], ["Unknown device 'gpu'"]),
        (["GOOD"], ["--tile", "40"], ["--tile 40", "at least 32", "try 32 or 64"]),
        (["GOOD", "TEXT_MASK"], [], ["test.jsonl:2: mask", "notes.png", "not an image"]),
        (["GOOD", "BAD_MASK"], [], ["test.jsonl:2: mask", "mask_bad.png", "values outside", ": 9"]),
        (["WIDE_POST"], [], ["Nothing was scored", "1 were refused", "post 96x64 differs from pre 64x64"]),
        (["TINY", "MISSING"], [], ["Nothing was scored", "1 have missing files", "scene 16x16 is below 32 px"]),
    ],
)
def test_evaluate_refuses_bad_splits_before_loading(
    damage_checkpoint, split, tmp_path, capsys, no_model, lines, extra, fragments
):
    images = split.parent / "images"
    (images / "notes.png").write_text("just text")
    bad = np.zeros((64, 64), np.uint8)
    bad[3, 3] = 9
    _write(images / "mask_bad.png", bad)
    _write(images / "post_wide.png", np.zeros((64, 96, 3), np.uint8))
    _write(images / "t.png", np.zeros((16, 16, 3), np.uint8))
    _write(images / "tm.png", np.zeros((16, 16), np.uint8))
    good = {"pre_image": "images/pre_0.png", "post_image": "images/post_0.png", "mask": "images/mask_0.png"}
    named = {
        "GOOD": json.dumps(good),
        "TEXT_MASK": json.dumps(good | {"mask": "images/notes.png"}),
        "BAD_MASK": json.dumps(good | {"mask": "images/mask_bad.png"}),
        "WIDE_POST": json.dumps(good | {"post_image": "images/post_wide.png"}),
        "TINY": json.dumps({"pre_image": "images/t.png", "post_image": "images/t.png", "mask": "images/tm.png"}),
        "MISSING": json.dumps(good | {"post_image": "images/absent.png"}),
    }
    path = split.parent / "test.jsonl"
    path.write_text("\n".join(named.get(line, line) for line in lines) + "\n")
    folders = {"RESULTS": str(split.parent / "images"), "ABSENT": str(tmp_path / "absent")}
    _refused(_evaluate(damage_checkpoint, path, tmp_path, *(folders.get(e, e) for e in extra)), capsys, *fragments)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("json_name", "fragment"),
    [
        ("metrics", "has no file extension"),
        ("metrics.csv", "unknown extension '.csv'"),
        ("folder.json", "existing folder"),
    ],
)
def test_evaluate_refuses_bad_json_paths(damage_checkpoint, split, tmp_path, capsys, no_model, json_name, fragment):
    (tmp_path / "folder.json").mkdir()
    argv = _evaluate(damage_checkpoint, split, tmp_path)
    argv[-1] = str(tmp_path / json_name)
    _refused(argv, capsys, "--json", fragment)


def test_evaluate_refuses_size_mismatched_posts_unless_resize_is_asked(
    damage_checkpoint, tmp_path, crafted_model, capsys
):
    from crafted_damage import F1_LOC

    split = _crafted_split(tmp_path, samples=3, post_size=(96, 64))
    mask = np.zeros((48, 48), np.uint8)
    _write(tmp_path / "images" / "mask_small.png", mask)
    lines = split.read_text().splitlines()
    extra = json.loads(lines[0]) | {"mask": "images/mask_small.png", "filename": "small_mask.png"}
    split.write_text("\n".join([*lines, json.dumps(extra)]) + "\n")
    out = tmp_path / "m.json"
    argv = ["evaluate", "--model", str(damage_checkpoint), "--split", str(split), "--json", str(out)]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert metrics["samples"] == 4 and metrics["samples_scored"] == 2 and metrics["samples_refused"] == 2
    reasons = {r["filename"]: r["reason"] for r in metrics["refused"]}
    assert (
        reasons["post_2.png"].startswith("post 96x64 differs from pre 64x64")
        and "--resize-post" in reasons["post_2.png"]
    )
    assert reasons["small_mask.png"] == "mask 48x48 differs from pre 64x64"
    assert metrics["resized_post"] == [] and "2 of 4 samples refused" in printed
    assert [r["filename"] for r in metrics["per_sample"]] == ["post_0.png", "post_1.png"]

    assert (
        main(
            ["evaluate", "--model", str(damage_checkpoint), "--split", str(split), "--json", str(out), "--resize-post"]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert metrics["samples_scored"] == 3 and [r["filename"] for r in metrics["refused"]] == ["small_mask.png"]
    assert metrics["resized_post"] == [{"line": 3, "filename": "post_2.png", "from": "96x64", "to": "64x64"}]
    assert "1 post image(s) resized to their pre image's size (--resize-post" in printed
    assert "post_2.png 96x64 -> 64x64" in printed
    # Nearest-neighbour 64 -> 96 -> 64 bilinear keeps the class bands: F1_loc stays close to 0.8.
    assert metrics["per_sample"][2]["f1_loc"] == pytest.approx(F1_LOC, abs=0.05)


def test_convert_refuses_bad_outputs(damage_checkpoint, tmp_path, capsys):
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(damage_checkpoint.read_bytes())
    (tmp_path / "folder.safetensors").mkdir()
    cases = [
        (tmp_path / "model.pth", ["output", "unknown extension '.pth'", ".safetensors"]),
        (tmp_path / "model", ["has no file extension"]),
        (copy, ["is the input file", "never overwrites a source"]),
        (tmp_path / "folder.safetensors", ["is an existing folder"]),
    ]
    for output, fragments in cases:
        _refused(["convert-damage-model", str(copy), str(output)], capsys, *fragments)
    assert copy.read_bytes() == damage_checkpoint.read_bytes()
    _refused(
        ["convert-damage-model", str(tmp_path / "absent.pth"), str(tmp_path / "o.safetensors")], capsys, "No damage"
    )
    (tmp_path / "notes.pth").write_text("hello")
    _refused(["convert-damage-model", str(tmp_path / "notes.pth"), str(tmp_path / "o.safetensors")], capsys, "neither")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.safetensors", "model.safetensors", "notes.pth"]


def test_convert_of_a_wrong_checkpoint_leaves_no_file(tmp_path, capsys):
    import torch

    source = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, source)
    existing = tmp_path / "out.safetensors"
    existing.write_bytes(b"previous")
    _refused(["convert-damage-model", str(source), str(existing)], capsys, "not a ChangeStar1x256 damage checkpoint")
    assert existing.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == [
        "other.pth",
        "out.safetensors",
    ]


def test_parser_constants_match_the_library():
    from rsedit_core import cli_damage
    from rsedit_core.damage import inference
    from rsedit_core.devices import DTYPES

    assert cli_damage.DTYPE_NAMES == tuple(DTYPES)
    assert (cli_damage.TILE_FLOOR, cli_damage.DEFAULT_TILE) == (inference.MIN_TILE, inference.DEFAULT_TILE)
