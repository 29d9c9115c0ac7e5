"""The sampler's mask and regions inputs on the ComfyUI test double."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import torch
from comfy_double import reset_comfy_double
from conftest import edit_graph

UNET = "RSEdit-UNet-tiny/DGTRS-CLIP-ViT-L-14"


@pytest.fixture
def comfy(pack, tmp_path, tiny_editor_dir):
    import folder_paths

    reset_comfy_double()
    folder_paths.models_dir = str(tmp_path / "models")
    shutil.copytree(tiny_editor_dir, tmp_path / "models" / "rsedit" / UNET)
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


def _constant(node_id, value, kind):
    from comfy_api.latest import io

    class Constant(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id=node_id, inputs=[], outputs=[kind.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput(value)

    return Constant


def _run(comfy, graph, image, masks):
    from comfy_api.latest import io
    from comfy_double.runner import run_api_graph

    extra = [_constant("ImageInput", image, io.Image)]
    extra += [_constant(name, mask, io.Mask) for name, mask in masks.items()]
    return run_api_graph(graph, [*comfy.values(), *extra], targets=["5"])


def test_sampler_mask_keeps_the_source_outside(comfy):
    image = torch.rand(1, 72, 88, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 72, 88)
    mask[:, 10:50, 20:70] = 1
    graph = edit_graph(UNET, {"class_type": "ImageInput", "inputs": {}}, "flood", steps=2)
    graph["6"] = {"class_type": "MaskA", "inputs": {}}
    graph["5"]["inputs"]["mask"] = ["6", 0]
    result = _run(comfy, graph, image, {"MaskA": mask})
    edited = result.value("5", 0)
    outside = mask[0] == 0
    assert torch.equal(edited[0][outside], image[0][outside])
    assert not torch.equal(edited[0][~outside], image[0][~outside])
    text = result.ui["5"]["text"][0]
    assert "masked edit: " in text and "outside: unchanged (PSNR inf, SSIM 1.000)" in text


def test_two_regions_through_rsedit_region(comfy):
    image = torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(1))
    east, west = torch.zeros(1, 64, 96), torch.zeros(1, 64, 96)
    east[..., 60:], west[..., :30] = 1, 1
    graph = edit_graph(UNET, {"class_type": "ImageInput", "inputs": {}}, "flood the east", steps=1)
    graph["7"] = {"class_type": "RSEditTextEncode",
                  "inputs": {"rsedit_model": ["1", 0], "instruction": "burn the west", "negative": ""}}  # fmt: skip
    graph["8"], graph["9"] = {"class_type": "East", "inputs": {}}, {"class_type": "West", "inputs": {}}
    graph["10"] = {"class_type": "RSEditRegion", "inputs": {"conditioning": ["2", 0], "mask": ["8", 0]}}
    graph["11"] = {"class_type": "RSEditRegion",
                   "inputs": {"conditioning": ["7", 0], "mask": ["9", 0], "regions": ["10", 0]}}  # fmt: skip
    graph["5"]["inputs"]["regions"] = ["11", 0]
    result = _run(comfy, graph, image, {"East": east, "West": west})
    edited = result.value("5", 0)[0]
    outside = (east + west)[0] == 0
    assert torch.equal(edited[outside], image[0][outside])
    assert "2 regions, each guided by its own instruction" in result.ui["5"]["text"][0]
    # A mask and regions together are refused, and the next run works.
    graph["5"]["inputs"]["mask"] = ["8", 0]
    from comfy_double.runner import NodeExecutionError

    with pytest.raises(NodeExecutionError, match="either a mask or regions"):
        _run(comfy, graph, image, {"East": east, "West": west})
    del graph["5"]["inputs"]["mask"]
    assert _run(comfy, graph, image, {"East": east, "West": west}).value("5", 0).shape == (1, 64, 96, 3)
