"""Image reading, channel normalisation and the size policy.

The core works on ``[B, 3, H, W]`` float tensors in ``0..1``. Satellite products arrive as RGBA
(alpha marks no-data), grayscale (panchromatic), 16-bit or palette images; each is turned into
8-bit-range RGB here and the conversion is reported, never silent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

MIN_SIZE = 64
SIZE_POLICIES = ("pad", "resize", "crop")
SIZE_POLICY_HELP = {
    "pad": "reflect-pad up to a multiple of 8 and crop the result back: the whole scene, pixel grid kept",
    "resize": "resize (Lanczos) to the nearest multiple of 8: the whole scene, slightly rescaled",
    "crop": "centre-crop down to a multiple of 8: drops up to 7 edge pixels per axis",
}


@dataclass(frozen=True)
class Geometry:
    """How a source was fitted to a multiple of ``multiple``: ``(top, left)`` offset of the original
    inside the processed canvas and the original ``(height, width)``; used to undo padding."""

    policy: str
    original: tuple[int, int]
    processed: tuple[int, int]
    offset: tuple[int, int] = (0, 0)

    def describe(self) -> str:
        (h, w), (ph, pw) = self.original, self.processed
        if (h, w) == (ph, pw):
            return f"{w}x{h} used as is"
        return f"{w}x{h} -> {pw}x{ph} ({self.policy}: {SIZE_POLICY_HELP[self.policy]})"

    def restore(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the policy on ``[B, C, H', W']`` outputs (only ``pad`` changes them back)."""
        if self.policy != "pad":
            return images
        top, left = self.offset
        h, w = self.original
        return images[..., top : top + h, left : left + w]


def pil_to_tensor(image) -> tuple[torch.Tensor, list[str]]:
    """A PIL image as ``[1, 3, H, W]`` in ``0..1`` plus notes on any conversion made.

    RGBA/LA and palette images with transparency are composited on black (no-data);
    grayscale is repeated to three channels; 16-bit and 32-bit images are stretched linearly
    between their 2nd and 98th percentiles, the usual display stretch for RS products.
    """
    notes: list[str] = []
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette image converted to RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        array = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = array[..., 3:4]
        if (alpha < 1).any():
            notes.append(f"alpha channel flattened onto black ({(alpha[..., 0] < 1).mean():.1%} of pixels transparent)")
        rgb = array[..., :3] * alpha
    elif image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        lo, hi = np.percentile(array, [2, 98])
        hi = hi if hi > lo else lo + 1
        gray = np.clip((array - lo) / (hi - lo), 0, 1)
        notes.append(f"{mode} image stretched from [{lo:g}, {hi:g}] (2-98 percentile) to 8-bit range")
        rgb = np.repeat(gray[..., None], 3, axis=-1)
    elif image.mode in ("L", "1"):
        rgb = np.repeat(np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0, 3, axis=-1)
        notes.append("grayscale image repeated to RGB")
    elif image.mode == "RGB":
        rgb = np.asarray(image, dtype=np.float32) / 255.0
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        notes.append(f"{mode} image converted to RGB")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None], notes


def load_image(path: str | os.PathLike) -> tuple[torch.Tensor, list[str]]:
    """Read an image file as ``[1, 3, H, W]`` in ``0..1`` (see :func:`pil_to_tensor`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"No image at {path}.")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_tensor(image)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"Cannot read {path} as an image: {e}. Use PNG, JPEG or TIFF.") from e


def save_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write one ``[3, H, W]`` (or ``[1, 3, H, W]``) image in ``0..1`` as 8-bit RGB."""
    from PIL import Image

    if image.dim() == 4:
        image = image[0]
    array = (image.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def to_rgb(images: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Bring ``[B, C, H, W]`` with C in 1, 3, 4 to RGB (alpha flattened on black)."""
    channels = images.shape[1]
    if channels == 3:
        return images, []
    if channels == 1:
        return images.repeat(1, 3, 1, 1), ["grayscale image repeated to RGB"]
    if channels == 4:
        return images[:, :3] * images[:, 3:4], ["alpha channel flattened onto black"]
    raise InputError(f"Images must have 1, 3 or 4 channels; got {channels}.")


def fit_to_multiple(images: torch.Tensor, policy: str = "pad", multiple: int = 8) -> tuple[torch.Tensor, Geometry]:
    """Apply the size policy to ``[B, 3, H, W]`` so both sides are multiples of ``multiple``.

    Images smaller than 64 px on a side are refused: the VAE's 8x downsampling leaves too few
    latent pixels for the U-Net.
    """
    if policy not in SIZE_POLICIES:
        raise InputError(f"Unknown size policy {policy!r}; choose one of {', '.join(SIZE_POLICIES)}.")
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"Expected images [B, 3, H, W]; got {tuple(images.shape)}.")
    h, w = images.shape[-2:]
    if min(h, w) < MIN_SIZE:
        raise InputError(
            f"The source is {w}x{h} px; RSEdit needs at least {MIN_SIZE} px on each side. "
            "Upscale it first (e.g. with an upscale node) or use a larger crop of the scene."
        )
    if h % multiple == 0 and w % multiple == 0:
        return images, Geometry(policy, (h, w), (h, w))
    if policy == "pad":
        ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        top, left = (ph - h) // 2, (pw - w) // 2
        padded = F.pad(images, (left, pw - w - left, top, ph - h - top), mode="reflect")
        return padded, Geometry(policy, (h, w), (ph, pw), (top, left))
    if policy == "crop":
        ch, cw = h // multiple * multiple, w // multiple * multiple
        top, left = (h - ch) // 2, (w - cw) // 2
        return images[..., top : top + ch, left : left + cw], Geometry(policy, (h, w), (ch, cw), (top, left))
    rh, rw = max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)
    return resize_lanczos(images, (rh, rw)), Geometry(policy, (h, w), (rh, rw))


def resize_lanczos(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, 3, H, W]`` in ``0..1`` to ``size=(h, w)`` with PIL's Lanczos filter (8-bit)."""
    from PIL import Image

    out = []
    for image in images:
        array = (image.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
        resized = Image.fromarray(array).resize((size[1], size[0]), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out).to(images.device, images.dtype)


def stack_sources(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``[1, 3, H, W]`` sources into one batch; all must share one size."""
    first = images[0].shape[-2:]
    for index, image in enumerate(images[1:], start=2):
        if image.shape[-2:] != first:
            raise InputError(
                f"Source {index} is {image.shape[-1]}x{image.shape[-2]} but source 1 is {first[1]}x{first[0]}: "
                "a batch must share one size. Resize them to one size or run them separately."
            )
    return torch.cat(images, dim=0)
