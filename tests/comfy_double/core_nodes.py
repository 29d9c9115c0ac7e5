"""The few ComfyUI core nodes the example workflows use, for running them in the double.

Written from ComfyUI 0.3.64's behaviour and ``/object_info`` (``tests/data/comfyui_core_nodes.json``
is that server's entry for each), not copied from its source. Inputs, types, defaults and outputs
match the real nodes (a test compares them); the pixel maths is a plain re-implementation:
Load Image (RGB + mask from alpha), Save Image, Preview Image, Upscale Image By, Image Composite
Masked, Image Stitch (right only) and Grow Mask.
"""

from __future__ import annotations

import json
import os

import comfy.utils
import folder_paths
import numpy as np
import torch
import torch.nn.functional as F
from comfy_api.latest import io, ui
from PIL import Image, ImageOps


def _input_files() -> list[str]:
    directory = folder_paths.get_input_directory()
    return sorted(f for f in os.listdir(directory) if os.path.isfile(os.path.join(directory, f)))


class LoadImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LoadImage",
            display_name="Load Image",
            category="image",
            inputs=[io.Combo.Input("image", options=_input_files(), upload=io.UploadType.image)],
            outputs=[io.Image.Output("IMAGE"), io.Mask.Output("MASK")],
        )

    @classmethod
    def execute(cls, image: str):
        path = folder_paths.get_annotated_filepath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Invalid image file: {image}")
        with Image.open(path) as opened:
            frame = ImageOps.exif_transpose(opened)
            rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
            if "A" in frame.getbands():
                alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                mask = torch.from_numpy(1.0 - alpha)
            else:
                mask = torch.zeros((64, 64), dtype=torch.float32)
        return io.NodeOutput(torch.from_numpy(rgb)[None], mask[None])


class SaveImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveImage",
            display_name="Save Image",
            category="image",
            inputs=[
                io.Image.Input("images", tooltip="The images to save."),
                io.String.Input("filename_prefix", default="ComfyUI", tooltip="The prefix for the file to save."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, filename_prefix: str):
        folder = os.path.join(folder_paths.get_output_directory(), os.path.dirname(filename_prefix))
        os.makedirs(folder, exist_ok=True)
        results = []
        for i, image in enumerate(images):
            name = f"{os.path.basename(filename_prefix)}_{i + 1:05}_.png"
            array = np.clip(255.0 * image.float().cpu().numpy(), 0, 255).astype(np.uint8)
            Image.fromarray(array).save(os.path.join(folder, name))
            results.append(ui.SavedResult(name, os.path.dirname(filename_prefix), io.FolderType.output))
        return io.NodeOutput(ui=ui.SavedImages(results))


class PreviewImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PreviewImage",
            display_name="Preview Image",
            category="image",
            inputs=[io.Image.Input("images")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor):
        return io.NodeOutput(ui=ui.PreviewImage(images))


class ImageScaleBy(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ImageScaleBy",
            display_name="Upscale Image By",
            category="image/upscaling",
            inputs=[
                io.Image.Input("image"),
                io.Combo.Input("upscale_method", options=["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]),
                io.Float.Input("scale_by", default=1.0, min=0.01, max=8.0, step=0.01),
            ],
            outputs=[io.Image.Output("IMAGE")],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, upscale_method: str, scale_by: float):
        height, width = round(image.shape[1] * scale_by), round(image.shape[2] * scale_by)
        scaled = comfy.utils.common_upscale(image.movedim(-1, 1), width, height, upscale_method, "disabled")
        return io.NodeOutput(scaled.movedim(1, -1))


class ImageCompositeMasked(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ImageCompositeMasked",
            display_name="ImageCompositeMasked",
            category="image",
            inputs=[
                io.Image.Input("destination"),
                io.Image.Input("source"),
                io.Int.Input("x", default=0, min=0, max=16384, step=1),
                io.Int.Input("y", default=0, min=0, max=16384, step=1),
                io.Boolean.Input("resize_source", default=False),
                io.Mask.Input("mask", optional=True),
            ],
            outputs=[io.Image.Output("IMAGE")],
        )

    @classmethod
    def execute(cls, destination, source, x, y, resize_source, mask=None):
        out = destination.clone().movedim(-1, 1)
        src = source.movedim(-1, 1)
        if resize_source:
            src = F.interpolate(src, size=out.shape[2:], mode="bilinear")
        if src.shape[0] < out.shape[0]:
            src = src.repeat(out.shape[0] // src.shape[0] + 1, 1, 1, 1)[: out.shape[0]]
        if mask is None:
            weight = torch.ones_like(src[:, :1])
        else:
            weight = F.interpolate(mask.reshape(-1, 1, *mask.shape[-2:]), size=src.shape[2:], mode="bilinear")
            if weight.shape[0] < out.shape[0]:
                weight = weight.repeat(out.shape[0] // weight.shape[0] + 1, 1, 1, 1)[: out.shape[0]]
        h = min(src.shape[2], out.shape[2] - y)
        w = min(src.shape[3], out.shape[3] - x)
        region = out[:, :, y : y + h, x : x + w]
        weight = weight[:, :, :h, :w]
        out[:, :, y : y + h, x : x + w] = weight * src[:, :, :h, :w] + (1 - weight) * region
        return io.NodeOutput(out.movedim(1, -1))


_SPACING_COLOURS = {"white": 1.0, "black": 0.0, "red": (1.0, 0, 0), "green": (0, 1.0, 0), "blue": (0, 0, 1.0)}


class ImageStitch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ImageStitch",
            display_name="Image Stitch",
            category="image/transform",
            inputs=[
                io.Image.Input("image1"),
                io.Combo.Input("direction", options=["right", "down", "left", "up"], default="right"),
                io.Boolean.Input("match_image_size", default=True),
                io.Int.Input("spacing_width", default=0, min=0, max=1024, step=2),
                io.Combo.Input("spacing_color", options=list(_SPACING_COLOURS), default="white"),
                io.Image.Input("image2", optional=True),
            ],
            outputs=[io.Image.Output("IMAGE")],
        )

    @classmethod
    def execute(cls, image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
        if image2 is None:
            return io.NodeOutput(image1)
        if direction != "right":
            raise NotImplementedError("the comfy double's Image Stitch joins to the right only")
        if match_image_size and image2.shape[1] != image1.shape[1]:
            width = round(image2.shape[2] * image1.shape[1] / image2.shape[1])
            image2 = comfy.utils.common_upscale(image2.movedim(-1, 1), width, image1.shape[1], "lanczos", "disabled")
            image2 = image2.movedim(1, -1)
        parts = [image1]
        if spacing_width:
            colour = torch.tensor(_SPACING_COLOURS[spacing_color], dtype=image1.dtype).expand(3)
            parts.append(colour.expand(image1.shape[0], image1.shape[1], spacing_width, 3))
        parts.append(image2)
        return io.NodeOutput(torch.cat(parts, dim=2))


class GrowMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GrowMask",
            display_name="Grow Mask",
            category="mask",
            inputs=[
                io.Mask.Input("mask"),
                io.Int.Input("expand", default=0, min=-16384, max=16384, step=1),
                io.Boolean.Input("tapered_corners", default=True),
            ],
            outputs=[io.Mask.Output("MASK")],
        )

    @classmethod
    def execute(cls, mask, expand, tapered_corners):
        grown = mask.reshape(-1, 1, *mask.shape[-2:])
        kernel = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]] if tapered_corners else [[1] * 3] * 3).bool()
        for _ in range(abs(expand)):
            padded = F.pad(grown, (1, 1, 1, 1), value=0.0 if expand > 0 else 1.0)
            windows = padded.unfold(2, 3, 1).unfold(3, 3, 1)[..., kernel]
            grown = windows.amax(-1) if expand > 0 else windows.amin(-1)
        return io.NodeOutput(grown.reshape(mask.shape))


NODES = [LoadImage, SaveImage, PreviewImage, ImageScaleBy, ImageCompositeMasked, ImageStitch, GrowMask]


class PreviewAny(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PreviewAny",
            display_name="Preview Any",
            category="utils",
            inputs=[io.AnyType.Input("source")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, source=None):
        if isinstance(source, str):
            value = source
        elif isinstance(source, int | float | bool):
            value = str(source)
        else:
            value = "None" if source is None else json.dumps(source, default=str)
        return io.NodeOutput(ui={"text": (value,)})


NODES = [*NODES, PreviewAny]
