"""Reference outputs of torchange's ChangeStar1x256 (ViT-B, s1c5) for the damage-model parity test.

Run with an interpreter that has torchange 0.0.4 and ever-beta (they need torchvision), never
with the project's own environment:

    /work/oracle-venv/bin/python tests/damage_oracle.py OUT_DIR [--sizes 256 512] [--seed 0]

It builds the model from torchange's own config with no pretrained download, perturbs the
zero/one-initialised tensors (position tables, relative-position tables, norms, biases) so that
every code path matters, and writes to OUT_DIR:

- `state_dict.safetensors`: the model's state dict under torchange's key names;
- `io_<size>.safetensors`: `pre`, `post` (uint8, `(1, 3, S, S)`), `x` (the `(1, 6, S, S)`
  input after albumentations' default `Normalize()`, as torchange's xView2 evaluation does),
  and the eval-mode outputs `t1_semantic`, `t2_semantic` (sigmoid) and `change` (softmax);
- `versions.json`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def build_model(seed: int) -> torch.nn.Module:
    from torchange.models.changen2 import changestar_1x256

    torch.manual_seed(seed)
    model = changestar_1x256("vitb", "s1c5", changen2_pretrained=None)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                p.copy_(0.3 * noise)
            elif p.ndim == 1 and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.05 * noise)
        # Default head init gives probabilities near 0.5; wider logits make the comparison sharper.
        model.head.semantic_conv[0].weight.mul_(8.0)
        model.head.change_conv[0].weight.mul_(2.0)
    return model.eval()


def make_inputs(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed + size)
    pre = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    post = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    normalize = A.Normalize()
    halves = [torch.from_numpy(normalize(image=im)["image"]).permute(2, 0, 1) for im in (pre, post)]
    return pre, post, torch.cat(halves, dim=0).unsqueeze(0).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    model = build_model(args.seed)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out_dir / "state_dict.safetensors"))
    for size in args.sizes:
        pre, post, x = make_inputs(size, args.seed)
        with torch.no_grad():
            out = model(x)
        tensors = {
            "pre": torch.from_numpy(pre).permute(2, 0, 1).unsqueeze(0).contiguous(),
            "post": torch.from_numpy(post).permute(2, 0, 1).unsqueeze(0).contiguous(),
            "x": x,
            "t1_semantic": out.t1_semantic_prediction.contiguous(),
            "t2_semantic": out.t2_semantic_prediction.contiguous(),
            "change": out.change_prediction.contiguous(),
        }
        save_file(tensors, str(args.out_dir / f"io_{size}.safetensors"))

    import albumentations
    import torchange

    versions = {
        "torch": torch.__version__,
        "torchange": torchange.__version__,
        "albumentations": albumentations.__version__,
    }
    (args.out_dir / "versions.json").write_text(json.dumps(versions))


if __name__ == "__main__":
    main()
