"""Durations as lab authors write them: ``90s``, ``45m``, ``2h``, ``1h30m``, ``1d``.

A duration is one or more ``<whole number><unit>`` parts, units in the order d, h, m, s, each at most once, no spaces.
Lab files keep the text as written; code turns it into a :class:`~datetime.timedelta` with :func:`parse_duration`
and back with :func:`format_duration`, which writes the shortest canonical form:

>>> parse_duration("1h30m")
datetime.timedelta(seconds=5400)
>>> format_duration(parse_duration("90m"))
'1h30m'
>>> parse_duration("0", allow_zero=True)
datetime.timedelta(0)
"""

from __future__ import annotations

import re
from datetime import timedelta

DURATION_PATTERN = r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$"
_DURATION = re.compile(DURATION_PATTERN)
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_EXAMPLES = "e.g. '90s', '45m', '2h', '1h30m' or '1d'"


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """The :class:`~datetime.timedelta` ``text`` names; zero only with ``allow_zero`` (written ``0`` or ``0m``...).

    Raises :class:`ValueError` naming the text for anything else (no unit, unknown unit, spaces, a sign, zero).
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration is text with a unit ({_EXAMPLES}), not {text!r}")
    if allow_zero and text == "0":
        return timedelta(0)
    match = _DURATION.match(text)
    if match is None or not text:
        raise ValueError(f"{text!r} is not a duration: write whole numbers with units d, h, m, s in that order, "
                         f"{_EXAMPLES}")
    seconds = sum(int(match[unit]) * size for unit, size in _UNITS if match[unit] is not None)
    if seconds == 0 and not allow_zero:
        raise ValueError(f"{text!r} is zero: a duration here must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The canonical text of ``value`` (whole seconds, not negative): ``timedelta(minutes=90)`` -> ``"1h30m"``.

    Zero is ``"0s"``; :func:`parse_duration` reads every result back to the same value.
    """
    if value < timedelta(0):
        raise ValueError(f"a duration cannot be negative: {value}")
    if value.microseconds:
        raise ValueError(f"durations are whole seconds: {value} has a fraction of a second")
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
