"""Training's bad inputs: every range refused at start-up in one message, output folders that must
not be used, damaged checkpoints found file by file before a model loads (or resumed knowingly
inexactly), and DataLoader worker errors told as the original message."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_pairs
from train_script import run_script, same_checkpoint, script_args

from rsedit_core.errors import InputError
from rsedit_core.train.args import parse_args
from rsedit_core.train.checkpoints import CheckpointError, resolve_resume
from rsedit_core.train.integrity import check_checkpoint

BASE = ["--backbone", "unet", "--base", "some-user/some-model", "--data", "d"]


def _refusal(tmp_path, *extra: str, base: list[str] = BASE) -> str:
    with pytest.raises(InputError) as caught:
        parse_args([*base, "--output-dir", str(tmp_path / "out"), *extra])
    return str(caught.value)


# Arguments ------------------------------------------------------------------------------------------


def test_out_of_range_arguments_are_refused_together_in_one_message(tmp_path):
    message = _refusal(
        tmp_path,
        *["--seed", "-1", "--learning-rate", "0", "--betas", "0.9", "1.0", "--weight-decay", "-0.1"],
        *["--prodigy-d0", "0", "--max-train-steps", "0", "--gradient-accumulation-steps", "0"],
        *["--train-batch-size", "0", "--resolution", "32", "--max-grad-norm", "nan", "--ema-decay", "inf"],
        *["--lr-warmup-steps", "-1", "--checkpointing-steps", "0", "--validation-pairs", "0"],
    )
    assert message.startswith("Invalid training arguments: ") and message.count(";") == 13
    for fragment in (
        "--seed -1 must be within 0..2**32-1",
        "--learning-rate 0.0 must be > 0",
        "--betas 0.9 1.0 must be two numbers each within [0, 1)",
        "--weight-decay -0.1 must be >= 0",
        "--prodigy-d0 0.0 must be > 0",
        "--max-train-steps must be an integer >= 1, got 0",
        "--gradient-accumulation-steps must be an integer >= 1, got 0",
        "--train-batch-size must be an integer >= 1, got 0",
        "--resolution must be an integer >= 64, got 32",
        "--max-grad-norm must be a finite number, got nan",
        "--ema-decay must be a finite number, got inf",
        "--lr-warmup-steps must be an integer >= 0, got -1",
        "--checkpointing-steps must be an integer >= 1, got 0",
        "--validation-pairs must be an integer >= 1, got 0",
    ):
        assert fragment in message, fragment


@pytest.mark.parametrize(
    "flag",
    ["--learning-rate", "--weight-decay", "--prodigy-d0", "--max-grad-norm", "--ema-decay", "--conditioning-dropout",
     "--max-corrupt-fraction"],
)  # fmt: skip
def test_nan_is_refused_for_every_number(tmp_path, flag):
    assert f"{flag} must be a finite number, got nan" in _refusal(tmp_path, flag, "nan")


def test_nan_betas_and_negative_betas_are_refused(tmp_path):
    assert "--betas nan 0.9 must be two numbers" in _refusal(tmp_path, "--betas", "nan", "0.9")
    assert "--betas -0.1 0.9 must be two numbers" in _refusal(tmp_path, "--betas", "-0.1", "0.9")


def test_seed_range_is_what_numpy_accepts_minus_the_process_index(tmp_path, monkeypatch):
    np.random.seed(2**32 - 1)
    with pytest.raises(ValueError, match="Seed must be between 0 and 2\\*\\*32 - 1"):
        np.random.seed(2**32)
    good = [*BASE, "--output-dir", str(tmp_path / "out")]
    assert parse_args([*good, "--seed", str(2**32 - 1)]).seed == 2**32 - 1
    assert "--seed 4294967296 must be within 0..2**32-1" in _refusal(tmp_path, "--seed", str(2**32))
    monkeypatch.setenv("WORLD_SIZE", "2")  # accelerate's set_seed adds the process index
    assert "must be within 0..4294967294 (each process adds its index)" in _refusal(tmp_path, "--seed", str(2**32 - 1))
    assert parse_args([*good, "--seed", str(2**32 - 2)]).seed == 2**32 - 2


def test_defaults_pass_and_resume_inexact_needs_resume(tmp_path):
    args = parse_args([*BASE, "--output-dir", str(tmp_path / "out")])
    assert (args.learning_rate, args.betas, args.resolution) == (1.0, (0.9, 0.99), 512)
    assert "--resume-inexact only applies together with --resume" in _refusal(tmp_path, "--resume-inexact")


# The output folder -------------------------------------------------------------------------------


def test_output_dir_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InputError, match="--output-dir .*taken is a file; give a folder"):
        parse_args([*BASE, "--output-dir", str(tmp_path / "taken")])
    with pytest.raises(InputError, match="taken is a file, not a folder"):
        parse_args([*BASE, "--output-dir", str(tmp_path / "taken" / "run")])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs refuses new folders, even to root")
def test_output_dir_that_cannot_be_created_is_refused():
    with pytest.raises(InputError, match="cannot create folders in /proc"):
        parse_args([*BASE, "--output-dir", "/proc/rsedit-run"])


def test_output_dir_inside_the_base_model_is_refused(tiny_sd_dir):
    base = ["--backbone", "unet", "--base", str(tiny_sd_dir), "--data", "d"]
    for inside in (tiny_sd_dir, tiny_sd_dir / "runs" / "a"):
        with pytest.raises(InputError, match="is inside the base model folder .*would mix with its weights"):
            parse_args([*base, "--output-dir", str(inside)])


def test_base_that_is_the_runs_own_export_is_refused(tmp_path):
    (tmp_path / "run" / "editor").mkdir(parents=True)
    base = ["--backbone", "unet", "--base", str(tmp_path / "run" / "editor"), "--data", "d"]
    with pytest.raises(InputError, match="is this run's own export folder .*which the run replaces when it ends"):
        parse_args([*base, "--output-dir", str(tmp_path / "run")])


# Damaged checkpoints -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tiny_sd_dir, tmp_path_factory):
    """Three steps, a checkpoint after each (checkpoint-1 to -3), with EMA and Prodigy state."""
    data = write_pairs(tmp_path_factory.mktemp("bad-resume-data"), count=4)
    out = tmp_path_factory.mktemp("bad-resume") / "run"
    assert run_script(script_args(tiny_sd_dir, data, out, "--max-train-steps", "3", "--checkpointing-steps", "1")) == 0
    return data, out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    data, out = finished_run
    shutil.copytree(out, tmp_path / "run")
    return data, tmp_path / "run"


def _truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _flip_a_data_byte(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
        offset = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.file_size // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _without_step(path: Path) -> None:
    state = json.loads(path.read_text())
    del state["step"]
    path.write_text(json.dumps(state))


DAMAGE = {
    "state not JSON": ("training_state.json", lambda p: p.write_text("{not json"), "is not readable JSON"),
    "state a list": ("training_state.json", lambda p: p.write_text("[]"), "is not a JSON object"),
    "state lacks keys": ("training_state.json", _without_step, "lacks step"),
    "optimizer truncated": ("optimizer.bin", _truncate, "is truncated or not a torch file"),
    "optimizer bit flip": ("optimizer.bin", _flip_a_data_byte, "fails its checksum"),
    "scheduler missing": ("scheduler.bin", Path.unlink, "scheduler.bin is missing"),
    "model truncated": ("unet/diffusion_pytorch_model.safetensors", lambda p: _truncate(p, 5000),
                        "truncated or corrupt"),
    "ema config broken": ("unet_ema/config.json", lambda p: p.write_text('{"a'), "is not readable JSON"),
    "ema missing": ("unet_ema", shutil.rmtree, "unet_ema is missing"),
}  # fmt: skip
RNG_DAMAGE = {
    "truncated": (_truncate, "random_states_0.pkl is unreadable (RuntimeError: PytorchStreamReader failed"),
    "empty": (lambda p: p.write_bytes(b""), "random_states_0.pkl is unreadable"),
    "missing": (Path.unlink, "random_states_0.pkl is missing"),
    "no states": (lambda p: torch.save({"step": 1}, p), "lacks random_state, numpy_random_seed, torch_manual_seed"),
    "bad torch state": (lambda p: torch.save({**torch.load(p, weights_only=False), "torch_manual_seed": torch.ones(3)},
                                             p), "holds an invalid RNG state"),
}  # fmt: skip
EXPECTED = {"num_processes": 1, "component_folder": "unet", "use_ema": True, "need_cuda": False}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_checkpoint_file_is_named_with_the_fix(run_copy, case):
    _, out = run_copy
    name, damage, problem = DAMAGE[case]
    damage(out / "checkpoint-3" / name)
    for allow_inexact in (False, True):  # --resume-inexact never covers weights, optimizer or state
        with pytest.raises(CheckpointError) as caught:
            check_checkpoint(out / "checkpoint-3", allow_inexact=allow_inexact, **EXPECTED)
        message = str(caught.value)
        assert message.startswith(f"Cannot resume from {out / 'checkpoint-3'}: {out / 'checkpoint-3'}"), message
        assert problem in message and name.split("/")[0] in message
        assert "checkpoint-2 passes these checks: --resume checkpoint-2" in message
        assert "or start afresh in a new --output-dir" in message and "--resume-inexact" not in message


@pytest.mark.parametrize("case", sorted(RNG_DAMAGE))
def test_damaged_rng_states_are_refused_unless_an_inexact_resume_is_asked_for(run_copy, case):
    _, out = run_copy
    damage, problem = RNG_DAMAGE[case]
    damage(out / "checkpoint-3" / "random_states_0.pkl")
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint(out / "checkpoint-3", **EXPECTED)
    assert problem in str(caught.value) and "--resume checkpoint-2" in str(caught.value)
    assert "or pass --resume-inexact to continue with those processes reseeded" in str(caught.value)
    report = check_checkpoint(out / "checkpoint-3", allow_inexact=True, **EXPECTED)
    assert list(report.rng_problems) == [0] and problem in report.rng_problems[0] and not report.fatal


def test_a_checkpoint_written_on_cpu_is_inexact_on_a_gpu(run_copy):
    _, out = run_copy
    with pytest.raises(CheckpointError, match="holds no CUDA RNG state"):
        check_checkpoint(out / "checkpoint-3", **{**EXPECTED, "need_cuda": True})


def test_no_intact_older_checkpoint_is_said_so(run_copy):
    _, out = run_copy
    for step in (1, 2, 3):
        _truncate(out / f"checkpoint-{step}" / "optimizer.bin")
    with pytest.raises(CheckpointError, match="none of the newest older ones is whole"):
        check_checkpoint(out / "checkpoint-3", **EXPECTED)


def test_a_newest_checkpoint_whose_files_are_gone_is_damaged_not_absent(run_copy):
    _, out = run_copy
    (out / "checkpoint-4").mkdir()
    latest = resolve_resume("latest", out)
    assert latest == out / "checkpoint-4"
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint(latest, **EXPECTED)
    message = str(caught.value)
    assert message.startswith(f"Cannot resume from {latest}: {latest} is empty: every file of the checkpoint is gone.")
    assert "checkpoint-3 passes these checks: --resume checkpoint-3" in message
    (latest / "unet").mkdir()  # some files left, the state file gone: each one missing is named
    with pytest.raises(CheckpointError, match="4/training_state.json is missing; .*unet holds no safetensors"):
        check_checkpoint(latest, **EXPECTED)


def test_an_empty_checkpoint_folder_stops_the_run_instead_of_a_fresh_start(tiny_sd_dir, tmp_path, caplog):
    data = write_pairs(tmp_path / "data", count=4)
    out = tmp_path / "run"
    (out / "checkpoint-1").mkdir(parents=True)
    with caplog.at_level("INFO"):
        assert run_script(script_args(tiny_sd_dir, data, out, "--max-train-steps", "2", "--resume", "latest")) == 2
    assert f"Cannot resume from {out / 'checkpoint-1'}: {out / 'checkpoint-1'} is empty" in caplog.text
    assert f"there is no older checkpoint in {out}), or remove {out / 'checkpoint-1'} to train" in caplog.text
    assert "no checkpoint in" not in caplog.text and "Loaded RSEdit" not in caplog.text
    assert [p.name for p in out.iterdir()] == ["checkpoint-1"] and not any((out / "checkpoint-1").iterdir())


def test_accelerate_alone_skips_an_unreadable_rng_state_silently(tmp_path):
    """Why the files are checked by us: accelerate only logs at INFO and goes on."""
    from accelerate.checkpointing import load_accelerator_state

    (tmp_path / "random_states_0.pkl").write_bytes(b"not a torch file")
    before = torch.get_rng_state()
    assert load_accelerator_state(str(tmp_path), [], [], [], [], 0) == {}
    assert torch.equal(torch.get_rng_state(), before)


def test_a_damaged_checkpoint_stops_the_run_before_any_model_loads(tiny_sd_dir, run_copy, caplog):
    data, out = run_copy
    (out / "checkpoint-3" / "training_state.json").write_text("{not json")
    with caplog.at_level("INFO"):
        assert run_script(script_args(tiny_sd_dir, data, out, "--max-train-steps", "4", "--resume", "latest")) == 2
    assert "training_state.json is not readable JSON" in caplog.text and "--resume checkpoint-2" in caplog.text
    assert "Loaded RSEdit" not in caplog.text


def test_an_incompatible_checkpoint_is_refused_before_any_model_loads(tiny_sd_dir, run_copy, caplog):
    data, out = run_copy
    with caplog.at_level("INFO"):
        again = script_args(tiny_sd_dir, data, out, "--max-train-steps", "4", "--resume", "latest", "--ema-decay", "0")
        assert run_script(again) == 2
    assert "use_ema: checkpoint True, this run False" in caplog.text and "Loaded RSEdit" not in caplog.text


def test_an_inexact_resume_continues_warns_and_is_recorded(tiny_sd_dir, run_copy, caplog):
    data, out = run_copy
    assert json.loads((out / "checkpoint-2" / "training_state.json").read_text())["exact"] is True
    _truncate(out / "checkpoint-2" / "random_states_0.pkl")
    args = script_args(tiny_sd_dir, data, out, "--max-train-steps", "3", "--resume", "checkpoint-2")
    assert run_script(args) == 2
    assert "random_states_0.pkl is unreadable" in caplog.text and "--resume-inexact" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_script([*args, "--resume-inexact"]) == 0
    assert "INEXACTLY (--resume-inexact)" in caplog.text and "no longer matches an uninterrupted one" in caplog.text
    state = json.loads((out / "checkpoint-3" / "training_state.json").read_text())
    assert state["exact"] is False and [r["checkpoint"] for r in state["inexact_resumes"]] == ["checkpoint-2"]
    assert "random_states_0.pkl is unreadable" in state["inexact_resumes"][0]["problems"][0]
    # A later, whole resume does not make the run exact again.
    assert run_script(script_args(tiny_sd_dir, data, out, "--max-train-steps", "4", "--resume", "latest")) == 0
    state = json.loads((out / "checkpoint-4" / "training_state.json").read_text())
    assert state["exact"] is False and len(state["inexact_resumes"]) == 1


def test_rng_states_accelerate_leaves_unrestored_are_applied_and_the_resume_stays_exact(
    tiny_sd_dir, finished_run, run_copy, monkeypatch, caplog
):
    """accelerate restores RNG states in one try block that only logs on failure; a failure half-way
    (here numpy's) leaves the torch RNG unrestored. The states we verified are applied afterwards."""
    import accelerate.checkpointing

    def refuses(state):
        raise ValueError("simulated")

    fake_np = types.SimpleNamespace(random=types.SimpleNamespace(set_state=refuses, get_state=np.random.get_state))
    monkeypatch.setattr(accelerate.checkpointing, "np", fake_np)
    data, out = run_copy
    shutil.rmtree(out / "checkpoint-3")
    with caplog.at_level("INFO"):
        assert run_script(script_args(tiny_sd_dir, data, out, "--max-train-steps", "3", "--resume", "latest")) == 0
    assert "accelerate left the RNG states of process 0 unrestored" in caplog.text
    same_checkpoint(finished_run[1] / "checkpoint-3", out / "checkpoint-3")
    state = json.loads((out / "checkpoint-3" / "training_state.json").read_text())
    assert (state["exact"], state["inexact_resumes"]) == (True, [])


def test_a_resume_with_changed_settings_is_recorded_as_not_exact(tiny_sd_dir, run_copy, caplog):
    data, out = run_copy
    assert (
        run_script(script_args(tiny_sd_dir, data, out, "--max-train-steps", "4", "--resume", "latest", "--seed", "7"))
        == 0
    )
    assert "seed differs (checkpoint 42, this run 7)" in caplog.text
    state = json.loads((out / "checkpoint-4" / "training_state.json").read_text())
    assert state["exact"] is False and state["inexact_resumes"][0]["checkpoint"] == "checkpoint-3"
    assert state["inexact_resumes"][0]["problems"][0].startswith("seed differs")


# DataLoader workers ------------------------------------------------------------------------------


def test_an_error_in_a_data_loader_worker_reads_as_the_original_message(tiny_sd_dir, tmp_path, caplog):
    """With --skip-image-check a truncated file is first opened in a worker during training."""
    data = write_pairs(tmp_path / "data", count=2)
    for i in range(2):
        _truncate(data / "images" / f"tile{i:03d}_post_disaster.png", 200)
    args = script_args(tiny_sd_dir, data, tmp_path / "out", "--skip-image-check", "--dataloader-num-workers", "1")
    assert run_script(args) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("2 training pairs in a row from pair ") and "could not be read" in error
    assert "tile00" in error and "train without --skip-image-check" in error
    assert error.endswith("(raised in data-loader worker 0)")
    assert "Caught" not in error and "Traceback" not in error


class _TwoArgumentError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")


class _Failing(torch.utils.data.Dataset):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise self.error


def _worker_failure(error: Exception) -> Exception:
    from rsedit_core.train.workers import batches

    loader = torch.utils.data.DataLoader(_Failing(error), num_workers=1)
    with pytest.raises(Exception) as caught:
        list(batches(loader))
    return caught.value


def test_worker_errors_of_every_kind_come_back_unwrapped():
    from rsedit_core.train.workers import DataLoaderWorkerError

    ours = _worker_failure(InputError("Cannot decode the post image a.png: truncated."))
    assert type(ours) is InputError
    assert str(ours) == "Cannot decode the post image a.png: truncated. (raised in data-loader worker 0)"
    other = _worker_failure(_TwoArgumentError(7, "disk went away"))  # torch re-raises it as RuntimeError
    assert isinstance(other, DataLoaderWorkerError) and isinstance(other, InputError)
    assert "in data-loader worker 0: _TwoArgumentError: code 7: disk went away." in str(other)
    assert "--dataloader-num-workers 0" in str(other) and "Traceback" not in str(other)
    key = _worker_failure(KeyError("edit_prompt"))
    assert isinstance(key, DataLoaderWorkerError) and "KeyError: 'edit_prompt'" in str(key)


def test_a_killed_worker_and_errors_outside_workers():
    from rsedit_core.train.workers import DataLoaderWorkerError, batches, worker_error

    killed = worker_error(RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. "))
    assert isinstance(killed, DataLoaderWorkerError) and "most often the system running out of memory" in str(killed)
    assert worker_error(RuntimeError("DataLoader worker (pid(s) 1, 2) exited unexpectedly")) is not None
    assert worker_error(ValueError("something else")) is None
    loader = torch.utils.data.DataLoader(_Failing(ValueError("in the main process")), num_workers=0)
    with pytest.raises(ValueError, match="in the main process"):
        list(batches(loader))
