"""Read the data points of a published matplotlib figure from its SVG file.

Some sources publish their measurements only as figures. When the figure is a matplotlib SVG, its
points are written as exact path coordinates, and each axis's ticks carry their labels (as XML
comments), so the data can be recovered without eyeballing: a linear map from the tick
positions to the tick labels turns every vertex of a plotted line back into data units.

    python tools/svg_figure_data.py llama-energy-per-token-light.svg

prints, for each panel, its texts (title, axis labels, legend) and every clipped line (a data
series; its colour says which legend entry it is) as (x, y) pairs. Only linear axes are read; a
log-scaled axis raises an error. This is how the round-4 ML.ENERGY rows of
``data/gpu_published.json`` were read (the source entry names the files and their commit).
"""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

import numpy as np

_SVG = "{http://www.w3.org/2000/svg}"
_XLINK = "{http://www.w3.org/1999/xlink}href"
_NUMBER = re.compile(r"^[−\-]?\d+(\.\d+)?$")


def _comments(el) -> list[str]:
    return [c.text.strip() for c in el.iter() if c.tag is ET.Comment and c.text]


def _ticks(axes, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions in SVG units, labels) of the ``kind`` ('x' or 'y') ticks of one axes group."""
    pos, lab = [], []
    for g in axes.iter(f"{_SVG}g"):
        if not re.fullmatch(f"{kind}tick_\\d+", g.get("id", "")):
            continue
        texts = [t for t in _comments(g) if _NUMBER.match(t)]
        uses = [u for u in g.iter(f"{_SVG}use") if u.get("x") is not None]
        if not texts or not uses:
            continue
        if "$" in "".join(_comments(g)):
            raise ValueError(f"{kind} axis: tick label {_comments(g)[0]!r} is mathtext (a log "
                             "axis?); only linear axes with plain number labels can be read")
        pos.append(float(uses[0].get("x" if kind == "x" else "y")))
        lab.append(float(texts[0].replace("−", "-")))
    if len(pos) < 2:
        raise ValueError(f"{kind} axis: found {len(pos)} labelled ticks; need at least 2 to map "
                         "SVG coordinates to data")
    pos, lab = np.array(pos), np.array(lab)
    fit = np.polyfit(pos, lab, 1)
    if np.max(np.abs(np.polyval(fit, pos) - lab)) > 1e-4 * np.ptp(lab):
        raise ValueError(f"{kind} axis: tick labels are not linear in their positions (a log "
                         "axis?); only linear axes can be read")
    return pos, lab


def _vertices(d: str) -> list[tuple[float, float]]:
    if re.search(r"[CQAHVSTchvsqta]", d):
        raise ValueError("path has curves or relative commands; only M/L polylines are data lines")
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]\s*([-\d.e]+)\s+([-\d.e]+)", d)]


def read(path) -> list[dict]:
    """One dict per panel: 'texts' (non-numeric labels, in file order) and 'series', a list of
    {'color', 'points'} with points in data units, for every clipped polyline drawn directly in
    the panel (grid lines belong to tick groups and legend samples are not clipped, so neither is
    included)."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.parse(path, parser=parser).getroot()
    panels = []
    for axes in root.iter(f"{_SVG}g"):
        if not re.fullmatch(r"axes_\d+", axes.get("id", "")):
            continue
        xp, xl = _ticks(axes, "x")
        yp, yl = _ticks(axes, "y")
        fx, fy = np.polyfit(xp, xl, 1), np.polyfit(yp, yl, 1)
        series = []
        for g in axes.findall(f"{_SVG}g"):
            if not re.fullmatch(r"line2d_\d+", g.get("id", "")):
                continue
            for p in g.findall(f"{_SVG}path"):
                if p.get("clip-path") is None:
                    continue
                style = p.get("style", "")
                m = re.search(r"stroke:\s*(#[0-9a-fA-F]{6})", style)
                pts = _vertices(p.get("d", ""))
                series.append({"color": m.group(1) if m else None,
                               "points": [(float(np.polyval(fx, x)), float(np.polyval(fy, y)))
                                          for x, y in pts]})
        panels.append({"texts": [t for t in _comments(axes) if not _NUMBER.match(t)],
                       "series": series})
    if not panels:
        raise ValueError(f"{path}: no matplotlib axes groups (id 'axes_N') found; is this a "
                         "matplotlib SVG?")
    return panels


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    for i, panel in enumerate(read(argv[0]), 1):
        print(f"panel {i}: " + " | ".join(panel["texts"]))
        for s in panel["series"]:
            pts = ", ".join(f"({x:.4g}, {y:.4g})" for x, y in s["points"])
            print(f"  {s['color']}: {pts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
