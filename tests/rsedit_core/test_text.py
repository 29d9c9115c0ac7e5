"""DGTRS-CLIP text encoding (248 tokens, SD-1.5 tokenizer rules) and the raw Long-CLIP loader."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from longclip_state import LAYERS, VOCAB, WIDTH, openai_state

from rsedit_core.errors import ModelFormatError
from rsedit_core.loading import load_editor
from rsedit_core.longclip import KEPT_POSITIONS, convert_state_dict, load_longclip_checkpoint, position_table
from rsedit_core.text import count_tokens, encode_text

LONG = " ".join(["buildings near the shoreline collapse after the earthquake"] * 40)


def test_short_prompt_report_and_padding(tiny_editor):
    prompt = "flood the coastal area"
    report = count_tokens(tiny_editor, prompt)
    ids = tiny_editor.tokenizer(prompt, add_special_tokens=False).input_ids
    assert report.prompt_tokens == len(ids) and report.dropped == 0 and report.capacity == 246
    assert report.summary() == f"{len(ids)}/246 tokens"
    text = encode_text(tiny_editor, prompt)
    assert text.embeds.shape == (1, 248, 32) and text.negative_embeds.shape == (1, 248, 32)


def test_long_prompt_truncated_to_sot_246_eot_and_reported(tiny_editor):
    tokenizer = tiny_editor.tokenizer
    ids = tokenizer(LONG, add_special_tokens=False).input_ids
    assert len(ids) > 246
    report = count_tokens(tiny_editor, LONG)
    assert report.dropped == len(ids) - 246 and report.used == 246
    assert "truncated" in report.summary() and f"{len(ids) - 246} tokens dropped" in report.summary()
    text = encode_text(tiny_editor, LONG)
    expected_ids = torch.tensor([[tokenizer.bos_token_id, *ids[:246], tokenizer.eos_token_id]])
    with torch.no_grad():
        expected = tiny_editor.text_encoder(expected_ids).last_hidden_state
    assert torch.allclose(text.embeds, expected, atol=1e-6)


def test_padding_uses_eos_id_and_full_hidden_state(tiny_editor):
    tokenizer = tiny_editor.tokenizer
    ids = tokenizer("wildfire", add_special_tokens=False).input_ids
    padded = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    padded += [tokenizer.eos_token_id] * (248 - len(padded))
    with torch.no_grad():
        expected = tiny_editor.text_encoder(torch.tensor([padded])).last_hidden_state
    assert torch.allclose(encode_text(tiny_editor, "wildfire").embeds, expected, atol=1e-6)


def test_empty_prompt_is_reported(tiny_editor):
    text = encode_text(tiny_editor, "")
    assert text.report.prompt_tokens == 0 and "empty instruction" in text.report.summary()
    assert torch.allclose(text.embeds, text.negative_embeds)


def _openai_forward(state, ids, heads):
    """OpenAI CLIP's text transformer: pre-LN blocks, causal mask, QuickGELU, ln_final."""
    x = state["token_embedding.weight"][ids] + position_table(state)[: ids.shape[1]]
    n = ids.shape[1]
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        h = F.layer_norm(x, (WIDTH,), state[p + "ln_1.weight"], state[p + "ln_1.bias"], 1e-5)
        attn = torch.nn.MultiheadAttention(WIDTH, heads, batch_first=True)
        attn.load_state_dict(
            {k[len(p + "attn.") :]: v for k, v in state.items() if k.startswith(p + "attn.")}, strict=True
        )
        x = x + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = F.layer_norm(x, (WIDTH,), state[p + "ln_2.weight"], state[p + "ln_2.bias"], 1e-5)
        h = F.linear(h, state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
    return F.layer_norm(x, (WIDTH,), state["ln_final.weight"], state["ln_final.bias"], 1e-5)


@pytest.fixture(scope="module")
def longclip_pt(tmp_path_factory):
    path = tmp_path_factory.mktemp("longclip") / "LRSCLIP_ViT-L-14.pt"
    torch.save(openai_state(), path)
    return path


def test_effective_position_table():
    state = openai_state()
    table = position_table(state)
    assert torch.equal(table[:KEPT_POSITIONS], state["positional_embedding"][:KEPT_POSITIONS])
    assert torch.equal(table[KEPT_POSITIONS:], state["positional_embedding_res"][KEPT_POSITIONS:])
    assert torch.equal(position_table(state, "plain"), state["positional_embedding"])


def test_longclip_checkpoint_matches_openai_forward(longclip_pt):
    state = openai_state()
    model = load_longclip_checkpoint(longclip_pt, num_heads=4)
    assert model.config.max_position_embeddings == 248 and model.config.hidden_act == "quick_gelu"
    ids = torch.randint(0, VOCAB, (2, 248), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(ids).last_hidden_state
        expected = _openai_forward(state, ids, heads=4)
    assert (ours - expected).abs().max().item() < 1e-5
    plain = load_longclip_checkpoint(longclip_pt, which="plain", num_heads=4)
    with torch.no_grad():
        assert (plain(ids).last_hidden_state - expected).abs().max().item() > 1e-3


def test_text_projection_is_transposed():
    state = openai_state()
    converted, config = convert_state_dict(state)
    assert torch.equal(converted["text_projection.weight"], state["text_projection"].T)
    assert config["projection_dim"] == 16 and config["num_hidden_layers"] == LAYERS


def test_swap_text_encoder_into_editor(tiny_editor_dir, longclip_pt):
    model = load_editor(tiny_editor_dir, text_encoder=longclip_pt)
    assert model.text_encoder_source == str(longclip_pt) and model.text_max_length == 248
    assert encode_text(model, "flood").embeds.shape == (1, 248, 32)


def test_swap_text_encoder_width_mismatch(tiny_editor_dir, tmp_path):
    torch.save(openai_state(width=64), tmp_path / "wide.pt")
    with pytest.raises(ModelFormatError, match="64-wide but the U-Net expects 32-wide"):
        load_editor(tiny_editor_dir, text_encoder=tmp_path / "wide.pt")


def test_inconsistent_checkpoint_is_a_format_error(tmp_path):
    state = openai_state()
    state["token_embedding.weight"] = torch.zeros(VOCAB, 64)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ModelFormatError, match="inconsistent tensor shapes"):
        load_longclip_checkpoint(tmp_path / "broken.pt")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/rsedit_pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"positional_embedding": _Exploit()}, path)
    with pytest.raises(ModelFormatError, match="weights-only"):
        load_longclip_checkpoint(path)
    assert not os.path.exists("/tmp/rsedit_pwned")
