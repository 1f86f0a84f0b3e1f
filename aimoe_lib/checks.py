"""Argument checks shared by every public constructor and entry point: one home for the rules.

Each check takes the *owner* (a class name such as ``'ChipConfig'``, or a function written with
parentheses such as ``'map_model()'``), the argument's name and its value; it returns the value
normalised to a plain Python type (a numpy integer becomes an ``int``, a numpy bool a ``bool``)
or raises :class:`ValueError` naming ``owner.name``, the value and the fix. Nothing is coerced
silently: a bool is not a count, a float is not an integer, a string is not a tuple of names.

Paths (:func:`path`) are checked before any work: a folder where a file is expected, a missing
file or a missing parent folder is refused naming the argument and the path; a missing path
raises :class:`MissingPathError`, which is both a ValueError and a FileNotFoundError.

Only the standard library and numpy are used (no torch), so every module may import this one.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["INT32_MAX", "label", "integer", "real", "boolean", "choice", "enum", "names", "seed",
           "optional_integer", "string", "instance", "items", "array", "path", "MissingPathError"]

INT32_MAX = 2**31 - 1
"""Largest count accepted for sizes that end up in int32 arrays (tier shapes, model widths)."""


def label(owner: str, name: str, value) -> str:
    """``Owner.name=value`` for a class, ``func(name=value)`` for an owner written ``'func()'``,
    ``name=value`` for an empty owner."""
    if not owner:
        return f"{name}={value!r}"
    if owner.endswith("()"):
        return f"{owner[:-1]}{name}={value!r})"
    return f"{owner}.{name}={value!r}"


def _fail(owner: str, name: str, value, why: str, fix: str) -> ValueError:
    return ValueError(f"{label(owner, name, value)}: {why}; {fix}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def integer(owner: str, name: str, value, *, minimum: int | None = 0, maximum: int | None = None,
            fix: str = "", noun: str = "an integer") -> int:
    """A Python or numpy integer (not a bool, not a float) in [minimum, maximum], as an ``int``.
    ``noun`` words the kind in the message ('a whole number')."""
    parts = ([f">= {minimum}"] if minimum is not None else []) \
        + ([f"<= {maximum}"] if maximum is not None else [])
    what = " ".join([noun, " and ".join(parts)]).rstrip()
    fix = fix or f"pass {what}"
    if not _is_int(value):
        raise _fail(owner, name, value, f"must be {what} (got {type(value).__name__})", fix)
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise _fail(owner, name, value, f"must be {what}", fix)
    return v


def optional_integer(owner: str, name: str, value, **kw) -> int | None:
    """None, or :func:`integer`."""
    return None if value is None else integer(owner, name, value, **kw)


def real(owner: str, name: str, value, *, minimum: float | None = 0.0, strict: bool = False,
         maximum: float | None = None, finite: bool = True, fix: str = ""):
    """A real number (Python or numpy int or float; not a bool, not a string), finite unless
    ``finite=False`` (then still not NaN), ``> minimum`` if ``strict`` else ``>= minimum``, and
    ``<= maximum``. Python ints and floats come back unchanged; numpy scalars as ``int`` or
    ``float``."""
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if strict else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    what = ("a finite number" if finite else "a number") \
        + (" " + " and ".join(parts) if parts else "")
    fix = fix or f"pass {what}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise _fail(owner, name, value, f"must be {what} (got {type(value).__name__})", fix)
    if _is_int(value):
        v = value if type(value) is int else int(value)
    else:
        v = value if type(value) is float else float(value)
        if math.isnan(v) or (finite and math.isinf(v)):
            raise _fail(owner, name, value, f"must be {what}", fix)
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise _fail(owner, name, value, f"must be {what}", fix)
    if maximum is not None and v > maximum:
        raise _fail(owner, name, value, f"must be {what}", fix)
    return v


def boolean(owner: str, name: str, value, *, fix: str = "") -> bool:
    """True or False only (numpy bools accepted): no truthiness of strings, numbers or None."""
    if not isinstance(value, bool | np.bool_):
        raise _fail(owner, name, value, f"must be True or False (got {type(value).__name__})",
                    fix or f"pass {name}=True or {name}=False")
    return bool(value)


def _suggest(value, choices) -> str:
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1) \
        if isinstance(value, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice(owner: str, name: str, value, choices, *, what: str = "value", fix: str = ""):
    """One of ``choices`` (compared exactly; strings are not lower-cased here); ``what`` names the
    kind of value in the message ('unknown mapping strategy')."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable values
        ok = False
    if not ok:
        valid = ", ".join(repr(c) for c in choices)
        raise _fail(owner, name, value, f"unknown {what}" + _suggest(value, choices),
                    fix or f"use one of {valid}")
    return value


