"""Find and load RSEdit editors from a folder, a hub id or a ComfyUI model folder.

The kind of model is read from its configs (``unet/config.json``, ``transformer/config.json``),
never from its name. Weights load from safetensors; pickled ``.bin`` files are read only through
diffusers/transformers with ``weights_only=True``. Code shipped with weights is never imported.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InputError, ModelFormatError, ModelNotFoundError

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_EDITOR_LAYOUT = (
    "an RSEdit / InstructPix2Pix diffusers folder: model_index.json, unet/ (8 input channels), "
    "vae/, text_encoder/, tokenizer/, scheduler/"
)
_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


@dataclass
class EditorModel:
    """A loaded RSEdit editor (U-Net backbone, channel concatenation).

    ``text_max_length`` is the number of text positions (248 for DGTRS-CLIP, 77 for CLIP).
    ``scheduler_config`` is the folder's own scheduler, used when no other is chosen.
    """

    kind: str
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    root: Path
    text_max_length: int
    dtype: torch.dtype
    text_encoder_source: str = "folder"
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"Cannot read the config {path}: {e}. Re-download the model folder.") from e


def is_editor_folder(path: Path) -> bool:
    """True when ``path`` holds a backbone config (``unet/`` or ``transformer/``)."""
    return (path / "unet" / "config.json").is_file() or (path / "transformer" / "config.json").is_file()


def find_model_folders(search_dirs: Iterable[str | os.PathLike]) -> list[str]:
    """Model folders below each search dir, as paths relative to it (``repo/subfolder`` too).

    Used for ComfyUI's ``models/rsedit`` list, where a release with several editors (one per
    text encoder) shows one entry per editor folder.
    """
    found: set[str] = set()
    for base in search_dirs:
        base = Path(base)
        if not base.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(base, followlinks=True):
            here = Path(dirpath)
            if is_editor_folder(here):
                found.add(here.relative_to(base).as_posix())
                dirnames.clear()
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found)


def _download(repo_id: str, subfolder: str | None) -> Path:
    from .errors import require

    hub = require("huggingface_hub", "Loading a model by hub id")
    patterns = [f"{subfolder}/*", "*.json"] if subfolder else None
    try:
        return Path(hub.snapshot_download(repo_id=repo_id, allow_patterns=patterns))
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local cache; unset it or download "
            "the model once with network access"
            if offline
            else "check the id, your network and, for gated repos, `hf auth login`"
        )
        raise ModelNotFoundError(
            f"Could not get '{repo_id}' from the Hugging Face hub: {str(e).rstrip('.')}. {hint}."
        ) from e


def resolve_model_dir(
    spec: str | os.PathLike,
    subfolder: str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
) -> Path:
    """Turn a path, a hub id or a ComfyUI ``models/rsedit`` entry into an editor folder.

    Accepts the editor folder itself, a path to one of its component folders (``.../unet``), or a
    release root that holds exactly one editor folder. ``allow_download=False`` (ComfyUI nodes)
    never reaches the hub.
    """
    spec = str(spec)
    looked: list[str] = []
    candidates = [Path(spec).expanduser()] + [Path(d) / spec for d in search_dirs]
    root = next((c for c in candidates if c.exists()), None)
    looked += [str(c) for c in candidates]
    if root is None and allow_download and _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        root = _download(spec, subfolder)
        looked.append(f"hub:{spec}")
    if root is None:
        raise ModelNotFoundError(
            f"No RSEdit model at '{spec}'. Looked in: {', '.join(looked)}. Expected {_EDITOR_LAYOUT}, "
            "or a hub id such as BiliSakura/RSEdit-UNet-text-ablation with subfolder "
            "DGTRS-CLIP-ViT-L-14. In ComfyUI, put the folder under models/rsedit/."
        )
    if subfolder:
        root = root / subfolder
        if not root.is_dir():
            raise ModelNotFoundError(f"The model has no subfolder '{subfolder}' (looked for {root}).")
    if root.is_file():
        raise ModelFormatError(f"'{root}' is a single file; RSEdit editors are diffusers folders: {_EDITOR_LAYOUT}.")
    if not is_editor_folder(root) and is_editor_folder(root.parent):
        return root.parent
    if not is_editor_folder(root):
        inner = find_model_folders([root])
        if len(inner) == 1:
            return root / inner[0]
        if inner:
            raise ModelNotFoundError(
                f"'{root}' holds several editors: {', '.join(inner)}. Pass one of them "
                "(as a path, or with --subfolder)."
            )
        raise ModelFormatError(
            f"'{root}' is not an RSEdit model folder: it has no unet/ (or transformer/) with a "
            f"config.json. Expected {_EDITOR_LAYOUT}."
        )
    return root


def check_weights(component_dir: Path) -> Path:
    """Return the component's weight file after checking a safetensors header is whole."""
    for name in _WEIGHT_NAMES:
        path = component_dir / name
        if path.is_file():
            break
    else:
        index = sorted(component_dir.glob("*.safetensors.index.json"))
        if index:
            return index[0]
        raise ModelFormatError(
            f"No weights in {component_dir}: expected one of {', '.join(_WEIGHT_NAMES)}. "
            "The download may be incomplete; fetch the folder again."
        )
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except Exception as e:
            raise ModelFormatError(
                f"The weight file {path} ({path.stat().st_size:,} bytes) is corrupt or truncated: {e}. "
                "Delete it and download it again."
            ) from e
    return path


