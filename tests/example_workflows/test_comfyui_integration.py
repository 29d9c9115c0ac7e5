"""Integration tests against a real ComfyUI server (skipped unless COMFYUI_DIR is set).

COMFYUI_DIR is a ComfyUI checkout; COMFYUI_PYTHON the interpreter that has its requirements
(default: this one). The server runs on CPU, on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from comfyui_server import ComfyUIClient, ComfyUIValidationError, start_comfyui
from conftest import edit_graph, place_file

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="set COMFYUI_DIR to a ComfyUI checkout"),
]


@pytest.fixture(scope="module")
def empty_comfyui(tmp_path_factory) -> ComfyUIClient:
    """A server with an empty extra custom-node folder (only ComfyUI's own nodes)."""
    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    with start_comfyui(os.environ["COMFYUI_DIR"], python, custom_nodes, {}) as client:
        yield client


def test_core_nodes_listed_and_bad_graph_rejected(empty_comfyui):
    info = empty_comfyui.object_info()
    assert "LoadImage" in info
    assert info["EmptyImage"]["input"]["required"]["width"][1]["min"] == 1

    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    with pytest.raises(ComfyUIValidationError) as caught:
        empty_comfyui.queue(graph)
    assert caught.value.status == 400
    assert caught.value.error["type"] == "prompt_outputs_failed_validation"
    [error] = caught.value.node_errors["1"]["errors"]
    assert (error["type"], error["details"]) == ("value_smaller_than_min", "width")
    assert caught.value.node_errors["1"]["dependent_outputs"] == ["2"]

    with pytest.raises(ComfyUIValidationError) as unknown:
        empty_comfyui.queue({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert unknown.value.error["type"] == "invalid_prompt"
    assert unknown.value.node_errors == {}


def test_valid_graph_runs_to_history(empty_comfyui):
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 255}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    entry = empty_comfyui.run(graph, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert ComfyUIClient.messages(entry, "execution_error") == []
    images = entry["outputs"]["2"]["images"]
    assert len(images) == 2 and all(image["type"] == "temp" for image in images)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "RSEdit-UNet-tiny/DGTRS-CLIP-ViT-L-14"
DIT = "RSEdit-DiT-tiny"


@pytest.fixture(scope="module")
def rsedit_comfyui(tmp_path_factory, tiny_editor_dir, tiny_dit_dir, damage_checkpoint) -> ComfyUIClient:
    """A server with this pack in a custom-node folder, the tiny editors in an rsedit folder and a
    random ChangeStar1x256 in a changestar folder."""
    import shutil

    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    os.symlink(ROOT, custom_nodes / "rsedit")
    models = tmp_path_factory.mktemp("rsedit_models")
    shutil.copytree(tiny_editor_dir, models / MODEL)
    shutil.copytree(tiny_dit_dir, models / DIT)
    changestar = tmp_path_factory.mktemp("changestar")
    place_file(damage_checkpoint, changestar / damage_checkpoint.name)
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    paths = {"rsedit": models, "changestar": changestar}
    with start_comfyui(os.environ["COMFYUI_DIR"], python, custom_nodes, paths) as client:
        yield client


def unet_graph(model: str = MODEL, steps: int = 3) -> dict:
    """EmptyImage (native) -> our four nodes -> PreviewImage, and LATENT -> LatentUpscaleBy -> SaveLatent."""
    empty = {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 72, "batch_size": 1, "color": 0x336699}}
    graph = edit_graph(model, empty, "flood the coastal area", steps=steps, variations=2)
    graph["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}}
    graph["7"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["5", 1], "upscale_method": "nearest-exact", "scale_by": 2.0},
    }
    graph["8"] = {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "rsedit/test"}}
    return graph


def test_rsedit_nodes_listed_with_tooltips(rsedit_comfyui):
    info = rsedit_comfyui.object_info()
    for node in ("RSEditLoader", "RSEditTextEncode", "RSEditSourceConditioning", "RSEditSampler"):
        assert info[node]["category"].startswith("RSEdit/")
    assert info["RSEditLoader"]["input"]["required"]["model"][1]["options"] == [DIT, MODEL]
    assert "tooltip" in info["RSEditSampler"]["input"]["required"]["text_cfg"][1]


def test_unet_graph_runs_through_prompt(rsedit_comfyui):
    graph = unet_graph()
    entry = rsedit_comfyui.run(graph, timeout=300)
    assert entry["status"]["status_str"] == "success", rsedit_comfyui.log()[-3000:]
    assert len(entry["outputs"]["6"]["images"]) == 2
    assert len(entry["outputs"]["8"]["latents"]) == 1
    assert "tokens" in entry["outputs"]["2"]["text"][0]


def test_missing_model_is_an_execution_error_and_server_stays_up(rsedit_comfyui):
    entry = rsedit_comfyui.run(unet_graph(model="nowhere/missing"), timeout=120)
    assert entry["status"]["status_str"] == "error"
    [error] = ComfyUIClient.messages(entry, "execution_error")
    assert "No RSEdit model at 'nowhere/missing'" in error["exception_message"]
    assert "models/rsedit" in error["exception_message"]
    again = rsedit_comfyui.run(unet_graph(steps=2), timeout=300)
    assert again["status"]["status_str"] == "success"


def test_dit_graph_runs_through_prompt(rsedit_comfyui):
    graph = unet_graph(model=DIT)
    graph["5"]["inputs"]["text_cfg"] = 4.5
    graph["3"]["inputs"].update(width=88, height=72)
    entry = rsedit_comfyui.run(graph, timeout=300)
    assert entry["status"]["status_str"] == "success", rsedit_comfyui.log()[-3000:]
    assert len(entry["outputs"]["6"]["images"]) == 2
    assert "token concatenation" in entry["outputs"]["4"]["text"][0]
    assert "88x72 -> 96x80 (pad" in entry["outputs"]["4"]["text"][0]


def test_edit_then_damage_assessment(rsedit_comfyui, damage_checkpoint):
    graph = unet_graph()
    graph["5"]["inputs"]["variations"] = 1
    graph["10"] = {
        "class_type": "RSEditDamageLoader",
        "inputs": {"checkpoint": damage_checkpoint.name, "dtype": "auto"},
    }
    graph["11"] = {
        "class_type": "RSEditDamageAssessment",
        "inputs": {"damage_model": ["10", 0], "pre": ["3", 0], "post": ["5", 0], "tile": 1024},
    }
    graph["12"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
    entry = rsedit_comfyui.run(graph, timeout=300)
    assert entry["status"]["status_str"] == "success", rsedit_comfyui.log()[-3000:]
    assert "building pixels" in entry["outputs"]["11"]["text"][0]
    assert len(entry["outputs"]["12"]["images"]) == 1


# The shipped example workflows, converted as the frontend would and queued through /prompt.

WORKFLOW_UNET = "RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14"
WORKFLOW_CHANGESTAR = "changestar1x256_vitb_xview2.safetensors"


@pytest.fixture(scope="module")
def workflow_comfyui(tmp_path_factory, tiny_editor_dir, tiny_dit_dir, damage_checkpoint) -> ComfyUIClient:
    """Tiny random models placed under the names the workflows reference; the pack copies the
    example inputs into the server's input folder when it loads."""
    import shutil

    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    os.symlink(ROOT, custom_nodes / "rsedit")
    models = tmp_path_factory.mktemp("workflow_models")
    shutil.copytree(tiny_editor_dir, models / WORKFLOW_UNET)
    shutil.copytree(tiny_dit_dir, models / "RSEdit-DiT")
    changestar = tmp_path_factory.mktemp("workflow_changestar")
    place_file(damage_checkpoint, changestar / WORKFLOW_CHANGESTAR)
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    with start_comfyui(
        os.environ["COMFYUI_DIR"], python, custom_nodes, {"rsedit": models, "changestar": changestar}
    ) as c:
        yield c


def _workflow_graph(client: ComfyUIClient, name: str) -> dict:
    import json

    from workflow_api import ui_to_api

    workflow = json.loads(open(os.path.join(ROOT, "example_workflows", f"{name}.json")).read())
    graph = ui_to_api(workflow, client.object_info())
    for node in graph.values():
        if node["class_type"] == "RSEditSampler":
            node["inputs"]["steps"] = 2  # tiny random models: the wiring is under test, not the steps
    return graph


def test_recorded_core_definitions_match_the_server(workflow_comfyui):
    from workflow_api import core_definitions

    info = workflow_comfyui.object_info()
    for name, recorded in core_definitions().items():
        real = info[name]
        assert real["output"] == recorded["output"] and real["input_order"] == recorded["input_order"], name
        real_inputs = json.loads(json.dumps(real["input"]))
        if name == "LoadImage":
            assert "rsedit_sample_scene.png" in real_inputs["required"]["image"][0]
            real_inputs["required"]["image"][0] = []
        assert real_inputs == recorded["input"], name


EXAMPLES = sorted(p[:-5] for p in os.listdir(os.path.join(ROOT, "example_workflows")) if p.endswith(".json"))


def test_shipped_workflows_are_offered_as_templates(workflow_comfyui):
    """Templates -> Custom Nodes lists what /workflow_templates returns; the frontend then fetches
    each graph and its thumbnail from /api/workflow_templates/<pack folder>/."""
    status, body = workflow_comfyui.get_bytes("/workflow_templates")
    assert status == 200 and sorted(json.loads(body)["rsedit"]) == EXAMPLES
    folder = os.path.join(ROOT, "example_workflows")
    for name in EXAMPLES:
        for suffix in (".json", ".jpg"):
            status, served = workflow_comfyui.get_bytes(f"/api/workflow_templates/rsedit/{name}{suffix}")
            with open(os.path.join(folder, name + suffix), "rb") as f:
                assert status == 200 and served == f.read(), (name, suffix, status)
    assert workflow_comfyui.get_bytes("/api/workflow_templates/rsedit/not_a_workflow.json")[0] == 404


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_workflow_runs_through_prompt(workflow_comfyui, name):
    graph = _workflow_graph(workflow_comfyui, name)
    entry = workflow_comfyui.run(graph, timeout=600)
    assert entry["status"]["status_str"] == "success", workflow_comfyui.log()[-3000:]
    images = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    assert images
    if name == "rsedit_damage_assessment":  # the reports reach the UI through the core Preview Any node
        previews = [i for i, node in graph.items() if node["class_type"] == "PreviewAny"]
        shown = [entry["outputs"][i]["text"][0] for i in previews]
        assert len(shown) == 2 and sum("F1_dam" in text for text in shown) == 1, shown
    if name == "rsedit_geotiff_flood":
        check_geotiff(workflow_comfyui, graph, entry)
    if name == "rsedit_severity_ladder":  # the ladder's STRING list ran the encode, sampler and save per level
        (encode,) = [i for i, node in graph.items() if node["class_type"] == "RSEditTextEncode"]
        assert len(images) == 4 and len(entry["outputs"][encode]["text"]) == 4, entry["outputs"]


def check_geotiff(client: ComfyUIClient, graph: dict, entry: dict) -> None:
    """RSEdit Save GeoTIFF wrote into the server's output folder, on the sample's grid with its
    nodata corner, and took the instruction from the queued graph (hidden PROMPT and UNIQUE_ID)."""
    import numpy as np
    import rasterio

    (save,) = [i for i, node in graph.items() if node["class_type"] == "RSEditSaveGeoTIFF"]
    (text,) = [node for node in graph.values() if node["class_type"] == "RSEditTextEncode"]
    shown = entry["outputs"][save]["text"][0]
    name = shown.removeprefix("saved ").split(" in ComfyUI's output folder")[0]
    assert name.startswith("rsedit/flood_geotiff_") and name.endswith("_.tif"), shown
    written_path = client.log_path.parent / "output" / name  # start_comfyui's --output-directory
    with (
        rasterio.open(written_path) as written,
        rasterio.open(os.path.join(ROOT, "rsedit_core", "assets", "sample_scene.tif")) as source,
    ):
        assert (written.crs, written.transform, written.width, written.height) == (
            source.crs,
            source.transform,
            source.width,
            source.height,
        )
        assert (written.dtypes[0], written.nodata) == ("uint16", 0)
        assert np.array_equal(written.dataset_mask(), source.dataset_mask())
        assert written.tags()["RSEDIT_INSTRUCTION"] == text["inputs"]["instruction"]


def test_shipped_workflow_with_a_missing_model_fails_and_the_server_serves_the_next(workflow_comfyui):
    graph = _workflow_graph(workflow_comfyui, "rsedit_hurricane_flood")
    loader = next(i for i, n in graph.items() if n["class_type"] == "RSEditLoader")
    graph[loader]["inputs"]["model"] = "RSEdit-UNet-text-ablation/not-downloaded"
    entry = workflow_comfyui.run(graph, timeout=300)
    assert entry["status"]["status_str"] == "error"
    [error] = ComfyUIClient.messages(entry, "execution_error")
    assert "No RSEdit model at 'RSEdit-UNet-text-ablation/not-downloaded'" in error["exception_message"]
    again = workflow_comfyui.run(_workflow_graph(workflow_comfyui, "rsedit_hurricane_flood"), timeout=300)
    assert again["status"]["status_str"] == "success"
