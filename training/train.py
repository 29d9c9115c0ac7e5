"""Fine-tune an RSEdit editor (U-Net or PixArt DiT) on bi-temporal pairs.

    accelerate launch training/train.py --backbone unet --base stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --text-encoder LRSCLIP_ViT-L-14.pt --data /data/RSCC --output-dir runs/rsedit-unet

The defaults are the paper's training recipe: Prodigy (lr 1.0, betas 0.9/0.99, weight
decay 0.01, d0 1e-5, safeguard warm-up, bias correction), constant schedule, grad-norm clip 1.0,
EMA 0.9999, conditioning dropout 0.05, bf16, global batch 32, 30k steps. This script only parses
the flags, sets up logging and calls the library's loop (``rsedit_core.train``: prepare, restore,
run); every RSEdit error becomes a one-line message and exit code 2. See ``training/README.md``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

try:
    import rsedit_core  # noqa: F401 - installed (pip install -e ".[train]")
except ImportError:  # launched by path from a checkout that is not installed: the repository root holds it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsedit_core.errors import RSEditError  # noqa: E402
from rsedit_core.train.args import parse_args  # noqa: E402

logger = logging.getLogger("rsedit.train")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        args = parse_args(argv)
        from rsedit_core.train import train

        train(args)
    except RSEditError as e:
        logger.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
