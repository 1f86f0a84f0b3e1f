"""Sliders that work in the static HTML book: a figure drawn in advance at every point of a small
grid of parameter values, shown as one image that range inputs switch between.

Why precomputed matplotlib frames: the book's figures are matplotlib figures in the house style
(:mod:`aimoe_lib.viz.style`), and their numbers come from the library's own models, not from
formulas a browser could re-evaluate. Drawing each grid point once with the same function the
notebook calls keeps the static figure identical to the live one; the page then needs no kernel,
no server, no network and no plotting library in the browser, only the few lines of JavaScript
below, which travel inside the output itself (:data:`SCRIPT`). The cost is bytes: every frame is
a PNG, so grids stay small (a handful of values per slider) and :func:`static_slider` refuses a
grid whose frames exceed ``max_bytes``.

In a notebook the same object shows the default frame (``image/png``) wherever HTML scripts do not
run; the live ipywidgets panels of :mod:`aimoe_lib.widgets` remain the way to explore beyond the
grid.

To add one to a chapter::

    from aimoe_lib.viz.static import static_slider
    static_slider(viz.some_figure, {"top_k": (1, 2, 4, 8), "d_expert": (1024, 4096)},
                  fixed={"d_model": 1024}, default={"top_k": 2, "d_expert": 4096},
                  labels={"top_k": "top-k", "d_expert": "expert width"})
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .style import DPI

__all__ = ["MAX_BYTES", "PALETTE_COLOURS", "SCRIPT", "ALT_KEY", "StaticSlider", "static_slider",
           "png_bytes", "alt_text", "png_with_alt", "register_alt_text"]

MAX_BYTES = 2_500_000
"""Default ceiling on one slider's frames, bytes of PNG (before base64, which adds a third): half
of the book's 5 MB budget for a chapter page, so a chapter can hold its other figures too."""

PALETTE_COLOURS = 256
"""Colours kept when a frame is stored as a palette PNG. The house style draws with a few flat
colours plus anti-aliasing, which 256 colours render without visible banding at a third of the
size of a full-colour PNG."""

SCRIPT = """<script>(function () {
  function wire(root) {
    if (root.dataset.wired) { return; }
    root.dataset.wired = "1";
    var data = JSON.parse(root.querySelector("script.aimoe-slider-data").textContent);
    var img = root.querySelector("img.aimoe-slider-frame");
    var inputs = root.querySelectorAll("input.aimoe-slider-input");
    function show() {
      var flat = 0;
      inputs.forEach(function (inp, d) {
        var i = parseInt(inp.value, 10);
        flat = flat * data.shape[d] + i;
        inp.nextElementSibling.textContent = data.values[d][i];
        inp.setAttribute("aria-valuetext", data.values[d][i]);
      });
      img.src = "data:image/png;base64," + data.frames[flat];
      img.alt = data.alts[flat];
    }
    inputs.forEach(function (inp) { inp.disabled = false; inp.addEventListener("input", show); });
  }
  document.querySelectorAll("div.aimoe-slider").forEach(wire);
})();</script>"""
"""The JavaScript of every static slider (no library): it enables the range inputs and, when one
moves, shows the frame of the selected grid point. Each output carries it, so the figure works
wherever the HTML goes; wiring a slider twice is a no-op.

:meta hide-value:
"""


def png_bytes(fig: Figure, dpi: float = DPI, palette: bool = True) -> bytes:
    """``fig`` as PNG bytes at ``dpi``; with ``palette`` quantised to
    :data:`~aimoe_lib.viz.static.PALETTE_COLOURS` colours (a smaller file for the flat colours of
    the house style)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if not palette:
        return buf.getvalue()
    from PIL import Image  # matplotlib's own dependency

    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=PALETTE_COLOURS, dither=Image.Dither.NONE)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


ALT_KEY = "Description"
"""PNG text key that carries a figure's alt text (a standard PNG keyword); the book's Sphinx
extension (tools/book_ext.py) copies it into the page's ``alt`` attribute."""


