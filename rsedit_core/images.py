"""Image reading and writing, channel normalisation and the size policy.

The core works on ``[B, 3, H, W]`` float tensors in ``0..1``. Satellite products arrive as RGBA
(alpha marks no-data), grayscale (panchromatic), 16-bit or palette images; each is turned into
8-bit-range RGB here and the conversion is reported, never silent. A file that cannot be used (a
missing path, a folder, an empty, truncated or non-image file, a decompression bomb) raises an
:class:`~rsedit_core.errors.InputError` that names the file, says what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import MIN_SIZE, SIZE_POLICIES, SIZE_POLICY_HELP
from .errors import InputError
from .limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, max_image_pixels  # noqa: F401 - re-exported
from .outputs import atomic_output

#: Output formats by file extension (PIL would otherwise guess from the temporary file's name).
SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

_ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored along the main diagonal",
    6: "rotated 90 degrees clockwise",
    7: "mirrored along the anti-diagonal",
    8: "rotated 90 degrees counter-clockwise",
}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"BM", "BMP"),
)
_NEEDS_PLUGIN = {
    ".heic": "pillow-heif",
    ".heif": "pillow-heif",
    ".avif": "pillow-avif-plugin",
    ".jxl": "pillow-jxl-plugin",
}
#: PIL's decompression-bomb limit and truncated-image switch are module globals; loads hold this
#: lock while they set them to RSEdit's values, and put the caller's values back afterwards.
_PIL_GLOBALS = threading.Lock()


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
    between their 2nd and 98th percentiles, the usual display stretch for RS products, and their
    NaN/inf pixels (no-data in float products) are set to black.
    """
    notes: list[str] = []
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette image converted to RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        if image.mode == "LA":
            notes.append("grayscale image repeated to RGB")
        array = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = array[..., 3:4]
        if (alpha < 1).any():
            notes.append(f"alpha channel flattened onto black ({(alpha[..., 0] < 1).mean():.1%} of pixels transparent)")
        rgb = array[..., :3] * alpha
    elif image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        finite = np.isfinite(array)
        if not finite.any():
            raise InputError(
                f"The {mode} image ({image.width}x{image.height}) has no finite pixel values (all NaN or inf): "
                "it holds no data. Check that the right band or file was exported."
            )
        lo, hi = (float(v) for v in np.percentile(array[finite], [2, 98]))
        hi = hi if hi > lo else lo + 1
        gray = np.clip((np.where(finite, array, lo) - lo) / (hi - lo), 0, 1)
        notes.append(f"{mode} image stretched from [{lo:g}, {hi:g}] (2-98 percentile) to 8-bit range")
        if not finite.all():
            notes.append(f"{(~finite).mean():.1%} of pixels are NaN or inf (no-data) and were set to black")
        rgb = np.repeat(gray[..., None], 3, axis=-1)
    elif image.mode in ("L", "1"):
        rgb = np.repeat(np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0, 3, axis=-1)
        notes.append("grayscale image repeated to RGB")
    elif image.mode == "RGB":
        rgb = np.asarray(image, dtype=np.float32) / 255.0
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        notes.append(f"{mode} image converted to RGB")
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None], notes


@contextlib.contextmanager
def _pil_guards(limit: int) -> Iterator[Callable[[], None]]:
    """Hold PIL's globals for one load: no truncated files, whatever the host process set, and no
    pixel limit until the caller, having checked the header's size itself, calls the yielded
    ``arm()``; from then on ``limit`` is PIL's own (which also covers GIF frames and TIFF tiles),
    with its in-between warning made an error. The caller's values are put back afterwards."""
    from PIL import Image, ImageFile

    def arm() -> None:
        # PIL warns above MAX_IMAGE_PIXELS and raises above twice it; with the warning an error,
        # both mean "over ``limit``".
        Image.MAX_IMAGE_PIXELS = limit or None

    with _PIL_GLOBALS:
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        # Reading the header allocates no pixels; RSEdit checks its size before anything is decoded.
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                yield arm
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _too_many_pixels(path: Path, limit: int, pixels: int | None, size: tuple[int, int] | None = None) -> InputError:
    if pixels is None:
        what = f"more than {limit:,} pixels"
        wanted = "a larger number"
    else:
        what = f"{size[0]}x{size[1]} = {pixels:,} pixels" if size else f"{pixels:,} pixels"
        wanted = f"{pixels} or more"
    # 4 bytes a pixel while PIL decodes, 12 for the float RGB tensor.
    memory = f" Loading it needs about {pixels * 16 / 1e9:.1f} GB of memory." if pixels and pixels >= 10**7 else ""
    return InputError(
        f"{path} has {what}, over the limit of {limit:,} pixels that guards against decompression bombs "
        f"(small files that expand to huge images and exhaust memory).{memory} If you trust the file, raise "
        f"the limit: set the environment variable {MAX_PIXELS_ENV} to {wanted} (0 = no limit), pass "
        f"max_pixels= to load_image, or use the CLI's --max-image-pixels. Or crop the scene into tiles first."
    )


