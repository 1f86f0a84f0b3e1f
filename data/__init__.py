"""The shipped data, installed as the package ``aimoe_lib.data`` (see :mod:`aimoe_lib.shipped`).

This folder holds data files, not code: ``pyproject.toml`` maps it to ``aimoe_lib.data`` so that
wheels carry the files and :func:`aimoe_lib.shipped.data_path` finds them with
:func:`importlib.resources.files`, in an editable install and in a wheel install alike.
"""
