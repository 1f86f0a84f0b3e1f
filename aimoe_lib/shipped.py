"""Where the data that ships with aimoe_lib lives: :func:`data_path`.

The repository keeps its data in the top-level ``data/`` folder (next to ``aimoe_lib/``, ``book/``
and ``tests/``). Packaging maps that folder into the package as the subpackage ``aimoe_lib.data``
(``pyproject.toml``: ``[tool.setuptools.package-dir]`` ``"aimoe_lib.data" = "data"``, the files
listed under ``[tool.setuptools.package-data]``; ``data/__init__.py`` makes it a regular package).
So

* in a wheel (``pip install .``, ``pip install aimoe_lib-*.whl``) the files are installed inside
  the package, at ``site-packages/aimoe_lib/data/``;
* in an editable install (``pip install -e .``, as the Makefile does) setuptools' import hook maps
  ``aimoe_lib.data`` to the repository's ``data/`` folder itself, so files regenerated there
  (``python -m aimoe_lib.experiments ...``, ``python -m aimoe_lib.analog.train --out data/analog``) are read at once.

Either way the data is found with ``importlib.resources.files`` of ``aimoe_lib.data``, never
with a path relative to a source file. Code that reads shipped data calls :func:`data_path`:

>>> from aimoe_lib.shipped import data_path
>>> data_path("analog", "results.json").name
'results.json'
>>> data_path().is_dir()                    # the data folder itself
True

Only when ``aimoe_lib.data`` cannot be imported at all (the package run from a source tree that
was never installed, e.g. with ``PYTHONPATH`` pointing at the repository) does :func:`data_path`
fall back to the ``data/`` folder next to the package's directory.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import pathlib
from functools import lru_cache

__all__ = ["DATA_PACKAGE", "data_path"]

DATA_PACKAGE = "aimoe_lib.data"
"""The (sub)package the shipped data files belong to."""

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


@lru_cache(maxsize=1)
def _root():
    """The data folder as an importlib.resources Traversable (a pathlib.Path when the package
    is installed on the file system, which wheels always are)."""
    try:
        return importlib.resources.files(DATA_PACKAGE)
    except ModuleNotFoundError:
        fallback = pathlib.Path(__file__).resolve().parents[1] / "data"
        if fallback.is_dir():
            return fallback
        raise FileNotFoundError(
            f"the data package {DATA_PACKAGE!r} is not installed and there is no data folder at "
            f"{str(fallback)!r}; the data ships with the aimoe_lib package: reinstall it "
            "(pip install aimoe_lib-*.whl, or pip install --no-deps -e . from the repository)"
        ) from None


def data_path(*parts: str) -> pathlib.Path:
    """Path of the shipped data file or folder ``data/<parts...>``; no parts: the data folder.

    ``data_path("scaling.json")``, ``data_path("analog", "results.json")``,
    ``data_path("analog")``. Raises :class:`FileNotFoundError` if it does not exist.
    """
    for part in parts:
        if not isinstance(part, str) or not part or part in (".", "..") or "/" in part \
                or "\\" in part:
            raise ValueError(f"data_path{parts!r}: give one plain file or folder name per "
                             "argument, e.g. data_path('analog', 'results.json')")
    res = _root().joinpath(*parts) if parts else _root()
    rel = "/".join(("data", *parts))
    if not (res.is_file() or res.is_dir()):
        from .checks import MissingPathError

        raise MissingPathError(
            f"shipped data file {rel!r} not found (looked at {str(res)!r}); the data ships with "
            "the aimoe_lib package: reinstall it (pip install aimoe_lib-*.whl, or "
            "pip install --no-deps -e . from the repository), or regenerate the file with the "
            "command data/README.md names for it")
    if isinstance(res, pathlib.Path):
        return res
    # Not on the file system (e.g. a zip import): extract once, kept until the interpreter exits.
    # (Python 3.11 extracts files only; folders need 3.12.)
    return pathlib.Path(_extracted.enter_context(importlib.resources.as_file(res)))
