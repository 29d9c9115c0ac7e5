"""ChangeStar1x256 damage model: published key layout, checkpoint loading paths, parity with torchange.

The parity test runs `tests/damage_oracle.py` under the interpreter named by `TORCHANGE_PYTHON`
(a separate environment with torchange 0.0.4, ever-beta and torchvision) and is skipped without it.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import oracle_python

from rsedit_core.damage import ChangeStar1x256, convert_checkpoint, load_damage_model, normalize_pair
from rsedit_core.damage.checkpoint import expected_shapes
from rsedit_core.errors import InputError, ModelFormatError, ModelNotFoundError

ROOT = Path(__file__).resolve().parents[3]
# Every key and shape of the published checkpoint (321 tensors), checked against torchange 0.0.4.
REFERENCE_KEYS = ROOT / "tests" / "data" / "changestar1x256_vitb_s1c5_keys.txt"
PARITY_SIZES = (256, 512)
PARITY_ATOL = 1e-4


def _parse_reference(path: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape = line.strip().split(" ", 1)
        shapes[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return shapes


@pytest.fixture(scope="module")
def shapes() -> dict[str, tuple[int, ...]]:
    return expected_shapes()


@pytest.fixture(scope="module")
def tagged_state(shapes) -> dict[str, torch.Tensor]:
    """Every tensor filled with its own index; stride-0 views keep the saved files tiny."""
    return {k: torch.tensor(float(i)).expand(shape) for i, (k, shape) in enumerate(shapes.items())}


@pytest.fixture(scope="module")
def model() -> ChangeStar1x256:
    torch.manual_seed(0)
    m = ChangeStar1x256().eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                p.normal_(0.0, 0.3)
    return m


def _assert_tagged(model: ChangeStar1x256, tagged: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert list(loaded) == list(tagged)
    for i, (key, value) in enumerate(loaded.items()):
        assert value.min().item() == value.max().item() == float(i), key


def test_state_dict_matches_published_checkpoint(shapes):
    reference = _parse_reference(REFERENCE_KEYS)
    assert len(reference) == 321
    assert set(shapes) == set(reference)
    assert {k: v for k, v in shapes.items() if reference[k] != v} == {}


def test_parameter_count(shapes):
    assert sum(math.prod(s) for s in shapes.values()) == 99_935_558


@torch.no_grad()
def test_change_is_symmetric_and_building_is_per_image(model):
    gen = torch.Generator().manual_seed(1)
    pre, post, other = (torch.rand(1, 3, 64, 64, generator=gen) for _ in range(3))
    out = model(pre, post)
    assert out.building_prob.shape == out.post_building_prob.shape == (1, 1, 64, 64)
    assert out.change_prob.shape == (1, 5, 64, 64)
    torch.testing.assert_close(out.change_prob.sum(1), torch.ones(1, 64, 64))

    swapped = model(post, pre)
    # The head sums its conv over both time orders, so the change output ignores the order.
    torch.testing.assert_close(swapped.change_prob, out.change_prob, atol=1e-5, rtol=0)
    torch.testing.assert_close(swapped.building_prob, out.post_building_prob, atol=1e-6, rtol=0)
    # The Siamese encoder never mixes the two images: the pre building map ignores the post image.
    torch.testing.assert_close(model(pre, other).building_prob, out.building_prob, atol=1e-6, rtol=0)


def test_normalisation_is_imagenet_on_unit_scale():
    white = torch.ones(1, 3, 32, 32)
    x = normalize_pair(white, torch.zeros(1, 3, 32, 32))
    torch.testing.assert_close(
        x[0, :3, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    )
    torch.testing.assert_close(x[0, 3:, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


@pytest.mark.parametrize(
    ("pre_shape", "post_shape", "message"),
    [
        ((1, 3, 48, 48), (1, 3, 48, 48), "multiple of 32; got 48x48. Pad or resize to 64x64"),
        ((1, 3, 64, 96), (1, 3, 64, 96), "square images .* got 64x96"),
        ((1, 3, 64, 64), (1, 3, 96, 96), "same shape"),
        ((1, 4, 64, 64), (1, 4, 64, 64), r"\(B, 3, H, W\)"),
    ],
)
def test_bad_input_sizes_are_explained(model, pre_shape, post_shape, message):
    with pytest.raises(InputError, match=message):
        model(torch.rand(pre_shape), torch.rand(post_shape))


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="plain"),
        pytest.param(lambda sd: {"model": sd, "epoch": 3}, id="model"),
        pytest.param(lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}}, id="state_dict+module."),
        pytest.param(lambda sd: {"module": {f"_orig_mod.{k}": v for k, v in sd.items()}}, id="module+_orig_mod."),
        pytest.param(
            lambda sd: {"state_dict": {"model": {f"module._orig_mod.{k}": v for k, v in sd.items()}}}, id="nested"
        ),
    ],
)
def test_loads_wrapped_and_prefixed_checkpoints(tmp_path, tagged_state, wrap):
    path = tmp_path / "model.pth"
    torch.save(wrap(tagged_state), path)
    _assert_tagged(load_damage_model(path), tagged_state)


def test_loads_legacy_pickle_format(tmp_path, tagged_state):
    path = tmp_path / "legacy.pt"
    torch.save(tagged_state, path, _use_new_zipfile_serialization=False)
    _assert_tagged(load_damage_model(path), tagged_state)


def test_converts_to_safetensors_and_loads_in_bf16(tmp_path, tagged_state):
    source = tmp_path / "published.pth"
    torch.save(tagged_state, source)
    # The file format is read from its bytes, not its name.
    out = convert_checkpoint(source, tmp_path / "damage.weights")
    assert out.read_bytes()[8:9] == b"{"
    model = load_damage_model(out, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    with pytest.raises(InputError, match="onto itself"):
        convert_checkpoint(out, out)


def test_one_change_class_head_names_expected_and_found_shapes(tmp_path, tagged_state):
    state = dict(tagged_state)
    state["head.change_conv.0.weight"] = torch.zeros(1, 256, 1, 1)
    state["head.change_conv.0.bias"] = torch.zeros(1)
    path = tmp_path / "s1c1.pth"
    torch.save(state, path)
    with pytest.raises(ModelFormatError) as info:
        load_damage_model(path)
    message = str(info.value)
    assert "2 shape mismatches" in message
    assert "head.change_conv.0.weight expected (5, 256, 1, 1), found (1, 256, 1, 1)" in message
    assert "head.change_conv.0.bias expected (5,), found (1,)" in message
    assert "1 change class" in message and "s0_xView2_changestar_vitb_1x256" in message


def test_missing_and_unexpected_keys_are_listed_with_counts(tmp_path, tagged_state):
    keys = list(tagged_state)
    state = {k: v for k, v in tagged_state.items() if k not in keys[-12:]}
    state["decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ModelFormatError) as info:
        load_damage_model(path)
    message = str(info.value)
    assert "12 missing keys" in message and "(2 more)" in message and keys[-12] in message
    assert "1 unexpected keys: decoder.extra.weight" in message


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _RunsCode(marker)}, f, protocol=2)
    with pytest.raises(ModelFormatError, match="Refused to load"):
        load_damage_model(path)
    assert not marker.exists()


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(ModelNotFoundError, match="EVER-Z/Changen2-ChangeStar1x256"):
        load_damage_model(tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ModelFormatError, match="neither a PyTorch checkpoint"):
        load_damage_model(text)
    optimizer_only = tmp_path / "optimizer.pth"
    torch.save({"optimizer": {"lr": torch.tensor(1.0), "step": 3}}, optimizer_only)
    with pytest.raises(ModelFormatError, match="no flat state dict"):
        load_damage_model(optimizer_only)


@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory) -> Path:
    python = oracle_python()
    out = tmp_path_factory.mktemp("torchange-oracle")
    sizes = [str(s) for s in PARITY_SIZES]
    result = subprocess.run(
        [python, str(ROOT / "tests" / "damage_oracle.py"), str(out), "--sizes", *sizes],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def oracle_model(oracle_dir) -> ChangeStar1x256:
    # Strict loading under torchange's own key names.
    return load_damage_model(oracle_dir / "state_dict.safetensors")


@pytest.mark.parametrize("size", PARITY_SIZES)
def test_matches_torchange(oracle_dir, oracle_model, size):
    from safetensors.torch import load_file

    io = load_file(str(oracle_dir / f"io_{size}.safetensors"))
    pre, post = io["pre"].float() / 255.0, io["post"].float() / 255.0
    torch.testing.assert_close(normalize_pair(pre, post), io["x"], atol=1e-5, rtol=0)
    with torch.no_grad():
        out = oracle_model(pre, post)
    pairs = {"building_prob": "t1_semantic", "post_building_prob": "t2_semantic", "change_prob": "change"}
    diffs = {ours: (getattr(out, ours) - io[theirs]).abs().max().item() for ours, theirs in pairs.items()}
    assert max(diffs.values()) < PARITY_ATOL, diffs
