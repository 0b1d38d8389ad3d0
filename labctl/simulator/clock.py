"""The simulated clock and exact integrals of a demand curve over it.

A lab's clock starts at its ``start`` (a time of the simulated week) when the session is ready and runs
``time_scale`` times faster than the real one. A demand :class:`~labctl.catalog.models.Curve` gives requests per
*real* second at each moment of the simulated period, so compressing time replays the shape of a day faster without
changing the load a pod sees at any moment.

Requests over a real interval are the integral of the curve over the matching simulated interval divided by the time
scale (``dt = ds / time_scale``). The curve is piecewise linear, so the integral, and that of ``min(curve / n, cap)``
(what one of ``n`` pods capped at ``cap`` serves), are computed exactly with :class:`~fractions.Fraction`: no
sampling, no rounding, and the step length does not change the sums.

>>> from decimal import Decimal
>>> from labctl.catalog.models import Curve
>>> span = Span.of(Curve(86_400, ((0, Decimal(0)), (43_200, Decimal(10)))), Fraction(0), Fraction(86_400))
>>> span.integral(), span.integral(scale=Fraction(1, 2), cap=Fraction(2)), span.peak()
(Fraction(432000, 1), Fraction(138240, 1), Fraction(10, 1))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from labctl.catalog.models import Curve

MICROSECOND = timedelta(microseconds=1)

# A linear piece of the curve: from simulated second a to b, the rate goes from va to vb (requests per real second).
Piece = tuple[Fraction, Fraction, Fraction, Fraction]


def aware(name: str, moment: datetime) -> None:
    """ValueError unless ``moment`` carries a time zone (the simulator never guesses one)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone, got the naive {moment.isoformat()}")


def real_seconds(since: datetime, until: datetime) -> Fraction:
    """The exact real time from ``since`` to ``until``, in seconds (negative when ``until`` is earlier)."""
    aware("since", since)
    aware("until", until)
    return Fraction((until - since) // MICROSECOND, 1_000_000)


def simulated(seconds_since_start: Fraction, *, start_seconds: int, time_scale: Fraction) -> Fraction:
    """The simulated clock, in seconds since a Monday 00:00, ``seconds_since_start`` real seconds after the start."""
    return start_seconds + seconds_since_start * time_scale


def _piece_integral(piece: Piece, scale: Fraction, cap: Fraction | None) -> Fraction:
    """The integral over one linear piece of ``min(scale x rate, cap)`` (no cap: ``scale x rate``)."""
    a, b, va, vb = piece
    fa, fb = scale * va, scale * vb
    if cap is None or (fa <= cap and fb <= cap):
        return (b - a) * (fa + fb) / 2
    if fa >= cap and fb >= cap:
        return (b - a) * cap
    cross = a + (cap - fa) / (fb - fa) * (b - a)  # the rate meets the cap once: fa != fb here
    if fa < cap:
        return (cross - a) * (fa + cap) / 2 + (b - cross) * cap
    return (cross - a) * cap + (b - cross) * (cap + fb) / 2


@dataclass(frozen=True)
class Span:
    """A simulated interval of a curve cut into linear pieces: ``whole`` full periods of ``period`` pieces, then
    ``rest`` pieces (whole periods are integrated once and multiplied, so a long interval costs no more)."""

    whole: int
    period: tuple[Piece, ...]
    rest: tuple[Piece, ...]

    @classmethod
    def of(cls, curve: Curve, start: Fraction, end: Fraction) -> Span:
        """The pieces of ``curve`` from simulated second ``start`` to ``end`` (``end >= start``)."""
        if end < start:
            raise ValueError(f"a span cannot end ({end}) before it starts ({start})")
        length = Fraction(curve.period_seconds)
        whole = math.floor((end - start) / length)
        period = _pieces(curve, Fraction(0), length) if whole else ()
        return cls(whole, period, _pieces(curve, start + whole * length, end))

    def integral(self, *, scale: Fraction = Fraction(1), cap: Fraction | None = None) -> Fraction:
        """The integral of ``min(scale x rate, cap)`` over the span, in requests x (simulated / real) seconds."""
        rest = sum((_piece_integral(p, scale, cap) for p in self.rest), Fraction(0))
        if not self.whole:
            return rest
        return self.whole * sum((_piece_integral(p, scale, cap) for p in self.period), Fraction(0)) + rest

    def peak(self) -> Fraction:
        """The highest rate anywhere in the span (0 for an empty one)."""
        pieces = self.period + self.rest
        return max((max(p[2], p[3]) for p in pieces), default=Fraction(0))


def rate_at(curve: Curve, offset: Fraction) -> Fraction:
    """The curve's rate at simulated second ``offset`` (any value: the curve repeats every period)."""
    length = Fraction(curve.period_seconds)
    local = offset - math.floor(offset / length) * length
    (x0, y0), (x1, y1) = _neighbours(_knots(curve), local)
    return y0 + (y1 - y0) / (x1 - x0) * (local - x0)


def _knots(curve: Curve) -> list[tuple[Fraction, Fraction]]:
    """The points of one period, with the last point of the previous period before them and the first point of the
    next one after them, so every offset in [0, period) lies between two neighbours."""
    length = curve.period_seconds
    points = [(Fraction(offset), Fraction(rate)) for offset, rate in curve.points]
    first, last = points[0], points[-1]
    return [(last[0] - length, last[1]), *points, (first[0] + length, first[1])]


def _neighbours(knots: list[tuple[Fraction, Fraction]],
                local: Fraction) -> tuple[tuple[Fraction, Fraction], tuple[Fraction, Fraction]]:
    """The knots just before (or at) and just after ``local`` (an offset in [0, period))."""
    index = next(i for i in range(1, len(knots)) if knots[i][0] > local)
    return knots[index - 1], knots[index]


def _pieces(curve: Curve, start: Fraction, end: Fraction) -> tuple[Piece, ...]:
    """The linear pieces covering [start, end], cut at every point of the curve (none when start == end)."""
    length = Fraction(curve.period_seconds)
    knots = _knots(curve)
    pieces: list[Piece] = []
    at = start
    while at < end:
        base = math.floor(at / length) * length
        local = at - base
        (x0, y0), (x1, y1) = _neighbours(knots, local)
        stop = min(end, base + x1)
        slope = (y1 - y0) / (x1 - x0)
        pieces.append((at, stop, y0 + slope * (local - x0), y0 + slope * (stop - base - x0)))
        at = stop
    return tuple(pieces)
