"""Figures for the book, one module per chapter; every module draws in the house style of
:mod:`aimoe_lib.viz.style`. Figures only draw: the simulations and chip sizing they show come from
the core (:mod:`aimoe_lib.experiments`, :mod:`aimoe_lib.mapping`, :mod:`aimoe_lib.simulator`).

Import the chapter you need, e.g. ``from aimoe_lib.viz import simulation as vsim``.
"""