def enum(owner: str, name: str, value, enum_cls, *, fix: str = ""):
    """A member of ``enum_cls`` or its value as a string (case-insensitive), as the member.
    Anything else (a number, a bool, None) is refused rather than turned into a string."""
    if isinstance(value, enum_cls):
        return value
    values = [m.value for m in enum_cls]
    valid = ", ".join(repr(v) for v in values)
    if isinstance(value, str):
        try:
            return enum_cls(value.lower())
        except ValueError:
            pass
        raise _fail(owner, name, value, "unknown value" + _suggest(value.lower(), values),
                    fix or f"use one of {valid}")
    raise _fail(owner, name, value, f"must be one of {valid} (got {type(value).__name__})",
                fix or f"use one of {valid}")


def names(owner: str, name: str, value, choices, *, single: bool = True,
          fix: str = "") -> tuple[str, ...]:
    """A tuple of names, each one of ``choices``, order kept.

    A bare string is one name (wrapped, never split into characters) when ``single`` is True and
    refused otherwise; a list, tuple, set or frozenset of strings is accepted; anything else is
    refused."""
    choices = tuple(choices)
    valid = ", ".join(repr(c) for c in choices)
    fix = fix or f"pass a tuple of names from {valid}"
    if isinstance(value, str):
        if not single:
            raise _fail(owner, name, value, "is a single string, not a tuple of names",
                        f"write ({value!r},) for one name")
        value = (value,)
    elif not isinstance(value, list | tuple | set | frozenset):
        raise _fail(owner, name, value, f"must be a tuple of names (got {type(value).__name__})",
                    fix)
    out = []
    for part in value:
        if not isinstance(part, str):
            raise _fail(owner, name, value, f"has {part!r}, which is not a name", fix)
        if part not in choices:
            raise ValueError(f"{label(owner, name, value)}: unknown part {part!r}"
                             f"{_suggest(part, choices)}; choose from {valid}")
        out.append(part)
    if isinstance(value, set | frozenset):  # no order of its own: the order of ``choices``
        out.sort(key=choices.index)
    return tuple(out)


def seed(owner: str, name: str, value) -> int:
    """A random seed: an integer >= 0 (as numpy's generators accept), checked here whether or not
    the call draws any random numbers, so an invalid seed fails the same way everywhere."""
    return integer(owner, name, value, minimum=0, fix=f"pass e.g. {name}=0")



def string(owner: str, name: str, value, *, empty: bool = True, fix: str = "") -> str:
    """A ``str`` (a numpy string becomes a ``str``); not empty unless ``empty``. Nothing else is
    turned into text (no ``str(3)``, no ``str(None)``)."""
    if not isinstance(value, str):
        raise _fail(owner, name, value, f"must be a string (got {type(value).__name__})",
                    fix or f"pass {name} as text")
    if not empty and not value:
        raise _fail(owner, name, value, "must not be empty", fix or f"pass a non-empty {name}")
    return str(value)


def instance(owner: str, name: str, value, cls, *, fix: str = ""):
    """``value`` itself when it is an instance of ``cls`` (a class or a tuple of classes)."""
    if not isinstance(value, cls):
        kinds = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
        kinds = ("an " if kinds[0].lower() in "aeiou" else "a ") + kinds
        shown = value if value is None or isinstance(value, numbers.Number | str) \
            else _Shown(type(value).__name__)
        raise _fail(owner, name, shown, f"must be {kinds} (got {type(value).__name__})",
                    fix or f"pass {kinds}")
    return value


