"""Bad input to the edit path (CLI, Python API, model folders): a clear answer, before any model
loads, and nothing lost."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from rsedit_core.cli import main
from rsedit_core.edit import edit_images
from rsedit_core.errors import InputError, ModelFormatError, ModelNotFoundError, OutOfMemoryError
from rsedit_core.model_folders import find_model_folders, resolve_model_dir
from rsedit_core.outputs import check_output_path
from rsedit_core.settings import EditSettings

PROMPT = "flood the coastal blocks, roads inland stay dry"


@pytest.fixture
def scene_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 72, 3), dtype=np.uint8)
    path = tmp_path / "pre.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model is loaded: the checks must come first."""
    import rsedit_core.loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(rsedit_core.loading, "load_editor", refuse)


def _edit(model, image, out, *extra):
    return main(
        ["edit", "--model", str(model), "--image", *map(str, image), "--prompt", "x", "--out", str(out), *extra]
    )


# --- output paths -------------------------------------------------------------------------------


def test_out_equal_to_the_source_is_refused_and_the_source_kept(scene_file, no_model_load, capsys, tmp_path):
    before = scene_file.read_bytes()
    assert _edit(tmp_path / "any-model", [scene_file], scene_file) == 1
    assert "never overwrites a source" in capsys.readouterr().err
    assert scene_file.read_bytes() == before


def test_out_equal_to_the_source_through_another_spelling(scene_file, no_model_load, capsys, monkeypatch):
    monkeypatch.chdir(scene_file.parent)
    link = scene_file.with_name("same.png")
    os.link(scene_file, link)  # a hard link is the same file under another name
    assert _edit("m", [scene_file], "./same.png") == 1
    assert "never overwrites a source" in capsys.readouterr().err


def test_a_generated_variation_name_that_is_an_input_is_refused(scene_file, no_model_load, capsys):
    other = scene_file.with_name("post_1_0.png")
    shutil.copy(scene_file, other)
    assert _edit("m", [scene_file, other], scene_file.with_name("post.png")) == 1
    assert "post_1_0.png is the input file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"),
    [("post", "has no file extension"), ("post.xyz", "unknown extension '.xyz'"), ("folder", "existing folder")],
)
def test_out_names_that_cannot_be_written(scene_file, no_model_load, capsys, tmp_path, name, message):
    (tmp_path / "folder.png").mkdir()
    out = tmp_path / ("folder.png" if name == "folder" else name)
    assert _edit("m", [scene_file], out) == 1
    assert message in capsys.readouterr().err


def test_out_whose_parent_is_a_file(scene_file, no_model_load, capsys):
    assert _edit("m", [scene_file], scene_file / "post.png") == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_out_in_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # Tests run as root, for whom chmod does not deny; ask the check as an unprivileged user would be answered.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked) else real_access(path, mode))
    with pytest.raises(InputError, match="not writable"):
        check_output_path(locked / "new" / "post.png")


# --- devices, settings, images ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "message"),
    [("gpu", "Unknown device 'gpu'"), ("cuda:x", "Unknown device"), ("cuda", "CPU-only build|no CUDA GPU")],
)
def test_devices_that_do_not_exist(scene_file, no_model_load, capsys, tmp_path, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _edit("m", [scene_file], tmp_path / "o.png", "--device", device) == 1
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err
    assert "--device cpu" in err or "use auto" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--text-cfg", "nan"], "finite number"),
        (["--image-cfg", "-1"], "must be >= 0"),
        (["--steps", "0"], "steps must be an integer >= 1"),
        (["--num-images", "0"], "num_variations must be an integer >= 1"),
    ],
)
def test_settings_refused_before_loading(scene_file, no_model_load, capsys, tmp_path, extra, message):
    assert _edit("m", [scene_file], tmp_path / "o.png", *extra) == 1
    assert message in capsys.readouterr().err


