"""The edit entry points: inputs checked once here, then text, source, denoising and decoding."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .conditioning import SourceLatents, check_images, encode_source
from .defaults import MIN_SIZE, NEGATIVE_PROMPT, SIZE_POLICIES, SIZE_POLICY
from .denoise import Regions, StepCallback, denoise
from .editor import EditorModel, check_editor
from .errors import InputError, out_of_memory_advice
from .fidelity import describe, fidelity_report
from .guidance import guidance_active
from .images import Geometry
from .masked import check_mask, composite, exclusive, fit_mask, latent_mask
from .scene import (
    CroppedSink,
    MaskedSink,
    PaddedSource,
    SceneSink,
    SceneSource,
    TensorSink,
    copy_scene,
    decode_tiles,
    encode_tiles,
)
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
    #: Per edited image, :func:`rsedit_core.fidelity.fidelity_report`: changes inside and outside the mask.
    fidelity: list[dict] = field(default_factory=list)


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
    *,
    mask=None,
    regions: list[tuple[TextConditioning, object]] | None = None,
) -> EditResult:
    """Sample and decode once text and source are encoded; the settings are checked here, once.

    ``mask`` and ``regions`` (``(TextConditioning, mask)`` pairs) as in :func:`edit_images`, on
    the source's original pixel grid.
    """
    check_editor(model)
    settings = as_settings(settings).for_model(model)
    _check_same_editor(model, text, source)
    texts = [t for t, _ in regions] if regions else []
    masks = _region_masks(source, mask, regions, settings)
    if masks is None:
        return _sample_and_decode(model, text, source, settings, callback)
    if not any(float(m.max()) > 0 for m in masks):
        return _unchanged(model, source, settings)
    return _masked_edit(model, texts[0] if texts else text, texts, masks, source, settings, callback)


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
    mask=None,
    regions: list[tuple[str, object]] | None = None,
) -> EditResult:
    """Edit source images ``[B, C, H, W]`` in ``0..1`` (C = 1, 3 or 4) following ``prompt``.

    ``mask`` (``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]`` in 0..1, 1 = edit) confines the edit:
    the latent outside it follows the source at every step, and the result is composited over the
    source with the mask as the weight, so pixels where the mask is 0 are the source exactly. An
    empty mask returns the source; a full one is exactly the unmasked edit. ``regions`` is a list
    of ``(instruction, mask)`` pairs, each instruction guiding its own region (``prompt`` is then
    unused; overlaps go to the later region); outside all regions the source is kept.

    Everything is checked before any model runs: the images, masks, texts, the size policy and the
    settings (``settings.text_cfg=None`` takes the backbone's default, 7.5 U-Net / 4.5 DiT).
    """
    check_editor(model)
    settings = as_settings(settings).for_model(model)
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(value, str):
            raise InputError(f"{name} must be a string; got {type(value).__name__}.")
    if size_policy not in SIZE_POLICIES:
        raise InputError(f"Unknown size policy {size_policy!r}; choose one of {', '.join(SIZE_POLICIES)}.")
    check_images(images)
    if mask is not None and regions is not None:
        raise InputError("Give either mask= (one instruction) or regions= (several), not both.")
    shape = (images.shape[0], *images.shape[-2:])
    for index, (_, region_mask) in enumerate(_pairs(regions) if regions is not None else [(None, mask)]):
        if region_mask is not None:  # masks are checked before any model runs, as the images are
            check_mask(region_mask, *shape, "mask" if regions is None else f"mask of region {index}")
    source = encode_source(model, images, size_policy, tile=settings.tile)
    if regions is not None:
        pairs = [(encode_text(model, instruction, negative_prompt), m) for instruction, m in _pairs(regions)]
        return run_edit(model, pairs[0][0], source, settings, callback, regions=pairs)
    text = encode_text(model, prompt, negative_prompt)
    return run_edit(model, text, source, settings, callback, mask=mask)


def _pairs(regions) -> list:
    if not isinstance(regions, (list, tuple)) or not regions:
        raise InputError("regions must be a non-empty list of (instruction, mask) pairs.")
    for index, item in enumerate(regions):
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise InputError(f"regions[{index}] must be an (instruction, mask) pair with a string instruction.")
    return list(regions)


def _region_masks(source: SourceLatents, mask, regions, settings: EditSettings) -> list[torch.Tensor] | None:
    """The checked masks of a masked or multi-region edit (None: edit everything)."""
    if mask is not None and regions:
        raise InputError("Give either mask= (one instruction) or regions= (several), not both.")
    batch, (height, width) = source.latents.shape[0], source.geometry.original
    if regions is not None:
        if not isinstance(regions, (list, tuple)) or not regions:
            raise InputError("regions must be a non-empty list of (instruction, mask) pairs.")
        masks = [check_mask(m, batch, height, width, f"mask of region {i}") for i, (_, m) in enumerate(regions)]
        if not guidance_active(settings.text_cfg, settings.image_cfg) and len(masks) > 1:
            raise InputError(
                "Several regions need text guidance (text scale > 1 and image scale >= 1): each region's "
                "instruction steers only through it."
            )
        return masks
    if mask is None:
        return None
    checked = check_mask(mask, batch, height, width)
    return None if bool((checked >= 1).all()) else [checked]  # a full mask is the plain edit


def _source_pixels(source: SourceLatents) -> torch.Tensor:
    if source.pixels is None:
        raise InputError("This source holds no pixels to composite over; encode it with encode_source.")
    return source.pixels


def _unchanged(model: EditorModel, source: SourceLatents, settings: EditSettings) -> EditResult:
    """An empty mask: nothing to edit, the source comes back as is (RGB, once per variation)."""
    rgb = source.geometry.restore(_source_pixels(source))
    out = rgb.repeat_interleave(settings.num_variations, dim=0)
    kept = model.backbone.target_latents(model, source.latents).repeat_interleave(settings.num_variations, dim=0)
    note = "the mask is empty: nothing to edit, the source is returned unchanged"
    report = fidelity_report(rgb, out, torch.zeros_like(out[:1, :1]))
    return EditResult(out, kept, [*source.notes, note], report)


def _masked_edit(model, text, texts, masks, source, settings, callback) -> EditResult:
    _check_same_editor(model, text, source)
    for extra in texts:
        _check_same_editor(model, extra, source)
    factor, geometry = model.vae_scale_factor, source.geometry
    fitted = [fit_mask(m, geometry) for m in masks]
    weights = exclusive(fitted)
    union = torch.stack(weights).sum(0).clamp(0, 1)
    latent = [latent_mask(w, factor) for w in weights]
    regions = Regions(
        mask=torch.stack(latent).amax(0), texts=texts if len(texts) > 1 else [], weights=exclusive(latent)
    )
    plan, tile_notes = tile_plan(model, settings, tuple(source.latents.shape[-2:]))
    latents = denoise(model, text, source, settings, callback, plan, regions)
    canvas = decode(model, latents, None, plan)
    fitted_rgb = _source_pixels(source)
    images_out = geometry.restore(composite(fitted_rgb, canvas, union))
    mask_out = geometry.restore(union)
    report = fidelity_report(geometry.restore(fitted_rgb), images_out, mask_out)
    share = float((mask_out > 0).float().mean())
    notes = [*source.notes, *tile_notes]
    if len(texts) > 1:
        notes.append(f"{len(texts)} regions, each guided by its own instruction; outside them the source is kept")
        notes += [f"region {i}: {t.report.summary()}" for i, t in enumerate(texts)]
    else:
        notes.append(f"instruction: {text.report.summary()}")
    notes.append(f"masked edit: {share:.1%} of the scene inside the mask; the rest is the source, pixel for pixel")
    notes += [describe(r) for r in report]
    return EditResult(images_out, latents, notes, report)


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
    mask=None,
) -> list[str]:
    """Edit one scene read window by window from ``source`` into ``sinks`` (one per variation), so
    neither the scene nor its edit is ever held whole in memory: only the latent and one row band
    (and, for a masked edit, the mask: ``[H, W]`` in 0..1 on the scene's grid, kept as float16).
    Outside the mask every sink gets the source itself (a GeoTIFF sink its raw values).

    The scene is reflect-padded to the backbone's multiple and the padding cropped on the way out
    (the pixel grid is kept, as a georeferenced output needs); returns the notes of the run.
    """
    check_editor(model)
    settings = as_settings(settings).for_model(model)
    if source.count != 1:
        raise InputError(f"edit_scene edits one scene at a time; the source holds {source.count}.")
    if len(sinks) != settings.num_variations:
        raise InputError(f"Give one sink per variation: {settings.num_variations} variations, {len(sinks)} sinks.")
    pixel_mask = None
    if mask is not None:
        pixel_mask = check_mask(mask, 1, source.height, source.width)[0, 0].to(torch.float16)
        if float(pixel_mask.max()) == 0:
            copy_scene(source, [MaskedSink(s, source, pixel_mask) for s in sinks])
            return ["the mask is empty: nothing to edit, the source was written unchanged"]
        if bool((pixel_mask >= 1).all()):
            pixel_mask = None  # a full mask is the plain edit
        else:
            sinks = [MaskedSink(s, source, pixel_mask) for s in sinks]
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
    regions = None
    if pixel_mask is not None:
        canvas_mask = fit_mask(pixel_mask.float()[None, None], geometry)
        regions = Regions(mask=latent_mask(canvas_mask, factor))
        share = float((pixel_mask > 0).float().mean())
        notes.append(f"masked edit: {share:.1%} of the scene inside the mask; the rest is the source, pixel for pixel")
    edited = denoise(model, text, conditioning, settings, callback, plan, regions)
    with out_of_memory_advice("decoding the edited scene"):
        decode_tiles(model, edited, CroppedSink(_VariationSinks(sinks), geometry), vae_plan)
    notes.append(f"instruction: {text.report.summary()}")
    if not guidance_active(settings.text_cfg, settings.image_cfg):
        notes.append(f"guidance off (text {settings.text_cfg} <= 1 or image {settings.image_cfg} < 1)")
    return notes
