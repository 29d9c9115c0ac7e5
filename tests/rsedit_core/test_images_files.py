"""Bad and unusual image files: each is loaded as seen, or refused with a message that says what is
wrong and how to fix it. Every file is built here in ``tmp_path`` with PIL."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from rsedit_core import images as images_module
from rsedit_core.errors import InputError
from rsedit_core.images import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    load_image,
    max_image_pixels,
    pil_to_tensor,
    save_image,
    stamp_label,
)


@pytest.fixture(autouse=True)
def _no_env_limit(_pil_globals_untouched, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


@pytest.fixture(autouse=True)
def _pil_globals_untouched():
    """Set up before (and checked after) any monkeypatching of PIL in a test."""
    before = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    yield
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


def asymmetric(height: int = 12, width: int = 20) -> np.ndarray:
    """An RGB image that no rotation or mirror maps onto itself."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1)[None]


# What a viewer shows for each EXIF orientation, as a function of the stored pixels; the file stores
# the inverse of this applied to the upright image.
STORE = {
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, 1),  # stored turned 90 CCW; tag 6 says "rotate 90 CW to view"
    8: lambda a: np.rot90(a, -1),
    2: lambda a: a[:, ::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
}


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


@pytest.mark.parametrize("orientation", sorted(STORE))
@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_exif_orientation_lossless_loaded_as_seen(tmp_path, suffix, orientation):
    upright = asymmetric()
    stored = Image.fromarray(np.ascontiguousarray(STORE[orientation](upright)))
    path = tmp_path / f"rotated{suffix}"
    if suffix == ".tif":
        stored.save(path, tiffinfo={0x0112: orientation})
    elif suffix == ".webp":
        stored.save(path, exif=exif(orientation), lossless=True)
    else:
        stored.save(path, exif=exif(orientation))
    tensor, notes = load_image(path)
    assert torch.equal(tensor, as_tensor(upright))
    assert any(f"EXIF orientation {orientation} applied" in note for note in notes), notes


def test_exif_orientation_jpeg(tmp_path):
    upright = np.zeros((48, 80, 3), dtype=np.uint8)
    upright[:16, :40] = (255, 0, 0)  # a red block top-left: where it lands shows the rotation
    upright[32:, 40:] = (0, 0, 255)
    Image.fromarray(np.ascontiguousarray(STORE[6](upright))).save(tmp_path / "phone.jpg", exif=exif(6), quality=95)
    tensor, notes = load_image(tmp_path / "phone.jpg")
    assert tensor.shape == (1, 3, 48, 80)
    assert (tensor - as_tensor(upright)).abs().mean() < 0.02
    assert tensor[0, 0, 8, 20] > 0.9 and tensor[0, 2, 8, 20] < 0.1
    assert notes == [
        "EXIF orientation 6 applied: the image was rotated 90 degrees clockwise to load it as viewers show it (80x48)"
    ]


def test_upright_exif_gives_no_note(tmp_path):
    Image.fromarray(asymmetric()).save(tmp_path / "upright.png", exif=exif(1))
    tensor, notes = load_image(tmp_path / "upright.png")
    assert torch.equal(tensor, as_tensor(asymmetric())) and notes == []


# --- decompression bombs -------------------------------------------------------------------------