def test_a_seed_that_is_not_a_number_is_a_usage_error(scene_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _edit("m", [scene_file], tmp_path / "o.png", "--seed", "abc")
    assert exit_info.value.code == 2 and "seed must be an integer" in capsys.readouterr().err


def test_a_non_image_is_refused_before_loading(tmp_path, no_model_load, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert _edit("m", [text], tmp_path / "o.png") == 1
    err = capsys.readouterr().err
    assert "rsedit: error:" in err and "notes.png" in err and "Traceback" not in err


def test_steps_beyond_the_training_timesteps(tiny_editor, capsys, tiny_editor_dir, scene_file, tmp_path):
    with pytest.raises(InputError, match="more than the 1000 timesteps"):
        edit_images(tiny_editor, torch.rand(1, 3, 64, 64), PROMPT, settings=EditSettings(steps=1001))
    assert _edit(tiny_editor_dir, [scene_file], tmp_path / "o.png", "--steps", "1500") == 1
    assert "more than the 1000 timesteps" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


# --- the Python API's tensors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 64, 64), "batch axis is missing.*images\\[None\\]"),
        (torch.rand(1, 64, 64, 3), "channels-last.*movedim"),
        (torch.rand(1, 3, 64, 64) * 255, "look like 0..255: divide by 255"),
        (torch.rand(1, 3, 64, 64) * 2 - 1, "look like -1..1"),
        (torch.full((1, 3, 64, 64), math.nan), "NaN or infinite"),
        (torch.full((1, 3, 64, 64), math.inf), "NaN or infinite"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "must be floats"),
        (torch.zeros(0, 3, 64, 64), "empty batch"),
        (np.zeros((1, 3, 64, 64), dtype=np.float32), "must be a torch.Tensor"),
    ],
)
def test_api_images_that_are_not_0_1_batches(tiny_editor, images, message):
    with pytest.raises(InputError, match=message):
        edit_images(tiny_editor, images, PROMPT, settings=EditSettings(steps=1))


def test_api_prompt_that_is_not_text(tiny_editor):
    with pytest.raises(InputError, match="prompt must be a string; got int"):
        edit_images(tiny_editor, torch.rand(1, 3, 64, 64), 42, settings=EditSettings(steps=1))


def test_api_unknown_scheduler_and_size_policy(tiny_editor):
    image = torch.rand(1, 3, 64, 64)
    with pytest.raises(InputError, match="Unknown scheduler 'fast'"):
        edit_images(tiny_editor, image, PROMPT, settings=EditSettings(steps=1, scheduler="fast"))
    with pytest.raises(InputError, match="Unknown size policy 'stretch'"):
        edit_images(tiny_editor, image, PROMPT, size_policy="stretch", settings=EditSettings(steps=1))