def _bomb_pixels(error: BaseException) -> int | None:
    match = re.search(r"\((\d+) pixels\)", str(error))
    return int(match.group(1)) if match else None


def _check_path(path: Path) -> None:
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"No image at {path}: it is a symbolic link to {os.readlink(path)}, which does not exist.")
        folder = path.parent
        if not folder.is_dir():
            raise InputError(f"No image at {path}: the folder {folder} does not exist. Check the path.")
        similar = sorted(p.name for p in folder.glob(f"{glob_escape(path.stem)}.*") if p.is_file())
        hint = f" The folder has {', '.join(similar[:5])}." if similar else ""
        raise InputError(
            f"No image at {path}: the file does not exist.{hint} Check the name"
            + ("" if path.is_absolute() else f" (relative paths start from {Path.cwd()})")
            + "."
        )
    if path.is_dir():
        images = sorted(
            p.name for p in path.iterdir() if p.suffix.lower() in SAVE_FORMATS or p.suffix.lower() == ".gif"
        )
        example = f" (e.g. {path / images[0]})" if images else ""
        raise InputError(f"{path} is a folder, not an image file: give the path of one image inside it{example}.")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file (a device, pipe or socket); give the path of an image file.")
    if path.stat().st_size == 0:
        raise InputError(
            f"Cannot read {path} as an image: the file is empty (0 bytes), so the export, copy or download "
            "that made it did not finish. Re-export or re-download it."
        )


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped (for :meth:`Path.glob`)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _unidentified(path: Path) -> InputError:
    """Why PIL could not tell what ``path`` is, from its first bytes."""
    with open(path, "rb") as file:
        head = file.read(512)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return InputError(
                f"Cannot read {path} as an image: it starts like a {name} file but its header is cut short or "
                "damaged (truncated or corrupt). Re-export or re-download it."
            )
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return InputError(
            f"Cannot read {path} as an image: it starts like a WebP file but is truncated or corrupt. "
            "Re-export or re-download it."
        )
    if head.startswith(b"version https://git-lfs"):
        return InputError(
            f"Cannot read {path} as an image: it is a Git LFS pointer, not the image itself. "
            "Fetch the real file with `git lfs pull` (in the repository that holds it)."
        )
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml")) and b"<svg" not in lowered:
        return InputError(
            f"Cannot read {path} as an image: it is an HTML/XML page (a download that saved an error or "
            "login page?). Download the image file itself."
        )
    if b"<svg" in lowered:
        return InputError(f"Cannot read {path} as an image: it is an SVG drawing. Render it to PNG first.")
    plugin = _NEEDS_PLUGIN.get(path.suffix.lower())
    if plugin:
        return InputError(
            f"Cannot read {path} as an image: {path.suffix} files need the '{plugin}' package, which is not "
            f"installed (pip install {plugin}), or convert it to PNG, JPEG or TIFF."
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c.isspace() for c in text):
        first = text.strip().splitlines()[0][:40]
        return InputError(
            f"Cannot read {path} as an image: it is a text file (it begins {first!r}), whatever its extension "
            "says. Give the path of the image itself, exported as PNG, JPEG or TIFF."
        )
    return InputError(
        f"Cannot read {path} as an image: its contents are not in a format PIL can read (it begins with "
        f"{head[:8]!r}). Re-export it as PNG, JPEG or TIFF."
    )


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """Read an image file as ``[1, 3, H, W]`` in ``0..1`` plus notes (see :func:`pil_to_tensor`).

    The image is returned as viewers show it: an EXIF orientation tag is applied (and noted).
    Animated or multi-page files give their first frame or page, with a note. Files with more
    pixels than :func:`max_image_pixels` (``max_pixels``, else ``$RSEDIT_MAX_IMAGE_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`) are refused before they are decoded; so are missing paths, folders,
    empty, truncated, corrupt and non-image files, each with an :class:`InputError` saying why.
    PIL's global settings are the same after the call as before.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    limit = max_image_pixels(max_pixels)
    path = Path(path)
    _check_path(path)
    notes: list[str] = []
    with _pil_guards(limit) as arm:
        try:
            with Image.open(path) as opened:
                width, height = opened.size
                pixels = max(1, width) * max(1, height)
                if limit and pixels > limit:
                    raise _too_many_pixels(path, limit, pixels, (width, height))
                _check_memory(path, width, height)
                if opened.format == "PNG":
                    _check_png_rows(path, width, height)
                arm()
                try:
                    frames = getattr(opened, "n_frames", 1)
                except (MemoryError, Image.DecompressionBombError, Image.DecompressionBombWarning):
                    raise
                except Exception:  # a damaged later frame: the first may still be fine
                    frames = None
                opened.seek(0)
                # Read before load(): TIFF applies the tag itself while loading, and then forgets it.
                orientation = opened.getexif().get(0x0112, 1)
                opened.load()
                image_format = opened.format
                # TIFF has already turned itself upright; a copy only when a turn is still due.
                image = ImageOps.exif_transpose(opened) if opened.getexif().get(0x0112, 1) != 1 else opened
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _too_many_pixels(path, limit, _bomb_pixels(e)) from None
        except UnidentifiedImageError:
            raise _unidentified(path) from None
        except PermissionError as e:
            raise InputError(f"Cannot read {path}: permission denied ({e.strerror}). Make the file readable.") from e
        except MemoryError:
            raise
        except Exception as e:
            detail = str(e) or type(e).__name__
            what = "truncated (the file ends early)" if "truncated" in detail.lower() else "corrupt"
            raise InputError(
                f"Cannot read {path} as an image: the file is {what}; PIL says: {detail}. "
                "Re-export or re-download it (a copy or download that was cut short often does this)."
            ) from e
    if orientation in _ORIENTATIONS:
        notes.append(
            f"EXIF orientation {orientation} applied: the image was {_ORIENTATIONS[orientation]} "
            f"to load it as viewers show it ({image.width}x{image.height})"
        )
    if frames is None:
        notes.append(f"{path} has more than one frame (the later ones are damaged); only the first was used")
    elif frames > 1:
        unit = {"TIFF": "pages", "MIC": "pages", "MPO": "images"}.get(image_format, "frames")
        notes.append(f"{path} has {frames} {unit}; only the first was used")
    if image_format == "PNG" and _png_rgb_16bit(path):
        tensor, mode_notes = _read_png_16bit(path, orientation)
    else:
        tensor, mode_notes = pil_to_tensor(image)
    return tensor, notes + mode_notes


#: Bytes a pixel while an image loads: PIL's decoded copy, the float32 RGB tensor, one temporary.
LOAD_BYTES_PER_PIXEL = 28


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (Linux), else None (the check is skipped)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_memory(path: Path, width: int, height: int) -> None:
    """Refuse, before decoding, an image whose load would not fit in the memory left (the process
    would be killed without a word)."""
    available = _available_memory()
    needed = width * height * LOAD_BYTES_PER_PIXEL
    if available is not None and needed > available:
        raise InputError(
            f"{path} is {width}x{height} px: loading it needs about {needed / 1e9:.1f} GB of memory, and about "
            f"{available / 1e9:.1f} GB is available. Crop or downscale it first, or convert it to a GeoTIFF "
            f"(e.g. gdal_translate {path.name} {path.stem}.tif), which rsedit edit reads and writes window by window."
        )


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _check_png_rows(path: Path, width: int, height: int) -> None:
    """Refuse a PNG whose pixel data (IDAT) ends before its last row: PIL decodes such a file
    without a word and leaves the missing rows black. The data is inflated in 1 MB steps and
    only counted, so this costs no memory."""
    import struct
    import zlib

    with open(path, "rb") as f:
        head = f.read(33)
        if len(head) < 33 or head[12:16] != b"IHDR" or head[28] != 0:
            return  # not a plain PNG, or interlaced (rows are not in order): PIL's own checks apply
        depth, colour = head[24], head[25]
        row = 1 + -(-width * _PNG_CHANNELS.get(colour, 4) * depth // 8)
        expected, got = row * height, 0
        inflate = zlib.decompressobj()
        try:
            while got < expected:
                header = f.read(8)
                if len(header) < 8:
                    break
                length, kind = struct.unpack(">I4s", header)
                data = f.read(length)
                f.seek(4, os.SEEK_CUR)  # CRC
                if kind == b"IEND":
                    break
                if kind != b"IDAT":
                    continue
                while data and got < expected:
                    got += len(inflate.decompress(data, 1 << 20))
                    data = inflate.unconsumed_tail
        except zlib.error:
            return  # corrupt data: PIL's decoder reports it
    if got < expected:
        rows = got // row
        raise InputError(
            f"{path}: its pixel data ends after {rows} of {height} rows: the file is truncated (cut short or written "
            "incompletely); the missing rows would be black. Re-export or re-download it."
        )


def _png_rgb_16bit(path: Path) -> bool:
    """Whether a PNG holds 16-bit RGB(A) samples, which PIL reduces to their high byte."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)


