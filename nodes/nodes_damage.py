"""Damage assessment nodes (V3): a ChangeStar1x256 loader and RSEdit Damage Assessment."""

from __future__ import annotations

import os

import comfy.model_management as mm
import folder_paths
import numpy as np
from comfy_api.latest import io, ui

from ..rsedit_core import defaults
from ..rsedit_core.damage import (
    assess,
    check_ground_truth,
    check_tile,
    colour_map,
    damage_scores,
    load_damage_model,
    overlay,
    read_damage_map,
)
from ..rsedit_core.damage.inference import MIN_SIDE, default_overlap
from ..rsedit_core.damage.metrics import DAMAGE_CLASS_NAMES
from ..rsedit_core.devices import DTYPES
from ..rsedit_core.errors import InputError
from .comfy_models import ComfyModule

DAMAGE_FOLDER = "changestar"
EXTENSIONS = (".pth", ".pt", ".safetensors")
RSEditDamageModel = io.Custom("RSEDIT_DAMAGE_MODEL")
CATEGORY = "RSEdit/damage"


def register_damage_folder() -> None:
    folder_paths.add_model_folder_path(DAMAGE_FOLDER, os.path.join(folder_paths.models_dir, DAMAGE_FOLDER))


def list_damage_models() -> list[str]:
    try:
        names = folder_paths.get_filename_list(DAMAGE_FOLDER)
    except KeyError:
        return []
    return sorted(name for name in names if name.lower().endswith(EXTENSIONS))


class RSEditDamageLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditDamageLoader",
            display_name="RSEdit Damage Model Loader",
            category=CATEGORY,
            description="Loads the ChangeStar1x256 building-damage model (Changen2, xView2) from models/changestar.",
            inputs=[
                io.Combo.Input(
                    "checkpoint",
                    options=list_damage_models(),
                    tooltip="A ChangeStar1x256 checkpoint (.pth or .safetensors) in models/changestar.",
                ),
                io.Combo.Input(
                    "dtype",
                    options=["auto", *DTYPES],
                    default="auto",
                    tooltip="auto: fp16 on a GPU, fp32 on the CPU; fp16/bf16 halve memory and time on GPUs.",
                ),
            ],
            outputs=[
                RSEditDamageModel.Output(
                    display_name="damage_model", tooltip="The loaded ChangeStar1x256, for RSEdit Damage Assessment."
                )
            ],
        )

    @classmethod
    def execute(cls, checkpoint: str, dtype: str = "auto") -> io.NodeOutput:
        if dtype == "auto":
            dtype = "fp16" if mm.get_torch_device().type == "cuda" else "fp32"
        path = folder_paths.get_full_path_or_raise(DAMAGE_FOLDER, checkpoint)
        model = load_damage_model(path, device=mm.unet_offload_device(), dtype=DTYPES[dtype])
        return io.NodeOutput(ComfyModule.wrap(model))


def _size(image) -> str:
    """``WxH`` of a ComfyUI IMAGE/MASK batch ``(B, H, W[, C])``."""
    return f"{image.shape[2]}x{image.shape[1]}"


def _check_pair(pre, post) -> None:
    """Pre and post must be the same size (and batch length) before anything runs."""
    if pre.shape[1:3] != post.shape[1:3]:
        raise InputError(
            f"RSEdit Damage Assessment: pre and post differ in size: pre is {_size(pre)}, post is {_size(post)} "
            "(width x height). Damage is assessed pixel by pixel, so both must be the same size: feed the edit's "
            f"source image as pre, or put an Upscale Image node (width {pre.shape[2]}, height {pre.shape[1]}, "
            "crop disabled) on the post input."
        )
    if pre.shape[0] != post.shape[0]:
        raise InputError(
            f"RSEdit Damage Assessment: {pre.shape[0]} pre image(s) but {post.shape[0]} post image(s); give one post "
            "image per pre image (batch lengths must match)."
        )
    if min(pre.shape[1:3]) < MIN_SIDE:
        raise InputError(
            f"RSEdit Damage Assessment: the scene is {_size(pre)}; "
            f"damage assessment needs at least {MIN_SIDE} px a side."
        )


def _ground_truth(image, mask, pre):
    """The ground-truth class map ``(B, H, W)`` from an IMAGE or MASK input (one map serves a batch),
    checked against the scene's size and for xView2 class values."""
    source, name = (image, "ground_truth") if image is not None else (mask, "ground_truth_mask")
    if source is None:
        return None
    batch = pre.shape[0]
    if source.shape[1:3] != pre.shape[1:3]:
        raise InputError(
            f"RSEdit Damage Assessment: {name} is {_size(source)} but the scene (pre) is {_size(pre)} (width x "
            "height). The ground truth is scored pixel by pixel: give this scene's own damage PNG, unresized."
        )
    if source.shape[0] not in (1, batch):
        raise InputError(
            f"RSEdit Damage Assessment: {name} holds {source.shape[0]} maps for {batch} scene(s); give one map per "
            "scene, or a single map for all."
        )
    maps = np.stack([read_damage_map(item) for item in source])
    check_ground_truth(maps, name=name)
    return np.repeat(maps, batch, axis=0) if maps.shape[0] == 1 and batch > 1 else maps


