"""The edit entry points: inputs checked once here, then text, source, denoising and decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .conditioning import SourceLatents, encode_source
from .defaults import MIN_SIZE, NEGATIVE_PROMPT, SIZE_POLICIES, SIZE_POLICY
from .denoise import StepCallback, denoise
from .editor import EditorModel, check_editor
from .errors import InputError, out_of_memory_advice
from .guidance import guidance_active
from .images import Geometry
from .scene import CroppedSink, PaddedSource, SceneSink, SceneSource, TensorSink, decode_tiles, encode_tiles
from .settings import EditSettings, as_settings
from .text import TextConditioning, encode_text
from .tiling import TilePlan, plan_tiles, resolve_tile, whole


@dataclass
class EditResult:
    """Edited images ``[N, 3, H, W]`` in ``0..1`` (N = sources x variations, grouped by source) and
    the final latents ``[N, 4, h, w]`` in the model's scaled latent space."""

    images: torch.Tensor
    latents: torch.Tensor
    notes: list[str]


@torch.no_grad()
def decode(
    model: EditorModel, latents: torch.Tensor, geometry: Geometry | None = None, plan: TilePlan | None = None
) -> torch.Tensor:
    """Decode scaled latents to ``[N, 3, H, W]`` float32 in ``0..1`` (on the CPU), one image at a
    time to bound memory, by blended windows when ``plan`` is tiled, and undo the size policy."""
    check_editor(model)
    if not isinstance(latents, torch.Tensor) or latents.dim() != 4:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise InputError(f"latents must be a tensor [N, C, h, w] (EditResult.latents); got {shape}.")
    factor = model.vae_scale_factor
    h, w = latents.shape[-2:]
    plan = plan if plan is not None and plan.tiled else whole((h, w), factor)
    sink = TensorSink(latents.shape[0], h * factor, w * factor)
    with out_of_memory_advice("decoding the edited latents"):
        decode_tiles(model, latents, sink, plan)
    return geometry.restore(sink.images) if geometry is not None else sink.images


def _check_same_editor(model: EditorModel, text: TextConditioning, source: SourceLatents) -> None:
    for what, value, kind, maker in (
        ("text", text, TextConditioning, "encode_text"),
        ("source", source, SourceLatents, "encode_source"),
    ):
        if not isinstance(value, kind):
            raise InputError(f"{what} must be a {kind.__name__} from {maker}(); got {type(value).__name__}.")
    for what, backbone in (("instruction", text.backbone), ("source", source.backbone)):
        if backbone is not model.backbone:
            raise InputError(
                f"The {what} was encoded for a {backbone.display_name} editor but the sampler has a "
                f"{model.backbone.display_name} editor. Connect the same RSEdit Loader to the text encode, "
                "source conditioning and sampler nodes."
            )


def run_edit(
    model: EditorModel,
    text: TextConditioning,
    source: SourceLatents,
    settings: EditSettings,
    callback: StepCallback | None = None,
) -> EditResult:
    """Sample and decode once text and source are encoded; the settings are checked here, once."""
    check_editor(model)
    return _sample_and_decode(model, text, source, as_settings(settings).for_model(model), callback)


def tile_plan(model: EditorModel, settings: EditSettings, latent_size: tuple[int, int]) -> tuple[TilePlan | None, list]:
    """The windows for a latent of ``latent_size`` under ``settings`` (None: one piece) and notes."""
    factor = model.vae_scale_factor
    tile, note = resolve_tile(settings.tile, (latent_size[0] * factor, latent_size[1] * factor))
    if not tile:
        return None, []
    plan = plan_tiles(latent_size, tile, settings.overlap_for(tile), factor)
    return (plan, [n for n in (note, plan.describe()) if n]) if plan.tiled else (None, [])


def _sample_and_decode(model, text, source, settings: EditSettings, callback) -> EditResult:
    _check_same_editor(model, text, source)
    plan, tile_notes = tile_plan(model, settings, tuple(source.latents.shape[-2:]))
    latents = denoise(model, text, source, settings, callback, plan)
    images = decode(model, latents, source.geometry, plan)
    notes = [*source.notes, *tile_notes, f"instruction: {text.report.summary()}"]
    if not guidance_active(settings.text_cfg, settings.image_cfg):
        notes.append(
            f"guidance off (text {settings.text_cfg} <= 1 or image {settings.image_cfg} < 1): "
            "plain conditional prediction"
        )
    return EditResult(images, latents, notes)


