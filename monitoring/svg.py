"""The SVG primitives of the reports' charts: no plotting dependency, no files.

The benchmark's report (`bench/svg.py`: lines over a log-scaled N) and the GameDay
report (`gameday/report/svg.py`: timelines, concurrency bars) draw different charts
from the same few elements; those elements are written here once. In monitoring/
because both packages may import it and the charts show what was measured; infra/
stays free of presentation.
"""

from __future__ import annotations

from collections.abc import Iterable

SVG_NS = "http://www.w3.org/2000/svg"


def svg_open(width: float, height: float, font_size: float | None = None) -> str:
    """The opening <svg> tag of a standalone chart `width` x `height` pixels."""
    size = f' font-size="{font_size:g}"' if font_size is not None else ""
    return (f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif"{size}>')


def polyline(points: Iterable[tuple[float, float]], colour: str, width: float,
             dash: str | None = None) -> str:
    """An unfilled line through pixel coordinates; '' when there are none."""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    if not coords:
        return ""
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<polyline points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="{width:g}"{dashed}/>')
