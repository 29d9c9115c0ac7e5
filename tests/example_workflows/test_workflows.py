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
from conftest import ROOT, place_file
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
EXAMPLE_INPUTS = ("rsedit_sample_scene.png", "rsedit_sample_scene_masked.png", "rsedit_sample_damage_target.png",
                  "rsedit_sample_scene.tif")  # fmt: skip
GEOTIFF = "rsedit_sample_scene.tif"
# Combo widgets whose options are files on the server: checked against the names below.
DYNAMIC = {("RSEditLoader", "model"), ("RSEditDamageLoader", "checkpoint"), ("LoadImage", "image"),
           ("RSEditLoadGeoTIFF", "image")}  # fmt: skip
EDITORS = ("RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14", "RSEdit-DiT")
WEIGHTS = {
    EDITORS[0]: "RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14/unet/diffusion_pytorch_model.safetensors",
    EDITORS[1]: "RSEdit-DiT/transformer/diffusion_pytorch_model.safetensors",
}
CHANGESTAR = "changestar1x256_vitb_xview2.safetensors"


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
        "rsedit_severity_ladder",
        "rsedit_damage_assessment",
        "rsedit_upscale_and_save",
        "rsedit_masked_edit",
        "rsedit_geotiff_flood",
    } <= set(NAMES)
    for path in FILES:
        with Image.open(path.with_suffix(".jpg")) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (512, 256)


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
    for node in workflow["nodes"]:
        definition = definitions[node["type"]]
        values = widget_values(node, definition)  # raises on a count or extra-value mismatch
        for input_name, kind, options in widget_inputs(definition):
            dynamic = (node["type"], input_name) in DYNAMIC
            assert check_value(input_name, kind, options, values[input_name], dynamic_ok=dynamic) is None
            if dynamic:
                allowed = {"LoadImage": EXAMPLE_INPUTS[:3], "RSEditDamageLoader": (CHANGESTAR,),
                           "RSEditLoadGeoTIFF": (GEOTIFF,)}  # fmt: skip
                assert values[input_name] in allowed.get(node["type"], EDITORS), (node["id"], values[input_name])
        if node["type"] == "RSEditSampler":
            assert node["widgets_values"][1] == "fixed"  # seed 42 kept, so a rerun reproduces the edit


@pytest.mark.parametrize("name", NAMES)
def test_links_join_matching_types(name, definitions):
    workflow = load(name)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for _, origin, slot, target, target_slot, kind in workflow["links"]:
        assert definitions[nodes[origin]["type"]]["output"][slot] == kind
        entry = nodes[target]["inputs"][target_slot]
        socket = entry["name"]
        widgets = {n for n, _, _ in widget_inputs(definitions[nodes[target]["type"]])}
        all_inputs = definitions[nodes[target]["type"]]["input"]
        spec = {**all_inputs.get("required", {}), **all_inputs.get("optional", {})}[socket]
        # A widget takes a link only as the frontend stores it: the socket names its widget.
        widget_ok = socket not in widgets or entry.get("widget") == {"name": socket}
        assert widget_ok and spec[0] in (kind, "*"), (name, origin, target, socket)
    # Every required socket is connected.
    for node in workflow["nodes"]:
        required = definitions[node["type"]]["input"].get("required", {})
        connected = {s["name"] for s in node["inputs"] if s.get("link") is not None}
        widgets = {n for n, _, _ in widget_inputs(definitions[node["type"]])}
        assert set(required) - widgets <= connected, (name, node["id"])


@pytest.mark.parametrize("name", NAMES)
def test_nodes_do_not_overlap(name):
    """Node boxes (with their 30 px title bar) must not cover each other on the canvas."""
    boxes = [(n["id"], n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in load(name)["nodes"]]  # fmt: skip
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
            assert apart, f"nodes {a[0]} and {b[0]} overlap"


@pytest.mark.parametrize("name", NAMES)
def test_model_references_and_no_absolute_paths(name):
    """The loaders name the README's models; the metadata names each editor's denoiser weight file
    (what ComfyUI lists and can fetch) with its file URL on the hub."""
    workflow = load(name)
    readme = (ROOT / "README.md").read_text()
    editors = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "RSEditLoader"]
    assert editors and set(editors) <= set(EDITORS)
    for value in [*editors, *(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "RSEditDamageLoader")]:
        assert value in readme, f"{value} is not in the README models table"
    assert [e["name"] for e in workflow["models"]] == [WEIGHTS[e] for e in dict.fromkeys(editors)]
    for entry in workflow["models"]:
        assert set(entry) == {"name", "url", "directory"} and entry["directory"] == "rsedit"
        assert entry["name"].endswith("/diffusion_pytorch_model.safetensors")
        assert re.fullmatch(
            r"https://huggingface\.co/BiliSakura/[\w.-]+/resolve/main/[\w./-]+\.safetensors", entry["url"]
        )
        component = "/".join(entry["name"].split("/")[-2:])
        assert entry["url"].endswith(component)
    entries = {e["name"]: e for e in workflow["models"]}
    for node in workflow["nodes"]:
        if node["type"] == "RSEditLoader":
            assert node["properties"]["models"] == [entries[WEIGHTS[node["widgets_values"][0]]]]
    text = json.dumps(workflow)
    assert not re.search(r'"(/|[A-Za-z]:\\\\)[^"]*"', text), "absolute path in the workflow"


