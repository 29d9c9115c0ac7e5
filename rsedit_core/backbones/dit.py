"""PixArt-alpha DiT editors, **in-context (token) concatenation**.

The source latent is the posterior mode *times* the VAE scaling factor, placed left of the noisy
latent along the width, ``(B, 4, h, 2w)``. The stock transformer patchifies this canvas (its
position table is recomputed for the ``h/2 x w`` patch grid with the pretrained base size, so
columns step by 0.5), every token shares one timestep, and the prediction is the right half's first
4 channels (PixArt also predicts sigma in channels 4..7). Text: PixArt's T5, 120 tokens, lower-cased
and stripped as ``PixArtAlphaPipeline`` does without caption cleaning, with its attention mask.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingDependencyError, ModelFormatError
from ..weights import load_component, read_config
from .base import Backbone, LoadedParts

if TYPE_CHECKING:
    import torch

    from ..editor import EditorModel


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


def _refusal(root: Path, config: dict) -> str | None:
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


class DiTBackbone(Backbone):
    name = "dit"
    display_name = "PixArt DiT"
    mode = "token concatenation"
    component_folder = "transformer"
    default_text_cfg = 4.5
    export_scheduler = "DPMSolverMultistepScheduler"
    special_tokens = 1
    uses_text_mask = True
    supports_text_encoder_swap = False
    nominal_size_multiple = 16  # VAE factor 8 x patch size 2 of PixArt-alpha XL-2
    release_repo = "BiliSakura/RSEdit-DiT"
    release_subfolder = None

    def check_config(self, root: Path, config: dict, text_to_image_ok: bool) -> None:
        reason = _refusal(root, config)
        if reason:
            raise ModelFormatError(reason)

    def load_parts(self, root, config, *, dtype, text_dtype, text_encoder, position_table, t5_max_length):
        from diffusers import PixArtTransformer2DModel
        from transformers import T5EncoderModel

        denoiser = load_component(PixArtTransformer2DModel, root / "transformer", "PixArt transformer", dtype)
        tokenizer = _load_t5_tokenizer(root / "tokenizer")
        encoder = load_component(T5EncoderModel, root / "text_encoder", "T5 text encoder", text_dtype)
        return LoadedParts(denoiser, tokenizer, encoder, t5_max_length)

    def conditioning_width(self, config, text_encoder):
        return text_encoder.config.d_model, config.get("caption_channels")

    def size_multiple(self, model: EditorModel) -> int:
        return model.vae_scale_factor * model.denoiser.config.patch_size

    def prepare_text(self, text: str) -> str:
        return text.lower().strip()

    def source_latents(self, model: EditorModel, pixels: torch.Tensor) -> torch.Tensor:
        return model.vae.encode(pixels).latent_dist.mode() * model.vae.config.scaling_factor

    def target_latents(self, model: EditorModel, source):
        return source  # already in the sample's scaled space

    def predict(self, model, latents, source, timestep, embeds, mask):
        import torch

        width = latents.shape[-1]
        canvas = torch.cat([source, latents], dim=-1)
        timesteps = timestep.reshape(-1).to(latents.device).expand(canvas.shape[0])
        output = model.denoiser(
            canvas,
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            timestep=timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]
        return output[..., width:][:, : latents.shape[1]]

    def prepare_for_training(self, model: EditorModel) -> tuple[str, list[str]]:
        return "pixart", ["PixArt transformer trained as is: token concatenation adds no parameters"]

    def export_pipeline(self, model: EditorModel, denoiser, scheduler):
        from diffusers import PixArtAlphaPipeline

        return PixArtAlphaPipeline(
            tokenizer=model.tokenizer,
            text_encoder=model.text_encoder,
            vae=model.vae,
            transformer=denoiser,
            scheduler=scheduler,
        )


DIT = DiTBackbone()
