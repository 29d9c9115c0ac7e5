"""training/train.py end to end on tiny random models: export, exact resume, DiT, two processes, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, write_pairs
from train_script import run_script, same_checkpoint, script_args, weights

from rsedit_core.edit import edit_images
from rsedit_core.loading import load_editor
from rsedit_core.settings import EditSettings


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("rscc"), count=5, test_pairs=1)


def test_unet_from_text_to_image_base_trains_logs_and_exports(tiny_sd_dir, pairs, tmp_path, caplog):
    out = tmp_path / "run"
    extra = ["--max-train-steps", "3", "--checkpointing-steps", "2", "--report-to", "tensorboard",
             "--logging-steps", "1", "--validation-data", str(pairs), "--validation-pairs", "2",
             "--validation-steps", "2", "--validation-num-inference-steps", "2"]  # fmt: skip
    with caplog.at_level("INFO"):
        assert run_script(script_args(tiny_sd_dir, pairs, out, *extra)) == 0
    assert "conv_in widened 4 -> 8" in caplog.text and "4 used; skipped 1 listed as test pairs" in caplog.text
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    state = json.loads((out / "checkpoint-2" / "training_state.json").read_text())
    assert state["step"] == 2 and state["backbone"] == "unet" and state["denoiser_config"]["in_channels"] == 8
    assert {p.name for p in (out / "checkpoint-2").iterdir()} >= {"unet", "unet_ema", "optimizer.bin"}
    assert len(list((out / "validation" / "step-2").glob("*.png"))) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents*")).parent)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "prodigy_d", "pairs_per_second", "memory_gb"} <= tags
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert all(np.isfinite(e.value) and e.value > 0 for e in events.Scalars("loss"))
    assert "validation" in events.Tags()["images"]

    # The export is an editor as released: the library, the CLI and the ComfyUI loader read it as is.
    model = load_editor(out)
    assert model.backbone.name == "unet" and model.denoiser.config.in_channels == 8
    ema = weights(out / "checkpoint-3" / "unet_ema")
    assert torch.equal(weights(out / "editor" / "unet")["conv_in.weight"], ema["conv_in.weight"])
    assert model.root == out / "editor"
    result = edit_images(model, torch.rand(1, 3, 64, 64), "flood the coast", settings=EditSettings(steps=2))
    assert result.images.shape == (1, 3, 64, 64) and torch.isfinite(result.images).all()

    from rsedit_core.cli import main as cli

    scene = next((pairs / "images").glob("*pre*"))
    edit = ["edit", "--model", str(out), "--image", str(scene), "--prompt", "flood", "--out", str(tmp_path / "e.png")]
    assert cli([*edit, "--steps", "2", "--device", "cpu"]) == 0 and (tmp_path / "e.png").is_file()


def test_editor_base_is_continued_and_its_export_loads_in_the_comfyui_loader(
    pack, tiny_editor_dir, pairs, tmp_path, caplog
):
    import asyncio

    import folder_paths
    from comfy_double import reset_comfy_double
    from comfy_double.runner import run_node

    out = tmp_path / "models" / "rsedit" / "my-finetune"
    with caplog.at_level("INFO"):
        assert run_script(script_args(tiny_editor_dir, pairs, out, "--max-train-steps", "1")) == 0
    assert "already takes 8 channels: continuing from this editor, not widening again" in caplog.text
    reset_comfy_double()
    folder_paths.models_dir = str(tmp_path / "models")
    extension = asyncio.run(pack.comfy_entrypoint())
    nodes = {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}
    loader = {spec.id: spec for spec in nodes["RSEditLoader"].define_schema().inputs}["model"]
    assert loader.options == ["my-finetune/editor"], "checkpoints must not be listed as editors"
    model = run_node(nodes["RSEditLoader"], model="my-finetune/editor", dtype="fp32")[0]
    assert model.model.backbone.name == "unet" and model.model.text_max_length == 248


def test_resumed_run_reaches_the_uninterruptedweights(tiny_sd_dir, tmp_path_factory):
    """5 pairs, batch 1, accumulation 2: steps end after batches 2, 4 and 5 of each epoch. Stopped
    at step 4 (epoch 1, batch 2: mid-epoch, after the first) and resumed to step 6: the same model
    and EMA, bit for bit, as a run that never stopped, with data workers. The uninterrupted run
    also validates every step, which must not change training."""
    data = write_pairs(tmp_path_factory.mktemp("resume-data"), count=5, seed=5)
    common = ["--train-batch-size", "1", "--gradient-accumulation-steps", "2", "--checkpointing-steps", "2",
              "--random-crop", "--random-flip", "--resolution", "64", "--dataloader-num-workers", "2"]  # fmt: skip
    validating = ["--validation-data", str(data), "--validation-pairs", "1", "--validation-steps", "1",
                  "--validation-num-inference-steps", "1"]  # fmt: skip
    whole, parts = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("parts")
    assert run_script(script_args(tiny_sd_dir, data, whole, *common, *validating, "--max-train-steps", "6")) == 0
    assert run_script(script_args(tiny_sd_dir, data, parts, *common, "--max-train-steps", "4")) == 0
    state = json.loads((parts / "checkpoint-4" / "training_state.json").read_text())
    assert (state["epoch"], state["batches_into_epoch"]) == (1, 2)
    assert (
        run_script(script_args(tiny_sd_dir, data, parts, *common, "--max-train-steps", "6", "--resume", "latest")) == 0
    )
    same_checkpoint(whole / "checkpoint-6", parts / "checkpoint-6")
    base = load_editor(whole).denoiser.conv_in.weight
    assert not torch.equal(base[:, 4:], torch.zeros_like(base[:, 4:])), "the source channels did not train"


def _launch_two(args: list[str], out: Path) -> str:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    accelerate = Path(sys.executable).with_name("accelerate")
    script = str(ROOT / "training" / "train.py")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", script, *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    return log


def test_two_processes_train_save_once_and_resume_exactly(tiny_sd_dir, pairs, tmp_path):
    """Data parallel over gloo with 2 CPU processes: 4 pairs give 2 batches per process per epoch.
    Stopped at step 3 (epoch 1, mid-epoch) and resumed to 5, as a run that never stopped."""
    common = ["--train-batch-size", "1", "--checkpointing-steps", "1", "--random-flip"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    log = _launch_two(script_args(tiny_sd_dir, pairs, whole, *common, "--max-train-steps", "5"), whole)
    assert "1 per process x 2 processes" in log
    assert log.count("Training the U-Net") == 1, "non-main processes should not repeat the run's log"
    files = {p.name for p in (whole / "checkpoint-5").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl", "unet", "unet_ema", "optimizer.bin"} <= files
    assert sorted(p.name for p in whole.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4", "checkpoint-5"]
    assert not list(whole.glob("*.partial")) and load_editor(whole).backbone.name == "unet"
    _launch_two(script_args(tiny_sd_dir, pairs, parts, *common, "--max-train-steps", "3"), parts)
    state = json.loads((parts / "checkpoint-3" / "training_state.json").read_text())
    assert (state["epoch"], state["batches_into_epoch"]) == (1, 1)
    _launch_two(script_args(tiny_sd_dir, pairs, parts, *common, "--max-train-steps", "5", "--resume", "latest"), parts)
    same_checkpoint(whole / "checkpoint-5", parts / "checkpoint-5")


def test_dit_trains_in_bf16_with_cached_text_and_exports(tiny_dit_dir, pairs, tmp_path):
    out = tmp_path / "dit"
    cache = tmp_path / "t5-cache"
    # bf16 autocast with the frozen VAE and T5 in bf16: the cache then holds bf16 rows.
    extra = ["--max-train-steps", "2", "--checkpointing-steps", "2", "--text-embeddings-cache", str(cache),
             "--mixed-precision", "bf16"]  # fmt: skip
    assert run_script(script_args(tiny_dit_dir, pairs, out, *extra, backbone="dit")) == 0
    assert (cache / "index.json").is_file() and (out / "checkpoint-2" / "transformer_ema").is_dir()
    assert len(json.loads((cache / "index.json").read_text())["entries"]) == 5  # 4 captions + the empty one
    assert json.loads((cache / "index.json").read_text())["identity"]["dtype"] == "torch.bfloat16"
    exported = weights(out / "editor" / "vae")  # the base's own fp32 files, not the bf16 copy
    assert all(v.dtype == torch.float32 for v in exported.values())
    model = load_editor(out)
    assert model.backbone.name == "dit" and model.scheduler_config["_class_name"] == "DPMSolverMultistepScheduler"
    assert not list(out.rglob("pipeline_rsedit_dit.py"))
    result = edit_images(model, torch.rand(1, 3, 64, 64), "flood", settings=EditSettings(steps=2))
    assert torch.isfinite(result.images).all()


def test_save_checkpoint_on_a_non_main_process_only_writes_its_part(tmp_path):
    from rsedit_core.train import checkpoints

    calls = []
    checkpoints.save_checkpoint(tmp_path, 3, {"step": 3}, calls.append, None, is_main=False)
    assert calls == [tmp_path / "checkpoint-3.partial"] and list(tmp_path.iterdir()) == []


# Bad input ----------------------------------------------------------------------------------------


def test_unusable_dataset_stops_with_counts_before_loading_a_model(tiny_sd_dir, tmp_path, caplog):
    data = write_pairs(tmp_path / "data", count=3)
    (data / "images" / "tile000_post_disaster.png").unlink()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(data / "images" / "tile001_post_disaster.png")
    lines = (data / "RSCC_qvq.jsonl").read_text().splitlines()
    record = json.loads(lines[2])
    del record["change_caption"]
    lines[2] = json.dumps(record)
    (data / "RSCC_qvq.jsonl").write_text("\n".join(lines))
    with caplog.at_level("INFO"):
        assert run_script(script_args(tiny_sd_dir, data, tmp_path / "out")) == 2
    assert "3 records, 0 used" in caplog.text and "1 with a missing image file" in caplog.text
    assert "1 without a caption" in caplog.text and "1 with pre and post of different sizes" in caplog.text
    assert "Loaded RSEdit" not in caplog.text


def test_arguments_are_checked_after_parsing(tiny_dit_dir, pairs, tmp_path, caplog):
    args = script_args(
        tiny_dit_dir, pairs, tmp_path / "out", "--resolution", "72", "--text-encoder", "x.pt", backbone="dit"
    )
    assert run_script(args) == 2
    assert (
        "--resolution 72 must be a multiple of 16" in caplog.text
        and "--text-encoder applies to the U-Net" in caplog.text
    )


def test_resuming_an_incompatible_checkpoint_says_what_differs(tiny_sd_dir, pairs, tmp_path, caplog):
    out = tmp_path / "run"
    assert run_script(script_args(tiny_sd_dir, pairs, out, "--max-train-steps", "1")) == 0
    again = script_args(tiny_sd_dir, pairs, out, "--max-train-steps", "2", "--resume", "latest", "--optimizer", "adamw")
    assert run_script(again) == 2
    assert "optimizer: checkpoint 'prodigy', this run 'adamw'" in caplog.text


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tiny_sd_dir, pairs, tmp_path, monkeypatch, caplog):
    """torch.save on a full disk raises RuntimeError ("unexpected pos"), not OSError."""
    from accelerate import Accelerator

    out = tmp_path / "run"
    real_save = Accelerator.save_state

    def fills_up(self, output_dir=None, **kwargs):
        real_save(self, output_dir, **kwargs)
        if "checkpoint-2" in str(output_dir):
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(Accelerator, "save_state", fills_up)
    args = script_args(tiny_sd_dir, pairs, out, "--max-train-steps", "2", "--checkpointing-steps", "1")
    assert run_script(args) == 2
    assert "PytorchStreamWriter failed" in caplog.text and "checkpoint-1 is untouched and loadable" in caplog.text
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    monkeypatch.setattr(Accelerator, "save_state", real_save)
    assert run_script([*args, "--resume", "latest"]) == 0
    assert (out / "checkpoint-2").is_dir() and load_editor(out).backbone.name == "unet"
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_script([*args, "--resume", "latest"]) == 0
    assert "Already at step 2 of --max-train-steps 2: nothing to train" in caplog.text


def test_too_many_corrupt_images_abort(tiny_sd_dir, tmp_path, caplog):
    data = write_pairs(tmp_path / "data", count=8)
    for i in range(4):
        path = data / "images" / f"tile{i:03d}_post_disaster.png"
        path.write_bytes(path.read_bytes()[:200])
    args = script_args(tiny_sd_dir, data, tmp_path / "out", "--train-batch-size", "4", "--max-train-steps", "40",
                 "--checkpointing-steps", "100")  # fmt: skip
    with caplog.at_level("WARNING"):
        assert run_script(args) == 2
    assert "unreadable images (more than --max-corrupt-fraction 0.01)" in caplog.text
    assert "tile00" in caplog.text and not (tmp_path / "out" / "model_index.json").exists()
    shutil.rmtree(tmp_path / "out")


def test_hf_dataset_with_adamw_bf16_and_gradient_checkpointing(tiny_sd_dir, pairs, tmp_path):
    """The alternative paths in one run: an HF save_to_disk source, AdamW, bf16 autocast with the
    frozen parts in bf16, gradient checkpointing; the export still ships fp32 VAE and text encoder."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rows = [json.loads(line) for line in (pairs / "RSCC_qvq.jsonl").read_text().splitlines()]
    table = {
        "input_image": [Image.open(pairs / r["pre_image"]).convert("RGB") for r in rows],
        "edited_image": [Image.open(pairs / r["post_image"]).convert("RGB") for r in rows],
        "edit_prompt": [r["change_caption"] for r in rows],
    }
    features = datasets.Features(
        {"input_image": datasets.Image(), "edited_image": datasets.Image(), "edit_prompt": datasets.Value("string")}
    )
    datasets.Dataset.from_dict(table, features=features).save_to_disk(str(tmp_path / "hf"))
    out = tmp_path / "run"
    extra = ["--optimizer", "adamw", "--mixed-precision", "bf16", "--gradient-checkpointing", "--max-train-steps", "2"]
    assert run_script(script_args(tiny_sd_dir, tmp_path / "hf", out, *extra)) == 0
    # The frozen parts trained in bf16; the export ships the base's own full-precision files.
    for part in ("vae", "text_encoder"):
        exported, base = weights(out / "editor" / part), weights(tiny_sd_dir / part)
        assert exported.keys() == base.keys() and all(torch.equal(v, base[k]) for k, v in exported.items())
    assert load_editor(out).vae.dtype == torch.float32
    assert json.loads((out / "checkpoint-2" / "training_state.json").read_text())["optimizer"] == "adamw"


