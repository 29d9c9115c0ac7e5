"""What every RSEdit backbone provides: the one place a rule that differs between backbones lives.

A backbone is a stateless object; a loaded :class:`~rsedit_core.editor.EditorModel` carries the
one it was loaded with, and callers ask it (``model.backbone.predict(...)``) instead of comparing
names. Adding a backbone means adding one module with a subclass and listing it in
:mod:`rsedit_core.backbones`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the methods that run models, so the registry imports fast
    import torch

    from ..editor import EditorModel


@dataclass
class LoadedParts:
    """What a backbone loads from an editor folder besides the shared VAE and scheduler."""

    denoiser: Any
    tokenizer: Any
    text_encoder: Any
    text_max_length: int
    text_encoder_source: str = "folder"


class Backbone(ABC):
    """One way of conditioning a pre-trained denoiser on the source latent.

    Class attributes describe it; methods implement loading, text preparation, source encoding,
    the prediction step (shared by sampling and training) and export.
    """

    #: Registry name, used for CLI/config choices and stored in caches and checkpoints.
    name: str
    #: How the editor is shown to people ("U-Net", "PixArt DiT").
    display_name: str
    #: The conditioning, as the paper names it.
    mode: str
    #: The denoiser's folder in a diffusers editor (``unet`` or ``transformer``).
    component_folder: str
    #: The text guidance ``s_T`` of the paper for this backbone.
    default_text_cfg: float
    #: The inference scheduler an exported editor ships (a diffusers class name).
    export_scheduler: str
    #: Special tokens the tokenizer adds to every prompt (CLIP: SOT + EOT; T5: EOS).
    special_tokens: int
    #: Whether the denoiser takes the text attention mask.
    uses_text_mask: bool
    #: Whether ``--text-encoder`` may swap in another encoder.
    supports_text_encoder_swap: bool
    #: The pixel multiple of the released models, known before any config is read (training
    #: checks ``--resolution`` with it before loading).
    nominal_size_multiple: int
    #: The released editor on the Hugging Face hub: repo id and subfolder (or None).
    release_repo: str
    release_subfolder: str | None

    def fetch_command(self, local_dir: str) -> str:
        """The command that downloads the whole released editor folder into ``local_dir``."""
        include = f' --include "{self.release_subfolder}/*"' if self.release_subfolder else ""
        return f"hf download {self.release_repo}{include} --local-dir {local_dir}"

    def __repr__(self) -> str:
        return f"<{self.display_name} backbone ({self.mode})>"

    # --- loading -------------------------------------------------------------------------------
    def claims(self, root: Path) -> bool:
        """True when ``root`` holds this backbone's denoiser config."""
        return (root / self.component_folder / "config.json").is_file()

    @abstractmethod
    def check_config(self, root: Path, config: dict, text_to_image_ok: bool) -> None:
        """Raise :class:`~rsedit_core.errors.ModelFormatError` if ``config`` is not an editor of this kind."""

    @abstractmethod
    def load_parts(
        self,
        root: Path,
        config: dict,
        *,
        dtype: torch.dtype,
        text_dtype: torch.dtype,
        text_encoder: str | None,
        position_table: str,
        t5_max_length: int,
    ) -> LoadedParts:
        """Load the denoiser, tokenizer and text encoder of the folder ``root``."""

    @abstractmethod
    def conditioning_width(self, config: dict, text_encoder) -> tuple[int, int]:
        """``(encoder width, width the denoiser expects)``."""

    # --- geometry and text ---------------------------------------------------------------------
    def size_multiple(self, model: EditorModel) -> int:
        """Pixel multiple a source must have (the VAE factor by default)."""
        return model.vae_scale_factor

    def prepare_text(self, text: str) -> str:
        """The text as the tokenizer should see it."""
        return text

    # --- conditioning and prediction -----------------------------------------------------------
    @abstractmethod
    def source_latents(self, model: EditorModel, pixels: torch.Tensor) -> torch.Tensor:
        """Source latents ``(B, 4, h, w)`` from pixels ``(B, 3, H, W)`` in ``-1..1``."""

    @abstractmethod
    def target_latents(self, model: EditorModel, source: torch.Tensor) -> torch.Tensor:
        """The source as a clean sample of the space the denoiser works in (scaled latents): what a
        masked edit keeps outside its mask."""

    @abstractmethod
    def predict(
        self,
        model: EditorModel,
        latents: torch.Tensor,
        source: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """The noise prediction ``(N, 4, h, w)`` for scheduler-scaled ``latents`` given ``source``."""

    # --- training and export -------------------------------------------------------------------
    @abstractmethod
    def prepare_for_training(self, model: EditorModel) -> tuple[str, list[str]]:
        """Make a loaded base trainable in place; returns ``(base kind, notes)``."""

    @abstractmethod
    def export_pipeline(self, model: EditorModel, denoiser, scheduler):
        """The diffusers pipeline object whose ``save_pretrained`` writes an editor folder."""
