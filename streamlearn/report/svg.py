"""Draws small line and bar charts as inline SVG text, for reports that open without a network.

No plotting library: a chart is a handful of polylines, rectangles and tick labels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
"""Series colours, in order (the Tableau 10 start)."""

_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 30, 40


@dataclass
class Series:
    """One line (or one stack of bars) of a chart; a ``None`` or NaN value leaves a gap."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str | None = None
    dashed: bool = False
    points: bool = False  # markers only, no line


@dataclass
class Mark:
    """A vertical line at ``x`` (a drift, a model replacement) or, in ``hlines``, a level.

    ``label`` names the kind in the legend; ``detail`` shows when the pointer rests on it.
    """

    x: float
    label: str
    color: str = "#d62728"
    detail: str = ""


@dataclass
class Chart:
    """What to draw; :func:`render` turns it into SVG."""

    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    hlines: list[Mark] = field(default_factory=list)  # horizontal: a target (x is the y value)
    log_x: bool = False
    log_y: bool = False
    y_min: float | None = None
    y_max: float | None = None
    x_min: float | None = None  # fixed x bounds: charts of one run share their time axis
    x_max: float | None = None
    bars: bool = False  # stacked bars, one stack per x, instead of lines
    width: int = 880
    height: int = 260


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low``..``high``, about ``count`` of them.

    >>> nice_ticks(0, 97)
    [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    >>> nice_ticks(0.5, 0.52, 3)
    [0.5, 0.51, 0.52]
    """
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.floor(low / step + 1e-9) * step
    ticks, value = [], first
    while value < high + step * 0.999:
        ticks.append(float(round(value, 10)))
        value += step
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten covering ``low``..``high`` (both > 0).

    >>> log_ticks(3, 4000)
    [1.0, 10.0, 100.0, 1000.0, 10000.0]
    """
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**e for e in range(first, max(last, first + 1) + 1)]


def fmt(value: float) -> str:
    """A tick label: short, without needless decimals.

    >>> fmt(2000.0), fmt(0.25), fmt(15000), fmt(1e-3), fmt(2_500_000)
    ('2k', '0.25', '15k', '0.001', '2.5M')
    """
    if value == 0:
        return "0"
    magnitude = abs(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.4g}{suffix}"
    return f"{value:.4g}"


