"""Training pairs: discovery with a report, image loading, augmentation and a resumable epoch order.

Three sources are read: the RSCC layout (``RSCC_qvq.jsonl`` with ``pre_image``, ``post_image`` and
``change_caption``, plus ``test_set.txt`` naming held-out pairs), a folder of pairs described by a CSV or
JSONL table, and a Hugging Face dataset (a ``save_to_disk`` folder or ``hf:<hub id>``) with the columns
``input_image``, ``edited_image`` and ``edit_prompt``. Discovery checks every pair before any model is
built and says what it skipped and why. A dataset item is a pure function of its key, so a resumed run
and every worker process draw the same crops and flips.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from ..errors import InputError, require
from ..images import pil_to_tensor

logger = logging.getLogger(__name__)

ANNOTATION_NAMES = ("RSCC_qvq.jsonl", "annotations.jsonl", "captions.jsonl", "train.jsonl", "pairs.csv", "metadata.csv")
PRE_KEYS = ("pre_image", "input_image")
POST_KEYS = ("post_image", "edited_image")
CAPTION_KEYS = ("change_caption", "caption", "instruction", "edit_prompt")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
TEST_SET_NAME = "test_set.txt"
MAX_PROBLEMS = 5
LAYOUT_HELP = (
    "Expected one of: an RSCC folder with RSCC_qvq.jsonl (one JSON object a line with pre_image, post_image and "
    "change_caption; image paths absolute or relative to the file) and an optional test_set.txt; a folder of pairs "
    "with pairs.csv or metadata.csv (header pre_image,post_image,change_caption or input_image,edited_image,"
    "edit_prompt); or a Hugging Face dataset, saved with save_to_disk or given as hf:<hub id>, with the columns "
    "input_image, edited_image and edit_prompt."
)
_SKIP_LABELS = (
    ("excluded_test", "listed as test pairs"),
    ("missing_files", "with a missing image file"),
    ("unreadable", "unreadable (not an image, a bad line or no image path)"),
    ("missing_caption", "without a caption"),
    ("size_mismatch", "with pre and post of different sizes"),
)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)


@dataclass(frozen=True)
class EditPair:
    """One example: ``pre``/``post`` are absolute file paths, or row indices into a Hugging Face dataset.
    ``mask`` is the record's ground-truth damage map (the RSCC test split's ``mask``), if it names one."""

    pre: str | int
    post: str | int
    caption: str
    mask: str | None = None


@dataclass
class DataReport:
    """What discovery read, how much it used and why it skipped the rest."""

    source: str
    records: int = 0
    used: int = 0
    excluded_test: int = 0
    missing_files: int = 0
    unreadable: int = 0
    missing_caption: int = 0
    size_mismatch: int = 0
    problems: list[str] = field(default_factory=list)

    def skip(self, reason: str, problem: str | None = None) -> None:
        """Count one skipped record under the counter ``reason``; keep the first few problem texts."""
        setattr(self, reason, getattr(self, reason) + 1)
        if problem and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def summary(self) -> str:
        """One paragraph naming every non-zero count and the first problems."""
        text = f"{self.source}: {self.records} records, {self.used} used"
        skipped = [f"{getattr(self, name)} {label}" for name, label in _SKIP_LABELS if getattr(self, name)]
        if skipped:
            text += "; skipped " + ", ".join(skipped)
        if self.problems:
            text += ". First problems: " + "; ".join(self.problems)
        return text + "."


class PairSource:
    """Opens the images of a pair: ``ref`` is a file path, or a row index into ``dataset`` (a Hugging Face
    ``Dataset`` whose image columns are ``columns``). Pickles for DataLoader worker processes."""

    def __init__(self, dataset: Any = None, columns: tuple[str, str] = ("input_image", "edited_image"), name: str = ""):
        self.name = name
        self._columns = {"pre": columns[0], "post": columns[1]}
        # One single-column view per side, so loading the pre image does not decode the post image too.
        self._views = None if dataset is None else {w: dataset.select_columns([c]) for w, c in self._columns.items()}

    def load(self, ref: str | int, which: str) -> Image.Image:
        """The decoded ``which`` (``"pre"`` or ``"post"``) image; raises InputError if it cannot be decoded."""
        if which not in self._columns:
            raise ValueError(f"which must be 'pre' or 'post'; got {which!r}.")
        where = f"{which} image {ref}" if self._views is None else f"{which} image in row {ref} of {self.name}"
        try:
            if self._views is None:
                with Image.open(ref) as image:
                    image.load()
            else:
                image = self._views[which][int(ref)][self._columns[which]]
                if isinstance(image, Image.Image):
                    image.load()
        except _DECODE_ERRORS as e:
            raise InputError(f"Cannot decode the {where}: {e}.") from e
        if not isinstance(image, Image.Image):
            raise InputError(f"The {where} is {type(image).__name__}, not an image.")
        return image


def discover_pairs(
    data: str | os.PathLike,
    *,
    annotation: str | os.PathLike | None = None,
    exclude: str | os.PathLike | None = None,
    default_caption: str | None = None,
    check_images: bool = True,
) -> tuple[list[EditPair], DataReport, PairSource]:
    """Find the usable training pairs of ``data`` and report the rest.

    ``data`` is a dataset folder (RSCC, a folder of pairs, or a Hugging Face ``save_to_disk`` folder), an
    annotation file (``.jsonl``/``.csv``) or ``hf:<hub id>``. Relative image paths resolve against the
    annotation file's folder, then against the ``data`` folder. ``exclude`` (default ``<root>/test_set.txt``
    if present) lists held-out ``pre_image`` paths: as written, as absolute paths or as bare file names.
    With ``check_images`` each image header is read to skip unreadable files and pairs of unequal size.
    Raises InputError, with the report and the expected layout, when no pair is usable.
    """
    default_caption = (default_caption or "").strip() or None
    text = os.fspath(data)
    path = Path(text).expanduser()
    if text.startswith("hf:") or (annotation is None and any((path / m).is_file() for m in HF_MARKERS)):
        if exclude is not None:
            logger.warning("exclude=%s is ignored: Hugging Face rows have no file paths to match.", exclude)
        pairs, report, source = _discover_hf(text, None if text.startswith("hf:") else path, default_caption)
    else:
        annotation_path, root = _find_annotation(path, annotation)
        if exclude is None and (root / TEST_SET_NAME).is_file():
            exclude = root / TEST_SET_NAME
        if exclude is not None and not Path(exclude).is_file():
            raise InputError(f"No exclude list at {exclude}; give a text file with one pre_image path a line.")
        pairs, report = _discover_files(annotation_path, root, exclude, default_caption, check_images)
        source = PairSource()
    logger.info("%s", report.summary())
    if not pairs:
        raise InputError(f"No usable training pairs. {report.summary()} {LAYOUT_HELP}")
    return pairs, report, source


def _find_annotation(data: Path, annotation: str | os.PathLike | None) -> tuple[Path, Path]:
    """The annotation file and the dataset root for ``data`` (a folder or an annotation file)."""
    if not data.exists():
        raise InputError(f"No dataset at {data}: the path does not exist. {LAYOUT_HELP}")
    root = data if data.is_dir() else data.parent
    if annotation is not None:
        found = Path(annotation).expanduser()
        found = found if found.is_absolute() or found.exists() else root / found
    elif data.is_file():
        found = data
    else:
        found = next((data / name for name in ANNOTATION_NAMES if (data / name).is_file()), None)
        if found is None:
            raise InputError(
                f"No annotation file in {data}: looked for {', '.join(ANNOTATION_NAMES)} and for a Hugging Face "
                f"dataset ({', '.join(HF_MARKERS)}). {LAYOUT_HELP}"
            )
    if not found.is_file():
        raise InputError(f"No annotation file at {found}. {LAYOUT_HELP}")
    if found.suffix.lower() not in (".jsonl", ".csv"):
        raise InputError(f"{found} is not a .jsonl or .csv annotation file. {LAYOUT_HELP}")
    return found, root


def _read_records(path: Path) -> Iterator[tuple[str, dict | None, str]]:
    """``(where, record, error)`` for each line of a JSONL file or row of a CSV file; blank lines are skipped."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(f)
            for row in reader:
                yield f"line {reader.line_num}", row, ""
            return
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield f"line {number}", None, f"not valid JSON ({e.msg})"
                continue
            if isinstance(record, dict):
                yield f"line {number}", record, ""
            else:
                yield f"line {number}", None, "not a JSON object"


