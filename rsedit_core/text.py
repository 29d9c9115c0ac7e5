"""Instruction encoding for both backbones.

- U-Net editors, **DGTRS-CLIP** (248 positions; 77 for plain CLIP): token ids follow SD-1.5's
  ``CLIPTokenizer`` with ``model_max_length`` set to the encoder's position count: pad to that
  length with the EOS id, truncate to SOT + the first ``L-2`` tokens + EOT. The conditioning is
  the full ``last_hidden_state`` ``(B, L, width)``, no mask.
- DiT editors, **T5** as in diffusers' ``PixArtAlphaPipeline`` without caption cleaning: the text
  is lower-cased and stripped, padded/truncated to 120 tokens (the last one EOS), and the
  attention mask is kept and passed to the transformer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbones import Backbone
from .editor import EditorModel, check_editor
from .errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenReport:
    """How an instruction fit the encoder: ``used`` of ``capacity`` content tokens, ``dropped`` cut."""

    prompt_tokens: int
    capacity: int
    dropped_text: str = ""

    @property
    def used(self) -> int:
        return min(self.prompt_tokens, self.capacity)

    @property
    def dropped(self) -> int:
        return max(0, self.prompt_tokens - self.capacity)

    def summary(self) -> str:
        if self.prompt_tokens == 0:
            return (
                f"empty instruction (0/{self.capacity} tokens): only image guidance acts, "
                "so the output stays close to the source"
            )
        text = f"{self.used}/{self.capacity} tokens"
        if self.dropped:
            text += f"; truncated: {self.dropped} tokens dropped ('{self.dropped_text.strip()}')"
        return text


@dataclass
class TextConditioning:
    """Encoded instruction and negative prompt, each ``(1, L, width)``, plus the token report.

    ``mask``/``negative_mask`` are ``(1, L)`` attention masks for T5 (``None`` for CLIP);
    ``backbone`` is the one the encoding is for.
    """

    prompt: str
    negative_prompt: str
    embeds: torch.Tensor
    negative_embeds: torch.Tensor
    report: TokenReport
    backbone: Backbone
    mask: torch.Tensor | None = None
    negative_mask: torch.Tensor | None = None


def count_tokens(model: EditorModel, prompt: str) -> TokenReport:
    """Count the prompt's content tokens (without special tokens) against the encoder's capacity."""
    capacity = model.text_max_length - model.backbone.special_tokens
    ids = model.tokenizer(model.backbone.prepare_text(prompt), add_special_tokens=False, truncation=False).input_ids
    dropped_text = model.tokenizer.decode(ids[capacity:]) if len(ids) > capacity else ""
    return TokenReport(len(ids), capacity, dropped_text)


@torch.no_grad()
def embed_prompts(model: EditorModel, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``last_hidden_state`` of each prompt ``(len(prompts), L, width)`` in the encoder's dtype,
    and the attention mask ``(len(prompts), L)`` for T5 (``None`` for CLIP, which uses none)."""
    tokens = model.tokenizer(
        [model.backbone.prepare_text(prompt) for prompt in prompts],
        padding="max_length",
        max_length=model.text_max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    device = next(model.text_encoder.parameters()).device
    if model.backbone.uses_text_mask:
        mask = tokens.attention_mask.to(device)
        return model.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0], mask
    return model.text_encoder(tokens.input_ids.to(device))[0], None


def encode_text(
    model: EditorModel, prompt: str, negative_prompt: str = "", before_encoding: Callable[[], None] | None = None
) -> TextConditioning:
    """Encode an edit instruction and its negative prompt (``""``, the paper's, by default).

    Encodings are cached on the model per (prompt, negative prompt), so re-running a graph with
    the same text costs nothing; ``before_encoding`` runs only when the encoder is actually needed
    (ComfyUI uses it to bring the encoder to the GPU).
    """
    check_editor(model)
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(value, str):
            raise InputError(f"{name} must be a string; got {type(value).__name__}.")
    key = ("text", prompt, negative_prompt)
    if key in model.cache:
        return model.cache[key]
    if before_encoding is not None:
        before_encoding()
    report = count_tokens(model, prompt)
    if report.dropped:
        logger.warning("Instruction truncated to %d tokens: %s", report.capacity, report.summary())
    negative_report = count_tokens(model, negative_prompt)
    if negative_report.dropped:
        logger.warning("Negative prompt truncated: %s", negative_report.summary())
    embeds, mask = embed_prompts(model, [prompt, negative_prompt])
    masks = (mask[:1], mask[1:]) if mask is not None else (None, None)
    result = TextConditioning(prompt, negative_prompt, embeds[:1], embeds[1:], report, model.backbone, *masks)
    if len(model.cache) > 64:
        model.cache.clear()
    model.cache[key] = result
    return result
