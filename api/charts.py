"""Charts drawn on the server as inline SVG: the learner page's burn rate over time (:func:`burn_chart`) and the
dashboard's labelled bars (:func:`bar_chart`: cost per lab or learner, the grade distribution).

Pure: readings in, SVG text out; no script and no request, so the page's CSP allows it and a screen reader gets the
summary from the ``aria-label`` (what the rate is now, its peak, over which span). The rate is drawn as steps, as
the meter charges it: each reading's rate holds until the next reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 84, 16, 14, 30


@dataclass(frozen=True)
class Point:
    at: datetime
    usd_per_hour: float


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 10 else f"${value:,.4f}"


def burn_chart(points: Sequence[Point], *, now: datetime) -> Markup:
    """The SVG of ``points`` (oldest first) up to ``now``; a sentence instead when there are none yet."""
    if not points:
        return Markup('<p class="muted">No meter readings yet: the first appears after the next metering.</p>')
    start = points[0].at
    end = max(now, points[-1].at)
    span = max((end - start).total_seconds(), 1.0)
    peak = max(p.usd_per_hour for p in points)
    top = peak * 1.15 if peak > 0 else 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + (at - start).total_seconds() / span * plot_w

    def y(rate: float) -> float:
        return TOP + plot_h - rate / top * plot_h

    path: list[str] = []
    for i, p in enumerate(points):
        following = points[i + 1].at if i + 1 < len(points) else end
        path.append(f"{'M' if i == 0 else 'L'}{x(p.at):.1f},{y(p.usd_per_hour):.1f}")
        path.append(f"L{x(following):.1f},{y(p.usd_per_hour):.1f}")
    line = " ".join(path)
    area = f"{line} L{x(end):.1f},{y(0):.1f} L{x(start):.1f},{y(0):.1f} Z"
    label = (f"Burn rate over {len(points)} meter readings from {start:%H:%M} to {end:%H:%M} UTC: now "
             f"{_money(points[-1].usd_per_hour)} per hour, peak {_money(peak)} per hour")
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{y(0):.1f}" x2="{WIDTH - RIGHT}" y2="{y(0):.1f}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{y(peak):.1f}" x2="{WIDTH - RIGHT}" y2="{y(peak):.1f}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{y(peak) + 4:.1f}" text-anchor="end">{escape(_money(peak))}/h</text>',
        f'<text class="tick" x="{LEFT - 6}" y="{y(0) + 4:.1f}" text-anchor="end">$0</text>',
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 8}">{start:%H:%M}</text>',
        f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">{end:%H:%M} UTC</text>',
        f'<path class="area" d="{area}"/>',
        f'<path class="line" d="{line}"/>',
        "</svg>",
    ]
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the value as people read it ("$1.23", "4 sessions")


BARS_WIDTH, BAR_H, BAR_GAP, LABEL_W = 420, 26, 8, 150  # narrower than the burn chart: legible on a phone too


def bar_chart(bars: Sequence[Bar], *, title: str, empty: str) -> Markup:
    """Horizontal bars, one per item in the order given, each with its label and its value written beside it
    (``empty``: the sentence shown instead when there is nothing to draw)."""
    if not bars:
        return Markup(f'<p class="muted">{escape(empty)}</p>')  # noqa: S704 - escaped
    peak = max((b.value for b in bars), default=0.0) or 1.0
    height = len(bars) * (BAR_H + BAR_GAP) + BAR_GAP
    room = BARS_WIDTH - LABEL_W - 90
    summary = f"{title}: " + "; ".join(f"{b.label} {b.text}" for b in bars)
    parts = [f'<svg class="chart bars" viewBox="0 0 {BARS_WIDTH} {height}" role="img" aria-label="{escape(summary)}" '
             f'xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(summary)}</title>"]
    for i, b in enumerate(bars):
        top = BAR_GAP + i * (BAR_H + BAR_GAP)
        width = max(b.value, 0.0) / peak * room
        label = b.label if len(b.label) <= 18 else b.label[:17] + "…"
        middle = top + BAR_H / 2 + 5
        parts += [
            f'<text class="tick" x="{LABEL_W - 8}" y="{middle:.1f}" text-anchor="end">{escape(label)}</text>',
            f'<rect class="bar" x="{LABEL_W}" y="{top}" width="{width:.1f}" height="{BAR_H}" rx="3"/>',
            f'<text class="tick" x="{LABEL_W + width + 6:.1f}" y="{middle:.1f}">{escape(b.text)}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above
