"""Turn a base model into a trainable RSEdit editor, and export the trained editor.

What a base needs to become trainable is its backbone's rule
(:meth:`~rsedit_core.backbones.Backbone.prepare_for_training`): a text-to-image U-Net has its
``conv_in`` widened from 4 to 8 channels (new weights zero, bias kept, so step 0 computes the base
model's function), an 8-channel editor is continued, a PixArt DiT trains as is.
- The VAE and the text encoder are frozen; only the denoiser trains.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..backbones import get_backbone
from ..editor import EditorModel
from ..errors import InputError
from ..loading import load_editor

logger = logging.getLogger(__name__)


@dataclass
class TrainableEditor:
    """A loaded base ready for fine-tuning: ``editor.denoiser`` trains, the rest is frozen.

    ``base_kind`` is ``"text-to-image"`` (a 4-channel U-Net, now widened), ``"editor"`` (an
    8-channel U-Net continued) or ``"pixart"``; ``notes`` says what was done to it.
    """

    editor: EditorModel
    base_kind: str
    notes: list[str] = field(default_factory=list)


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
    wanted = get_backbone(backbone)
    editor = load_editor(
        base,
        subfolder=subfolder,
        allow_download=allow_download,
        text_encoder=text_encoder,
        position_table=position_table,
        text_to_image_ok=True,
        text_encoder_dtype=text_encoder_dtype,
    )
    if editor.backbone is not wanted:
        found = editor.backbone
        raise InputError(
            f"--backbone {wanted.name} was asked for, but {editor.root} holds a {found.display_name} "
            f"({found.component_folder}/). Pass --backbone {found.name}, or a base of the other kind."
        )
    base_kind, notes = wanted.prepare_for_training(editor)
    for module in (editor.vae, editor.text_encoder):
        module.requires_grad_(False).eval()
    editor.denoiser.requires_grad_(True).train()
    for note in notes:
        logger.info("%s", note)
    return TrainableEditor(editor, base_kind, notes)


def inference_scheduler(editor: EditorModel):
    """The scheduler an exported editor ships (the backbone's: Euler for the U-Net, from the base
    SD config as the paper samples; DPM-Solver++ for the DiT, PixArt's own)."""
    import diffusers

    return getattr(diffusers, editor.backbone.export_scheduler).from_config(editor.scheduler_config)


def export_editor(editor: EditorModel, denoiser, output_dir: str | os.PathLike) -> Path:
    """Write a complete editing folder (``model_index.json``, denoiser, VAE, text encoder,
    tokenizer, scheduler; safetensors) that ``load_editor``, ``rsedit edit`` and the RSEdit Loader
    read as they are. ``denoiser`` is the trained module (raw or EMA weights)."""
    output_dir = Path(output_dir)
    pipe = editor.backbone.export_pipeline(editor, denoiser, inference_scheduler(editor))
    pipe.save_pretrained(output_dir, safe_serialization=True)
    logger.info("Exported the %s editor to %s", editor.backbone.display_name, output_dir)
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
