"""Static sliders (aimoe_lib.viz.static): frames in grid order, the default frame, the HTML the
static book shows, the byte budget and bad input; chapters 1 and 2's sliders against their
figures."""

import io
import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from aimoe_lib.hardware import AreaModel
from aimoe_lib.viz import moe as vmoe
from aimoe_lib.viz import tile as vt
from aimoe_lib.viz.static import ALT_KEY, SCRIPT, alt_text, png_bytes, png_with_alt, static_slider
from aimoe_lib.viz.style import figure, finish


def _draw(a, b, scale=1):
    """A 3 x 2 inch figure whose title names its grid point."""
    fig = figure(3.0, 2.0)
    ax = fig.subplots()
    ax.plot([0, 1], [a, b * scale])
    ax.set(xlabel="x", ylabel="y")
    return finish(fig, f"a={a} b={b}", f"sum {a + b}")


@pytest.fixture(scope="module")
def grid():
    return static_slider(_draw, {"a": (1, 2, 3), "b": (10, 20)}, fixed={"scale": 2},
                         default={"a": 2, "b": 20}, labels={"a": "alpha"},
                         formats={"b": "{:.1f}"})


def test_frames_follow_c_order_and_carry_their_caption(grid):
    assert grid.shape == (3, 2)
    assert len(grid.frames) == 6 == len(grid.alts)
    # C order: the last parameter varies fastest, so (a, b) = (2, 10) is frame 1 * 2 + 0 = 2.
    assert grid.index(a=2, b=10) == 2
    assert grid.index(a=3, b=20) == 5
    assert grid.alts[2] == "a=2 b=10. sum 12"
    assert grid.alts[5] == "a=3 b=20. sum 23"


def test_frames_are_pngs_of_the_figure_size(grid):
    for png in grid.frames:
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG"
        assert img.size == (300, 200)  # 3 x 2 inches at the house style's 100 dpi
    assert grid.nbytes == sum(len(f) for f in grid.frames)


def test_a_frame_is_the_figure_drawn_at_that_point(grid):
    assert grid.frame(a=3, b=10) == png_bytes(_draw(3, 10, scale=2))
    assert grid.frame(a=3, b=10) != grid.frame(a=1, b=10)


def test_default_frame_is_what_a_notebook_without_scripts_shows(grid):
    assert grid.default == (1, 1)
    assert grid._repr_png_() == grid.frame(a=2, b=20)


def test_html_has_one_disabled_range_per_parameter_and_every_frame(grid):
    page = grid._repr_html_()
    inputs = re.findall(r'<input class="aimoe-slider-input" type="range" min="0" max="(\d+)" '
                        r'step="1" value="(\d+)" disabled', page)
    assert inputs == [("2", "1"), ("1", "1")]
    assert "alpha <input" in page and "b <input" in page
    payload = re.search(r'<script type="application/json" class="aimoe-slider-data">(.*?)</script>',
                        page).group(1)
    data = json.loads(payload)
    assert data["shape"] == [3, 2]
    assert data["values"] == [["1", "2", "3"], ["10.0", "20.0"]]
    assert len(data["frames"]) == 6
    assert page.count(SCRIPT) == 1
    assert 'alt="a=2 b=20. sum 22"' in page
    assert "http://" not in page and "https://" not in page  # nothing loads from the network


def test_budget_is_enforced_with_the_field_named():
    with pytest.raises(ValueError, match="max_bytes=100"):
        static_slider(_draw, {"a": (1, 2), "b": (1,)}, max_bytes=100)


@pytest.mark.parametrize("kwargs, field", [
    ({"grid": {}}, "grid"),
    ({"grid": {"a": ()}}, r"grid\['a'\]"),
    ({"grid": {"a": (1, 1), "b": (1,)}}, r"grid\['a'\]"),
    ({"grid": {"a": (1, 2), "b": (1,)}, "default": {"a": 5}}, r"default\['a'\]=5"),
    ({"grid": {"a": (1, 2), "b": (1,)}, "labels": {"c": "x"}}, "labels"),
    ({"grid": {"a": (1, 2), "b": (1,)}, "fixed": {"a": 1}}, "fixed"),
])
def test_bad_input_names_the_field(kwargs, field):
    grid = kwargs.pop("grid")
    with pytest.raises(ValueError, match=field):
        static_slider(_draw, grid, **kwargs)


def test_off_grid_point_is_refused(grid):
    with pytest.raises(ValueError, match="a=7 is not on the grid"):
        grid.frame(a=7, b=10)
    with pytest.raises(ValueError, match="missing"):
        grid.frame(a=1)


def test_static_module_does_not_import_torch():
    code = "import sys, aimoe_lib.viz.static; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_chapter_1_slider_starts_at_the_chapter_figure():
    s = vt.tile_capacity_area_slider(overheads=(0.0, 0.001), shapes=(256, 512))
    assert s.shape == (2, 2)
    assert s._repr_png_() == png_bytes(vt.tile_capacity_area())
    no_overhead = vt.tile_capacity_area(tier_rows=256, tier_cols=256,
                                        area=AreaModel(tier_overhead_fraction=0.0))
    assert s.frame(tier_overhead_fraction=0.0, tier_shape=256) == png_bytes(no_overhead)


def test_chapter_2_slider_starts_at_the_chapter_figure():
    s = vmoe.moe_scaling_slider(top_ks=(1, 2), widths=(4096,))
    assert s._repr_png_() == png_bytes(vmoe.moe_scaling())
    assert s.frame(top_k=1, d_expert=4096) == png_bytes(vmoe.moe_scaling(top_k=1))


def test_png_with_alt_carries_the_caption():
    fig = _draw(1, 2)
    img = Image.open(io.BytesIO(png_with_alt(fig)))
    assert img.text[ALT_KEY] == "a=1 b=2. sum 3" == alt_text(fig)


def test_ipython_shows_figures_with_alt_text_and_widgets_with_a_note():
    from IPython.core.interactiveshell import InteractiveShell

    from aimoe_lib.widgets import controls
    from aimoe_lib.widgets.tile import tile_panel

    shell = InteractiveShell.instance()
    controls._register_static_note()  # what importing controls does inside IPython
    data, _ = shell.display_formatter.format(_draw(1, 2))
    assert Image.open(io.BytesIO(data["image/png"])).text[ALT_KEY] == "a=1 b=2. sum 3"
    data, _ = shell.display_formatter.format(tile_panel())
    assert "application/vnd.jupyter.widget-view+json" in data  # Jupyter still gets the live panel
    assert controls.STATIC_NOTE in data["text/html"]  # the static book gets the note
