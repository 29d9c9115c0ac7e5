"""Fine-tuning building blocks: model preparation, the objective, text caches and checkpoints."""

from __future__ import annotations

import errno
import json

import pytest
import torch
import torch.nn.functional as F

from rsedit_core.backbones import DIT, UNET
from rsedit_core.backbones.unet import widen_conv_in
from rsedit_core.errors import InputError, ModelFormatError
from rsedit_core.loading import load_editor
from rsedit_core.train import checkpoints
from rsedit_core.train.models import export_editor, load_trainable
from rsedit_core.train.objective import conditioning_dropout, edit_loss, encode_pair, training_target
from rsedit_core.train.text_cache import CachedTextFeed, TextEncoderFeed, build_text_cache


@pytest.fixture(scope="module")
def base_unet(tiny_sd_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet").eval()


def test_widened_unet_computes_the_base_function(base_unet):
    """New weights zero, old 4 copied, bias kept: at step 0 the source latent changes nothing."""
    import copy

    widened = copy.deepcopy(base_unet)
    assert widen_conv_in(widened) is True
    old, new = base_unet.conv_in, widened.conv_in
    assert new.weight.shape == (old.out_channels, 8, 3, 3) and widened.config.in_channels == 8
    assert torch.equal(new.weight[:, :4], old.weight) and torch.count_nonzero(new.weight[:, 4:]) == 0
    assert torch.equal(new.bias, old.bias)
    g = torch.Generator().manual_seed(0)
    noisy, source = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    text = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        expected = base_unet(noisy, 500, encoder_hidden_states=text).sample
        got = widened(torch.cat([noisy, source], 1), 500, encoder_hidden_states=text).sample
    assert torch.allclose(got, expected, atol=1e-6)
    assert widen_conv_in(widened) is False


def test_text_to_image_base_is_widened_and_frozen(tiny_sd_dir):
    trainable = load_trainable(tiny_sd_dir, "unet")
    editor = trainable.editor
    assert trainable.base_kind == "text-to-image" and "widened 4 -> 8" in trainable.notes[0]
    assert editor.denoiser.training and all(p.requires_grad for p in editor.denoiser.parameters())
    assert not any(p.requires_grad for p in editor.vae.parameters())
    assert not any(p.requires_grad for p in editor.text_encoder.parameters())


def test_eight_channel_editor_is_continued_not_widened(tiny_editor_dir):
    saved = load_editor(tiny_editor_dir).denoiser.conv_in.weight
    trainable = load_trainable(tiny_editor_dir, "unet")
    assert trainable.base_kind == "editor" and "not widening again" in trainable.notes[0]
    assert torch.equal(trainable.editor.denoiser.conv_in.weight, saved)


def test_backbone_mismatch_says_which_kind_was_found(tiny_sd_dir, tiny_dit_dir):
    with pytest.raises(InputError, match="holds a U-Net .unet/.*--backbone unet"):
        load_trainable(tiny_sd_dir, "dit")
    with pytest.raises(InputError, match="holds a PixArt DiT"):
        load_trainable(tiny_dit_dir, "unet")


def test_text_encoder_swap_sets_248_tokens_and_checks_width(tiny_sd_dir, tmp_path):
    from longclip_state import openai_state

    torch.save(openai_state(), tmp_path / "LRSCLIP_ViT-L-14.pt")
    editor = load_trainable(tiny_sd_dir, "unet", text_encoder=tmp_path / "LRSCLIP_ViT-L-14.pt").editor
    assert editor.text_max_length == 248 and editor.tokenizer.model_max_length == 248
    torch.save(openai_state(width=64), tmp_path / "wide.pt")
    with pytest.raises(ModelFormatError, match="64-wide but the U-Net expects 32-wide"):
        load_trainable(tiny_sd_dir, "unet", text_encoder=tmp_path / "wide.pt")


def test_conditioning_dropout_thresholds_and_rates():
    q = 0.05
    drop_text, drop_source = conditioning_dropout(200_000, q, generator=torch.Generator().manual_seed(1))
    p = torch.rand(200_000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(drop_text, p < 2 * q) and torch.equal(drop_source, (p >= q) & (p < 3 * q))
    assert drop_text.float().mean().item() == pytest.approx(2 * q, abs=0.003)
    assert drop_source.float().mean().item() == pytest.approx(2 * q, abs=0.003)
    assert (drop_text & drop_source).float().mean().item() == pytest.approx(q, abs=0.002)


def test_v_prediction_target_is_the_velocity():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(prediction_type="v_prediction")
    x0, noise, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    alpha = scheduler.alphas_cumprod[t].sqrt()[:, None, None, None]
    sigma = (1 - scheduler.alphas_cumprod[t]).sqrt()[:, None, None, None]
    assert torch.allclose(training_target(scheduler, x0, noise, t), alpha * noise - sigma * x0, atol=1e-6)
    assert training_target(DDPMScheduler(), x0, noise, t) is noise
    with pytest.raises(ModelFormatError, match="sample"):
        training_target(DDPMScheduler(prediction_type="sample"), x0, noise, t)


def _manual_loss(model, scheduler, target, source, embeds, empty, dropout, seed, kind, mask=None, empty_mask=None):
    """The objective written out by hand (noise, timesteps, dropout, target), same random draws, same order."""
    torch.manual_seed(seed)
    noise = torch.randn_like(target)
    t = torch.randint(0, 1000, (target.shape[0],)).long()
    noisy = scheduler.add_noise(target, noise, t)
    p = torch.rand(target.shape[0])
    text = torch.where((p < 2 * dropout)[:, None, None], empty, embeds)
    if mask is not None:
        mask = torch.where((p < 2 * dropout)[:, None], empty_mask, mask)
    src = torch.where(((p >= dropout) & (p < 3 * dropout))[:, None, None, None], torch.zeros_like(source), source)
    if kind == "unet":
        pred = model.denoiser(torch.cat([noisy, src], 1), t, encoder_hidden_states=text).sample
    else:
        canvas = torch.cat([src, noisy], dim=-1)
        out = model.denoiser(
            canvas,
            encoder_hidden_states=text,
            encoder_attention_mask=mask,
            timestep=t,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
        pred = out[..., noisy.shape[-1] :][:, :4]  # the target half, noise channels only
    return F.mse_loss(pred, noise)


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_edit_loss_matches_the_written_out_objective(kind, tiny_editor, tiny_dit):
    from diffusers import DDPMScheduler

    model = tiny_editor if kind == "unet" else tiny_dit
    backbone = UNET if kind == "unet" else DIT
    scheduler = DDPMScheduler.from_config(model.scheduler_config)
    g = torch.Generator().manual_seed(3)
    pre, post = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    torch.manual_seed(0)
    target, source = encode_pair(model, backbone, pre, post)
    feed = TextEncoderFeed(model)
    text = feed(["flood the coast", "buildings collapse", "", "wildfire burns the forest"], torch.device("cpu"))
    # A dropout of 1/3 exercises every branch (text, source, both) in a batch of 4.
    torch.manual_seed(7)
    loss = edit_loss(model, backbone, scheduler, target, source, text, dropout=1 / 3)
    expected = _manual_loss(
        model, scheduler, target, source, text.embeds, text.empty_embeds, 1 / 3, 7, kind, text.mask, text.empty_mask
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # The target's scale: a posterior sample times the VAE factor; the source: the posterior mode
    # (times the factor for the DiT only).
    mode = model.vae.encode(pre).latent_dist.mode()
    assert torch.allclose(source, mode * (model.vae.config.scaling_factor if kind == "dit" else 1.0), atol=1e-6)


def test_dit_loss_ignores_the_source_half_of_the_canvas(tiny_dit):
    """Changing what the transformer outputs on the source tokens must not change the loss."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(tiny_dit.scheduler_config)
    target = torch.randn(2, 4, 4, 4)
    text = TextEncoderFeed(tiny_dit)(["a", "b"], torch.device("cpu"))
    original_forward = tiny_dit.denoiser.forward

    def scrambled(*args, **kwargs):
        out = original_forward(*args, **kwargs)
        sample = out[0].clone()
        sample[..., : sample.shape[-1] // 2] = 1e3  # the source half
        sample[:, 4:] = -1e3  # the learned-sigma channels
        return (sample,)

    losses = []
    for forward in (original_forward, scrambled):
        tiny_dit.denoiser.forward = forward
        torch.manual_seed(0)
        losses.append(edit_loss(tiny_dit, DIT, scheduler, target, target.clone(), text).item())
    tiny_dit.denoiser.forward = original_forward
    assert losses[0] == losses[1] and losses[0] < 10


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_text_cache_gives_the_encoder_embeddings(kind, tiny_editor, tiny_dit, tmp_path):
    model = tiny_editor if kind == "unet" else tiny_dit
    captions = ["flood the coastal area", "Buildings collapse after the earthquake", "a"]
    build_text_cache(model, captions, tmp_path / "cache")
    cached = CachedTextFeed(tmp_path / "cache")(captions[::-1], torch.device("cpu"))
    direct = TextEncoderFeed(model)(captions[::-1], torch.device("cpu"))
    if kind == "unet":
        # Equal up to float reassociation: the cache encodes the captions in other batches.
        assert torch.allclose(cached.embeds, direct.embeds, atol=1e-6) and cached.mask is None
        assert torch.allclose(cached.empty_embeds, direct.empty_embeds, atol=1e-6)
        return
    assert torch.equal(cached.mask, direct.mask) and torch.equal(cached.empty_mask, direct.empty_mask)
    kept = direct.mask.bool()
    assert torch.allclose(cached.embeds[kept], direct.embeds[kept], atol=1e-6) and not cached.embeds[~kept].any()
    # Zeroed padding is exact for the DiT: its cross-attention masks those positions.
    latents, t = torch.randn(3, 4, 4, 4), torch.tensor([100])
    a = DIT.predict(model, latents, latents, t, cached.embeds, cached.mask)
    b = DIT.predict(model, latents, latents, t, direct.embeds, direct.mask)
    assert torch.allclose(a, b, atol=1e-5)


def test_text_cache_is_reused_and_rebuilt_for_another_encoder(tiny_editor, tiny_dit, tmp_path, caplog):
    build_text_cache(tiny_editor, ["x"], tmp_path)
    stamp = (tmp_path / "index.json").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        build_text_cache(tiny_editor, ["x"], tmp_path)
    assert "Reusing" in caplog.text and (tmp_path / "index.json").stat().st_mtime_ns == stamp
    build_text_cache(tiny_dit, ["x"], tmp_path)
    assert json.loads((tmp_path / "index.json").read_text())["identity"]["kind"] == "dit"


def test_export_is_a_complete_editor_folder(tiny_sd_dir, tmp_path):
    trainable = load_trainable(tiny_sd_dir, "unet")
    export_editor(trainable.editor, trainable.editor.denoiser, tmp_path / "out")
    model = load_editor(tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInstructPix2PixPipeline"
    assert model.scheduler_config["_class_name"] == "EulerDiscreteScheduler"
    assert model.denoiser.config.in_channels == 8
    assert torch.equal(model.denoiser.conv_in.weight, trainable.editor.denoiser.conv_in.weight)


# Checkpoints -----------------------------------------------------------------------------------


def _write_files(partial):
    (partial / "unet").mkdir()
    (partial / "unet" / "weights.bin").write_bytes(b"w" * 100)


def test_checkpoints_are_atomic_and_rotated(tmp_path):
    for step in (2, 4, 6):
        checkpoints.save_checkpoint(tmp_path, step, {"step": step}, _write_files, total_limit=2)
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path)] == [4, 6]
    assert checkpoints.resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-6"
    assert checkpoints.resolve_resume("checkpoint-4", tmp_path) == tmp_path / "checkpoint-4"
    assert checkpoints.resolve_resume("latest", tmp_path / "empty") is None
    with pytest.raises(InputError, match="checkpoint-9 is not a complete checkpoint.*checkpoint-4, checkpoint-6"):
        checkpoints.resolve_resume("checkpoint-9", tmp_path)


def test_latest_is_the_newest_checkpoint_folder_even_a_damaged_one(tmp_path):
    """An emptied checkpoint-N is a damaged checkpoint for the integrity check to refuse, not "none yet"."""
    checkpoints.save_checkpoint(tmp_path, 2, {"step": 2}, _write_files, total_limit=None)
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-6.partial").mkdir()  # a save in progress is never a checkpoint
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path)] == [2]
    assert checkpoints.resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-4"
    only_empty = tmp_path / "fresh"
    (only_empty / "checkpoint-1").mkdir(parents=True)
    assert checkpoints.resolve_resume("latest", only_empty) == only_empty / "checkpoint-1"
    # Resuming from an older one sets the damaged later one aside too, so latest never picks it again.
    assert [p.name for p in checkpoints.set_aside_newer(tmp_path, 2)] == ["checkpoint-4.superseded"]
    assert checkpoints.resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-2"


def test_full_disk_mid_save_leaves_the_previous_checkpoint_whole(tmp_path):
    checkpoints.save_checkpoint(tmp_path, 2, {"step": 2}, _write_files, total_limit=1)
    before = (tmp_path / "checkpoint-2" / "unet" / "weights.bin").read_bytes()

    def fills_the_disk(partial):
        _write_files(partial)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(checkpoints.CheckpointError) as info:
        checkpoints.save_checkpoint(tmp_path, 4, {"step": 4}, fills_the_disk, total_limit=1)
    message = str(info.value)
    assert "No space left on device" in message and "checkpoint-2 is untouched" in message
    assert "--resume latest" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert (tmp_path / "checkpoint-2" / "unet" / "weights.bin").read_bytes() == before
    assert checkpoints.resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-2"


def test_a_killed_save_is_ignored_and_cleaned(tmp_path):
    checkpoints.save_checkpoint(tmp_path, 2, {"step": 2}, _write_files, total_limit=None)
    killed = checkpoints.begin_checkpoint(tmp_path, 4)
    _write_files(killed)
    assert checkpoints.resolve_resume("latest", tmp_path).name == "checkpoint-2"
    assert checkpoints.remove_partial(tmp_path) == [killed] and not killed.exists()


def test_incompatible_checkpoint_says_what_differs(tmp_path):
    saved = {"backbone": "unet", "denoiser_config": {"in_channels": 8}, "optimizer": "prodigy", "use_ema": True}
    current = {**saved, "optimizer": "adamw", "resolution": 256}
    with pytest.raises(checkpoints.CheckpointError, match="optimizer: checkpoint 'prodigy', this run 'adamw'"):
        checkpoints.check_compatible(saved, current, tmp_path)
    warnings = checkpoints.check_compatible({**saved, "resolution": 512}, {**saved, "resolution": 256}, tmp_path)
    assert len(warnings) == 1 and warnings[0].startswith("resolution differs (checkpoint 512, this run 256)")


def test_a_real_write_failure_mid_save_is_caught(tmp_path):
    """A file-size limit makes torch.save fail the way a full disk does (not with an OSError)."""
    import resource
    import signal

    def write(partial):
        torch.save(torch.zeros(200_000), partial / "optimizer.bin")

    checkpoints.save_checkpoint(tmp_path, 2, {"step": 2}, write, total_limit=3)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(checkpoints.CheckpointError, match="checkpoint-2 is untouched and loadable"):
            checkpoints.save_checkpoint(tmp_path, 4, {"step": 4}, write, total_limit=3)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert torch.load(tmp_path / "checkpoint-2" / "optimizer.bin").shape == (200_000,)


def test_resuming_from_an_older_checkpoint_sets_later_ones_aside(tmp_path):
    for step in (2, 4, 6):
        checkpoints.save_checkpoint(tmp_path, step, {"step": step}, _write_files, total_limit=None)
    moved = checkpoints.set_aside_newer(tmp_path, 2)
    assert sorted(p.name for p in moved) == ["checkpoint-4.superseded", "checkpoint-6.superseded"]
    assert checkpoints.resolve_resume("latest", tmp_path).name == "checkpoint-2"
    # Rotation counts only the live branch and never deletes the checkpoint just written.
    checkpoints.save_checkpoint(tmp_path, 3, {"step": 3}, _write_files, total_limit=1)
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path)] == [3]
    assert (tmp_path / "checkpoint-6.superseded").is_dir()


def test_text_cache_built_by_two_processes(tiny_dit, tmp_path):
    """Each rank encodes its share into its own shards; rank 0 writes the index last."""
    captions = [f"{n} buildings destroyed near the river" for n in range(7)]
    for rank in (1, 0):  # rank 1 finishes first; rank 0 deletes any old index, then merges
        build_text_cache(tiny_dit, captions, tmp_path, rank=rank, world_size=2)
    names = sorted(p.name for p in tmp_path.glob("shard-*"))
    assert names == ["shard-r000-00000.safetensors", "shard-r001-00000.safetensors"]
    cached = CachedTextFeed(tmp_path)(captions, torch.device("cpu"))
    direct = TextEncoderFeed(tiny_dit)(captions, torch.device("cpu"))
    assert torch.equal(cached.mask, direct.mask)
    assert torch.allclose(cached.embeds[direct.mask.bool()], direct.embeds[direct.mask.bool()], atol=1e-6)


def test_an_interrupted_cache_build_leaves_no_index(tiny_editor, tmp_path, monkeypatch):
    from rsedit_core.train import text_cache

    build_text_cache(tiny_editor, ["old caption"], tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(text_cache, "embed_prompts", crash)
    with pytest.raises(KeyboardInterrupt):
        build_text_cache(tiny_editor, ["new caption"], tmp_path)
    assert not (tmp_path / "index.json").exists()
    assert not text_cache.cache_is_valid(tmp_path, text_cache.encoder_identity(tiny_editor), {"old caption"})