def test_a_checkpoint_folder_is_not_an_editor_and_says_so(tiny_sd_dir, pairs, tmp_path):
    from rsedit_core.errors import ModelFormatError

    out = tmp_path / "run"
    assert run_script(script_args(tiny_sd_dir, pairs, out, "--max-train-steps", "1")) == 0
    with pytest.raises(ModelFormatError, match="is a training checkpoint.*Load the run's editor/ folder"):
        load_editor(out / "checkpoint-1")


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted((ROOT / "training" / "configs").glob("*.yaml")):
        kinds[path.stem] = load_config_from_file(str(path)).distributed_type.value
    assert kinds == {"deepspeed_zero2": "DEEPSPEED", "multi_gpu": "MULTI_GPU"}


def test_fsdp_is_refused_with_the_reason():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from rsedit_core.errors import InputError
    from rsedit_core.train.preparation import refuse_unsupported

    with pytest.raises(InputError, match="FSDP is not supported: the EMA and the diffusers checkpoints"):
        refuse_unsupported(SimpleNamespace(distributed_type=DistributedType.FSDP))
    refuse_unsupported(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))


def test_validation_scores_edits_with_the_damage_model(tiny_sd_dir, pairs, damage_checkpoint, tmp_path):
    """RSCC test-split records carry a ``mask``: validation edits are assessed by ChangeStar and
    scored against it (F1_dam logged); records without one are edited but not scored."""
    from PIL import Image

    rows = [json.loads(line) for line in (pairs / "RSCC_qvq.jsonl").read_text().splitlines()][:2]
    masks = np.random.default_rng(0).integers(0, 5, (64, 64), dtype=np.uint8)
    Image.fromarray(masks).save(tmp_path / "mask0.png")
    rows[0]["mask"] = str(tmp_path / "mask0.png")
    for row in rows:
        for key in ("pre_image", "post_image"):
            row[key] = str(pairs / row[key])
    (tmp_path / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    extra = ["--max-train-steps", "1", "--validation-data", str(tmp_path / "val.jsonl"), "--validation-steps", "1",
             "--validation-num-inference-steps", "1", "--damage-model", str(damage_checkpoint),
             "--report-to", "tensorboard"]  # fmt: skip
    assert run_script(script_args(tiny_sd_dir, pairs, out, *extra)) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents*")).parent)).Reload()
    (f1,) = events.Scalars("val/f1_dam")
    assert f1.step == 1 and 0.0 <= f1.value <= 1.0
    assert {"val/f1_loc", "val/xview2_score"} <= set(events.Tags()["scalars"])
    assert len(list((out / "validation" / "step-1").glob("*.png"))) == 2


def test_every_flag_has_help_and_the_issue_flags_exist():
    from rsedit_core.train.args import build_parser

    parser = build_parser()
    flags = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    expected = {"--backbone", "--base", "--data", "--output-dir", "--resolution", "--train-batch-size",
                "--gradient-accumulation-steps", "--max-train-steps", "--checkpointing-steps",
                "--checkpoints-total-limit", "--resume", "--seed", "--mixed-precision"}  # fmt: skip
    assert expected <= flags
    args = parser.parse_args(["--backbone", "unet", "--base", "b", "--data", "d", "--output-dir", "o"])
    assert (args.resolution, args.train_batch_size * args.gradient_accumulation_steps) == (512, 32)
    assert (args.max_train_steps, args.ema_decay, args.conditioning_dropout, args.mixed_precision) == (
        30000,
        0.9999,
        0.05,
        "bf16",
    )


def test_the_loop_lives_in_the_library_and_importing_it_stays_light():
    """training/train.py is the thin launcher; ``import rsedit_core.train`` loads no accelerate or
    torch, and no library module imports accelerate at module level."""
    import ast

    code = (
        "import sys, rsedit_core.train as t\n"
        "print(sorted(m for m in ('accelerate', 'torch', 'diffusers') if m in sys.modules))\n"
        "from rsedit_core.train.loop import train\n"
        "from rsedit_core.train.runner import StepRunner\n"
        "print(t.train is train, t.StepRunner is StepRunner)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[:2] == ["[]", "True True"], done.stderr
    offenders = []
    for path in (ROOT / "rsedit_core").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "accelerate"]
    assert not offenders
    script = (ROOT / "training" / "train.py").read_text()
    assert "def train(" not in script and "from rsedit_core.train import train" in script