def test_cpu_out_of_memory_gets_the_same_advice(tiny_editor, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(tiny_editor.denoiser, "forward", boom)
    with pytest.raises(OutOfMemoryError, match="Out of memory while sampling.*smaller image.*fp16"):
        edit_images(tiny_editor, torch.rand(1, 3, 64, 64), PROMPT, settings=EditSettings(steps=1))


def test_other_runtime_errors_are_not_called_out_of_memory(tiny_editor, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(tiny_editor.denoiser, "forward", boom)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        edit_images(tiny_editor, torch.rand(1, 3, 64, 64), PROMPT, settings=EditSettings(steps=1))


def test_a_failed_edit_leaves_no_output(tiny_editor_dir, scene_file, tmp_path, monkeypatch, capsys):
    import rsedit_core.denoise

    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(rsedit_core.denoise, "dual_cfg", boom)
    assert _edit(tiny_editor_dir, [scene_file], tmp_path / "o.png", "--steps", "1") == 1
    assert "Out of memory while sampling" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["pre.png"]


# --- model folders ------------------------------------------------------------------------------


def test_a_symlink_loop_in_the_models_folder_ends(tmp_path, tiny_editor_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_editor_dir, models / "editor")
    (models / "loop").mkdir()
    (models / "loop" / "back").symlink_to(models, target_is_directory=True)
    (models / "self").symlink_to("self")  # a link to itself
    assert find_model_folders([models]) == ["editor"]
    with pytest.raises(ModelNotFoundError, match="self is a symlink loop"):
        resolve_model_dir(models / "self")
    assert resolve_model_dir(models / "loop", search_dirs=[]) == models / "loop" / "back" / "editor"


def test_a_relative_path_with_a_typo_is_not_sent_to_the_hub(tmp_path, tiny_editor_dir, monkeypatch):
    import rsedit_core.model_folders

    shutil.copytree(tiny_editor_dir, tmp_path / "models" / "RSEdit-UNet")
    monkeypatch.chdir(tmp_path)

    def no_hub(*args, **kwargs):
        raise AssertionError("a local typo reached the hub")

    monkeypatch.setattr(rsedit_core.model_folders, "_download", no_hub)
    with pytest.raises(ModelNotFoundError, match="models/RSEdit-UNte does not exist; did you mean models/RSEdit-UNet"):
        resolve_model_dir("models/RSEdit-UNte")


def test_a_folder_with_only_the_denoiser_weights_names_what_is_missing(tmp_path, tiny_editor_dir):
    """What ComfyUI's one-file model download leaves under models/rsedit."""
    folder = tmp_path / "rsedit" / "RSEdit-UNet-text-ablation" / "DGTRS-CLIP-ViT-L-14"
    (folder / "unet").mkdir(parents=True)
    shutil.copy(tiny_editor_dir / "unet" / "diffusion_pytorch_model.safetensors", folder / "unet")
    assert find_model_folders([tmp_path / "rsedit"]) == ["RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14"]
    with pytest.raises(ModelFormatError) as info:
        resolve_model_dir("RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14", search_dirs=[tmp_path / "rsedit"])
    message = str(info.value)
    assert "holds only the denoiser's weights (unet/diffusion_pytorch_model.safetensors)" in message
    assert "unet/config.json, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json" in message
    target = tmp_path / "rsedit" / "RSEdit-UNet-text-ablation"
    expected = (
        f'hf download BiliSakura/RSEdit-UNet-text-ablation --include "DGTRS-CLIP-ViT-L-14/*" --local-dir {target}'
    )
    assert expected in message


def test_a_folder_missing_a_component(tmp_path, tiny_editor_dir):
    shutil.copytree(tiny_editor_dir, tmp_path / "editor")
    shutil.rmtree(tmp_path / "editor" / "vae")
    with pytest.raises(ModelFormatError, match="has no vae/"):
        resolve_model_dir(tmp_path / "editor")


# --- defaults by backbone -----------------------------------------------------------------------


def test_cli_on_a_dit_uses_its_own_text_scale(tiny_dit_dir, scene_file, tmp_path):
    outs = {}
    for name, extra in (("auto", []), ("4.5", ["--text-cfg", "4.5"]), ("7.5", ["--text-cfg", "7.5"])):
        out = tmp_path / f"{name}.png"
        assert _edit(tiny_dit_dir, [scene_file], out, "--steps", "2", *extra) == 0
        outs[name] = np.asarray(Image.open(out))
    assert np.array_equal(outs["auto"], outs["4.5"])
    assert not np.array_equal(outs["auto"], outs["7.5"])


def test_api_text_scale_defaults_follow_the_backbone(tiny_editor, tiny_dit):
    assert EditSettings().for_model(tiny_editor).text_cfg == 7.5
    assert EditSettings().for_model(tiny_dit).text_cfg == 4.5
    assert EditSettings(text_cfg=2.0).for_model(tiny_dit).text_cfg == 2.0


def test_a_source_below_the_minimum_and_a_folder_as_out_are_refused_before_loading(tmp_path, capsys):
    from PIL import Image

    from rsedit_core.cli import main

    Image.new("RGB", (40, 90)).save(tmp_path / "small.png")
    base = ["edit", "--model", str(tmp_path / "no-such-model"), "--prompt", "x"]
    assert main([*base, "--image", str(tmp_path / "small.png"), "--out", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert "The source is 40x90 px; RSEdit needs at least 64 px" in err and "no-such-model" not in err
    (tmp_path / "folder").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    assert main([*base, "--image", str(tmp_path / "ok.png"), "--out", str(tmp_path / "folder")]) == 1
    assert "folder is an existing folder; give a file name inside it" in capsys.readouterr().err
