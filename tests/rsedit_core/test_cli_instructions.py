"""rsedit instruction: one instruction, a ladder, and bad input told as errors (exit 1), never tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

from rsedit_core.cli import main
from rsedit_core.instructions import build_instruction, severity_ladder


def test_one_instruction_alone_on_stdout(capsys):
    assert main(["instruction", "--scenario", "flood", "--severity", "major"]) == 0
    out, err = capsys.readouterr()
    assert out == build_instruction("flood", severity="major") + "\n"
    assert "add --short for RSEdit-DiT" in err  # the full form is for the U-Net


def test_counts_keep_extra_and_short(capsys):
    argv = ["instruction", "--scenario", "hurricane", "--counts", "no=10,minor=4,major=2,destroyed=1"]
    argv += ["--keep", "the roads further inland and the fields", "--extra", "debris lines the promenade", "--short"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    expected = build_instruction(
        "flood",
        counts={"no": 10, "minor": 4, "major": 2, "destroyed": 1},
        keep="the roads further inland and the fields",
        extra="debris lines the promenade",
        short=True,
    )
    assert out == expected + "\n" and err == ""
    assert "one building destroyed, 2 with major damage, 4 with minor damage and about 10 undamaged" in out


def test_ladder_one_line_per_level(capsys):
    assert main(["instruction", "--scenario", "wildfire", "--ladder", "--short"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{level}: {text}" for level, text in severity_ladder("wildfire", short=True)]
    assert [line.split(":")[0] for line in lines] == ["minor", "moderate", "major", "catastrophic"]
    assert main(["instruction", "--scenario", "seasonal", "--ladder", "--levels", "none,major"]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["none", "major"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "flod", "--severity", "major"], "Unknown scenario 'flod'. Choose one of: flood, tsunami"),
        (["--scenario", "flood", "--severity", "huge"], "Unknown severity 'huge'. Choose one of: none, minor"),
        (["--scenario", "flood", "--counts", "minor:4"], "Bad counts entry 'minor:4'.*LEVEL=N pairs"),
        (["--scenario", "flood", "--counts", "minor=-4"], "The count for 'minor' is -4; counts are numbers of"),
        (["--scenario", "flood", "--counts", "minor=x"], "not a whole number"),
        (
            ["--scenario", "flood", "--severity", "major", "--counts", "minor=1"],
            "Give --severity or --counts, not both",
        ),
        (["--scenario", "flood"], r"Give --severity \(none, minor, moderate, major, catastrophic\) or --counts"),
        (["--scenario", "flood", "--ladder", "--severity", "major"], "--ladder writes one instruction per level"),
        (["--scenario", "flood", "--ladder", "--levels", "minor,minor"], "listed twice"),
        (["--scenario", "flood", "--severity", "major", "--levels", "minor"], "--levels only applies with --ladder"),
        (["--scenario", "seasonal", "--counts", "minor=1"], "damages no buildings, so it takes no counts"),
    ],
)
def test_bad_input_is_an_error_message(argv, message, capsys):
    import re

    assert main(["instruction", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("rsedit: error: ") and re.search(message, err), err
    assert "Traceback" not in err


def test_the_command_loads_no_torch():
    code = (
        "import sys\nfrom rsedit_core.cli import main\n"
        "assert main(['instruction', '--scenario', 'flood', '--severity', 'minor']) == 0\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'numpy', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Simulate the aftermath of a minor hurricane storm surge")
