"""Shared fixtures: tiny random editors saved in the released format, under a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsedit_core.loading import load_editor
from rsedit_core.tiny import save_tiny_editor


@pytest.fixture(scope="session")
def tiny_editor_dir(tmp_path_factory):
    return save_tiny_editor(tmp_path_factory.mktemp("models") / "tiny-rsedit", seed=0)


@pytest.fixture(scope="session")
def tiny_editor(tiny_editor_dir):
    return load_editor(tiny_editor_dir)


@pytest.fixture
def scene():
    """A 64x96 RGB test scene as ComfyUI hands it over: ``[1, H, W, 3]`` float in 0..1 from 8-bit."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    return torch.from_numpy(pixels).float() / 255.0
