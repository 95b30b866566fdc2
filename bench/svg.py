"""Small dependency-free SVG line charts (log-scaled N on x) for the report (the SVG
elements themselves: `monitoring.svg`, shared with the GameDay report)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from monitoring.svg import polyline, svg_open

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class HLine:
    label: str
    y: float
    color: str = "#777777"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def line_chart(title: str, x_label: str, y_label: str, series: list[Series],
               x_ticks: list[float], log_y: bool = False, y_max: float | None = None,
               hlines: list[HLine] | None = None) -> str:
    """An SVG document: one polyline per series, x on a log scale at the given ticks."""
    hlines = hlines or []
    xs = [x for x in x_ticks if x > 0] or [1.0]
    x_lo, x_hi = math.log10(min(xs)), math.log10(max(xs))
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    ys = [y for s in series for _, y in s.points if y is not None] + [h.y for h in hlines]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    if log_y:
        positive = [y for y in ys if y > 0] or [1.0]
        y_lo = 10 ** math.floor(math.log10(min(positive)))
        y_hi = 10 ** math.ceil(math.log10(max(positive)))
        if y_hi <= y_lo:
            y_hi = y_lo * 10
        y_ticks = [10 ** e for e in range(round(math.log10(y_lo)), round(math.log10(y_hi)) + 1)]

        def ty(y: float) -> float:
            y = max(y, y_lo)
            frac = (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
            return TOP + plot_h * (1 - frac)
    else:
        top = y_max if y_max is not None else _nice_max(max(ys, default=1.0))
        y_ticks = [top * i / 5 for i in range(6)]

        def ty(y: float) -> float:
            return TOP + plot_h * (1 - min(max(y, 0.0), top) / top)

    def tx(x: float) -> float:
        return LEFT + plot_w * (math.log10(x) - x_lo) / (x_hi - x_lo)

    out = [svg_open(WIDTH, HEIGHT, font_size=12),
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{escape(title)}</text>']
    for y in y_ticks:
        py = ty(y)
        out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + plot_w}" y2="{py:.1f}" '
                   'stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
    for x in xs:
        px = tx(x)
        out.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + plot_h}" '
                   'stroke="#f0f0f0"/>')
        out.append(f'<text x="{px:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                   f'{_fmt(x)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="#333"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + plot_h / 2})">{escape(y_label)}</text>')
    for h in hlines:
        py = ty(h.y)
        out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + plot_w}" y2="{py:.1f}" '
                   f'stroke="{h.color}" stroke-dasharray="2,4" stroke-width="1.5"/>')
    legend_y = TOP + 8
    for s in series:
        pts = [(x, y) for x, y in s.points if y is not None and x > 0]
        dash = ' stroke-dasharray="7,4"' if s.dashed else ""
        if pts:
            out.append(polyline([(tx(x), ty(y)) for x, y in pts], s.color, 2,
                                "7,4" if s.dashed else None))
            out.extend(f'<circle cx="{tx(x):.1f}" cy="{ty(y):.1f}" r="3" fill="{s.color}"/>'
                       for x, y in pts)
        lx = LEFT + plot_w + 12
        out.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 24}" y2="{legend_y}" '
                   f'stroke="{s.color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{legend_y + 4}">{escape(s.label)}</text>')
        legend_y += 18
    for h in hlines:
        lx = LEFT + plot_w + 12
        out.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 24}" y2="{legend_y}" '
                   f'stroke="{h.color}" stroke-dasharray="2,4" stroke-width="1.5"/>')
        out.append(f'<text x="{lx + 30}" y="{legend_y + 4}">{escape(h.label)}</text>')
        legend_y += 18
    out.append("</svg>")
    return "\n".join(out) + "\n"