def alt_text(fig: Figure) -> str:
    """Alt text from the figure's own caption: its title and its takeaway line (the house style's
    :func:`~aimoe_lib.viz.style.finish` sets both)."""
    parts = [fig.get_suptitle().strip(), fig.get_supxlabel().strip()]
    return ". ".join(p for p in parts if p) or "figure"


def png_with_alt(fig: Figure) -> bytes:
    """``fig`` as a PNG cropped to its content (as a notebook shows a figure), with
    :func:`alt_text` stored under :data:`ALT_KEY`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={ALT_KEY: alt_text(fig)})
    return buf.getvalue()


def register_alt_text() -> bool:
    """Make IPython show every matplotlib figure as :func:`png_with_alt`, so that the rendered
    book can give each figure its caption as alt text. Returns False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebooks
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["image/png"].for_type(Figure, png_with_alt)
    return True


_alt = alt_text


@dataclass(frozen=True)
class StaticSlider:
    """A figure precomputed over a grid: ``frames[i]`` is the PNG at the grid point of flat
    (C-order) index i, ``alts[i]`` its alt text. Displayed, it is HTML with one range input per
    parameter; :meth:`frame` returns the PNG of one point."""

    names: tuple[str, ...]
    """Parameter names, in the order of the grid's axes."""
    labels: tuple[str, ...]
    """What each slider says next to it."""
    values: tuple[tuple, ...]
    """The values each parameter takes on the grid."""
    frames: tuple[bytes, ...]
    """PNG bytes per grid point, C order (the last parameter varies fastest)."""
    alts: tuple[str, ...]
    """Alt text per grid point (the figure's title and takeaway)."""
    default: tuple[int, ...]
    """Index of the default value of each parameter (the frame shown first)."""
    formats: tuple[str, ...]
    """The displayed value of each parameter's values, per parameter."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of values per parameter."""
        return tuple(len(v) for v in self.values)

    @property
    def nbytes(self) -> int:
        """Total PNG bytes of all frames (the page carries a third more, as base64)."""
        return sum(len(f) for f in self.frames)

    def index(self, **point) -> int:
        """Flat index of the grid point given by every parameter's value."""
        missing = set(self.names) - set(point)
        extra = set(point) - set(self.names)
        if missing or extra:
            raise ValueError(f"point: give exactly the parameters {list(self.names)}; "
                             f"missing {sorted(missing)}, unknown {sorted(extra)}")
        idx = []
        for name, vals in zip(self.names, self.values, strict=True):
            if point[name] not in vals:
                raise ValueError(f"{name}={point[name]!r} is not on the grid; choose one of "
                                 f"{list(vals)}")
            idx.append(list(vals).index(point[name]))
        return int(np.ravel_multi_index(idx, self.shape))

    def frame(self, **point) -> bytes:
        """PNG bytes at the grid point given by every parameter's value."""
        return self.frames[self.index(**point)]

    def _default_flat(self) -> int:
        return int(np.ravel_multi_index(self.default, self.shape))

    def _repr_png_(self) -> bytes:
        return self.frames[self._default_flat()]

    def _repr_html_(self) -> str:
        flat = self._default_flat()
        shown = [[fmt.format(v) for v in vals]
                 for fmt, vals in zip(self.formats, self.values, strict=True)]
        data = {"shape": list(self.shape), "values": shown, "alts": list(self.alts),
                "frames": [base64.b64encode(f).decode("ascii") for f in self.frames]}
        payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        controls = []
        for d, (label, vals) in enumerate(zip(self.labels, shown, strict=True)):
            i = self.default[d]
            controls.append(
                f'<label class="aimoe-slider-control">{html.escape(label)} '
                f'<input class="aimoe-slider-input" type="range" min="0" max="{len(vals) - 1}" '
                f'step="1" value="{i}" disabled aria-valuetext="{html.escape(vals[i])}">'
                f'<output>{html.escape(vals[i])}</output></label>')
        src = base64.b64encode(self.frames[flat]).decode("ascii")
        return ('<div class="aimoe-slider">'
                f'<script type="application/json" class="aimoe-slider-data">{payload}</script>'
                f'<div class="aimoe-slider-controls">{"".join(controls)}</div>'
                f'<img class="aimoe-slider-frame" style="max-width:100%;height:auto" '
                f'src="data:image/png;base64,{src}" alt="{html.escape(self.alts[flat])}">'
                f'</div>{SCRIPT}')

    def __repr__(self) -> str:
        grid = ", ".join(f"{n}={list(v)}" for n, v in zip(self.names, self.values, strict=True))
        return f"StaticSlider({grid}; {len(self.frames)} frames, {self.nbytes:,} bytes)"


