"""Shared fixtures: tiny random editors saved in the released format, under a fixed seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsedit_core.loading import load_editor
from rsedit_core.tiny import save_tiny_dit, save_tiny_editor

CUSTOM_CODE_MARKER = "RSEDIT_CUSTOM_PIPELINE_RAN"


@pytest.fixture(scope="session")
def tiny_editor_dir(tmp_path_factory):
    return save_tiny_editor(tmp_path_factory.mktemp("models") / "tiny-rsedit", seed=0)


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
