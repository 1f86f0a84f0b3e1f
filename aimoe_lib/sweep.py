"""Parameter sweeps: many (model, chip, strategy, workload) points, cached on disk, run on any
``concurrent.futures.Executor``.

>>> pts = grid(models=[spec], chips=[chip_a, chip_b], strategies=["in_order"], workloads=[w])
>>> rows = sweep(pts, cache_dir="data/sweeps")      # list of flat dicts, in the order of ``pts``

**Cache.** Each point's result is stored as one JSON file named by a SHA-256 of the point's full
configuration: every field of the frozen ModelSpec, ChipConfig (its CostModel and AreaModel
included), strategy, mapping options and Workload (routing arrays by content), plus a hash of the
library's source files that compute results. A changed constant or a changed simulator never
reuses a stale result.

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
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .hardware import ChipConfig
from .mapping import MappingError, map_model
from .models import ModelSpec
from .simulator import Workload, simulate

__all__ = ["Point", "grid", "sweep", "run_point", "point_key", "columns"]

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
        if not isinstance(self.strategy, str):
            raise ValueError(f"Point.strategy={self.strategy!r}: must be a strategy name")
        object.__setattr__(self, "digital", tuple(self.digital))


def grid(models, chips, strategies=("in_order",), workloads=(Workload(),), **point_kw) -> list[Point]:
    """Every combination of the given models, chips, strategies and workloads."""
    for name, seq in (("models", models), ("chips", chips), ("strategies", strategies),
                      ("workloads", workloads)):
        if isinstance(seq, (str, ModelSpec, ChipConfig, Workload)) or not len(seq):
            raise ValueError(f"grid({name}=...): pass a non-empty list")
    return [Point(model=m, chip=c, strategy=s, workload=w, **point_kw)
            for m, c, s, w in itertools.product(models, chips, strategies, workloads)]


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
    conf = _canonical(point)
    conf.pop("label")
    blob = json.dumps({"point": conf, "code": code_hash or _code_hash()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- running
def run_point(point: Point) -> dict:
    """Map and simulate one point; return a flat row of its configuration and results."""
    m, c, w = point.model, point.chip, point.workload
    row = {
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
    try:
        mp = map_model(m, c, point.strategy, digital=point.digital, seed=point.mapping_seed,
                       coactivation=point.coactivation)
    except MappingError as e:
        row["error"] = str(e)
        return row
    r = simulate(m, c, mp, w)
    t = r.tpot_stats_ns()
    b = r.busy_fraction()
    row.update({
        "tiles_used": mp.tiles_used, "utilisation": mp.utilisation,
        "makespan_ns": r.makespan_ns, "tokens_per_s": r.tokens_per_s,
        "ttft_ns": float(r.ttft_ns.mean()), "tpot_mean_ns": t["mean"], "tpot_p50_ns": t["p50"],
        "tpot_p99_ns": t["p99"], "energy_pj": r.energy_pj,
        "energy_per_token_pj": r.energy_per_token_pj,
        **{f"energy_{k}_pj": v for k, v in r.energy_breakdown_pj.items()},
        "tile_conflicts": r.tile_conflicts, "stall_ns": r.stall_ns,
        "busy_tiles": b["tiles"], "busy_tiles_max": b["tiles_max"], "busy_dpu": b["dpu"],
        "busy_mha": b["mha"], "busy_dram": b["dram"], "bottleneck": r.bottleneck(),
        "peak_scratchpad_bytes": r.peak_scratchpad_bytes,
    })
    return row


def sweep(points, *, cache_dir=None, executor: Executor | None = None, progress: bool = True,
          on_error: str = "record") -> list[dict]:
    """Run every point (cached ones are read back), in parallel on ``executor``.

    ``on_error='record'`` keeps a point whose model does not fit its chip as a row with the
    MappingError message in ``error`` (and no result columns); ``'raise'`` raises it.
    Returns one row per point, in the order of ``points``.
    """
    from tqdm.auto import tqdm

    points = list(points) if not isinstance(points, Point) else [points]
    if not points:
        raise ValueError("sweep(points=[]): nothing to run; build points with sweep.grid(...)")
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
        cache = Path(cache_dir)
        if cache.exists() and not cache.is_dir():
            raise ValueError(f"sweep(cache_dir={str(cache_dir)!r}): exists and is not a directory")
        cache.mkdir(parents=True, exist_ok=True)
    code = _code_hash()
    keys = [point_key(p, code) for p in points]
    rows: list[dict | None] = [None] * len(points)
    todo = []
    for i, k in enumerate(keys):
        f = cache / f"{k}.json" if cache else None
        if f is not None and f.exists():
            rows[i] = {**json.loads(f.read_text()), "label": points[i].label}
        else:
            todo.append(i)
    bar = tqdm(total=len(points), initial=len(points) - len(todo), disable=not progress,
               desc="sweep", unit="point")
    own = executor is None and len(todo) > 1
    ex = ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) if own else executor
    try:
        if ex is None:
            results = ((i, run_point(points[i])) for i in todo)
        else:
            futs = {ex.submit(run_point, points[i]): i for i in todo}
            results = _as_completed(futs)
        for i, row in results:
            if row["error"] and on_error == "raise":
                raise MappingError(row["error"])
            rows[i] = row
            if cache is not None:
                tmp = cache / f"{keys[i]}.json.tmp"
                tmp.write_text(json.dumps(row))
                tmp.replace(cache / f"{keys[i]}.json")
            bar.update(1)
    finally:
        bar.close()
        if own:
            ex.shutdown()
    return rows  # type: ignore[return-value]


def _as_completed(futs):
    from concurrent.futures import as_completed

    for fut in as_completed(futs):
        yield futs[fut], fut.result()


def columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows -> {column: numpy array} (missing values as nan) for plotting."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = {}
    for k in keys:
        vals = [r.get(k, math.nan) for r in rows]
        out[k] = np.array(vals, dtype=object if any(isinstance(v, str) for v in vals) else float)
    return out
