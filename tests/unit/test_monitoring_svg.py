"""The SVG elements both reports' charts are drawn from (bench/svg.py, gameday/report/svg.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from monitoring.svg import SVG_NS, polyline, svg_open


def test_the_opening_tag_with_and_without_a_font_size():
    assert svg_open(860, 210) == (
        '<svg xmlns="http://www.w3.org/2000/svg" width="860" height="210" '
        'viewBox="0 0 860 210" font-family="sans-serif">')
    root = ET.fromstring(svg_open(720, 400, font_size=12) + "</svg>")
    assert root.tag == f"{{{SVG_NS}}}svg" and root.get("font-size") == "12"


def test_polylines_solid_dashed_and_empty():
    solid = ET.fromstring(polyline([(1, 2.25), (3.04, 4)], "#1f77b4", 1.6))
    assert solid.attrib == {"points": "1.0,2.2 3.0,4.0", "fill": "none", "stroke": "#1f77b4",
                            "stroke-width": "1.6"}
    dashed = ET.fromstring(polyline([(0, 0)], "#000", 2, "7,4"))
    assert dashed.get("stroke-width") == "2" and dashed.get("stroke-dasharray") == "7,4"
    assert polyline([], "#000", 2) == ""
