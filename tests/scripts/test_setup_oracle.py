"""scripts/setup_oracle.sh: a machine with too little disk gets exit 75 and nothing left behind,
so `.ci/run` skips the parity tests instead of failing; other failures stay failures.

The real install (6.5 GB) is not repeated here: `python3` is replaced on PATH by a fake whose
venv's pip fails the way the real one does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "setup_oracle.sh"

FAKE_PYTHON3 = """#!/usr/bin/env bash
# python3 -m venv DIR: make DIR/bin/python, a fake whose pip fails as $FAKE_PIP says.
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
cat > "$3/bin/python" <<'EOF'
#!/usr/bin/env bash
if [ "$1 $2 $3" = "-m pip install" ]; then
    echo "$*" >> "$FAKE_PIP_LOG"
    case "$FAKE_PIP:$*" in
        enospc:*torchange*)
            echo "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"
            exit 1 ;;
        broken:*torchange*) echo "ERROR: No matching distribution found for torchange==0.0.4"; exit 1 ;;
    esac
    exit 0
fi
echo "torchange oracle ready: (fake)"
EOF
chmod +x "$3/bin/python"
"""


def run_setup(tmp_path: Path, fake_pip: str, **env: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE_PYTHON3)
    (bin_dir / "python3").chmod(0o755)
    environ = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_PIP": fake_pip,
        "FAKE_PIP_LOG": str(tmp_path / "pip.log"),
        "RSEDIT_ORACLE_DISK_GB": "0",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "oracle")], env=environ, capture_output=True, text=True, timeout=60
    )


def test_a_working_install_keeps_the_venv(tmp_path):
    result = run_setup(tmp_path, "ok")
    assert result.returncode == 0, result.stderr
    assert "torchange oracle ready" in result.stdout
    assert (tmp_path / "oracle" / "bin" / "python").exists()
    installs = (tmp_path / "pip.log").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in installs and "torchange==0.0.4" in installs


def test_too_little_disk_is_exit_75_before_anything_is_installed(tmp_path):
    result = run_setup(tmp_path, "ok", RSEDIT_ORACLE_DISK_GB="100000000")
    assert result.returncode == 75
    assert "the torchange oracle asks for 100000000 GB; not built" in result.stderr
    assert not (tmp_path / "oracle").exists()
    assert not (tmp_path / "pip.log").exists()


def test_a_disk_that_fills_during_the_install_is_exit_75_and_the_partial_venv_goes(tmp_path):
    result = run_setup(tmp_path, "enospc")
    assert result.returncode == 75
    assert "No space left on device" in result.stderr
    assert "the partial venv was removed" in result.stderr
    assert not (tmp_path / "oracle").exists()


def test_any_other_failure_fails_and_shows_pips_error(tmp_path):
    result = run_setup(tmp_path, "broken")
    assert result.returncode == 1
    assert "No matching distribution found for torchange==0.0.4" in result.stderr
    assert not (tmp_path / "oracle").exists()
