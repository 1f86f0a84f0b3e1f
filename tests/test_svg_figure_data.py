"""tools/svg_figure_data.py reads the points of a matplotlib SVG figure back in data units.

The check draws figures with known data, saves them as SVG and reads them back: the points must
come back to the precision matplotlib writes coordinates with (6 decimals of a point).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("svg_figure_data",
                                                  ROOT / "tools" / "svg_figure_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_points_come_back_in_data_units(tmp_path):
    data = {"#e74c3c": ([64, 128, 192, 256], [366.45, 279.41, 299.82, 244.99]),
            "#3498db": ([16, 32, 64, 768], [513.28, 559.71, 610.35, 685.14])}
    fig, (a1, a2) = plt.subplots(1, 2)
    for color, (x, y) in data.items():
        a1.plot(x, y, "o-", color=color, label=color)
    a1.axhline(700, ls="--", color="#808080")
    a1.grid(True)
    a1.legend()
    a1.set_title("panel one")
    a2.plot([1, 2, 3], [0.5, -0.25, 1.75], color="#000000")
    path = tmp_path / "fig.svg"
    fig.savefig(path)
    plt.close(fig)

    p1, p2 = _tool().read(path)
    assert "panel one" in p1["texts"]
    got = {s["color"]: s["points"] for s in p1["series"]}
    for color, (x, y) in data.items():
        for (gx, gy), ex, ey in zip(got[color], x, y):
            assert gx == pytest.approx(ex, abs=1e-3) and gy == pytest.approx(ey, abs=1e-3)
    assert [pt[1] for pt in got["#808080"]] == pytest.approx([700, 700], abs=1e-3)
    # grid lines and legend samples are not series: two data lines and the dashed line only
    assert len(p1["series"]) == 3
    (s,) = p2["series"]
    assert [pt[1] for pt in s["points"]] == pytest.approx([0.5, -0.25, 1.75], abs=1e-5)


def test_log_axis_is_refused(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 10, 100])
    ax.set_yscale("log")
    path = tmp_path / "log.svg"
    fig.savefig(path)
    plt.close(fig)
    with pytest.raises(ValueError, match="y axis"):
        _tool().read(path)


def test_not_a_matplotlib_svg_is_refused(tmp_path):
    path = tmp_path / "plain.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>')
    with pytest.raises(ValueError, match="axes_N"):
        _tool().read(path)