def test_converter_refuses_what_needs_the_frontend(definitions):
    workflow = load("rsedit_hurricane_flood")
    workflow["nodes"][0]["mode"] = 4
    with pytest.raises(ValueError, match="needs frontend rewiring"):
        ui_to_api(workflow, definitions)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("rsedit_dit_")])
def test_dit_variants_use_the_dit_and_its_scale(name):
    workflow = load(name)
    assert [e["name"] for e in workflow["models"]] == [WEIGHTS["RSEdit-DiT"]]
    samplers = [n for n in workflow["nodes"] if n["type"] == "RSEditSampler"]
    assert samplers and all(n["widgets_values"][3] == 4.5 for n in samplers)


def instruction_texts(workflow: dict, node: dict) -> list[str]:
    """The instruction(s) a text encode node receives: its widget's, or those of the Instruction
    Builder / Severity Ladder linked into it, written by the library from their widget values."""
    from rsedit_core.instructions import build_instruction, severity_ladder

    linked = next((s["link"] for s in node["inputs"] if s["name"] == "instruction" and s.get("link")), None)
    if linked is None:
        return [node["widgets_values"][0]]
    origin = next(n for n in workflow["nodes"] if n["id"] == next(lk[1] for lk in workflow["links"] if lk[0] == linked))
    if origin["type"] == "RSEditInstructionBuilder":
        scenario, severity, counts, keep, extra, short = origin["widgets_values"]
        assert severity != "from counts" and not counts
        return [build_instruction(scenario, severity=severity, keep=keep, extra=extra, short=short)]
    assert origin["type"] == "RSEditSeverityLadder", origin["type"]
    scenario, levels, keep, extra, short = origin["widgets_values"]
    return [text for _, text in severity_ladder(scenario, levels, keep=keep, extra=extra, short=short)]


@pytest.mark.parametrize("name", NAMES)
def test_instructions_are_specific(name):
    """Every instruction says what changes (with counts where buildings are damaged) and what stays;
    U-Net instructions are long (DGTRS-CLIP reads 246 tokens), DiT ones short enough for T5's 119
    (T5 averages ~4 characters per token on English; 400 characters leaves a margin)."""
    workflow = load(name)
    dit = any(n["widgets_values"][0] == "RSEdit-DiT" for n in workflow["nodes"] if n["type"] == "RSEditLoader")
    texts = [
        text for n in workflow["nodes"] if n["type"] == "RSEditTextEncode" for text in instruction_texts(workflow, n)
    ]
    assert texts
    for text in texts:
        assert re.search(r"\b(unchanged|stay|stays|keep|keeps|remain|intact|in place)\b", text), "say what stays"
        if re.search(r"\b(destroyed|damage)\b", text) and "no visible damage" not in text:
            assert re.search(r"\b[Aa]bout \d+\b", text), "give building counts"
        assert (len(text) <= 400) if dit else (len(text.split()) >= 40), (len(text), text)


# Running every graph in the test double ------------------------------------------------------------

