"""Output files: written atomically, with the permissions a plain ``open(path, "w")`` gives."""

from __future__ import annotations

import contextlib
import os
import stat
import sys

import pytest

from rsedit_core.outputs import atomic_output, write_text_atomic

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@contextlib.contextmanager
def umask(value: int):
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_new_files_get_the_mode_open_gives(tmp_path, mask):
    with umask(mask):
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
        write_text_atomic(tmp_path / "atomic.txt", "x")
        with atomic_output(tmp_path / "other.bin") as temporary:
            assert mode(temporary) == 0o666 & ~mask  # already while it is written
            temporary.write_bytes(b"\0")
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert mode(tmp_path / "other.bin") == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "other.bin", "plain.txt"]


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "kept.json"
    path.write_text("{}")
    path.chmod(0o640)
    with umask(0o022):
        write_text_atomic(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}' and mode(path) == 0o640


def test_a_writer_that_recreates_the_file_still_gets_the_umask_mode(tmp_path):
    with umask(0o022), atomic_output(tmp_path / "out.txt") as temporary:
        temporary.unlink()
        temporary.write_text("recreated")
    assert mode(tmp_path / "out.txt") == 0o644


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "out.txt") as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_raster_gets_the_umask_mode(tmp_path):
    np = pytest.importorskip("numpy")
    rasterio = pytest.importorskip("rasterio")
    from rsedit_core.raster import read_raster, write_raster

    source = tmp_path / "src.tif"
    profile = dict(driver="GTiff", width=8, height=8, count=3, dtype="uint16", crs="EPSG:32633")
    profile["transform"] = rasterio.transform.Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_600_000.0)
    with rasterio.open(source, "w", **profile) as ds:
        ds.write(np.arange(3 * 64, dtype=np.uint16).reshape(3, 8, 8) + 1)
    scene = read_raster(source)
    with umask(0o022):
        write_raster(tmp_path / "out.tif", scene.image, scene.geo, valid=scene.valid)
        write_raster(tmp_path / "out_cog.tif", scene.image, scene.geo, valid=scene.valid, cog=True)
    assert mode(tmp_path / "out.tif") == mode(tmp_path / "out_cog.tif") == 0o644


def test_folders_that_only_look_writable_are_refused_before_any_work(tmp_path):
    """os.access says yes to root in /proc and /sys; the probe file says no, and nothing stays behind."""
    from rsedit_core.errors import InputError
    from rsedit_core.outputs import check_output_path

    for folder in ("/proc", "/sys"):
        with pytest.raises(InputError, match=f"the folder {folder} is not writable"):
            check_output_path(f"{folder}/edit.png")
    assert check_output_path(tmp_path / "new" / "edit.png") == tmp_path / "new" / "edit.png"
    assert list(tmp_path.iterdir()) == []  # the probe is gone and no folder was created
