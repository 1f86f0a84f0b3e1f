"""What a published GPU measurement says beyond the model's error on it.

Two readings of the rows of ``data/gpu_published.json`` (:func:`aimoe_lib.gpu.published_points`),
neither of which changes the model, its fit or its validation:

* :func:`implied_bandwidth_share`: the share of the GPUs' datasheet HBM bandwidth a measurement
  needs if its run read what the model says a decode step reads. It takes the model's bytes only
  (every weight at the stated precision, the routed experts that uniform routing touches, each KV
  head once) and gives prefill, computation and every overhead no time, so it is a lower bound on
  the bandwidth the run used. Achievable streaming is 83 to 89 % of the datasheet figure on A100,
  H100 and H200 ([AZURE] in :mod:`aimoe_lib.gpu`); a share above 1 is impossible, and says the run
  read less than the stated setup implies. For an MoE, :func:`max_distinct_experts` turns the
  measured speed into the most distinct experts per layer a step can have read.
* :func:`alternative_readings`: the model's error under the other reading of a setup fact its
  source leaves open (a source's ``open_setup`` list in the data file, each with its evidence),
  next to the error under the reading the model uses.
* :func:`prompt_readings`: the validation redone with another value of the prompt length that
  assumption A-GPU-ENERGY-PROMPT supplies to the rows that do not publish it, the power model
  refitted on the fit rows so read; it says how much of the agreement rests on that assumption.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, replace

from . import checks
from . import gpu as gpu_mod

__all__ = ["implied_bandwidth_share", "max_distinct_experts", "OpenSetup", "open_setups",
           "AlternativeRow", "alternative_readings", "format_alternative_readings",
           "PROMPT_ASSUMPTION", "prompt_assumed", "PromptReading", "prompt_readings",
           "format_prompt_readings"]


def _decode_row(owner: str, point) -> gpu_mod.PublishedPoint:
    """``point`` if it is a published row with a time; a clear error otherwise."""
    checks.instance(owner, "point", point, gpu_mod.PublishedPoint,
                    fix="pass a row of gpu.published_points('decode')")
    if point.metric == "j_per_token":
        raise ValueError(f"{owner}: point {point.id!r} is an energy row (metric 'j_per_token') "
                         "and has no time; pass a decode row of gpu.published_points('decode')")
    return point


def _bare_roofline(point: gpu_mod.PublishedPoint) -> gpu_mod.RooflineResult:
    """The bare roofline of ``point``'s setup: its bytes are the weights at the stated precision,
    the expected distinct experts under uniform routing and each KV head once, summed over the
    GPUs (decode: the mean over the run's steps)."""
    return gpu_mod.roofline(point.spec(), point.gpu, batch=point.batch,
                            prompt_len=point.prompt_len, gen_len=point.gen_len,
                            n_gpus=point.n_gpus, kv_bytes=point.kv_bytes,
                            precision=point.precision, serving=point.serving, calibrated=False,
                            check_memory=False)


def _measured_step_s(point: gpu_mod.PublishedPoint) -> float:
    """The longest a decode step of ``point`` can have taken: the measured time with the prefill
    taken as free."""
    steps = point.gen_len - 1
    if point.metric == "tpot_s":
        return point.value
    if steps < 1:
        raise ValueError(f"point {point.id!r} has gen_len {point.gen_len}: no decode step to time")
    if point.metric == "latency_s":
        return point.value / steps
    return point.batch * point.gen_len / point.value / steps


def implied_bandwidth_share(point) -> float:
    """Share of the datasheet HBM bandwidth of ``point``'s GPUs that its measured speed needs,
    if every decode step reads the bytes the bare roofline counts and nothing else takes time.

    With ``B`` those bytes per step and ``W`` = n_gpus x datasheet bandwidth, ``B / W`` is the
    shortest possible step; the share is that over the longest the measured step can have been:
    the time per output token, ``latency / (gen_len - 1)`` for a latency (the prefill taken as
    free), or ``batch x gen_len / (tokens/s x (gen_len - 1))`` for a throughput. Energy rows
    have no time and are refused."""
    point = _decode_row("implied_bandwidth_share()", point)
    r = _bare_roofline(point)
    bw = point.n_gpus * gpu_mod.get(point.gpu).hbm_bandwidth_gb_s * 1e9
    return (r.decode_weight_bytes + r.decode_kv_bytes) / bw / _measured_step_s(point)


def max_distinct_experts(point) -> float:
    """The most distinct routed experts per MoE layer that a decode step of ``point`` can have
    read on average, given its measured speed.

    The step is given the whole measured time (prefill free, see :func:`implied_bandwidth_share`)
    and the HBM its preset's achievable bandwidth (datasheet x ``bw_efficiency``, the STREAM
    ratio of [AZURE]); the dense weights and the KV cache (each KV head once) are read first, and
    what bandwidth is left reads whole experts, each ``routed params / n_experts`` parameters
    across the MoE layers. A value at or above the model's ``n_experts`` says nothing; below the
    expected count under uniform routing (``RooflineResult.distinct_experts``) it says the run's
    routing was more concentrated than uniform."""
    point = _decode_row("max_distinct_experts()", point)
    spec = point.spec()
    routed = sum(m.params for m in spec.matrices() if m.is_routed_expert)
    if not routed:
        raise ValueError(f"max_distinct_experts(): point {point.id!r} is of the dense model "
                         f"{point.model!r}; pass a row of a mixture-of-experts model")
    r = _bare_roofline(point)
    per_expert = routed / spec.n_experts * r.bytes_per_param  # one expert in every MoE layer
    other = r.decode_weight_bytes - r.distinct_experts * per_expert + r.decode_kv_bytes
    g = gpu_mod.get(point.gpu)
    budget = _measured_step_s(point) * point.n_gpus * g.hbm_bandwidth_gb_s * 1e9 * g.bw_efficiency
    return (budget - other) / per_expert


_SETTABLE = ("precision", "kv_reads_once", "kv_bytes")
"""Fields of :class:`~aimoe_lib.gpu.PublishedPoint` an open setup fact may change."""


@dataclass(frozen=True)
class OpenSetup:
    """A setup fact a source leaves open: which rows it concerns, the reading the model uses and
    the other one."""

    source: str
    """Key of the source in the data file."""
    fact: str
    """What is open, e.g. 'attention kernel of the generation phase'."""
    models: tuple[str, ...]
    """Models of the rows it concerns."""
    precisions: tuple[str, ...]
    """Weight formats of the rows it concerns."""
    as_modelled: str
    """The reading the model uses."""
    setting: tuple[tuple[str, object], ...]
    """The other reading as (row field, value) pairs; the fields: ``precision``,
    ``kv_reads_once``, ``kv_bytes``."""
    reading: str
    """The other reading in words."""
    evidence: str
    """What the sources say, quoted."""

    def applies(self, point: gpu_mod.PublishedPoint) -> bool:
        """True for a row of this source, model and weight format."""
        return (point.source_key == self.source and point.model in self.models
                and point.precision in self.precisions)

    def other(self, point: gpu_mod.PublishedPoint) -> gpu_mod.PublishedPoint:
        """``point`` under the other reading."""
        return replace(point, **dict(self.setting))


def open_setups() -> tuple[OpenSetup, ...]:
    """The ``open_setup`` entries of every source of ``data/gpu_published.json``."""
    out = []
    for key, src in gpu_mod.published_sources().items():
        for e in src.get("open_setup", ()):
            bad = sorted(set(e["setting"]) - set(_SETTABLE))
            if bad:
                raise ValueError(f"open_setups(): source {key!r} sets {bad} in 'open_setup'; "
                                 f"only {_SETTABLE} may be set")
            out.append(OpenSetup(key, e["fact"], tuple(e["models"]), tuple(e["precisions"]),
                                 e["as_modelled"], tuple(e["setting"].items()), e["reading"],
                                 e["evidence"]))
    return tuple(out)


@dataclass(frozen=True)
class AlternativeRow:
    """A published row as modelled and under the other reading of one open setup fact."""

    modelled: gpu_mod.PublishedRow
    """The row with the model's reading (the error the validation reports)."""
    setup: OpenSetup
    """The open fact."""
    other: gpu_mod.PublishedRow
    """The row under the other reading."""

    @property
    def error(self) -> float:
        """Error as modelled (:attr:`aimoe_lib.gpu.PublishedRow.error`)."""
        return self.modelled.error

    @property
    def other_error(self) -> float:
        """Error under the other reading."""
        return self.other.error


def alternative_readings(kind: str = "decode", power_model: str = "tdp"
                         ) -> tuple[AlternativeRow, ...]:
    """Every row of ``kind`` that an open setup fact concerns, under the model's reading and the
    other one (calibrated model; ``power_model`` as in :func:`aimoe_lib.gpu.roofline`)."""
    setups = open_setups()
    out = []
    for p in gpu_mod.published_points(kind):
        concerned = [s for s in setups if s.applies(p)]
        if not concerned:
            continue
        modelled = gpu_mod.PublishedRow(p, p.predict(True, power_model))  # once per row
        for s in concerned:
            q = s.other(p)
            out.append(AlternativeRow(modelled, s,
                                      gpu_mod.PublishedRow(q, q.predict(True, power_model))))
    return tuple(out)


def format_alternative_readings(rows=None) -> str:
    """A plain-text table: row, the other reading, error as modelled and under the other
    reading, and the implied bandwidth share (:func:`implied_bandwidth_share`) under each; then
    each open fact with its evidence."""
    rows = alternative_readings() if rows is None else rows
    rows = checks.items("format_alternative_readings()", "rows", rows,
                        fix="pass the rows of gpu_readings.alternative_readings()")
    for r in rows:
        checks.instance("format_alternative_readings()", "rows", r, AlternativeRow)
    tags = [", ".join(f"{k}={v}" for k, v in r.setup.setting) for r in rows]
    w = max(len("measurement"), *(len(r.modelled.point.id) for r in rows))
    t = max(len("other reading"), *(len(g) for g in tags))
    head = (f"{'measurement':{w}} {'other reading':{t}} {'error':>8} {'other':>8} "
            f"{'bw share':>8} {'other':>6}")
    lines = [head, "-" * len(head)]
    for r, tag in zip(rows, tags, strict=True):
        p, q = r.modelled.point, r.other.point
        lines.append(f"{p.id:{w}} {tag:{t}} {r.error:+8.1%} {r.other_error:+8.1%} "
                     f"{implied_bandwidth_share(p):8.2f} {implied_bandwidth_share(q):6.2f}")
    lines.append("")
    for s in dict.fromkeys(r.setup for r in rows):
        tag = ", ".join(f"{k}={v}" for k, v in s.setting)
        lines += textwrap.wrap(f"[{tag}] {s.fact} ({s.source}): modelled as {s.as_modelled}; "
                               f"other reading: {s.reading}. Evidence: {s.evidence}.", 100,
                               subsequent_indent="    ")
    return "\n".join(lines)


PROMPT_ASSUMPTION = "A-GPU-ENERGY-PROMPT"
"""The named assumption (book appendix) that supplies the prompt length of published rows whose
source does not state it; a row's ``note`` names it where it applies."""


def prompt_assumed(kind: str = "decode") -> tuple[gpu_mod.PublishedPoint, ...]:
    """The rows of ``kind`` whose prompt length comes from :data:`PROMPT_ASSUMPTION`."""
    return tuple(p for p in gpu_mod.published_points(kind) if PROMPT_ASSUMPTION in p.note)


@dataclass(frozen=True)
class PromptReading:
    """The validation with every assumed prompt length set to :attr:`prompt_len`."""

    prompt_len: int
    """The prompt length given to every row of :func:`prompt_assumed`."""
    power_model: gpu_mod.PowerModel
    """:func:`aimoe_lib.gpu.fit_power_model` on the energy table's fit rows so read."""
    decode: tuple[gpu_mod.PublishedRow, ...]
    """The decode rows of :func:`prompt_assumed` so read (calibrated model; the decode model has
    no power term, so nothing is refitted for them)."""
    energy: tuple[gpu_mod.PublishedRow, ...]
    """Every energy row with :attr:`power_model`, the assumed ones so read."""
    harness_power: tuple[float, ...]
    """:attr:`power_model`'s error on the board power this project's harness measured on one
    H200 (:func:`aimoe_lib.gpu.measured_validation`, CUDA-graph rows), at each run's measured
    step time: predicted / measured - 1. Every setting of those runs is known and none was used
    by a fit, so they check the power model independently of the published rows."""

    @property
    def harness_power_rms(self) -> float:
        """Root-mean-square of :attr:`harness_power`."""
        return math.sqrt(sum(e * e for e in self.harness_power) / len(self.harness_power))

    @property
    def at_grid_edge(self) -> tuple[str, ...]:
        """The power model's shares that the fit left at an end of its grid
        (:data:`aimoe_lib.gpu.POWER_FIT_GRID`): the data want a value beyond it."""
        return tuple(k for k, (lo, hi, _) in gpu_mod.POWER_FIT_GRID.items()
                     if getattr(self.power_model, k) in (lo, hi))

    def within(self, kind: str, tolerance: float) -> tuple[int, int]:
        """(rows within ``tolerance``, rows used) among :attr:`decode` or :attr:`energy`;
        excluded rows are not counted."""
        rows = checks.choice("PromptReading.within()", "kind", kind, ("decode", "energy"))
        used = [r for r in getattr(self, rows) if r.point.role != "excluded"]
        return sum(abs(r.error) <= tolerance for r in used), len(used)


def prompt_readings(prompts=(128, 512, 2048)) -> tuple[PromptReading, ...]:
    """One :class:`PromptReading` per prompt length in ``prompts`` (whole tokens, 1 to
    ``gpu.MAX_GEN_LEN``). The value the data file uses (512) reproduces the book's
    power model and errors. Generated lengths are left as the file has them (ML.ENERGY
    publishes its mean answer length; the Alice benchmark's 256 is part of the same
    assumption and kept)."""
    prompts = checks.items("prompt_readings()", "prompts", prompts,
                           fix="pass prompt lengths, e.g. (128, 512, 2048)")
    prompts = [checks.integer("prompt_readings()", "prompts", n, minimum=1,
                              maximum=gpu_mod.MAX_GEN_LEN, noun="a whole number of tokens",
                              fix="pass each prompt length as a whole number of tokens from 1 "
                                  f"to {gpu_mod.MAX_GEN_LEN:,}") for n in prompts]
    decode, energy = prompt_assumed("decode"), {p.id for p in prompt_assumed("energy")}
    table, harness = gpu_mod.published_points("energy"), gpu_mod.measured_validation()
    out = []
    for n in prompts:
        rows = [replace(p, prompt_len=n) if p.id in energy else p for p in table]
        pm = gpu_mod.fit_power_model(points=[p for p in rows if p.role == "fit"])
        out.append(PromptReading(
            n, pm,
            tuple(gpu_mod.PublishedRow(q, q.predict(True, "tdp"))
                  for q in (replace(p, prompt_len=n) for p in decode)),
            tuple(gpu_mod.PublishedRow(q, q.predict(True, pm)) for q in rows),
            tuple(c.power_error_under(pm) for c in harness)))
    return tuple(out)


def format_prompt_readings(readings=None, decode_tolerance: float = 0.25,
                           energy_tolerance: float = 0.35) -> str:
    """A plain-text table, one line per prompt length: the refitted power model's two shares,
    and how many rows fall within the bars (decode: the rows of :func:`prompt_assumed`; energy:
    every used row) with the range of their errors; and the power model's root-mean-square error
    on the harness's H200 board power (:attr:`PromptReading.harness_power_rms`). A share the fit
    left at an end of its grid is marked ``*``."""
    readings = prompt_readings() if readings is None else readings
    readings = checks.items("format_prompt_readings()", "readings", readings,
                            fix="pass the result of gpu_readings.prompt_readings()")
    for r in readings:
        checks.instance("format_prompt_readings()", "readings", r, PromptReading)

    def span(rows) -> str:
        e = [r.error for r in rows if r.point.role != "excluded"]
        return f"{min(e):+.0%} to {max(e):+.0%}"

    head = (f"{'prompt':>6} {'HBM share':>9} {'TC share':>8} | "
            f"{'decode ±' + format(decode_tolerance, '.0%'):>11} {'errors':>14} | "
            f"{'energy ±' + format(energy_tolerance, '.0%'):>11} {'errors':>14} | "
            f"{'H200 W rms':>10}")
    lines = [head, "-" * len(head)]
    for r in readings:
        di, dn = r.within("decode", decode_tolerance)
        ei, en = r.within("energy", energy_tolerance)
        mem, comp = (f"{getattr(r.power_model, k):.2f}" + ("*" if k in r.at_grid_edge else "")
                     for k in ("mem_fraction", "comp_fraction"))
        lines.append(f"{r.prompt_len:6d} {mem:>9} {comp:>8} | {f'{di}/{dn}':>11} "
                     f"{span(r.decode):>14} | {f'{ei}/{en}':>11} {span(r.energy):>14} | "
                     f"{r.harness_power_rms:10.1%}")
    return "\n".join(lines)
