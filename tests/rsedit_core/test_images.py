"""Image modes and the size policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rsedit_core.errors import InputError
from rsedit_core.images import fit_to_multiple, load_image, pil_to_tensor, stack_sources, to_rgb


def test_rgba_alpha_flattened_on_black():
    array = np.zeros((4, 4, 4), dtype=np.uint8)
    array[..., :3] = 200
    array[..., 3] = 255
    array[0, 0, 3] = 0
    tensor, notes = pil_to_tensor(Image.fromarray(array, "RGBA"))
    assert tensor.shape == (1, 3, 4, 4)
    assert tensor[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]
    assert tensor[0, 0, 1, 1].item() == pytest.approx(200 / 255)
    assert "alpha" in notes[0] and "6.2%" in notes[0]


def test_grayscale_repeated():
    tensor, notes = pil_to_tensor(Image.fromarray(np.full((3, 5), 51, dtype=np.uint8), "L"))
    assert tensor.shape == (1, 3, 3, 5) and torch.allclose(tensor, torch.full_like(tensor, 0.2))
    assert notes == ["grayscale image repeated to RGB"]


def test_16bit_stretched_between_percentiles(tmp_path):
    values = np.linspace(0, 4000, 100 * 100).reshape(100, 100).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "pan16.png")
    tensor, notes = load_image(tmp_path / "pan16.png")
    assert tensor.shape == (1, 3, 100, 100)
    assert tensor.min().item() == 0.0 and tensor.max().item() == 1.0
    assert tensor[0, 0, 50, 50].item() == pytest.approx(0.5, abs=0.01)
    assert "stretched" in notes[0]


def test_palette_converted(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    tensor, notes = pil_to_tensor(image)
    assert tensor[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0] and tensor[0, :, 0, 1].tolist() == [0.0, 0.0, 1.0]
    assert "palette" in notes[0]


def test_unreadable_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="Cannot read"):
        load_image(tmp_path / "x.png")


def test_tensor_channels():
    assert to_rgb(torch.ones(1, 1, 8, 8))[0].shape == (1, 3, 8, 8)
    rgb, _ = to_rgb(torch.cat([torch.ones(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)], dim=1))
    assert rgb.abs().sum() == 0
    with pytest.raises(InputError, match="1, 3 or 4 channels"):
        to_rgb(torch.ones(1, 2, 8, 8))


def test_too_small_refused():
    with pytest.raises(InputError, match="at least 64 px.*Upscale"):
        fit_to_multiple(torch.rand(1, 3, 48, 128))


@pytest.mark.parametrize(("policy", "size"), [("pad", (72, 96)), ("crop", (64, 88)), ("resize", (72, 88))])
def test_policies_reach_multiple_of_8(policy, size):
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    fitted, geometry = fit_to_multiple(images, policy)
    assert tuple(fitted.shape[-2:]) == size
    restored = geometry.restore(fitted)
    if policy == "pad":
        assert torch.equal(restored, images)
    if policy == "crop":
        assert torch.equal(fitted, images[..., 3:67, 1:89])


def test_unknown_policy():
    with pytest.raises(InputError, match="pad, resize, crop"):
        fit_to_multiple(torch.rand(1, 3, 64, 64), "stretch")


def test_sources_of_different_sizes():
    with pytest.raises(InputError, match="Source 2 is 72x64 but source 1 is 64x64"):
        stack_sources([torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 72)])
