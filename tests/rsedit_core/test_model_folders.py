"""What a model spec that leads nowhere is told: the first path component that is missing (or a
symlink loop, a broken link, a file), an empty spec, and which folders are offered as editors."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

import rsedit_core.model_folders
from rsedit_core.cli import main
from rsedit_core.errors import InputError, ModelFormatError, ModelNotFoundError
from rsedit_core.loading import load_editor
from rsedit_core.model_folders import resolve_model_dir


@pytest.fixture
def no_hub(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a local path reached the hub")

    monkeypatch.setattr(rsedit_core.model_folders, "_download", refuse)


def _not_found(spec, **kwargs) -> str:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_dir(spec, **kwargs)
    return str(info.value)


def test_the_first_missing_component_is_named(tmp_path, monkeypatch, no_hub):
    (tmp_path / "fx" / "unet").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    # An absolute path: the walk starts at the root, not at an '' part taken for the current folder.
    message = _not_found("/nonexistent-rsedit/model")
    assert "No RSEdit model at '/nonexistent-rsedit/model'. /nonexistent-rsedit does not exist." in message
    assert _not_found("/nonexistent-rsedit").count("/nonexistent-rsedit does not exist.") == 1
    assert f"{tmp_path}/nope does not exist." in _not_found(str(tmp_path / "nope" / "deeper" / "model"))
    # './x' and 'a//b': the '.' and '' parts never stand for a name.
    message = _not_found("./fxx/unet")
    assert "fxx does not exist; did you mean fx/unet?" in message
    assert "out" not in message.split("Looked in")[0] and "Treated as a local path" not in message
    assert "fx/zzz does not exist." in _not_found("fx//zzz")
    for message in (_not_found("/nonexistent-rsedit/model"), _not_found("./fxx/unet")):
        assert "exists but has no" not in message and ". exists" not in message


def test_a_mistyped_local_folder_is_not_a_hub_id(tmp_path, monkeypatch, no_hub):
    (tmp_path / "models" / "RSEdit-UNet").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    message = _not_found("models/RSEdit-UNte")
    assert "models/RSEdit-UNte does not exist; did you mean models/RSEdit-UNet?" in message
    assert "(Treated as a local path, not a hub id, because models exists.)" in message
    # The same spec under a ComfyUI models folder is told about there.
    (tmp_path / "comfy" / "rsedit" / "release").mkdir(parents=True)
    message = _not_found("release/DGTRS", search_dirs=[tmp_path / "comfy" / "rsedit"])
    assert f"{tmp_path}/comfy/rsedit/release/DGTRS does not exist." in message


def test_symlink_loops_broken_links_and_files_are_named_as_such(tmp_path, monkeypatch, no_hub):
    models = tmp_path / "m"
    models.mkdir()
    (models / "loop1").symlink_to("loop2")
    (models / "loop2").symlink_to("loop1")
    (models / "gone").symlink_to(tmp_path / "deleted-editor")
    (models / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    message = _not_found("m/loop1")
    assert "m/loop1 is a symlink loop (it links to loop2, which leads back to it)" in message
    assert "has no 'loop1'" not in message
    assert "m/loop1 is a symlink loop" in _not_found("m/loop1/unet")
    assert f"{models / 'self'} is a symlink loop" in _self_loop(models)
    assert f"m/gone is a broken symlink: it links to {tmp_path / 'deleted-editor'}" in _not_found("m/gone")
    assert "m/afile is a file, not a folder." in _not_found("m/afile/unet")


def _self_loop(models):
    (models / "self").symlink_to("self")
    return _not_found(models / "self")


def test_an_empty_model_spec_is_refused(tmp_path, monkeypatch, tiny_editor_dir, capsys):
    shutil.copytree(tiny_editor_dir, tmp_path / "editor")
    monkeypatch.chdir(tmp_path)
    for spec in ("", "  "):
        with pytest.raises(InputError, match="No model was given .*for the current folder, write '.'"):
            resolve_model_dir(spec)
        with pytest.raises(InputError, match="No model was given"):
            load_editor(spec)
    with pytest.raises(InputError, match="must be a path or a hub id .*got NoneType"):
        resolve_model_dir(None)
    assert resolve_model_dir(".").resolve() == tmp_path / "editor"  # the current folder, asked for by name
    image = tmp_path / "pre.png"
    Image.new("RGB", (64, 64)).save(image)
    code = main(["edit", "--model", "", "--image", str(image), "--prompt", "x", "--out", str(tmp_path / "o.png")])
    assert code == 1 and "rsedit: error: No model was given" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiny_editor_dir, tiny_sd_dir):
    """A folder holding two editors, a text-to-image SD model and an editor missing vae/ and text_encoder/."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(tiny_editor_dir, root / "a")
    shutil.copytree(tiny_editor_dir, root / "b")
    shutil.copytree(tiny_sd_dir, root / "sd")
    shutil.copytree(tiny_editor_dir, root / "onlyunet")
    for part in ("vae", "text_encoder"):
        shutil.rmtree(root / "onlyunet" / part)
    return root


def test_only_real_editors_are_offered(mixed):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_dir(mixed)
    assert str(info.value) == (
        f"'{mixed}' holds several editors: a, b. Pass one of them (as a path, or with --subfolder). "
        "Not editors, so not offered: onlyunet, sd."
    )


def test_one_real_editor_beside_non_editors_is_the_one(tmp_path, mixed):
    root = tmp_path / "release"
    for name in ("a", "sd", "onlyunet"):
        shutil.copytree(mixed / name, root / name)
    assert resolve_model_dir(root) == root / "a"
    # A fine-tuning base is one too when the caller accepts text-to-image models (training).
    with pytest.raises(ModelNotFoundError, match="several editors: a, sd"):
        resolve_model_dir(root, text_to_image_ok=True)


def test_a_folder_of_non_editors_says_why_each_is_not_one(tmp_path, mixed):
    root = tmp_path / "release"
    for name in ("sd", "onlyunet"):
        shutil.copytree(mixed / name, root / name)
    with pytest.raises(ModelFormatError) as info:
        resolve_model_dir(root)
    message = str(info.value)
    assert message.startswith(f"'{root}' holds no editor that can be loaded. Found: onlyunet: ")
    assert "has no vae/, text_encoder/ folder(s)" in message and "sd: " in message
    assert "is a text-to-image model" in message
    shutil.rmtree(root / "onlyunet")  # alone, it tells its own reason, as before
    with pytest.raises(ModelFormatError, match="is a text-to-image model"):
        resolve_model_dir(root)
    assert json.loads((root / "sd" / "unet" / "config.json").read_text())["in_channels"] == 4
