"""Large scenes: overlapping windows denoised together at every step, blended without seams."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rsedit_core import defaults
from rsedit_core.conditioning import encode_source
from rsedit_core.denoise import denoise
from rsedit_core.edit import edit_images, tile_plan
from rsedit_core.errors import InputError
from rsedit_core.settings import EditSettings
from rsedit_core.text import encode_text
from rsedit_core.tiling import plan_tiles, resolve_tile

PROMPT = "flood the river banks"


def _scene(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth scene (a random field upsampled), so an edit's structure is visible at tile edges."""
    coarse = torch.rand(1, 3, height // 16, width // 16, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def test_windows_cover_the_latent_flush_with_its_edges():
    plan = plan_tiles((40, 70), tile=128, overlap=32, factor=8)  # 16-px windows, stride 12
    assert plan.grid == (3, 6) and len(plan.windows) == 18  # starts 0, 12, 24 and 0, 12, ..., 48, 54
    assert {(w.height, w.width) for w in plan.windows} == {(16, 16)}
    assert max(w.top + w.height for w in plan.windows) == 40 and max(w.left + w.width for w in plan.windows) == 70
    covered = torch.zeros(40, 70)
    for w in plan.windows:
        covered[w.top : w.top + w.height, w.left : w.left + w.width] += 1
    assert covered.min() >= 1
    weights, inverse = plan.weights("cpu", torch.float64)
    total = torch.zeros(1, 1, 40, 70, dtype=torch.float64)
    for w, weight in zip(plan.windows, weights, strict=True):
        assert weight.min() > 0 and weight.max() <= 1
        total[w.slices] += weight
    assert torch.allclose(total * inverse, torch.ones_like(total))
    # A side shorter than the tile: one window of the side's own length.
    thin = plan_tiles((6, 70), tile=128, overlap=32, factor=8)
    assert thin.grid == (1, 6) and {w.height for w in thin.windows} == {6}


def test_tiles_are_chosen_by_scene_size():
    assert resolve_tile(None, (512, 512)) == (0, None)
    tile, note = resolve_tile(None, (512, 520))
    assert tile == defaults.TILE and "edited in 512 px windows by default" in note
    assert resolve_tile(0, (4096, 4096)) == (0, None)
    assert resolve_tile(256, (200, 256)) == (0, None)  # a tile covering the scene is no tiling
    assert resolve_tile(128, (200, 256)) == (128, None)


def test_a_tile_covering_the_scene_gives_exactly_the_untiled_edit(tiny_editor):
    image = _scene(64, 96)
    settings = EditSettings(steps=3, seed=5)
    whole = edit_images(tiny_editor, image, PROMPT, settings=settings)
    for tile in (0, 96, 512):
        result = edit_images(tiny_editor, image, PROMPT, settings=EditSettings(steps=3, seed=5, tile=tile))
        assert torch.equal(result.images, whole.images) and torch.equal(result.latents, whole.latents)
        assert not any("tiled" in n for n in result.notes)


@pytest.mark.parametrize("editor", ["tiny_editor", "tiny_dit"])
def test_tiled_edit_of_a_larger_scene(editor, request):
    model = request.getfixturevalue(editor)
    image = _scene(96, 176)
    settings = EditSettings(steps=2, seed=1, tile=64, tile_overlap=16, num_variations=2)
    result = edit_images(model, image, PROMPT, settings=settings)
    assert result.images.shape == (2, 3, 96, 176) and torch.isfinite(result.images).all()
    assert any(n.startswith("tiled: ") and "windows of 64 px" in n for n in result.notes)
    # Windows per forward pass change the batching, not the result.
    one = edit_images(model, image, PROMPT, settings=EditSettings(**{**settings.__dict__, "window_batch": 1}))
    assert torch.allclose(one.latents, result.latents, rtol=1e-4, atol=1e-4)


class _WindowConstant:
    """A predict step that answers one constant per window: the mean of the window's source crop.
    Tiles edited one by one and stitched would jump by the difference of neighbouring constants at
    every tile edge; blended windows must not."""

    def __init__(self, original):
        self.original = original
        self.calls = 0

    def __call__(self, model, latents, source, timestep, embeds, mask):
        self.calls += 1
        means = source.mean(dim=(1, 2, 3), keepdim=True)
        return torch.zeros_like(latents) + means


def _edit_field(model, source, settings, monkeypatch):
    """The part of the final latent that the predictions made: latents minus those of a zero model."""
    text = encode_text(model, PROMPT)
    settings = settings.for_model(model)
    plan, _ = tile_plan(model, settings, tuple(source.latents.shape[-2:]))
    backbone = type(model.backbone)
    double = _WindowConstant(backbone.predict)
    monkeypatch.setattr(backbone, "predict", lambda self, *a: double(*a))
    with_model = denoise(model, text, source, settings, plan=plan)
    monkeypatch.setattr(backbone, "predict", lambda self, m, latents, *a: torch.zeros_like(latents))
    without = denoise(model, text, source, settings, plan=plan)
    return (with_model - without).float(), plan


def test_blended_windows_leave_no_seam(tiny_editor, monkeypatch):
    """A scene with a strong left-right gradient, so neighbouring windows get different constants.
    Denoised window by window on the same source latent and stitched (each latent column from the
    window whose centre is nearest), the field jumps at every tile edge; blended at every step, it
    changes gradually."""
    ramp = torch.linspace(0, 1, 512).repeat(1, 3, 128, 1)
    source = encode_source(tiny_editor, ramp, tile=0)
    tiled = EditSettings(steps=4, seed=0, scheduler="euler", tile=128, tile_overlap=64)
    field, plan = _edit_field(tiny_editor, source, tiled, monkeypatch)
    assert plan.grid == (1, 7)  # 16-px latent windows stepping by 8 over 16 x 64
    row = plan.windows[: plan.grid[1]]
    whole = EditSettings(steps=4, seed=0, scheduler="euler", tile=0)
    crops = [replace(source, latents=source.latents[w.slices]) for w in row]
    own = [_edit_field(tiny_editor, crop, whole, monkeypatch)[0] for crop in crops]
    centres = torch.tensor([w.left + w.width / 2 for w in row])
    nearest = (torch.arange(field.shape[-1]) + 0.5)[:, None].sub(centres).abs().argmin(dim=1)
    stitched = torch.stack([own[i][..., :, col - row[i].left] for col, i in enumerate(nearest.tolist())], dim=-1)
    seam = stitched.diff(dim=-1).abs().max().item()
    blended = field[..., : row[0].height, :].diff(dim=-1).abs().max().item()
    # Inside each window the stitched field is flat: all its change sits in the seams.
    assert seam > 0.1 and stitched[..., :2].diff(dim=-1).abs().max() < 1e-5
    assert blended < 0.3 * seam, (blended, seam)


def test_progress_counts_windows_and_cancel_stops_between_windows(tiny_editor):
    image = _scene(96, 176)
    settings = EditSettings(steps=2, seed=0, tile=64, tile_overlap=16, window_batch=2)
    plan, _ = tile_plan(tiny_editor, settings.for_model(tiny_editor), (12, 22))
    batches = len(plan.batches(2))
    calls = []
    edit_images(tiny_editor, image, PROMPT, settings=settings, callback=lambda d, t, lat: calls.append((d, t)))
    windows = len(plan.windows)  # 8, two per pass: progress counts windows x steps
    assert windows == 8 and calls == [(2 * i, 2 * windows) for i in range(1, 2 * batches + 1)]

    class Cancel(Exception):
        pass

    def cancel(done, total, latents):
        if done == 2:
            raise Cancel

    with pytest.raises(Cancel):
        edit_images(tiny_editor, image, PROMPT, settings=settings, callback=cancel)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (EditSettings(tile=32), "tile 32 px is below the 64 px"),
        (EditSettings(tile=128, tile_overlap=0), "tile overlap 0 px must be above 0"),
        (EditSettings(tile=128, tile_overlap=80), "at most half the tile"),
        (EditSettings(window_batch=0), "window batch must be >= 1"),
        (EditSettings(tile=1.5), "tile must be an integer"),
    ],
)
def test_tile_settings_a_model_cannot_honour_are_refused(settings, message):
    with pytest.raises(InputError, match=message):
        settings.check()


def test_tile_off_the_dit_size_step_is_refused(tiny_dit):
    with pytest.raises(InputError, match="tile 72 px is not a multiple of 16 px.*try 80"):
        EditSettings(tile=72, tile_overlap=16).for_model(tiny_dit)


def test_tiled_edit_stays_close_to_the_whole_edit_where_windows_agree(tiny_editor):
    """On a small scene split in two overlapping windows, the tiled edit differs from the one-piece
    edit (each window sees less context) but stays in the same range: a sanity bound, not a quality claim."""
    image = _scene(64, 128)
    whole = edit_images(tiny_editor, image, PROMPT, settings=EditSettings(steps=2, seed=3)).images
    tiled = edit_images(tiny_editor, image, PROMPT, settings=EditSettings(steps=2, seed=3, tile=96, tile_overlap=32))
    assert tiled.images.shape == whole.shape
    assert np.isfinite(tiled.images.numpy()).all() and 0 <= tiled.images.min() and tiled.images.max() <= 1
