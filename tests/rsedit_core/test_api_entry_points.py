"""The public API's entry points refuse a bad device, dtype, settings object or model with the
library's own errors (the CLI's messages for devices), before anything is read or run."""

from __future__ import annotations

import pytest
import torch

import rsedit_core.loading
from rsedit_core import (
    EditSettings,
    decode,
    edit_images,
    encode_source,
    encode_text,
    load_damage_model,
    load_editor,
    run_edit,
)
from rsedit_core.cli import main
from rsedit_core.devices import resolve_device
from rsedit_core.edit import edit_scene
from rsedit_core.errors import InputError


@pytest.fixture
def nothing_read(monkeypatch):
    """Fail the test if load_editor starts looking for the model: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model folder was read before the device and dtype were checked")

    monkeypatch.setattr(rsedit_core.loading, "resolve_model_dir", refuse)


UNAVAILABLE = ["gpu", "cuda:x", 7] + ([] if torch.cuda.is_available() else ["cuda", "cuda:7", torch.device("cuda")])


@pytest.mark.parametrize("device", UNAVAILABLE, ids=str)
def test_load_editor_checks_the_device_first(nothing_read, device):
    with pytest.raises(InputError, match="Unknown device|CPU-only build|no CUDA GPU|does not exist|must be a name"):
        load_editor("any-model", device=device)


@pytest.mark.parametrize("device", ["gpu", "cuda:7"])
def test_load_editor_says_what_the_cli_says(nothing_read, device, tmp_path, capsys):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(InputError) as info:
        load_editor("any-model", device=device)
    with pytest.raises(InputError) as direct:
        resolve_device(device)
    assert str(info.value) == str(direct.value)
    image = tmp_path / "pre.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image)
    argv = ["edit", "--model", "m", "--image", str(image), "--prompt", "x", "--out", str(tmp_path / "o.png")]
    assert main([*argv, "--device", device]) == 1
    assert f"rsedit: error: {info.value}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dtype", "text_dtype", "message"),
    [
        ("fp8", None, "Unknown dtype 'fp8'; choose one of fp32, fp16, bf16"),
        (torch.int8, None, "torch.int8 is not a floating dtype"),
        (None, None, "Unknown dtype None"),
        ("fp32", "float16", "Unknown dtype 'float16'"),
    ],
)
def test_load_editor_checks_the_dtypes_first(nothing_read, dtype, text_dtype, message):
    with pytest.raises(InputError, match=message):
        load_editor("any-model", dtype=dtype, text_encoder_dtype=text_dtype)


def test_load_editor_takes_auto_and_host_devices(tiny_editor_dir):
    model = load_editor(tiny_editor_dir, device="auto", dtype="auto")
    expected = torch.float16 if torch.cuda.is_available() else torch.float32
    assert model.dtype == expected
    # A torch.device of a kind the CLI does not name is one a host (ComfyUI, accelerate) chose.
    assert resolve_device(torch.device("xpu")) == torch.device("xpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_load_damage_model_checks_device_and_dtype_before_the_file(tmp_path):
    missing = tmp_path / "no-such-checkpoint.safetensors"  # reading it would be a ModelNotFoundError
    with pytest.raises(InputError, match="Unknown device 'gpu'"):
        load_damage_model(missing, device="gpu")
    with pytest.raises(InputError, match="Unknown dtype 'fp8'"):
        load_damage_model(missing, dtype="fp8")
    with pytest.raises(InputError, match="needs a floating dtype"):
        load_damage_model(missing, dtype=torch.int64)


@pytest.fixture(scope="module")
def encoded(tiny_editor):
    return encode_text(tiny_editor, "flood"), encode_source(tiny_editor, torch.rand(1, 3, 64, 64))


SETTINGS_AS_DICT = "settings must be an EditSettings, not a dict: pass settings=EditSettings\\(\\*\\*your_dict\\)"


def test_settings_that_are_a_dict_are_refused_with_the_fix(tiny_editor, encoded):
    image = torch.rand(1, 3, 64, 64)
    with pytest.raises(InputError, match=SETTINGS_AS_DICT + ", with fields steps, text_cfg") as info:
        edit_images(tiny_editor, image, "x", settings={"steps": 1})
    assert "not among them" not in str(info.value)
    with pytest.raises(InputError, match="\\('cfg' is not among them\\)"):
        edit_images(tiny_editor, image, "x", settings={"steps": 1, "cfg": 7})
    with pytest.raises(InputError, match=SETTINGS_AS_DICT):
        run_edit(tiny_editor, *encoded, {"steps": 1})
    with pytest.raises(InputError, match=SETTINGS_AS_DICT):
        edit_scene(tiny_editor, None, [], "x", settings={"steps": 1})
    with pytest.raises(InputError, match="settings must be an EditSettings .*got int. For example"):
        edit_images(tiny_editor, image, "x", settings=50)
    result = edit_images(tiny_editor, image, "x", settings=EditSettings(**{"steps": 1}))
    assert result.images.shape == (1, 3, 64, 64)
    assert run_edit(tiny_editor, *encoded, None).images.shape == (1, 3, 64, 64)  # None: the defaults


def test_entry_points_refuse_what_is_not_a_loaded_editor(tiny_editor, encoded, tiny_editor_dir):
    image = torch.rand(1, 3, 64, 64)
    not_loaded = "model must be an EditorModel from load_editor\\(\\); got PosixPath. Load it first"
    with pytest.raises(InputError, match=not_loaded):
        edit_images(tiny_editor_dir, image, "x")
    with pytest.raises(InputError, match=not_loaded):
        encode_source(tiny_editor_dir, image)
    with pytest.raises(InputError, match="got str"):
        encode_text(str(tiny_editor_dir), "x")
    with pytest.raises(InputError, match="got dict"):
        run_edit({}, *encoded, EditSettings(steps=1))
    with pytest.raises(InputError, match="got NoneType"):
        decode(None, torch.zeros(1, 4, 8, 8))
    with pytest.raises(InputError, match="text must be a TextConditioning from encode_text\\(\\); got str"):
        run_edit(tiny_editor, "flood", encoded[1], EditSettings(steps=1))
    with pytest.raises(InputError, match="source must be a SourceLatents from encode_source\\(\\); got Tensor"):
        run_edit(tiny_editor, encoded[0], image, EditSettings(steps=1))
    with pytest.raises(InputError, match="latents must be a tensor \\[N, C, h, w\\]"):
        decode(tiny_editor, [1, 2])
    with pytest.raises(InputError, match="prompt must be a string; got NoneType"):
        encode_text(tiny_editor, None)


@pytest.mark.parametrize(
    ("tile", "message"),
    [(31, "tile 31 px is below"), (-8, "tile -8 px is below"), ("x", "tile must be an integer"), (100, "of 8 px")],
)
def test_encode_source_checks_its_tile(tiny_editor, tile, message):
    with pytest.raises(InputError, match=message):
        encode_source(tiny_editor, torch.rand(1, 3, 128, 128), tile=tile)
