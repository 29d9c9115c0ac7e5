"""Damage assessment of pre/post scenes of any size: padding, tiling, decoding and rendering.

Scenes no larger than a tile are padded to a square whose side is a multiple of 32 and run in
one pass. Larger scenes are cut into overlapping square tiles (1024 px by default, the size the
published weights were fine-tuned on); the probabilities of overlapping tiles are blended with
weights that ramp down towards each tile's edges, then cropped back to the scene. Padding uses
the ImageNet mean colour (zero after normalisation), so it adds no structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..defaults import DAMAGE_MIN_SIDE, DAMAGE_TILE
from ..errors import InputError, OutOfMemoryError
from .metrics import DAMAGE_CLASS_NAMES as CLASS_NAMES
from .model import CHANGE_CLASSES, SIZE_MULTIPLE, ChangeStar1x256, normalize_pair

# Map colours: green, yellow, orange, red for no / minor / major / destroyed (background black).
CLASS_COLOURS = ((0, 0, 0), (46, 204, 64), (255, 220, 0), (255, 133, 27), (220, 20, 60))
MIN_SIDE = DAMAGE_MIN_SIDE
# The tiler's floor: the model takes square inputs whose side is a multiple of 32, from 32 up.
MIN_TILE = MIN_SIDE
DEFAULT_TILE = DAMAGE_TILE
MAX_OVERLAP = 128


@dataclass
class DamageAssessment:
    """Probabilities and decoded maps for a batch, at the input resolution.

    ``building_prob`` ``(B, 1, H, W)``; ``change_prob`` ``(B, 5, H, W)``; ``building`` ``(B, H, W)``
    bool (``building_prob > 0.5``); ``damage`` ``(B, H, W)`` uint8 in 0..4
    (``argmax(change_prob) * building``).
    """

    building_prob: torch.Tensor
    change_prob: torch.Tensor
    building: torch.Tensor
    damage: torch.Tensor
    notes: list[str] = field(default_factory=list)

    def building_fraction(self) -> float:
        """Share of all pixels the building output marks as building, over the whole batch."""
        return float(self.building.double().mean()) if self.building.numel() else 0.0

    def class_fractions(self) -> dict[str, float]:
        """Share of all pixels per decoded class (background included), over the whole batch."""
        counts = torch.bincount(self.damage.flatten().long(), minlength=len(CLASS_NAMES)).double()
        return {name: float(c / counts.sum()) for name, c in zip(CLASS_NAMES, counts, strict=True)}


def default_overlap(tile: int) -> int:
    """Pixels shared by neighbouring tiles when none is given: ``min(128, tile // 4)``."""
    return min(MAX_OVERLAP, tile // 4)


def check_tile(tile: int, option: str = "tile") -> None:
    """Raise `InputError` unless ``tile`` is a size the tiler supports: a multiple of 32, at least 32."""
    if isinstance(tile, bool) or not isinstance(tile, int):
        raise InputError(f"{option} must be a whole number of pixels; got {tile!r}.")
    if tile >= MIN_TILE and tile % SIZE_MULTIPLE == 0:
        return
    below = max(MIN_TILE, tile // SIZE_MULTIPLE * SIZE_MULTIPLE)
    above = max(MIN_TILE, -(-tile // SIZE_MULTIPLE) * SIZE_MULTIPLE)
    near = f"{below}" if below == above else f"{below} or {above}"
    raise InputError(
        f"{option} {tile} is not a tile size the damage model can run: it needs a multiple of {SIZE_MULTIPLE} px, "
        f"at least {MIN_TILE} (try {near}; {DEFAULT_TILE} is the size the published weights were fine-tuned on)."
    )


def check_scene_pair(pre_size: tuple[int, int], post_size: tuple[int, int], what: str = "") -> None:
    """Raise `InputError` unless pre and post ``(width, height)`` agree and have at least 32 px a side."""
    where = f" ({what})" if what else ""
    if tuple(pre_size) != tuple(post_size):
        raise InputError(
            f"Pre and post images differ in size{where}: pre is {pre_size[0]}x{pre_size[1]}, post is "
            f"{post_size[0]}x{post_size[1]} (width x height). Damage is assessed pixel by pixel, so resize the post "
            f"image to {pre_size[0]}x{pre_size[1]} first (an edited image has its source's size)."
        )
    if min(pre_size) < MIN_SIDE:
        raise InputError(
            f"The scene{where} is {pre_size[0]}x{pre_size[1]} px; "
            f"damage assessment needs at least {MIN_SIDE} px a side."
        )


def _ramp(length: int, overlap: int) -> torch.Tensor:
    """1-D blending weights: 1 in the middle, ramping linearly to small values over ``overlap``."""
    if overlap <= 0:
        return torch.ones(length)
    position = torch.arange(length, dtype=torch.float32)
    edge = torch.minimum(position + 1, length - position)
    return torch.clamp(edge / overlap, max=1.0)


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _run(model: ChangeStar1x256, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        out = model.predict_normalized(x)
    except torch.OutOfMemoryError as e:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemoryError(
            f"Out of memory running the damage model on {x.shape[0]} tile(s) of {x.shape[-1]} px. "
            "Use a smaller tile size, batch size 1, or fp16/bf16."
        ) from e
    return out.building_prob.float(), out.change_prob.float()


@torch.no_grad()
def assess(
    model: ChangeStar1x256,
    pre: torch.Tensor,
    post: torch.Tensor,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    batch_size: int = 1,
) -> DamageAssessment:
    """Assess damage between ``pre`` and ``post`` RGB batches ``(B, 3, H, W)`` in 0..1.

    Scenes of any size and aspect; ``tile`` (a multiple of 32, at least 32) bounds the model's
    input side, and ``overlap`` pixels (default ``min(128, tile // 4)``) are shared by
    neighbouring tiles. The result carries the building output (``building``, what xView2
    localisation is scored on) beside the decoded damage map.
    """
    if pre.ndim != 4 or pre.shape[1] != 3 or post.ndim != 4 or post.shape[1] != 3:
        raise InputError(f"Expected RGB batches (B, 3, H, W); got pre {tuple(pre.shape)}, post {tuple(post.shape)}.")
    check_scene_pair((pre.shape[-1], pre.shape[-2]), (post.shape[-1], post.shape[-2]))
    if pre.shape[0] != post.shape[0]:
        raise InputError(
            f"Pre and post batches differ in length: {pre.shape[0]} pre image(s), {post.shape[0]} post image(s). "
            "Give one post image per pre image."
        )
    height, width = pre.shape[-2:]
    check_tile(tile)
    overlap = default_overlap(tile) if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be in [0, tile) = [0, {tile}); got {overlap}.")
    param = next(model.parameters())
    x = normalize_pair(pre.float(), post.float()).to(param.device)
    notes = []
    if max(height, width) <= tile:
        side = -(-max(height, width) // SIZE_MULTIPLE) * SIZE_MULTIPLE
        tiles_h, tiles_w, size_h, size_w = [0], [0], side, side
        if (height, width) != (side, side):
            notes.append(f"{width}x{height} padded to {side}x{side} (mean colour)")
    else:
        size_h, size_w = max(height, tile), max(width, tile)
        stride = tile - overlap
        tiles_h, tiles_w = _starts(size_h, tile, stride), _starts(size_w, tile, stride)
        side = tile
        notes.append(
            f"{width}x{height} assessed in {len(tiles_h) * len(tiles_w)} tiles of {tile} px, overlap {overlap}"
        )
    canvas = F.pad(x, (0, size_w - width, 0, size_h - height))
    weight = _ramp(side, overlap if len(tiles_h) * len(tiles_w) > 1 else 0).to(x.device)
    weight = weight[:, None] * weight[None, :]
    building = torch.zeros(x.shape[0], 1, size_h, size_w, device=x.device)
    change = torch.zeros(x.shape[0], CHANGE_CLASSES, size_h, size_w, device=x.device)
    total = torch.zeros(size_h, size_w, device=x.device)
    windows = [(top, left) for top in tiles_h for left in tiles_w]
    for index in range(x.shape[0]):
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            crops = torch.cat([canvas[index : index + 1, :, y : y + side, x0 : x0 + side] for y, x0 in group])
            building_prob, change_prob = _run(model, crops.to(param.dtype))
            for (top, left), b, c in zip(group, building_prob, change_prob, strict=True):
                building[index, :, top : top + side, left : left + side] += b * weight
                change[index, :, top : top + side, left : left + side] += c * weight
                if index == 0:
                    total[top : top + side, left : left + side] += weight
    building = (building / total)[..., :height, :width].cpu()
    change = (change / total)[..., :height, :width].cpu()
    is_building = building[:, 0] > 0.5
    damage = (change.argmax(dim=1) * is_building).to(torch.uint8)
    return DamageAssessment(building, change, is_building, damage, notes)


def read_damage_map(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """A ground-truth class map ``(H, W)`` from one image: ``(H, W)`` or channel-last ``(H, W, C)``.

    The first channel is used. A 0-4 PNG read as 8-bit gives the classes directly; floating
    arrays in 0..1 (ComfyUI IMAGE or MASK, i.e. 8-bit values / 255) are scaled back by 255 and
    rounded. 255 marks unclassified pixels, which scoring ignores.
    """
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim == 3:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(f"A damage map must be (H, W) or (H, W, C); got shape {array.shape}.")
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array * 255.0 if array.max(initial=0) <= 1.0 else array)
    return array.astype(np.int64)


def colour_map(damage: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` classes to ``(B, 3, H, W)`` colours in 0..1."""
    palette = torch.tensor(CLASS_COLOURS, dtype=torch.float32) / 255.0
    return palette[damage.long()].permute(0, 3, 1, 2)


def overlay(post: torch.Tensor, damage: torch.Tensor, alpha: float = 0.5, legend: bool = True) -> torch.Tensor:
    """The post image ``(B, 3, H, W)`` with building pixels tinted by class, plus a legend."""
    colours = colour_map(damage)
    tinted = torch.where((damage > 0)[:, None], (1 - alpha) * post.float().cpu() + alpha * colours, post.float().cpu())
    if not legend:
        return tinted
    return torch.stack([_draw_legend(image) for image in tinted])


def _draw_legend(image: torch.Tensor) -> torch.Tensor:
    from PIL import Image, ImageDraw

    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    canvas = Image.fromarray(array)
    draw = ImageDraw.Draw(canvas)
    box, pad = 10, 4
    rows = list(zip(CLASS_NAMES[1:], CLASS_COLOURS[1:], strict=True))
    width = min(canvas.width, 2 * pad + box + 4 + 6 * max(len(name) for name, _ in rows))
    height = min(canvas.height, pad + len(rows) * (box + pad))
    draw.rectangle((0, 0, width, height), fill=(0, 0, 0))
    for row, (name, colour) in enumerate(rows):
        y = pad + row * (box + pad)
        draw.rectangle((pad, y, pad + box, y + box), fill=colour)
        draw.text((2 * pad + box, y - 1), name, fill=(255, 255, 255))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).permute(2, 0, 1)
