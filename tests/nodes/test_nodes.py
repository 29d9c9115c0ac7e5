"""The V3 node layer against the ComfyUI test double, on a tiny editor in models/rsedit."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import torch
from comfy_double import reset_comfy_double
from conftest import edit_graph

PROMPT = "flood the coastal area, keep the roads"


UNET = "RSEdit-UNet-tiny/DGTRS-CLIP-ViT-L-14"
DIT = "RSEdit-DiT-tiny"


@pytest.fixture
def comfy(pack, tmp_path, tiny_editor_dir, tiny_dit_dir):
    """A fresh double with models_dir in tmp and the tiny editors under models/rsedit/."""
    import folder_paths

    reset_comfy_double()
    folder_paths.models_dir = str(tmp_path / "models")
    shutil.copytree(tiny_editor_dir, tmp_path / "models" / "rsedit" / UNET)
    shutil.copytree(tiny_dit_dir, tmp_path / "models" / "rsedit" / DIT)
    extension = asyncio.run(pack.comfy_entrypoint())
    nodes = {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}
    return nodes


def graph(steps: int = 3, seed: int = 42, model: str = UNET, text_cfg: float = 7.5) -> dict:
    image = {"class_type": "ImageInput", "inputs": {}}
    return edit_graph(model, image, PROMPT, steps=steps, seed=seed, text_cfg=text_cfg)


def _image_node(image):
    from comfy_api.latest import io

    class ImageInput(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="ImageInput", inputs=[], outputs=[io.Image.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput(image)

    return ImageInput


def run(comfy, scene, **kwargs):
    from comfy_double.runner import run_api_graph

    return run_api_graph(graph(**kwargs), [*comfy.values(), _image_node(scene)], targets=["5"])


def test_package_exposes_v3_entrypoint_only(pack):
    assert asyncio.iscoroutinefunction(pack.comfy_entrypoint)
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")


def test_schemas_ids_categories_tooltips(comfy):
    assert set(comfy) == {
        "RSEditLoader",
        "RSEditTextEncode",
        "RSEditSourceConditioning",
        "RSEditSampler",
        "RSEditRegion",
        "RSEditLoadGeoTIFF",
        "RSEditSaveGeoTIFF",
        "RSEditDamageLoader",
        "RSEditDamageAssessment",
        "RSEditInstructionBuilder",
        "RSEditSeverityLadder",
    }
    for node_id, cls in comfy.items():
        schema = cls.define_schema()
        assert schema.category.startswith("RSEdit/") and schema.description
        for spec in schema.inputs:
            assert spec.tooltip, f"{node_id}.{spec.id} has no tooltip"
    sampler = {spec.id: spec for spec in comfy["RSEditSampler"].define_schema().inputs}
    assert (sampler["text_cfg"].default, sampler["image_cfg"].default, sampler["scheduler"].default) == (
        0.0,
        1.5,
        "default",
    )
    assert "0 = the editor's default (7.5 for U-Net editors, 4.5 for PixArt DiT editors)" in sampler["text_cfg"].tooltip
    assert sampler["seed"].max == 2**64 - 1
    loader = {spec.id: spec for spec in comfy["RSEditLoader"].define_schema().inputs}
    assert loader["model"].options == [DIT, UNET]


def test_graph_matches_core_and_outputs_native_types(comfy, scene, tiny_editor):
    from rsedit_core.edit import edit_images
    from rsedit_core.settings import EditSettings

    result = run(comfy, scene)
    image, latent = result.value("5", 0), result.value("5", 1)
    expected = edit_images(tiny_editor, scene.movedim(-1, 1), PROMPT, settings=EditSettings(steps=3, seed=42))
    assert image.shape == (1, 64, 96, 3)
    assert (image - expected.images.movedim(1, -1)).abs().max().item() < 1e-5
    # LATENT is unscaled, as native VAE Decode expects.
    scaled = expected.latents / tiny_editor.vae.config.scaling_factor
    assert torch.allclose(latent["samples"], scaled, atol=1e-5)
    tokens = len(tiny_editor.tokenizer(PROMPT, add_special_tokens=False).input_ids)
    assert result.ui["2"] == {"text": [f"instruction: {tokens}/246 tokens"]}


def test_progress_ticks_each_step_with_preview(comfy, scene, monkeypatch):
    from comfy.cli_args import LatentPreviewMethod, args
    from comfy_double.runner import progress_events

    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.Auto)
    run(comfy, scene, steps=4)
    sampler_events = [e for e in progress_events if e.node_id == "5"]
    assert [(e.value, e.total) for e in sampler_events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    kind, preview, size = sampler_events[-1].preview
    assert kind == "JPEG" and preview.size == (96, 64) and size == 512


def test_previews_follow_the_users_preview_setting(comfy, scene, monkeypatch):
    """ComfyUI's default (--preview-method none) sends no previews; --preview-size caps them."""
    from comfy.cli_args import LatentPreviewMethod, args
    from comfy_double.runner import progress_events

    run(comfy, scene, steps=2)
    events = [e for e in progress_events if e.node_id == "5"]
    assert [e.value for e in events] == [1, 2] and all(e.preview is None for e in events)
    progress_events.clear()
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.Latent2RGB)
    monkeypatch.setattr(args, "preview_size", 48)
    run(comfy, scene, steps=2)
    kind, preview, size = [e for e in progress_events if e.node_id == "5"][-1].preview
    assert size == 48 and max(preview.size) <= 48
    progress_events.clear()
    monkeypatch.setattr(args, "preview_size", 8)  # smaller than the latent grid (12 x 8)
    run(comfy, scene, steps=1)
    _, preview, _ = [e for e in progress_events if e.node_id == "5"][-1].preview
    assert max(preview.size) == 8