class _Shown:
    """Stands for a value in a message by its type name (no long repr of a big object)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.text}>"


def items(owner: str, name: str, value, *, nonempty: bool = True, fix: str = "") -> tuple:
    """The items of a list, tuple, range, set, generator or 1-D numpy array, as a tuple. A bare
    string, bytes, a mapping or a scalar is refused (a string is not a list of its characters);
    so is an empty collection when ``nonempty``."""
    fix = fix or f"pass a list of values for {name}"
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        shown = value if isinstance(value, str | bytes | numbers.Number | None) \
            else _Shown(type(value).__name__)
        raise _fail(owner, name, shown, f"must be a list (got {type(value).__name__})", fix)
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise _fail(owner, name, _Shown(f"array of shape {value.shape}"),
                    "must be a list or a 1-D array", fix)
    out = tuple(value)
    if nonempty and not out:
        raise _fail(owner, name, value, "is empty", fix)
    return out


_KIND_NAMES = {"b": "booleans", "i": "integers", "u": "integers", "f": "real numbers",
               "c": "complex numbers", "U": "strings", "S": "bytes", "O": "objects",
               "M": "dates", "m": "time spans", "V": "records"}


def array(owner: str, name: str, value, *, kinds: str = "iuf", ndim: int | tuple | None = None,
          dtype=None, fix: str = "") -> np.ndarray:
    """``np.asarray(value)`` whose dtype kind is one of ``kinds`` ('iuf': integers and real
    numbers; no booleans, complex numbers, strings or objects) and whose number of dimensions is
    ``ndim`` (one or a tuple of allowed counts), cast to ``dtype`` if given. Ragged nested lists,
    strings and other non-numeric input are refused naming the argument."""
    want = " or ".join(dict.fromkeys(_KIND_NAMES[k] for k in kinds))
    fix = fix or f"pass an array of {want}"
    if isinstance(value, str | bytes) or value is None:
        raise _fail(owner, name, value, f"must be an array of {want}", fix)
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged lists
        raise _fail(owner, name, _Shown(type(value).__name__),
                    f"is not a rectangular array ({e})", fix) from None
    shown = _Shown(f"array(shape={a.shape}, dtype={a.dtype})")
    if a.dtype.kind not in kinds:
        raise _fail(owner, name, shown,
                    f"holds {_KIND_NAMES.get(a.dtype.kind, a.dtype.kind)}, not {want}", fix)
    if ndim is not None and a.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        dims = " or ".join(str(n) for n in (ndim if isinstance(ndim, tuple) else (ndim,)))
        raise _fail(owner, name, shown, f"has {a.ndim} dimensions, not {dims}", fix)
    return a if dtype is None else a.astype(dtype)


class UnknownKeyError(KeyError, ValueError):
    """A name a lookup does not know: a ValueError (as every refused argument) and a KeyError
    (a failed lookup, for code written against earlier versions); its text is the plain message
    (a KeyError alone prints it in quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingPathError(FileNotFoundError, ValueError):
    """A path that does not exist: a ValueError naming the argument (as every check raises) and
    still a FileNotFoundError for code that catches that."""


def path(owner: str, name: str, value, *, kind: str = "file", fix: str = "") -> Path:
    """``value`` (a ``str`` or ``os.PathLike``, not empty) as a ``pathlib.Path``, checked
    before any work:

    * ``kind='file'``: an existing file (not a folder); a missing one raises
      :class:`MissingPathError`;
    * ``kind='folder'``: an existing folder or none at all (it will be created), not a file;
    * ``kind='new_file'``: a file to write: not a folder, in a folder that exists.
    """
    if kind not in ("file", "folder", "new_file"):
        raise AssertionError(kind)
    if not isinstance(value, str | os.PathLike) or isinstance(value, bytes):
        raise _fail(owner, name, value, f"must be a path (got {type(value).__name__})",
                    fix or "pass a str or pathlib.Path")
    p = Path(value)
    shown = str(p)
    if isinstance(value, str) and not value:
        raise _fail(owner, name, value, "is an empty path", fix or "pass a file or folder name")
    if kind == "file":
        if p.is_dir():
            raise _fail(owner, name, shown, "is a folder, not a file", fix or "pass a file path")
        if not p.is_file():
            raise MissingPathError(f"{label(owner, name, shown)}: does not exist; "
                                   f"{fix or 'pass the path of an existing file'}")
    elif kind == "folder":
        if p.exists() and not p.is_dir():
            raise _fail(owner, name, shown, "is a file, not a folder",
                        fix or "pass a folder (it is created if missing)")
    else:
        if p.is_dir():
            raise _fail(owner, name, shown, "is a folder, not a file",
                        fix or f"pass a file path inside it, e.g. {str(p / 'out')!r}")
        parent = p.parent
        if not parent.is_dir():
            why = "is a file, not a folder" if parent.exists() else "does not exist"
            raise _fail(owner, name, shown, f"its folder {str(parent)!r} {why}",
                        fix or "create the folder first or pass a path in an existing folder")
    return p


def argv(owner: str, value, example: str) -> list[str]:
    """A command line's arguments: ``value`` as a list of strings, ``sys.argv[1:]`` when None.
    A bare string is refused (it would be split into letters); ``example`` shows a valid list."""
    if value is None:
        return sys.argv[1:]
    if isinstance(value, str) or not isinstance(value, list | tuple) \
            or not all(isinstance(a, str) for a in value):
        raise ValueError(f"{owner}(argv={value!r}): pass a list of argument strings, e.g. "
                         f"{example} (a bare string would be split into letters)")
    return list(value)