UNET_NAME = "RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14"
OUTPUT_TYPES = ("SaveImage", "PreviewImage", "PreviewAny", "RSEditSaveGeoTIFF")


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
    place_file(damage_checkpoint, tmp_path / "models" / "changestar" / CHANGESTAR)
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
    outputs = [i for i, n in graph.items() if n["class_type"] in OUTPUT_TYPES]
    run = run_api_graph(graph, double, targets=outputs)
    saved = [image for i in outputs for image in run.ui[i].get("images", [])]
    assert saved, "no image written"
    for node_id in outputs:
        for image in run.ui[node_id].get("images", []):
            folder = tmp_path / "output" if image["type"] == "output" else None
            if folder is not None:
                assert (folder / image["subfolder"] / image["filename"]).is_file()
    scene = np.asarray(Image.open(ROOT / "rsedit_core" / "assets" / "sample_scene.png"), dtype=np.float32) / 255
    if name == "rsedit_severity_sweep":
        (stitched,) = [run.value(i) for i, n in graph.items() if n["class_type"] == "ImageStitch"][-1:]
        assert stitched.shape == (1, 512, 3 * 512 + 2 * 8, 3)
    if name == "rsedit_severity_sweep":  # built by three Instruction Builders linked into the text encodes
        builders = [i for i, n in graph.items() if n["class_type"] == "RSEditInstructionBuilder"]
        encodes = [n for n in graph.values() if n["class_type"] == "RSEditTextEncode"]
        assert sorted(n["inputs"]["instruction"][0] for n in encodes) == sorted(builders)
    if name == "rsedit_severity_ladder":
        check_ladder(graph, run, saved)
    if name == "rsedit_upscale_and_save":
        (scaled,) = [run.value(i) for i, n in graph.items() if n["class_type"] == "ImageScaleBy"]
        assert scaled.shape == (1, 1024, 1024, 3)
    if name == "rsedit_masked_edit":
        (edited,) = [run.value(i) for i, n in graph.items() if n["class_type"] == "RSEditSampler"]
        out = edited[0].numpy()
        # The sampler's mask (the painted box grown by 6 px: rows 194..406, columns 244..511): outside
        # it the scene is the source bit for bit; inside it is the edit.
        assert np.array_equal(out[:194], scene[:194]) and np.array_equal(out[:, :244], scene[:, :244])
        assert np.array_equal(out[407:], scene[407:])
        assert np.abs(out[210:390, 260:500] - scene[210:390, 260:500]).mean() > 0.02
    if name == "rsedit_damage_assessment":
        shown = [run.ui[i]["text"][0] for i, n in graph.items() if n["class_type"] == "PreviewAny"]
        assert len(shown) == 2 and sum("F1_dam" in text for text in shown) == 1
    if name == "rsedit_earthquake":
        assert len(saved) == 2
    if name == "rsedit_geotiff_flood":
        check_geotiff_output(graph, run, tmp_path)
    if name == "rsedit_urban_growth":  # stages 2 and 3 edit the previous stage's result
        sources = [n for n in graph.values() if n["class_type"] == "RSEditSourceConditioning"]
        fed_by = sorted(graph[n["inputs"]["image"][0]]["class_type"] for n in sources)
        assert fed_by == ["LoadImage", "RSEditSampler", "RSEditSampler"]


def check_ladder(graph: dict, run, saved: list) -> None:
    """The ladder's list ran the text encode, the sampler and Save Image once per level, in order,
    each on that level's instruction."""
    from rsedit_core.instructions import severity_ladder

    (ladder,) = [n for n in graph.values() if n["class_type"] == "RSEditSeverityLadder"]
    (encode,) = [i for i, n in graph.items() if n["class_type"] == "RSEditTextEncode"]
    (sampler,) = [i for i, n in graph.items() if n["class_type"] == "RSEditSampler"]
    expected = severity_ladder(**{k: ladder["inputs"][k] for k in ("scenario", "levels", "keep", "extra", "short")})
    assert [level for level, _ in expected] == ["minor", "moderate", "major", "catastrophic"]
    assert [c.prompt for c in run.outputs[encode][0]] == [text for _, text in expected]
    assert len(run.outputs[sampler][0]) == len(saved) == 4 and len(run.ui[encode]["text"]) == 4
    images = [image for image in run.outputs[sampler][0]]
    assert all(image.shape == (1, 512, 512, 3) for image in images)
    assert len({image.sum().item() for image in images}) == 4  # four instructions, four different edits


