"""Paper-style instructions (rsedit_core.instructions): deterministic text, every scenario and
severity, counts in the text, graded ladders, what stays, bad input, and token budgets.

Budgets: the tiny test editors' tokenizers are trained on a 60-word corpus and split unseen
words into many pieces, so they count far more tokens than the released ones (the tiny T5 up
to 3x). Their counts therefore test the wiring (``check_budget`` = ``count_tokens``, strict
refusals); the budgets themselves are tested by a conservative bound that needs no tokenizer -
at most 2 tokens per word and at least 3 characters per token, so ``short`` instructions of
<= 55 words and <= 357 characters fit T5's 119 tokens and full ones of <= 120 words and
<= 738 characters fit DGTRS-CLIP's 246 - and, when ``COMFYUI_DIR`` names a ComfyUI checkout,
by the real SD-1.5 CLIP and T5 tokenizers it ships.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT

from rsedit_core import backbones
from rsedit_core.errors import InputError
from rsedit_core.instructions import (
    LEVELS,
    LONG_MAX_CHARS,
    LONG_MAX_WORDS,
    SCENARIOS,
    SEVERITIES,
    SEVERITY_COUNTS,
    SHORT_MAX_CHARS,
    SHORT_MAX_WORDS,
    build_instruction,
    check_budget,
    check_counts,
    parse_counts,
    parse_levels,
    resolve_scenario,
    severity_counts,
    severity_for_counts,
    severity_ladder,
)
from rsedit_core.text import count_tokens

DAMAGE = ("flood", "tsunami", "tornado", "earthquake", "wildfire", "volcano")
CHANGE = ("urban_growth", "seasonal")
ALL = [(scenario, severity, short) for scenario in SCENARIOS for severity in SEVERITIES for short in (False, True)]
STAYS = re.compile(r"\b(unchanged|unaffected|stay|stays|keep|keeps|remain|intact|in place|as they are)\b", re.I)


def _all_texts(short: bool) -> list[str]:
    return [build_instruction(s, severity=v, short=short) for s in SCENARIOS for v in SEVERITIES]


def test_scenarios_and_severities_are_the_documented_ones():
    assert set(DAMAGE) | set(CHANGE) == set(SCENARIOS) and len(SCENARIOS) == 8
    assert SEVERITIES == ("none", "minor", "moderate", "major", "catastrophic")
    assert LEVELS == ("no", "minor", "major", "destroyed")


@pytest.mark.parametrize(("scenario", "severity", "short"), ALL)
def test_every_scenario_and_severity_builds_a_specific_instruction(scenario, severity, short):
    text = build_instruction(scenario, severity=severity, short=short)
    assert text == build_instruction(scenario, severity=severity, short=short)  # deterministic
    assert text[0].isupper() and text.endswith(".") and "  " not in text and ".." not in text
    assert STAYS.search(text), "say what stays"
    if scenario in DAMAGE:
        counts = SEVERITY_COUNTS[severity]
        for level in ("minor", "major", "destroyed"):
            if counts[level]:
                assert re.search(rf"\b[Aa]bout {counts[level]} ", text), (level, text)
        if severity == "none":
            assert "no visible damage" in text or "every building is intact" in text
        else:
            assert severity in text  # "a major hurricane storm surge"
    # The conservative bounds (default keep, no extra) that keep every encoder within budget.
    words, chars = len(text.split()), len(text)
    if short:
        assert words <= SHORT_MAX_WORDS and chars <= SHORT_MAX_CHARS, (words, chars, text)
    else:
        assert words <= LONG_MAX_WORDS and chars <= LONG_MAX_CHARS, (words, chars, text)


def test_texts_are_the_same_in_another_process():
    """No hash-order or other process-dependent choice: two interpreters with different hash seeds
    write every instruction identically."""
    code = (
        "from rsedit_core.instructions import *\n"
        "print(repr([build_instruction(s, severity=v, short=b) for s in SCENARIOS for v in SEVERITIES "
        "for b in (False, True)] + [severity_ladder('flood'), build_instruction('tsunami', counts={'destroyed': 2, "
        "'no': 7, 'minor': 3})]))\n"
    )
    outputs = []
    for seed in ("1", "987"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]


def test_flood_major_reads_like_the_paper():
    text = build_instruction("flood", severity="major")
    assert text.startswith("Simulate the aftermath of a major hurricane storm surge on this coastal town: brown")
    assert "About 12 buildings closest to the shore are destroyed" in text
    assert "about 20 buildings in the next blocks have major damage" in text
    assert "about 15 buildings further inland have minor damage" in text
    assert text.endswith(
        "Keep the road grid, the shoreline position, the pier and the blocks beyond the floodwater unchanged."
    )


def test_counts_appear_in_the_text_worst_first():
    counts = {"no": 10, "minor": 4, "major": 2, "destroyed": 1}
    text = build_instruction("flood", counts=counts)
    assert "One building closest to the shore is destroyed" in text
    assert "2 buildings in the next blocks have major damage" in text
    assert "4 buildings further inland have minor damage" in text
    assert "about 10 buildings in the flooded blocks show no visible damage" in text
    assert text.index("destroyed") < text.index("major damage") < text.index("minor damage")
    assert "a hurricane storm surge" in text and "major hurricane" not in text  # counts name no severity
    short = build_instruction("flood", counts=counts, short=True)
    assert "one building destroyed, 2 with major damage, 4 with minor damage and about 10 undamaged" in short
    # The damage nodes' mask names work as keys; missing levels count 0.
    assert build_instruction("earthquake", counts={"major_damage": 6}) == build_instruction(
        "earthquake", counts={"major": 6, "minor": 0}
    )
    assert "an earthquake" in build_instruction("earthquake", counts={"major": 6})


def test_counts_with_no_damage():
    text = build_instruction("wildfire", counts={"no": 3})
    assert "3 buildings show no visible damage, and no building is damaged or destroyed." in text
    assert "stopped before it reached the town" in text  # the hazard at severity none
    assert build_instruction("wildfire", counts={}) == build_instruction("wildfire", severity="none")


def test_severity_for_counts():
    assert severity_for_counts({}) == "none"
    assert severity_for_counts({"no": 40}) == "none"
    assert severity_for_counts({"minor": 3}) == "minor"
    assert severity_for_counts({"minor": 12}) == "moderate"
    assert severity_for_counts({"major": 1}) == "moderate"  # the first level with major damage
    assert severity_for_counts({"destroyed": 1}) == "major"
    assert severity_for_counts({"destroyed": 100}) == "catastrophic"
    for severity in SEVERITIES:
        assert severity_for_counts(SEVERITY_COUNTS[severity]) == severity
        assert (
            build_instruction("tornado", counts=severity_counts(severity)).split(":")[1:]
            == build_instruction("tornado", severity=severity).split(":")[1:]
        )  # the same scene; only the event's adjective differs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_ladder_is_graded(scenario):
    ladder = severity_ladder(scenario)
    assert [level for level, _ in ladder] == ["minor", "moderate", "major", "catastrophic"]
    texts = [text for _, text in ladder]
    assert len(set(texts)) == 4
    assert texts == [build_instruction(scenario, severity=level) for level, _ in ladder]
    if scenario in DAMAGE:
        counts = [SEVERITY_COUNTS[level] for level, _ in ladder]
        scores = [c["minor"] + 2 * c["major"] + 3 * c["destroyed"] for c in counts]
        assert scores == sorted(scores) and len(set(scores)) == 4
        assert [c["destroyed"] for c in counts] == sorted(c["destroyed"] for c in counts)
        assert sum(c["minor"] + c["major"] + c["destroyed"] for c in counts[:1]) > 0
    short = severity_ladder(scenario, "none,major", short=True)
    assert [level for level, _ in short] == ["none", "major"]
    assert short[1][1] == build_instruction(scenario, severity="major", short=True)


def test_ladder_levels_are_checked():
    assert parse_levels(" minor , Major ") == ["minor", "major"]
    assert parse_levels(["catastrophic", "minor"]) == ["catastrophic", "minor"]  # the order given
    with pytest.raises(InputError, match="listed twice"):
        parse_levels("minor,major,minor")
    with pytest.raises(InputError, match="No severity levels given"):
        parse_levels(" , ")
    with pytest.raises(InputError, match="Unknown severity 'huge'. Choose one of: none, minor, moderate"):
        severity_ladder("flood", "minor,huge")


def test_keep_and_extra():
    default = build_instruction("flood", severity="minor")
    assert build_instruction("flood", severity="minor", keep="  ") == default
    listed = build_instruction("flood", severity="minor", keep="the roads further inland and the fields")
    assert listed.endswith("Keep the roads further inland and the fields unchanged.")
    sentence = build_instruction("flood", severity="minor", keep="roads further inland and the fields stay unchanged")
    assert sentence.endswith("Roads further inland and the fields stay unchanged.")
    extra = build_instruction("tornado", severity="major", extra="  power lines   lie across the roads ")
    assert "stripped of leaves. About" in extra
    assert "Power lines lie across the roads. Buildings outside the track" in extra
    seasonal = build_instruction("seasonal", severity="major", keep="the pier", extra="Smoke rises from chimneys!")
    assert seasonal.endswith("Smoke rises from chimneys! Keep the pier unchanged.")


def test_aliases_and_names():
    assert resolve_scenario("Hurricane") == resolve_scenario("storm surge") == "flood"
    assert resolve_scenario("volcanic-eruption") == "volcano"
    assert resolve_scenario("Urban Growth") == "urban_growth"
    assert build_instruction("hurricane", severity="MAJOR") == build_instruction("flood", severity="major")


def test_change_scenarios_grade_the_extent_and_take_no_counts():
    assert "Early construction stage" in build_instruction("urban_growth", severity="minor")
    assert "about 24 finished houses" in build_instruction("urban_growth", severity="major")
    assert "from summer to winter" in build_instruction("seasonal", severity="major")
    for scenario in CHANGE:
        with pytest.raises(InputError, match=f"The {scenario} scenario damages no buildings, so it takes no counts"):
            build_instruction(scenario, counts={"minor": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "flod", "severity": "major"}, "Unknown scenario 'flod'. Choose one of: flood, tsunami, tornado"),
        ({"scenario": 3, "severity": "major"}, "scenario must be a string"),
        ({"scenario": "flood", "severity": "huge"}, "Unknown severity 'huge'. Choose one of: none, minor, moderate"),
        ({"scenario": "flood"}, "Give a severity .* or building counts per level"),
        ({"scenario": "flood", "severity": "major", "counts": {"minor": 1}}, "not both"),
        ({"scenario": "flood", "counts": {"minor": -1}}, "counts are numbers of buildings, 0 or more"),
        ({"scenario": "flood", "counts": {"minor": 1.5}}, "give a whole number of buildings"),
        ({"scenario": "flood", "counts": {"minor": True}}, "give a whole number of buildings"),
        ({"scenario": "flood", "counts": {"severe": 2}}, "Unknown damage level 'severe'.*no, minor, major, destroyed"),
        ({"scenario": "flood", "counts": {"minor": 2, "minor_damage": 1}}, "give it once"),
        ({"scenario": "flood", "counts": [("minor", 2)]}, "counts must map xView2 levels"),
        ({"scenario": "flood", "severity": "major", "keep": 5}, "keep must be a string"),
        ({"scenario": "flood", "severity": "major", "extra": None}, "extra must be a string"),
    ],
)
def test_bad_input_is_explained(kwargs, message):
    scenario = kwargs.pop("scenario")
    with pytest.raises(InputError, match=message):
        build_instruction(scenario, **kwargs)


def test_parse_counts():
    assert parse_counts("no=10,minor=4,major=2,destroyed=1") == {"no": 10, "minor": 4, "major": 2, "destroyed": 1}
    assert parse_counts(" destroyed = 3 ") == {"no": 0, "minor": 0, "major": 0, "destroyed": 3}
    assert check_counts({"minor_damage": 2}) == {"no": 0, "minor": 2, "major": 0, "destroyed": 0}
    for text, message in [
        ("minor:4", "Bad counts entry 'minor:4'.*LEVEL=N pairs separated by commas"),
        ("minor=4,,major=1", "Bad counts entry ''"),
        ("minor=", "Bad counts entry 'minor='"),
        ("minor=four", "The count for 'minor' is 'four', not a whole number"),
        ("minor=-4", "The count for 'minor' is -4; counts are numbers of buildings, 0 or more"),
        ("minor=1,minor=2", "give each level once"),
        ("heavy=1", "Unknown damage level 'heavy'"),
        ("", "No counts given"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_counts(text)


# Token budgets ---------------------------------------------------------------------------------


def test_check_budget_counts_with_the_editors_tokenizer(tiny_editor, tiny_dit):
    """The tiny editors: the report is count_tokens', against 246 (DGTRS-CLIP layout) and 119 (T5)."""
    for model, capacity in ((tiny_editor, 246), (tiny_dit, 119)):
        for text in _all_texts(short=True)[:10]:
            report = check_budget(model, text)
            assert report == count_tokens(model, text) and report.capacity == capacity
    # Short instructions fit the tiny U-Net's 246 even with its piece-happy tokenizer.
    assert all(not check_budget(tiny_editor, text, strict=True).dropped for text in _all_texts(short=True))


