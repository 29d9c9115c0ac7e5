"""Training data: discovery and its report, image loading, augmentation and the resumable epoch order."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rsedit_core.errors import InputError
from rsedit_core.train.data import (
    DataReport,
    EditPair,
    EditPairDataset,
    EpochSampler,
    PairSource,
    discover_pairs,
)


def random_pixels(width=40, height=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_png(path, width=40, height=48, seed=0) -> np.ndarray:
    """A random RGB PNG at ``path``; returns its ``[H, W, 3]`` uint8 pixels."""
    pixels = random_pixels(width, height, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def scaled(pixels: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 as the dataset returns it: ``[3, H, W]`` in -1..1."""
    return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1


def write_jsonl(path, records) -> None:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")


def record(pre, post, caption="a road was built", key="change_caption") -> dict:
    return {"pre_image": str(pre), "post_image": str(post), **({key: caption} if key else {})}


@pytest.fixture
def rscc(tmp_path):
    """An RSCC folder with one record of each kind that discovery must tell apart."""
    root = tmp_path / "rscc"
    for i, name in enumerate(["a", "b", "t1", "t2", "t3", "c", "s"]):
        write_png(root / "images" / f"{name}_pre.png", seed=2 * i)
        write_png(root / "images" / f"{name}_post.png", seed=2 * i + 1)
    write_png(root / "images" / "s_post.png", width=48, height=40)
    (root / "images" / "notes_post.png").write_text("not an image")
    images = root / "images"
    write_jsonl(
        root / "RSCC_qvq.jsonl",
        [
            record("images/a_pre.png", "images/a_post.png"),
            record(images / "b_pre.png", images / "b_post.png", "a field flooded", key="caption"),
            record("images/t1_pre.png", "images/t1_post.png"),
            record("images/t2_pre.png", "images/t2_post.png"),
            record("images/t3_pre.png", "images/t3_post.png"),
            record("images/a_pre.png", "images/gone_post.png"),
            record("images/c_pre.png", "images/c_post.png", key=None),
            record("images/s_pre.png", "images/s_post.png"),
            record("images/a_pre.png", "images/notes_post.png"),
            "{not json",
            "",
            {"pre_image": "images/a_pre.png", "change_caption": "no post"},
        ],
    )
    (root / "test_set.txt").write_text(f"images/t1_pre.png\nt2_pre.png\n{(images / 't3_pre.png').resolve()}\n\n")
    return root


def test_rscc_report_counts_every_skip(rscc, caplog):
    with caplog.at_level(logging.INFO, logger="rsedit_core.train.data"):
        pairs, report, source = discover_pairs(rscc)
    images = (rscc / "images").resolve()
    assert pairs == [
        EditPair(str(images / "a_pre.png"), str(images / "a_post.png"), "a road was built"),
        EditPair(str(images / "b_pre.png"), str(images / "b_post.png"), "a field flooded"),
    ]
    assert report == DataReport(
        source=str(rscc / "RSCC_qvq.jsonl"),
        records=11,
        used=2,
        excluded_test=3,
        missing_files=1,
        unreadable=3,
        missing_caption=1,
        size_mismatch=1,
        problems=report.problems,
    )
    assert report.problems == [
        f"line 6: post image {images / 'gone_post.png'} does not exist",
        "line 7: no change_caption/caption/instruction/edit_prompt",
        "line 8: pre image is 40x48 but post image is 48x40",
        f"line 9: post image {images / 'notes_post.png'} is not a readable image",
        "line 10: not valid JSON (Expecting property name enclosed in double quotes)",
    ]
    summary = report.summary()
    assert summary.startswith(f"{rscc / 'RSCC_qvq.jsonl'}: 11 records, 2 used; skipped 3 listed as test pairs, ")
    for part in ("1 with a missing image file", "3 unreadable", "1 without a caption", "1 with pre and post of"):
        assert part in summary
    assert summary in caplog.text
    assert isinstance(source, PairSource)
    assert np.array_equal(np.asarray(source.load(pairs[0].pre, "pre")), random_pixels(seed=0))


def test_without_image_check_size_and_content_are_not_judged(rscc):
    pairs, report, _ = discover_pairs(rscc, check_images=False)
    assert (report.used, report.unreadable, report.size_mismatch) == (4, 2, 0)
    assert [p.pre.rsplit("/", 1)[1] for p in pairs] == ["a_pre.png", "b_pre.png", "s_pre.png", "a_pre.png"]


