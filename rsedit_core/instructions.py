"""Paper-style edit instructions from a scenario and a severity (or building counts), and ladders of them.

The paper's instructions say what changes, how many buildings reach each xView2 damage level
(no / minor / major / destroyed) and what stays. :func:`build_instruction` writes one from

- a **scenario** (:data:`SCENARIOS`; aliases such as ``hurricane`` or ``volcanic_eruption`` work),
- either a **severity** (:data:`SEVERITIES`), which sets the hazard's extent and the building
  counts of :data:`SEVERITY_COUNTS`, or explicit **counts** per xView2 level
  (``{"no": 10, "minor": 4, "major": 2, "destroyed": 1}``), whose hazard extent is the lowest
  severity that matches them (:func:`severity_for_counts`),
- what must **stay** (a default per scenario), and optional **extra** text.

The text is a pure function of the arguments (no randomness), so a graph or a sweep re-run gives
the same instructions. :func:`severity_ladder` writes one instruction per level, for a sweep.

``urban_growth`` and ``seasonal`` damage no buildings: their levels grade the extent of the change
(``minor`` = early construction or early autumn ... ``catastrophic`` = the whole surroundings
built over, or a harsh winter), and they take no counts.

**Token budgets.** The encoders read 246 tokens (DGTRS-CLIP, U-Net editors), 75 (plain CLIP) and
119 (the DiT's T5). Counting needs the editor's tokenizer, which lives in its model folder, so
:func:`check_budget` takes a loaded editor. Without one, the bounds below hold for every built
instruction with the default ``keep`` and no ``extra`` (tests check them). They assume at most
2 tokens per word and at least 3 characters per token; SD-1.5's CLIP tokenizer and T5's measure
at most 1.45 tokens per word and at least 3.9 characters per token on these texts:

- ``short=True``: at most :data:`SHORT_MAX_WORDS` words and :data:`SHORT_MAX_CHARS` characters,
  within T5's 119 tokens (measured with the real tokenizers: at most 65 T5 and 62 CLIP tokens,
  so plain CLIP's 75 fit as well);
- the default: at most :data:`LONG_MAX_WORDS` words and :data:`LONG_MAX_CHARS` characters, within
  DGTRS-CLIP's 246 tokens (measured: at most 126 CLIP tokens; up to 139 T5 tokens, so the DiT
  needs ``short=True``).

This module imports nothing heavy; :func:`check_budget` imports the text module when called.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from .editor import EditorModel
    from .text import TokenReport

SCENARIOS = ("flood", "tsunami", "tornado", "earthquake", "wildfire", "volcano", "urban_growth", "seasonal")
SEVERITIES = ("none", "minor", "moderate", "major", "catastrophic")
#: The xView2 building levels, worst last, as counts are keyed.
LEVELS = ("no", "minor", "major", "destroyed")
#: Buildings per xView2 level that each severity writes (a 512 x 512 tile of a small town).
SEVERITY_COUNTS: dict[str, dict[str, int]] = {
    "none": {"no": 0, "minor": 0, "major": 0, "destroyed": 0},
    "minor": {"no": 0, "minor": 10, "major": 0, "destroyed": 0},
    "moderate": {"no": 0, "minor": 15, "major": 8, "destroyed": 0},
    "major": {"no": 0, "minor": 15, "major": 20, "destroyed": 12},
    "catastrophic": {"no": 0, "minor": 10, "major": 20, "destroyed": 25},
}
#: Conservative length bounds of built instructions (default keep, no extra); see the module docstring.
SHORT_MAX_WORDS = 55
SHORT_MAX_CHARS = 357  # 119 T5 tokens x 3 characters
LONG_MAX_WORDS = 120
LONG_MAX_CHARS = 738  # 246 DGTRS-CLIP tokens x 3 characters

ALIASES = {
    "hurricane": "flood",
    "hurricane_flood": "flood",
    "storm_surge": "flood",
    "flooding": "flood",
    "quake": "earthquake",
    "fire": "wildfire",
    "volcanic_eruption": "volcano",
    "eruption": "volcano",
    "urban": "urban_growth",
    "urban_expansion": "urban_growth",
    "construction": "urban_growth",
    "season": "seasonal",
    "seasonal_shift": "seasonal",
}
_LEVEL_ALIASES = {
    "no": "no",
    "no_damage": "no",
    "minor": "minor",
    "minor_damage": "minor",
    "major": "major",
    "major_damage": "major",
    "destroyed": "destroyed",
}
# Words that make a keep text a sentence of its own; otherwise it is read as a list of things to keep.
_STAY_WORDS = re.compile(
    r"\b(unchanged|unaffected|stay|stays|keep|keeps|remain|remains|intact|in place|as they are|as it is)\b", re.I
)


@dataclass(frozen=True)
class _Damage:
    """A scenario that damages buildings: how its hazard reads at each severity and per xView2 level."""

    lead: str  # the long opening, around "{event}"
    hazard: str  # "hurricane storm surge": "a major hurricane storm surge"
    none_event: str  # the event at severity "none"
    effects: dict[str, str]  # severity -> what the hazard did to the scene (no buildings)
    effects_short: dict[str, str]  # the same, in fewer words
    zones: tuple[str, str, str]  # where the worst, next and least damaged buildings present are
    no_zone: str  # where buildings with no damage are
    destroyed: str  # after "are destroyed"
    major: str  # after "have major damage"
    minor: str  # after "have minor damage"
    keep: str
    keep_short: str


@dataclass(frozen=True)
class _Change:
    """A scenario that changes the scene without damage: one text per level, long and short."""

    stages: dict[str, tuple[str, str]]
    keep: str
    keep_short: str


_SCENARIOS: dict[str, _Damage | _Change] = {
    "flood": _Damage(
        lead="Simulate the aftermath of {event} on this coastal town",
        hazard="hurricane storm surge",
        none_event="a hurricane that brought no storm surge",
        effects={
            "none": "the beach, the promenade and the streets stay dry",
            "minor": "shallow water covers the beach and the promenade",
            "moderate": "brown floodwater covers the beach, the promenade and the first block inland",
            "major": "brown floodwater covers the beach, the promenade and the first three blocks inland, and "
            "uprooted trees lie across the coastal road",
            "catastrophic": "deep brown floodwater covers the beach, the promenade and the first five blocks "
            "inland, and debris and uprooted trees fill the streets",
        },
        effects_short={
            "none": "the beach, the promenade and the streets stay dry",
            "minor": "shallow water covers the beach and the promenade",
            "moderate": "brown floodwater covers the beach, the promenade and the first block inland",
            "major": "brown floodwater covers the beach, the promenade and the first three blocks inland",
            "catastrophic": "deep floodwater and debris cover the beach, the promenade and the first five blocks "
            "inland",
        },
        zones=("closest to the shore", "in the next blocks", "further inland"),
        no_zone="in the flooded blocks",
        destroyed=", with roofs torn off and debris scattered around",
        major=" with missing roof sections and standing water around the walls",
        minor=" such as scattered roof tiles",
        keep="Keep the road grid, the shoreline position, the pier and the blocks beyond the floodwater unchanged.",
        keep_short="The road grid, the shoreline, the pier and the inland blocks are unchanged.",
    ),
    "tsunami": _Damage(
        lead="Show this coastal town after {event}",
        hazard="tsunami",
        none_event="a tsunami warning that brought no wave",
        effects={
            "none": "the beach, the promenade and the streets are dry and clear",
            "minor": "the wave has washed over the beach and the promenade, leaving a thin layer of sand",
            "moderate": "the wave has swept the beach and the first block inland, and sand and mud cover the "
            "streets near the coast",
            "major": "the wave has swept the beach and the first two blocks inland, boats are washed onto the "
            "promenade, and a thick layer of sand and mud covers the streets near the coast",
            "catastrophic": "the wave has swept the beach and the first four blocks inland, boats and debris are "
            "carried deep into the town, and mud covers every street near the coast",
        },
        effects_short={
            "none": "the beach and the streets are dry and clear",
            "minor": "the wave washed over the beach, leaving a thin layer of sand",
            "moderate": "the wave swept the beach and the first block inland, leaving sand and mud",
            "major": "the wave swept the first two blocks inland, leaving boats on the promenade and mud in the "
            "streets",
            "catastrophic": "the wave swept the first four blocks inland, carrying boats and debris deep into the town",
        },
        zones=("along the shoreline", "in the next block inland", "further inland"),
        no_zone="in the flooded area",
        destroyed=" and reduced to debris fields",
        major=" with collapsed walls",
        minor=" from water and mud",
        keep="The inland blocks and the fields stay intact, and the coastline, the pier footing and the road "
        "layout remain in their original positions.",
        keep_short="The coastline, the pier, the roads and the inland blocks are unchanged.",
    ),
    "tornado": _Damage(
        lead="Show the town after {event}",
        hazard="tornado",
        none_event="a tornado that passed the town without touching down",
        effects={
            "none": "no damage track crosses the blocks and the trees stand in full leaf",
            "minor": "a narrow track of broken branches and scattered debris crosses the inland blocks from the "
            "south-west corner towards the north",
            "moderate": "a track about one block wide crosses the inland blocks from the south-west corner to the "
            "northern edge of the town, with uprooted trees along it",
            "major": "a track about two blocks wide crosses the inland blocks from the south-west corner to the "
            "northern edge of the town, and the trees along it are uprooted and stripped of leaves",
            "catastrophic": "a track about three blocks wide crosses the whole town from the south-west corner to "
            "the northern edge, and the trees along it are flattened",
        },
        effects_short={
            "none": "no damage track crosses the blocks",
            "minor": "a narrow track of broken branches crosses the inland blocks from the south-west",
            "moderate": "a track one block wide crosses the inland blocks from south-west to north, uprooting trees",
            "major": "a track two blocks wide crosses the inland blocks from south-west to north, uprooting the trees",
            "catastrophic": "a track three blocks wide crosses the whole town from south-west to north, flattening "
            "the trees",
        },
        zones=("in the centre of the track", "along its edges", "next to the track"),
        no_zone="near the track",
        destroyed=", with only bare slabs and scattered debris left",
        major=" with roofs torn off",
        minor=" such as missing shingles and broken windows",
        keep="Buildings outside the track, the road network, the beach and the sea are unchanged.",
        keep_short="Buildings outside the track, the roads, the beach and the sea are unchanged.",
    ),
    "earthquake": _Damage(
        lead="Depict the town after {event}",
        hazard="earthquake",
        none_event="a moderate earthquake that caused no visible damage",
        effects={
            "none": "the roads are clear of debris and the trees stand as before",
            "minor": "a few roof tiles have fallen into the yards of the central blocks",
            "moderate": "cracked walls and fallen roof tiles mark the central blocks, and small rubble piles lie "
            "at the foot of some walls",
            "major": "the central blocks are badly shaken and rubble spills onto two central streets",
            "catastrophic": "most of the town is shaken apart, rubble blocks the central streets and dust covers "
            "the blocks",
        },
        effects_short={
            "none": "the roads are clear of debris",
            "minor": "a few roof tiles lie in the yards of the central blocks",
            "moderate": "cracked walls and small rubble piles mark the central blocks",
            "major": "rubble spills from the central blocks onto two central streets",
            "catastrophic": "most of the town is shaken apart and rubble blocks the central streets",
        },
        zones=("in the central blocks", "around them", "further out"),
        no_zone="in the central blocks",
        destroyed=", collapsed into rubble piles",
        major=" with partially collapsed roofs and cracked walls",
        minor=" with dislodged roof tiles",
        keep="The street grid, the trees, the beach, the pier and the sea keep their exact positions and colours.",
        keep_short="The street grid, the trees, the beach and the sea are unchanged.",
    ),
    "wildfire": _Damage(
        lead="Show the town after {event}",
        hazard="wildfire",
        none_event="a wildfire that was stopped before it reached the town",
        effects={
            "none": "the fields and the parks stay green",
            "minor": "the south-western crop fields are scorched and the fire stopped at the edge of the town",
            "moderate": "the south-western fields are charred black and grey and the fire reached the first "
            "western block",
            "major": "the south-western fields and the western edge of the town are charred black and grey, and "
            "most trees in the western parks are burned",
            "catastrophic": "the fire has burned through all the fields and the western half of the town, leaving "
            "charred ground, burned parks and drifting smoke",
        },
        effects_short={
            "none": "the fields and the parks stay green",
            "minor": "the south-western crop fields are scorched up to the edge of the town",
            "moderate": "the south-western fields are charred and the fire reached the first western block",
            "major": "the south-western fields and the western edge of the town are charred, the western parks burned",
            "catastrophic": "all the fields and the western half of the town are burned, with charred ground and smoke",
        },
        zones=("on the western blocks", "next to them", "at the edge of the burned area"),
        no_zone="beside the burned area",
        destroyed=", with only burned foundations left",
        major=" with blackened, partly collapsed roofs",
        minor=" such as scorched walls and singed roofs",
        keep="The eastern blocks, the beach and the sea are unaffected, and the roads stay in place.",
        keep_short="The eastern blocks, the beach, the sea and the roads are unchanged.",
    ),
    "volcano": _Damage(
        lead="Show the town after {event}",
        hazard="volcanic eruption upwind",
        none_event="a distant volcanic eruption downwind",
        effects={
            "none": "no ash reaches the town, and the roofs, roads and fields keep their colours",
            "minor": "a thin film of grey ash dusts the roofs, roads and fields",
            "moderate": "a layer of grey ash covers the roofs, roads, fields and trees of the northern blocks",
            "major": "a layer of grey volcanic ash covers the roofs, roads, fields and trees across the whole "
            "scene, and a lava flow enters from the north-west corner",
            "catastrophic": "thick grey ash buries the whole scene, and a wide lava flow crosses the town from the "
            "north-west corner to the shore",
        },
        effects_short={
            "none": "no ash reaches the town",
            "minor": "a thin film of grey ash dusts the roofs, roads and fields",
            "moderate": "grey ash covers the roofs, roads, fields and trees of the northern blocks",
            "major": "grey ash covers the whole scene and a lava flow enters from the north-west corner",
            "catastrophic": "thick grey ash buries the scene and a wide lava flow crosses the town to the shore",
        },
        zones=("in the north-western blocks", "around them", "further south-east"),
        no_zone="under the ash",
        destroyed=", crushed under ash or burned by lava",
        major=" with roof sections collapsed under the ash",
        minor=" with ash piled on the roofs",
        keep="The road grid, the coastline and the pier keep their positions, and the sea stays blue with a thin "
        "grey film near the shore.",
        keep_short="The road grid, the coastline, the pier and the sea keep their positions.",
    ),
    "urban_growth": _Change(
        stages={
            "none": (
                "No new construction: the three crop fields in the south-west stay as they are, with their crops "
                "and field boundaries.",
                "No new construction: the south-western crop fields stay as they are.",
            ),
            "minor": (
                "Early construction stage: the three crop fields in the south-west are cleared to bare brown soil, "
                "graded building plots are marked out, and a new access road is laid from the existing street grid "
                "into the cleared area.",
                "Early construction: the south-western crop fields are cleared to bare brown soil, with building "
                "plots and a new access road.",
            ),
            "moderate": (
                "Mid construction stage: on the cleared south-western fields, about 20 house foundations and partly "
                "built grey concrete structures stand along two new streets, with construction vehicles and "
                "material piles between them.",
                "Mid construction: about 20 house foundations and partly built grey structures stand along two new "
                "streets on the south-western fields.",
            ),
            "major": (
                "Completed development: the south-western fields are now a residential district with about 24 "
                "finished houses with terracotta and grey roofs, two new paved streets connected to the existing "
                "grid, and young trees in the yards.",
                "Completed development: the south-western fields are a residential district of about 24 finished "
                "houses and two new paved streets.",
            ),
            "catastrophic": (
                "Dense urban expansion: every field around the town is built over with about 60 new houses and "
                "apartment blocks, a grid of new paved streets connected to the existing town, and a new school "
                "with a sports field.",
                "Dense urban expansion: every field around the town is built over with about 60 new houses, "
                "apartment blocks and new paved streets.",
            ),
        },
        keep="The existing town, its roads, its trees, the beach and the sea stay unchanged.",
        keep_short="The existing town, the beach and the sea are unchanged.",
    ),
    "seasonal": _Change(
        stages={
            "none": (
                "Keep the summer season: the trees stay in full green leaf and the fields and the parks stay green.",
                "Summer as it is: the trees stay in full green leaf and the fields stay green.",
            ),
            "minor": (
                "Shift the season from summer to early autumn: the first trees turn yellow and orange, and the "
                "grass in the fields and the parks dries to a pale green.",
                "Early autumn: the first trees turn yellow and orange and the grass dries to a pale green.",
            ),
            "moderate": (
                "Shift the season from summer to late autumn: most trees turn orange and brown and lose some of "
                "their leaves, and the fields are harvested to bare brown stubble.",
                "Late autumn: most trees are orange and brown and the fields are harvested to bare stubble.",
            ),
            "major": (
                "Change the season from summer to winter: snow covers the roofs, the fields, the parks and the "
                "yards, the trees are bare and dark, and the grass is hidden under snow, while the cleared roads "
                "stay dark grey. The sea darkens slightly under overcast light.",
                "Summer to winter: snow covers the roofs, fields, parks and yards, the trees are bare and the "
                "cleared roads stay dark grey.",
            ),
            "catastrophic": (
                "Change the season from summer to a harsh winter: deep snow buries the roofs, the fields, the parks, "
                "the yards and the roads, the trees are bare and frosted, and ice covers the shallow water along "
                "the shore.",
                "Harsh winter: deep snow buries the roofs, fields, parks and roads, the trees are frosted and ice "
                "lines the shore.",
            ),
        },
        keep="All buildings, roads, the beach outline and the pier keep their exact positions and shapes.",
        keep_short="Buildings, roads, the beach and the pier keep their positions and shapes.",
    ),
}


def _choices(names: Iterable[str]) -> str:
    return ", ".join(names)


def resolve_scenario(scenario: str) -> str:
    """The scenario's name in :data:`SCENARIOS` (case, spaces, hyphens and aliases forgiven)."""
    if not isinstance(scenario, str):
        raise InputError(f"scenario must be a string such as 'flood'; got {type(scenario).__name__}.")
    key = re.sub(r"[\s-]+", "_", scenario.strip().lower())
    key = ALIASES.get(key, key)
    if key not in _SCENARIOS:
        raise InputError(
            f"Unknown scenario {scenario!r}. Choose one of: {_choices(SCENARIOS)} "
            f"(aliases: {_choices(sorted(ALIASES))})."
        )
    return key


