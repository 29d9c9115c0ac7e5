"""Instruction nodes (V3): RSEdit Instruction Builder and RSEdit Severity Ladder.

Both write paper-style instructions with :mod:`rsedit_core.instructions` (no model, nothing heavy)
as STRING outputs, for the Text Encode node's ``instruction`` input (its widget takes a link).
The ladder's output is a list (``is_output_list``): ComfyUI then runs the Text Encode node, the
sampler and Save Image once per level.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..rsedit_core.errors import InputError
from ..rsedit_core.instructions import (
    LEVELS,
    SCENARIOS,
    SEVERITIES,
    SHORT_MAX_CHARS,
    SHORT_MAX_WORDS,
    build_instruction,
    parse_counts,
    severity_counts,
    severity_for_counts,
    severity_ladder,
)

CATEGORY = "RSEdit/conditioning"
#: The severity option that hands the choice to the counts input.
FROM_COUNTS = "from counts"
DEFAULT_LEVELS = ",".join(SEVERITIES[1:])


def _keep_input() -> io.String.Input:
    return io.String.Input(
        "keep",
        multiline=True,
        default="",
        tooltip="What must stay; empty = the scenario's own. A sentence ('the pier stays intact') is used as "
        "written, a list ('the roads and the pier') becomes 'Keep ... unchanged.'",
    )


def _extra_input() -> io.String.Input:
    return io.String.Input("extra", multiline=True, default="", tooltip="A sentence added before what stays.")


def _short_input() -> io.Boolean.Input:
    return io.Boolean.Input(
        "short",
        default=False,
        tooltip=f"The compact form for RSEdit-DiT (T5 reads 119 tokens): at most {SHORT_MAX_WORDS} words with the "
        "default keep and no extra. Off: the full form for the U-Net's DGTRS-CLIP (246 tokens).",
    )


def _length_note(text: str, short: bool) -> str:
    words = len(text.split())
    note = f"{words} words, {len(text)} characters"
    if words > SHORT_MAX_WORDS or len(text) > SHORT_MAX_CHARS:
        note += "; may exceed the DiT's 119 T5 tokens" + ("" if short else " (turn on short for RSEdit-DiT)")
    return note + "; the Text Encode node reports the exact token count"


def _counts_text(counts: dict[str, int]) -> str:
    shown = [f"{counts[level]} {level}" for level in reversed(LEVELS) if counts[level]]
    return ", ".join(shown) if shown else "no building"


class RSEditInstructionBuilder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditInstructionBuilder",
            display_name="RSEdit Instruction Builder",
            category=CATEGORY,
            description="Writes a paper-style instruction (what changes, how many buildings per xView2 damage "
            "level, what stays) from a scenario and a severity or building counts. Deterministic.",
            inputs=[
                io.Combo.Input("scenario", options=list(SCENARIOS), default="flood", tooltip="The change to simulate."),
                io.Combo.Input(
                    "severity",
                    options=[*SEVERITIES, FROM_COUNTS],
                    default="major",
                    tooltip="The hazard's extent and the buildings per damage level (urban_growth, seasonal: the "
                    f"extent of the change); '{FROM_COUNTS}' takes the counts below instead.",
                ),
                io.String.Input(
                    "counts",
                    default="",
                    tooltip=f"With severity '{FROM_COUNTS}': buildings per xView2 level as LEVEL=N pairs, e.g. "
                    "no=10,minor=4,major=2,destroyed=1 (missing levels count 0).",
                ),
                _keep_input(),
                _extra_input(),
                _short_input(),
            ],
            outputs=[io.String.Output(display_name="instruction", tooltip="For RSEdit Text Encode's instruction.")],
        )

    @classmethod
    def execute(
        cls, scenario: str, severity: str, counts: str = "", keep: str = "", extra: str = "", short: bool = False
    ) -> io.NodeOutput:
        if severity == FROM_COUNTS:
            if not counts.strip():
                raise InputError(
                    f"severity is '{FROM_COUNTS}' but counts is empty: write buildings per level, e.g. "
                    f"no=10,minor=4,major=2,destroyed=1, or pick a severity ({', '.join(SEVERITIES)})."
                )
            given = parse_counts(counts)
            text = build_instruction(scenario, counts=given, keep=keep, extra=extra, short=short)
            what = f"from counts ({_counts_text(given)}; extent: {severity_for_counts(given)})"
        else:
            if counts.strip():
                raise InputError(
                    f"counts are given ({counts.strip()!r}) but severity is '{severity}': set severity to "
                    f"'{FROM_COUNTS}' to use the counts, or clear counts to use the severity."
                )
            text = build_instruction(scenario, severity=severity, keep=keep, extra=extra, short=short)
            what = f"{severity} ({_counts_text(severity_counts(severity))})"
        summary = f"{text}\n\n{scenario}, {what}: {_length_note(text, short)}"
        return io.NodeOutput(text, ui=ui.PreviewText(summary))


class RSEditSeverityLadder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RSEditSeverityLadder",
            display_name="RSEdit Severity Ladder",
            category=CATEGORY,
            description="One instruction per severity level of a scenario, as a list: the Text Encode node, "
            "the sampler and Save Image downstream run once per level (a severity sweep of one scene).",
            inputs=[
                io.Combo.Input("scenario", options=list(SCENARIOS), default="flood", tooltip="The change to simulate."),
                io.String.Input(
                    "levels",
                    default=DEFAULT_LEVELS,
                    tooltip=f"Comma-separated severity levels, in the order to run them ({', '.join(SEVERITIES)}).",
                ),
                _keep_input(),
                _extra_input(),
                _short_input(),
            ],
            outputs=[
                io.String.Output(
                    display_name="instructions",
                    is_output_list=True,
                    tooltip="The instructions, one per level (a list: downstream nodes run once per item).",
                ),
                io.String.Output(
                    display_name="levels",
                    is_output_list=True,
                    tooltip="The level of each instruction, in order (a list).",
                ),
            ],
        )

    @classmethod
    def execute(
        cls, scenario: str, levels: str = DEFAULT_LEVELS, keep: str = "", extra: str = "", short: bool = False
    ) -> io.NodeOutput:
        rows = severity_ladder(scenario, levels, keep=keep, extra=extra, short=short)
        names = [level for level, _ in rows]
        texts = [text for _, text in rows]
        shown = "\n\n".join(f"{level}: {text}" for level, text in rows)
        summary = f"{shown}\n\n{len(rows)} levels; longest: {_length_note(max(texts, key=len), short)}"
        return io.NodeOutput(texts, names, ui=ui.PreviewText(summary))


NODES = [RSEditInstructionBuilder, RSEditSeverityLadder]
