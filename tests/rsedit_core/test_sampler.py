"""The editing loop: parity with diffusers' InstructPix2Pix pipeline, guidance, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from rsedit_core.conditioning import encode_source
from rsedit_core.edit import edit_images
from rsedit_core.errors import InputError, OutOfMemoryError
from rsedit_core.guidance import dual_cfg, guidance_active
from rsedit_core.schedulers import SCHEDULER_NAMES, make_scheduler
from rsedit_core.settings import EditSettings

PROMPT = "flood the coastal area; buildings near the shore collapse, roads inland stay unchanged"


@pytest.fixture(scope="module")
def reference_pipe(tiny_editor_dir):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        tiny_editor_dir, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.folder_scheduler_config = dict(pipe.scheduler.config)
    return pipe


def _reference(pipe, scene, scheduler, steps, text_cfg, image_cfg, seed, variations=1):
    pipe.scheduler = make_scheduler(scheduler, pipe.folder_scheduler_config)
    image = Image.fromarray((scene[0].numpy() * 255).round().astype(np.uint8))
    return pipe(
        PROMPT,
        image=image,
        num_inference_steps=steps,
        guidance_scale=text_cfg,
        image_guidance_scale=image_cfg,
        num_images_per_prompt=variations,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
    ).images


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_parity_with_diffusers_pipeline(tiny_editor, reference_pipe, scene, scheduler):
    settings = EditSettings(steps=4, text_cfg=7.5, image_cfg=1.5, seed=42, scheduler=scheduler)
    ours = edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=settings).images
    ref = _reference(reference_pipe, scene, scheduler, 4, 7.5, 1.5, 42)
    assert ours.shape == ref.shape == (1, 3, 64, 96)
    assert (ours - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize(("text_cfg", "image_cfg", "variations"), [(1.0, 1.5, 2), (7.5, 0.5, 1), (3.0, 1.0, 3)])
def test_parity_guidance_off_and_variations(tiny_editor, reference_pipe, scene, text_cfg, image_cfg, variations):
    settings = EditSettings(steps=3, text_cfg=text_cfg, image_cfg=image_cfg, seed=7, num_variations=variations)
    ours = edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=settings).images
    ref = _reference(reference_pipe, scene, "default", 3, text_cfg, image_cfg, 7, variations)
    assert ours.shape[0] == variations
    assert (ours - ref).abs().max().item() < 1e-4


def test_dual_cfg_formula():
    t, i, u = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([0.5])
    # u + s_T (t - i) + s_I (i - u) = 0.5 + 7.5 * 1 + 1.5 * 1.5
    assert dual_cfg(t, i, u, 7.5, 1.5).item() == pytest.approx(10.25)
    assert guidance_active(7.5, 1.0) and not guidance_active(1.0, 1.5) and not guidance_active(7.5, 0.99)


def test_source_latent_is_unscaled_posterior_mode(tiny_editor, scene):
    source = encode_source(tiny_editor, scene.movedim(-1, 1))
    with torch.no_grad():
        expected = tiny_editor.vae.encode(scene.movedim(-1, 1) * 2 - 1).latent_dist.mode()
    assert torch.allclose(source.latents, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (EditSettings(steps=0), "steps must be"),
        (EditSettings(text_cfg=math.nan), "finite"),
        (EditSettings(image_cfg=-1.0), ">= 0"),
        (EditSettings(seed=2**64), "seed"),
        (EditSettings(seed=-1), "seed"),
        (EditSettings(num_variations=0), "num_variations"),
        (EditSettings(scheduler="lms_karras"), "Unknown scheduler"),
    ],
)
def test_bad_settings_are_refused(tiny_editor, scene, settings, message):
    with pytest.raises(InputError, match=message):
        edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=settings)


def test_cancel_midway_leaves_model_usable(tiny_editor, scene):
    settings = EditSettings(steps=4, seed=3)
    fresh = edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=settings).images
    seen = []

    def cancel(step, total, latents):
        seen.append(step)
        if step == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=settings, callback=cancel)
    assert seen == [1, 2]
    again = edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=settings).images
    assert torch.equal(fresh, again)


def test_out_of_memory_is_reported_with_a_fix(tiny_editor, scene, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(tiny_editor.denoiser, "forward", boom)
    with pytest.raises(OutOfMemoryError, match="smaller image.*fp16"):
        edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=EditSettings(steps=1))


def test_pad_policy_returns_original_size_and_batches_group_by_source(tiny_editor):
    generator = torch.Generator().manual_seed(1)
    sources = torch.rand(2, 3, 70, 90, generator=generator)
    result = edit_images(tiny_editor, sources, PROMPT, settings=EditSettings(steps=2, num_variations=2))
    assert result.images.shape == (4, 3, 70, 90)
    assert result.latents.shape == (4, 4, 9, 12)
    assert not torch.allclose(result.images[0], result.images[1])
    assert any("70" in note and "pad" in note for note in result.notes)


def test_seed_reproducible_and_seed_sensitive(tiny_editor, scene):
    def run(seed):
        return edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=EditSettings(steps=2, seed=seed))

    assert torch.equal(run(5).images, run(5).images)
    assert not torch.allclose(run(5).images, run(6).images)
    # The largest seed ComfyUI offers is accepted.
    assert run(2**64 - 1).images.shape == (1, 3, 64, 96)