def _first(record: dict, keys: tuple[str, ...]) -> str | None:
    """The first non-blank value among ``keys``, stripped."""
    for key in keys:
        value = record.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _resolve(path: str, bases: list[Path]) -> Path:
    """An absolute path: ``path`` itself, or the first base joined with it that exists (else the first)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate.resolve()
    joined = [base / candidate for base in bases]
    return next((p for p in joined if p.exists()), joined[0]).resolve()


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header only, or None when the file is not an image PIL can open."""
    try:
        with Image.open(path) as image:
            return image.size
    except _DECODE_ERRORS:
        return None


def _discover_files(
    annotation: Path, root: Path, exclude: str | os.PathLike | None, default_caption: str | None, check_images: bool
) -> tuple[list[EditPair], DataReport]:
    bases = list(dict.fromkeys([annotation.parent.resolve(), root.resolve()]))
    entries = [] if exclude is None else Path(exclude).read_text(encoding="utf-8-sig").splitlines()
    entries = [entry.strip() for entry in entries if entry.strip()]
    # Written forms, resolved paths and bare names in one set: a path with a folder part never equals a name.
    excluded = set(entries) | {str(_resolve(entry, bases)) for entry in entries}
    report, pairs = DataReport(str(annotation)), []
    for where, record, error in _read_records(annotation):
        report.records += 1
        outcome = _judge(record, error, bases, excluded, default_caption, check_images)
        if isinstance(outcome, EditPair):
            pairs.append(outcome)
        else:
            report.skip(outcome[0], outcome[1] and f"{where}: {outcome[1]}")
    report.used = len(pairs)
    return pairs, report


