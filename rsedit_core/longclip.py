"""Raw Long-CLIP / DGTRS-CLIP checkpoints (``LRSCLIP_ViT-L-14.pt``) as HF ``CLIPTextModel``.

The raw file is a flat OpenAI-CLIP state dict with two position tables of 248 rows:
``positional_embedding`` (the stretched original 77 rows) and ``positional_embedding_res``
(the residual table Long-CLIP trains). Long-CLIP's forward pass uses the first 20 rows of the
former and rows 20..247 of the latter, so the effective table is
``cat(positional_embedding[:20], positional_embedding_res[20:])``. Public converters copy only
``positional_embedding``; ``position_table="plain"`` reproduces that for comparison.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .errors import ModelFormatError, ModelNotFoundError
from .weights import check_weights

# Long-CLIP keeps the first 20 positions of the original CLIP table as they were trained.
KEPT_POSITIONS = 20
_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_MAP = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}


def position_table(state: dict[str, torch.Tensor], which: str = "effective") -> torch.Tensor:
    """The ``(L, width)`` position table Long-CLIP's text tower uses (``which="effective"``)."""
    if which not in ("effective", "plain"):
        raise ValueError(f"position_table must be 'effective' or 'plain', got {which!r}")
    base = state["positional_embedding"]
    if which == "plain" or "positional_embedding_res" not in state:
        return base
    res = state["positional_embedding_res"]
    if res.shape != base.shape:
        raise ModelFormatError(
            f"positional_embedding is {tuple(base.shape)} but positional_embedding_res is {tuple(res.shape)}; "
            "a Long-CLIP checkpoint has two tables of the same shape."
        )
    return torch.cat([base[:KEPT_POSITIONS], res[KEPT_POSITIONS:]], dim=0)


def convert_state_dict(
    state: dict[str, torch.Tensor], which: str = "effective"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Map an OpenAI-CLIP text tower to ``CLIPTextModel`` keys; returns (state dict, config kwargs).

    ``in_proj_weight/bias`` split into q, k, v; ``c_fc/c_proj`` -> ``fc1/fc2``;
    ``ln_1/ln_2`` -> ``layer_norm1/2``; ``ln_final`` -> ``final_layer_norm``. The text projection
    (used for pooled CLIP embeddings, not for RSEdit conditioning) is returned transposed as
    ``text_projection.weight`` for ``CLIPTextModelWithProjection``.
    """
    required = ("token_embedding.weight", "positional_embedding", "ln_final.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise ModelFormatError(
            f"Not an OpenAI/Long-CLIP text checkpoint: missing {', '.join(missing)}. "
            "Expected a flat state dict like LRSCLIP_ViT-L-14.pt."
        )
    prefix = "text_model."
    out: dict[str, torch.Tensor] = {
        prefix + "embeddings.token_embedding.weight": state["token_embedding.weight"],
        prefix + "embeddings.position_embedding.weight": position_table(state, which),
        prefix + "final_layer_norm.weight": state["ln_final.weight"],
        prefix + "final_layer_norm.bias": state["ln_final.bias"],
    }
    layers = set()
    for key, value in state.items():
        match = _BLOCK.match(key)
        if not match:
            continue
        index, rest = int(match.group(1)), match.group(2)
        layers.add(index)
        base = f"{prefix}encoder.layers.{index}."
        if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = "weight" if rest.endswith("weight") else "bias"
            for name, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=False):
                out[f"{base}self_attn.{name}_proj.{kind}"] = chunk
        elif rest in _BLOCK_MAP:
            out[base + _BLOCK_MAP[rest]] = value
    if "text_projection" in state:
        out["text_projection.weight"] = state["text_projection"].t()
    vocab, width = state["token_embedding.weight"].shape
    config = {
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": max(1, width // 64),
        "max_position_embeddings": out[prefix + "embeddings.position_embedding.weight"].shape[0],
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
        "pad_token_id": vocab - 1,
    }
    if "text_projection" in state:
        config["projection_dim"] = state["text_projection"].shape[1]
    return out, config


def load_longclip_checkpoint(path: str | os.PathLike, which: str = "effective", num_heads: int | None = None):
    """Load a raw ``.pt`` Long-CLIP checkpoint's text tower as a ``CLIPTextModel`` (fp32).

    The file is read with ``weights_only=True``: a pickle that tries to run code is refused.
    ``num_heads`` overrides OpenAI CLIP's rule of one head per 64 channels.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelFormatError(
            f"Could not read {path} as a weights-only PyTorch checkpoint: {e}. RSEdit never runs "
            "code from pickles; if this is a full pickled model, save its state_dict instead."
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    converted, config = convert_state_dict(state, which)
    if num_heads is not None:
        config["num_attention_heads"] = num_heads
    converted.pop("text_projection.weight", None)
    model = CLIPTextModel(CLIPTextConfig(**config))
    # transformers 4 nests the tower under ``text_model.``; transformers 5 does not.
    if not any(key.startswith("text_model.") for key in model.state_dict()):
        converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False)
    except RuntimeError as e:
        raise ModelFormatError(f"{path} has inconsistent tensor shapes for a CLIP text tower: {e}") from e
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelFormatError(
            f"{path} does not map onto a CLIP text tower: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model.eval()


def load_text_encoder(spec: str | os.PathLike, position_table: str = "effective"):
    """A text encoder from a raw ``.pt``/``.pth`` Long-CLIP file or an HF ``CLIPTextModel`` folder."""
    from transformers import CLIPTextModel

    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"No text encoder at {path}. Pass a Long-CLIP .pt (e.g. LRSCLIP_ViT-L-14.pt) or a "
            "folder with a CLIPTextModel config.json and weights."
        )
    if path.is_file():
        return load_longclip_checkpoint(path, position_table)
    folder = path / "text_encoder" if (path / "text_encoder" / "config.json").is_file() else path
    check_weights(folder)
    try:
        return CLIPTextModel.from_pretrained(folder).eval()
    except Exception as e:
        raise ModelFormatError(f"Could not load a CLIPTextModel from {folder}: {e}") from e