def _read_png_16bit(path: Path, orientation: int) -> tuple[torch.Tensor, list[str]]:
    """A 16-bit RGB(A) PNG read at full depth (GDAL's PNG driver through rasterio) and stretched
    per band between its 2nd and 98th percentiles, as 16-bit grayscale is; alpha flattens on black."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a PNG has no georeference
        with rasterio.open(path) as ds:
            array = ds.read().astype(np.float32)  # [C, H, W]
    notes = []
    rgb, alpha = array[:3], (array[3:4] / 65535.0 if array.shape[0] == 4 else None)
    ranges = []
    for band in rgb:
        lo, hi = (float(v) for v in np.percentile(band, [2, 98]))
        hi = hi if hi > lo else lo + 1
        band[...] = np.clip((band - lo) / (hi - lo), 0, 1)
        ranges.append(f"[{lo:g}, {hi:g}]")
    notes.append(f"16-bit RGB image stretched per band from {', '.join(ranges)} (2-98 percentile) to 0..1")
    if alpha is not None:
        if (alpha < 1).any():
            notes.append(f"alpha channel flattened onto black ({(alpha[0] < 1).mean():.1%} of pixels transparent)")
        rgb = rgb * alpha
    tensor = torch.from_numpy(np.ascontiguousarray(rgb))[None]
    if orientation in _ORIENTATIONS:  # a PNG eXIf chunk: turned as the 8-bit path turns it
        from PIL import Image

        method = _EXIF_TRANSPOSE[orientation]
        turned = [np.asarray(Image.fromarray(channel).transpose(method)) for channel in tensor[0].numpy()]
        tensor = torch.from_numpy(np.stack(turned))[None]
    return tensor, notes


#: EXIF orientation -> the PIL ``Image.Transpose`` value that shows the image upright (as ImageOps.exif_transpose).
_EXIF_TRANSPOSE = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)


def save_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write one ``[3, H, W]`` (or ``[1, 3, H, W]``) image in ``0..1`` as 8-bit RGB.

    The format follows the extension of ``path`` (see :data:`SAVE_FORMATS`; JPEG and WebP at
    quality 95). The file is written beside ``path`` and renamed over it when complete, so a
    failure leaves ``path`` as it was and no partial file behind.
    """
    from PIL import Image

    path = Path(path)
    image_format = SAVE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise InputError(
            f"Cannot save {path}: unknown image extension {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(SAVE_FORMATS)}."
        )
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise InputError(
            f"save_image writes one RGB image [3, H, W] or [1, 3, H, W]; got {tuple(image.shape)}. "
            "Save a batch one image at a time (images[i])."
        )
    if not torch.isfinite(image).all():
        raise InputError(f"Cannot save {path}: the image holds NaN or infinite values; clean them first.")
    low, high = float(image.min()), float(image.max())
    if low < -0.01 or high > 1.01:  # rounding slack only: anything else is a wrong scale, not a bright pixel
        hint = " It looks like 0..255: divide by 255." if high > 1.5 else " Clamp it with image.clamp(0, 1)."
        raise InputError(f"Cannot save {path}: the image spans {low:.4g}..{high:.4g}, not 0..1.{hint}")
    array = _to_uint8(image)
    with atomic_output(path) as temporary:
        try:
            Image.fromarray(array).save(temporary, format=image_format, **_SAVE_OPTIONS.get(image_format, {}))
        except OSError as e:
            raise InputError(
                f"Could not write {path}: {e}. Check that the disk has space and the folder is writable."
            ) from e