def _judge(
    record: dict | None, error: str, bases: list[Path], excluded: set[str], default_caption: str | None, check: bool
) -> EditPair | tuple[str, str]:
    """The pair of one annotation record, or ``(counter, problem)`` saying why it is skipped."""
    texts = [None if record is None else _first(record, keys) for keys in (PRE_KEYS, POST_KEYS)]
    if record is None or None in texts:
        return "unreadable", error or f"no {'/'.join(PRE_KEYS)} or no {'/'.join(POST_KEYS)}"
    paths = {"pre": _resolve(texts[0], bases), "post": _resolve(texts[1], bases)}
    if {texts[0], str(paths["pre"]), paths["pre"].name} & excluded:
        return "excluded_test", ""
    missing = [f"{which} image {path} does not exist" for which, path in paths.items() if not path.is_file()]
    if missing:
        return "missing_files", " and ".join(missing)
    caption = _first(record, CAPTION_KEYS) or default_caption
    if caption is None:
        return "missing_caption", f"no {'/'.join(CAPTION_KEYS)}"
    if check:
        sizes = {which: _image_size(path) for which, path in paths.items()}
        for which, size in sizes.items():
            if size is None:
                return "unreadable", f"{which} image {paths[which]} is not a readable image"
        if sizes["pre"] != sizes["post"]:
            return "size_mismatch", "pre image is {}x{} but post image is {}x{}".format(*sizes["pre"], *sizes["post"])
    mask = _first(record, ("mask",))
    return EditPair(str(paths["pre"]), str(paths["post"]), caption, mask and str(_resolve(mask, bases)))


def _discover_hf(
    name: str, folder: Path | None, default_caption: str | None
) -> tuple[list[EditPair], DataReport, PairSource]:
    datasets = require("datasets", "Training from a Hugging Face dataset", "datasets")
    try:
        if folder is None:
            dataset = datasets.load_dataset(name.removeprefix("hf:"), split="train")
        else:
            dataset = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as e:
        raise InputError(f"Cannot load the Hugging Face dataset {name}: {e}. {LAYOUT_HELP}") from e
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise InputError(f"{name} has the splits {', '.join(dataset)} but no 'train' split to train on.")
        dataset = dataset["train"]
    pre, post, caption = (
        next((c for c in keys if c in dataset.column_names), None) for keys in (PRE_KEYS, POST_KEYS, CAPTION_KEYS)
    )
    if pre is None or post is None or caption is None:
        raise InputError(
            f"{name} has the columns {', '.join(dataset.column_names)}; training needs input_image, edited_image "
            f"and edit_prompt (or pre_image, post_image and change_caption). {LAYOUT_HELP}"
        )
    report = DataReport(name, records=len(dataset))
    # Arrow columns give nulls and captions without decoding a single image.
    table = dataset.with_format("arrow")
    pre_null, post_null = (table[column].is_null().to_pylist() for column in (pre, post))
    pairs = []
    for row, text in enumerate(table[caption].to_pylist()):
        if pre_null[row] or post_null[row]:
            report.skip("unreadable", f"row {row}: no {pre if pre_null[row] else post} image")
            continue
        text = (str(text).strip() if text is not None else "") or default_caption
        if text is None:
            report.skip("missing_caption", f"row {row}: empty {caption}")
            continue
        pairs.append(EditPair(row, row, text))
    report.used = len(pairs)
    return pairs, report, PairSource(dataset, (pre, post), name)


