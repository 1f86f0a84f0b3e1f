"""The design space of chapter 9: a shipped sweep over models, chips and mappings, Pareto fronts
over it, one configuration built from every knob, and that configuration exported as Python.

* :func:`design_space_points` — the sweep shipped in data/design_space.json: six models (the base
  model of :data:`~aimoe_lib.experiments.BASE`, its MoE with 8 experts at top-1 and top-2, dense
  deeper and dense wider models of the same total parameters, and OLMoE-1B-7B), each on chips of
  1 (2D), 8 and 64 tiers per tile with just enough tiles, 256 x 256 and 512 x 512 tiers, mapped
  in order (MoEs also ``balanced`` and, on 3D chips, ``moe_stacked``), at batch 8 and 64.
* :func:`pareto_front` — the rows no other row beats in every objective (a pure function).
* :func:`build_point` — one :class:`~aimoe_lib.sweep.Point` from the playground's knobs;
  :func:`format_result` — a readable summary of its row.
* :func:`to_python` — source text that rebuilds a point exactly (same
  :func:`~aimoe_lib.sweep.point_key`).

Regenerate the shipped sweep (about a minute on 2 cores; results are cached)::

    python -m aimoe_lib.design_space            # -> data/design_space.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import checks, experiments, hardware, sweep, zoo
from .mapping import DIGITAL_PARTS, fitting_chip
from .models import ModelSpec
from .routing import RoutingSpec
from .shipped import data_path
from .simulator import Workload

__all__ = ["TIERS", "TIER_SIZES", "BATCHES", "OBJECTIVES", "CAPACITY_OBJECTIVES",
           "design_space_models",
           "design_space_points", "pareto_front", "dominates", "load", "with_derived",
           "model_names", "model_preset", "custom_model", "build_point", "format_result",
           "to_python", "run", "DEFAULT_CACHE_DIR"]

TIERS = (1, 8, 64)
"""Tiers per tile of the shipped sweep (1 = a 2D chip); tiles follow from the model's blocks."""
TIER_SIZES = (256, 512)
"""Square tier shapes (rows = columns) of the shipped sweep."""
BATCHES = (8, 64)
"""Batch sizes of the shipped sweep (4 prompt + 8 generated tokens per sequence)."""
WORKLOAD = experiments.WORKLOAD
"""Per-sequence workload of the shipped sweep: :data:`~aimoe_lib.experiments.WORKLOAD`."""

OBJECTIVES = {"energy_per_token_pj": "min", "tokens_per_s": "max", "area_mm2": "min"}
"""Objectives of the chapter's Pareto front: energy per generated token (pJ, lower is better),
throughput (tokens/s, higher is better) and chip area (mm², lower is better)."""

CAPACITY_OBJECTIVES = {**OBJECTIVES, "total_params": "max"}
""":data:`OBJECTIVES` plus total parameters (higher is better): what a configuration holds, a
proxy for model quality, so that a smaller model does not win by being smaller."""

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "aimoe_lib" / "sweeps"
"""Where ``python -m aimoe_lib.design_space`` caches point results unless told otherwise."""


# ============================================================================ the shipped sweep
def design_space_models() -> list[ModelSpec]:
    """The six models of the sweep: base dense (0.22B), MoE-8 top-1 and top-2 (0.92B total), dense
    deeper and dense wider of the MoE's total, and OLMoE-1B-7B (6.9B total, 1.3B active)."""
    base = experiments.BASE
    moe8 = experiments.moe_variant(base, 8)
    return [base, moe8, experiments.moe_variant(base, 8, top_k=2),
            experiments.dense_deeper(base, moe8.total_params),
            experiments.dense_wider(base, moe8.total_params), zoo.get("olmoe-1b-7b")]


def _strategies(spec: ModelSpec, n_tiers: int) -> tuple[str, ...]:
    if not spec.is_moe:
        return ("in_order",)
    return ("in_order", "balanced") + (("moe_stacked",) if n_tiers > 1 else ())


