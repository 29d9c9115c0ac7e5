"""Turn a base model into a trainable RSEdit editor, and export the trained editor.

- U-Net from a text-to-image Stable Diffusion folder: ``conv_in`` is widened from 4 to 8 input
  channels (REFERENCE §1): the weights of the 4 new source-latent channels are zero, the old 4
  are copied, and the bias is kept as it is. The bias is per output channel and does not depend
  on the inputs, so keeping it (and zeroing the new weights) makes the widened U-Net compute
  exactly the base model's function at step 0: fine-tuning starts from the text-to-image prior
  and learns how much of the source to use. An 8-channel RSEdit/InstructPix2Pix folder is
  continued as it is.
- DiT from a PixArt-alpha 512 folder: no new parameters (token concatenation).
- The VAE and the text encoder are frozen; only the denoiser trains.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError, ModelFormatError
from ..loading import EditorModel, load_editor

logger = logging.getLogger(__name__)

EDITOR_CHANNELS = 8


@dataclass
class TrainableEditor:
    """A loaded base ready for fine-tuning: ``editor.denoiser`` trains, the rest is frozen.

    ``base_kind`` is ``"text-to-image"`` (a 4-channel U-Net, now widened), ``"editor"`` (an
    8-channel U-Net continued) or ``"pixart"``; ``notes`` says what was done to it.
    """

    editor: EditorModel
    base_kind: str
    notes: list[str] = field(default_factory=list)


def widen_conv_in(unet, in_channels: int = EDITOR_CHANNELS) -> bool:
    """Widen ``unet.conv_in`` in place to ``in_channels`` inputs; returns False if already that wide.

    New input channels get zero weights, the existing ones are copied, the bias is unchanged, and
    the config's ``in_channels`` is updated so the saved folder reloads with the new width.
    """
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


def load_trainable(
    base: str | os.PathLike,
    backbone: str,
    *,
    subfolder: str | None = None,
    text_encoder: str | os.PathLike | None = None,
    position_table: str = "effective",
    allow_download: bool = True,
    text_encoder_dtype: str | torch.dtype | None = None,
) -> TrainableEditor:
    """Load ``base`` for fine-tuning as ``backbone`` (``"unet"`` or ``"dit"``), in fp32.

    ``text_encoder`` swaps the U-Net's encoder (a raw DGTRS-CLIP/Long-CLIP ``.pt`` or a
    ``CLIPTextModel`` folder); its width must match the U-Net's cross-attention width. The
    tokenizer's ``model_max_length`` follows the encoder's positions (248 for DGTRS-CLIP), so the
    exported folder tokenizes as it was trained. ``text_encoder_dtype`` loads the frozen encoder
    in the training precision straight away (T5-XXL is 19 GB in fp32).
    """
    if backbone not in ("unet", "dit"):
        raise InputError(f"Unknown backbone {backbone!r}; choose 'unet' or 'dit'.")
    editor = load_editor(
        base,
        subfolder=subfolder,
        allow_download=allow_download,
        text_encoder=text_encoder,
        position_table=position_table,
        text_to_image_ok=True,
        text_encoder_dtype=text_encoder_dtype,
    )
    if editor.kind != backbone:
        found = "a PixArt DiT (transformer/)" if editor.kind == "dit" else "a Stable Diffusion U-Net (unet/)"
        raise InputError(
            f"--backbone {backbone} was asked for, but {editor.root} holds {found}. "
            f"Pass --backbone {editor.kind}, or a base of the other kind."
        )
    notes = []
    if backbone == "dit":
        base_kind = "pixart"
        notes.append("PixArt transformer trained as is: token concatenation adds no parameters")
    elif widen_conv_in(editor.denoiser):
        base_kind = "text-to-image"
        notes.append("conv_in widened 4 -> 8 channels (new weights zero, old 4 copied, bias kept)")
    else:
        base_kind = "editor"
        notes.append("the U-Net already takes 8 channels: continuing from this editor, not widening again")
    if backbone == "unet":
        editor.tokenizer.model_max_length = editor.text_max_length
    for module in (editor.vae, editor.text_encoder):
        module.requires_grad_(False).eval()
    editor.denoiser.requires_grad_(True).train()
    for note in notes:
        logger.info("%s", note)
    return TrainableEditor(editor, base_kind, notes)


def inference_scheduler(editor: EditorModel):
    """The scheduler an exported editor ships: Euler for the U-Net (from the base SD config, as
    the paper samples), DPM-Solver++ for the DiT (PixArt's own)."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = DPMSolverMultistepScheduler if editor.kind == "dit" else EulerDiscreteScheduler
    return cls.from_config(editor.scheduler_config)


def export_editor(editor: EditorModel, denoiser, output_dir: str | os.PathLike) -> Path:
    """Write a complete editing folder (``model_index.json``, denoiser, VAE, text encoder,
    tokenizer, scheduler; safetensors) that ``load_editor``, ``rsedit edit`` and the RSEdit Loader
    read as they are. ``denoiser`` is the trained module (raw or EMA weights)."""
    from diffusers import PixArtAlphaPipeline, StableDiffusionInstructPix2PixPipeline

    output_dir = Path(output_dir)
    scheduler = inference_scheduler(editor)
    if editor.kind == "dit":
        pipe = PixArtAlphaPipeline(
            tokenizer=editor.tokenizer,
            text_encoder=editor.text_encoder,
            vae=editor.vae,
            transformer=denoiser,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=editor.vae,
            text_encoder=editor.text_encoder,
            tokenizer=editor.tokenizer,
            unet=denoiser,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.save_pretrained(output_dir, safe_serialization=True)
    logger.info("Exported the %s editor to %s", editor.kind, output_dir)
    return output_dir


def restore_frozen_parts(
    output_dir: str | os.PathLike,
    base_root: Path,
    text_encoder: str | os.PathLike | None = None,
    position_table: str = "effective",
) -> None:
    """Replace an export's VAE and text encoder with the base model's own files.

    Training stores the frozen parts in fp16/bf16; they never change, so the editor ships the
    original full-precision files (copied byte for byte, no model loaded) instead of an upcast of
    the reduced copy. A swapped-in Long-CLIP ``.pt`` is converted again in fp32.
    """
    output_dir = Path(output_dir)
    shutil.rmtree(output_dir / "vae")
    shutil.copytree(base_root / "vae", output_dir / "vae")
    shutil.rmtree(output_dir / "text_encoder")
    if text_encoder is None:
        shutil.copytree(base_root / "text_encoder", output_dir / "text_encoder")
    else:
        from ..longclip import load_text_encoder

        load_text_encoder(text_encoder, position_table).save_pretrained(output_dir / "text_encoder")
