"""Tiny random RSEdit models in the released formats, for tests, smoke runs and benchmarks.

Everything here is built from configs under a fixed seed and saved exactly as the released
weights are laid out (a diffusers InstructPix2Pix folder in safetensors, a CLIP BPE tokenizer with
``vocab.json``/``merges.txt``), so the real loading code runs on it. Outputs made with these
weights are noise: they exercise the code path, never the quality of an edit.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import torch

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# Words the tiny tokenizer learns merges from, so that RS instructions tokenize into a
# realistic mix of whole words and pieces.
_CORPUS = (
    "the a of and to in on with after before flood flooded water coastal area buildings building "
    "collapse collapsed damage damaged destroyed minor major no roads road shoreline river "
    "earthquake hurricane tsunami tornado wildfire fire burned volcanic lava ash urban growth "
    "construction new houses vegetation trees field fields season winter summer snow green "
    "brown roofs roof debris remain intact stay unchanged keep north south east west image scene"
).split()


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character table of GPT-2/CLIP byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += [*range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """A minimal byte-pair-encoding trainer; ties break on the pair's text for determinism."""
    b2u = bytes_to_unicode()
    vocab = Counter()
    for word in words:
        chars = [b2u[b] for b in word.encode("utf-8")]
        chars[-1] += "</w>"
        vocab[tuple(chars)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for symbols, count in vocab.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = Counter()
        for symbols, count in vocab.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += count
        vocab = merged
    return merges


def save_clip_tokenizer(directory: str | Path, model_max_length: int = 248, num_merges: int = 300) -> Path:
    """Write a small CLIP BPE tokenizer in the SD-1.5 file layout and return its folder.

    Vocabulary order follows CLIP's: 256 byte symbols, the same with ``</w>``, one entry per
    merge, then ``<|startoftext|>`` and ``<|endoftext|>`` (the last id is EOS and pad, as in SD-1.5).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    merges = _learn_merges(_CORPUS, num_merges)
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merge_lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    return directory


def tiny_unet_config(in_channels: int = 8, cross_attention_dim: int = 32) -> dict:
    return {
        "sample_size": 8,
        "in_channels": in_channels,
        "out_channels": 4,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def tiny_vae_config() -> dict:
    """Four blocks, so the latent is 1/8 of the image as in Stable Diffusion."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (8, 8, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 64,
    }


def sd_scheduler_config() -> dict:
    """Stable Diffusion 1.5's noise schedule, as its ``scheduler_config.json`` states it."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "prediction_type": "epsilon",
    }


def save_tiny_editor(
    directory: str | Path,
    *,
    seed: int = 0,
    max_positions: int = 248,
    in_channels: int = 8,
    unet_config: dict | None = None,
) -> Path:
    """Build a random InstructPix2Pix-layout U-Net editor and save it as the released folder is.

    ``in_channels=4`` saves a text-to-image U-Net instead (for the "not an editor" error path).
    ``unet_config`` overrides the tiny U-Net (the benchmark uses SD-1.5 sizes).
    """
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory = Path(directory)
    torch.manual_seed(seed)
    tokenizer_dir = save_clip_tokenizer(directory / "tokenizer", model_max_length=max_positions)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_positions,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    config = unet_config or tiny_unet_config(in_channels, text_config.hidden_size)
    unet = UNet2DConditionModel(**config)
    vae = AutoencoderKL(**tiny_vae_config())
    scheduler = EulerDiscreteScheduler(**sd_scheduler_config())
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def save_tiny_text_to_image(directory: str | Path, *, seed: int = 0, max_positions: int = 77) -> Path:
    """A random text-to-image Stable Diffusion folder laid out as ``runwayml/stable-diffusion-v1-5``
    (``StableDiffusionPipeline``, 4-channel U-Net, PNDM scheduler): a fine-tuning base."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    directory = Path(directory)
    editor = save_tiny_editor(directory / "_editor_parts", seed=seed, max_positions=max_positions, in_channels=4)
    parts = StableDiffusionPipeline.from_pretrained(editor, safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=UNet2DConditionModel.from_pretrained(editor / "unet"),
        scheduler=PNDMScheduler(**sd_scheduler_config(), skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    shutil.rmtree(directory / "_editor_parts")
    return directory


def save_t5_tokenizer(directory: str | Path, model_max_length: int = 512, vocab_size: int = 160) -> Path:
    """Train a small SentencePiece unigram model and save it as PixArt's T5 tokenizer folder is
    laid out (``spiece.model`` + ``tokenizer_config.json``; pad 0, EOS 1, UNK 2). Needs sentencepiece."""
    import io

    import sentencepiece as spm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(_CORPUS[i : i + 8]) for i in range(0, len(_CORPUS), 4)] * 8
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (directory / "spiece.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "T5Tokenizer",
        "model_max_length": model_max_length,
        "extra_ids": 0,
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return directory


def tiny_pixart_config(sample_size: int = 8, caption_channels: int = 32) -> dict:
    """A two-block PixArt-alpha transformer; ``sample_size=128`` gives the 1024-class variant."""
    return {
        "sample_size": sample_size,
        "num_layers": 2,
        "num_attention_heads": 2,
        "attention_head_dim": 8,
        "in_channels": 4,
        "out_channels": 8,
        "patch_size": 2,
        "cross_attention_dim": 16,
        "caption_channels": caption_channels,
        "norm_type": "ada_norm_single",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,
    }


def pixart_scheduler_config() -> dict:
    """PixArt-alpha's DPM-Solver++ multistep schedule (linear betas 0.0001..0.02)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "prediction_type": "epsilon",
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "lower_order_final": True,
    }


def save_tiny_dit(directory: str | Path, *, seed: int = 0, transformer_config: dict | None = None) -> Path:
    """Build a random RSEdit-DiT-layout folder (PixArt transformer, T5 encoder, VAE, DPM-Solver)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    directory = Path(directory)
    torch.manual_seed(seed)
    tokenizer = T5Tokenizer.from_pretrained(save_t5_tokenizer(directory / "tokenizer"))
    text_config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=37,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = T5EncoderModel(text_config)
    transformer = PixArtTransformer2DModel(**(transformer_config or tiny_pixart_config()))
    vae = AutoencoderKL(**tiny_vae_config())
    scheduler = DPMSolverMultistepScheduler(**pixart_scheduler_config())
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    # The released folders ship spiece.model only; drop the converted file so that path is exercised.
    (directory / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
    return directory
