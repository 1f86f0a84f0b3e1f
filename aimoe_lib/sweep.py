"""Parameter sweeps: many (model, chip, strategy, workload) points, cached on disk, run on any
``concurrent.futures.Executor``.

>>> pts = grid(models=[spec], chips=[chip_a, chip_b], strategies=["in_order"], workloads=[w])
>>> rows = sweep(pts, cache_dir="data/sweeps")      # list of flat dicts, in the order of ``pts``

**Cache.** Each point's result is stored as one JSON file named by a SHA-256 of the point's full
configuration: every field of the frozen ModelSpec, ChipConfig (its CostModel and AreaModel
included), strategy, mapping options and Workload (routing arrays by content), plus a hash of the
library's source files that compute results. A changed constant or a changed simulator never
reuses a stale result. A file is written under a unique temporary name in the same folder and
then renamed over its final name (``os.replace``), so sweeps in several processes can share one
folder and a crash never leaves half a file under a final name. A file is trusted only if it
parses, carries its point's key, repeats the point's configuration and has every field of a
fresh row with a plausible value; otherwise the point is recomputed and the file rewritten, with
a :class:`SweepCacheWarning` naming the file and what was wrong. A folder that cannot be written
(read-only, full) gives one warning; the sweep still returns every row.

**Errors.** A point that cannot run (a ``ValueError`` while mapping or simulating it, e.g. a model
that does not fit its chip, a strategy that does not exist, a run the simulator refuses) becomes
a row with the message in ``error`` and no result columns (``on_error='record'``), or raises
(``on_error='raise'``). Other exceptions are bugs and always propagate.

**Executors.** By default uncached points run in a local ``ProcessPoolExecutor``. Any
``concurrent.futures.Executor`` works: ``executor=ThreadPoolExecutor(1)`` for serial runs, or a
cluster, e.g. Dask's ``distributed.Client(...).get_executor()`` or Ray's
``ray.util.ActorPool``-backed executors; points and results are plain picklable data.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import json
import math
import numbers
import os
import tempfile
import warnings
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .hardware import ChipConfig
from . import checks
from .mapping import DIGITAL_PARTS, STRATEGIES, MappingError, map_model
from .models import ModelSpec
from .simulator import Workload, simulate

__all__ = ["Point", "grid", "sweep", "run_point", "point_key", "columns", "SweepCacheWarning"]


class SweepCacheWarning(UserWarning):
    """A cache file that was not trusted (and so recomputed), or a cache folder that cannot be
    written (results then stay in memory)."""

_SOURCES = ("models.py", "hardware.py", "mapping.py", "routing.py", "simulator", "sweep.py")
"""Sources whose code decides a row: modules, and packages (every ``.py`` file in them)."""


@dataclass(frozen=True, eq=False)
class Point:
    """One configuration to simulate."""

    model: ModelSpec
    chip: ChipConfig
    strategy: str = "in_order"
    workload: Workload = field(default_factory=Workload)
    digital: tuple = ("embedding",)
    """Parts run on digital units (mapping.DIGITAL_PARTS)."""
    mapping_seed: int = 0
    coactivation: object = None
    """Co-activation density for strategy='coactivation' (array), else None."""
    label: str = ""
    """Free text carried into the result row (e.g. 'deeper', 'wider')."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            raise ValueError(f"Point.model={type(self.model).__name__}: must be a ModelSpec "
                             "(zoo.get(name) or models.ModelSpec(...))")
        if not isinstance(self.chip, ChipConfig):
            raise ValueError(f"Point.chip={type(self.chip).__name__}: must be a ChipConfig "
                             "(hardware.preset(name) or hardware.ChipConfig(...))")
        if not isinstance(self.workload, Workload):
            raise ValueError(f"Point.workload={type(self.workload).__name__}: must be a "
                             "simulator.Workload")
        checks.choice("Point", "strategy", self.strategy, STRATEGIES, what="mapping strategy",
                      fix=f"choose one of {', '.join(STRATEGIES)}")
        object.__setattr__(self, "digital", checks.names("Point", "digital", self.digital,
                                                         DIGITAL_PARTS))
        object.__setattr__(self, "mapping_seed", checks.seed("Point", "mapping_seed",
                                                             self.mapping_seed))
        if not isinstance(self.label, str):
            raise TypeError(f"Point.label={self.label!r}: must be a string (free text carried "
                            "into the row)")
        if (self.coactivation is None) == (self.strategy == "coactivation"):
            raise ValueError(
                f"Point.coactivation={'None' if self.coactivation is None else 'an array'} with "
                f"strategy={self.strategy!r}: a co-activation density is needed by, and only "
                "used by, strategy='coactivation'")


