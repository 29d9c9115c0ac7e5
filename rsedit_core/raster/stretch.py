"""Stretches: source values to ``0..1`` and back (:class:`Stretch`), as asked for (:class:`StretchSpec`).

The stretch syntax (:func:`parse_stretch`, the CLI's ``--stretch``):

``percentile``
    the default: each band stretched linearly between its 2nd and 98th percentiles (over valid
    pixels); 8-bit sources are used as they are (value / 255).
``percentile:P1,P2``
    the P1-th to P2-th percentiles, e.g. ``percentile:1,99``; applied to 8-bit sources too.
``MIN,MAX``
    a fixed range in source values for every band, e.g. ``0,3000`` for 16-bit reflectance;
    ``MIN,MAX;MIN,MAX;MIN,MAX`` gives one range per selected band (red;green;blue).
``none``
    integers divided by their dtype's maximum (65535 for uint16); refused for float sources.

Pixels outside the stretch range are clipped, so only values inside it come back exactly.
A spec is resolved into a :class:`Stretch` against a source's values by :func:`_resolve_stretch`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

STRETCH_KINDS = ("percentile", "range", "none", "8bit")
DEFAULT_PERCENTILES = (2.0, 98.0)
STRETCH_HELP = (
    "'percentile' (2nd-98th percentiles, 8-bit used as is), 'percentile:P1,P2' (e.g. percentile:1,99), "
    "'MIN,MAX' in source values (e.g. 0,3000; or MIN,MAX;MIN,MAX;MIN,MAX per band) or 'none' (integers / dtype max)"
)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")


def _ordinal(value: float) -> str:
    text = _number(value)
    if not float(value).is_integer():
        return f"{text}th"
    number = int(value)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{text}{suffix}"


def _number(value: float) -> str:
    """``value`` as short as it round-trips (integers without a decimal point)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


@dataclass(frozen=True)
class Stretch:
    """A linear map from source values to ``0..1``, one ``low``/``high`` pair per band.

    ``kind`` records where the pair came from: ``"percentile"`` (``percentiles`` says which),
    ``"range"`` (given), ``"none"`` (0 to the integer dtype's maximum) or ``"8bit"`` (0..255).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    kind: str = "range"
    percentiles: tuple[float, float] | None = None

    def __post_init__(self):
        if self.kind not in STRETCH_KINDS:
            raise InputError(f"Unknown stretch kind {self.kind!r}; use one of {', '.join(STRETCH_KINDS)}.")
        if not self.low or len(self.low) != len(self.high):
            raise InputError(
                f"A stretch needs one low and one high value per band; got {len(self.low)} low and "
                f"{len(self.high)} high values."
            )
        for band, (low, high) in enumerate(zip(self.low, self.high, strict=True), start=1):
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise InputError(
                    f"Stretch band {band}: MIN {_number(low)} must be below MAX {_number(high)} (both finite). "
                    "Give the range as MIN,MAX with MIN < MAX, e.g. 0,3000."
                )

    def _columns(self, array):
        import numpy as np

        count = len(self.low)
        if array.ndim < 1 or array.shape[0] != count:
            raise InputError(
                f"This stretch has {count} band(s) but the array has shape {tuple(array.shape)}; "
                f"give [{count}, H, W] (bands first)."
            )
        shape = (count,) + (1,) * (array.ndim - 1)
        low = np.asarray(self.low, dtype=np.float64).reshape(shape)
        high = np.asarray(self.high, dtype=np.float64).reshape(shape)
        return low, high

    def forward(self, array):
        """Source values ``[C, ...]`` -> float32 in ``0..1`` (clipped; NaN -> 0)."""
        import numpy as np

        array = np.asarray(array)
        self._columns(array)
        out = array.astype(np.float32, copy=True)
        self._apply(out)
        return out

    def _apply(self, out) -> None:
        """:meth:`forward` in place on float32 ``out`` ``[C, ...]`` holding source values (a view will do)."""
        import numpy as np

        low, high = self._columns(out)
        out -= low.astype(np.float32)
        out *= (1.0 / (high - low)).astype(np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        out[np.isnan(out)] = 0.0

    def inverse(self, array01, dtype):
        """``[C, ...]`` in ``0..1`` -> source values of ``dtype`` (integers rounded and clipped to its range)."""
        import numpy as np

        dtype = np.dtype(dtype)
        # float32 holds a 16-bit value to well under 0.01 of a level, so rounding is exact; wider types need float64.
        work = np.float32 if dtype.kind in "iu" and dtype.itemsize <= 2 else np.float64
        values = np.array(array01, dtype=work, copy=True)
        low, high = self._columns(values)
        np.clip(values, 0.0, 1.0, out=values)
        values[np.isnan(values)] = 0.0
        values *= (high - low).astype(work)
        values += low.astype(work)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            np.rint(values, out=values)
            np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype, copy=False)

    def as_text(self) -> str:
        """The stretch in :func:`parse_stretch`'s range syntax (reproduces it exactly)."""
        pairs = [f"{_number(low)},{_number(high)}" for low, high in zip(self.low, self.high, strict=True)]
        return pairs[0] if len(set(pairs)) == 1 else ";".join(pairs)

    def describe(self, names: Sequence[str] = ()) -> str:
        """One line: where the stretch came from and each band's range."""
        names = list(names) or [f"band {i}" for i in range(1, len(self.low) + 1)]
        pairs = zip(names, self.low, self.high, strict=False)
        shown = (f"{name} {_number(low)}..{_number(high)}" for name, low, high in pairs)
        ranges = ", ".join(dict.fromkeys(shown))  # a band read twice is listed once
        if self.kind == "8bit":
            return "8-bit values used as is (value / 255)"
        if self.kind == "none":
            return f"no stretch: value / {_number(self.high[0])} (the dtype's maximum)"
        if self.kind == "percentile" and self.percentiles:
            p1, p2 = self.percentiles
            return f"stretched linearly between the {_ordinal(p1)} and {_ordinal(p2)} percentiles: {ranges}"
        return f"stretched linearly over the range {ranges}"


