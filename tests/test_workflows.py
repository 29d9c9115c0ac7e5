"""The shipped UI-format workflows: structure, node types, widget values, links, model references,
and every graph run (converted to API format) on tiny random models in the ComfyUI test double."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from workflow_api import (
    CORE_TYPES,
    check_value,
    core_definitions,
    structure_problems,
    ui_to_api,
    widget_inputs,
    widget_values,
)

WORKFLOWS = ROOT / "example_workflows"
FILES = sorted(WORKFLOWS.glob("*.json"))
NAMES = [path.stem for path in FILES]
SCENARIOS = ("hurricane_flood", "tsunami", "tornado", "earthquake", "wildfire", "volcanic_eruption", "urban_growth",
             "seasonal_shift")  # fmt: skip
EXAMPLE_INPUTS = ("rsedit_sample_scene.png", "rsedit_sample_scene_masked.png", "rsedit_sample_damage_target.png")
# Combo widgets whose options are files on the server: checked against the graph's own references.
DYNAMIC = {("RSEditLoader", "model"), ("RSEditDamageLoader", "checkpoint"), ("LoadImage", "image")}


def load(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def our_nodes(pack):
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


@pytest.fixture(scope="module")
def definitions(our_nodes):
    return {**core_definitions(), **{name: cls.GET_NODE_INFO_V1() for name, cls in our_nodes.items()}}


def test_every_scenario_has_a_graph_and_a_thumbnail():
    for scenario in SCENARIOS:
        assert f"rsedit_{scenario}" in NAMES
    assert len([n for n in NAMES if n.startswith("rsedit_dit_")]) >= 2
    assert {
        "rsedit_severity_sweep",
        "rsedit_damage_assessment",
        "rsedit_upscale_and_save",
        "rsedit_masked_edit",
    } <= set(NAMES)
    for path in FILES:
        with Image.open(path.with_suffix(".jpg")) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (256, 256)


def test_files_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_workflows.py"), "--check"], capture_output=True)
    assert done.returncode == 0, done.stdout.decode()


@pytest.mark.parametrize("name", NAMES)
def test_ui_structure_and_node_types(name, definitions):
    workflow = load(name)
    assert structure_problems(workflow) == []
    for node in workflow["nodes"]:
        assert node["type"].startswith("RSEdit") or node["type"] in CORE_TYPES, node["type"]
        assert node["type"] in definitions


@pytest.mark.parametrize("name", NAMES)
def test_widget_values_fit_the_inputs(name, definitions):
    workflow = load(name)
    referenced = {entry["name"] for entry in workflow["models"]}
    for node in workflow["nodes"]:
        definition = definitions[node["type"]]
        values = widget_values(node, definition)  # raises on a count or extra-value mismatch
        for input_name, kind, options in widget_inputs(definition):
            dynamic = (node["type"], input_name) in DYNAMIC
            assert check_value(input_name, kind, options, values[input_name], dynamic_ok=dynamic) is None
            if dynamic:
                allowed = EXAMPLE_INPUTS if node["type"] == "LoadImage" else referenced
                assert values[input_name] in allowed, (node["id"], values[input_name])
        if node["type"] == "RSEditSampler":
            assert node["widgets_values"][1] == "fixed"  # seed 42 kept, so a rerun reproduces the edit


@pytest.mark.parametrize("name", NAMES)
def test_links_join_matching_types(name, definitions):
    workflow = load(name)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for _, origin, slot, target, target_slot, kind in workflow["links"]:
        assert definitions[nodes[origin]["type"]]["output"][slot] == kind
        socket = nodes[target]["inputs"][target_slot]["name"]
        inputs = {n: k for n, k, _ in widget_inputs(definitions[nodes[target]["type"]])}
        all_inputs = definitions[nodes[target]["type"]]["input"]
        spec = {**all_inputs.get("required", {}), **all_inputs.get("optional", {})}[socket]
        assert socket not in inputs and spec[0] == kind, (name, origin, target, socket)
    # Every required socket is connected.
    for node in workflow["nodes"]:
        required = definitions[node["type"]]["input"].get("required", {})
        connected = {s["name"] for s in node["inputs"] if s.get("link") is not None}
        sockets = {n for n, spec in required.items() if not isinstance(spec[0], list) and spec[0] not in (
            "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")}  # fmt: skip
        assert sockets <= connected, (name, node["id"], sockets - connected)


@pytest.mark.parametrize("name", NAMES)
def test_model_references_and_no_absolute_paths(name):
    workflow = load(name)
    readme = (ROOT / "README.md").read_text()
    loaders = [n for n in workflow["nodes"] if n["type"] in ("RSEditLoader", "RSEditDamageLoader")]
    assert loaders
    named = [n["widgets_values"][0] for n in loaders]
    assert sorted({e["name"] for e in workflow["models"]}) == sorted(set(named))
    for entry in workflow["models"]:
        assert set(entry) == {"name", "url", "directory"}
        assert entry["url"].startswith("https://huggingface.co/")
        assert entry["directory"] in ("rsedit", "changestar")
        assert entry["name"] in readme, f"{entry['name']} is not in the README models table"
    for node in loaders:
        assert node["properties"]["models"] == [e for e in workflow["models"] if e["name"] == node["widgets_values"][0]]
    text = json.dumps(workflow)
    assert not re.search(r'"(/|[A-Za-z]:\\\\)[^"]*"', text), "absolute path in the workflow"


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("rsedit_dit_")])
def test_dit_variants_use_the_dit_and_its_scale(name):
    workflow = load(name)
    assert {e["name"] for e in workflow["models"]} == {"RSEdit-DiT"}
    samplers = [n for n in workflow["nodes"] if n["type"] == "RSEditSampler"]
    assert samplers and all(n["widgets_values"][3] == 4.5 for n in samplers)


@pytest.mark.parametrize("name", [f"rsedit_{s}" for s in SCENARIOS])
def test_instructions_are_long_and_specific(name):
    texts = [n["widgets_values"][0] for n in load(name)["nodes"] if n["type"] == "RSEditTextEncode"]
    assert texts
    for text in texts:
        words = text.split()
        assert len(words) >= 40, text
        assert re.search(r"\b(unchanged|stay|stays|keep|keeps|remain|intact)\b", text), "say what stays"


# Running every graph in the test double ------------------------------------------------------------

UNET_NAME = "RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14"


@pytest.fixture
def double(pack, our_nodes, tmp_path, tiny_editor_dir, tiny_dit_dir, damage_checkpoint):
    """The double with tiny models under the names the workflows reference, and its input folder
    filled by the extension as ComfyUI's would be."""
    import folder_paths
    from comfy_double import reset_comfy_double
    from comfy_double.core_nodes import NODES as CORE_NODES

    reset_comfy_double()
    folder_paths.models_dir = str(tmp_path / "models")
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    shutil.copytree(tiny_editor_dir, tmp_path / "models" / "rsedit" / UNET_NAME)
    shutil.copytree(tiny_dit_dir, tmp_path / "models" / "rsedit" / "RSEdit-DiT")
    (tmp_path / "models" / "changestar").mkdir(parents=True)
    shutil.copy(damage_checkpoint, tmp_path / "models" / "changestar" / "changestar1x256_vitb_xview2.safetensors")
    extension = asyncio.run(pack.comfy_entrypoint())
    nodes = [*asyncio.run(extension.get_node_list()), *CORE_NODES]
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == sorted(EXAMPLE_INPUTS)
    return nodes


