"""RSEdit Instruction Builder and RSEdit Severity Ladder against the ComfyUI test double: the
library's text as a STRING, the ladder as an output list that runs the text encode and sampler
once per level, and bad input refused with a message saying what to change."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import torch
from comfy_double import reset_comfy_double

from rsedit_core.instructions import SCENARIOS, SEVERITIES, build_instruction, severity_ladder

UNET = "RSEdit-UNet-tiny/DGTRS-CLIP-ViT-L-14"
DIT = "RSEdit-DiT-tiny"


@pytest.fixture
def nodes(pack, tmp_path, tiny_editor_dir, tiny_dit_dir):
    import folder_paths

    reset_comfy_double()
    folder_paths.models_dir = str(tmp_path / "models")
    shutil.copytree(tiny_editor_dir, tmp_path / "models" / "rsedit" / UNET)
    shutil.copytree(tiny_dit_dir, tmp_path / "models" / "rsedit" / DIT)
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


def test_schemas(nodes):
    builder, ladder = nodes["RSEditInstructionBuilder"], nodes["RSEditSeverityLadder"]
    for cls in (builder, ladder):
        schema = cls.define_schema()
        assert schema.category == "RSEdit/conditioning" and schema.description
        assert all(spec.tooltip for spec in schema.inputs)
    info = builder.GET_NODE_INFO_V1()
    assert info["output"] == ["STRING"] and info["output_is_list"] == [False]
    assert info["input"]["required"]["scenario"][1]["options"] == list(SCENARIOS)
    assert info["input"]["required"]["severity"][1]["options"] == [*SEVERITIES, "from counts"]
    assert info["input"]["required"]["severity"][1]["default"] == "major"
    info = ladder.GET_NODE_INFO_V1()
    assert info["output"] == ["STRING", "STRING"] and info["output_is_list"] == [True, True]
    assert info["input"]["required"]["levels"][1]["default"] == "minor,moderate,major,catastrophic"


def test_builder_writes_the_librarys_text(nodes):
    from comfy_double.runner import run_node

    cls = nodes["RSEditInstructionBuilder"]
    widgets = {"counts": "", "keep": "", "extra": "", "short": False}
    output = run_node(cls, scenario="flood", severity="major", **widgets)
    (text,) = output.args
    assert text == build_instruction("flood", severity="major")
    shown = output.ui.as_dict()["text"][0]
    assert shown.startswith(text) and "flood, major (12 destroyed, 20 major, 15 minor)" in shown
    assert "turn on short for RSEdit-DiT" in shown
    counted = run_node(cls, scenario="tsunami", severity="from counts", **{**widgets, "counts": "minor=4,destroyed=1"})
    assert counted.args[0] == build_instruction("tsunami", counts={"minor": 4, "destroyed": 1})
    assert "from counts (1 destroyed, 4 minor; extent: major)" in counted.ui.as_dict()["text"][0]
    short = run_node(cls, scenario="seasonal", severity="minor", **{**widgets, "keep": "the pier", "short": True})
    assert short.args[0] == build_instruction("seasonal", severity="minor", keep="the pier", short=True)
    assert "may exceed" not in short.ui.as_dict()["text"][0]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"severity": "major", "counts": "minor=2"}, "counts are given .* set severity to 'from counts'"),
        ({"severity": "from counts", "counts": "  "}, "severity is 'from counts' but counts is empty"),
        ({"severity": "from counts", "counts": "minor:2"}, "Bad counts entry 'minor:2'"),
        ({"severity": "from counts", "counts": "minor=-2"}, "counts are numbers of buildings, 0 or more"),
        ({"scenario": "urban_growth", "severity": "from counts", "counts": "minor=2"}, "takes no counts"),
    ],
)
def test_builder_bad_input(pack, nodes, inputs, message):
    from comfy_double.runner import run_node

    values = {"scenario": "flood", "counts": "", "keep": "", "extra": "", "short": False, **inputs}
    with pytest.raises(pack.rsedit_core.errors.InputError, match=message):
        run_node(nodes["RSEditInstructionBuilder"], **values)


def test_ladder_outputs_lists(nodes):
    from comfy_double.runner import run_node

    output = run_node(nodes["RSEditSeverityLadder"], scenario="earthquake", levels="minor,catastrophic", keep="",
                      extra="", short=True)  # fmt: skip
    texts, levels = output.args
    assert levels == ["minor", "catastrophic"]
    assert texts == [text for _, text in severity_ladder("earthquake", "minor,catastrophic", short=True)]
    shown = output.ui.as_dict()["text"][0]
    assert shown.startswith(f"minor: {texts[0]}") and "2 levels" in shown


def test_ladder_runs_the_text_encode_and_sampler_once_per_level(nodes):
    """A STRING list linked into the text encode's instruction widget: ComfyUI maps the downstream
    nodes over the list, so each level gets its own encoding and its own edit."""
    from comfy_api.latest import io
    from comfy_double.runner import run_api_graph

    scene = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))

    class ImageInput(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="ImageInput", inputs=[], outputs=[io.Image.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput(scene)

    ladder = {"scenario": "volcano", "levels": "minor,major,catastrophic", "keep": "", "extra": "", "short": True}
    graph = {
        "1": {"class_type": "RSEditLoader", "inputs": {"model": DIT, "dtype": "auto"}},
        "2": {"class_type": "RSEditSeverityLadder", "inputs": ladder},
        "3": {
            "class_type": "RSEditTextEncode",
            "inputs": {"rsedit_model": ["1", 0], "instruction": ["2", 0], "negative": ""},
        },
        "4": {"class_type": "ImageInput", "inputs": {}},
        "5": {
            "class_type": "RSEditSourceConditioning",
            "inputs": {"rsedit_model": ["1", 0], "image": ["4", 0], "size_policy": "pad"},
        },
        "6": {
            "class_type": "RSEditSampler",
            "inputs": {
                "rsedit_model": ["1", 0],
                "conditioning": ["3", 0],
                "source": ["5", 0],
                "seed": 42,
                "steps": 2,
                "text_cfg": 4.5,
                "image_cfg": 1.5,
                "scheduler": "default",
                "variations": 1,
                "tile": 512,
                "tile_overlap": 0,
            },  # fmt: skip
        },
    }
    run = run_api_graph(graph, [*nodes.values(), ImageInput], targets=["6"])
    expected = [text for _, text in severity_ladder(**ladder)]
    assert [c.prompt for c in run.outputs["3"][0]] == expected
    assert len(run.ui["3"]["text"]) == 3 and all("/119 tokens" in t for t in run.ui["3"]["text"])
    images = run.outputs["6"][0]
    assert len(images) == 3 and all(image.shape == (1, 64, 64, 3) for image in images)
    assert not torch.equal(images[0], images[2])
