"""ipywidgets panels, one module per chapter: each panel only wires the controls of
:mod:`aimoe_lib.widgets.controls` to a figure function of :mod:`aimoe_lib.viz`.

Import the chapter you need, e.g. ``from aimoe_lib.widgets.simulation import simulation_panel``.
"""
