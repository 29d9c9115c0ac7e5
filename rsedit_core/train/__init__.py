"""Fine-tuning RSEdit editors: the library behind ``training/train.py``.

One concern per module: ``args`` (the command line and its checks), ``data``, ``models``,
``objective``, ``text_cache``, ``validation``, ``checkpoints`` (atomic saves, rotation),
``integrity`` (a checkpoint checked file by file before a resume), ``runner`` (one optimisation
step, the optimizer), ``workers`` (DataLoader worker errors), ``preparation`` (:func:`prepare` ->
:class:`TrainingRun`), ``resume`` (:func:`restore` -> :class:`Position`) and ``loop``
(:func:`run_loop`, and :func:`train`, which composes the three).

Importing this package loads nothing heavy: the names below are imported on first use, and no
module here imports accelerate at module level.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "train": "loop",
    "run_loop": "loop",
    "prepare": "preparation",
    "TrainingRun": "preparation",
    "restore": "resume",
    "Position": "resume",
    "StepRunner": "runner",
    "make_optimizer": "runner",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