def api_graph(name: str, definitions: dict, steps: int = 2) -> dict:
    """The graph as the frontend would queue it, with fewer sampling steps (the tiny models make
    any step count meaningless; the wiring is what is tested)."""
    graph = ui_to_api(load(name), definitions)
    for node in graph.values():
        if node["class_type"] == "RSEditSampler":
            node["inputs"]["steps"] = steps
    return graph


@pytest.mark.parametrize("name", NAMES)
def test_graph_runs_in_the_double(name, double, definitions, tmp_path):
    from comfy_double.runner import run_api_graph

    graph = api_graph(name, definitions)
    outputs = [i for i, n in graph.items() if n["class_type"] in ("SaveImage", "PreviewImage")]
    run = run_api_graph(graph, double, targets=outputs)
    saved = [image for i in outputs for image in run.ui[i]["images"]]
    assert saved, "no image written"
    for node_id in outputs:
        for image in run.ui[node_id]["images"]:
            folder = tmp_path / "output" if image["type"] == "output" else None
            if folder is not None:
                assert (folder / image["subfolder"] / image["filename"]).is_file()
    scene = np.asarray(Image.open(ROOT / "rsedit_core" / "assets" / "sample_scene.png"), dtype=np.float32) / 255
    if name == "rsedit_severity_sweep":
        (stitched,) = [run.value(i) for i, n in graph.items() if n["class_type"] == "ImageStitch"][-1:]
        assert stitched.shape == (1, 512, 3 * 512 + 2 * 8, 3)
    if name == "rsedit_upscale_and_save":
        (scaled,) = [run.value(i) for i, n in graph.items() if n["class_type"] == "ImageScaleBy"]
        assert scaled.shape == (1, 1024, 1024, 3)
    if name == "rsedit_masked_edit":
        (composite,) = [run.value(i) for i, n in graph.items() if n["class_type"] == "ImageCompositeMasked"]
        out = composite[0].numpy()
        # Outside the painted box grown by 6 px the scene is untouched; inside it is the edit.
        assert np.array_equal(out[:190], scene[:190]) and np.array_equal(out[:, :240], scene[:, :240])
        assert np.abs(out[210:390, 260:500] - scene[210:390, 260:500]).mean() > 0.02
    if name == "rsedit_damage_assessment":
        reports = [run.value(i, 6) for i, n in graph.items() if n["class_type"] == "RSEditDamageAssessment"]
        assert len(reports) == 2 and sum("F1_dam" in r for r in reports) == 1
    if name == "rsedit_earthquake":
        assert len(saved) == 2