class _Scale:
    """Maps data values to pixels along one axis, linear or logarithmic."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool) -> None:
        self.log = log
        self.low, self.high = (math.log10(low), math.log10(high)) if log else (low, high)
        if self.high <= self.low:
            self.high = self.low + 1.0
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.start + (v - self.low) / (self.high - self.low) * (self.end - self.start)


def _finite(values: Sequence[float | None], log: bool) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v) and (not log or v > 0)]


def _ticks(values: list[float], log: bool, low: float | None, high: float | None) -> list[float]:
    lo = min(values) if low is None else low
    hi = max(values) if high is None else high
    if log:
        return log_ticks(lo, hi)
    ticks = nice_ticks(lo, hi)
    if low is not None:  # a fixed bound is kept exact
        ticks = [t for t in ticks if t >= lo - 1e-9] or [lo, hi]
    if high is not None:
        ticks = [t for t in ticks if t <= hi + 1e-9] or [lo, hi]
    elif len(ticks) > 1 and ticks[-1] <= hi + 1e-9:  # room above the highest value
        ticks.append(ticks[-1] + ticks[-1] - ticks[-2])
    return ticks


def _low(ticks: list[float], bound: float | None) -> float:
    return ticks[0] if bound is None else min(bound, ticks[0])


def _high(ticks: list[float], bound: float | None) -> float:
    return ticks[-1] if bound is None else max(bound, ticks[-1])


def _y_values(chart: Chart) -> list[float]:
    if chart.bars:  # stacks: the sum of every series at each x
        totals: dict[float, float] = {}
        for s in chart.series:
            for x, y in zip(s.xs, s.ys):
                if y is not None and math.isfinite(y):
                    totals[x] = totals.get(x, 0.0) + y
        return [0.0, *totals.values()]
    values = [v for s in chart.series for v in _finite(s.ys, chart.log_y)]
    return values + [h.x for h in chart.hlines]


def render(chart: Chart) -> str:
    """The chart as one ``<svg>`` element, with its title, axes, legend and marks.

    >>> p99 = Series("p99", [0, 1, 2, 3, 4], [5, 6, None, 7, 8])  # a gap: two lines
    >>> svg = render(Chart("Latency", "s", "ms", [p99]))
    >>> svg.startswith("<svg") and "p99" in svg and svg.count("<polyline") == 2
    True
    """
    xs = [v for s in chart.series for v in _finite(s.xs, chart.log_x)] + [m.x for m in chart.marks]
    ys = _y_values(chart)
    if not xs:
        xs = [0.0, 1.0]
    if not ys:
        ys = [0.0, 1.0]
    x_ticks = _ticks(xs, chart.log_x, chart.x_min, chart.x_max)
    y_ticks = _ticks(ys, chart.log_y, chart.y_min, chart.y_max)
    w, h = chart.width, chart.height
    sx = _Scale(
        _low(x_ticks, chart.x_min), _high(x_ticks, chart.x_max), _LEFT, w - _RIGHT, chart.log_x
    )
    sy = _Scale(
        _low(y_ticks, chart.y_min), _high(y_ticks, chart.y_max), h - _BOTTOM, _TOP, chart.log_y
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        f'height="{h}" role="img" aria-label="{escape(chart.title)}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{escape(chart.title)}</text>',
    ]
    parts += _axes(chart, x_ticks, y_ticks, sx, sy)
    parts += _bars(chart, sx, sy) if chart.bars else _lines(chart, sx, sy)
    parts += _marks(chart, sx, sy)
    parts += _legend(chart)
    parts.append("</svg>")
    return "\n".join(parts)


def _axes(
    chart: Chart, x_ticks: list[float], y_ticks: list[float], sx: _Scale, sy: _Scale
) -> list[str]:
    w, h = chart.width, chart.height
    out = [
        f'<rect x="{_LEFT}" y="{_TOP}" width="{w - _LEFT - _RIGHT}" '
        f'height="{h - _TOP - _BOTTOM}" fill="#fafafa" stroke="#bbb"/>'
    ]
    for t in y_ticks:
        y = sy(t)
        out.append(
            f'<line x1="{_LEFT}" x2="{w - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
        )
        out.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for t in x_ticks:
        x = sx(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{h - _BOTTOM}" stroke="#eee"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{h - _BOTTOM + 15}" text-anchor="middle">{fmt(t)}</text>')
    out.append(
        f'<text x="{(_LEFT + w - _RIGHT) / 2:.0f}" y="{h - 6}" text-anchor="middle" '
        f'fill="#555">{escape(chart.x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{(_TOP + h - _BOTTOM) / 2:.0f}" text-anchor="middle" '
        f'fill="#555" transform="rotate(-90 14 {(_TOP + h - _BOTTOM) / 2:.0f})">'
        f"{escape(chart.y_label)}</text>"
    )
    return out


def _color(chart: Chart, index: int) -> str:
    series = chart.series[index]
    return series.color or PALETTE[index % len(PALETTE)]


def _lines(chart: Chart, sx: _Scale, sy: _Scale) -> list[str]:
    out = []
    for i, s in enumerate(chart.series):
        color, runs, run = _color(chart, i), [], []
        for x, y in zip(s.xs, s.ys):
            ok = y is not None and math.isfinite(y) and (not chart.log_y or y > 0)
            if ok and (not chart.log_x or x > 0):
                run.append(f"{sx(x):.1f},{sy(float(y)):.1f}")  # type: ignore[arg-type]
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for r in runs:
            if s.points or len(r) == 1:
                out += [
                    f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" '
                    f'fill="{color}"/>'
                    for p in r
                ]
            else:
                out.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} '
                    f'points="{" ".join(r)}"/>'
                )
    return out


def _bars(chart: Chart, sx: _Scale, sy: _Scale) -> list[str]:
    # Each stack spans its x to the next x (a bin); the last is as wide as the narrowest.
    xs = sorted({x for s in chart.series for x in s.xs})
    gap = min((b - a for a, b in itertools.pairwise(xs)), default=1.0)
    width = max(1.0, abs(sx(xs[0] + gap) - sx(xs[0])) * 0.9) if xs else 1.0
    base: dict[float, float] = {}
    out = []
    for i, s in enumerate(chart.series):
        color = _color(chart, i)
        for x, y in zip(s.xs, s.ys):
            if y is None or not math.isfinite(y) or y <= 0:
                continue
            below = base.get(x, 0.0)
            top, bottom = sy(below + y), sy(below)
            base[x] = below + y
            out.append(
                f'<rect x="{sx(x):.1f}" y="{top:.1f}" width="{width:.1f}" '
                f'height="{max(bottom - top, 0.5):.1f}" fill="{color}"/>'
            )
    return out


def _marks(chart: Chart, sx: _Scale, sy: _Scale) -> list[str]:
    out = []
    top, bottom = _TOP, chart.height - _BOTTOM
    for m in chart.marks:
        x = sx(m.x)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{m.color}" '
            f'stroke-width="1.2" stroke-dasharray="3 3">'
            f"<title>{escape(m.detail or m.label)}</title></line>"
        )
    for hline in chart.hlines:
        y = sy(hline.x)
        out.append(
            f'<line x1="{_LEFT}" x2="{chart.width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{hline.color}" stroke-width="1.4" stroke-dasharray="8 4"/>'
        )
        out.append(
            f'<text x="{chart.width - _RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" '
            f'fill="{hline.color}">{escape(hline.label)}</text>'
        )
    return out


def _legend(chart: Chart) -> list[str]:
    entries = [(s.name, _color(chart, i)) for i, s in enumerate(chart.series)]
    for m in chart.marks:  # one legend entry per kind of mark
        if (m.label, m.color) not in entries:
            entries.append((m.label, m.color))
    out, x = [], chart.width - _RIGHT
    for name, color in reversed(entries):
        x -= 7 * len(name) + 34
        out.append(f'<rect x="{x}" y="8" width="12" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="17">{escape(name)}</text>')
    return out