def static_slider(draw: Callable[..., Figure], grid: Mapping[str, Sequence], *,
                  fixed: Mapping | None = None, default: Mapping | None = None,
                  labels: Mapping[str, str] | None = None, formats: Mapping[str, str] | None = None,
                  dpi: float = DPI, max_bytes: int = MAX_BYTES) -> StaticSlider:
    """Draw ``draw(**fixed, **point)`` at every point of ``grid`` (parameter name -> values, one
    slider each, in the given order) and return the frames as a :class:`StaticSlider`.

    ``default`` picks the value each slider starts at (the first value if not given), ``labels``
    the text next to each slider (the name if not given), ``formats`` a ``str.format`` pattern
    for each parameter's displayed value (``"{}"`` if not given). Raises ``ValueError`` when the
    grid is empty, a default is not on the grid, or the frames exceed ``max_bytes``.
    """
    fixed = dict(fixed or {})
    default = dict(default or {})
    labels = dict(labels or {})
    formats = dict(formats or {})
    if not grid:
        raise ValueError("grid: give at least one parameter with its values, "
                         "e.g. {'top_k': (1, 2)}")
    names = tuple(grid)
    values = tuple(tuple(grid[n]) for n in names)
    for n, vals in zip(names, values, strict=True):
        if not vals:
            raise ValueError(f"grid[{n!r}] is empty; give the values the slider takes")
        if len(set(map(repr, vals))) != len(vals):
            raise ValueError(f"grid[{n!r}]={list(vals)} repeats a value; give each once")
    for mapping, what in ((fixed, "fixed"), (default, "default"), (labels, "labels"),
                          (formats, "formats")):
        unknown = set(mapping) - set(names) if what != "fixed" else set(mapping) & set(names)
        if unknown:
            hint = ("is also a grid parameter; drop it from fixed" if what == "fixed"
                    else f"is not a grid parameter ({list(names)})")
            raise ValueError(f"{what}: {sorted(unknown)} {hint}")
    start = []
    for n, vals in zip(names, values, strict=True):
        v = default.get(n, vals[0])
        if v not in vals:
            raise ValueError(f"default[{n!r}]={v!r} is not on the grid; choose one of {list(vals)}")
        start.append(vals.index(v))
    frames, alts, total = [], [], 0
    for point in itertools.product(*values):
        fig = draw(**fixed, **dict(zip(names, point, strict=True)))
        png = png_bytes(fig, dpi)
        total += len(png)
        if total > max_bytes:
            raise ValueError(f"max_bytes={max_bytes:,}: the frames of grid shape "
                             f"{[len(v) for v in values]} pass it after {len(frames) + 1} frames; "
                             "use fewer values per slider, fewer sliders or a lower dpi")
        frames.append(png)
        alts.append(_alt(fig))
    return StaticSlider(names=names, labels=tuple(labels.get(n, n) for n in names), values=values,
                        frames=tuple(frames), alts=tuple(alts), default=tuple(start),
                        formats=tuple(formats.get(n, "{}") for n in names))