def test_fallback_annotation_name_and_explicit_annotation(tmp_path):
    write_png(tmp_path / "imgs" / "p.png", seed=1)
    write_png(tmp_path / "imgs" / "q.png", seed=2)
    write_jsonl(tmp_path / "train.jsonl", [{"pre_image": "imgs/p.png", "post_image": "imgs/q.png", "instruction": "x"}])
    pairs, report, _ = discover_pairs(tmp_path)
    assert report.source == str(tmp_path / "train.jsonl")
    assert pairs == [EditPair(str((tmp_path / "imgs/p.png").resolve()), str((tmp_path / "imgs/q.png").resolve()), "x")]
    # Paths relative to the data root, not to the annotation file's own folder.
    (tmp_path / "lists").mkdir()
    write_jsonl(tmp_path / "lists" / "mine.jsonl", [record("imgs/p.png", "imgs/q.png")])
    assert discover_pairs(tmp_path, annotation="lists/mine.jsonl")[0][0].pre == pairs[0].pre


def test_csv_folder_of_pairs(tmp_path):
    write_png(tmp_path / "in.png", seed=1)
    write_png(tmp_path / "out.png", seed=2)
    (tmp_path / "pairs.csv").write_text(
        'input_image,edited_image,edit_prompt\nin.png,out.png,"build a road, then a bridge"\nin.png,,no post\n'
    )
    pairs, report, _ = discover_pairs(tmp_path / "pairs.csv")
    assert pairs[0].caption == "build a road, then a bridge" and pairs[0].post.endswith("/out.png")
    assert (report.records, report.used, report.unreadable) == (2, 1, 1)
    assert report.problems == ["line 3: no pre_image/input_image or no post_image/edited_image"]


def test_no_usable_pairs_raises_with_the_counts(tmp_path):
    with pytest.raises(InputError, match="No annotation file in .*RSCC_qvq.jsonl"):
        discover_pairs(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        discover_pairs(tmp_path / "nowhere")
    write_jsonl(tmp_path / "RSCC_qvq.jsonl", [record("a.png", "b.png"), record("c.png", "d.png")])
    with pytest.raises(InputError) as info:
        discover_pairs(tmp_path)
    message = str(info.value)
    assert "2 records, 0 used; skipped 2 with a missing image file" in message
    assert "pre image" in message and "Expected one of: an RSCC folder" in message
    (tmp_path / "RSCC_qvq.jsonl").write_text("")
    with pytest.raises(InputError, match="0 records, 0 used"):
        discover_pairs(tmp_path)


def test_default_caption_fills_missing_captions(tmp_path):
    write_png(tmp_path / "a.png", seed=1)
    write_png(tmp_path / "b.png", seed=2)
    write_jsonl(tmp_path / "annotations.jsonl", [record("a.png", "b.png", key=None), record("a.png", "b.png", "  ")])
    pairs, report, _ = discover_pairs(tmp_path, default_caption="make the change")
    assert [p.caption for p in pairs] == ["make the change"] * 2 and report.missing_caption == 0


def test_explicit_exclude_file(tmp_path):
    for name in ("a", "b"):
        write_png(tmp_path / f"{name}.png")
    write_jsonl(tmp_path / "RSCC_qvq.jsonl", [record("a.png", "b.png"), record("b.png", "a.png")])
    (tmp_path / "held_out.txt").write_text("a.png\n")
    pairs, report, _ = discover_pairs(tmp_path, exclude=tmp_path / "held_out.txt")
    assert report.excluded_test == 1 and pairs[0].pre.endswith("/b.png")
    with pytest.raises(InputError, match="No exclude list"):
        discover_pairs(tmp_path, exclude=tmp_path / "missing.txt")


@pytest.fixture
def hf_rows():
    datasets = pytest.importorskip("datasets")
    pre = [random_image(seed) for seed in (1, 3, 5, 7)]
    post = [random_image(seed) for seed in (2, 4, 6, 8)]
    post[3] = None
    features = datasets.Features(
        {"input_image": datasets.Image(), "edited_image": datasets.Image(), "edit_prompt": datasets.Value("string")}
    )
    columns = {"input_image": pre, "edited_image": post, "edit_prompt": ["add a road", "flood it", " ", "x"]}
    return datasets, datasets.Dataset.from_dict(columns, features=features), pre, post


def random_image(seed: int) -> Image.Image:
    return Image.fromarray(random_pixels(32, 32, seed))


def test_hf_saved_dataset(tmp_path, hf_rows):
    datasets, dataset, pre, post = hf_rows
    dataset.save_to_disk(str(tmp_path / "hf"))
    pairs, report, source = discover_pairs(tmp_path / "hf")
    assert pairs == [EditPair(0, 0, "add a road"), EditPair(1, 1, "flood it")]
    assert (report.records, report.used, report.unreadable, report.missing_caption) == (4, 2, 1, 1)
    item = EditPairDataset(pairs, source, 32)[1]
    assert torch.equal(item["pre"], scaled(np.asarray(pre[1])))
    assert torch.equal(item["post"], scaled(np.asarray(post[1]))) and item["caption"] == "flood it"
    # Spawned DataLoader workers receive the source pickled.
    restored = pickle.loads(pickle.dumps(source))
    assert np.array_equal(np.asarray(restored.load(0, "post")), np.asarray(post[0]))
    datasets.DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert discover_pairs(tmp_path / "dd")[1].records == 4
    datasets.DatasetDict({"validation": dataset}).save_to_disk(str(tmp_path / "val"))
    with pytest.raises(InputError, match="has the splits validation but no 'train' split"):
        discover_pairs(tmp_path / "val")


def test_hf_missing_column_and_hub_id(tmp_path, hf_rows, monkeypatch):
    datasets, dataset, _, _ = hf_rows
    dataset.remove_columns("edit_prompt").save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(InputError, match="has the columns input_image, edited_image; training needs"):
        discover_pairs(tmp_path / "hf")
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append((name, split)) or dataset)
    pairs, report, _ = discover_pairs("hf:org/rs-pairs")
    assert calls == [("org/rs-pairs", "train")] and report.source == "hf:org/rs-pairs" and len(pairs) == 2


