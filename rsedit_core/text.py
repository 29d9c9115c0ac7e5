"""Instruction encoding with the editor's CLIP text tower (DGTRS-CLIP: 248 positions).

Token ids follow SD-1.5's ``CLIPTokenizer`` with ``model_max_length`` set to the encoder's
position count: pad to that length with the EOS id, truncate to SOT + the first ``L-2`` tokens +
EOT. The conditioning is the encoder's full ``last_hidden_state`` ``(B, L, width)``, no mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .loading import EditorModel

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
    """Encoded instruction and negative prompt, each ``(1, L, width)``, plus the token report."""

    prompt: str
    negative_prompt: str
    embeds: torch.Tensor
    negative_embeds: torch.Tensor
    report: TokenReport


def count_tokens(model: EditorModel, prompt: str) -> TokenReport:
    """Count the prompt's content tokens (without SOT/EOT) against the encoder's capacity."""
    capacity = model.text_max_length - 2
    ids = model.tokenizer(prompt, add_special_tokens=False, truncation=False).input_ids
    dropped_text = model.tokenizer.decode(ids[capacity:]) if len(ids) > capacity else ""
    return TokenReport(len(ids), capacity, dropped_text)


@torch.inference_mode()
def embed_prompts(model: EditorModel, prompts: list[str]) -> torch.Tensor:
    """``last_hidden_state`` of each prompt, ``(len(prompts), L, width)`` in the encoder's dtype."""
    tokens = model.tokenizer(
        prompts,
        padding="max_length",
        max_length=model.text_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = next(model.text_encoder.parameters()).device
    return model.text_encoder(tokens.input_ids.to(device))[0]


def encode_text(model: EditorModel, prompt: str, negative_prompt: str = "") -> TextConditioning:
    """Encode an edit instruction and its negative prompt (``""``, the paper's, by default).

    Encodings are cached on the model per (prompt, encoder) so re-running a graph with the same
    text costs nothing.
    """
    if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
        raise TypeError("prompt and negative_prompt must be strings")
    key = ("text", prompt, negative_prompt)
    if key in model.cache:
        return model.cache[key]
    report = count_tokens(model, prompt)
    if report.dropped:
        logger.warning("Instruction truncated to %d tokens: %s", report.capacity, report.summary())
    negative_report = count_tokens(model, negative_prompt)
    if negative_report.dropped:
        logger.warning("Negative prompt truncated: %s", negative_report.summary())
    embeds = embed_prompts(model, [prompt, negative_prompt])
    result = TextConditioning(prompt, negative_prompt, embeds[:1], embeds[1:], report)
    if len(model.cache) > 64:
        model.cache.clear()
    model.cache[key] = result
    return result
