"""Text conditioning for training batches: encoded on the fly, or looked up in a disk cache.

The frozen text encoder gives the same embedding for a caption every time, so the captions of a
dataset can be encoded once (``--text-embeddings-cache DIR``) and the encoder released: for the
DiT that frees the 4.7B-parameter T5-XXL from the GPU for the whole run. The cache is sharded
safetensors, memory-mapped on read. T5 embeddings are stored up to the last unmasked token and
zero-padded back on read, which is exact because the DiT's cross-attention masks those positions;
CLIP embeddings (no mask) are stored whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..editor import EditorModel
from ..text import embed_prompts
from .objective import TextBatch

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
SHARD_SIZE = 512


def encoder_identity(model: EditorModel) -> dict:
    """What a cached embedding depends on: the encoder weights' origin, its dtype and length."""
    return {
        "kind": model.backbone.name,
        "model": str(model.root),
        "text_encoder": model.text_encoder_source,
        "max_length": model.text_max_length,
        "dtype": str(model.text_encoder.dtype),
    }


def caption_key(caption: str) -> str:
    return hashlib.sha1(caption.encode("utf-8")).hexdigest()


class TextEncoderFeed:
    """Encodes each batch's captions with the (frozen) text encoder."""

    def __init__(self, model: EditorModel) -> None:
        self.model = model
        self._empty = embed_prompts(model, [""])

    def __call__(self, captions: list[str], device: torch.device) -> TextBatch:
        embeds, mask = embed_prompts(self.model, list(captions))
        empty, empty_mask = self._empty
        return TextBatch(
            embeds.to(device),
            None if mask is None else mask.to(device),
            empty.to(device),
            None if empty_mask is None else empty_mask.to(device),
        )


class CachedTextFeed:
    """Looks captions up in a cache written by :func:`build_text_cache`."""

    def __init__(self, directory: str | os.PathLike) -> None:
        from safetensors import safe_open

        self.directory = Path(directory)
        index = json.loads((self.directory / INDEX_FILE).read_text(encoding="utf-8"))
        self.length = index["max_length"]
        self.masked = index["masked"]
        self.entries = index["entries"]
        self._open = {name: safe_open(str(self.directory / name), framework="pt") for name in index["shards"]}

    def _one(self, caption: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        shard, key = self.entries[caption_key(caption)]
        stored = self._open[shard].get_tensor(key)
        if not self.masked:
            return stored, None
        embeds = stored.new_zeros((self.length, stored.shape[-1]))
        embeds[: stored.shape[0]] = stored
        mask = torch.zeros(self.length, dtype=torch.long)
        mask[: stored.shape[0]] = 1
        return embeds, mask

    def __call__(self, captions: list[str], device: torch.device) -> TextBatch:
        rows = [self._one(c) for c in captions]
        empty, empty_mask = self._one("")
        embeds = torch.stack([r[0] for r in rows]).to(device)
        if not self.masked:
            return TextBatch(embeds, None, empty[None].to(device), None)
        mask = torch.stack([r[1] for r in rows]).to(device)
        return TextBatch(embeds, mask, empty[None].to(device), empty_mask[None].to(device))


def cache_is_valid(directory: Path, identity: dict, captions: set[str]) -> bool:
    index_path = directory / INDEX_FILE
    if not index_path.is_file():
        return False
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if index.get("identity") != identity:
        logger.info("The text-embedding cache in %s was made by another encoder; rebuilding it", directory)
        return False
    return all(caption_key(c) in index["entries"] for c in captions)


def build_text_cache(
    model: EditorModel,
    captions: Iterable[str],
    directory: str | os.PathLike,
    batch_size: int = 32,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Encode every distinct caption (and the empty prompt) into ``directory``; reuse a valid cache.

    With several processes each encodes its share (so none waits long at a barrier) into shards of
    its own, and the main process (``rank`` 0) writes the index last: a cache whose build was
    interrupted has no index and is rebuilt, never half-used.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    unique = sorted(set(captions) | {""})
    identity = encoder_identity(model)
    if cache_is_valid(directory, identity, set(unique)):
        logger.info("Reusing the text-embedding cache in %s (%d captions)", directory, len(unique))
        return directory
    barrier()  # every process has seen the old index before it goes
    if rank == 0:
        (directory / INDEX_FILE).unlink(missing_ok=True)
        directory.mkdir(parents=True, exist_ok=True)
    barrier()
    masked = model.backbone.uses_text_mask
    mine = unique[rank::world_size]
    for start in range(0, len(mine), SHARD_SIZE):
        chunk = mine[start : start + SHARD_SIZE]
        tensors = {}
        for offset in range(0, len(chunk), batch_size):
            part = chunk[offset : offset + batch_size]
            embeds, mask = embed_prompts(model, part)
            for i, caption in enumerate(part):
                row = embeds[i] if not masked else embeds[i][: int(mask[i].sum())]
                tensors[caption_key(caption)] = row.detach().to("cpu").contiguous()
        save_file(tensors, str(directory / f"shard-r{rank:03d}-{start // SHARD_SIZE:05d}.safetensors"))
    barrier()
    if rank == 0:
        entries: dict[str, tuple[str, str]] = {}
        shards = sorted(p.name for p in directory.glob("shard-r*.safetensors"))
        from safetensors import safe_open

        for name in shards:
            with safe_open(str(directory / name), framework="pt") as f:
                entries.update({key: (name, key) for key in f.keys()})
        index = {"identity": identity, "max_length": model.text_max_length, "masked": masked, "shards": shards}
        index["entries"] = entries
        partial = directory / (INDEX_FILE + ".partial")
        partial.write_text(json.dumps(index), encoding="utf-8")
        os.replace(partial, directory / INDEX_FILE)
        logger.info("Cached %d caption embeddings in %s", len(unique), directory)
    barrier()
    return directory