def _label_font(size: int):
    """A font about ``size`` px high and the factor to scale its rendering by (bitmap fallback)."""
    from PIL import ImageFont

    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or no FreeType
        font = ImageFont.load_default()
    if isinstance(font, ImageFont.FreeTypeFont):
        return font, 1
    native = max(1, font.getbbox("Hg")[3])
    return font, max(1, round(size / native))


def _wrap(text: str, fits) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and not fits(candidate):
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _label_mask(text: str, width: int, height: int) -> np.ndarray:
    """Coverage ``[h, width]`` in ``0..1`` of the label banner: text centred, word-wrapped."""
    from PIL import Image, ImageDraw

    size = max(10, min(48, round(min(width, height) / 20)))
    while True:
        font, scale = _label_font(size)
        line_height = (font.getbbox("Hgjy")[3] + 2) * scale
        pad = max(2, line_height // 4)

        def line_width(line: str, font=font, scale=scale) -> int:
            return (font.getbbox(line)[2] if line else 0) * scale

        room = width - 2 * pad
        lines = _wrap(text, lambda line, lw=line_width, room=room: lw(line) <= room)
        banner = len(lines) * line_height + 2 * pad
        if banner <= height // 2 or size <= 6:
            break
        size = max(6, math.floor(size * 0.8))
    banner = min(banner, height)
    mask = Image.new("L", (width, banner), 0)
    for index, line in enumerate(lines):
        if not line:
            continue
        glyphs = Image.new("L", (max(1, line_width(line) // scale + 2), line_height // scale), 0)
        draw = ImageDraw.Draw(glyphs)
        if size < 16 or scale > 1:  # small anti-aliased letters blur to grey; draw them crisp
            draw.fontmode = "1"
        draw.text((0, 0), line, fill=255, font=font)
        if scale > 1:
            glyphs = glyphs.resize((glyphs.width * scale, glyphs.height * scale), Image.NEAREST)
        mask.paste(glyphs, ((width - line_width(line)) // 2, pad + index * line_height))
    return np.asarray(mask, dtype=np.float32) / 255.0


def stamp_label(image: torch.Tensor, text: str) -> torch.Tensor:
    """``image`` (``[3, H, W]`` or ``[B, 3, H, W]`` in ``0..1``) with ``text`` burnt in: white
    letters on a dark banner across the top, word-wrapped to the width and sized to the image.

    Only the banner rows change (exactly: the rest is copied, never re-quantised); shape, dtype
    and device are kept. Used to mark smoke-run outputs, e.g. "SMOKE RUN: random weights, not an edit".
    """
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise InputError(f"stamp_label takes [3, H, W] or [B, 3, H, W] images; got {tuple(image.shape)}.")
    out = image.clone()
    if not text.strip():
        return out
    height, width = image.shape[-2:]
    mask = torch.from_numpy(_label_mask(text, width, height)).to(image.device, image.dtype)
    rows = mask.shape[0]
    banner = out[..., :rows, :] * 0.25
    out[..., :rows, :] = banner * (1 - mask) + mask
    return out


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


def check_min_size(height: int, width: int) -> None:
    """Refuse a source smaller than :data:`~rsedit_core.defaults.MIN_SIZE` px on a side (the CLI
    calls it before loading the model; :func:`fit_to_multiple` applies it too)."""
    if min(height, width) < MIN_SIZE:
        raise InputError(
            f"The source is {width}x{height} px; RSEdit needs at least {MIN_SIZE} px on each side. "
            "Upscale it first (e.g. with an upscale node) or use a larger crop of the scene."
        )


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
    check_min_size(h, w)
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