@dataclass(frozen=True)
class StretchSpec:
    """A stretch as asked for, before the raster is read: see :func:`parse_stretch`.

    ``percentiles`` is ``None`` for the plain default ``percentile`` (which leaves 8-bit sources
    as they are); ``ranges`` holds the ``(MIN, MAX)`` pairs of a ``range``.
    """

    kind: str
    percentiles: tuple[float, float] | None = None
    ranges: tuple[tuple[float, float], ...] = ()

    def text(self) -> str:
        if self.kind == "percentile" and self.percentiles is None:
            return "percentile"
        if self.kind == "percentile":
            return "percentile:{},{}".format(*map(_number, self.percentiles))
        if self.kind == "range":
            return ";".join(f"{_number(low)},{_number(high)}" for low, high in self.ranges)
        return self.kind


def parse_stretch(text: str | StretchSpec | Stretch | None) -> StretchSpec | Stretch:
    """Parse the stretch syntax of this module's docstring; a :class:`Stretch` passes through."""
    if text is None:
        return StretchSpec("percentile")
    if isinstance(text, (StretchSpec, Stretch)):
        return text
    if not isinstance(text, str):
        raise InputError(f"The stretch must be text such as 'percentile' or '0,3000'; got {text!r}.")
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("percentile", "percentiles", ""):
        return StretchSpec("percentile")
    if lowered == "none":
        return StretchSpec("none")
    if lowered.startswith("percentile"):
        rest = lowered[len("percentile") :].lstrip("s").strip()
        match = _PAIR.match(rest[1:]) if rest[:1] in (":", "=") else None
        if match is None:
            raise InputError(
                f"Cannot read the stretch {text!r}: write percentiles as percentile:P1,P2, e.g. percentile:2,98."
            )
        p1, p2 = float(match.group(1)), float(match.group(2))
        if not 0 <= p1 < p2 <= 100:
            raise InputError(
                f"Stretch {text!r}: the percentiles must satisfy 0 <= P1 < P2 <= 100; got {_number(p1)} and "
                f"{_number(p2)}. Use e.g. percentile:2,98."
            )
        return StretchSpec("percentile", (p1, p2))
    parts = raw.split(";")
    ranges = []
    for part in parts:
        match = _PAIR.match(part)
        if match is None:
            raise InputError(f"Unknown stretch {text!r}; use {STRETCH_HELP}.")
        low, high = float(match.group(1)), float(match.group(2))
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise InputError(
                f"Stretch {text!r}: MIN {_number(low)} must be below MAX {_number(high)}. Give the range as "
                "MIN,MAX in source values with MIN < MAX, e.g. 0,3000."
            )
        ranges.append((low, high))
    if len(ranges) not in (1, 3):
        raise InputError(
            f"Stretch {text!r} has {len(ranges)} ranges; give one MIN,MAX for every band or three "
            "(MIN,MAX;MIN,MAX;MIN,MAX, in red;green;blue order)."
        )
    return StretchSpec("range", ranges=tuple(ranges))