def _report(result, scores) -> str:
    fractions = result.class_fractions()
    building = result.building_fraction()
    lines = [f"building pixels: {building:.1%} of the scene (the model's building output)"]
    if building > 0:
        lines += [f"  {name}: {fractions[name] / building:.1%} of buildings" for name in DAMAGE_CLASS_NAMES[1:]]
        unclassed = float((result.building & (result.damage == 0)).double().mean()) / building
        if unclassed > 0:
            lines.append(f"  change class 0: {unclassed:.1%} of buildings (damage 0 in the map, still buildings)")
    lines += result.notes
    if scores is not None:
        per_class = ", ".join(f"{name} {value:.4f}" for name, value in scores.per_class.items())
        lines += [
            f"F1_loc {scores.f1_loc:.4f}  F1_dam {scores.f1_dam:.4f}  score {scores.score:.4f}",
            "(F1_loc on the building output, as torchange / the xView2 evaluator score it)",
            f"per-class F1: {per_class}",
            f"weighted F1 {scores.f1_weighted:.4f}",
        ]
    return "\n".join(lines)


class RSEditDamageAssessment(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditDamageAssessment",
            display_name="RSEdit Damage Assessment",
            category=CATEGORY,
            description="Maps buildings and their damage (no / minor / major / destroyed) between a pre and a post "
            "image with ChangeStar1x256; with a ground-truth map it reports xView2 F1 scores.",
            inputs=[
                RSEditDamageModel.Input("damage_model", tooltip="From RSEdit Damage Model Loader."),
                io.Image.Input("pre", tooltip="The pre-disaster scene (the edit's source)."),
                io.Image.Input("post", tooltip="The post-disaster scene, usually the edited image; same size as pre."),
                io.Image.Input(
                    "ground_truth",
                    optional=True,
                    tooltip="Optional 0-4 damage PNG loaded with Load Image: its red channel x 255 gives the classes "
                    "(0 background, 1 no, 2 minor, 3 major, 4 destroyed; 255 unclassified, ignored).",
                ),
                io.Mask.Input(
                    "ground_truth_mask",
                    optional=True,
                    tooltip="Alternative to ground_truth: the same PNG loaded as a mask (Load Image (as Mask), red).",
                ),
                io.Int.Input(
                    "tile",
                    default=defaults.DAMAGE_TILE,
                    min=defaults.DAMAGE_MIN_SIDE,
                    max=4096,
                    step=32,
                    tooltip=f"Largest side run at once; larger scenes are tiled ({defaults.DAMAGE_TILE} = the xView2 "
                    "training tiles).",
                ),
            ],
            outputs=[
                io.Image.Output(
                    display_name="overlay", tooltip="The post image with buildings tinted by class, and a legend."
                ),
                io.Image.Output(display_name="damage_map", tooltip="The decoded class map in the legend colours."),
                io.Mask.Output(display_name="no_damage", tooltip="1 on buildings assessed as not damaged."),
                io.Mask.Output(display_name="minor_damage", tooltip="1 on buildings with minor damage."),
                io.Mask.Output(display_name="major_damage", tooltip="1 on buildings with major damage."),
                io.Mask.Output(display_name="destroyed", tooltip="1 on destroyed buildings."),
                io.String.Output(
                    display_name="report", tooltip="Class shares, and xView2 F1 scores when a ground truth is given."
                ),
            ],
        )

    @classmethod
    def execute(
        cls, damage_model, pre, post, ground_truth=None, ground_truth_mask=None, tile: int = defaults.DAMAGE_TILE
    ) -> io.NodeOutput:
        # Everything checkable is checked before the model is moved to the GPU.
        check_tile(tile, option="tile")
        _check_pair(pre, post)
        truth = _ground_truth(ground_truth, ground_truth_mask, pre)
        damage_model.load()
        pre_rgb, post_rgb = pre[..., :3].movedim(-1, 1), post[..., :3].movedim(-1, 1)
        result = assess(damage_model.model, pre_rgb, post_rgb, tile=tile, overlap=default_overlap(tile))
        # The assessment carries the building output: localisation is scored on it, not on damage > 0.
        scores = None if truth is None else damage_scores(result, truth)
        masks = [(result.damage == c).float() for c in range(1, 5)]
        report = _report(result, scores)
        return io.NodeOutput(
            overlay(post_rgb, result.damage).movedim(1, -1),
            colour_map(result.damage).movedim(1, -1),
            *masks,
            report,
            ui=ui.PreviewText(report),
        )


NODES = [RSEditDamageLoader, RSEditDamageAssessment]
