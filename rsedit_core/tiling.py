"""Scenes of any size: overlapping latent windows denoised together at every step.

This is MultiDiffusion (Bar-Tal et al., 2023) adapted to an editor: at every step each window
gets its crop of the noisy latent *and of the source latent* (the U-Net's channel concatenation
or the DiT's source|target canvas), the backbone's dual-CFG prediction of every window is blended
into one prediction for the whole latent with smooth weights, and the scheduler steps once on the
whole latent. Neighbouring windows therefore agree at every step and no seam can form, unlike
tiles edited one by one and stitched. Each window runs at the size the editor was trained at.

The window bookkeeping follows diffusers' ``StableDiffusionPanoramaPipeline`` (windows over the
latent, the last one flush with the edge); the weights are ours: a ``sin**2`` ramp across each
overlap, so every latent pixel's weights sum to a smooth, positive total.

The VAE runs over the same windows (:mod:`rsedit_core.scene`), blended the same way, so memory
does not grow with the scene; a tile at least as large as the scene changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import defaults
from .errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI checks tile settings before loading it
    import torch


@dataclass(frozen=True)
class Window:
    """A window over the latent, in latent pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice, slice, slice]:
        rows, cols = slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)
        return (slice(None), slice(None), rows, cols)


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts covering ``0..size``: every ``stride``, the last one flush with the end."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return [*starts, size - window]


def _ramp(length: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """1-D weights of a window: ``sin**2`` rising over ``overlap`` px on each side that borders
    another window, flat 1 elsewhere and along the scene's own edges. Never zero."""
    import torch

    weight = torch.ones(length, dtype=torch.float64)
    if overlap <= 0:
        return weight
    rise = torch.sin(math.pi / 2 * (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap) ** 2
    if start > 0:
        weight[:overlap] = rise
    if start + length < size:
        weight[-overlap:] = torch.minimum(weight[-overlap:], rise.flip(0))
    return weight


@dataclass(frozen=True)
class TilePlan:
    """Windows over a latent of ``latent_size`` (h, w), from a tile and an overlap in pixels."""

    tile: int
    overlap: int
    factor: int
    latent_size: tuple[int, int]
    windows: tuple[Window, ...]
    grid: tuple[int, int]

    @property
    def tiled(self) -> bool:
        return len(self.windows) > 1

    def weights(self, device, dtype) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-window weights ``[1, 1, h, w]`` and the whole latent's reciprocal weight sum."""
        import torch

        h, w = self.latent_size
        overlap = self.overlap // self.factor
        total = torch.zeros(h, w, dtype=torch.float64)
        weights = []
        for window in self.windows:
            wy = _ramp(window.height, window.top, h, overlap)
            wx = _ramp(window.width, window.left, w, overlap)
            weight = wy[:, None] * wx[None, :]
            total[window.top : window.top + window.height, window.left : window.left + window.width] += weight
            weights.append(weight)
        inverse = (1 / total)[None, None].to(device, dtype)
        return [weight[None, None].to(device, dtype) for weight in weights], inverse

    def batches(self, size: int) -> list[list[int]]:
        """Window indices grouped ``size`` at a time, the windows of one forward pass."""
        indices = list(range(len(self.windows)))
        return [indices[i : i + size] for i in range(0, len(indices), size)]

    def describe(self) -> str:
        rows, cols = self.grid
        return (
            f"tiled: {len(self.windows)} windows of {self.tile} px ({rows} x {cols}), {self.overlap} px overlap, "
            "blended at every step"
        )


def pixel_ramp(plan: TilePlan, window: Window, size: tuple[int, int]) -> torch.Tensor:
    """The weights ``[1, h, w]`` (float32) of ``window``'s decoded pixels in a scene of ``size`` px:
    the same ramps as in latent space, at pixel resolution."""
    f = plan.factor
    wy = _ramp(window.height * f, window.top * f, size[0], plan.overlap)
    wx = _ramp(window.width * f, window.left * f, size[1], plan.overlap)
    return (wy[:, None] * wx[None, :]).float()[None]


def whole(latent_size: tuple[int, int], factor: int) -> TilePlan:
    """One window over the whole latent: no tiling."""
    h, w = latent_size
    return TilePlan(max(h, w) * factor, 0, factor, (h, w), (Window(0, 0, h, w),), (1, 1))


def plan_tiles(latent_size: tuple[int, int], tile: int, overlap: int, factor: int) -> TilePlan:
    """Windows of ``tile`` px stepping by ``tile - overlap`` px over a latent (``factor`` px per
    latent pixel); a side shorter than the tile gets one window of its own length."""
    h, w = latent_size
    window, stride = tile // factor, (tile - overlap) // factor
    tops, lefts = _starts(h, window, stride), _starts(w, window, stride)
    height, width = min(window, h), min(window, w)
    windows = tuple(Window(top, left, height, width) for top in tops for left in lefts)
    return TilePlan(tile, overlap, factor, (h, w), windows, (len(tops), len(lefts)))


def default_overlap(tile: int) -> int:
    """A quarter of the tile, at most :data:`defaults.TILE_OVERLAP`, in 16-px steps (both editors')."""
    return max(16, min(defaults.TILE_OVERLAP, tile // 4 // 16 * 16))


def check_tiling(tile: int | None, overlap: int, window_batch: int, multiple: int | None = None) -> None:
    """Refuse tile sizes the editor cannot run; ``multiple`` is the model's size multiple (checked
    when a model is known: 8 px for the U-Net, 16 px for the DiT)."""
    for name, value in (("tile_overlap", overlap), ("window_batch", window_batch)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{name.replace('_', ' ')} must be an integer; got {value!r}.")
    if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool)):
        raise InputError(f"tile must be an integer number of pixels (0 = off); got {tile!r}.")
    if window_batch < 1:
        raise InputError(f"window batch must be >= 1; got {window_batch}.")
    if tile is None or tile == 0:
        return
    if tile < defaults.MIN_TILE:
        raise InputError(
            f"tile {tile} px is below the {defaults.MIN_TILE} px the editors can work with; use at least "
            f"{defaults.MIN_TILE} (the editors were trained at {defaults.TILE} px), or 0 to edit in one piece."
        )
    if overlap <= 0 or overlap * 2 > tile:
        raise InputError(
            f"tile overlap {overlap} px must be above 0 and at most half the tile ({tile // 2} px): without an "
            f"overlap the windows cannot be blended and seams show. {defaults.TILE_OVERLAP} suits {defaults.TILE} "
            "px tiles."
        )
    if multiple is not None:
        for name, value in (("tile", tile), ("tile_overlap", overlap)):
            if value % multiple:
                near = max(multiple, -(-value // multiple) * multiple)
                raise InputError(
                    f"{name} {value} px is not a multiple of {multiple} px, the editor's size step; try {near}."
                )


def resolve_tile(tile: int | None, size: tuple[int, int]) -> tuple[int, str | None]:
    """The tile to use for a scene of ``size`` (h, w) px (0: one piece) and a note when the default
    chose it: ``None`` is :data:`defaults.TILE`, 0 never tiles, and a tile at least as large as the
    scene is one window, that is no tiling."""
    chosen = defaults.TILE if tile is None else tile
    if not chosen or chosen >= max(size):
        return 0, None
    if tile is None:
        return chosen, (
            f"scene {size[1]}x{size[0]} is larger than the {chosen} px the editors were trained at: edited in "
            f"{chosen} px windows by default (tile 0 edits in one piece)"
        )
    return chosen, None