def _resolve_stretch(spec, dtype, channels, sample, path: Path, labels=()) -> tuple[Stretch | None, list[str]]:
    """The :class:`Stretch` for ``spec`` on this source; ``sample()`` gives ``(values [U, ...], valid)``
    per unique band (named by ``labels``) and ``channels`` maps each of the 3 channels to its row in it.
    ``None`` when the sample holds no valid pixel (the caller retries on every pixel)."""
    import numpy as np

    is_int = dtype.kind in "iu"
    if isinstance(spec, Stretch):
        if len(spec.low) == 1:
            spec = Stretch(spec.low * 3, spec.high * 3, spec.kind, spec.percentiles)
        if len(spec.low) != 3:
            raise InputError(f"The stretch given has {len(spec.low)} bands; give one for each of the 3 bands read.")
        return spec, []
    if spec.kind == "range":
        ranges = spec.ranges * 3 if len(spec.ranges) == 1 else spec.ranges
        return Stretch(tuple(r[0] for r in ranges), tuple(r[1] for r in ranges), "range"), []
    if spec.kind == "none":
        if not is_int:
            raise _no_maximum(path, dtype, *sample())
        top = float(np.iinfo(dtype).max)
        return Stretch((0.0,) * 3, (top,) * 3, "none"), []
    if spec.percentiles is None and dtype == np.uint8:
        return Stretch((0.0,) * 3, (255.0,) * 3, "8bit"), []
    p1, p2 = spec.percentiles or DEFAULT_PERCENTILES
    values, valid = sample()
    low, high, notes = [], [], []
    per_band = {}
    for row in sorted(set(channels)):
        picked = values[row][valid]
        if picked.size == 0:
            return None, []
        lo, hi = (float(v) for v in np.percentile(picked, [p1, p2]))
        if is_int:
            lo, hi = float(math.floor(lo)), float(math.ceil(hi))
        else:  # both ends representable in the source dtype, so 0 and 1 map back onto them exactly
            lo, hi = float(dtype.type(lo)), float(dtype.type(hi))
        if hi <= lo:
            lo, hi = float(picked.min()), float(picked.max())
        if hi <= lo:
            hi = lo + (1.0 if is_int else max(abs(lo), 1.0) * 1e-3)
            label = labels[row] if row < len(labels) else f"band {row + 1}"
            notes.append(f"{label} is constant ({_number(lo)}) over its valid pixels; it reads as black")
        per_band[row] = (lo, hi)
    for row in channels:
        low.append(per_band[row][0])
        high.append(per_band[row][1])
    return Stretch(tuple(low), tuple(high), "percentile", (p1, p2)), notes


def _no_maximum(path: Path, dtype, values, valid) -> InputError:
    import numpy as np

    picked = values[:, valid]
    picked = picked[np.isfinite(picked)]
    seen = f" (its values run from {_number(picked.min())} to {_number(picked.max())})" if picked.size else ""
    return InputError(
        f"Stretch 'none' divides integers by their dtype's maximum, but {path} holds {dtype} values, which have "
        f"none{seen}. Give the range of its values instead, e.g. stretch '0,1' for reflectance in 0..1 or "
        "'0,10000' for scaled reflectance, or use the default 'percentile'."
    )
