"""Test double of ``comfy.cli_args``.

ComfyUI parses its command line into a module-level ``args`` namespace at import time (an
empty command line when imported as a library). This double holds the defaults of the flags
that the device, memory and preview helpers read; ``--cpu`` is on because the double only runs on
CPU. Tests that simulate other flags set them here and call
``comfy.model_management.configure_from_args()``, which redoes what ComfyUI decides from them at
import time. ``preview_method`` defaults to ``LatentPreviewMethod.NoPreviews`` as in ComfyUI.
"""

from __future__ import annotations

import enum
from argparse import Namespace


class LatentPreviewMethod(enum.Enum):
    """``--preview-method`` values (``none`` is the default)."""

    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


args = Namespace(
    cpu=True,
    gpu_only=False,
    highvram=False,
    normalvram=False,
    lowvram=False,
    novram=False,
    cpu_vae=False,
    disable_smart_memory=False,
    force_fp16=False,
    force_fp32=False,
    fp16_vae=False,
    bf16_vae=False,
    fp32_vae=False,
    fp32_unet=False,
    fp16_unet=False,
    bf16_unet=False,
    fp8_e4m3fn_text_enc=False,
    fp8_e5m2_text_enc=False,
    fp16_text_enc=False,
    fp32_text_enc=False,
    bf16_text_enc=False,
    reserve_vram=None,
    preview_method=LatentPreviewMethod.NoPreviews,
    preview_size=512,
    disable_metadata=False,
    base_directory=None,
    output_directory=None,
    temp_directory=None,
    input_directory=None,
    user_directory=None,
    extra_model_paths_config=None,
    disable_api_nodes=True,
    listen="127.0.0.1",
    port=8188,
)

_DEFAULTS = dict(vars(args))


def _double_reset() -> None:
    """Put every flag back to its default (not part of ComfyUI: the double's reset uses it)."""
    vars(args).clear()
    vars(args).update(_DEFAULTS)