def edit_images(
    model: EditorModel,
    images: torch.Tensor,
    prompt: str,
    *,
    negative_prompt: str = NEGATIVE_PROMPT,
    size_policy: str = SIZE_POLICY,
    settings: EditSettings | None = None,
    callback: StepCallback | None = None,
) -> EditResult:
    """Edit source images ``[B, C, H, W]`` in ``0..1`` (C = 1, 3 or 4) following ``prompt``.

    Everything is checked before any model runs: the images, the texts, the size policy and the
    settings (``settings.text_cfg=None`` takes the backbone's default, 7.5 U-Net / 4.5 DiT).
    """
    check_editor(model)
    settings = as_settings(settings).for_model(model)
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(value, str):
            raise InputError(f"{name} must be a string; got {type(value).__name__}.")
    if size_policy not in SIZE_POLICIES:
        raise InputError(f"Unknown size policy {size_policy!r}; choose one of {', '.join(SIZE_POLICIES)}.")
    source = encode_source(model, images, size_policy, tile=settings.tile)  # checks the images first
    text = encode_text(model, prompt, negative_prompt)
    return _sample_and_decode(model, text, source, settings, callback)


def pad_geometry(size: tuple[int, int], multiple: int) -> Geometry:
    """The ``pad`` geometry of a scene of ``size`` (h, w) px, as :func:`~rsedit_core.images.fit_to_multiple`
    pads a tensor: the scene centred on a canvas whose sides are multiples of ``multiple``."""
    h, w = size
    if min(h, w) < MIN_SIZE:
        raise InputError(
            f"The scene is {w}x{h} px; RSEdit needs at least {MIN_SIZE} px on each side. Use a larger part of it."
        )
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    return Geometry("pad", (h, w), (ph, pw), ((ph - h) // 2, (pw - w) // 2))


class _VariationSinks:
    """One sink per variation: variation ``i`` of the scene goes to ``sinks[i]``."""

    def __init__(self, sinks: list[SceneSink]):
        self.sinks = sinks

    def write(self, index: int, top: int, left: int, pixels: torch.Tensor) -> None:
        self.sinks[index].write(0, top, left, pixels)


@torch.no_grad()
def edit_scene(
    model: EditorModel,
    source: SceneSource,
    sinks: list[SceneSink],
    prompt: str,
    *,
    negative_prompt: str = NEGATIVE_PROMPT,
    settings: EditSettings | None = None,
    callback: StepCallback | None = None,
) -> list[str]:
    """Edit one scene read window by window from ``source`` into ``sinks`` (one per variation), so
    neither the scene nor its edit is ever held whole in memory: only the latent and one row band.

    The scene is reflect-padded to the backbone's multiple and the padding cropped on the way out
    (the pixel grid is kept, as a georeferenced output needs); returns the notes of the run.
    """
    check_editor(model)
    settings = as_settings(settings).for_model(model)
    if source.count != 1:
        raise InputError(f"edit_scene edits one scene at a time; the source holds {source.count}.")
    if len(sinks) != settings.num_variations:
        raise InputError(f"Give one sink per variation: {settings.num_variations} variations, {len(sinks)} sinks.")
    text = encode_text(model, prompt, negative_prompt)
    geometry = pad_geometry((source.height, source.width), model.size_multiple)
    factor = model.vae_scale_factor
    latent_size = (geometry.processed[0] // factor, geometry.processed[1] // factor)
    plan, notes = tile_plan(model, settings, latent_size)
    vae_plan = plan or whole(latent_size, factor)
    if geometry.original != geometry.processed:
        notes.insert(0, geometry.describe())
    with out_of_memory_advice("encoding the source scene"):
        latents = encode_tiles(model, PaddedSource(source, geometry), vae_plan)
    conditioning = SourceLatents(latents, geometry, model.backbone)
    _check_same_editor(model, text, conditioning)
    edited = denoise(model, text, conditioning, settings, callback, plan)
    with out_of_memory_advice("decoding the edited scene"):
        decode_tiles(model, edited, CroppedSink(_VariationSinks(sinks), geometry), vae_plan)
    notes.append(f"instruction: {text.report.summary()}")
    if not guidance_active(settings.text_cfg, settings.image_cfg):
        notes.append(f"guidance off (text {settings.text_cfg} <= 1 or image {settings.image_cfg} < 1)")
    return notes
