"""Tests of the ComfyUI test double itself (tests/comfy_double), with dummy nodes defined here.

Behaviours pinned here were observed on a real ComfyUI server (see tests/comfy_double/README.md).
"""

from __future__ import annotations

import pytest
import torch
from comfy_double import install_comfy_double, reset_comfy_double

install_comfy_double()

import comfy.model_management as mm  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
from comfy.model_patcher import ModelPatcher  # noqa: E402
from comfy_api.latest import ComfyExtension, io, ui  # noqa: E402
from comfy_double.runner import (  # noqa: E402
    NodeExecutionError,
    PromptValidationError,
    interrupt_after,
    run_api_graph,
    run_node,
)

RSEDIT_THING = io.Custom("RSEDIT_THING")


class Scale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TestScale",
            display_name="Test Scale",
            category="test",
            description="Multiplies an image.",
            inputs=[
                io.Image.Input("image", tooltip="Image to scale."),
                io.Float.Input("factor", default=1.0, min=0.0, max=2.0, step=0.1, tooltip="Multiplier."),
                io.Int.Input("repeats", default=1, min=1, max=4, tooltip="Batch repeats."),
                io.Combo.Input("mode", options=["mul", "add"], default="mul", tooltip="Operation."),
                io.String.Input("note", multiline=True, optional=True, tooltip="Ignored."),
            ],
            outputs=[io.Image.Output(display_name="scaled"), RSEDIT_THING.Output(display_name="thing")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, factor, repeats, mode, note=None):
        out = image * factor if mode == "mul" else image + factor
        thing = {"repeats": repeats, "repeats_type": type(repeats).__name__, "note": note, "uid": cls.hidden.unique_id}
        return io.NodeOutput(out.repeat(repeats, 1, 1, 1), thing)


