"""Shared fixtures: tiny random editors saved in the released format, under a fixed seed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rsedit_core.loading import load_editor
from rsedit_core.tiny import save_tiny_dit, save_tiny_editor, save_tiny_text_to_image

CUSTOM_CODE_MARKER = "RSEDIT_CUSTOM_PIPELINE_RAN"


@pytest.fixture(scope="session")
def tiny_editor_dir(tmp_path_factory):
    return save_tiny_editor(tmp_path_factory.mktemp("models") / "tiny-rsedit", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A text-to-image SD folder (4-channel U-Net, PNDM): a fine-tuning base."""
    return save_tiny_text_to_image(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


def write_pairs(root: Path, count: int, size: int = 64, seed: int = 0, test_pairs: int = 0) -> Path:
    """An RSCC-layout folder: ``images/`` with random pre/post PNGs, ``RSCC_qvq.jsonl`` with
    relative paths and captions, and the last ``test_pairs`` listed in ``test_set.txt``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        for when in ("pre", "post"):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"tile{i:03d}_{when}_disaster.png")
        record = {
            "pre_image": f"images/tile{i:03d}_pre_disaster.png",
            "post_image": f"images/tile{i:03d}_post_disaster.png",
            "change_caption": f"{i + 2} buildings in the north are destroyed, roads stay intact",
        }
        lines.append(json.dumps(record))
    (root / "RSCC_qvq.jsonl").write_text("\n".join(lines) + "\n")
    if test_pairs:
        listed = [json.loads(line)["pre_image"] for line in lines[-test_pairs:]]
        (root / "test_set.txt").write_text("\n".join(listed) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_editor(tiny_editor_dir):
    return load_editor(tiny_editor_dir)


@pytest.fixture(scope="session")
def tiny_dit_dir(tmp_path_factory):
    """A DiT folder as released: with the authors' custom pipeline file, which must never run."""
    folder = save_tiny_dit(tmp_path_factory.mktemp("models") / "RSEdit-DiT", seed=0)
    (folder / "pipeline_rsedit_dit.py").write_text(
        f"import pathlib\npathlib.Path('{folder}/{CUSTOM_CODE_MARKER}').write_text('ran')\n"
        "raise SystemExit('custom code ran')\n"
    )
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = ["pipeline_rsedit_dit", "RSEditDiTPipeline"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="session")
def tiny_dit(tiny_dit_dir):
    return load_editor(tiny_dit_dir)


@pytest.fixture
def scene():
    """A 64x96 RGB test scene as ComfyUI hands it over: ``[1, H, W, 3]`` float in 0..1 from 8-bit."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    return torch.from_numpy(pixels).float() / 255.0


ROOT = Path(__file__).resolve().parents[1]


def import_pack(name: str = "rsedit_pack"):
    """Import the repository as ComfyUI does: a package named after its folder, from __init__.py."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    """The pack imported against the ComfyUI test double (tests/comfy_double)."""
    from comfy_double import install_comfy_double

    install_comfy_double()
    return import_pack()


def oracle_python() -> str:
    """The torchange interpreter named by TORCHANGE_PYTHON, or a skip that says why there is none.
    `.ci/run` sets RSEDIT_ORACLE_MISSING when it could not build the oracle (too little disk)."""
    python = os.environ.get("TORCHANGE_PYTHON")
    if not python:
        why = os.environ.get("RSEDIT_ORACLE_MISSING", "TORCHANGE_PYTHON is not set")
        pytest.skip(f"no torchange oracle ({why}); build one with scripts/setup_oracle.sh and set TORCHANGE_PYTHON")
    return python


def place_file(source: Path, target: Path) -> Path:
    """Put a read-only test model at `target` as a hard link (a copy across file systems), so
    that the 190 MB random ChangeStar is stored once however many model folders name it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


@pytest.fixture(scope="session")
def damage_checkpoint(tmp_path_factory):
    """A random ChangeStar1x256 (seed 0) saved as safetensors in fp16, as a user would convert it."""
    from safetensors.torch import save_file

    from rsedit_core.damage import ChangeStar1x256

    torch.manual_seed(0)
    state = {k: v.half().contiguous() for k, v in ChangeStar1x256().state_dict().items()}
    path = tmp_path_factory.mktemp("changestar") / "changestar1x256_random.safetensors"
    save_file(state, str(path))
    return path


def edit_graph(
    model: str,
    image_node: dict,
    instruction: str,
    *,
    steps: int = 3,
    seed: int = 42,
    text_cfg: float = 7.5,
    variations: int = 1,
    tile: int = 512,
    tile_overlap: int = 0,
) -> dict:
    """An API-format graph: node "3" gives the source IMAGE; loader "1", text "2", source "4",
    sampler "5" (IMAGE, LATENT)."""
    return {
        "1": {"class_type": "RSEditLoader", "inputs": {"model": model, "dtype": "auto"}},
        "2": {
            "class_type": "RSEditTextEncode",
            "inputs": {"rsedit_model": ["1", 0], "instruction": instruction, "negative": ""},
        },
        "3": image_node,
        "4": {
            "class_type": "RSEditSourceConditioning",
            "inputs": {"rsedit_model": ["1", 0], "image": ["3", 0], "size_policy": "pad"},
        },
        "5": {
            "class_type": "RSEditSampler",
            "inputs": {
                "rsedit_model": ["1", 0],
                "conditioning": ["2", 0],
                "source": ["4", 0],
                "seed": seed,
                "steps": steps,
                "text_cfg": text_cfg,
                "image_cfg": 1.5,
                "scheduler": "default",
                "variations": variations,
                "tile": tile,
                "tile_overlap": tile_overlap,
            },
        },
    }
