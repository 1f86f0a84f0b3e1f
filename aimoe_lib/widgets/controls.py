"""The controls every panel is built from, in one style: labels as wide as they need, one width
for every control, sliders that redraw only when released (``continuous_update=False``), and a
message in place of the figure when a setting is invalid.

Importing this module (every panel does) also gives every widget displayed in IPython an HTML form,
:func:`static_note_html`: Jupyter shows the live widget, while the static HTML book, where no
kernel answers the sliders, shows a note that says how to run the panel instead of dead controls
(the book's configuration drops the widget view from HTML pages). Figures shown in IPython carry
their caption as alt text (:func:`aimoe_lib.viz.static.register_alt_text`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import ipywidgets as w
from IPython.display import Markdown

from ..viz.static import register_alt_text

__all__ = ["STYLE", "STATIC_NOTE", "static_note_html", "WIDTH", "int_slider", "float_slider",
           "choice_slider", "dropdown", "checkbox", "toggle", "error_message", "showing_errors"]

STYLE = {"description_width": "initial"}
"""Label style of every control: the description takes the width it needs."""
WIDTH = "420px"
"""Width of every control."""


def _layout() -> w.Layout:
    return w.Layout(width=WIDTH)


def int_slider(value: int, lo: int, hi: int, label: str, step: int = 1) -> w.IntSlider:
    """An integer slider from ``lo`` to ``hi``."""
    return w.IntSlider(value=value, min=lo, max=hi, step=step, description=label,
                       continuous_update=False, style=STYLE, layout=_layout())


def float_slider(value: float, lo: float, hi: float, step: float, label: str,
                 readout_format: str = ".2f") -> w.FloatSlider:
    """A real-valued slider from ``lo`` to ``hi`` in steps of ``step``."""
    return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=label,
                         readout_format=readout_format, continuous_update=False, style=STYLE,
                         layout=_layout())


def choice_slider(value, options: Sequence, label: str) -> w.SelectionSlider:
    """A slider over a fixed list of values (batch sizes, tier counts, ...)."""
    return w.SelectionSlider(value=value, options=list(options), description=label,
                             continuous_update=False, style=STYLE, layout=_layout())


def dropdown(value, options: Sequence, label: str) -> w.Dropdown:
    """A drop-down list of named choices (models, strategies, presets)."""
    return w.Dropdown(value=value, options=list(options), description=label, style=STYLE,
                      layout=_layout())


def checkbox(value: bool, label: str) -> w.Checkbox:
    """An on/off choice."""
    return w.Checkbox(value=value, description=label, style=STYLE)


def toggle(value, options: Sequence, label: str) -> w.ToggleButtons:
    """A row of buttons for a choice among a few options ('sram' / 'dram')."""
    return w.ToggleButtons(value=value, options=list(options), description=label, style=STYLE)


def error_message(err: Exception, context: str = "") -> Markdown:
    """What a panel shows instead of its figure when the settings are invalid: the exception's
    type, the settings it concerns (``context``) and its message (which says what to change)."""
    where = f" ({context})" if context else ""
    return Markdown(f"**{type(err).__name__}**{where}: {err}")


def showing_errors(draw: Callable, errors: tuple[type[Exception], ...] = (ValueError,)) -> Callable:
    """``draw`` wrapped so that the listed exceptions show as :func:`error_message` instead of a
    traceback (a slider setting that does not fit is a message, not a crash)."""
    @functools.wraps(draw)
    def show(*args, **kwargs):
        try:
            return draw(*args, **kwargs)
        except errors as err:
            return error_message(err)
    return show


STATIC_NOTE = ("<strong>Interactive panel.</strong> Its controls need a running Python kernel, so "
               "this page shows them as text only. Open this chapter as a notebook (the download "
               "or launch button at the top of the page, or <code>book/</code> in the repository "
               "after <code>make study</code>) and run it to move them; the figures above show "
               "the default settings.")
"""What the static book shows in place of a live panel.

:meta hide-value:
"""


def static_note_html(widget: w.Widget) -> str:
    """The HTML form of a displayed widget: :data:`~aimoe_lib.widgets.controls.STATIC_NOTE` in a
    box (the live widget view comes first in Jupyter; the static book shows this)."""
    return f'<div class="aimoe-live-note admonition note"><p>{STATIC_NOTE}</p></div>'


def _register_static_note() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(w.Widget, static_note_html)
        register_alt_text()


_register_static_note()