def test_models_are_handed_to_comfy_memory_management(comfy, scene):
    import comfy.model_management as mm

    run(comfy, scene)
    loaded = [[type(p.model.inner).__name__ for p in call] for call in mm.load_calls]
    assert ["CLIPTextModel"] in loaded and ["AutoencoderKL"] in loaded
    assert ["UNet2DConditionModel", "AutoencoderKL"] in loaded


def test_cancel_midway_then_next_run_works(comfy, scene):
    import comfy.model_management as mm
    from comfy_double.runner import interrupt_after, progress_events

    with interrupt_after(2), pytest.raises(mm.InterruptProcessingException):
        run(comfy, scene, steps=5)
    assert [e.value for e in progress_events if e.node_id == "5"] == [1, 2]
    assert run(comfy, scene, steps=2).value("5", 0).shape == (1, 64, 96, 3)


def test_validation_rejects_bad_numbers(comfy, scene):
    from comfy_double.runner import PromptValidationError

    with pytest.raises(PromptValidationError) as info:
        run(comfy, scene, steps=0)
    assert "5" in info.value.as_response()["node_errors"]


def test_missing_model_is_an_execution_error_with_fix(comfy, scene):
    from comfy_double.runner import NodeExecutionError

    with pytest.raises(NodeExecutionError) as info:
        run(comfy, scene, model="gone/missing")
    assert "No RSEdit model at 'gone/missing'" in info.value.message["exception_message"]
    assert run(comfy, scene, steps=1).value("5", 0).shape == (1, 64, 96, 3)


def test_rgba_source_of_odd_size_is_padded_and_reported(comfy):
    from comfy_double.runner import run_node

    rgba = torch.rand(1, 70, 90, 4, generator=torch.Generator().manual_seed(0))
    model = run_node(comfy["RSEditLoader"], model=UNET, dtype="fp32")[0]
    output = run_node(comfy["RSEditSourceConditioning"], rsedit_model=model, image=rgba, size_policy="pad")
    source = output[0]
    assert source.latents.shape == (1, 4, 9, 12) and source.geometry.original == (70, 90)
    text = output.ui.as_dict()["text"][0]
    assert "alpha channel flattened onto black" in text and "90x70 -> 96x72 (pad" in text


def test_unknown_combo_values_get_actionable_errors(pack, comfy, scene):
    """ComfyUI does not check V3 combo values, so the nodes must."""
    from comfy_double.runner import NodeExecutionError, run_api_graph, run_node

    with pytest.raises(pack.rsedit_core.errors.InputError, match="Unknown dtype 'fp8'; choose one of fp32, fp16, bf16"):
        run_node(comfy["RSEditLoader"], model=UNET, dtype="fp8")
    bad = graph()
    bad["5"]["inputs"]["scheduler"] = "karras"
    with pytest.raises(NodeExecutionError) as info:
        run_api_graph(bad, [*comfy.values(), _image_node(scene)], targets=["5"])
    assert "Unknown scheduler 'karras'" in info.value.message["exception_message"]