def design_space_points(models=None, tiers=TIERS, tier_sizes=TIER_SIZES, batches=BATCHES,
                        workload: Workload = WORKLOAD,
                        preset: str = experiments.PRESET) -> list[sweep.Point]:
    """Every model on chips of ``preset`` (default the book's) of each tier count and tier shape
    (just enough tiles, digital units provisioned per layer:
    :func:`~aimoe_lib.mapping.fitting_chip`), each strategy that applies
    (dense: ``in_order``; MoE: ``in_order``, ``balanced`` and, with more than one tier per tile,
    ``moe_stacked``), at each batch size. Labels: model|T<tiers>|<size>|strategy|b<batch>.
    Each of ``models``, ``tiers``, ``tier_sizes`` and ``batches`` is a non-empty list."""
    o = "design_space_points()"
    if models is None:
        models = design_space_models()
    else:
        models = checks.items(o, "models", models, fix="pass a list of models.ModelSpec")
        for m in models:
            checks.instance(o, "models", m, ModelSpec, fix="pass a list of models.ModelSpec")
    tiers = checks.items(o, "tiers", tiers, fix="pass a list of tier counts, e.g. (1, 8, 64)")
    tier_sizes = checks.items(o, "tier_sizes", tier_sizes,
                              fix="pass a list of tier sizes, e.g. (256, 512)")
    batches = checks.items(o, "batches", batches, fix="pass a list of batch sizes, e.g. (8, 64)")
    checks.instance(o, "workload", workload, Workload, fix="pass a simulator.Workload")
    pts = []
    for spec in models:
        for t in tiers:
            for size in tier_sizes:
                chip = fitting_chip(spec, n_tiers=t, tier_rows=size, tier_cols=size,
                                    units="per_layer", preset=preset)
                for strat in _strategies(spec, t):
                    for b in batches:
                        w = dataclasses.replace(workload, batch=b)
                        pts.append(sweep.Point(spec, chip, strat, w,
                                               label=f"{spec.name}|T{t}|{size}|{strat}|b{b}"))
    return pts


def run(out: Path | None = None, cache_dir: Path | None = DEFAULT_CACHE_DIR,
        progress: bool = True) -> Path:
    """Run :func:`design_space_points` with :func:`~aimoe_lib.sweep.sweep` (cached in
    ``cache_dir``) and write data/design_space.json. ``out`` is checked before the sweep runs."""
    out = checks.path("run()", "out", experiments.DATA_DIR / "design_space.json"
                      if out is None else out, kind="new_file",
                      fix="pass a .json file path in an existing folder")
    progress = checks.boolean("run()", "progress", progress)
    rows = sweep.sweep(design_space_points(), cache_dir=cache_dir, progress=progress)
    out.write_text(json.dumps({"experiment": "design_space",
                               "command": "python -m aimoe_lib.design_space",
                               "preset": experiments.PRESET,
                               "objectives": OBJECTIVES, "rows": rows}, indent=0))
    return out


def load(path: Path | None = None) -> list[dict]:
    """Rows of the shipped sweep (data/design_space.json, read with
    :func:`~aimoe_lib.shipped.data_path`), with :func:`with_derived` columns."""
    fix = "regenerate it with python -m aimoe_lib.design_space"
    path = checks.path("load()", "path", data_path("design_space.json") if path is None else path,
                       kind="file", fix=fix)  # missing: MissingPathError, a FileNotFoundError
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        if not isinstance(rows, list):
            raise TypeError(f"'rows' is a {type(rows).__name__}, not a list")
        return with_derived(rows)
    except (ValueError, TypeError, KeyError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"load(path={str(path)!r}): not a design-space sweep file "
                         f"({type(e).__name__}: {e}); {fix}") from None


def with_derived(rows: list[dict]) -> list[dict]:
    """Copies of ``rows`` with ``generated_tokens``, ``energy_dynamic_per_token_pj`` (energy
    without the passive part, per generated token) and ``conflicts_per_token`` added (rows
    that did not map are copied unchanged)."""
    fix = "pass rows of sweep.sweep(...) or sweep.run_point(...)"
    rows = checks.items("with_derived()", "rows", rows, nonempty=False, fix=fix)
    out = []
    for i, r in enumerate(rows):
        checks.instance("with_derived()", f"rows[{i}]", r, Mapping, fix=fix)
        r = dict(r)
        if not r.get("error"):
            need = ("batch", "gen_len", "energy_pj", "energy_passive_pj", "tile_conflicts")
            missing = [k for k in need if k not in r]
            if missing:
                raise ValueError(f"with_derived(rows[{i}]): a row without error lacks "
                                 f"{', '.join(missing)}; {fix}")
            for k in need:
                checks.real("with_derived()", f"rows[{i}][{k!r}]", r[k], minimum=0, fix=fix)
            for k in ("batch", "gen_len"):
                checks.integer("with_derived()", f"rows[{i}][{k!r}]", r[k], minimum=1, fix=fix)
            n = r["batch"] * r["gen_len"]
            r["generated_tokens"] = n
            r["energy_dynamic_per_token_pj"] = (r["energy_pj"] - r["energy_passive_pj"]) / n
            r["conflicts_per_token"] = r["tile_conflicts"] / n
        out.append(r)
    return out


