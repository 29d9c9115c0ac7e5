"""RSEdit editing nodes (V3): loader, text encode, source conditioning, dual-CFG sampler.

The nodes serve both backbones: a U-Net editor (channel concatenation, DGTRS-CLIP text) and a
PixArt DiT editor (token concatenation, T5 text); each node adapts to the model it is given.

Each ``execute`` unpacks inputs, calls one ``rsedit_core`` function and wraps the result; IMAGE
tensors are converted once here, ``[B, H, W, C]`` <-> the core's ``[B, C, H, W]``.
"""

from __future__ import annotations

import comfy.model_management as mm
import comfy.utils
from comfy_api.latest import io, ui

from ..rsedit_core import defaults
from ..rsedit_core.conditioning import encode_source
from ..rsedit_core.edit import run_edit
from ..rsedit_core.errors import InputError
from ..rsedit_core.loading import load_editor
from ..rsedit_core.preview import latents_to_preview
from ..rsedit_core.schedulers import SCHEDULER_NAMES
from ..rsedit_core.settings import EditSettings
from ..rsedit_core.text import encode_text
from .comfy_models import ComfyEditor, list_models, preview_enabled, preview_size, search_dirs

RSEditModel = io.Custom("RSEDIT_MODEL")
RSEditText = io.Custom("RSEDIT_TEXT")
RSEditSource = io.Custom("RSEDIT_SOURCE")
RSEditRegions = io.Custom("RSEDIT_REGIONS")
CATEGORY = "RSEdit"
DTYPE_OPTIONS = ["auto", *defaults.DTYPE_NAMES]


class RSEditLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditLoader",
            display_name="RSEdit Loader",
            category=f"{CATEGORY}/loaders",
            description="Loads an RSEdit editor folder (diffusers layout, U-Net or PixArt DiT) from models/rsedit.",
            inputs=[
                io.Combo.Input(
                    "model",
                    options=list_models(),
                    tooltip="An editor folder under models/rsedit, e.g. RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14.",
                ),
                io.Combo.Input(
                    "dtype",
                    options=DTYPE_OPTIONS,
                    default="auto",
                    tooltip="Weight precision; auto is fp16 on a GPU and fp32 on the CPU. fp16/bf16 halve memory.",
                ),
                io.Combo.Input(
                    "text_encoder_dtype",
                    options=["same", *DTYPE_OPTIONS[1:]],
                    default="same",
                    optional=True,
                    tooltip="Precision of the text encoder alone; bf16 halves the DiT's 4.7B-parameter T5-XXL.",
                ),
            ],
            outputs=[
                RSEditModel.Output(
                    display_name="rsedit_model", tooltip="The loaded editor, for the text, source and sampler nodes."
                )
            ],
        )

    @classmethod
    def execute(cls, model: str, dtype: str, text_encoder_dtype: str = "same") -> io.NodeOutput:
        device = mm.get_torch_device()
        if dtype == "auto":
            dtype = "fp16" if device.type == "cuda" else "fp32"
        editor = load_editor(
            model,
            search_dirs=search_dirs(),
            allow_download=False,
            dtype=dtype,
            text_encoder_dtype=None if text_encoder_dtype == "same" else text_encoder_dtype,
            device=mm.unet_offload_device(),
        )
        backbone = editor.backbone
        summary = f"{model}: {backbone.display_name}, {backbone.mode}"
        return io.NodeOutput(ComfyEditor.wrap(model, editor), ui=ui.PreviewText(summary))


class RSEditTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditTextEncode",
            display_name="RSEdit DGTRS-CLIP Text Encode",
            category=f"{CATEGORY}/conditioning",
            description="Encodes an edit instruction with the editor's text encoder (U-Net: DGTRS-CLIP, 248 "
            "tokens; DiT: T5, 120 tokens with its mask) and reports how many tokens were used or cut.",
            inputs=[
                RSEditModel.Input("rsedit_model", tooltip="The editor from RSEdit Loader."),
                io.String.Input(
                    "instruction",
                    multiline=True,
                    tooltip="What should change and what should stay; long, specific instructions work best "
                    "(up to 246 tokens with DGTRS-CLIP, 119 with T5; more is cut and reported).",
                ),
                io.String.Input(
                    "negative",
                    multiline=True,
                    default="",
                    tooltip="Text to steer away from; empty, as in the paper, is the default.",
                ),
            ],
            outputs=[
                RSEditText.Output(display_name="conditioning", tooltip="The encoded instruction and negative prompt.")
            ],
        )

    @classmethod
    def execute(cls, rsedit_model: ComfyEditor, instruction: str, negative: str = "") -> io.NodeOutput:
        loaded = []

        def bring_encoder() -> None:
            rsedit_model.load("text_encoder")
            loaded.append(True)

        text = encode_text(rsedit_model.model, instruction, negative, before_encoding=bring_encoder)
        if loaded:
            # Encodings are cached on the model; the encoder (T5-XXL for the DiT) is not needed again.
            rsedit_model.offload("text_encoder")
        return io.NodeOutput(text, ui=ui.PreviewText(f"instruction: {text.report.summary()}"))


class RSEditSourceConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        policies = "; ".join(f"{name}: {text}" for name, text in defaults.SIZE_POLICY_HELP.items())
        return io.Schema(
            node_id="RSEditSourceConditioning",
            display_name="RSEdit Source Conditioning",
            category=f"{CATEGORY}/conditioning",
            description="Encodes the source (pre-change) image to the latent the editor is conditioned on: "
            "channel concatenation for U-Net editors, token concatenation (source left of the target) for DiT "
            f"editors, chosen from the model. Scenes larger than {defaults.TILE} px are encoded by blended VAE "
            "windows, so memory does not grow with the scene.",
            inputs=[
                RSEditModel.Input("rsedit_model", tooltip="The editor from RSEdit Loader."),
                io.Image.Input("image", tooltip="The source scene; a batch edits several scenes of one size."),
                io.Combo.Input(
                    "size_policy",
                    options=list(defaults.SIZE_POLICIES),
                    default=defaults.SIZE_POLICY,
                    tooltip=f"How sides that are not a multiple of 8 px (16 for DiT editors) are handled. {policies}.",
                ),
            ],
            outputs=[
                RSEditSource.Output(
                    display_name="source", tooltip="The encoded source latent and how the image was fitted."
                )
            ],
        )

    @classmethod
    def execute(cls, rsedit_model: ComfyEditor, image, size_policy: str = "pad") -> io.NodeOutput:
        pixels = image.movedim(-1, 1)
        overshoot = []
        if pixels.isfinite().all() and (pixels.min() < 0 or pixels.max() > 1):
            # Some upstream nodes overshoot 0..1 slightly; ComfyUI's IMAGE is 0..1, so clamp and say so.
            overshoot = [f"values {float(pixels.min()):.3g}..{float(pixels.max()):.3g} clamped to 0..1"]
            pixels = pixels.clamp(0, 1)
        rsedit_model.load("vae")
        source = encode_source(rsedit_model.model, pixels, size_policy)
        source.notes[:0] = overshoot
        mode = rsedit_model.model.backbone.mode
        text = "; ".join([mode, *source.notes]) if source.notes else f"{mode}; {image.shape[2]}x{image.shape[1]} as is"
        return io.NodeOutput(source, ui=ui.PreviewText(text))


class RSEditSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditSampler",
            display_name="RSEdit Dual-CFG Sampler",
            category=f"{CATEGORY}/sampling",
            description="Edits the source following the instruction with dual classifier-free guidance "
            "(eps = u + s_T (t - i) + s_I (i - u)).",
            inputs=[
                RSEditModel.Input("rsedit_model", tooltip="The editor from RSEdit Loader."),
                RSEditText.Input("conditioning", tooltip="The instruction from RSEdit DGTRS-CLIP Text Encode."),
                RSEditSource.Input("source", tooltip="The source from RSEdit Source Conditioning."),
                io.Int.Input(
                    "seed",
                    default=defaults.SEED,
                    min=0,
                    max=defaults.MAX_SEED,
                    control_after_generate=True,
                    tooltip="Noise seed; the same seed and settings give the same edit.",
                ),
                io.Int.Input(
                    "steps",
                    default=defaults.STEPS,
                    min=1,
                    max=1000,
                    tooltip=f"Denoising steps; more is slower and finer (paper: {defaults.PAPER_STEPS}; at most the "
                    "model's training timesteps, 1000 for the released editors).",
                ),
                io.Float.Input(
                    "text_cfg",
                    default=defaults.TEXT_CFG_FROM_EDITOR,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip=f"Text guidance s_T: raise it to follow the instruction more. "
                    f"{defaults.TEXT_CFG_FROM_EDITOR:g} = the editor's default ({defaults.text_cfg_by_backbone()}); "
                    "other values up to 1 turn guidance off.",
                ),
                io.Float.Input(
                    "image_cfg",
                    default=defaults.IMAGE_CFG,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                    tooltip="Image guidance s_I: raise it to stay closer to the source scene.",
                ),
                io.Combo.Input(
                    "scheduler",
                    options=list(SCHEDULER_NAMES),
                    default=defaults.SCHEDULER,
                    tooltip="Sampler; 'default' uses the model folder's own (Euler for RSEdit-UNet, DPM-Solver "
                    "multistep for RSEdit-DiT).",
                ),
                io.Int.Input(
                    "variations",
                    default=defaults.VARIATIONS,
                    min=1,
                    max=64,
                    tooltip="Edits per source image, each from different noise.",
                ),
                io.Int.Input(
                    "tile",
                    default=defaults.TILE,
                    min=0,
                    max=8192,
                    step=16,
                    tooltip=f"Scenes larger than this (px) are edited in overlapping windows of this size, denoised "
                    f"together at every step, so there are no seams; 0 = always in one piece. {defaults.TILE} is "
                    "the size the editors were trained at.",
                ),
                io.Int.Input(
                    "tile_overlap",
                    default=0,
                    min=0,
                    max=4096,
                    step=16,
                    tooltip=f"Window overlap in px; 0 = a quarter of the tile, at most {defaults.TILE_OVERLAP}.",
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Where to edit (1 = edit), on the source's grid: outside it the latent follows the source "
                    "at every step and the output is the source pixel for pixel; a soft mask blends inside it only.",
                ),
                RSEditRegions.Input(
                    "regions",
                    optional=True,
                    tooltip="Several (instruction, mask) regions from RSEdit Region, each guided by its own "
                    "instruction; the conditioning input is then not used. Outside all regions the source is kept.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The edited images, at the source's size."),
                io.Latent.Output(
                    display_name="latent",
                    tooltip="The final latents (SD-1.5 latents, unscaled), for native latent nodes.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        rsedit_model: ComfyEditor,
        conditioning,
        source,
        seed: int,
        steps: int,
        text_cfg: float,
        image_cfg: float,
        scheduler: str = defaults.SCHEDULER,
        variations: int = defaults.VARIATIONS,
        tile: int = defaults.TILE,
        tile_overlap: int = 0,
        mask=None,
        regions=None,
    ) -> io.NodeOutput:
        editor = rsedit_model.model
        auto_text = text_cfg == defaults.TEXT_CFG_FROM_EDITOR
        settings = EditSettings(
            steps,
            None if auto_text else text_cfg,
            image_cfg,
            seed,
            scheduler,
            variations,
            tile=tile,
            tile_overlap=tile_overlap or None,
        )
        settings = settings.for_model(editor)  # checked before the models move to the GPU
        rsedit_model.load("denoiser", "vae")
        progress = comfy.utils.ProgressBar(steps)  # the total becomes steps x windows when tiled
        previews, size = preview_enabled(), preview_size()  # the user's --preview-method / --preview-size

        def on_step(step: int, total: int, latents) -> None:
            mm.throw_exception_if_processing_interrupted()
            preview = ("JPEG", latents_to_preview(editor, latents, size), size) if previews else None
            progress.update_absolute(step, total, preview)

        if mask is not None and regions is not None:
            raise InputError("Connect either a mask or regions to the sampler, not both (RSEdit Region takes masks).")
        result = run_edit(editor, conditioning, source, settings, on_step, mask=mask, regions=regions)
        latent = {"samples": (result.latents / editor.vae.config.scaling_factor).float().cpu()}
        return io.NodeOutput(result.images.movedim(1, -1).cpu(), latent, ui=ui.PreviewText("; ".join(result.notes)))


class RSEditRegion(io.ComfyNode):
    """One (instruction, mask) region, appended to the regions chained in (a later region wins
    where regions overlap)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditRegion",
            display_name="RSEdit Region",
            category=f"{CATEGORY}/conditioning",
            description="Pairs an instruction with the mask where it applies, for per-region edits: chain several "
            "and connect the last to the sampler's regions input. Where regions overlap, the later one wins.",
            inputs=[
                RSEditText.Input("conditioning", tooltip="This region's instruction, from RSEdit Text Encode."),
                io.Mask.Input("mask", tooltip="Where this instruction applies (1 = edit), on the source's grid."),
                RSEditRegions.Input(
                    "regions", optional=True, tooltip="Regions made so far (from another RSEdit Region)."
                ),
            ],
            outputs=[RSEditRegions.Output(display_name="regions", tooltip="The regions so far, this one last.")],
        )

    @classmethod
    def execute(cls, conditioning, mask, regions=None) -> io.NodeOutput:
        chained = [*(regions or []), (conditioning, mask)]
        share = float((mask > 0).float().mean())
        return io.NodeOutput(chained, ui=ui.PreviewText(f"region {len(chained) - 1}: {share:.1%} of the scene"))


NODES = [RSEditLoader, RSEditTextEncode, RSEditSourceConditioning, RSEditSampler, RSEditRegion]
