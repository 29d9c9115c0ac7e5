"""Find and load RSEdit editors from a folder, a hub id or a ComfyUI model folder.

The kind of model is read from its configs (``unet/config.json``, ``transformer/config.json``),
never from its name. Weights load from safetensors; pickled ``.bin`` files are read only through
diffusers/transformers with ``weights_only=True``. Code shipped with weights is never imported.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InputError, MissingDependencyError, ModelFormatError, ModelNotFoundError

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_EDITOR_LAYOUT = (
    "an RSEdit diffusers folder: model_index.json, unet/ (8 input channels) or transformer/ "
    "(PixArt), vae/, text_encoder/, tokenizer/, scheduler/"
)
_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


@dataclass
class EditorModel:
    """A loaded RSEdit editor.

    ``kind`` is ``"unet"`` (channel concatenation, CLIP text) or ``"dit"`` (PixArt, token
    concatenation, T5 text); ``denoiser`` is the U-Net or the transformer. ``text_max_length`` is
    the number of text positions (248 for DGTRS-CLIP, 77 for CLIP, 120 for PixArt's T5).
    ``scheduler_config`` is the folder's own scheduler, used when no other is chosen.
    """

    kind: str
    denoiser: Any
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
        return next(self.denoiser.parameters()).device

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"Cannot read the config {path}: {e}. Re-download the model folder.") from e


def is_editor_folder(path: Path) -> bool:
    """True when ``path`` holds a backbone config (``unet/`` or ``transformer/``) and is not a
    training checkpoint (which holds only the trained model)."""
    has_backbone = (path / "unet" / "config.json").is_file() or (path / "transformer" / "config.json").is_file()
    return has_backbone and not (path / "training_state.json").is_file()


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


# What an editor (or a fine-tuning base) needs from a hub repo: the component folders' configs,
# tokenizer files and safetensors weights. SD repos also hold .ckpt, fp16, non-EMA and pickled
# copies of every weight (tens of GB), which are never read.
_HUB_SKIP = ["*.ckpt", "*.bin", "*.pth", "*.pt", "*.msgpack", "*.onnx*", "*.fp16.*", "*non_ema*", "*emaonly*"]


def _hub_patterns(subfolder: str | None) -> list[str]:
    prefix = f"{subfolder}/" if subfolder else ""
    parts = ["*.json", "*.txt", "*.model", "*.safetensors"]
    return [f"{prefix}model_index.json", *(f"{prefix}*/{part}" for part in parts), "*.json"]


def _download(repo_id: str, subfolder: str | None) -> Path:
    from .errors import require

    hub = require("huggingface_hub", "Loading a model by hub id")
    try:
        return Path(
            hub.snapshot_download(repo_id=repo_id, allow_patterns=_hub_patterns(subfolder), ignore_patterns=_HUB_SKIP)
        )
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
    if (root / "training_state.json").is_file():
        raise ModelFormatError(
            f"'{root}' is a training checkpoint, which holds only the trained model (and its EMA). Load the "
            f"run's editor/ folder ({root.parent / 'editor'}), written when training ends."
        )
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


def _pixart_refusal(root: Path, config: dict) -> str | None:
    """Why a transformer folder is not an RSEdit-DiT backbone, or None if it is one."""
    name = config.get("_class_name")
    # PixArt-alpha's hub folders predate the class and were saved as a Transformer2DModel with
    # adaLN-single; diffusers loads those as a PixArtTransformer2DModel.
    legacy = name == "Transformer2DModel" and config.get("norm_type") == "ada_norm_single"
    if name != "PixArtTransformer2DModel" and not legacy:
        return (
            f"{root / 'transformer'} holds a {name}; RSEdit's DiT editor is a PixArtTransformer2DModel "
            "(PixArt-alpha XL-2 512) conditioned by token concatenation."
        )
    index = read_config(root / "model_index.json") if (root / "model_index.json").is_file() else {}
    if "Sigma" in str(index.get("_class_name", "")):
        return (
            f"{root} is a PixArt-Sigma model. RSEdit-DiT is built on PixArt-alpha (SD VAE, 120-token T5); "
            "Sigma uses another VAE and 300 tokens and was never trained to edit, so it is refused."
        )
    if config.get("use_additional_conditions") or config.get("sample_size") == 128:
        return (
            f"{root} is a 1024-px PixArt (sample_size {config.get('sample_size')}, resolution and aspect-ratio "
            "conditioning). RSEdit-DiT is built on the 512-px PixArt-alpha (sample_size 64), and those size "
            "conditions are undefined for the 2:1 source+target canvas, so it is refused."
        )
    if config.get("in_channels", 4) != 4:
        return f"{root / 'transformer'} takes {config.get('in_channels')} channels; token concatenation needs 4."
    return None


def describe_backbone(root: Path, text_to_image_ok: bool = False) -> tuple[str, dict]:
    """Read the backbone kind from the configs: ``("unet", config)`` or ``("dit", config)``.

    ``text_to_image_ok`` accepts a 4-channel text-to-image U-Net (a fine-tuning base).
    """
    if (root / "unet" / "config.json").is_file():
        config = read_config(root / "unet" / "config.json")
        if config.get("_class_name") not in (None, "UNet2DConditionModel"):
            raise ModelFormatError(f"{root / 'unet'} holds a {config.get('_class_name')}, not a UNet2DConditionModel.")
        channels = config.get("in_channels")
        if channels == 4 and text_to_image_ok:
            return "unet", config
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
    reason = _pixart_refusal(root, config)
    if reason:
        raise ModelFormatError(reason)
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


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package of a dotted name is missing
        return False


def _load_t5_tokenizer(folder: Path):
    """PixArt's T5 tokenizer; ``spiece.model`` folders need sentencepiece and protobuf to convert."""
    from transformers import T5Tokenizer

    if not (folder / "tokenizer.json").is_file():
        if not (folder / "spiece.model").is_file():
            raise ModelFormatError(
                f"{folder} has no T5 tokenizer files (spiece.model or tokenizer.json). "
                "Download the tokenizer/ folder of the model again."
            )
        packages = {"sentencepiece": "sentencepiece", "google.protobuf": "protobuf"}
        missing = [package for module, package in packages.items() if not _installed(module)]
        if missing:
            raise MissingDependencyError(
                f"Reading the T5 tokenizer in {folder} (spiece.model) needs {' and '.join(missing)}, "
                "which are not installed. Install them with: pip install sentencepiece protobuf"
            )
    try:
        return T5Tokenizer.from_pretrained(folder)
    except Exception as e:
        raise ModelFormatError(f"Could not load the T5 tokenizer from {folder}: {e}.") from e


def _load_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(folder)
    except Exception as e:
        raise ModelFormatError(f"Could not load the tokenizer from {folder}: {e}.") from e


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def load_editor(
    spec: str | os.PathLike,
    *,
    subfolder: str | None = None,
    search_dirs: Sequence[str | os.PathLike] = (),
    allow_download: bool = True,
    dtype: str | torch.dtype = "fp32",
    text_encoder_dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    text_encoder: str | os.PathLike | None = None,
    position_table: str = "effective",
    t5_max_length: int = 120,
    text_to_image_ok: bool = False,
) -> EditorModel:
    """Load an RSEdit editor: a U-Net (channel concatenation, CLIP text) or a PixArt DiT (token
    concatenation, T5 text), as the folder's configs say.

    ``text_encoder_dtype`` (default: ``dtype``) lets the 4.7B-parameter T5-XXL load in fp16/bf16
    on its own. ``text_encoder`` swaps the U-Net's encoder: a raw Long-CLIP/DGTRS-CLIP ``.pt`` or
    an HF ``CLIPTextModel`` folder of the U-Net's cross-attention width. ``position_table``
    applies to ``.pt`` files (see :mod:`rsedit_core.longclip`). ``t5_max_length`` is the T5
    token budget (PixArt's 120). ``text_to_image_ok`` also reads a plain text-to-image SD folder
    (a fine-tuning base whose U-Net still has 4 input channels).
    """
    from diffusers import AutoencoderKL, PixArtTransformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextModel, T5EncoderModel

    torch_dtype = _torch_dtype(dtype)
    text_dtype = _torch_dtype(text_encoder_dtype) if text_encoder_dtype is not None else torch_dtype
    root = resolve_model_dir(spec, subfolder, search_dirs, allow_download)
    kind, config = describe_backbone(root, text_to_image_ok)
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        if not (root / part).is_dir():
            raise ModelFormatError(f"{root} has no {part}/ folder. Expected {_EDITOR_LAYOUT}.")
    if kind == "dit" and text_encoder is not None:
        raise InputError("A DiT editor uses its own T5 encoder; --text-encoder swaps apply to U-Net editors only.")
    source = "folder"
    if kind == "unet":
        denoiser = _load_component(UNet2DConditionModel, root / "unet", "U-Net", torch_dtype)
        tokenizer = _load_clip_tokenizer(root / "tokenizer")
        if text_encoder is None:
            encoder = _load_component(CLIPTextModel, root / "text_encoder", "text encoder", text_dtype)
        else:
            from .longclip import load_text_encoder

            encoder = load_text_encoder(text_encoder, position_table=position_table).to(text_dtype)
            source = str(text_encoder)
        width, expected = encoder.config.hidden_size, config.get("cross_attention_dim")
        text_max_length = encoder.config.max_position_embeddings
    else:
        denoiser = _load_component(PixArtTransformer2DModel, root / "transformer", "PixArt transformer", torch_dtype)
        tokenizer = _load_t5_tokenizer(root / "tokenizer")
        encoder = _load_component(T5EncoderModel, root / "text_encoder", "T5 text encoder", text_dtype)
        width, expected = encoder.config.d_model, config.get("caption_channels")
        text_max_length = t5_max_length
    if width != expected:
        raise ModelFormatError(
            f"The text encoder is {width}-wide but the {'U-Net' if kind == 'unet' else 'DiT'} expects "
            f"{expected}-wide conditioning. "
            "Use an encoder of the same width (ViT-L/14 text towers are 768, T5-XXL 4096)."
        )
    vae = _load_component(AutoencoderKL, root / "vae", "VAE", torch_dtype)
    scheduler_config = read_config(root / "scheduler" / "scheduler_config.json")
    for module in (denoiser, vae, encoder):
        module.requires_grad_(False).eval().to(device)
    logger.info("Loaded RSEdit %s editor from %s (%s)", kind, root, torch_dtype)
    return EditorModel(
        kind=kind,
        denoiser=denoiser,
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        root=root,
        text_max_length=text_max_length,
        dtype=torch_dtype,
        text_encoder_source=source,
    )