class EpochSampler(Sampler[int]):
    """Deterministic order: a seeded permutation per epoch; yields keys ``epoch * n + index`` so the dataset
    can derive a per-draw augmentation seed without any shared state (exact resume, worker processes)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        return iter((order + self.epoch * self.n).tolist())


def _rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB through pil_to_tensor, so RGBA, grayscale and 16-bit tiles convert as they do at inference."""
    if image.mode == "RGB":
        return image
    tensor, _ = pil_to_tensor(image)
    return Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


class EditPairDataset(Dataset):
    """Pairs as training tensors.

    Item ``key`` is pair ``key % n``, augmented with a generator seeded from ``(seed, key)``: the same key
    gives the same sample in any process. Returns ``pre``/``post`` float32 ``[3, R, R]`` in ``-1..1``, the
    ``caption``, the ``index`` of the pair actually used and how many unreadable pairs were ``skipped``.
    Both images get one transform: the shorter side resized to ``R`` (bicubic), then a centre crop, a random
    crop (``random_crop``) or, with neither crop, a resize to ``R x R``; ``random_flip`` flips horizontally
    and vertically with p=0.5 each, since overhead imagery has no up direction.
    """

    def __init__(
        self,
        pairs: list[EditPair],
        source: PairSource,
        resolution: int,
        *,
        center_crop: bool = True,
        random_crop: bool = False,
        random_flip: bool = False,
        seed: int = 0,
        max_tries: int = 5,
    ) -> None:
        if not pairs:
            raise InputError("The training dataset has no pairs; discover_pairs finds them and says why.")
        if resolution < 8:
            raise InputError(f"The training resolution must be at least 8 px; got {resolution}.")
        self.pairs, self.source, self.resolution = list(pairs), source, resolution
        self.center_crop, self.random_crop, self.random_flip = center_crop, random_crop, random_flip
        self.seed, self.max_tries = seed, max(1, max_tries)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int) -> dict[str, Any]:
        n = len(self.pairs)
        index = key % n
        error: InputError | None = None
        for skipped in range(min(self.max_tries, n)):
            candidate = (index + skipped) % n
            try:
                images = self._load(candidate)
            except InputError as e:
                error = e
                logger.warning("Skipping training pair %d: %s", candidate, e)
                continue
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + key)
            pre, post = self._transform(images, generator)
            caption = self.pairs[candidate].caption
            return {"pre": pre, "post": post, "caption": caption, "index": candidate, "skipped": skipped}
        raise InputError(
            f"{min(self.max_tries, n)} training pairs in a row from pair {index} could not be read; the last: {error} "
            "Remove or replace the broken files, or train without --skip-image-check (discovery then opens every "
            "image and skips the unreadable ones before training)."
        )

    def _load(self, index: int) -> list[Image.Image]:
        pair = self.pairs[index]
        pre, post = self.source.load(pair.pre, "pre"), self.source.load(pair.post, "post")
        if pre.size != post.size:
            raise InputError(
                f"the pre image is {pre.size[0]}x{pre.size[1]} but the post image is {post.size[0]}x{post.size[1]} "
                f"(pair {pair.pre}, {pair.post}); misregistered pairs teach geometric shifts."
            )
        return [_rgb8(pre), _rgb8(post)]

    def _transform(self, images: list[Image.Image], generator: torch.Generator) -> list[torch.Tensor]:
        r = self.resolution
        width, height = images[0].size
        if self.random_crop or self.center_crop:
            scale = r / min(width, height)
            size = (max(r, round(width * scale)), max(r, round(height * scale)))
        else:
            size = (r, r)
        if size != (width, height):
            images = [image.resize(size, Image.Resampling.BICUBIC) for image in images]
        if self.random_crop:
            left = int(torch.randint(0, size[0] - r + 1, (1,), generator=generator))
            top = int(torch.randint(0, size[1] - r + 1, (1,), generator=generator))
        else:
            left, top = (size[0] - r) // 2, (size[1] - r) // 2
        flip_x, flip_y = (torch.rand(2, generator=generator) < 0.5).tolist()
        out = []
        for image in images:
            array = np.asarray(image.crop((left, top, left + r, top + r)), dtype=np.float32)
            tensor = torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1
            if self.random_flip and flip_x:
                tensor = tensor.flip(-1)
            if self.random_flip and flip_y:
                tensor = tensor.flip(-2)
            out.append(tensor.contiguous())
        return out