def resolve_severity(severity: str) -> str:
    """The severity's name in :data:`SEVERITIES` (case and spaces forgiven)."""
    if not isinstance(severity, str):
        raise InputError(f"severity must be a string such as 'major'; got {type(severity).__name__}.")
    key = severity.strip().lower()
    if key not in SEVERITIES:
        raise InputError(f"Unknown severity {severity!r}. Choose one of: {_choices(SEVERITIES)}.")
    return key


def check_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per xView2 level checked and completed: ``{"no", "minor", "major", "destroyed"}`` -> int >= 0.

    Keys may also be the damage nodes' mask names (``no_damage``, ``minor_damage``, ``major_damage``);
    missing levels count 0.
    """
    if not isinstance(counts, Mapping):
        raise InputError(
            f"counts must map xView2 levels to building numbers, e.g. {{'minor': 4, 'destroyed': 1}}; "
            f"got {type(counts).__name__}."
        )
    checked = dict.fromkeys(LEVELS, 0)
    seen: dict[str, str] = {}
    for key, value in counts.items():
        level = _LEVEL_ALIASES.get(str(key).strip().lower())
        if level is None:
            raise InputError(f"Unknown damage level {key!r} in counts. Use the xView2 levels: {_choices(LEVELS)}.")
        if level in seen:
            raise InputError(f"counts give the level {level!r} twice ({seen[level]!r} and {key!r}); give it once.")
        seen[level] = key
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"The count for {key!r} is {value!r}; give a whole number of buildings (0 or more).")
        if value < 0:
            raise InputError(f"The count for {key!r} is {value}; counts are numbers of buildings, 0 or more.")
        checked[level] = value
    return checked


def parse_counts(text: str) -> dict[str, int]:
    """``"no=10,minor=4,major=2,destroyed=1"`` -> checked counts (see :func:`check_counts`)."""
    example = "no=10,minor=4,major=2,destroyed=1"
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"No counts given; write LEVEL=N pairs separated by commas, e.g. {example}.")
    counts: dict[str, int] = {}
    for entry in text.split(","):
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise InputError(
                f"Bad counts entry {entry.strip()!r} in {text!r}: write LEVEL=N pairs separated by commas, "
                f"e.g. {example} (levels: {_choices(LEVELS)})."
            )
        if not re.fullmatch(r"[+-]?\d+", value):
            raise InputError(f"The count for {name!r} is {value!r}, not a whole number (in {text!r}).")
        if name in counts:
            raise InputError(f"counts give {name!r} twice in {text!r}; give each level once.")
        counts[name] = int(value)
    return check_counts(counts)


def _score(counts: Mapping[str, int]) -> int:
    return counts["minor"] + 2 * counts["major"] + 3 * counts["destroyed"]


def severity_for_counts(counts: Mapping[str, int]) -> str:
    """The hazard extent that goes with these counts: ``none`` when no building is damaged, else the
    lowest severity whose counts score at least as much (minor 1, major 2, destroyed 3 a building)
    and that has buildings at the worst level present."""
    counts = check_counts(counts)
    if not _score(counts):
        return "none"
    worst = next(level for level in reversed(LEVELS) if counts[level])
    for severity in SEVERITIES[1:]:
        table = SEVERITY_COUNTS[severity]
        if table[worst] and _score(table) >= _score(counts):
            return severity
    return SEVERITIES[-1]


def severity_counts(severity: str) -> dict[str, int]:
    """The building counts a severity writes (a copy of :data:`SEVERITY_COUNTS`'s entry)."""
    return dict(SEVERITY_COUNTS[resolve_severity(severity)])


def _sentence(text: str) -> str:
    """One sentence (or several) from user text: whitespace collapsed, capitalised, ending in a stop."""
    text = " ".join(text.split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _keep_sentence(keep: str | None, default: str) -> str:
    if keep is None:
        return default
    if not isinstance(keep, str):
        raise InputError(f"keep must be a string (what stays unchanged); got {type(keep).__name__}.")
    keep = " ".join(keep.split()).rstrip(".")
    if not keep:
        return default
    if _STAY_WORDS.search(keep):
        return _sentence(keep)
    return f"Keep {keep} unchanged."


def _number(n: int, noun: bool = True) -> str:
    """ "one building", "3 buildings", "about 12 buildings" (or without the noun): "about" from 5 up."""
    if n == 1:
        return "one building" if noun else "one"
    number = f"about {n}" if n >= 5 else str(n)
    return f"{number} buildings" if noun else number


def _damage_text(scenario: _Damage, counts: dict[str, int], level: str, short: bool) -> str:
    """The buildings per xView2 level, worst first, each in the next zone out from the hazard."""
    damaged = [name for name in ("destroyed", "major", "minor") if counts[name]]
    if short:
        words = {
            "destroyed": "destroyed",
            "major": "with major damage",
            "minor": "with minor damage",
            "no": "undamaged",
        }
        present = [*damaged, *(["no"] if counts["no"] else [])]
        parts = [f"{_number(counts[name], noun=i == 0)} {words[name]}" for i, name in enumerate(present)]
        if not damaged:
            parts.append("no building is damaged" if counts["no"] else "every building is intact")
        return _join(parts)
    parts = []
    for zone, name in zip(scenario.zones, damaged, strict=False):
        subject, plural = f"{_number(counts[name])} {zone}", counts[name] != 1
        if name == "destroyed":
            parts.append(f"{subject} {'are' if plural else 'is'} destroyed{scenario.destroyed}")
        else:
            parts.append(f"{subject} {'have' if plural else 'has'} {name} damage{getattr(scenario, name)}")
    if counts["no"]:
        # With no hazard (severity none) there is no flooded or burned area to place them in.
        zone = "" if level == "none" else f" {scenario.no_zone}"
        parts.append(f"{_number(counts['no'])}{zone} {'show' if counts['no'] != 1 else 'shows'} no visible damage")
    if not damaged:
        if not counts["no"]:
            return "Every building keeps an intact roof and footprint and shows no visible damage."
        return _capital(parts[0]) + ", and no building is damaged or destroyed."
    return _capital("; ".join(parts)) + "."


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def build_instruction(
    scenario: str,
    *,
    severity: str | None = None,
    counts: Mapping[str, int] | None = None,
    keep: str | None = None,
    extra: str = "",
    short: bool = False,
) -> str:
    """A paper-style instruction: what changes, how many buildings per xView2 level, what stays.

    Give ``severity`` (one of :data:`SEVERITIES`) or ``counts`` (per :data:`LEVELS`), not both.
    ``keep`` is what must stay: ``None`` or blank for the scenario's default; a text with a word
    such as "unchanged", "stay", "keep" or "intact" is used as a sentence, anything else is read
    as a list ("the roads and the pier" -> "Keep the roads and the pier unchanged."). ``extra``
    is added as a sentence before it. ``short=True`` writes the compact form for the DiT's
    119 T5 tokens (see the module docstring for the bounds). Deterministic.
    """
    name = resolve_scenario(scenario)
    data = _SCENARIOS[name]
    if severity is not None and counts is not None:
        raise InputError("Give a severity or building counts, not both: the counts set the severity themselves.")
    if severity is None and counts is None:
        raise InputError(f"Give a severity ({_choices(SEVERITIES)}) or building counts per level ({_choices(LEVELS)}).")
    if not isinstance(extra, str):
        raise InputError(f"extra must be a string; got {type(extra).__name__}.")
    if isinstance(data, _Change):
        if counts is not None:
            raise InputError(
                f"The {name} scenario damages no buildings, so it takes no counts (they are buildings per xView2 "
                f"damage level); give a severity instead ({_choices(SEVERITIES)}: the extent of the change)."
            )
        level = resolve_severity(severity)
        change = data.stages[level][1 if short else 0]
        keep_text = _keep_sentence(keep, data.keep_short if short else data.keep)
        return " ".join(part for part in (change, _sentence(extra), keep_text) if part)
    if counts is not None:
        checked = check_counts(counts)
        level = severity_for_counts(checked)
        event = data.none_event if level == "none" else f"{'an' if data.hazard[0] in 'aeiou' else 'a'} {data.hazard}"
    else:
        level = resolve_severity(severity)
        checked = dict(SEVERITY_COUNTS[level])
        event = data.none_event if level == "none" else f"a {level} {data.hazard}"
    if short:
        opening = f"{_capital(event)}: {data.effects_short[level]}; {_damage_text(data, checked, level, True)}."
    else:
        damage = _damage_text(data, checked, level, False)
        opening = f"{data.lead.format(event=event)}: {data.effects[level]}. {damage}"
    keep_text = _keep_sentence(keep, data.keep_short if short else data.keep)
    return " ".join(part for part in (opening, _sentence(extra), keep_text) if part)


def parse_levels(levels: str | Iterable[str]) -> list[str]:
    """Severity levels from a list or a comma-separated text, checked, in the order given."""
    items = levels.split(",") if isinstance(levels, str) else list(levels)
    names = [item.strip() for item in items if isinstance(item, str) and item.strip()]
    if len(names) != len(items) and not isinstance(levels, str):
        raise InputError(f"levels must be severity names ({_choices(SEVERITIES)}); got {list(levels)!r}.")
    if not names:
        raise InputError(f"No severity levels given; list some of {_choices(SEVERITIES)}, e.g. minor,major.")
    resolved = [resolve_severity(name) for name in names]
    repeated = sorted({name for name in resolved if resolved.count(name) > 1})
    if repeated:
        raise InputError(f"Severity level(s) {_choices(repeated)} listed twice; list each level once.")
    return resolved


def severity_ladder(
    scenario: str,
    levels: str | Iterable[str] = SEVERITIES[1:],
    *,
    keep: str | None = None,
    extra: str = "",
    short: bool = False,
) -> list[tuple[str, str]]:
    """``[(level, instruction), ...]`` for a severity sweep of one scenario (by default minor to catastrophic)."""
    name = resolve_scenario(scenario)
    return [
        (level, build_instruction(name, severity=level, keep=keep, extra=extra, short=short))
        for level in parse_levels(levels)
    ]


def check_budget(model: EditorModel, text: str, *, strict: bool = False) -> TokenReport:
    """How ``text`` fits ``model``'s text encoder (its own tokenizer: 246 tokens with DGTRS-CLIP,
    75 with plain CLIP, 119 with the DiT's T5). With ``strict``, an instruction that would be cut
    raises :class:`InputError` saying by how much."""
    from .text import count_tokens

    if not isinstance(text, str):
        raise InputError(f"The instruction must be a string; got {type(text).__name__}.")
    report = count_tokens(model, text)
    if strict and report.dropped:
        raise InputError(
            f"The instruction needs {report.prompt_tokens} tokens but this {model.backbone.display_name} editor's "
            f"text encoder reads {report.capacity}: {report.dropped} would be cut "
            f"('{report.dropped_text.strip()}'). Build it with short=True (--short), or shorten keep/extra."
        )
    return report