# ============================================================================ Pareto fronts
def _senses(objectives) -> list[tuple[str, float]]:
    fix = "pass {column: 'min' or 'max'} or (column, sense) pairs, e.g. {'tokens_per_s': 'max'}"
    items = objectives.items() if isinstance(objectives, Mapping) else checks.items(
        "pareto_front()", "objectives", objectives, nonempty=False, fix=fix)
    out = []
    for pair in items:
        if isinstance(pair, str) or not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"pareto_front(objectives=...): {pair!r} is not a (column, sense) "
                             f"pair; {fix}")
        name, sense = pair
        if sense not in ("min", "max"):
            raise ValueError(f"pareto_front: objective {name!r} has sense {sense!r}; use 'min' "
                             "or 'max'")
        out.append((name, 1.0 if sense == "min" else -1.0))
    if not out:
        raise ValueError("pareto_front(objectives=...): give at least one objective, e.g. "
                         "{'tokens_per_s': 'max'}")
    return out


def _finite_number(v) -> bool:
    """A real number (not a bool) that is finite as a float."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float range
        return False


def dominates(a, b) -> bool:
    """True when cost vector ``a`` (lower is better in every entry) dominates ``b``: no worse in
    any entry and better in at least one. Both are non-empty 1-D vectors of the same length,
    without NaN."""
    fix = "pass two cost vectors of the same length (lower is better)"
    a = checks.array("dominates()", "a", a, ndim=1, dtype=float, fix=fix)
    b = checks.array("dominates()", "b", b, ndim=1, dtype=float, fix=fix)
    if a.size == 0 or a.shape != b.shape:
        raise ValueError(f"dominates(a, b): a has {a.size} entries and b {b.size}; {fix}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError(f"dominates(a, b): a cost is NaN; {fix}")
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_front(rows, objectives=OBJECTIVES) -> list[dict]:
    """The rows of ``rows`` that no other row dominates, in their input order.

    ``objectives`` maps a column to ``'min'`` or ``'max'`` (a dict or (column, sense) pairs).
    A row dominates another when it is no worse in every objective and strictly better in at
    least one; rows with equal objective values do not dominate each other, so ties are all
    kept. Rows with an ``error`` or a missing or non-finite objective value take no part.
    """
    senses = _senses(objectives)
    fix = "pass rows of sweep.sweep(...) (dicts)"
    rows = checks.items("pareto_front()", "rows", rows, nonempty=False, fix=fix)
    valid, costs = [], []
    for i, r in enumerate(rows):
        checks.instance("pareto_front()", f"rows[{i}]", r, Mapping, fix=fix)
        if r.get("error"):
            continue
        vals = [r.get(name) for name, _ in senses]
        if not all(_finite_number(v) for v in vals):  # missing, text, nan: no part
            continue
        valid.append(r)
        costs.append([s * v for (_, s), v in zip(senses, vals)])
    if not valid:
        return []
    c = np.asarray(costs, float)
    # i is dominated when some j is <= everywhere and < somewhere
    le = np.all(c[:, None, :] <= c[None, :, :], axis=2)   # le[j, i]: j <= i everywhere
    lt = np.any(c[:, None, :] < c[None, :, :], axis=2)    # lt[j, i]: j < i somewhere
    dominated = np.any(le & lt, axis=0)
    return [r for r, d in zip(valid, dominated) if not d]


# ============================================================================ one point, every knob
def model_names() -> tuple[str, ...]:
    """Names :func:`model_preset` accepts: the sweep's models, then the zoo's."""
    own = tuple(m.name for m in design_space_models())
    return own + tuple(n for n in zoo.names() if n not in own)


def model_preset(name: str) -> ModelSpec:
    """A model by name: one of :func:`design_space_models` or any :func:`~aimoe_lib.zoo.get`
    name."""
    for m in design_space_models():
        if m.name == name:
            return m
    try:
        return zoo.get(name)
    except (KeyError, ValueError):
        raise ValueError(f"model_preset(name={name!r}): unknown model; choose one of "
                         f"{', '.join(model_names())}") from None


def custom_model(d_model: int = 1024, n_layers: int = 12, n_heads: int = 16, d_ff: int = 4096,
                 n_experts: int = 0, top_k: int = 1, vocab_size: int = 32000,
                 ffn: str = "gelu") -> ModelSpec:
    """A GPT-style model of your sizes (LayerNorm, no biases); ``n_experts`` >= 2 makes every FFN
    an MoE of experts ``d_ff`` wide, top-``top_k`` routed (0 is dense; 1 expert is refused).
    A ``top_k`` above ``n_experts`` is lowered to ``n_experts`` (the playground's sliders move
    independently); ``top_k`` is unused by a dense model but must still be an integer >= 1."""
    o = "custom_model()"
    n_experts = checks.integer(o, "n_experts", n_experts, minimum=0, maximum=checks.INT32_MAX,
                               fix="pass 0 for a dense model or >= 2 experts")
    if n_experts == 1:
        raise ValueError("custom_model(n_experts=1): one expert is no mixture; pass 0 for a "
                         "dense model or >= 2 experts")
    top_k = checks.integer(o, "top_k", top_k, minimum=1, maximum=checks.INT32_MAX,
                           fix="pass the experts each token uses (>= 1)")
    moe = n_experts >= 2
    return ModelSpec(name="custom-moe" if moe else "custom-dense", d_model=d_model,
                     n_layers=n_layers, n_heads=n_heads, d_ff=d_ff, vocab_size=vocab_size, ffn=ffn,
                     norm="layernorm", n_experts=n_experts if moe else 0,
                     top_k=min(top_k, n_experts) if moe else 0)


def build_point(model: str | ModelSpec = "moe-8e-top1", *, chip: str = experiments.PRESET,
                n_tiers: int = 8,
                n_tiles: int | None = None, tier_size: int = 512, provision: bool = True,
                mvm_latency_ns: float | None = None, mvm_energy_pj: float | None = None,
                unit_passive_power_w: float | None = None,
                tile_passive_power_w: float | None = None, strategy: str = "in_order",
                digital=("embedding",), batch: int = 8, prompt_len: int = 4, gen_len: int = 8,
                kv_cache: bool = True, zipf_s: float = 0.0, seed: int = 0) -> sweep.Point:
    """One configuration from the playground's knobs.

    The chip is :func:`~aimoe_lib.hardware.preset` ``chip`` (default the book's; its costs, area
    model and units) with ``n_tiers`` tiers of ``tier_size`` x ``tier_size`` per tile and
    ``n_tiles`` tiles (None: just enough for the model's analog blocks,
    :func:`~aimoe_lib.mapping.fitting_chip`); the cost overrides replace the preset's values,
    ``mvm_energy_pj`` being the energy of one full-tier MVM (the preset's split of it into fixed,
    per-row, per-column and per-cell parts is kept);
    with ``provision`` the digital units are built per layer
    (:meth:`~aimoe_lib.hardware.ChipConfig.provisioned`). ``zipf_s`` > 0 routes tokens with a
    Zipf law of that exponent, 0 uniformly.
    """
    spec = model_preset(model) if isinstance(model, str) else model
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"build_point(model={model!r}): give a model name or a ModelSpec")
    digital = checks.names("build_point()", "digital", digital, DIGITAL_PARTS)
    provision = checks.boolean("build_point()", "provision", provision)
    zipf_s = checks.real("build_point()", "zipf_s", zipf_s, minimum=0,
                         fix="use 0 for uniform routing, about 1 for a classic Zipf law")
    overrides = {k: v for k, v in (("mvm_latency_ns", mvm_latency_ns),
                                   ("unit_passive_power_w", unit_passive_power_w),
                                   ("tile_passive_power_w", tile_passive_power_w))
                 if v is not None}
    base = hardware.preset(chip).cost
    if mvm_energy_pj is not None:  # a full tier's MVM energy; the preset's split is kept
        mvm_energy_pj = checks.real("build_point()", "mvm_energy_pj", mvm_energy_pj, minimum=0,
                                    maximum=hardware.MAX_CONSTANT,
                                    fix="pass the energy of one full-tier MVM in pJ")
        f = mvm_energy_pj / base.mvm(tier_size, tier_size).energy_pj
        overrides.update({k: getattr(base, k) * f for k in (
            "mvm_energy_pj", "mvm_energy_pj_per_row", "mvm_energy_pj_per_column",
            "mvm_energy_pj_per_cell")})
    cost = dataclasses.replace(base, **overrides)
    if n_tiles is None:
        c = fitting_chip(spec, n_tiers=n_tiers, tier_rows=tier_size, tier_cols=tier_size,
                         digital=digital, preset=chip, units="per_layer" if provision else "pool",
                         cost=cost)
    else:
        c = hardware.preset(chip, n_tiles=n_tiles, n_tiers=n_tiers, tier_rows=tier_size,
                            tier_cols=tier_size, cost=cost)
        c = c.provisioned(spec.n_layers) if provision else c
    routing = "uniform" if zipf_s == 0 else RoutingSpec(kind="zipf", zipf_s=zipf_s)
    w = Workload(batch=batch, prompt_len=prompt_len, gen_len=gen_len, kv_cache=kv_cache,
                 routing=routing, seed=seed)
    return sweep.Point(spec, c, strategy, w, digital=digital, label="playground")


def format_result(row: dict) -> str:
    """A few readable lines of a :func:`~aimoe_lib.sweep.run_point` row."""
    checks.instance("format_result()", "row", row, Mapping,
                    fix="pass a row of sweep.run_point(...)")
    try:
        return _format_result(row)
    except KeyError as e:
        raise ValueError(f"format_result(row): the row lacks the column {e.args[0]!r}; pass a "
                         "row of sweep.run_point(...)") from None


def _format_result(row) -> str:
    head = (f"{row['model']} ({row['total_params'] / 1e9:.3f}B total, "
            f"{row['active_params'] / 1e9:.3f}B active) on {row['chip']}: {row['n_tiles']:,} tiles "
            f"x {row['n_tiers']} tiers of {row['tier_rows']}x{row['tier_cols']}, "
            f"{row['n_dpus']} DPUs, {row['n_mha_units']} MHA units, {row['area_mm2']:,.1f} mm²")
    if row.get("error"):
        return head + f"\ndoes not map ({row['strategy']}): {row['error']}"
    r = with_derived([row])[0]
    n = r["generated_tokens"]
    lines = [
        head,
        f"workload         batch {row['batch']} x ({row['prompt_len']} prompt + {row['gen_len']} "
        f"generated) tokens, {row['routing']} routing, strategy {row['strategy']}",
        f"throughput       {row['tokens_per_s'] / 1e6:10.4f} M tokens/s ({n} generated)",
        f"time per token   {row['tpot_mean_ns'] / 1e3:10.2f} µs mean, "
        f"{row['tpot_p99_ns'] / 1e3:.2f} µs p99; first token {row['ttft_ns'] / 1e3:.2f} µs",
        f"energy per token {row['energy_per_token_pj'] / 1e6:10.2f} µJ = "
        f"{r['energy_dynamic_per_token_pj'] / 1e6:.2f} dynamic + "
        f"{(row['energy_per_token_pj'] - r['energy_dynamic_per_token_pj']) / 1e6:.2f} passive",
        f"tile conflicts   {row['tile_conflicts']:10,d} ({r['conflicts_per_token']:.1f} per "
        f"token), stall {row['stall_ns'] / 1e3:.1f} µs",
        f"busy fraction    tiles {row['busy_tiles']:.1%} (busiest {row['busy_tiles_max']:.1%}), "
        f"DPUs {row['busy_dpu']:.1%} (most loaded {row['busy_dpu_max']:.1%}), "
        f"MHA {row['busy_mha']:.1%} (most loaded {row['busy_mha_max']:.1%}); "
        f"bound by {row['bottleneck']}",
    ]
    return "\n".join(lines)


# ============================================================================ export as Python
def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _same(a, b) -> bool:
    """Equal as the sweep's cache key sees them (int 100 and float 100.0 differ there)."""
    dump = lambda x: json.dumps(sweep._canonical(x), sort_keys=True)  # noqa: E731
    return dump(a) == dump(b)