def test_dit_graph_matches_core_and_offloads_t5(comfy, tiny_dit, scene):
    import comfy.model_management as mm

    from rsedit_core.edit import edit_images
    from rsedit_core.settings import EditSettings

    result = run(comfy, scene, model=DIT, text_cfg=4.5)
    expected = edit_images(tiny_dit, scene.movedim(-1, 1), PROMPT, settings=EditSettings(steps=3, seed=42))
    assert (result.value("5", 0) - expected.images.movedim(1, -1)).abs().max().item() < 1e-5
    assert result.ui["4"]["text"][0].startswith("token concatenation")
    assert result.ui["1"]["text"][0] == f"{DIT}: PixArt DiT, token concatenation"
    still_loaded = [type(entry.model.model.inner).__name__ for entry in mm.current_loaded_models]
    assert "T5EncoderModel" not in still_loaded and "PixArtTransformer2DModel" in still_loaded


def test_mixed_loaders_say_what_to_connect(comfy, scene):
    from comfy_double.runner import NodeExecutionError, run_api_graph

    mixed = graph()
    mixed["9"] = {"class_type": "RSEditLoader", "inputs": {"model": DIT, "dtype": "auto"}}
    mixed["5"]["inputs"]["rsedit_model"] = ["9", 0]
    with pytest.raises(NodeExecutionError) as info:
        run_api_graph(mixed, [*comfy.values(), _image_node(scene)], targets=["5"])
    message = info.value.message["exception_message"]
    assert "encoded for a U-Net editor but the sampler has a PixArt DiT editor" in message
    assert "Connect the same RSEdit Loader" in message


def test_cached_instruction_does_not_reload_the_encoder(comfy):
    """ComfyUI keeps the loader's output between runs; a repeated instruction must not bring the
    text encoder (T5-XXL for the DiT) back to the GPU."""
    import comfy.model_management as mm
    from comfy_double.runner import run_node

    model = run_node(comfy["RSEditLoader"], model=UNET, dtype="fp32")[0]
    first = run_node(comfy["RSEditTextEncode"], rsedit_model=model, instruction=PROMPT, negative="")[0]
    mm.load_calls.clear()
    second = run_node(comfy["RSEditTextEncode"], rsedit_model=model, instruction=PROMPT, negative="")[0]
    assert second is first and mm.load_calls == []
    run_node(comfy["RSEditTextEncode"], rsedit_model=model, instruction="burn the forest", negative="")
    assert len(mm.load_calls) == 1


def test_text_scale_widget_default_means_the_editors_own(comfy, tiny_dit, scene):
    """The widget's 0 is the editor's default: 4.5 on a DiT, as the paper samples it."""
    from rsedit_core.edit import edit_images
    from rsedit_core.settings import EditSettings

    auto = run(comfy, scene, model=DIT, text_cfg=0.0).value("5", 0)
    settings = EditSettings(steps=3, seed=42, text_cfg=4.5)
    expected = edit_images(tiny_dit, scene.movedim(-1, 1), PROMPT, settings=settings).images.movedim(1, -1)
    assert (auto - expected).abs().max().item() < 1e-5
    off = edit_images(tiny_dit, scene.movedim(-1, 1), PROMPT, settings=EditSettings(steps=3, seed=42, text_cfg=7.5))
    assert (auto - off.images.movedim(1, -1)).abs().max().item() > 1e-3


def test_source_values_slightly_outside_0_1_are_clamped_and_said(comfy, scene):
    from comfy_double.runner import run_node

    model = run_node(comfy["RSEditLoader"], model=UNET, dtype="fp32")[0]
    output = comfy["RSEditSourceConditioning"].execute(model, scene * 1.01, "pad")
    assert "clamped to 0..1" in output.ui.as_dict()["text"][0]


def test_sampler_tiles_a_large_scene_with_progress_per_window_batch(comfy, monkeypatch):
    from comfy.cli_args import LatentPreviewMethod, args
    from comfy_double.runner import progress_events

    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.Auto)
    wide = torch.rand(1, 96, 200, 3, generator=torch.Generator().manual_seed(0))
    from comfy_double.runner import run_api_graph

    graph_ = edit_graph(UNET, {"class_type": "ImageInput", "inputs": {}}, PROMPT, steps=2, tile=64, tile_overlap=16)
    result = run_api_graph(graph_, [*comfy.values(), _image_node(wide)], targets=["5"])
    assert result.value("5", 0).shape == (1, 96, 200, 3)
    events = [e for e in progress_events if e.node_id == "5"]
    assert [(e.value, e.total) for e in events] == [(4, 16), (8, 16), (12, 16), (16, 16)]  # 8 windows, 4 per pass
    assert any("tiled: 8 windows of 64 px" in text for text in result.ui["5"]["text"])
