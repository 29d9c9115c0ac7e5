"""The VAE over scenes by blended windows: exact bookkeeping, reflect padding, row bands streamed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsedit_core.images import fit_to_multiple
from rsedit_core.scene import CroppedSink, PaddedSource, TensorSink, TensorSource, decode_tiles, encode_tiles
from rsedit_core.tiling import plan_tiles, whole


def _image(height: int, width: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(height * width))


def test_padded_source_reads_what_fit_to_multiple_pads():
    image = _image(70, 101)
    padded, geometry = fit_to_multiple(image, "pad", 16)
    source = PaddedSource(TensorSource(image), geometry)
    assert (source.height, source.width) == tuple(padded.shape[-2:]) == (80, 112)
    assert torch.equal(source.read(0, 0, 80, 112), padded)
    for top, left, h, w in [(0, 0, 16, 16), (64, 96, 16, 16), (40, 8, 40, 104), (3, 0, 77, 5)]:
        assert torch.equal(source.read(top, left, h, w), padded[..., top : top + h, left : left + w])


def test_cropped_sink_keeps_only_the_original_scene():
    image = _image(70, 101)
    padded, geometry = fit_to_multiple(image, "pad", 16)
    sink = TensorSink(1, 70, 101)
    cropped = CroppedSink(sink, geometry)
    for top in range(0, 80, 24):
        cropped.write(0, top, 0, padded[0, :, top : top + 24])
    assert torch.equal(sink.images, image)


class _PixelwiseVAE:
    """Stand-ins for the VAE whose output at a pixel depends on that pixel only (8x average pool to
    encode, 8x nearest upsampling to decode), so blended windows must give exactly the whole-scene
    result wherever the weights are right."""

    @staticmethod
    def encode(model, pixels):
        return F.avg_pool2d(pixels, 8).repeat(1, 2, 1, 1)[:, :4]

    @staticmethod
    def decode(latent):
        return F.interpolate(latent[:, :3], scale_factor=8, mode="nearest") * 2 - 1


def test_blended_windows_reproduce_a_pixelwise_vae_exactly(tiny_editor, monkeypatch):
    from rsedit_core import scene

    monkeypatch.setattr(type(tiny_editor.backbone), "source_latents", lambda self, m, px: _PixelwiseVAE.encode(m, px))
    monkeypatch.setattr(scene, "_decode", lambda model, latent: _PixelwiseVAE.decode(latent.float()) / 2 + 0.5)
    image = _image(96, 200, batch=2)
    tiled = plan_tiles((12, 25), tile=64, overlap=16, factor=8)
    assert tiled.tiled and len(tiled.windows) == 8
    source = TensorSource(image)
    latents = encode_tiles(tiny_editor, source, tiled)
    reference = encode_tiles(tiny_editor, source, whole((12, 25), 8))
    assert latents.shape == (2, 4, 12, 25) and torch.allclose(latents, reference, atol=1e-6)
    bands = []

    class Recording(TensorSink):
        def write(self, index, top, left, pixels):
            bands.append((index, top, left, tuple(pixels.shape)))
            super().write(index, top, left, pixels)

    sink = Recording(2, 96, 200)
    decode_tiles(tiny_editor, latents, sink, tiled)
    plain = TensorSink(2, 96, 200)
    decode_tiles(tiny_editor, latents, plain, whole((12, 25), 8))
    assert torch.allclose(sink.images, plain.images, atol=1e-6)
    # Full-width bands, top to bottom, each row once per image; no band taller than a window.
    for index in (0, 1):
        rows = [(top, shape[1]) for i, top, left, shape in bands if i == index]
        assert [top for top, _ in rows] == sorted(top for top, _ in rows) and rows[0][0] == 0
        assert sum(height for _, height in rows) == 96 and all(height <= 64 for _, height in rows)
        assert all(left == 0 and shape[2] == 200 for i, _, left, shape in bands if i == index)


def test_one_window_is_the_plain_vae(tiny_editor):
    image = _image(64, 96)
    plan = whole((8, 12), 8)
    latents = encode_tiles(tiny_editor, TensorSource(image), plan)
    with torch.no_grad():
        expected = tiny_editor.backbone.source_latents(tiny_editor, image * 2 - 1)
        decoded = tiny_editor.vae.decode(latents / tiny_editor.vae.config.scaling_factor, return_dict=False)[0]
    assert torch.equal(latents, expected)
    sink = TensorSink(1, 64, 96)
    decode_tiles(tiny_editor, latents, sink, plan)
    assert torch.equal(sink.images, (decoded / 2 + 0.5).clamp(0, 1))


def test_edit_scene_streams_the_same_edit_as_edit_images(tiny_editor):
    from rsedit_core.edit import edit_images, edit_scene
    from rsedit_core.settings import EditSettings

    image = _image(70, 141)
    for settings in (EditSettings(steps=2, seed=4), EditSettings(steps=2, seed=4, tile=64, tile_overlap=16)):
        expected = edit_images(tiny_editor, image, "flood", settings=settings)
        sinks = [TensorSink(1, 70, 141)]
        notes = edit_scene(tiny_editor, TensorSource(image), sinks, "flood", settings=settings)
        assert torch.equal(sinks[0].images, expected.images)
        assert notes[0] == "141x70 -> 144x72 (pad: reflect-pad up to the multiple and crop the result back: the " \
            "whole scene, pixel grid kept)"  # fmt: skip
    variations = EditSettings(steps=1, num_variations=2)
    sinks = [TensorSink(1, 70, 141), TensorSink(1, 70, 141)]
    edit_scene(tiny_editor, TensorSource(image), sinks, "flood", settings=variations)
    both = edit_images(tiny_editor, image, "flood", settings=variations).images
    assert torch.equal(sinks[0].images[0], both[0]) and torch.equal(sinks[1].images[0], both[1])