def describe_backbone(root: Path) -> tuple[str, dict]:
    """Read the backbone kind from the configs: ``("unet", config)`` or ``("dit", config)``."""
    if (root / "unet" / "config.json").is_file():
        config = read_config(root / "unet" / "config.json")
        if config.get("_class_name") not in (None, "UNet2DConditionModel"):
            raise ModelFormatError(f"{root / 'unet'} holds a {config.get('_class_name')}, not a UNet2DConditionModel.")
        channels = config.get("in_channels")
        if channels == 4:
            raise ModelFormatError(
                f"{root} is a text-to-image model (its U-Net takes 4 input channels), not an editor. "
                "RSEdit needs a U-Net with 8 input channels (noisy latent + source latent): use the "
                "released RSEdit-UNet folder, or fine-tune this model with training/train.py, which "
                "widens conv_in to 8 channels."
            )
        if channels != 8:
            raise ModelFormatError(
                f"{root / 'unet'} takes {channels} input channels; an RSEdit / InstructPix2Pix "
                "U-Net takes 8 (4 noisy latent + 4 source latent)."
            )
        return "unet", config
    config = read_config(root / "transformer" / "config.json")
    return "dit", config


def _load_component(cls, path: Path, what: str, dtype: torch.dtype):
    check_weights(path)
    try:
        return cls.from_pretrained(path, torch_dtype=dtype)
    except Exception as e:
        raise ModelFormatError(
            f"Could not load the {what} from {path}: {e}. The folder may be incomplete or from an "
            "incompatible library version; download it again."
        ) from e


def load_editor(
    spec: str | os.PathLike,
    *,
    subfolder: str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
    text_encoder: str | os.PathLike | None = None,
    position_table: str = "effective",
) -> EditorModel:
    """Load an RSEdit U-Net editor.

    ``text_encoder`` swaps in another encoder: a raw Long-CLIP/DGTRS-CLIP ``.pt`` or an HF
    ``CLIPTextModel`` folder; its width must match the U-Net's cross-attention width.
    ``position_table`` applies to ``.pt`` files (see :mod:`rsedit_core.longclip`).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if isinstance(dtype, str) and dtype not in DTYPES:
        raise InputError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    root = resolve_model_dir(spec, subfolder, search_dirs, allow_download)
    kind, unet_config = describe_backbone(root)
    if kind != "unet":
        raise ModelFormatError(f"{root} is a DiT (PixArt) editor; this version of RSEdit loads U-Net editors only.")
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        if not (root / part).is_dir():
            raise ModelFormatError(f"{root} has no {part}/ folder. Expected {_EDITOR_LAYOUT}.")
    unet = _load_component(UNet2DConditionModel, root / "unet", "U-Net", torch_dtype)
    vae = _load_component(AutoencoderKL, root / "vae", "VAE", torch_dtype)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    except Exception as e:
        raise ModelFormatError(f"Could not load the tokenizer from {root / 'tokenizer'}: {e}.") from e
    source = "folder"
    if text_encoder is None:
        encoder = _load_component(CLIPTextModel, root / "text_encoder", "text encoder", torch_dtype)
    else:
        from .longclip import load_text_encoder

        encoder = load_text_encoder(text_encoder, position_table=position_table).to(torch_dtype)
        source = str(text_encoder)
    width = encoder.config.hidden_size
    if width != unet_config.get("cross_attention_dim"):
        raise ModelFormatError(
            f"The text encoder is {width}-wide but the U-Net expects {unet_config.get('cross_attention_dim')}-wide "
            "conditioning. Use an encoder of the same width (ViT-L/14 text towers are 768)."
        )
    scheduler_config = read_config(root / "scheduler" / "scheduler_config.json")
    for module in (unet, vae, encoder):
        module.requires_grad_(False).eval().to(device)
    logger.info("Loaded RSEdit U-Net editor from %s (%s)", root, torch_dtype)
    return EditorModel(
        kind=kind,
        unet=unet,
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        root=root,
        text_max_length=encoder.config.max_position_embeddings,
        dtype=torch_dtype,
        text_encoder_source=source,
    )