class Report(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TestReport",
            category="test",
            inputs=[io.Image.Input("image"), RSEDIT_THING.Input("thing")],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    async def execute(cls, image, thing):
        return io.NodeOutput(ui=ui.PreviewText(f"mean={image.mean().item():.3f} repeats={thing['repeats']}"))


class Steps(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TestSteps",
            category="test",
            inputs=[io.Int.Input("steps", default=5)],
            outputs=[io.Int.Output()],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, steps):
        bar = comfy.utils.ProgressBar(steps)
        for i in range(steps):
            bar.update_absolute(i + 1, steps)
        return io.NodeOutput(steps)


class Fails(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TestFails",
            category="test",
            inputs=[io.Boolean.Input("cache", default=False)],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, cache):
        if cache:
            cls.cached = True
        raise ValueError("weights not found: put them in models/rsedit")


NODES = [Scale, Report, Steps, Fails]


@pytest.fixture(autouse=True)
def _fresh_double():
    reset_comfy_double()
    yield
    reset_comfy_double()


def test_schema_matches_object_info_shape():
    info = Scale.GET_NODE_INFO_V1()
    assert info["input"]["required"]["mode"] == (
        "COMBO",
        {"multiselect": False, "options": ["mul", "add"], "default": "mul", "tooltip": "Operation."},
    )
    assert info["input"]["required"]["factor"] == (
        "FLOAT",
        {"tooltip": "Multiplier.", "default": 1.0, "min": 0.0, "max": 2.0, "step": 0.1},
    )
    assert info["input"]["optional"]["note"] == ("STRING", {"tooltip": "Ignored.", "multiline": True})
    assert info["input"]["hidden"] == {"unique_id": ("UNIQUE_ID",)}
    assert info["output"] == ["IMAGE", "RSEDIT_THING"]
    assert info["output_name"] == ["scaled", "thing"]
    assert (info["name"], info["display_name"], info["category"]) == ("TestScale", "Test Scale", "test")
    assert Scale.SCHEMA.outputs[0].id == "_0_IMAGE_"
    assert Report.INPUT_TYPES()["hidden"] == {"prompt": ("PROMPT",), "extra_pnginfo": ("EXTRA_PNGINFO",)}


def test_extension_lists_nodes():
    class Extension(ComfyExtension):
        async def get_node_list(self):
            return NODES

    import asyncio

    assert asyncio.run(Extension().get_node_list()) == NODES


def test_run_node_converts_values_like_comfyui():
    image = torch.full((1, 2, 2, 3), 0.5)
    out = run_node(Scale, image=image, factor="2", repeats=3.9, mode="mul")
    scaled, thing = out.result
    assert scaled.shape == (3, 2, 2, 3)
    assert torch.allclose(scaled, torch.ones(3, 2, 2, 3))
    assert thing == {"repeats": 3, "repeats_type": "int", "note": None, "uid": "1"}


def test_run_node_reports_validation_errors_like_http_400():
    with pytest.raises(PromptValidationError) as caught:
        run_node(Scale, image=torch.zeros(1, 2, 2, 3), factor=2.5, repeats="x")
    err = caught.value
    assert err.error["type"] == "prompt_outputs_failed_validation"
    types = {e["type"]: e for e in err.node_errors["1"]["errors"]}
    assert set(types) == {"value_bigger_than_max", "invalid_input_type", "required_input_missing"}
    assert types["value_bigger_than_max"]["message"] == "Value 2.5 bigger than max of 2.0"
    assert types["required_input_missing"]["details"] == "mode"
    assert err.node_errors["1"]["class_type"] == "TestScale"


def test_v3_combo_values_are_not_checked_by_comfyui():
    out = run_node(Scale, image=torch.zeros(1, 1, 1, 3), factor=1.0, repeats=1, mode="typo")
    assert torch.equal(out.result[0], torch.ones(1, 1, 1, 3))


def test_execute_runs_locked_and_in_inference_mode():
    with pytest.raises(AttributeError, match="Cannot modify class attribute 'cached'"):
        run_node(Fails, cache=True)
    out = run_node(Scale, image=torch.zeros(1, 1, 1, 3), factor=1.0, repeats=1, mode="add")
    assert out.result[0].is_inference()


def test_progress_bar_reports_and_interrupt_raises():
    assert run_node(Steps, steps=3).result == (3,)
    from comfy_double import runner

    assert [(e.value, e.total, e.node_id) for e in runner.progress_events] == [(1, 3, "1"), (2, 3, "1"), (3, 3, "1")]
    with interrupt_after(2), pytest.raises(mm.InterruptProcessingException):
        run_node(Steps, steps=5)
    assert [e.value for e in runner.progress_events] == [1, 2]
    assert mm.processing_interrupted() is False


def test_graph_runs_linked_nodes_and_collects_ui():
    graph = {
        "3": {"class_type": "TestReport", "inputs": {"image": ["2", 0], "thing": ["2", 1]}},
        "2": {"class_type": "TestScale", "inputs": {"image": ["1", 0], "factor": 0.5, "repeats": 2, "mode": "mul"}},
        "1": {"class_type": "TestScale", "inputs": {"image": ["9", 0], "factor": 1.0, "repeats": 1, "mode": "add"}},
        "9": {"class_type": "TestSteps", "inputs": {"steps": 1}},
    }
    # Like the server: an invalid output is dropped (reported in node_errors), valid outputs still run.
    partial = run_api_graph(graph, NODES)
    assert partial.executed == ["9"]
    mismatch = partial.node_errors["1"]["errors"][0]
    assert partial.node_errors["1"]["dependent_outputs"] == ["3"]
    assert mismatch["type"] == "return_type_mismatch"
    assert mismatch["details"] == "image, received_type(INT) mismatch input_type(IMAGE)"
    with pytest.raises(PromptValidationError, match="Return type mismatch between linked nodes"):
        run_api_graph(graph, NODES, targets=["3"])

    graph["1"] = {"class_type": "TestScale", "inputs": {"image": ["0", 0], "factor": 1.0, "repeats": 1, "mode": "add"}}
    graph["0"] = {
        "class_type": "TestScale",
        "inputs": {"image": torch.zeros(1, 2, 2, 3), "factor": 0.0, "repeats": 1, "mode": "mul"},
    }
    del graph["9"]
    run = run_api_graph(graph, NODES)
    assert run.executed == ["0", "1", "2", "3"]
    assert run.ui == {"3": {"text": ["mean=0.500 repeats=2"]}}
    assert run.value("2", 1)["uid"] == "2"


def test_graph_errors_match_history_and_400_shapes():
    with pytest.raises(PromptValidationError) as caught:
        run_api_graph({"1": {"class_type": "TestScale", "inputs": {}}}, NODES)
    assert caught.value.as_response() == {
        "error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
        "node_errors": {},
    }
    with pytest.raises(PromptValidationError, match="node Nope does not exist"):
        run_api_graph({"1": {"class_type": "Nope", "inputs": {}}}, NODES)
    with pytest.raises(NodeExecutionError) as failed:
        run_api_graph({"5": {"class_type": "TestFails", "inputs": {"cache": False}}}, NODES)
    message = failed.value.message
    assert (message["node_id"], message["node_type"]) == ("5", "TestFails")
    assert message["exception_message"] == "weights not found: put them in models/rsedit\n"
    assert message["exception_type"] == "ValueError"
    assert isinstance(failed.value.__cause__, ValueError)


def test_model_patcher_and_load_models_gpu():
    layer = torch.nn.Linear(4, 2)
    patcher = ModelPatcher(layer, mm.get_torch_device(), mm.unet_offload_device())
    assert patcher.model_size() == (4 * 2 + 2) * 4
    assert layer.device == torch.device("cpu")
    mm.load_models_gpu([patcher])
    assert mm.load_calls == [[patcher]]
    assert mm.loaded_models() == [patcher]
    assert patcher.loaded_size() == 40
    mm.unload_all_models()
    assert mm.loaded_models() == [] and patcher.loaded_size() == 0

    class ReadOnlyDevice(torch.nn.Module):
        @property
        def device(self):
            return torch.device("cpu")

    with pytest.raises(AttributeError):
        mm.load_models_gpu([ModelPatcher(ReadOnlyDevice(), mm.get_torch_device(), mm.unet_offload_device())])


def test_folder_paths_registry(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.safetensors").write_bytes(b"")
    (tmp_path / "a.txt").write_text("x")
    folder_paths.add_model_folder_path("rsedit", str(tmp_path))
    assert folder_paths.get_filename_list("rsedit") == ["a.txt", "sub/b.safetensors"]
    assert folder_paths.get_full_path_or_raise("rsedit", "sub/b.safetensors") == str(tmp_path / "sub" / "b.safetensors")
    with pytest.raises(FileNotFoundError, match="Model in folder 'rsedit' with filename 'c.bin' not found."):
        folder_paths.get_full_path_or_raise("rsedit", "c.bin")
    assert folder_paths.get_full_path("rsedit", "sub") is None
    with pytest.raises(KeyError):
        folder_paths.get_filename_list("not_registered")


def test_reset_restores_flags_and_the_device_state_they_imply():
    import comfy.model_management as mm
    from comfy.cli_args import LatentPreviewMethod, args

    args.cpu, args.lowvram, args.preview_method = False, True, LatentPreviewMethod.Auto
    mm.configure_from_args(gpu_device="cpu")  # pretend a GPU: --lowvram then counts
    assert mm.vram_state == mm.VRAMState.LOW_VRAM
    reset_comfy_double()
    assert (args.cpu, args.lowvram, args.preview_method) == (True, False, LatentPreviewMethod.NoPreviews)
    assert (mm.cpu_state, mm.vram_state) == (mm.CPUState.CPU, mm.VRAMState.DISABLED)