def grid(models, chips, strategies=("in_order",), workloads=(Workload(),), **point_kw) -> list[Point]:
    """Every combination of the given models, chips, strategies and workloads (each a non-empty
    list; a single model, chip, strategy name or workload is refused: wrap it in a list)."""
    seqs = []
    for name, seq in (("models", models), ("chips", chips), ("strategies", strategies),
                      ("workloads", workloads)):
        fix = f"pass a non-empty list, e.g. {name}=[...]"
        if isinstance(seq, (str, ModelSpec, ChipConfig, Workload)):
            raise ValueError(f"grid({name}=...): is a single {type(seq).__name__}, not a list; "
                             f"{fix}")
        seqs.append(checks.items("grid()", name, seq, fix=fix))
    fields = [f.name for f in dataclasses.fields(Point) if f.name not in
              ("model", "chip", "strategy", "workload")]
    for k, v in point_kw.items():
        if k not in fields:
            raise ValueError(f"{checks.label('grid()', k, v)}: not a field of sweep.Point"
                             f"{checks._suggest(k, fields)}; pass one of {', '.join(fields)}")
    return [Point(model=m, chip=c, strategy=s, workload=w, **point_kw)
            for m, c, s, w in itertools.product(*seqs)]


# ----------------------------------------------------------------------------- keys
def _canonical(x):
    """A JSON-able canonical form of a configuration value (arrays by content hash)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"__type__": type(x).__name__,
                **{f.name: _canonical(getattr(x, f.name)) for f in dataclasses.fields(x)}}
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, np.ndarray):
        a = np.ascontiguousarray(x)
        return {"__array__": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape),
                "dtype": str(a.dtype)}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _canonical(v) for k, v in sorted(x.items())}
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot key a configuration value of type {type(x).__name__}")


def _code_hash() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in _SOURCES:
        path = here / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(f.relative_to(here).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def point_key(point: Point, code_hash: str | None = None) -> str:
    """SHA-256 of the point's full configuration and of the code that computes it (the free-text
    ``label`` is not part of the configuration)."""
    checks.instance("point_key()", "point", point, Point, fix="pass a sweep.Point")
    if code_hash is not None:
        checks.string("point_key()", "code_hash", code_hash, empty=False,
                      fix="pass None (the hash of this library's code) or a hash string")
    conf = _canonical(point)
    conf.pop("label")
    blob = json.dumps({"point": conf, "code": code_hash or _code_hash()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- running
def _config_row(point: Point) -> dict:
    """The configuration columns of a row (every row has them, error rows included)."""
    m, c, w = point.model, point.chip, point.workload
    return {
        "label": point.label, "model": m.name, "is_moe": m.is_moe, "n_experts": m.n_experts,
        "top_k": m.top_k, "d_model": m.d_model, "n_layers": m.n_layers,
        "total_params": m.total_params, "active_params": m.active_params,
        "chip": c.name, "n_tiles": c.n_tiles, "n_tiers": c.n_tiers, "tier_rows": c.tier_rows,
        "tier_cols": c.tier_cols, "n_dpus": c.n_dpus, "n_mha_units": c.n_mha_units,
        "area_mm2": c.area_mm2, "strategy": point.strategy, "batch": w.batch,
        "prompt_len": w.prompt_len, "gen_len": w.gen_len, "kv_cache": w.kv_cache,
        "routing": w.routing if isinstance(w.routing, str) else w.routing.kind, "seed": w.seed,
        "error": "",
    }


def _head(point: Point) -> tuple[dict, ValueError | None]:
    """The configuration columns, or (if even they raise a ValueError) the few that identify the
    point, and that error."""
    try:
        return _config_row(point), None
    except ValueError as e:
        return {"label": point.label, "model": point.model.name, "chip": point.chip.name,
                "strategy": point.strategy, "error": ""}, e


def _run(point: Point, on_error: str = "record") -> tuple[dict, str]:
    """(row, error type name or '') of one point; ``on_error='raise'`` lets a ValueError out."""
    row, err = _head(point)
    try:
        if err is not None:
            raise err
        mp = map_model(point.model, point.chip, point.strategy, digital=point.digital,
                       seed=point.mapping_seed, coactivation=point.coactivation)
        r = simulate(point.model, point.chip, mp, point.workload)
        t = r.tpot_stats_ns()
        b = r.busy_fraction()
        results = {
            "tiles_used": mp.tiles_used, "utilisation": mp.utilisation,
            "makespan_ns": r.makespan_ns, "tokens_per_s": r.tokens_per_s,
            "ttft_ns": float(r.ttft_ns.mean()), "tpot_mean_ns": t["mean"],
            "tpot_p50_ns": t["p50"], "tpot_p99_ns": t["p99"], "energy_pj": r.energy_pj,
            "energy_per_token_pj": r.energy_per_token_pj,
            **{f"energy_{k}_pj": v for k, v in r.energy_breakdown_pj.items()},
            "tile_conflicts": r.tile_conflicts, "stall_ns": r.stall_ns,
            "busy_tiles": b["tiles"], "busy_tiles_max": b["tiles_max"], "busy_dpu": b["dpu"],
            "busy_dpu_max": b["dpu_max"], "busy_mha": b["mha"], "busy_mha_max": b["mha_max"],
            "busy_dram": b["dram"], "bottleneck": r.bottleneck(),
            "peak_scratchpad_bytes": r.peak_scratchpad_bytes,
        }
    except ValueError as e:  # MappingError included
        if on_error == "raise":
            raise
        row["error"] = str(e) or type(e).__name__
        return row, type(e).__name__
    row.update(results)
    return row, ""


def run_point(point: Point, on_error: str = "record") -> dict:
    """Map and simulate one point; return a flat row of its configuration and results.

    A ``ValueError`` while mapping or simulating (e.g. a model that does not fit the chip) gives
    a row with the message in ``error`` and no result columns (``on_error='record'``), or is
    raised (``on_error='raise'``).
    """
    checks.instance("run_point()", "point", point, Point,
                    fix="pass a sweep.Point (sweep.Point(model, chip, ...) or sweep.grid(...))")
    if on_error not in ("record", "raise"):
        raise ValueError(f"run_point(on_error={on_error!r}): use 'record' or 'raise'")
    return _run(point, on_error)[0]


# ----------------------------------------------------------------------------- cache files
_FORMAT = 2
"""Version of a cache file's layout: {"format", "key", "error_type", "row"}. 2: rows carry the
busy fraction of the most loaded DPUs and attention units (``busy_dpu_max``, ``busy_mha_max``:
a layer's units, or the pool), and ``bottleneck`` compares the most loaded set of every class
(format 1 compared the busiest tile with the class means of the DPUs, MHA units and DRAM)."""

# Result columns of a row that ran, and what a value must be: 'count' an int >= 0, 'positive' a
# finite number > 0, 'nonneg' a finite number >= 0, 'nonneg_or_nan' the same or nan (the time
# per output token of a single generated token), 'text' a non-empty string.
_RESULT_CHECKS = {
    "tiles_used": "count", "utilisation": "nonneg", "makespan_ns": "positive",
    "tokens_per_s": "nonneg", "ttft_ns": "nonneg", "tpot_mean_ns": "nonneg_or_nan",
    "tpot_p50_ns": "nonneg_or_nan", "tpot_p99_ns": "nonneg_or_nan", "energy_pj": "nonneg",
    "energy_per_token_pj": "nonneg", "tile_conflicts": "count", "stall_ns": "nonneg",
    "busy_tiles": "nonneg", "busy_tiles_max": "nonneg", "busy_dpu": "nonneg",
    "busy_dpu_max": "nonneg", "busy_mha": "nonneg", "busy_mha_max": "nonneg",
    "busy_dram": "nonneg", "bottleneck": "text",
    "peak_scratchpad_bytes": "count",
    **{f"energy_{k}_pj": "nonneg"
       for k in ("mvm", "digital", "attention", "dram", "communication", "passive")},
}
_ERROR_TYPES = {"MappingError": MappingError, "ValueError": ValueError}


def _bad_value(value, kind: str) -> bool:
    if kind == "text":
        return not isinstance(value, str) or not value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if kind == "count":
        return not isinstance(value, int) or value < 0
    if kind == "nonneg_or_nan" and math.isnan(value):
        return False
    if not math.isfinite(value):
        return True
    return value <= 0 if kind == "positive" else value < 0


def _json(x) -> str:
    return json.dumps(x, sort_keys=True)


def _problem(data, key: str, point: Point) -> str | None:
    """Why the parsed cache file ``data`` is not a row of ``point`` (None if it is)."""
    if not isinstance(data, dict):
        return f"holds a JSON {type(data).__name__}, not a cache record"
    if "key" not in data:
        return "has no 'key' field (not written by this version of sweep)"
    if data["key"] != key:
        return f"holds the row of another point (key {str(data['key'])[:16]}...)"
    if data.get("format") != _FORMAT:
        return f"has format={data.get('format')!r}, not {_FORMAT}"
    row, etype = data.get("row"), data.get("error_type")
    if not isinstance(row, dict):
        return "has no 'row' object"
    head, _ = _head(point)
    missing = [k for k in head if k not in row]
    if missing:
        return f"row lacks the configuration field(s) {', '.join(missing)}"
    changed = [k for k in head if k not in ("label", "error") and _json(row[k]) != _json(head[k])]
    if changed:
        k = changed[0]
        return f"row has {k}={row[k]!r}, but the point has {k}={head[k]!r}"
    if not isinstance(row["error"], str):
        return f"row has error={row['error']!r}, not a string"
    if row["error"]:
        if etype not in _ERROR_TYPES:
            return f"error row has error_type={etype!r}, not one of {', '.join(_ERROR_TYPES)}"
        extra = [k for k in row if k not in head]
        if extra:
            return f"error row has result field(s) {', '.join(extra)}"
        return None
    if etype != "":
        return f"row without error has error_type={etype!r}"
    for k, kind in _RESULT_CHECKS.items():
        if k not in row:
            return f"row lacks the result field {k}"
        if _bad_value(row[k], kind):
            return f"row has {k}={row[k]!r}, not {kind.replace('_', ' ')}"
    extra = [k for k in row if k not in head and k not in _RESULT_CHECKS]
    for k in extra:
        if not (k.startswith("energy_") and k.endswith("_pj")):
            return f"row has the unknown field {k}"
        if _bad_value(row[k], "nonneg"):
            return f"row has {k}={row[k]!r}, not nonneg"
    return None


def _read(path: Path, key: str, point: Point) -> tuple[dict | None, str, str | None]:
    """(row or None, error type, why the file was not used or None) of one cache file; a missing
    file is (None, '', None)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "", None
    except OSError as e:
        return None, "", f"cannot be read ({e})"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError included
        if not raw.strip():
            return None, "", "is empty"
        return None, "", f"is not valid JSON ({type(e).__name__}: {e})"
    why = _problem(data, key, point)
    if why is not None:
        return None, "", why
    return data["row"], data["error_type"], None


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file in the same folder,
    flushed to disk, then renamed over ``path``: readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----------------------------------------------------------------------------- sweeping
def sweep(points, *, cache_dir=None, executor: Executor | None = None, progress: bool = True,
          on_error: str = "record") -> list[dict]:
    """Run every point (cached ones are read back), in parallel on ``executor``.

    ``on_error='record'`` keeps a point that cannot run (a ``ValueError`` while mapping or
    simulating it, e.g. a MappingError when the model does not fit its chip) as a row with the
    message in ``error`` (and no result columns); ``'raise'`` raises it, for a cached error row
    too. A cache file that is damaged, edited or of another point is recomputed and rewritten
    (:class:`SweepCacheWarning` names it); a cache folder that cannot be written warns once and
    the rows stay in memory. Returns one row per point, in the order of ``points``.
    """
    from tqdm.auto import tqdm

    if isinstance(points, Point):
        points = [points]
    elif isinstance(points, str) or not isinstance(points, Iterable):
        raise ValueError(f"sweep(points={points!r}): must be a list of sweep.Point; build points "
                         "with sweep.grid(...)")
    points = list(points)
    if not points:
        raise ValueError("sweep(points=[]): nothing to run; build points with sweep.grid(...)")
    progress = checks.boolean("sweep()", "progress", progress)
    bad = [i for i, p in enumerate(points) if not isinstance(p, Point)]
    if bad:
        raise ValueError(f"sweep: points[{bad[0]}] is a {type(points[bad[0]]).__name__}, not a "
                         "sweep.Point; build points with sweep.grid(...) or sweep.Point(...)")
    if on_error not in ("record", "raise"):
        raise ValueError(f"sweep(on_error={on_error!r}): use 'record' or 'raise'")
    if executor is not None and not isinstance(executor, Executor):
        raise ValueError(f"sweep(executor={type(executor).__name__}): must be a "
                         "concurrent.futures.Executor (e.g. ProcessPoolExecutor, or a Dask "
                         "client's get_executor())")
    cache = None
    if cache_dir is not None:
        if not isinstance(cache_dir, str | os.PathLike) or isinstance(cache_dir, bytes) \
                or cache_dir == "":
            raise ValueError(f"sweep(cache_dir={cache_dir!r}): must be a folder path (a str or "
                             "pathlib.Path), or None to run without a cache")
        cache = Path(cache_dir)
        if cache.exists() and not cache.is_dir():
            raise ValueError(f"sweep(cache_dir={str(cache_dir)!r}): exists and is not a directory")
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            _warn_unwritable(cache, e)
            cache = None
    code = _code_hash()
    keys = [point_key(p, code) for p in points]
    rows: list[dict | None] = [None] * len(points)
    todo = []
    for i, k in enumerate(keys):
        row, etype, why = (None, "", None) if cache is None else _read(cache / f"{k}.json", k,
                                                                      points[i])
        if why is not None:
            warnings.warn(f"sweep: cache file {str(cache / f'{k}.json')!r} {why}; recomputing "
                          "it", SweepCacheWarning, stacklevel=2)
        if row is None:
            todo.append(i)
            continue
        if row["error"] and on_error == "raise":
            raise _ERROR_TYPES[etype](f"{row['error']} (cached in {str(cache / f'{k}.json')!r})")
        rows[i] = {**row, "label": points[i].label}
    writable = cache is not None
    bar = tqdm(total=len(points), initial=len(points) - len(todo), disable=not progress,
               desc="sweep", unit="point")
    own = executor is None and len(todo) > 1
    ex = ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) if own else executor
    futs: dict = {}
    done = False
    try:
        if ex is None:
            results = ((i, _run(points[i], on_error)) for i in todo)
        else:
            futs = {ex.submit(_run, points[i], on_error): i for i in todo}
            results = _as_completed(futs)
        for i, (row, etype) in results:
            rows[i] = row
            if writable:
                text = json.dumps({"format": _FORMAT, "key": keys[i], "error_type": etype,
                                   "row": row})
                try:
                    _write_atomic(cache / f"{keys[i]}.json", text)
                except OSError as e:
                    writable = False
                    _warn_unwritable(cache, e)
            bar.update(1)
        done = True
    finally:
        bar.close()
        if not done:
            for fut in futs:
                fut.cancel()
        if own:
            ex.shutdown(cancel_futures=not done)
    return rows  # type: ignore[return-value]


def _warn_unwritable(cache: Path, e: OSError) -> None:
    warnings.warn(f"sweep: cannot write to the cache folder {str(cache)!r} ({e}); this sweep "
                  "keeps its rows in memory only and a later sweep recomputes them; pass a "
                  "writable cache_dir= (or cache_dir=None to run without a cache)",
                  SweepCacheWarning, stacklevel=3)


def _as_completed(futs):
    from concurrent.futures import as_completed

    for fut in as_completed(futs):
        yield futs[fut], fut.result()


def columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows -> {column: numpy array} (missing values as nan) for plotting: a float array where
    every value is a number (or None), else an object array of the values as they are."""
    fix = "pass the rows of sweep.sweep(...) (a list of dicts)"
    rows = checks.items("columns()", "rows", rows, nonempty=False, fix=fix)
    for r in rows:
        checks.instance("columns()", "rows", r, dict, fix=fix)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = {}
    for k in keys:
        vals = [r.get(k, math.nan) for r in rows]
        if all(v is None or isinstance(v, numbers.Real) for v in vals):
            out[k] = np.array(vals, dtype=float)
        else:  # text or other values: one object per row (lists are not unpacked)
            out[k] = np.empty(len(vals), dtype=object)
            out[k][:] = vals
    return out
