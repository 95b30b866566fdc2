"""Hand-written SVG charts for the HTML report: no plotting dependency, no files.

A timeline chart per scenario (success rate and p99 latency per second, the fault
window shaded, the timeline's events as labelled markers) and a concurrency chart
(success rate and p99 per number of concurrent users). The SVG elements
themselves are `monitoring.svg`, shared with the benchmark's report.
"""

from __future__ import annotations

from html import escape
from typing import Any

from monitoring.svg import polyline, svg_open

WIDTH, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T = 860, 150, 56, 20, 18
EVENT_COLOURS = {
    "fault_injected": "#d62728", "fault_removed": "#ff7f0e", "sli_breach": "#e377c2",
    "alert_pending": "#bcbd22", "alert_firing": "#9467bd", "runbook_step": "#7f7f7f",
    "steady_state_regained": "#2ca02c", "alert_resolved": "#17becf",
    "stop_condition": "#000000",
}


def _x(t: float, t_max: float) -> float:
    return MARGIN_L + (WIDTH - MARGIN_L - MARGIN_R) * (t / t_max if t_max else 0)


def _line(points: list[tuple[float, float]], colour: str) -> str:
    # One point is not a line: the timeline marks a lone second with a dot instead.
    return polyline(points, colour, 1.6) if len(points) >= 2 else ""


def _axis(y0: float, height: float, label: str, ticks: list[tuple[float, str]],
          t_max: float) -> list[str]:
    out = [f'<rect x="{MARGIN_L}" y="{y0}" width="{WIDTH - MARGIN_L - MARGIN_R}" '
           f'height="{height}" fill="#fafafa" stroke="#ccc"/>',
           f'<text x="6" y="{y0 + 12}" font-size="11" fill="#333">{escape(label)}</text>']
    for frac, text in ticks:
        y = y0 + height - frac * height
        out.append(f'<line x1="{MARGIN_L}" x2="{WIDTH - MARGIN_R}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{MARGIN_L - 4}" y="{y + 4:.1f}" font-size="10" '
                   f'text-anchor="end" fill="#666">{escape(text)}</text>')
    step = _nice_step(t_max)
    t = 0.0
    while t <= t_max + 1e-9 and step > 0:
        x = _x(t, t_max)
        out.append(f'<text x="{x:.1f}" y="{y0 + height + 12}" font-size="10" '
                   f'text-anchor="middle" fill="#666">{t:g}s</text>')
        t += step
    return out


def _nice_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 12:
            return float(step)
    return 1200.0


def timeline_chart(series: list[dict[str, Any]], events: list[dict[str, Any]],
                   bounds: dict[str, list[float]] | None = None) -> str:
    if not series:
        return '<p class="muted">no load samples</p>'
    t_max = max(1.0, float(series[-1]["t"]) + 1)
    top, bottom = MARGIN_T, MARGIN_T + PANEL_H + 30
    height = bottom + PANEL_H + 40
    parts = [svg_open(WIDTH, height)]
    p99s = [row["p99_ms"] for row in series if row.get("p99_ms") is not None]
    p_top = _nice_ceiling(max(p99s) if p99s else 1.0)
    parts += _axis(top, PANEL_H, "success", [(0, "0%"), (0.5, "50%"), (1, "100%")], t_max)
    parts += _axis(bottom, PANEL_H, "p99 ms",
                   [(0, "0"), (0.5, f"{p_top / 2:g}"), (1, f"{p_top:g}")], t_max)
    # The fault window ("during" phase), over the panels' backgrounds, under the lines.
    if bounds and "during" in bounds:
        a, b = bounds["during"]
        if b > a:
            for y0 in (top, bottom):
                parts.append(f'<rect x="{_x(a, t_max):.1f}" y="{y0}" '
                             f'width="{max(1.0, _x(b, t_max) - _x(a, t_max)):.1f}" '
                             f'height="{PANEL_H}" fill="#fde2e2" opacity="0.7"/>')
    segments: list[list[tuple[float, float]]] = [[]]
    for row in series:
        if not row["requests"]:
            segments.append([])  # no request started in this second: a gap, not a line
            continue
        rate = row["ok"] / row["requests"]
        segments[-1].append((_x(row["t"] + 0.5, t_max), top + PANEL_H - rate * PANEL_H))
    parts += [_line(seg, "#1f77b4") for seg in segments if len(seg) > 1]
    parts += [f'<circle cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="1.5" fill="#1f77b4"/>'
              for seg in segments if len(seg) == 1]
    points = [(_x(row["t"] + 0.5, t_max), bottom + PANEL_H - (row["p99_ms"] / p_top) * PANEL_H)
              for row in series if row.get("p99_ms") is not None]
    parts.append(_line(points, "#ff7f0e"))
    parts += _event_markers(events, t_max, top, bottom + PANEL_H)
    parts.append("</svg>")
    return "".join(parts)