def test_a_missing_model_fails_the_run_and_the_next_one_works(double, definitions):
    from comfy_double.runner import NodeExecutionError, run_api_graph

    graph = api_graph("rsedit_hurricane_flood", definitions)
    loader = next(i for i, n in graph.items() if n["class_type"] == "RSEditLoader")
    graph[loader]["inputs"]["model"] = "RSEdit-UNet-text-ablation/not-downloaded"
    with pytest.raises(NodeExecutionError) as failed:
        run_api_graph(graph, double, targets=["6"])
    assert "No RSEdit model at 'RSEdit-UNet-text-ablation/not-downloaded'" in failed.value.message["exception_message"]
    good = api_graph("rsedit_hurricane_flood", definitions)
    assert run_api_graph(good, double, targets=["6"]).ui["6"]["images"]


def test_core_node_doubles_match_the_recorded_definitions(definitions):
    from comfy_double import install_comfy_double

    install_comfy_double()
    from comfy_double.core_nodes import NODES

    recorded = core_definitions()
    for cls in NODES:
        ours = cls.GET_NODE_INFO_V1()
        real = recorded[cls.define_schema().node_id]
        assert ours["output"] == real["output"] and ours["input_order"] == real["input_order"]
        hidden = {k: v[0] if isinstance(v, list | tuple) else v for k, v in ours["input"].get("hidden", {}).items()}
        assert hidden == real["input"].get("hidden", {}), cls
        for section in ("required", "optional"):
            for input_name, spec in real["input"].get(section, {}).items():
                kind = ours["input"][section][input_name][0]
                assert kind == spec[0] or (kind == "COMBO" and isinstance(spec[0], list)), (cls, input_name)
                for key in ("default", "min", "max"):
                    if len(spec) > 1 and key in spec[1]:
                        assert ours["input"][section][input_name][1].get(key) == spec[1][key], (cls, input_name, key)


def test_load_image_mask_from_alpha_is_the_painted_box(double):
    from comfy_double.core_nodes import LoadImage
    from comfy_double.runner import run_node

    image, mask = run_node(LoadImage, image="rsedit_sample_scene_masked.png").args
    assert image.shape == (1, 512, 512, 3) and mask.shape == (1, 512, 512)
    # PIL rectangles include both corners: rows 200..400 and columns 250..511.
    assert mask[0, 200:401, 250:512].min() == 1.0 and mask.sum() == 201 * 262
    assert torch.equal(image, run_node(LoadImage, image="rsedit_sample_scene.png").args[0])


def test_node_reference_page_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_node_docs.py"), "--check"], capture_output=True)
    assert done.returncode == 0, done.stdout.decode()
    page = (ROOT / "docs" / "nodes.md").read_text()
    for node_id in ("RSEditLoader", "RSEditTextEncode", "RSEditSourceConditioning", "RSEditSampler",
                    "RSEditDamageLoader", "RSEditDamageAssessment"):  # fmt: skip
        assert f"(`{node_id}`)" in page
