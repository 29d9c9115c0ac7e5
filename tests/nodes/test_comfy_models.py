"""nodes/comfy_models.py on the ComfyUI test double: each part gets the devices ComfyUI assigns
its role under each flag, offloading goes through ComfyUI's memory manager, the VAE follows
ComfyUI's VAE precision and previews follow ``--preview-method``.

Flags are simulated by setting the double's ``comfy.cli_args.args`` and redoing ComfyUI's import-time
decisions (``configure_from_args``); the "GPU" is the meta device, so no module holds real data
on it (tests that move weights there load a fresh tiny editor).
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from comfy_double import reset_comfy_double

from rsedit_core.loading import load_editor

CPU = torch.device("cpu")
GPU = torch.device("meta")  # the stand-in GPU
PARTS = ("denoiser", "vae", "text_encoder")


@pytest.fixture
def cm(pack):
    """``nodes.comfy_models`` of the pack imported against a freshly reset double."""
    reset_comfy_double()
    yield importlib.import_module(f"{pack.__name__}.nodes.comfy_models")
    reset_comfy_double()


@pytest.fixture
def simulate(monkeypatch):
    """``simulate(gpu=True, **flags)``: ComfyUI started with these flags (``cpu_vae=True`` for
    ``--cpu-vae``), on the stand-in GPU unless ``gpu=False``; undone at teardown."""
    import comfy.model_management as mm
    from comfy.cli_args import args

    for name in ("cpu_state", "vram_state", "DISABLE_SMART_MEMORY", "_gpu_stand_in"):
        monkeypatch.setattr(mm, name, getattr(mm, name))

    def apply(gpu: bool = True, **flags):
        monkeypatch.setattr(args, "cpu", not gpu)
        for flag, value in flags.items():
            assert hasattr(args, flag), flag
            monkeypatch.setattr(args, flag, value)
        return mm.configure_from_args(gpu_device=GPU if gpu else None)

    return apply


def devices(editor) -> dict[str, tuple[torch.device, torch.device]]:
    return {part: (getattr(editor, part).load_device, getattr(editor, part).offload_device) for part in PARTS}


def on(module) -> torch.device:
    return next(module.parameters()).device


NORMAL = {"denoiser": (GPU, CPU), "vae": (GPU, CPU), "text_encoder": (GPU, CPU)}
FLAG_CASES = {
    "no flags": ({}, NORMAL),
    "--cpu-vae": ({"cpu_vae": True}, {**NORMAL, "vae": (CPU, CPU)}),
    "--gpu-only": ({"gpu_only": True}, {"denoiser": (GPU, GPU), "vae": (GPU, GPU), "text_encoder": (GPU, GPU)}),
    "--highvram": ({"highvram": True}, {**NORMAL, "denoiser": (GPU, GPU)}),
    "--lowvram": ({"lowvram": True}, {**NORMAL, "text_encoder": (CPU, CPU)}),
    "--novram": ({"novram": True}, {**NORMAL, "text_encoder": (CPU, CPU)}),
    "--force-fp32": ({"force_fp32": True}, {**NORMAL, "text_encoder": (CPU, CPU)}),
    "--gpu-only --cpu-vae": (
        {"gpu_only": True, "cpu_vae": True},
        {"denoiser": (GPU, GPU), "vae": (CPU, GPU), "text_encoder": (GPU, GPU)},
    ),
}


@pytest.mark.parametrize("case", FLAG_CASES, ids=list(FLAG_CASES))
def test_each_part_gets_the_devices_comfyui_assigns_its_role(cm, simulate, tiny_editor_dir, case):
    flags, expected = FLAG_CASES[case]
    simulate(**flags)
    model = load_editor(tiny_editor_dir)
    editor = cm.ComfyEditor.wrap("tiny", model)
    assert devices(editor) == expected
    for part in PARTS:  # at rest on the offload device, where ComfyUI keeps unloaded models
        patcher = getattr(editor, part)
        assert on(patcher.model.inner) == patcher.offload_device == patcher.model.device
        assert patcher.model.inner is getattr(model, part)


def test_cpu_server_puts_everything_on_the_cpu(cm, simulate, tiny_editor):
    simulate(gpu=False)
    editor = cm.ComfyEditor.wrap("tiny", tiny_editor)
    assert devices(editor) == {part: (CPU, CPU) for part in PARTS}
    assert cm.role_devices("vae") == (CPU, CPU)


def test_roles_ask_comfyui_at_wrap_time(cm, monkeypatch, tiny_editor):
    """The device functions are looked up when wrapping, so a ComfyUI that answers differently
    (another build, a custom node that patches them) is followed."""
    import comfy.model_management as mm

    answers = {
        "get_torch_device": torch.device("cpu", 0),
        "unet_offload_device": CPU,
        "vae_device": torch.device("cpu", 1),
        "vae_offload_device": CPU,
        "text_encoder_device": torch.device("cpu", 2),
        "text_encoder_offload_device": CPU,
    }
    for name, device in answers.items():
        monkeypatch.setattr(mm, name, lambda device=device: device)
    editor = cm.ComfyEditor.wrap("tiny", tiny_editor)
    assert [getattr(editor, part).load_device.index for part in PARTS] == [0, 1, 2]
    damage = cm.ComfyModule.wrap(torch.nn.Linear(2, 2))
    assert (damage.patcher.load_device, damage.patcher.offload_device) == (torch.device("cpu", 0), CPU)


def test_damage_module_gets_the_denoiser_role(cm, simulate):
    simulate(gpu_only=True)
    damage = cm.ComfyModule.wrap(torch.nn.Linear(2, 2))
    assert (damage.patcher.load_device, damage.patcher.offload_device) == (GPU, GPU)


def test_unknown_part_is_refused(cm, tiny_editor):
    editor = cm.ComfyEditor.wrap("tiny", tiny_editor)
    with pytest.raises(ValueError, match="Unknown RSEdit model part 'unet'"):
        editor.load("unet")
    with pytest.raises(ValueError, match="denoiser, vae, text_encoder"):
        editor.offload("model")


class _WatchedList(list):
    """A list that records which module mutated it (to prove our code never edits ComfyUI's)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.mutators: list[str] = []

    def _record(self):
        self.mutators.append(sys._getframe(2).f_globals.get("__name__", "?"))


def _watching(method):
    def watched(self, *args, **kwargs):
        self._record()
        return method(self, *args, **kwargs)

    return watched


for _name in ("append", "extend", "insert", "pop", "remove", "clear", "__setitem__", "__delitem__", "__iadd__"):
    setattr(_WatchedList, _name, _watching(getattr(list, _name)))


def test_offload_goes_through_comfyuis_memory_manager(cm, monkeypatch, tiny_editor):
    import comfy.model_management as mm

    watched = _WatchedList()
    monkeypatch.setattr(mm, "current_loaded_models", watched)
    calls = []
    real_free_memory = mm.free_memory

    def free_memory(memory_required, device, keep_loaded=()):
        calls.append((memory_required, device, [entry.model for entry in keep_loaded]))
        return real_free_memory(memory_required, device, keep_loaded)

    monkeypatch.setattr(mm, "free_memory", free_memory)

    editor = cm.ComfyEditor.wrap("tiny", tiny_editor)
    editor.load("text_encoder")
    editor.load("denoiser", "vae")
    assert {id(p) for p in mm.loaded_models()} == {id(editor.text_encoder), id(editor.denoiser), id(editor.vae)}
    watched.mutators.clear()

    editor.offload("text_encoder")

    assert editor.text_encoder not in mm.loaded_models()
    assert editor.denoiser in mm.loaded_models() and editor.vae in mm.loaded_models()
    [(required, device, kept)] = calls
    assert device == editor.text_encoder.load_device and required >= 1e30
    assert editor.text_encoder not in kept and editor.denoiser in kept and editor.vae in kept
    assert editor.text_encoder.loaded_size() == 0
    assert editor.text_encoder.model.device == editor.text_encoder.offload_device
    assert watched.mutators and cm.__name__ not in watched.mutators
    assert set(watched.mutators) <= {mm.__name__}

    editor.offload("text_encoder")  # not loaded any more: nothing to do, nothing else unloaded
    assert editor.denoiser in mm.loaded_models() and editor.vae in mm.loaded_models()
    editor.load("text_encoder")  # ComfyUI loads it again on the next need
    assert editor.text_encoder in mm.loaded_models()


def test_damage_module_offloads_through_the_memory_manager(cm):
    import comfy.model_management as mm

    damage = cm.ComfyModule.wrap(torch.nn.Linear(2, 2))
    damage.load()
    assert damage.patcher in mm.loaded_models()
    damage.offload()
    assert damage.patcher not in mm.loaded_models() and damage.patcher.loaded_size() == 0


def test_fp32_vae_flag_casts_the_vae_of_an_fp16_editor(cm, simulate, tiny_editor_dir):
    simulate(fp32_vae=True)
    model = load_editor(tiny_editor_dir, dtype="fp16")
    cm.ComfyEditor.wrap("tiny", model)
    assert model.vae.dtype == torch.float32 and on(model.vae).type == "cpu"
    assert model.denoiser.dtype == torch.float16 and model.text_encoder.dtype == torch.float16


@pytest.mark.parametrize(
    ("flags", "loaded", "expected"),
    [
        ({}, "fp16", torch.float16),  # a GPU runs fp16 VAEs: kept
        ({}, "bf16", torch.bfloat16),
        ({}, "fp32", torch.float32),
        ({"cpu_vae": True}, "fp16", torch.float32),  # not fp16 on a CPU, as ComfyUI decides
        ({"fp16_vae": True}, "fp32", torch.float16),
        ({"bf16_vae": True}, "fp16", torch.bfloat16),
        ({"force_fp32": True}, "fp16", torch.float32),
    ],
)
def test_vae_runs_in_the_precision_comfyui_assigns(cm, simulate, tiny_editor_dir, flags, loaded, expected):
    simulate(**flags)
    model = load_editor(tiny_editor_dir, dtype=loaded)
    editor = cm.ComfyEditor.wrap("tiny", model)
    assert model.vae.dtype == expected == editor.vae.model.inner.dtype


def test_cpu_server_upcasts_an_fp16_vae_and_encodes_with_it(cm, simulate, tiny_editor_dir):
    from rsedit_core.conditioning import encode_source

    simulate(gpu=False)
    model = load_editor(tiny_editor_dir, dtype="fp16")
    editor = cm.ComfyEditor.wrap("tiny", model)
    assert model.vae.dtype == torch.float32
    editor.load("vae")
    source = encode_source(model, torch.rand(1, 3, 64, 64))
    assert torch.isfinite(source.latents).all()


def test_preview_enabled_follows_the_preview_method(cm, monkeypatch):
    from comfy.cli_args import LatentPreviewMethod, args

    assert args.preview_method is LatentPreviewMethod.NoPreviews  # ComfyUI's default
    assert cm.preview_enabled() is False
    for method in (LatentPreviewMethod.Auto, LatentPreviewMethod.Latent2RGB, LatentPreviewMethod.TAESD):
        monkeypatch.setattr(args, "preview_method", method)
        assert cm.preview_enabled() is True
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.NoPreviews)
    assert cm.preview_enabled() is False
    monkeypatch.delattr(args, "preview_method")  # a ComfyUI without the flag
    assert cm.preview_enabled() is False


def test_preview_size_follows_the_flag(cm, monkeypatch):
    from comfy.cli_args import args

    assert cm.preview_size() == 512
    monkeypatch.setattr(args, "preview_size", 256)
    assert cm.preview_size() == 256
