"""Load an RSEdit editor: the folder is resolved, its backbone read from the configs, and the
backbone loads its denoiser and text parts; the VAE and scheduler are shared."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch

from .backbones import detect_backbone
from .devices import resolve_device, resolve_dtype, torch_dtype
from .editor import EditorModel
from .errors import InputError, ModelFormatError
from .model_folders import resolve_model_dir
from .weights import load_component, read_config

logger = logging.getLogger(__name__)


def load_editor(
    spec: str | os.PathLike,
    *,
    subfolder: str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
    dtype: str | torch.dtype = "fp32",
    text_encoder_dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    text_encoder: str | os.PathLike | None = None,
    position_table: str = "effective",
    t5_max_length: int = 120,
    text_to_image_ok: bool = False,
) -> EditorModel:
    """Load an RSEdit editor: a U-Net (channel concatenation, CLIP text) or a PixArt DiT (token
    concatenation, T5 text), as the folder's configs say.

    ``text_encoder_dtype`` (default: ``dtype``) lets the 4.7B-parameter T5-XXL load in fp16/bf16
    on its own. ``text_encoder`` swaps the U-Net's encoder: a raw Long-CLIP/DGTRS-CLIP ``.pt`` or
    an HF ``CLIPTextModel`` folder of the U-Net's cross-attention width. ``position_table``
    applies to ``.pt`` files (see :mod:`rsedit_core.longclip`). ``t5_max_length`` is the T5
    token budget (PixArt's 120). ``text_to_image_ok`` also reads a plain text-to-image SD folder
    (a fine-tuning base whose U-Net still has 4 input channels). ``device`` (``auto``, ``cpu``,
    ``cuda``, ``cuda:N``, ``mps`` or a ``torch.device``) and the dtypes (``fp32``, ``fp16``, ``bf16``,
    ``auto`` or a floating ``torch.dtype``) are checked before anything is read.
    """
    # Device and dtypes are checked before anything is read, with the CLI's messages.
    device = resolve_device(device)
    weights_dtype = torch_dtype(resolve_dtype(dtype, device))
    text_dtype = weights_dtype if text_encoder_dtype is None else torch_dtype(resolve_dtype(text_encoder_dtype, device))
    root = resolve_model_dir(spec, subfolder, search_dirs, allow_download, text_to_image_ok)
    backbone, config = detect_backbone(root, text_to_image_ok)
    if text_encoder is not None and not backbone.supports_text_encoder_swap:
        raise InputError(
            f"A {backbone.display_name} editor uses its own text encoder; --text-encoder swaps apply to "
            "U-Net editors only."
        )
    parts = backbone.load_parts(
        root,
        config,
        dtype=weights_dtype,
        text_dtype=text_dtype,
        text_encoder=None if text_encoder is None else str(text_encoder),
        position_table=position_table,
        t5_max_length=t5_max_length,
    )
    width, expected = backbone.conditioning_width(config, parts.text_encoder)
    if width != expected:
        raise ModelFormatError(
            f"The text encoder is {width}-wide but the {backbone.display_name} expects {expected}-wide "
            "conditioning. Use an encoder of the same width (ViT-L/14 text towers are 768, T5-XXL 4096)."
        )
    from diffusers import AutoencoderKL

    vae = load_component(AutoencoderKL, root / "vae", "VAE", weights_dtype)
    scheduler_config = read_config(root / "scheduler" / "scheduler_config.json")
    for module in (parts.denoiser, vae, parts.text_encoder):
        module.requires_grad_(False).eval().to(device)
    logger.info("Loaded RSEdit %s editor from %s (%s)", backbone.display_name, root, weights_dtype)
    return EditorModel(
        backbone=backbone,
        denoiser=parts.denoiser,
        vae=vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        scheduler_config=scheduler_config,
        root=root,
        text_max_length=parts.text_max_length,
        dtype=weights_dtype,
        text_encoder_source=parts.text_encoder_source,
    )
