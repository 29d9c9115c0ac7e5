"""Every edit default, declared once: the library, the CLI, the nodes, the workflow generator and
the docs read them from here (the text guidance is per backbone: ``Backbone.default_text_cfg``).

This module imports nothing heavy, so ``rsedit --help`` can show the defaults at once.
"""

from __future__ import annotations

#: Denoising steps of the paper's quick start; its figures use :data:`PAPER_STEPS`.
STEPS = 50
PAPER_STEPS = 100
#: Image guidance ``s_I`` (both backbones).
IMAGE_CFG = 1.5
#: The paper's seed.
SEED = 42
MAX_SEED = 2**64 - 1
#: ``default`` runs the model folder's own scheduler (Euler for RSEdit-UNet, DPM-Solver for RSEdit-DiT).
SCHEDULER = "default"
NEGATIVE_PROMPT = ""
VARIATIONS = 1
#: In ComfyUI's text-guidance widget this value means "the editor's default" (7.5 U-Net, 4.5 DiT);
#: guidance is off for any text scale <= 1 anyway, so 0 is free to carry that meaning.
TEXT_CFG_FROM_EDITOR = 0.0

SIZE_POLICY = "pad"
SIZE_POLICY_HELP = {
    "pad": "reflect-pad up to the multiple and crop the result back: the whole scene, pixel grid kept",
    "resize": "resize (Lanczos) to the nearest multiple: the whole scene, slightly rescaled",
    "crop": "centre-crop down to the multiple: drops up to one multiple's worth of edge pixels per axis",
}
SIZE_POLICIES = tuple(SIZE_POLICY_HELP)

DTYPE_NAMES = ("fp32", "fp16", "bf16")

#: Damage assessment: the smallest scene side and tile (ChangeStar takes squares, multiples of 32,
#: from 32 up), and the largest side run at once by default (the xView2 training tiles).
DAMAGE_MIN_SIDE = 32
DAMAGE_TILE = 1024
DEVICE_HELP = "auto (CUDA when available), cpu, cuda, cuda:N or mps"
#: The smallest side a source may have: the VAE's 8x downsampling leaves too few latent pixels below it.
MIN_SIZE = 64

#: Large scenes: scenes larger than TILE px (the size the released editors were trained at) are
#: edited in TILE px windows overlapping by TILE_OVERLAP px, denoised together at every step.
TILE = 512
TILE_OVERLAP = 128
MIN_TILE = MIN_SIZE
#: Windows per forward pass (each window runs its three guidance branches).
WINDOW_BATCH = 4


def text_cfg_by_backbone() -> str:
    """``7.5 for U-Net editors, 4.5 for PixArt DiT editors``, from the backbones themselves."""
    from .backbones import BACKBONES

    return ", ".join(f"{b.default_text_cfg:g} for {b.display_name} editors" for b in BACKBONES.values())