def check_geotiff_output(graph: dict, run, tmp_path) -> None:
    """The edit of the sample GeoTIFF was tiled and written on the sample's grid, nodata kept, with
    the graph's instruction and settings as tags."""
    import rasterio

    (save,) = [i for i, n in graph.items() if n["class_type"] == "RSEditSaveGeoTIFF"]
    (sampler_id,) = [i for i, n in graph.items() if n["class_type"] == "RSEditSampler"]
    (text,) = [n for n in graph.values() if n["class_type"] == "RSEditTextEncode"]
    sampler = graph[sampler_id]
    shown = run.ui[save]["text"][0]
    assert shown.startswith("saved rsedit/flood_geotiff_00001_.tif"), shown
    assert "tiled: " in run.ui[sampler_id]["text"][0]  # 768x640 is larger than the 512 px tile
    with (
        rasterio.open(tmp_path / "output" / "rsedit" / "flood_geotiff_00001_.tif") as written,
        rasterio.open(ROOT / "rsedit_core" / "assets" / "sample_scene.tif") as source,
    ):
        assert (written.crs, written.transform, written.width, written.height) == (
            source.crs, source.transform, source.width, source.height
        )  # fmt: skip
        assert (written.count, written.dtypes[0], written.nodata) == (3, "uint16", 0)
        assert np.array_equal(written.dataset_mask(), source.dataset_mask())
        tags = written.tags()
    assert tags["RSEDIT_INSTRUCTION"] == text["inputs"]["instruction"]
    assert tags["RSEDIT_SEED"] == str(sampler["inputs"]["seed"]) and tags["RSEDIT_TILE"] == "512"
    assert tags["RSEDIT_MODEL"] == UNET_NAME and tags["RSEDIT_STRETCH"] == "0,3000"


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
    from comfy_double import install_comfy_double, reset_comfy_double

    install_comfy_double()
    reset_comfy_double()  # not the input folder of an earlier test, which is gone
    from comfy_double.core_nodes import NODES

    recorded = core_definitions()
    for cls in NODES:
        ours = cls.GET_NODE_INFO_V1()
        real = recorded[cls.define_schema().node_id]
        visible = {k: v for k, v in ours["input_order"].items() if k != "hidden"}
        assert ours["output"] == real["output"] and visible == {
            k: v for k, v in real["input_order"].items() if k != "hidden"
        }
        # V3 output nodes always get the prompt/extra_pnginfo hidden inputs; V1 Preview Any has none.
        hidden = {k: v[0] if isinstance(v, list | tuple) else v for k, v in ours["input"].get("hidden", {}).items()}
        assert real["input"].get("hidden", {}).items() <= hidden.items(), cls
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
                    "RSEditLoadGeoTIFF", "RSEditSaveGeoTIFF", "RSEditInstructionBuilder", "RSEditSeverityLadder",
                    "RSEditDamageLoader", "RSEditDamageAssessment"):  # fmt: skip
        assert f"(`{node_id}`)" in page


def test_shipped_inputs_are_what_the_scene_script_draws(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_sample_scene import damage_target, make_scene, masked_scene

    assets = ROOT / "rsedit_core" / "assets"
    for image, asset in ((make_scene(), "sample_scene.png"), (masked_scene(), "sample_scene_masked.png"),
                         (damage_target(), "sample_damage_target.png")):  # fmt: skip
        with Image.open(assets / asset) as shipped:
            assert shipped.mode == image.mode and np.array_equal(np.asarray(shipped), np.asarray(image)), asset


def test_shipped_geotiff_is_what_its_script_writes(tmp_path):
    """The sample GeoTIFF: the script's pixels and metadata (compared as values, not bytes: GDAL
    versions compress differently), 4 bands uint16 in UTM 17N at 10 m, a nodata corner, under 2 MB."""
    import rasterio

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_sample_geotiff import write

    shipped_path = ROOT / "rsedit_core" / "assets" / "sample_scene.tif"
    assert shipped_path.stat().st_size < 2_000_000
    with rasterio.open(shipped_path) as shipped, rasterio.open(write(tmp_path / "sample.tif")) as made:
        assert np.array_equal(shipped.read(), made.read())
        for attribute in ("crs", "transform", "nodata", "dtypes", "descriptions", "colorinterp", "block_shapes"):
            assert getattr(shipped, attribute) == getattr(made, attribute), attribute
        assert shipped.tags() == made.tags() and shipped.profile["compress"] == "deflate"
        assert (shipped.width, shipped.height, shipped.count, shipped.crs.to_epsg()) == (768, 640, 4, 32617)
        assert shipped.res == (10.0, 10.0) and shipped.descriptions == ("blue", "green", "red", "nir")
        invalid = shipped.dataset_mask() == 0
        assert invalid[0, 0] and not invalid[-1, -1] and 0 < invalid.mean() < 0.02


def test_example_inputs_are_copied_once_and_never_overwritten(tmp_path, monkeypatch, caplog):
    sys.path.insert(0, str(ROOT))
    from nodes.example_inputs import EXAMPLE_INPUTS as FILES
    from nodes.example_inputs import install_example_inputs

    assert sorted(p.name for p in install_example_inputs(tmp_path)) == sorted(FILES)
    (tmp_path / "rsedit_sample_scene.png").write_bytes(b"the user's own file")
    assert install_example_inputs(tmp_path) == []
    assert (tmp_path / "rsedit_sample_scene.png").read_bytes() == b"the user's own file"
    assert not list(tmp_path.glob(".*partial*"))
    monkeypatch.setenv("RSEDIT_NO_EXAMPLE_INPUTS", "1")
    assert install_example_inputs(tmp_path / "other") == [] and not (tmp_path / "other").exists()
    monkeypatch.delenv("RSEDIT_NO_EXAMPLE_INPUTS")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with caplog.at_level("WARNING"):
        assert install_example_inputs(blocker) == []
    assert "Could not copy the example input" in caplog.text
