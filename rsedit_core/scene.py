"""The VAE over scenes of any size: blended tiles read from a source and written to a sink.

A *source* hands out pixel windows (``read(top, left, height, width)`` -> ``[B, 3, h, w]`` float32
in 0..1) and a *sink* takes them back (``write(index, top, left, pixels [3, h, w])``, full-width
row bands from top to bottom). In memory they wrap tensors (:class:`TensorSource`,
:class:`TensorSink`); for GeoTIFFs :class:`rsedit_core.raster.RasterSource` and ``RasterSink``
read and write by rasterio windows, so a scene is never held as a float copy.

Encoding runs the VAE encoder on each window of a :class:`~rsedit_core.tiling.TilePlan` and blends
the latents with the plan's weights; decoding runs the decoder on each latent window, blends the
pixels with the same ``sin**2`` ramps at pixel resolution and flushes every row band as soon as no
later window touches it, so memory holds one band of pixels, not the scene. With one window
(a scene no larger than the tile) both are exactly the plain VAE calls.

diffusers' ``AutoencoderKL`` tiling blends too, but it needs the whole scene as one tensor in and
gives one back, which is what a large raster cannot afford; hence this module.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .editor import EditorModel
from .images import Geometry
from .tiling import TilePlan, pixel_ramp


class SceneSource(Protocol):
    height: int
    width: int
    count: int

    def read(self, top: int, left: int, height: int, width: int) -> torch.Tensor: ...


class SceneSink(Protocol):
    def write(self, index: int, top: int, left: int, pixels: torch.Tensor) -> None: ...


class TensorSource:
    """Windows of images ``[B, 3, H, W]`` already in memory."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.count, _, self.height, self.width = images.shape

    def read(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        return self.images[..., top : top + height, left : left + width]


class TensorSink:
    """Collects written windows into ``images`` ``[N, 3, H, W]`` float32."""

    def __init__(self, count: int, height: int, width: int):
        self.images = torch.zeros(count, 3, height, width, dtype=torch.float32)

    def write(self, index: int, top: int, left: int, pixels: torch.Tensor) -> None:
        self.images[index, :, top : top + pixels.shape[-2], left : left + pixels.shape[-1]] = pixels


def _reflect(indices: np.ndarray, size: int) -> np.ndarray:
    """Indices into ``0..size-1`` as reflect padding reads them (``-1`` -> 1, ``size`` -> size - 2)."""
    period = 2 * (size - 1)
    folded = np.mod(indices, period) if period else np.zeros_like(indices)
    return np.where(folded >= size, period - folded, folded)


class PaddedSource:
    """A source seen on the canvas of a ``pad`` geometry: the scene at ``geometry.offset`` with
    reflected borders, as :func:`rsedit_core.images.fit_to_multiple` pads a tensor."""

    def __init__(self, source: SceneSource, geometry: Geometry):
        self.source, self.geometry = source, geometry
        self.count = source.count
        self.height, self.width = geometry.processed

    def read(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        (h, w), (dy, dx) = self.geometry.original, self.geometry.offset
        rows = _reflect(np.arange(top - dy, top - dy + height), h)
        cols = _reflect(np.arange(left - dx, left - dx + width), w)
        r0, c0 = int(rows.min()), int(cols.min())
        block = self.source.read(r0, c0, int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1)
        rows_index, cols_index = torch.from_numpy(rows - r0), torch.from_numpy(cols - c0)
        return block.index_select(-2, rows_index).index_select(-1, cols_index)


class CroppedSink:
    """Passes on only the part of each window that lies inside the original scene of a ``pad`` geometry."""

    def __init__(self, sink: SceneSink, geometry: Geometry):
        self.sink, self.geometry = sink, geometry

    def write(self, index: int, top: int, left: int, pixels: torch.Tensor) -> None:
        (h, w), (dy, dx) = self.geometry.original, self.geometry.offset
        y0, y1 = max(top, dy), min(top + pixels.shape[-2], dy + h)
        x0, x1 = max(left, dx), min(left + pixels.shape[-1], dx + w)
        if y0 < y1 and x0 < x1:
            self.sink.write(index, y0 - dy, x0 - dx, pixels[..., y0 - top : y1 - top, x0 - left : x1 - left])


def _vae_device(model: EditorModel) -> torch.device:
    return next(model.vae.parameters()).device  # may differ from the denoiser's (--cpu-vae)


@torch.no_grad()
def encode_tiles(model: EditorModel, source: SceneSource, plan: TilePlan) -> torch.Tensor:
    """Source latents ``[B, 4, H/8, W/8]`` (the backbone's kind) of a whole source, window by window."""
    factor, device = plan.factor, _vae_device(model)
    if not plan.tiled:
        pixels = source.read(0, 0, source.height, source.width)
        return model.backbone.source_latents(model, (pixels * 2 - 1).to(device, model.vae.dtype))
    weights, inverse = plan.weights("cpu", torch.float32)
    total = None
    for window, weight in zip(plan.windows, weights, strict=True):
        pixels = source.read(window.top * factor, window.left * factor, window.height * factor, window.width * factor)
        latent = model.backbone.source_latents(model, (pixels * 2 - 1).to(device, model.vae.dtype))
        if total is None:
            total = torch.zeros(latent.shape[0], latent.shape[1], *plan.latent_size, dtype=torch.float32)
        total[window.slices] += latent.float().cpu() * weight
    return (total * inverse).to(device, latent.dtype)


def _decode(model: EditorModel, latent: torch.Tensor) -> torch.Tensor:
    latent = latent.to(_vae_device(model), model.vae.dtype)
    decoded = model.vae.decode(latent / model.vae.config.scaling_factor, return_dict=False)[0]
    return (decoded / 2 + 0.5).clamp(0, 1).float()


@torch.no_grad()
def decode_tiles(model: EditorModel, latents: torch.Tensor, sink: SceneSink, plan: TilePlan) -> None:
    """Decode scaled latents ``[N, 4, h, w]`` one image at a time into ``sink``, by blended
    windows, each full-width row band written as soon as it is complete."""
    factor = plan.factor
    height, width = plan.latent_size[0] * factor, plan.latent_size[1] * factor
    for index in range(latents.shape[0]):
        latent = latents[index : index + 1]
        if not plan.tiled:
            sink.write(index, 0, 0, _decode(model, latent)[0].cpu())
            continue
        tops = sorted({w.top for w in plan.windows})
        band_top, band, band_weight = 0, None, None
        for number, top in enumerate(tops):
            row = [w for w in plan.windows if w.top == top]
            bottom = (top + row[0].height) * factor
            grow = bottom - band_top - (0 if band is None else band.shape[1])
            if band is None:
                band, band_weight = torch.zeros(3, grow, width), torch.zeros(1, grow, width)
            elif grow > 0:
                band = torch.cat([band, torch.zeros(3, grow, width)], dim=1)
                band_weight = torch.cat([band_weight, torch.zeros(1, grow, width)], dim=1)
            for window in row:
                pixels = _decode(model, latent[window.slices])[0].cpu()
                weight = pixel_ramp(plan, window, (height, width))
                y, x = window.top * factor - band_top, window.left * factor
                band[:, y : y + pixels.shape[1], x : x + pixels.shape[2]] += pixels * weight
                band_weight[:, y : y + pixels.shape[1], x : x + pixels.shape[2]] += weight
            done = (tops[number + 1] * factor if number + 1 < len(tops) else height) - band_top
            sink.write(index, band_top, 0, band[:, :done] / band_weight[:, :done])
            band, band_weight, band_top = band[:, done:], band_weight[:, done:], band_top + done


class MaskedSink:
    """Composites each written window over the source with ``mask`` (``[H, W]`` in 0..1, 1 = edit,
    on the scene's grid), so pixels where the mask is 0 are the source: a sink whose ``write``
    takes ``keep=`` (:class:`rsedit_core.raster.RasterSink`) copies the source's raw values there."""

    def __init__(self, sink: SceneSink, source: SceneSource, mask: torch.Tensor):
        import inspect

        self.sink, self.source, self.mask = sink, source, mask
        self.keeps = "keep" in inspect.signature(sink.write).parameters

    def write(self, index: int, top: int, left: int, pixels: torch.Tensor) -> None:
        height, width = pixels.shape[-2:]
        weight = self.mask[top : top + height, left : left + width].float()
        source = self.source.read(top, left, height, width)[0].float()
        out = torch.where(weight > 0, source * (1 - weight) + pixels * weight, source)
        if self.keeps:
            self.sink.write(index, top, left, out, keep=(weight == 0).numpy())
        else:
            self.sink.write(index, top, left, out)


def copy_scene(source: SceneSource, sinks: list[MaskedSink], band: int = 256) -> None:
    """Write the source itself into every sink, band by band (an edit with an empty mask)."""
    for top in range(0, source.height, band):
        rows = min(band, source.height - top)
        pixels = source.read(top, 0, rows, source.width)[0].float()
        for sink in sinks:
            sink.write(0, top, 0, pixels)