def test_check_budget_strict_refuses_what_would_be_cut(tiny_dit):
    long = build_instruction("flood", severity="catastrophic")
    report = check_budget(tiny_dit, long)
    assert report.dropped > 0  # the tiny T5 counts far more than 119 for the full form
    with pytest.raises(InputError, match=rf"needs {report.prompt_tokens} tokens .* reads 119: {report.dropped} would"):
        check_budget(tiny_dit, long, strict=True)
    with pytest.raises(InputError, match="must be a string"):
        check_budget(tiny_dit, None)


def _real_tokenizers():
    folder = os.environ.get("COMFYUI_DIR")
    if not folder:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to measure with the real CLIP and T5 tokenizers")
    clip_dir = Path(folder) / "comfy" / "sd1_tokenizer"
    t5_dir = Path(folder) / "comfy" / "text_encoders" / "t5_tokenizer"
    if not (clip_dir / "vocab.json").is_file() or not (t5_dir / "tokenizer.json").is_file():
        pytest.skip(f"{folder} has no comfy/sd1_tokenizer or comfy/text_encoders/t5_tokenizer")
    from transformers import CLIPTokenizer, T5TokenizerFast

    return CLIPTokenizer.from_pretrained(clip_dir), T5TokenizerFast.from_pretrained(t5_dir)


def test_budgets_with_the_real_tokenizers():
    """SD-1.5's CLIP tokenizer (DGTRS-CLIP uses it with 248 positions; plain CLIP with 77) and
    T5's, as the released editors load them: every full instruction fits 246, every short one
    fits T5's 119 and plain CLIP's 75; the measured ratios are inside the conservative bound."""
    clip, t5 = _real_tokenizers()
    editors = {
        "dgtrs": SimpleNamespace(tokenizer=clip, text_max_length=248, backbone=backbones.UNET),
        "clip": SimpleNamespace(tokenizer=clip, text_max_length=77, backbone=backbones.UNET),
        "t5": SimpleNamespace(tokenizer=t5, text_max_length=120, backbone=backbones.DIT),
    }
    for text in _all_texts(short=False):
        report = check_budget(editors["dgtrs"], text, strict=True)
        assert report.capacity == 246 and report.prompt_tokens <= 2 * len(text.split())
    for text in _all_texts(short=True):
        for name in ("t5", "clip"):
            report = check_budget(editors[name], text, strict=True)
            assert report.prompt_tokens <= min(2 * len(text.split()), len(text) / 3), (name, text)
        assert check_budget(editors["t5"], text).capacity == 119
