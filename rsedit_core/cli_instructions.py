"""``rsedit instruction``: paper-style instructions from a scenario and a severity or building counts.

    rsedit instruction --scenario flood --severity major
    rsedit instruction --scenario flood --counts no=10,minor=4,major=2,destroyed=1 --keep "the pier"
    rsedit instruction --scenario flood --ladder [--levels minor,major] [--short]

The instruction goes to stdout alone (``--prompt "$(rsedit instruction ...)"`` works); with
``--ladder`` one line per level, ``LEVEL: INSTRUCTION``. Notes (length against the DiT's budget)
go to stderr. Nothing heavy is imported: no model is loaded.
"""

from __future__ import annotations

import sys

from .errors import InputError
from .instructions import LEVELS, SCENARIOS, SEVERITIES, SHORT_MAX_CHARS, SHORT_MAX_WORDS


def cmd_instruction(args) -> int:
    from .instructions import build_instruction, parse_counts, severity_ladder

    if args.ladder:
        if args.severity is not None or args.counts is not None:
            raise InputError(
                "--ladder writes one instruction per level of --levels, so it takes no --severity or --counts; "
                "drop them, or drop --ladder for a single instruction."
            )
        levels = args.levels if args.levels is not None else ",".join(SEVERITIES[1:])
        rows = severity_ladder(args.scenario, levels, keep=args.keep, extra=args.extra, short=args.short)
        for level, text in rows:
            print(f"{level}: {text}")
        texts = [text for _, text in rows]
    else:
        if args.levels is not None:
            raise InputError("--levels only applies with --ladder; add --ladder, or give one --severity.")
        if args.severity is not None and args.counts is not None:
            raise InputError(
                "Give --severity or --counts, not both: the counts set the severity themselves "
                f"(--severity: {', '.join(SEVERITIES)}; --counts: LEVEL=N pairs, levels {', '.join(LEVELS)})."
            )
        if args.severity is None and args.counts is None:
            raise InputError(
                f"Give --severity ({', '.join(SEVERITIES)}) or --counts (e.g. no=10,minor=4,major=2,destroyed=1)."
            )
        counts = parse_counts(args.counts) if args.counts is not None else None
        text = build_instruction(
            args.scenario, severity=args.severity, counts=counts, keep=args.keep, extra=args.extra, short=args.short
        )
        print(text)
        texts = [text]
    longest = max(texts, key=len)
    if len(longest.split()) > SHORT_MAX_WORDS or len(longest) > SHORT_MAX_CHARS:
        advice = "" if args.short else "; add --short for RSEdit-DiT"
        print(
            f"note: up to {len(longest.split())} words, {len(longest)} characters: may exceed the DiT's 119 T5 tokens "
            f"(DGTRS-CLIP reads 246){advice}. The Text Encode node and rsedit edit report the exact count.",
            file=sys.stderr,
        )
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "instruction",
        help="Write a paper-style edit instruction from a scenario and a severity or building counts.",
        description="Writes what changes, how many buildings reach each xView2 damage level and what stays. "
        "Deterministic: the same arguments give the same text.",
    )
    parser.add_argument(
        "--scenario",
        required=True,
        help=f"One of {', '.join(SCENARIOS)} (aliases such as hurricane, volcanic_eruption, urban work).",
    )
    parser.add_argument(
        "--severity",
        help=f"One of {', '.join(SEVERITIES)}: the hazard's extent and the buildings per damage level. "
        "urban_growth and seasonal: the extent of the change.",
    )
    parser.add_argument(
        "--counts",
        help=f"Buildings per xView2 level instead of --severity: LEVEL=N pairs, levels {', '.join(LEVELS)}, "
        "e.g. no=10,minor=4,major=2,destroyed=1 (missing levels count 0).",
    )
    parser.add_argument(
        "--keep",
        help="What must stay (default: the scenario's own). A sentence ('the pier stays intact') is used as "
        "written; a list ('the roads and the pier') becomes 'Keep ... unchanged.'",
    )
    parser.add_argument("--extra", default="", help="A sentence added before what stays.")
    parser.add_argument(
        "--short",
        action="store_true",
        help=f"The compact form for RSEdit-DiT (T5, 119 tokens): at most {SHORT_MAX_WORDS} words with the default "
        "keep and no extra.",
    )
    parser.add_argument(
        "--ladder", action="store_true", help="One instruction per severity level (a sweep), as LEVEL: TEXT lines."
    )
    parser.add_argument(
        "--levels",
        help=f"With --ladder: comma-separated levels, in order (default {','.join(SEVERITIES[1:])}).",
    )
    parser.set_defaults(func=cmd_instruction)