def test_exact_values_without_resize(tmp_path):
    pixels = write_png(tmp_path / "a.png", 32, 32, seed=3)
    post = write_png(tmp_path / "b.png", 32, 32, seed=4)
    item = EditPairDataset([EditPair(str(tmp_path / "a.png"), str(tmp_path / "b.png"), "c")], PairSource(), 32)[0]
    assert item["pre"].dtype == torch.float32 and item["pre"].shape == (3, 32, 32)
    assert torch.equal(item["pre"], scaled(pixels)) and torch.equal(item["post"], scaled(post))
    assert item["pre"][0, 0, 0].item() == pytest.approx(pixels[0, 0, 0] / 127.5 - 1)
    assert (item["caption"], item["index"], item["skipped"]) == ("c", 0, 0)


def test_resize_shorter_side_then_centre_crop(tmp_path):
    pixels = write_png(tmp_path / "a.png", 64, 48)
    pair = EditPair(str(tmp_path / "a.png"), str(tmp_path / "a.png"), "c")
    item = EditPairDataset([pair], PairSource(), 32)[0]
    expected = Image.fromarray(pixels).resize((43, 32), Image.Resampling.BICUBIC).crop((5, 0, 37, 32))
    assert item["pre"].shape == (3, 32, 32) and torch.equal(item["pre"], scaled(np.asarray(expected)))
    squashed = EditPairDataset([pair], PairSource(), 32, center_crop=False)[0]["pre"]
    assert torch.equal(squashed, scaled(np.asarray(Image.fromarray(pixels).resize((32, 32), Image.Resampling.BICUBIC))))


def test_grayscale_becomes_rgb(tmp_path):
    Image.fromarray(np.full((32, 32), 51, dtype=np.uint8), "L").save(tmp_path / "g.png")
    pair = EditPair(str(tmp_path / "g.png"), str(tmp_path / "g.png"), "c")
    assert torch.equal(EditPairDataset([pair], PairSource(), 32)[0]["pre"], torch.full((3, 32, 32), 51 / 127.5 - 1))


