"""Test double of ``comfy.cli_args``.

ComfyUI parses its command line into a module-level ``args`` namespace at import time (an
empty command line when imported as a library). This double holds the defaults of the flags
that the device and memory helpers read; ``--cpu`` is on because the double only runs on CPU.
"""

from __future__ import annotations

from argparse import Namespace

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
    preview_size=512,
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
