"""Stable Diffusion U-Net editors, **channel concatenation** (InstructPix2Pix).

The source latent is the VAE posterior mode, *not* scaled; the U-Net sees
``cat([noisy, source], dim=1)`` with 8 channels. Text: CLIP-style encoders (DGTRS-CLIP with 248
positions, plain CLIP with 77), ``last_hidden_state`` with no mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelFormatError
from ..weights import load_component
from .base import Backbone, LoadedParts

if TYPE_CHECKING:
    import torch

    from ..editor import EditorModel

EDITOR_CHANNELS = 8


def widen_conv_in(unet, in_channels: int = EDITOR_CHANNELS) -> bool:
    """Widen ``unet.conv_in`` in place to ``in_channels`` inputs; returns False if already that wide.

    New input channels get zero weights, the existing ones are copied and the bias is kept: the
    bias is per output channel, so the widened U-Net computes exactly the base model's function at
    step 0. The config's ``in_channels`` is updated so the saved folder reloads with the new width.
    """
    import torch

    conv = unet.conv_in
    if conv.in_channels == in_channels:
        return False
    if conv.in_channels > in_channels:
        raise ModelFormatError(
            f"The U-Net's conv_in takes {conv.in_channels} channels, more than the {in_channels} of an editor; "
            "start from a text-to-image (4-channel) or an RSEdit/InstructPix2Pix (8-channel) U-Net."
        )
    wide = torch.nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : conv.in_channels].copy_(conv.weight)
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    unet.conv_in = wide
    unet.register_to_config(in_channels=in_channels)
    return True


def _load_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(folder)
    except Exception as e:
        raise ModelFormatError(f"Could not load the tokenizer from {folder}: {e}.") from e


class UNetBackbone(Backbone):
    name = "unet"
    display_name = "U-Net"
    mode = "channel concatenation"
    component_folder = "unet"
    default_text_cfg = 7.5
    export_scheduler = "EulerDiscreteScheduler"
    special_tokens = 2
    uses_text_mask = False
    supports_text_encoder_swap = True
    nominal_size_multiple = 8
    release_repo = "BiliSakura/RSEdit-UNet-text-ablation"
    release_subfolder = "DGTRS-CLIP-ViT-L-14"

    def check_config(self, root: Path, config: dict, text_to_image_ok: bool) -> None:
        if config.get("_class_name") not in (None, "UNet2DConditionModel"):
            raise ModelFormatError(f"{root / 'unet'} holds a {config.get('_class_name')}, not a UNet2DConditionModel.")
        channels = config.get("in_channels")
        if channels == 4 and text_to_image_ok:
            return
        if channels == 4:
            raise ModelFormatError(
                f"{root} is a text-to-image model (its U-Net takes 4 input channels), not an editor. "
                "RSEdit needs a U-Net with 8 input channels (noisy latent + source latent): use the "
                "released RSEdit-UNet folder, or fine-tune this model with training/train.py, which "
                "widens conv_in to 8 channels."
            )
        if channels != EDITOR_CHANNELS:
            raise ModelFormatError(
                f"{root / 'unet'} takes {channels} input channels; an RSEdit / InstructPix2Pix "
                "U-Net takes 8 (4 noisy latent + 4 source latent)."
            )

    def load_parts(self, root, config, *, dtype, text_dtype, text_encoder, position_table, t5_max_length):
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        denoiser = load_component(UNet2DConditionModel, root / "unet", "U-Net", dtype)
        tokenizer = _load_clip_tokenizer(root / "tokenizer")
        if text_encoder is None:
            encoder = load_component(CLIPTextModel, root / "text_encoder", "text encoder", text_dtype)
            source = "folder"
        else:
            from ..longclip import load_text_encoder

            encoder = load_text_encoder(text_encoder, position_table=position_table).to(text_dtype)
            source = str(text_encoder)
        return LoadedParts(denoiser, tokenizer, encoder, encoder.config.max_position_embeddings, source)

    def conditioning_width(self, config, text_encoder):
        return text_encoder.config.hidden_size, config.get("cross_attention_dim")

    def source_latents(self, model: EditorModel, pixels: torch.Tensor) -> torch.Tensor:
        return model.vae.encode(pixels).latent_dist.mode()

    def target_latents(self, model: EditorModel, source):
        return source * model.vae.config.scaling_factor  # the condition is unscaled, the sample is not

    def predict(self, model, latents, source, timestep, embeds, mask):
        import torch

        model_input = torch.cat([latents, source], dim=1)
        return model.denoiser(model_input, timestep, encoder_hidden_states=embeds, return_dict=False)[0]

    def prepare_for_training(self, model: EditorModel) -> tuple[str, list[str]]:
        # The exported folder must tokenize as training did: to the encoder's position count.
        model.tokenizer.model_max_length = model.text_max_length
        if widen_conv_in(model.denoiser):
            return "text-to-image", ["conv_in widened 4 -> 8 channels (new weights zero, old 4 copied, bias kept)"]
        return "editor", ["the U-Net already takes 8 channels: continuing from this editor, not widening again"]

    def export_pipeline(self, model: EditorModel, denoiser, scheduler):
        from diffusers import StableDiffusionInstructPix2PixPipeline

        return StableDiffusionInstructPix2PixPipeline(
            vae=model.vae,
            text_encoder=model.text_encoder,
            tokenizer=model.tokenizer,
            unet=denoiser,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


UNET = UNetBackbone()