def _event_markers(events: list[dict[str, Any]], t_max: float, y_top: float,
                   y_bottom: float) -> list[str]:
    """A dashed line per event (hover for details); labels only for milestones (the
    first of each kind, per alert), in staggered rows so that they stay readable."""
    parts = []
    labelled: set[tuple[str, str]] = set()
    row = 0
    for event in events:
        kind = event["kind"]
        if kind not in EVENT_COLOURS:
            continue
        x = _x(float(event["t"]), t_max)
        colour = EVENT_COLOURS[kind]
        name = kind.replace("_", " ")
        if event.get("alert"):
            name += f" {event['alert']}"
        if event.get("step"):
            name += f" {event['step']}"
        detail = f"{name} ({event.get('source', '')}) at {float(event['t']):.1f}s"
        key = (kind, str(event.get("alert", "")))
        milestone = kind != "runbook_step" and key not in labelled
        width = "1.2" if milestone else "0.6"
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_top}" y2="{y_bottom}" '
                     f'stroke="{colour}" stroke-width="{width}" stroke-dasharray="3,2">'
                     f"<title>{escape(detail)}</title></line>")
        if milestone:
            labelled.add(key)
            y = y_top + 10 + (row % 9) * 11
            anchor = "end" if x > WIDTH * 0.75 else "start"
            dx = -3 if anchor == "end" else 3
            parts.append(f'<text x="{x + dx:.1f}" y="{y}" font-size="9" fill="{colour}" '
                         f'text-anchor="{anchor}" style="paint-order:stroke" stroke="#fff" '
                         f'stroke-width="3">{escape(name[:48])}</text>')
            row += 1
    return parts


def _nice_ceiling(value: float) -> float:
    for candidate in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 60000):
        if value <= candidate:
            return float(candidate)
    return float(value)


def concurrency_chart(rows: list[dict[str, Any]]) -> str:
    """Bars: success rate per users level; dots: p99 latency."""
    if not rows:
        return '<p class="muted">no samples</p>'
    height = PANEL_H + 60
    n = len(rows)
    inner = WIDTH - MARGIN_L - MARGIN_R
    bar_w = max(8.0, inner / max(n, 1) * 0.5)
    p_top = _nice_ceiling(max((r["p99_ms"] or 0) for r in rows) or 1)
    parts = [svg_open(WIDTH, height),
             f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{inner}" height="{PANEL_H}" '
             'fill="#fafafa" stroke="#ccc"/>',
             f'<text x="6" y="{MARGIN_T + 12}" font-size="11">success</text>',
             f'<text x="{WIDTH - 6}" y="{MARGIN_T + 12}" font-size="11" text-anchor="end" '
             f'fill="#ff7f0e">p99 (max {p_top:g} ms)</text>']
    for i, row in enumerate(rows):
        cx = MARGIN_L + inner * (i + 0.5) / n
        rate = row["success_rate"] or 0.0
        h = rate * PANEL_H
        parts.append(f'<rect x="{cx - bar_w / 2:.1f}" y="{MARGIN_T + PANEL_H - h:.1f}" '
                     f'width="{bar_w:.1f}" height="{h:.1f}" fill="#1f77b4"><title>'
                     f'{row["users"]} users: {rate:.1%}</title></rect>')
        if row["p99_ms"] is not None:
            py = MARGIN_T + PANEL_H - (row["p99_ms"] / p_top) * PANEL_H
            parts.append(f'<circle cx="{cx:.1f}" cy="{py:.1f}" r="4" fill="#ff7f0e"><title>'
                         f'p99 {row["p99_ms"]:.0f} ms</title></circle>')
        parts.append(f'<text x="{cx:.1f}" y="{MARGIN_T + PANEL_H + 14}" font-size="10" '
                     f'text-anchor="middle">{row["users"]} users</text>')
    parts.append("</svg>")
    return "".join(parts)