_CTOR = {ModelSpec: "ModelSpec", hardware.ChipConfig: "hardware.ChipConfig",
         hardware.CostModel: "hardware.CostModel", hardware.AreaModel: "hardware.AreaModel",
         hardware.Dataflow: "hardware.Dataflow",
         Workload: "Workload", RoutingSpec: "RoutingSpec"}


def _src(v, indent: int = 0) -> str:
    """Python source of a configuration value."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _ctor_src(v, indent)
    if isinstance(v, np.ndarray):
        return f"np.array({v.tolist()!r}, dtype={str(v.dtype)!r})"
    if hasattr(v, "value") and isinstance(getattr(v, "value"), str):  # str enums
        return repr(v.value)
    if isinstance(v, (np.integer, np.floating)):
        return repr(v.item())
    if isinstance(v, tuple):
        return "(" + ", ".join(_src(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    raise TypeError(f"to_python: cannot write a value of type {type(v).__name__}")


def _ctor_src(obj, indent: int) -> str:
    cls = type(obj)
    if cls not in _CTOR:
        raise TypeError(f"to_python: no constructor known for {cls.__name__}")
    derived = getattr(obj, "_derived", frozenset())
    args = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        v, d = getattr(obj, f.name), _default(f)
        if d is not dataclasses.MISSING and (f.name in derived or _same(v, d)):
            continue
        args.append(f"{f.name}={_src(v, indent + 4)}")
    pad = " " * (indent + 4)
    one = f"{_CTOR[cls]}({', '.join(args)})"
    if len(one) + indent <= 96:
        return one
    return f"{_CTOR[cls]}(\n" + "".join(f"{pad}{a},\n" for a in args) + " " * indent + ")"


def _chip_src(chip: hardware.ChipConfig) -> str:
    """``hardware.preset(name, ...)`` with the fields that differ from the preset when the chip
    keeps its preset's costs, dataflow and area model; else the full constructor."""
    if chip.name in hardware.preset_names():
        base = hardware.preset(chip.name)
        if all(_same(getattr(chip, k), getattr(base, k)) for k in ("cost", "dataflow", "area")):
            args = [repr(chip.name)] + [
                f"{f.name}={_src(getattr(chip, f.name), 4)}" for f in dataclasses.fields(chip)
                if f.init and f.name not in ("cost", "dataflow", "area", "name")
                and not _same(getattr(chip, f.name), getattr(base, f.name))]
            one = f"hardware.preset({', '.join(args)})"
            if len(one) <= 96:
                return one
            return "hardware.preset(\n" + "".join(f"    {a},\n" for a in args) + ")"
    return _ctor_src(chip, 0)


