"""Every load path on tiny random models saved in the released formats, and each bad layout."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rsedit_core.errors import ModelFormatError, ModelNotFoundError
from rsedit_core.loading import load_editor
from rsedit_core.model_folders import find_model_folders, resolve_model_dir
from rsedit_core.tiny import save_tiny_editor


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_editor_dir):
    """A release repo laid out like BiliSakura/RSEdit-UNet-text-ablation: one editor per encoder."""
    root = tmp_path_factory.mktemp("hub") / "RSEdit-UNet-text-ablation"
    shutil.copytree(tiny_editor_dir, root / "DGTRS-CLIP-ViT-L-14")
    shutil.copytree(tiny_editor_dir, root / "OpenAI-CLIP-ViT-L-14")
    return root


def test_loads_editor_folder_with_248_positions(tiny_editor_dir):
    model = load_editor(tiny_editor_dir)
    assert model.backbone.name == "unet" and model.text_max_length == 248
    assert model.denoiser.config.in_channels == 8 and model.vae_scale_factor == 8
    assert model.scheduler_config["_class_name"] == "EulerDiscreteScheduler"


def test_component_subfolder_path_resolves_to_editor(tiny_editor_dir):
    assert resolve_model_dir(tiny_editor_dir / "unet") == tiny_editor_dir


def test_release_root_with_several_editors_asks_which(release):
    with pytest.raises(ModelNotFoundError, match="several editors.*DGTRS-CLIP-ViT-L-14"):
        resolve_model_dir(release)
    assert resolve_model_dir(release, subfolder="DGTRS-CLIP-ViT-L-14") == release / "DGTRS-CLIP-ViT-L-14"


def test_comfyui_model_folder_entries(release):
    names = find_model_folders([release.parent])
    assert names == ["RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14", "RSEdit-UNet-text-ablation/OpenAI-CLIP-ViT-L-14"]
    path = resolve_model_dir(names[0], search_dirs=[release.parent])
    assert path == release / "DGTRS-CLIP-ViT-L-14"


def test_hub_id_uses_snapshot_download(monkeypatch, release):
    import huggingface_hub

    calls = {}

    def fake_snapshot_download(repo_id, allow_patterns=None, ignore_patterns=None, **kwargs):
        calls.update(repo_id=repo_id, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
        return str(release)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    path = resolve_model_dir("BiliSakura/RSEdit-UNet-text-ablation", subfolder="DGTRS-CLIP-ViT-L-14")
    assert path == release / "DGTRS-CLIP-ViT-L-14"
    assert calls["repo_id"] == "BiliSakura/RSEdit-UNet-text-ablation"
    # Only the chosen editor's configs, tokenizer files and safetensors; never the sibling editors,
    # .ckpt/.bin/fp16/non-EMA copies.
    files = [
        "DGTRS-CLIP-ViT-L-14/model_index.json",
        "DGTRS-CLIP-ViT-L-14/unet/config.json",
        "DGTRS-CLIP-ViT-L-14/unet/diffusion_pytorch_model.safetensors",
        "DGTRS-CLIP-ViT-L-14/tokenizer/vocab.json",
        "DGTRS-CLIP-ViT-L-14/tokenizer/merges.txt",
        "DGTRS-CLIP-ViT-L-14/unet/diffusion_pytorch_model.bin",
        "DGTRS-CLIP-ViT-L-14/unet/diffusion_pytorch_model.fp16.safetensors",
        "OpenAI-CLIP-ViT-L-14/unet/diffusion_pytorch_model.safetensors",
        "v1-5-pruned.ckpt",
    ]
    from huggingface_hub.utils import filter_repo_objects

    kept = list(
        filter_repo_objects(files, allow_patterns=calls["allow_patterns"], ignore_patterns=calls["ignore_patterns"])
    )
    assert kept == files[:5]


def test_hub_offline_error_says_how_to_fix(monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("not in cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        resolve_model_dir("someone/missing-model")


def test_missing_path_says_where_we_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_dir("my-editor", search_dirs=[tmp_path / "models"])
    message = str(info.value)
    assert "Looked in: my-editor, " + str(tmp_path / "models" / "my-editor") in message
    assert "unet/" in message and "models/rsedit" in message


def test_text_to_image_unet_is_not_an_editor(tmp_path):
    folder = save_tiny_editor(tmp_path / "t2i", in_channels=4)
    with pytest.raises(ModelFormatError, match="text-to-image model.*8 input channels"):
        load_editor(folder)


def test_folder_without_unet(tmp_path):
    (tmp_path / "vae").mkdir()
    with pytest.raises(ModelFormatError, match="no unet/"):
        load_editor(tmp_path)


def test_missing_component_folder(tmp_path, tiny_editor_dir):
    folder = shutil.copytree(tiny_editor_dir, tmp_path / "m")
    shutil.rmtree(folder / "vae")
    with pytest.raises(ModelFormatError, match="no vae/ folder"):
        load_editor(folder)


def test_truncated_safetensors_is_named(tmp_path, tiny_editor_dir):
    folder = shutil.copytree(tiny_editor_dir, tmp_path / "m")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFormatError, match="corrupt or truncated.*download it again") as info:
        load_editor(folder)
    assert str(weights) in str(info.value)


def test_plain_instructpix2pix_with_77_tokens(tmp_path):
    model = load_editor(save_tiny_editor(tmp_path / "ip2p", max_positions=77))
    assert model.text_max_length == 77


@pytest.mark.parametrize(("name", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_load(tiny_editor_dir, name, dtype):
    model = load_editor(tiny_editor_dir, dtype=name)
    assert {p.dtype for p in model.denoiser.parameters()} == {dtype}
    assert model.text_encoder.dtype == dtype


def test_pixart_alpha_hub_layout_with_legacy_class_name(tmp_path, tiny_dit_dir):
    """The hub's PixArt-alpha folders were saved as Transformer2DModel with adaLN-single."""
    folder = tmp_path / "PixArt-XL-2-512x512"
    shutil.copytree(tiny_dit_dir, folder)
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = "Transformer2DModel"
    config_path.write_text(json.dumps(config))
    model = load_editor(folder)
    assert model.backbone.name == "dit" and type(model.denoiser).__name__ == "PixArtTransformer2DModel"
    config["norm_type"] = "ada_norm_zero"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="holds a Transformer2DModel"):
        load_editor(folder)


def test_training_checkpoints_are_not_listed_as_editors(tmp_path, tiny_editor_dir):
    run = tmp_path / "run"
    shutil.copytree(tiny_editor_dir, run / "editor")
    (run / "checkpoint-500" / "unet").mkdir(parents=True)
    shutil.copy(tiny_editor_dir / "unet" / "config.json", run / "checkpoint-500" / "unet")
    (run / "checkpoint-500" / "training_state.json").write_text("{}")
    assert find_model_folders([tmp_path]) == ["run/editor"]
    assert resolve_model_dir(run) == run / "editor"
