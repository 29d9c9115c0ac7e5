"""The PixArt DiT backbone: loading, T5 text, token concatenation, parity with the reference loop."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import CUSTOM_CODE_MARKER
from PIL import Image
from reference_loops import load_reference_pipeline, reference_dit_edit

from rsedit_core.conditioning import encode_source
from rsedit_core.edit import edit_images
from rsedit_core.errors import InputError, MissingDependencyError, ModelFormatError
from rsedit_core.loading import load_editor
from rsedit_core.schedulers import SCHEDULER_NAMES, make_scheduler
from rsedit_core.settings import EditSettings
from rsedit_core.text import count_tokens, encode_text
from rsedit_core.tiny import tiny_pixart_config

PROMPT = "Flood the coastal area; the pier is submerged, roads inland stay dry"


@pytest.fixture(scope="module")
def reference(tiny_dit_dir):
    return load_reference_pipeline(tiny_dit_dir)


def _pil(height=64, width=96, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _tensor(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def test_loads_from_configs_without_running_shipped_code(tiny_dit, tiny_dit_dir):
    assert tiny_dit.backbone.name == "dit" and type(tiny_dit.denoiser).__name__ == "PixArtTransformer2DModel"
    assert type(tiny_dit.text_encoder).__name__ == "T5EncoderModel" and tiny_dit.text_max_length == 120
    assert tiny_dit.scheduler_config["_class_name"] == "DPMSolverMultistepScheduler"
    assert not (tiny_dit_dir / CUSTOM_CODE_MARKER).exists()


def test_t5_in_half_precision_on_request(tiny_dit_dir):
    model = load_editor(tiny_dit_dir, text_encoder_dtype="bf16")
    assert model.text_encoder.dtype == torch.bfloat16 and model.denoiser.dtype == torch.float32


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_parity_with_reference_loop(tiny_dit, reference, scheduler):
    image = _pil()
    settings = EditSettings(steps=4, text_cfg=4.5, image_cfg=1.5, seed=42, scheduler=scheduler)
    ours = edit_images(tiny_dit, _tensor(image), PROMPT, settings=settings).images
    ref = reference_dit_edit(
        reference,
        image,
        PROMPT,
        steps=4,
        text_cfg=4.5,
        image_cfg=1.5,
        seed=42,
        scheduler=make_scheduler(scheduler, tiny_dit.scheduler_config),
    )
    assert ours.shape == ref.shape == (1, 3, 64, 96)
    assert (ours - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize(("text_cfg", "image_cfg"), [(1.0, 1.5), (4.5, 0.5)])
def test_guidance_below_one_is_plain_conditional_prediction(tiny_dit, reference, text_cfg, image_cfg):
    image = _pil(seed=1)
    settings = EditSettings(steps=3, text_cfg=text_cfg, image_cfg=image_cfg, seed=3)
    ours = edit_images(tiny_dit, _tensor(image), PROMPT, settings=settings)
    ref = reference_dit_edit(reference, image, PROMPT, steps=3, text_cfg=text_cfg, image_cfg=image_cfg, seed=3)
    assert (ours.images - ref).abs().max().item() < 1e-4
    assert any("guidance off" in note for note in ours.notes)


def test_resize_policy_matches_reference_lanczos_resize(tiny_dit, reference):
    image = _pil(70, 90, seed=2)
    settings = EditSettings(steps=2, text_cfg=4.5, image_cfg=1.5, seed=5)
    ours = edit_images(tiny_dit, _tensor(image), PROMPT, size_policy="resize", settings=settings)
    ref = reference_dit_edit(reference, image, PROMPT, steps=2, text_cfg=4.5, image_cfg=1.5, seed=5, size=(64, 96))
    assert ours.images.shape == (1, 3, 64, 96)
    assert (ours.images - ref).abs().max().item() < 1e-4
    assert "90x70 -> 96x64 (resize" in " ".join(ours.notes)


def test_default_text_scale_is_4_5_for_dit(tiny_dit, reference):
    image = _pil(seed=4)
    ours = edit_images(tiny_dit, _tensor(image), PROMPT, settings=EditSettings(steps=2, seed=9))
    ref = reference_dit_edit(reference, image, PROMPT, steps=2, text_cfg=4.5, image_cfg=1.5, seed=9)
    assert (ours.images - ref).abs().max().item() < 1e-4


def test_source_latent_is_scaled_mode_and_sizes_snap_to_16(tiny_dit):
    images = torch.rand(1, 3, 72, 88, generator=torch.Generator().manual_seed(0))
    source = encode_source(tiny_dit, images, "pad")
    assert source.latents.shape == (1, 4, 10, 12) and source.backbone.name == "dit"
    with torch.no_grad():
        padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode="reflect") * 2 - 1
        expected = tiny_dit.vae.encode(padded).latent_dist.mode() * tiny_dit.vae.config.scaling_factor
    assert torch.allclose(source.latents, expected, atol=1e-5)
    assert "88x72 -> 96x80 (pad" in source.notes[0]


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def test_canvas_position_table_squeezes_width_into_pretrained_range(tiny_dit):
    """For a (h, 2w) canvas the patch grid is h/2 x w; rows step 1 and columns step 0.5 in units of
    the pretrained grid (base size = sample_size / patch), as diffusers' PatchEmbed computes it."""
    seen = {}
    handle = tiny_dit.denoiser.pos_embed.register_forward_hook(
        lambda module, args, output: seen.update(out=output, tokens=module.proj(args[0]).flatten(2).transpose(1, 2))
    )
    try:
        edit_images(tiny_dit, torch.rand(1, 3, 64, 64), "x", settings=EditSettings(steps=1))
    finally:
        handle.remove()
    base = tiny_pixart_config()["sample_size"] // 2
    rows, cols = 4, 8
    grid_h = np.arange(rows) / (rows / base)
    grid_w = np.arange(cols) / (cols / base)
    assert np.allclose(np.diff(grid_w), 0.5) and np.allclose(np.diff(grid_h), 1.0)
    w, h = np.meshgrid(grid_w, grid_h)
    dim = tiny_dit.denoiser.config.num_attention_heads * tiny_dit.denoiser.config.attention_head_dim
    table = np.concatenate([_sincos_1d(dim // 2, w), _sincos_1d(dim // 2, h)], axis=1)
    position = (seen["out"] - seen["tokens"])[0]
    assert np.allclose(position.numpy(), table, atol=1e-5)


def test_t5_tokens_reported_and_truncated_to_120(tiny_dit):
    long = " ".join(["flooded buildings near the shoreline collapse"] * 40)
    report = count_tokens(tiny_dit, long)
    assert report.capacity == 119 and report.dropped == report.prompt_tokens - 119 > 0
    text = encode_text(tiny_dit, long)
    assert text.mask.shape == (1, 120) and int(text.mask.sum()) == 120
    short = encode_text(tiny_dit, "Flood THE area  ")
    ids = tiny_dit.tokenizer("flood the area", add_special_tokens=True).input_ids
    assert int(short.mask.sum()) == len(ids)
    assert int(short.negative_mask.sum()) == 1
    assert "tokens" in short.report.summary() and short.report.capacity == 119


def test_unet_conditioning_into_dit_sampler_is_refused(tiny_dit, tiny_editor):
    text = encode_text(tiny_editor, PROMPT)
    source = encode_source(tiny_dit, torch.rand(1, 3, 64, 64))
    from rsedit_core.edit import run_edit

    with pytest.raises(InputError, match="encoded for a U-Net editor but the sampler has a PixArt DiT editor"):
        run_edit(tiny_dit, text, source, EditSettings(steps=1))


def _transformer_config(folder, **changes):
    path = folder / "transformer" / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_1024_pixart_is_refused_with_reason(tmp_path, tiny_dit_dir):
    folder = shutil.copytree(tiny_dit_dir, tmp_path / "m")
    _transformer_config(folder, sample_size=128, use_additional_conditions=True)
    with pytest.raises(ModelFormatError, match="1024-px PixArt.*refused"):
        load_editor(folder)


def test_pixart_sigma_is_refused_with_reason(tmp_path, tiny_dit_dir):
    folder = shutil.copytree(tiny_dit_dir, tmp_path / "m")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "PixArtSigmaPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFormatError, match="PixArt-Sigma"):
        load_editor(folder)


def test_other_transformer_is_refused(tmp_path, tiny_dit_dir):
    folder = shutil.copytree(tiny_dit_dir, tmp_path / "m")
    _transformer_config(folder, _class_name="SD3Transformer2DModel")
    with pytest.raises(ModelFormatError, match="holds a SD3Transformer2DModel"):
        load_editor(folder)


def test_missing_t5_tokenizer_files(tmp_path, tiny_dit_dir):
    folder = shutil.copytree(tiny_dit_dir, tmp_path / "m")
    (folder / "tokenizer" / "spiece.model").unlink()
    with pytest.raises(ModelFormatError, match="no T5 tokenizer files"):
        load_editor(folder)


@pytest.mark.parametrize(
    ("module", "named"), [("sentencepiece", "needs sentencepiece,"), ("google", "needs protobuf,")]
)
def test_missing_tokenizer_packages(monkeypatch, tiny_dit_dir, module, named):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name.split(".")[0] == module:
            if "." in name:
                raise ModuleNotFoundError(f"No module named {module!r}")
            return None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingDependencyError, match=f"{named}.*pip install sentencepiece protobuf"):
        load_editor(tiny_dit_dir)


def test_text_encoder_swap_refused_for_dit(tiny_dit_dir, tmp_path):
    with pytest.raises(InputError, match="U-Net editors only"):
        load_editor(tiny_dit_dir, text_encoder=tmp_path / "x.pt")


def test_nan_guidance_refused(tiny_dit):
    with pytest.raises(InputError, match="finite"):
        edit_images(tiny_dit, torch.rand(1, 3, 64, 64), PROMPT, settings=EditSettings(text_cfg=math.inf))


def test_variations_and_batches_group_by_source(tiny_dit):
    sources = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    result = edit_images(tiny_dit, sources, PROMPT, settings=EditSettings(steps=2, num_variations=2))
    assert result.images.shape == (4, 3, 64, 80) and result.latents.shape == (4, 4, 8, 10)
    assert not torch.allclose(result.images[0], result.images[1])
    # Outputs are grouped by source: the first two are source 0's variations (the CPU generator
    # draws the batch's noise in order, so a run of source 0 alone reproduces them).
    single = edit_images(tiny_dit, sources[:1], PROMPT, settings=EditSettings(steps=2, num_variations=2))
    assert (single.images - result.images[:2]).abs().max().item() < 1e-5