def _model_src(spec: ModelSpec) -> str:
    try:
        if _same(zoo.get(spec.name), spec):
            return f"zoo.get({spec.name!r})"
    except (KeyError, ValueError):
        pass
    return _ctor_src(spec, 0)


def to_python(point: sweep.Point) -> str:
    """Source text that rebuilds ``point`` (and runs it): paste it into a notebook or a script.

    Every field that differs from its default is written out, so the rebuilt point has the same
    :func:`~aimoe_lib.sweep.point_key` as ``point``; a zoo model is written as
    ``zoo.get(name)``.
    """
    if not isinstance(point, sweep.Point):
        raise ValueError(f"to_python(point={type(point).__name__}): pass a sweep.Point")
    body = [
        f"model = {_model_src(point.model)}",
        f"chip = {_chip_src(point.chip)}",
        f"workload = {_ctor_src(point.workload, 0)}",
    ]
    extra = []
    for f in dataclasses.fields(point):
        if f.name in ("model", "chip", "strategy", "workload"):
            continue
        v = getattr(point, f.name)
        if not _same(v, _default(f)):
            extra.append(f"{f.name}={_src(v, 4)}")
    args = ["model", "chip", repr(point.strategy), "workload"] + extra
    one = f"point = sweep.Point({', '.join(args)})"
    body.append(one if len(one) <= 100 else
                "point = sweep.Point(\n" + "".join(f"    {a},\n" for a in args) + ")")
    body.append("row = sweep.run_point(point)")
    text = "\n".join(body)
    libs = ["hardware", "sweep"] + (["zoo"] if "zoo.get(" in text else [])
    head = (["import numpy as np"] if "np.array(" in text else []) + [
        f"from aimoe_lib import {', '.join(libs)}"]
    for name, mod in (("ModelSpec", "models"), ("RoutingSpec", "routing"),
                      ("Workload", "simulator")):
        if f"{name}(" in text:
            head.append(f"from aimoe_lib.{mod} import {name}")
    return "\n".join(head) + "\n\n" + text + "\n"


# ============================================================================ command line
def main(argv: list[str] | None = None) -> int:
    """Command line; ``argv`` is the list of arguments (None: ``sys.argv[1:]``)."""
    argv = checks.argv("main", argv, "['--no-cache']")
    ap = argparse.ArgumentParser(prog="python -m aimoe_lib.design_space",
                                 description="Run the design-space sweep of chapter 9 and write "
                                             "data/design_space.json.")
    ap.add_argument("--out", type=Path, default=None,
                    help="output file (default data/design_space.json)")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                    help=f"sweep cache (default {DEFAULT_CACHE_DIR})")
    ap.add_argument("--no-cache", action="store_true", help="run every point, cache nothing")
    args = ap.parse_args(argv)
    print(run(args.out, None if args.no_cache else args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