def test_random_crop_and_flip_shared_by_pre_and_post_and_set_by_key(tmp_path):
    pixels = write_png(tmp_path / "a.png", 40, 48)
    pair = EditPair(str(tmp_path / "a.png"), str(tmp_path / "a.png"), "c")
    dataset = EditPairDataset([pair], PairSource(), 32, random_crop=True, random_flip=True, seed=7)
    resized = scaled(np.asarray(Image.fromarray(pixels).resize((32, 38), Image.Resampling.BICUBIC)))
    candidates = {}
    for top in range(7):
        crop = resized[:, top : top + 32]
        for flips in ((), (-1,), (-2,), (-1, -2)):
            candidates[(top, flips)] = crop.flip(flips) if flips else crop
    seen = set()
    for key in range(16):
        item = dataset[key]
        assert torch.equal(item["pre"], item["post"])
        match = [name for name, crop in candidates.items() if torch.equal(item["pre"], crop)]
        assert len(match) >= 1
        seen.add(match[0])
        assert torch.equal(dataset[key]["pre"], item["pre"])
    assert len(seen) >= 4 and len({top for top, _ in seen}) >= 2 and len({f for _, f in seen}) >= 2
    other_seed = EditPairDataset([pair], PairSource(), 32, random_crop=True, random_flip=True, seed=8)
    assert any(not torch.equal(other_seed[key]["pre"], dataset[key]["pre"]) for key in range(4))


def test_epoch_sampler_order():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert first == list(sampler) and len(sampler) == 10
    assert sorted(first) == list(range(20, 30))
    again = EpochSampler(10, seed=3)
    again.set_epoch(2)
    assert list(again) == first
    sampler.set_epoch(3)
    assert sorted(list(sampler)) == list(range(30, 40))
    assert [k - 30 for k in sampler] != [k - 20 for k in first]
    assert list(EpochSampler(4, seed=0, shuffle=False)) == [0, 1, 2, 3]
    pinned = torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()
    assert [k - 20 for k in first] == pinned


def test_corrupt_file_is_replaced_by_the_next_pair(tmp_path, caplog):
    write_png(tmp_path / "bad.png")
    data = (tmp_path / "bad.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[: len(data) // 2])
    assert Image.open(tmp_path / "bad.png").size == (40, 48)
    good = write_png(tmp_path / "good.png", seed=5)
    write_png(tmp_path / "wide.png", 48, 40)
    pairs = [
        EditPair(str(tmp_path / "bad.png"), str(tmp_path / "good.png"), "broken"),
        EditPair(str(tmp_path / "good.png"), str(tmp_path / "good.png"), "fine"),
        EditPair(str(tmp_path / "good.png"), str(tmp_path / "wide.png"), "misregistered"),
    ]
    dataset = EditPairDataset(pairs, PairSource(), 40)
    with caplog.at_level(logging.WARNING, logger="rsedit_core.train.data"):
        item = dataset[0]
    assert (item["index"], item["skipped"], item["caption"]) == (1, 1, "fine")
    assert torch.equal(item["pre"], scaled(good[4:44]))
    assert f"Cannot decode the pre image {tmp_path / 'bad.png'}: image file is truncated" in caplog.text
    # A size mismatch found only at load time (no header check) is skipped the same way, then the broken pair.
    item = dataset[5]
    assert (item["index"], item["skipped"]) == (1, 2) and "48x40" in caplog.text
    with pytest.raises(InputError, match="2 training pairs in a row from pair 1 could not be read"):
        EditPairDataset([pairs[0], pairs[2]], PairSource(), 40)[1]


def test_workers_give_the_same_tensors(tmp_path):
    pairs = []
    for i in range(4):
        write_png(tmp_path / f"{i}a.png", seed=i)
        write_png(tmp_path / f"{i}b.png", seed=10 + i)
        pairs.append(EditPair(str(tmp_path / f"{i}a.png"), str(tmp_path / f"{i}b.png"), f"caption {i}"))
    dataset = EditPairDataset(pairs, PairSource(), 32, random_crop=True, random_flip=True, seed=1)

    def batches(workers: int) -> list[dict]:
        sampler = EpochSampler(len(pairs), seed=1)
        sampler.set_epoch(1)
        return list(DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=workers))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 2
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["pre"], b["pre"]) and torch.equal(a["post"], b["post"])
        assert a["caption"] == b["caption"] and torch.equal(a["index"], b["index"])
        assert a["skipped"].tolist() == [0, 0]
