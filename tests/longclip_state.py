"""A Long-CLIP checkpoint of our own making, in the OpenAI key layout (tests build it, never download it)."""

from __future__ import annotations

import torch

WIDTH, LAYERS, POSITIONS, VOCAB = 32, 2, 248, 727


def openai_state(seed: int = 0, width: int = WIDTH) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    state = {
        "token_embedding.weight": r(VOCAB, width),
        "positional_embedding": r(POSITIONS, width),
        "positional_embedding_res": r(POSITIONS, width),
        "ln_final.weight": 1 + r(width),
        "ln_final.bias": r(width),
        "text_projection": r(width, 16),
        "visual.proj": r(8, 8),
        "logit_scale": torch.tensor(4.6),
    }
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        state |= {
            p + "attn.in_proj_weight": r(3 * width, width),
            p + "attn.in_proj_bias": r(3 * width),
            p + "attn.out_proj.weight": r(width, width),
            p + "attn.out_proj.bias": r(width),
            p + "ln_1.weight": 1 + r(width),
            p + "ln_1.bias": r(width),
            p + "ln_2.weight": 1 + r(width),
            p + "ln_2.bias": r(width),
            p + "mlp.c_fc.weight": r(4 * width, width),
            p + "mlp.c_fc.bias": r(4 * width),
            p + "mlp.c_proj.weight": r(width, 4 * width),
            p + "mlp.c_proj.bias": r(width),
        }
    return state