@pytest.fixture
def image_20x20(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(asymmetric(20, 20)).save(path)
    return path


def test_bomb_refused_with_size_limit_and_fix(image_20x20):
    with pytest.raises(InputError) as caught:
        load_image(image_20x20, max_pixels=100)
    message = str(caught.value)
    assert str(image_20x20) in message and "20x20 = 400 pixels" in message and "limit of 100 pixels" in message
    assert "RSEDIT_MAX_IMAGE_PIXELS" in message and "0 = no limit" in message and "max_pixels" in message


@pytest.mark.parametrize("limit", [399, 250, 150])
def test_bomb_between_one_and_two_times_the_limit_is_refused(image_20x20, limit):
    """PIL itself only warns below twice its limit; the limit given is the one applied."""
    with pytest.raises(InputError, match=f"limit of {limit} pixels"):
        load_image(image_20x20, max_pixels=limit)


def test_gif_exactly_at_the_limit_loads(tmp_path):
    """GIF frames are also checked by PIL's guard (armed at the same limit) while counting frames."""
    small = Image.new("P", (4, 4))
    small.save(tmp_path / "a.gif", save_all=True, append_images=[Image.new("P", (4, 4), 1)])
    tensor, _ = load_image(tmp_path / "a.gif", max_pixels=16)
    assert tensor.shape == (1, 3, 4, 4)


@pytest.mark.parametrize("limit", [400, 401, 0, 10**12])
def test_raised_limit_loads(image_20x20, limit):
    tensor, _ = load_image(image_20x20, max_pixels=limit)
    assert torch.equal(tensor, as_tensor(asymmetric(20, 20)))


def test_limit_from_environment(image_20x20, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    with pytest.raises(InputError, match="limit of 100 pixels"):
        load_image(image_20x20)
    assert load_image(image_20x20, max_pixels=400)[0].shape == (1, 3, 20, 20)  # the argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    assert load_image(image_20x20)[0].shape == (1, 3, 20, 20)
    monkeypatch.setenv(MAX_PIXELS_ENV, " 400 ")
    assert load_image(image_20x20)[0].shape == (1, 3, 20, 20)


def test_default_limit():
    assert max_image_pixels() == DEFAULT_MAX_PIXELS == 1_600_000_000
    assert max_image_pixels(0) == 0


@pytest.mark.parametrize("value", ["lots", "1.5e9", "-1", "40000x40000"])
def test_invalid_environment_value(image_20x20, monkeypatch, value):
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    with pytest.raises(InputError, match=f"{MAX_PIXELS_ENV}='{value}' is not a whole number"):
        load_image(image_20x20)


@pytest.mark.parametrize("value", [-5, 2.5, "100", True])
def test_invalid_argument(image_20x20, value):
    with pytest.raises(InputError, match="max_pixels must be a whole number"):
        load_image(image_20x20, max_pixels=value)


def test_pil_globals_restored_after_a_refusal(image_20x20, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12345)
    with pytest.raises(InputError):
        load_image(image_20x20, max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == 12345
    load_image(image_20x20)
    assert Image.MAX_IMAGE_PIXELS == 12345


def test_pil_default_limit_does_not_apply(image_20x20, monkeypatch):
    """A host process's tighter PIL limit is not what RSEdit applies."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    assert load_image(image_20x20)[0].shape == (1, 3, 20, 20)


# --- multi-frame files ---------------------------------------------------------------------------


def frames(count: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((8, 10, 3), 40 + 80 * i, dtype=np.uint8)) for i in range(count)]


@pytest.mark.parametrize(
    ("name", "count", "unit", "options"),
    [
        ("anim.gif", 3, "frames", {}),
        ("anim.png", 3, "frames", {}),
        ("anim.webp", 3, "frames", {"lossless": True}),
        ("pages.tif", 2, "pages", {}),
    ],
)
def test_multi_frame_first_frame_with_note(tmp_path, name, count, unit, options):
    first, *rest = frames(count)
    first.save(tmp_path / name, save_all=True, append_images=rest, **options)
    tensor, notes = load_image(tmp_path / name)
    assert tensor.shape == (1, 3, 8, 10)
    assert tensor.mean().item() == pytest.approx(40 / 255, abs=0.01)  # the first frame, not a later one
    assert f"{tmp_path / name} has {count} {unit}; only the first was used" in notes


# --- files that are not images -------------------------------------------------------------------


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


BAD_FILES = {
    "text.png": (b"hello, this is not a picture\n", r"it is a text file \(it begins 'hello, this"),
    "empty.png": (b"", r"the file is empty \(0 bytes\).*Re-export or re-download"),
    "half.png": (png_bytes()[: len(png_bytes()) // 2], r"truncated.*Re-export or re-download"),
    "header.png": (png_bytes()[:10], r"starts like a PNG file.*truncated or corrupt.*Re-export"),
    "header.jpg": (jpeg_bytes()[:10], r"truncated.*Re-export or re-download"),
    "chunk.png": (png_bytes()[:20], r"truncated.*Re-export or re-download"),
    "half.jpg": (jpeg_bytes()[: len(jpeg_bytes()) // 2], r"truncated.*Re-export or re-download"),
    "binary.png": (bytes(range(256)) * 4, r"not in a format PIL can read.*PNG, JPEG or TIFF"),
    "page.png": (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", r"HTML/XML page"),
    "lfs.png": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 1234\n",
        r"Git LFS pointer.*git lfs pull",
    ),
    "photo.heic": (b"\x00\x00\x00\x18ftypheic" + bytes(100), r"pillow-heif"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_non_images_refused(tmp_path, name):
    data, message = BAD_FILES[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError, match=message) as caught:
        load_image(tmp_path / name)
    assert str(tmp_path / name) in str(caught.value)


def test_truncated_refused_even_if_the_host_allows_truncated_images(tmp_path, monkeypatch):
    """ComfyUI and other hosts may set LOAD_TRUNCATED_IMAGES; a half file is still refused, and the
    host's setting is kept."""
    (tmp_path / "half.png").write_bytes(png_bytes()[: len(png_bytes()) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InputError, match="truncated"):
        load_image(tmp_path / "half.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_truncated_images_not_enabled_globally(tmp_path):
    """RSEdit only ever sets LOAD_TRUNCATED_IMAGES to False, and only for the length of a load."""
    source = open(images_module.__file__).read()
    assert "LOAD_TRUNCATED_IMAGES = True" not in source and "LOAD_TRUNCATED_IMAGES = False" in source
    Image.fromarray(asymmetric()).save(tmp_path / "ok.png")
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    load_image(tmp_path / "ok.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before


def test_folder_refused(tmp_path):
    Image.fromarray(asymmetric()).save(tmp_path / "scene.png")
    with pytest.raises(InputError, match="is a folder, not an image file.*scene.png"):
        load_image(tmp_path)


def test_missing_file(tmp_path):
    Image.fromarray(asymmetric()).save(tmp_path / "scene.tif")
    with pytest.raises(
        InputError, match=r"No image at .*scene\.png: the file does not exist\. The folder has scene\.tif"
    ):
        load_image(tmp_path / "scene.png")
    with pytest.raises(InputError, match="the folder .*nowhere does not exist"):
        load_image(tmp_path / "nowhere" / "scene.png")


def test_relative_missing_path_names_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=f"relative paths start from {tmp_path}"):
        load_image("missing.png")


def test_broken_symlink(tmp_path):
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(InputError, match="symbolic link to .*gone.png, which does not exist"):
        load_image(tmp_path / "link.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permissions(tmp_path):
    path = tmp_path / "locked.png"
    Image.fromarray(asymmetric()).save(path)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


# --- modes ---------------------------------------------------------------------------------------


def test_cmyk_jpeg_noted(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "print.jpg", quality=95)
    tensor, notes = load_image(tmp_path / "print.jpg")
    assert "CMYK image converted to RGB" in notes
    assert tensor[0, :, 8, 8].tolist() == pytest.approx([1, 0, 0], abs=0.05)  # no cyan, no magenta... = red


def test_la_noted(tmp_path):
    array = np.zeros((4, 4, 2), dtype=np.uint8)
    array[..., 0], array[..., 1] = 100, 255
    Image.fromarray(array, "LA").save(tmp_path / "la.png")
    tensor, notes = load_image(tmp_path / "la.png")
    assert notes == ["grayscale image repeated to RGB"]
    assert torch.allclose(tensor, torch.full((1, 3, 4, 4), 100 / 255))
    array[0, 0, 1] = 0
    tensor, notes = pil_to_tensor(Image.fromarray(array, "LA"))
    assert notes[0] == "grayscale image repeated to RGB" and "alpha channel flattened" in notes[1]
    assert tensor[0, :, 0, 0].tolist() == [0, 0, 0]


def test_float_nan_is_no_data(tmp_path):
    values = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    values[0, :5] = np.nan
    values[1, 0] = np.inf
    Image.fromarray(values, "F").save(tmp_path / "dem.tif")
    tensor, notes = load_image(tmp_path / "dem.tif")
    assert torch.isfinite(tensor).all() and tensor[0, :, 0, 0].tolist() == [0, 0, 0]
    assert "6.0% of pixels are NaN or inf (no-data) and were set to black" in notes
    Image.fromarray(np.full((4, 4), np.nan, dtype=np.float32), "F").save(tmp_path / "empty.tif")
    with pytest.raises(InputError, match="no finite pixel values"):
        load_image(tmp_path / "empty.tif")


# --- stamp_label ---------------------------------------------------------------------------------

SMOKE = "SMOKE RUN: random weights, not an edit"


@pytest.mark.parametrize("shape", [(3, 256, 320), (1, 3, 256, 320), (2, 3, 64, 64), (3, 512, 96)])
def test_stamp_label_marks_only_the_banner(shape):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.4
    stamped = stamp_label(image, SMOKE)
    assert stamped.shape == image.shape and stamped.dtype == image.dtype
    height = shape[-2]
    changed_rows = (stamped != image).flatten(0, -3).any(0).any(-1).nonzero().flatten()
    banner = changed_rows.max().item() + 1
    assert changed_rows.min().item() == 0 and banner <= height // 2
    assert torch.equal(stamped[..., banner:, :], image[..., banner:, :])  # untouched, not re-quantised
    top = stamped[..., :banner, :]
    assert (top > 0.95).float().mean() > 0.02  # white letters
    assert (top < 0.3).float().mean() > 0.3  # on a dark banner
    assert torch.equal(image, torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.4)


def test_stamp_label_bitmap_font_fallback(monkeypatch):
    """Without FreeType (or on Pillow < 10.1) the bitmap font is scaled up instead."""
    from PIL import ImageFont

    def no_sizes(size=None):
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return ImageFont.load_default_imagefont()

    monkeypatch.setattr(ImageFont, "load_default", no_sizes)
    font, scale = images_module._label_font(30)
    assert not isinstance(font, ImageFont.FreeTypeFont)
    image = torch.full((3, 400, 400), 0.6)
    stamped = stamp_label(image, SMOKE)
    banner = (stamped != image).any(0).any(-1).nonzero().max().item() + 1
    assert scale >= 2 and 10 < banner < 200
    assert (stamped[:, :banner] > 0.95).any()


def test_stamp_label_refuses_other_shapes():
    with pytest.raises(InputError, match=r"\[3, H, W\]"):
        stamp_label(torch.rand(4, 64, 64), SMOKE)


# --- save_image ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "image_format"),
    [
        (".png", "PNG"),
        (".jpg", "JPEG"),
        (".JPEG", "JPEG"),
        (".tif", "TIFF"),
        (".tiff", "TIFF"),
        (".webp", "WEBP"),
        (".bmp", "BMP"),
    ],
)
def test_save_format_from_the_final_suffix(tmp_path, suffix, image_format):
    image = as_tensor(asymmetric())
    save_image(image, tmp_path / f"out{suffix}")
    with Image.open(tmp_path / f"out{suffix}") as written:
        assert written.format == image_format and written.size == (20, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]
    if image_format in ("PNG", "TIFF", "BMP"):
        assert torch.equal(load_image(tmp_path / f"out{suffix}")[0], image)


@pytest.mark.parametrize("name", ["out.gif2", "out", "out.exr"])
def test_save_unknown_suffix(tmp_path, name):
    with pytest.raises(InputError, match="unknown image extension.*.png, .jpg"):
        save_image(torch.rand(3, 8, 8), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_batch(tmp_path):
    with pytest.raises(InputError, match=r"one image at a time"):
        save_image(torch.rand(2, 3, 8, 8), tmp_path / "out.png")


@pytest.mark.parametrize("existing", [False, True])
def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch, existing):
    target = tmp_path / "out.png"
    if existing:
        target.write_bytes(b"previous result")

    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as file:
            file.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(InputError, match=r"Could not write .*out\.png.*No space left.*disk has space"):
        save_image(torch.rand(3, 8, 8), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.png"] if existing else [])
    if existing:
        assert target.read_bytes() == b"previous result"


def test_save_other_errors_leave_nothing_behind(tmp_path, monkeypatch):
    def broken(self, fp, *args, **kwargs):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        save_image(torch.rand(3, 8, 8), tmp_path / "out.jpg")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_loads_each_get_their_own_limit(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    Image.fromarray(asymmetric(20, 20)).save(tmp_path / "a.png")

    def attempt(limit):
        try:
            return load_image(tmp_path / "a.png", max_pixels=limit)[0].shape[-1]
        except InputError:
            return "refused"

    limits = [100, 400, 0, 399] * 10
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, limits))
    assert results == ["refused" if limit in (100, 399) else 20 for limit in limits]


def test_real_bomb_refused_from_its_header_at_the_default_limit(tmp_path):
    """A 60-byte PNG that claims 100,000 x 100,000 px is refused from its header, before any decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
    )
    with pytest.raises(InputError, match=r"100000x100000 = 10,000,000,000 pixels.*limit of 1,600,000,000.*160\.0 GB"):
        load_image(tmp_path / "bomb.png")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_16_bit_rgb_png_is_read_at_full_depth_and_stretched(tmp_path):
    """PIL keeps only the high byte of 16-bit RGB PNGs (12-bit data would load almost black)."""
    import rasterio

    data = (np.random.default_rng(0).random((3, 40, 50)) * 4095).astype("uint16")
    path = tmp_path / "rgb16.png"
    with rasterio.open(path, "w", driver="PNG", width=50, height=40, count=3, dtype="uint16") as ds:
        ds.write(data)
    tensor, notes = load_image(path)
    assert tensor.shape == (1, 3, 40, 50) and float(tensor.max()) == 1.0 and float(tensor.min()) == 0.0
    assert any(n.startswith("16-bit RGB image stretched per band") for n in notes)
    lo, hi = np.percentile(data[0].astype(np.float32), [2, 98])
    expected = np.clip((data[0].astype(np.float32) - lo) / (hi - lo), 0, 1)
    assert np.allclose(tensor[0, 0].numpy(), expected, atol=1e-6)


def test_an_image_too_large_for_the_memory_left_is_refused_before_decoding(tmp_path, monkeypatch):
    from rsedit_core import images

    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    monkeypatch.setattr(images, "_available_memory", lambda: 300 * 200 * 10)
    with pytest.raises(InputError, match=r"300x200 px: loading it needs about .* GB of memory.*gdal_translate"):
        load_image(path)
    monkeypatch.setattr(images, "_available_memory", lambda: None)  # unknown: no check
    assert load_image(path)[0].shape == (1, 3, 200, 300)


def test_save_image_refuses_values_that_are_not_0_to_1(tmp_path):
    from rsedit_core.images import save_image

    image = torch.rand(3, 8, 8)
    with pytest.raises(InputError, match=r"spans .* not 0\.\.1\. It looks like 0\.\.255"):
        save_image(image * 255, tmp_path / "a.png")
    with pytest.raises(InputError, match="NaN or infinite"):
        save_image(torch.full((3, 8, 8), float("nan")), tmp_path / "b.png")
    assert list(tmp_path.iterdir()) == []
    save_image(image * 1.005, tmp_path / "c.png")  # rounding slack is fine


def test_a_png_whose_pixel_data_stops_early_is_refused(tmp_path):
    """A complete zlib stream holding 1 of 64 rows: PIL would decode it and leave 63 rows black."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    one_row = zlib.compress(b"\x00" + bytes(range(192)))
    path = tmp_path / "short.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", one_row) + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="pixel data ends after 1 of 64 rows"):
        load_image(path)
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "whole.png")  # a whole PNG passes
    assert load_image(tmp_path / "whole.png")[0].shape == (1, 3, 64, 64)
