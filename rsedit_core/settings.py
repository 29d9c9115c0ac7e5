"""Sampling settings and their checks (the defaults come from :mod:`rsedit_core.defaults`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from . import defaults
from .errors import InputError
from .schedulers import SCHEDULER_NAMES
from .tiling import check_tiling, default_overlap

if TYPE_CHECKING:
    from .editor import EditorModel


def check_scales(text_scale: float, image_scale: float) -> None:
    """Refuse guidance scales that are not finite numbers >= 0."""
    for name, value in (("text guidance", text_scale), ("image guidance", image_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
            raise InputError(f"The {name} scale must be a finite number; got {value!r}.")
        if value < 0:
            raise InputError(
                f"The {name} scale must be >= 0; got {value}. Typical values: text "
                f"{defaults.text_cfg_by_backbone()}; image {defaults.IMAGE_CFG} (raise text to follow the "
                "instruction more, image to stay closer to the source)."
            )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class EditSettings:
    """Sampling settings. Defaults follow the paper's quick start: 50 steps, image scale 1.5, and
    the backbone's text scale (7.5 U-Net, 4.5 DiT) when ``text_cfg`` is ``None``."""

    steps: int = defaults.STEPS
    text_cfg: float | None = None
    image_cfg: float = defaults.IMAGE_CFG
    seed: int = defaults.SEED
    scheduler: str = defaults.SCHEDULER
    num_variations: int = defaults.VARIATIONS
    #: Large scenes: window size in px (None: ``defaults.TILE``; 0: never tile; scenes no larger are one piece),
    #: overlap in px (None: a quarter of the tile, at most 128) and windows per forward pass.
    tile: int | None = None
    tile_overlap: int | None = None
    window_batch: int = defaults.WINDOW_BATCH

    def overlap_for(self, tile: int) -> int:
        """The overlap used with ``tile`` px windows."""
        return self.tile_overlap if self.tile_overlap is not None else default_overlap(tile)

    def check(self) -> None:
        """Checks that need no model (a CLI runs them before loading one)."""
        if not _is_int(self.steps) or self.steps < 1:
            raise InputError(f"steps must be an integer >= 1; got {self.steps!r}. The paper uses 50-100.")
        if self.text_cfg is not None:
            check_scales(self.text_cfg, self.image_cfg)
        else:
            check_scales(defaults.IMAGE_CFG, self.image_cfg)
        if not _is_int(self.seed) or not 0 <= self.seed <= defaults.MAX_SEED:
            raise InputError(f"seed must be an integer from 0 to 2**64-1; got {self.seed!r}.")
        if not _is_int(self.num_variations) or self.num_variations < 1:
            raise InputError(f"num_variations must be an integer >= 1; got {self.num_variations!r}.")
        if self.scheduler not in SCHEDULER_NAMES:
            raise InputError(f"Unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULER_NAMES)}.")
        check_tiling(self.tile, self.overlap_for(self.tile or defaults.TILE), self.window_batch)

    def for_model(self, model: EditorModel) -> EditSettings:
        """Checked settings with the backbone's default text scale filled in: the one validation
        of a run, done at the edit's entry point."""
        self.check()
        if self.steps > model.num_train_timesteps:
            raise InputError(
                f"steps {self.steps} is more than the {model.num_train_timesteps} timesteps the model was "
                f"trained with, which the scheduler cannot honour. Use at most {model.num_train_timesteps} "
                f"(the paper uses {defaults.PAPER_STEPS})."
            )
        if self.tile:
            check_tiling(self.tile, self.overlap_for(self.tile), self.window_batch, model.size_multiple)
        if self.text_cfg is not None:
            return self
        return replace(self, text_cfg=model.backbone.default_text_cfg)


def as_settings(settings) -> EditSettings:
    """``settings`` as given to an API entry point: ``None`` is the defaults; anything other than
    an :class:`EditSettings` (a dict, keyword arguments' worth of options) is refused, saying how."""
    if settings is None:
        return EditSettings()
    if isinstance(settings, EditSettings):
        return settings
    names = [f.name for f in fields(EditSettings)]
    if isinstance(settings, Mapping):
        unknown = [repr(key) for key in settings if key not in names]
        extra = f" ({', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among them)" if unknown else ""
        raise InputError(
            f"settings must be an EditSettings, not a {type(settings).__name__}: pass "
            f"settings=EditSettings(**your_dict), with fields {', '.join(names)}{extra}."
        )
    raise InputError(
        f"settings must be an EditSettings (fields {', '.join(names)}); got {type(settings).__name__}. "
        "For example settings=EditSettings(steps=50)."
    )
