"""Figures of chapter 7, "Against GPUs": the GPU roofline (:mod:`aimoe_lib.gpu`) next to the
simulated 3D AIMC chip (:mod:`aimoe_lib.gpu_comparison`, which sizes the chip and simulates).

Every figure function builds a ``matplotlib.figure.Figure`` in the house style of
:mod:`aimoe_lib.viz.style` (plain numbers on log axes), with a title, axis labels with units and a
one-line takeaway computed from the plotted numbers (``fig.get_supxlabel()``), and returns it. GPU
numbers are *modelled* (roofline at datasheet power) unless a panel says *measured*; AIMC numbers
are *simulated* on chips of ``preset`` (default the book's, :data:`~aimoe_lib.experiments.PRESET`).
Where AIMC energy is shown, its dynamic part (total minus static power x run time) is shown beside
the total.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .. import gpu as gpu_mod
from ..experiments import PRESET
from ..gpu_comparison import (
    CHIP_TIERS,
    DEFAULT_BATCHES,
    Comparison,
    aimc_point,
    aimc_sweep,
    compare,
    distinct_experts,
    model_spec,
)
from .static import StaticSlider, static_slider
from .style import FONT_SIZE, figure, finish, format_number, plain_log_axes

__all__ = [
    "headline",
    "step_breakdown",
    "moe_penalty",
    "context_sweep",
    "crossover_context",
    "validation_figure",
    "compare_bars",
    "format_comparison",
    "dynamic_energy_per_token_j",
]

C_AIMC = "tab:blue"
C_GPU = {"a100": "tab:gray", "h100": "tab:orange", "h200": "tab:red"}


def dynamic_energy_per_token_j(a) -> float:
    """Dynamic energy per generated token of an :class:`~aimoe_lib.gpu_comparison.AimcPoint`, J:
    its total less the static (passive) share."""
    return a.energy_per_token_j * (1.0 - a.passive_fraction)


def _mj(v_j: float) -> str:
    return f"{format_number(v_j * 1e3)} mJ"


def format_comparison(c: Comparison) -> str:
    """A plain-text table of one comparison: the AIMC chip's energy per token in total and
    dynamic, its average and static power, and the GPU's operating point (roofline at TDP)."""
    a, g = c.aimc, c.gpu
    dyn = dynamic_energy_per_token_j(a)
    avg_w = a.energy_per_token_j * a.tokens_per_s
    static = f"{a.passive_power_w:,.2f}" if a.passive_power_w < 100 else f"{a.passive_power_w:,.0f}"
    rows = [("tokens/s", f"{a.tokens_per_s:,.0f}", f"{g.tokens_per_s:,.0f}"),
            ("time per output token", f"{a.tpot_s * 1e3:.3f} ms",
             f"{g.time_per_output_token_s * 1e3:.3f} ms"),
            ("time to first token", f"{a.ttft_s * 1e3:.3f} ms", f"{g.ttft_s * 1e3:.3f} ms"),
            ("energy per token", _mj(a.energy_per_token_j), _mj(g.energy_per_token_j)),
            ("  of it dynamic", f"{_mj(dyn)} ({1 - a.passive_fraction:.0%})", "not split"),
            ("average power", f"{avg_w:,.1f} W ({static} W static)", f"{g.power_w:,.0f} W (TDP)"),
            ("silicon area", f"{a.area_mm2:,.0f} mm²", f"{g.silicon_area_mm2:,.0f} mm² (dies)")]
    head = (f"{'':24}{'3D AIMC ' + str(a.n_tiers) + ' tiers (simulated)':>32}"
            f"{str(g.n_gpus) + ' x ' + g.gpu + ' (roofline)':>34}")
    return "\n".join([head] + [f"{k:24}{x:>32}{y:>34}" for k, x, y in rows])


# ====================================================================================== figures
def headline(model: str = "mixtral-8x7b", gpus=("a100", "h100", "h200"), n_tiers=(64, 1024),
             batches=DEFAULT_BATCHES, prompt_len: int = 16, gen_len: int = 16,
             preset: str = PRESET) -> Figure:
    """Four panels over batch size: tokens/s, time per output token, energy per token (simulated
    AIMC chips of ``n_tiers`` tiers per tile and ``preset``, total and dynamic, vs GPU rooflines at
    datasheet power) and silicon area."""
    spec = model_spec(model)
    bs = list(batches)
    tiers = [n_tiers] if isinstance(n_tiers, int) else list(n_tiers)
    aimc = {t: aimc_sweep(spec.name, t, bs, prompt_len, gen_len, preset=preset) for t in tiers}
    gpus = list(gpus)
    roof = {g: gpu_mod.sweep_batches(spec, g, bs, prompt_len=prompt_len, gen_len=gen_len)
            for g in gpus}
    fig = figure(10.5, 7.4)
    axs = fig.subplots(2, 2)
    styles = ["o-", "^-", "v-", "D-"]
    shades = [C_AIMC, "tab:cyan", "tab:purple", "tab:green"]
    series = [
        (axs[0, 0], "tokens per second", lambda a: a.tokens_per_s, lambda r: r.tokens_per_s,
         "throughput (generated tokens/s)"),
        (axs[0, 1], "time per output token", lambda a: a.tpot_s * 1e3,
         lambda r: r.time_per_output_token_s * 1e3, "time per output token (ms)"),
        (axs[1, 0], "energy per token (AIMC dotted: dynamic only)", lambda a: a.energy_per_token_j,
         lambda r: r.energy_per_token_j, "energy per generated token (J)"),
    ]
    for ax, title, fa, fg, ylab in series:
        for i, t in enumerate(tiers):
            ax.plot(bs, [fa(a) for a in aimc[t]], styles[i % 4], color=shades[i % 4],
                    label=f"3D AIMC, {t} tiers (simulated, {preset})")
        for g in gpus:
            rr = roof[g]
            ax.plot(bs, [fg(r) for r in rr], "s--", color=C_GPU.get(g, "k"),
                    label=f"{rr[0].n_gpus} x {rr[0].gpu} (roofline, TDP)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch (sequences)")
        ax.set_ylabel(ylab)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    for i, t in enumerate(tiers):
        axs[1, 0].plot(bs, [dynamic_energy_per_token_j(a) for a in aimc[t]], styles[i % 4][0] + ":",
                       color=shades[i % 4], mfc="none")
    axs[0, 0].legend(fontsize=FONT_SIZE - 2)
    ax = axs[1, 1]
    names_ = ([f"AIMC\n{t} tiers" for t in tiers]
              + [f"{roof[g][0].n_gpus} x\n{g.upper()}" for g in gpus])
    areas = [aimc[t][0].area_mm2 for t in tiers] + [roof[g][0].silicon_area_mm2 for g in gpus]
    colors = [shades[i % 4] for i in range(len(tiers))] + [C_GPU.get(g, "k") for g in gpus]
    ax.bar(names_, areas, color=colors)
    ax.set_ylabel("silicon area (mm²; GPU: dies only)")
    ax.set_ylim(0, max(areas) * 1.12)
    ax.set_title("silicon area")
    for i, v in enumerate(areas):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=FONT_SIZE - 1)
    ref = roof["h100"] if "h100" in roof else roof[gpus[0]]
    a0 = aimc[tiers[0]]
    i8 = bs.index(8) if 8 in bs else 0
    takeaway = (f"batch {bs[i8]}: AIMC ({tiers[0]} tiers) {a0[i8].tokens_per_s:,.0f} vs "
                f"{ref[i8].n_gpus} x {ref[i8].gpu} {ref[i8].tokens_per_s:,.0f} tokens/s, "
                f"{format_number(a0[i8].energy_per_token_j * 1e3)} "
                f"({format_number(dynamic_energy_per_token_j(a0[i8]) * 1e3)} dynamic) vs "
                f"{format_number(ref[i8].energy_per_token_j * 1e3)} mJ/token; "
                f"area {a0[0].area_mm2:,.0f} vs {ref[0].silicon_area_mm2:,.0f} mm²")
    plain_log_axes(fig)
    return finish(fig, f"{spec.name}: 3D AIMC (simulated, {preset}) vs GPUs (roofline), "
                       f"{prompt_len} + {gen_len} tokens per sequence", takeaway)


def _step_components(rr, g: gpu_mod.GPUSpec, n: int, compute: str = "bf16"):
    """Per decode step (ms): weight-read time, KV time, compute time, all-reduce time."""
    bw = n * g.achievable_bandwidth_gb_s * 1e9
    fl = n * g.peak_tflops(compute) * 1e12 * g.flop_efficiency
    return (np.array([r.decode_weight_bytes / bw for r in rr]) * 1e3,
            np.array([r.decode_kv_bytes / bw for r in rr]) * 1e3,
            np.array([r.decode_flops / fl for r in rr]) * 1e3,
            np.array([r.decode_comm_s for r in rr]) * 1e3)


def _components_panel(ax, xs, comps, xlabel: str, title: str) -> None:
    t_w, t_kv, t_c, t_ar = comps
    ax.stackplot(xs, t_w, t_kv, labels=["read weights (HBM)", "read/write KV cache (HBM)"],
                 colors=["tab:orange", "tab:purple"], alpha=0.6)
    ax.plot(xs, t_c, "k-", lw=2, label="compute (tensor cores)")
    if np.any(t_ar > 0):
        ax.plot(xs, t_ar, "k:", lw=1.5, label="all-reduce (added)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time per decode step (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def step_breakdown(model: str = "llama-2-7b", gpu: str = "h100",
                   batches=(1, 4, 16, 64, 256, 1024), contexts=(16, 64, 256, 1024, 4096),
                   context_batch: int = 16, prompt_len: int = 16, gen_len: int = 16) -> Figure:
    """Why a GPU decode step takes what it takes (roofline): the time to read the weights, to
    read and write the KV cache, to compute, and the all-reduces, over batch size (at a short
    context) and over context length (at ``context_batch`` sequences). The roofline charges the
    larger of HBM time (stacked) and compute time (line), plus the all-reduces."""
    spec = model_spec(model)
    g = gpu_mod.get(gpu)
    bs, cs = list(batches), list(contexts)
    n = max(gpu_mod.fewest_gpus(spec, g, bs[-1], prompt_len, gen_len),
            gpu_mod.fewest_gpus(spec, g, context_batch, cs[-1], 2))
    rb = gpu_mod.sweep_batches(spec, g, bs, prompt_len=prompt_len, gen_len=gen_len, n_gpus=n)
    rc = [gpu_mod.roofline(spec, g, batch=context_batch, prompt_len=c, gen_len=2, n_gpus=n)
          for c in cs]
    cb, cc = _step_components(rb, g, n), _step_components(rc, g, n)
    fig = figure(10.5, 4.4)
    ax1, ax2 = fig.subplots(1, 2)
    _components_panel(ax1, bs, cb, "batch (sequences)",
                      f"over batch, {prompt_len} + {gen_len} tokens")
    _components_panel(ax2, cs, cc, "context (tokens in the KV cache)",
                      f"over context, batch {context_batch}")
    ax1.legend(fontsize=FONT_SIZE - 2)
    cross = next((b for b, w, k, c in zip(bs, *cb[:3], strict=True) if c > w + k), None)
    kv_over = next((c for c, w, k in zip(cs, cc[0], cc[1], strict=True) if k > w), None)
    takeaway = (f"batch 1: {cb[0][0]:.2f} ms reading weights, {cb[2][0] * 1e3:.0f} µs computing; "
                f"compute-bound from batch {cross if cross else '>' + str(bs[-1])}; KV traffic "
                f"outweighs weights from {kv_over if kv_over else '>' + str(cs[-1])} tokens "
                f"(batch {context_batch})")
    plain_log_axes(fig)
    return finish(fig, f"Anatomy of a GPU decode step: {spec.name} on {n} x {g.label} (roofline)",
                   takeaway)


def moe_penalty(model: str = "mixtral-8x7b", gpu: str = "h100", batches=DEFAULT_BATCHES,
                n_tiers: int = 64, prompt_len: int = 16, gen_len: int = 16,
                mc_tokens: int = 4096, preset: str = PRESET) -> Figure:
    """The MoE penalty: distinct experts per layer vs batch (closed form and Monte Carlo,
    :func:`~aimoe_lib.gpu_comparison.distinct_experts`), and the cost of the MoE relative to its
    active dense equivalent (:func:`aimoe_lib.gpu.active_dense_equivalent`) on the GPU (roofline)
    and on the 3D AIMC chip of ``preset`` (simulated; each model on its own smallest chip)."""
    spec = model_spec(model)
    if not spec.is_moe:
        raise ValueError(f"model={spec.name!r} is dense: the MoE penalty needs an MoE model")
    dense = gpu_mod.active_dense_equivalent(spec)
    bs = list(batches)
    e, k = spec.n_experts, spec.top_k
    experts = distinct_experts(spec, bs, mc_tokens)
    closed, mc = experts["closed"], experts["mc"]
    g_moe = gpu_mod.sweep_batches(spec, gpu, bs, prompt_len=prompt_len, gen_len=gen_len)
    n = g_moe[-1].n_gpus
    g_moe = gpu_mod.sweep_batches(spec, gpu, bs, prompt_len=prompt_len, gen_len=gen_len, n_gpus=n)
    g_den = gpu_mod.sweep_batches(dense, gpu, bs, prompt_len=prompt_len, gen_len=gen_len, n_gpus=n)
    a_moe = aimc_sweep(spec.name, n_tiers, bs, prompt_len, gen_len, preset=preset)
    a_den = [aimc_point(dense, n_tiers, b, prompt_len, gen_len, preset=preset) for b in bs]
    fig = figure(10.5, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(bs, closed, "-", color="k", label="E(1 - (1 - k/E)^B)")
    ax1.plot(bs, mc, "o", color="tab:purple", label=f"Monte Carlo, {mc_tokens} routed tokens")
    ax1.plot(bs, [min(b * k, e) for b in bs], ":", color="0.5", label="B·k (no sharing)")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("batch B (tokens per decode step)")
    ax1.set_ylabel("distinct experts per MoE layer")
    ax1.set_title(f"{spec.name}: {e} experts, top-{k}, uniform routing")
    ax1.legend(fontsize=FONT_SIZE - 2)
    ax1.grid(True, alpha=0.3)
    r_gpu = [m.time_per_output_token_s / d.time_per_output_token_s
             for m, d in zip(g_moe, g_den, strict=True)]
    r_aimc = [m.tpot_s / d.tpot_s for m, d in zip(a_moe, a_den, strict=True)]
    ax2.plot(bs, r_gpu, "s--", color=C_GPU.get(gpu, "k"), label=f"{n} x {gpu.upper()} (roofline)")
    ax2.plot(bs, r_aimc, "o-", color=C_AIMC,
             label=f"3D AIMC {n_tiers} tiers (simulated, {preset})")
    ax2.axhline(1.0, color="0.5", lw=1)
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("batch (sequences)")
    ax2.set_ylabel("time per token, MoE / dense equivalent")
    ax2.set_title("the price of routing")
    ax2.legend(fontsize=FONT_SIZE - 2)
    ax2.grid(True, alpha=0.3)
    i8 = bs.index(8) if 8 in bs else len(bs) - 1
    takeaway = (f"batch {bs[i8]}: {closed[i8]:.2f} of {e} experts read per layer; time per token, "
                f"MoE / dense equivalent: {r_gpu[i8]:.2f} on the GPU, {r_aimc[i8]:.2f} on 3D AIMC "
                f"({preset})")
    plain_log_axes(fig)
    return finish(fig, "Routing fragments a batch: the MoE penalty on GPUs and on 3D AIMC",
                   takeaway)


def crossover_context(contexts, aimc_s, gpu_s) -> float | None:
    """Context length where the AIMC time per token first exceeds the GPU's, interpolated
    linearly in log(context) and log(ratio) between the two grid points around it; None if it
    never does on the grid (or already does at the first point)."""
    c = np.log(np.asarray(contexts, dtype=float))
    r = np.log(np.asarray(aimc_s, dtype=float) / np.asarray(gpu_s, dtype=float))
    for i in range(1, len(c)):
        if r[i - 1] <= 0 < r[i]:
            f = -r[i - 1] / (r[i] - r[i - 1])
            return float(np.exp(c[i - 1] + f * (c[i] - c[i - 1])))
    return None


def context_sweep(model: str = "llama-2-7b", gpu: str = "h100", n_tiers: int = 64,
                  prompt_lens=(16, 64, 256, 1024, 2048, 4096), batch: int = 1,
                  gen_len: int = 3, preset: str = PRESET) -> Figure:
    """Time per output token over context length: the GPU roofline (weights + KV traffic) and the
    simulated AIMC chip of ``preset`` (attention as costed by its
    :class:`aimoe_lib.hardware.CostModel`; KV cache beyond the chip's capacity read from off-chip
    memory)."""
    spec = model_spec(model)
    ps = list(prompt_lens)
    a = [aimc_point(spec.name, n_tiers, batch, p, gen_len, preset=preset) for p in ps]
    g = [gpu_mod.roofline(spec, gpu, batch=batch, prompt_len=p, gen_len=gen_len) for p in ps]
    fig = figure(7.0, 4.3)
    ax = fig.subplots()
    ctx = [p + 1 for p in ps]
    ax.plot(ctx, [x.tpot_s * 1e3 for x in a], "o-", color=C_AIMC,
            label=f"3D AIMC {n_tiers} tiers (simulated, {preset})")
    ax.plot(ctx, [x.time_per_output_token_s * 1e3 for x in g], "s--", color=C_GPU.get(gpu, "k"),
            label=f"{g[0].n_gpus} x {g[0].gpu} (roofline)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens in the KV cache)")
    ax.set_ylabel("time per output token (ms)")
    ax.legend(fontsize=FONT_SIZE - 1)
    ax.grid(True, which="both", alpha=0.3)
    cross = crossover_context(ctx, [x.tpot_s for x in a], [y.time_per_output_token_s for y in g])
    takeaway = (f"batch {batch}: AIMC {a[0].tpot_s * 1e3:.2f} -> {a[-1].tpot_s * 1e3:.2f} ms, GPU "
                f"{g[0].time_per_output_token_s * 1e3:.2f} -> "
                f"{g[-1].time_per_output_token_s * 1e3:.2f} ms; "
                + (f"the GPU is faster beyond about {cross:,.0f} tokens of context" if cross
                   else f"AIMC stays faster up to {ctx[-1]:,} tokens"))
    plain_log_axes(fig)
    return finish(fig, f"{spec.name}: long contexts move the bottleneck to attention and the KV "
                       "cache", takeaway)


def validation_figure(rows=None, tolerance: float = 0.30) -> Figure:
    """Roofline vs published measurements (:data:`aimoe_lib.gpu.MEASUREMENTS`): predicted against
    measured time, with the ±``tolerance`` band; points are numbered as in the legend."""
    rows = gpu_mod.validation_table() if rows is None else rows
    meas = np.array([r.measurement.value for r in rows]) * 1e3
    pred = np.array([r.predicted for r in rows]) * 1e3
    fig = figure(10.5, 4.8)
    ax = fig.subplots()
    lo, hi = min(meas.min(), pred.min()) / 1.5, max(meas.max(), pred.max()) * 1.5
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, "k-", lw=1, label="roofline = measured")
    ax.fill_between(xs, xs * (1 - tolerance), xs * (1 + tolerance), color="0.88",
                    label=f"±{tolerance:.0%}")
    for i, (r, x, y) in enumerate(zip(rows, meas, pred, strict=True), start=1):
        ok = abs(r.error) <= tolerance
        ax.plot(x, y, "o" if ok else "X", color="tab:blue" if ok else "tab:red", ms=7,
                label=f"{i}: {r.measurement.label} ({r.measurement.metric[:4]}, {r.error:+.0%})")
        ax.annotate(str(i), (x, y), fontsize=FONT_SIZE - 1, xytext=(5, -4 if i % 2 else 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured (published) time, ms")
    ax.set_ylabel("roofline time, ms")
    ax.legend(fontsize=FONT_SIZE - 2, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.grid(True, which="both", alpha=0.3)
    inside = sum(abs(r.error) <= tolerance for r in rows)
    worst = max(rows, key=lambda r: abs(r.error))
    takeaway = (f"{inside} of {len(rows)} published points within ±{tolerance:.0%}; worst: "
                f"{worst.measurement.label} ({worst.error:+.0%})")
    plain_log_axes(fig)
    return finish(fig, "GPU roofline vs published measurements", takeaway)


def compare_bars(model: str = "mixtral-8x7b", batch: int = 8, gpu: str = "h100",
                 chip: str = "3d-64", prompt_len: int = 16, gen_len: int = 16,
                 preset: str = PRESET) -> Figure:
    """One workload, side by side: tokens/s, time per output token, energy per token (the AIMC
    chip's total and dynamic) and area of the AIMC chip preset ``chip``
    (:data:`~aimoe_lib.gpu_comparison.CHIP_TIERS`) of cost preset ``preset`` and the GPU
    (roofline at datasheet power). The first three panels are logarithmic: the two machines
    differ by orders of magnitude."""
    if chip not in CHIP_TIERS:
        raise ValueError(f"chip={chip!r}: choose one of {', '.join(CHIP_TIERS)}")
    c = compare(model, gpu, batch, CHIP_TIERS[chip], prompt_len, gen_len, preset=preset)
    a, g = c.aimc, c.gpu
    dyn = dynamic_energy_per_token_j(a)
    fig = figure(10.5, 3.6)
    axs = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1.4, 1]})
    aimc_label, gpu_label = f"AIMC\n{chip}", f"{g.n_gpus} x\n{gpu.upper()}"
    data = [("tokens/s", [aimc_label, gpu_label], [a.tokens_per_s, g.tokens_per_s], True),
            ("time per output token (ms)", [aimc_label, gpu_label],
             [a.tpot_s * 1e3, g.time_per_output_token_s * 1e3], True),
            ("energy per token (mJ)", [aimc_label + "\ntotal", aimc_label + "\ndynamic", gpu_label],
             [a.energy_per_token_j * 1e3, dyn * 1e3, g.energy_per_token_j * 1e3], True),
            ("silicon area (mm²)", [aimc_label, gpu_label], [a.area_mm2, g.silicon_area_mm2],
             False)]
    for ax, (ylab, labels, values, log) in zip(axs, data, strict=True):
        colors = [C_AIMC] * (len(values) - 1) + [C_GPU.get(gpu, "k")]
        bars = ax.bar(labels, values, color=colors)
        if len(values) == 3:
            bars[1].set_hatch("//")
            bars[1].set_facecolor("white")
            bars[1].set_edgecolor(C_AIMC)
        ax.set_ylabel(ylab)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(values) / 3, max(values) * 4)
        else:
            ax.set_ylim(0, max(values) * 1.15)
        for i, v in enumerate(values):
            ax.text(i, v, format_number(v), ha="center", va="bottom", fontsize=FONT_SIZE - 1)
        ax.tick_params(axis="x", labelsize=FONT_SIZE - 2)
    takeaway = (f"AIMC ({preset}) / GPU (roofline at TDP): {format_number(c.speedup)}x tokens/s, "
                f"{format_number(c.area_ratio)}x area; GPU / AIMC energy per token "
                f"{format_number(c.energy_ratio)}x ({format_number(g.energy_per_token_j / dyn)}x "
                f"of the dynamic energy); AIMC bottleneck: {a.bottleneck}, "
                f"GPU decode {g.decode_bound}-bound")
    plain_log_axes(fig)
    return finish(fig, f"{model_spec(model).name}, batch {batch}, {prompt_len} + {gen_len} tokens",
                  takeaway)


# ====================================================================== operating points (fair)
from ..gpu_comparison import (  # noqa: E402 - grouped with the figures that use them
    AIMC_PARETO_BATCHES,
    PARETO_BATCHES,
    GpuOperatingPoint,
    OperatingComparison,
    aimc_curve,
    compare_operating_points,
    gpu_curve,
)

__all__ += ["operating_points", "format_operating_comparisons", "published_validation_figure"]

C_PREC = {"bf16": "tab:gray", "fp8": "tab:orange", "int8": "tab:brown", "int4": "tab:red"}


def operating_points(model: str = "mixtral-8x7b", gpu: str = "h100", precision: str = "fp8",
                     n_gpus: int = 0, n_tiers: int = 64, preset: str = PRESET,
                     tpot_target_ms: float = 50.0, prompt_len: int = 16,
                     gen_len: int = 16) -> Figure:
    """The chapter's headline: throughput against time per output token (left) and energy per
    token against throughput (right) over batch sizes, for the GPU (calibrated roofline, fitted
    power; ``precision`` solid, bf16 dashed for reference; ``n_gpus=0``: the fewest that hold
    the largest batch) and the simulated AIMC chip of ``n_tiers`` tiers and ``preset`` (total
    energy solid, dynamic dotted). Every argument is a scalar. The takeaway compares both at
    their best batch within ``tpot_target_ms``."""
    spec = model_spec(model)
    n = None if not n_gpus else int(n_gpus)
    op = GpuOperatingPoint(gpu=gpu, precision=precision, n_gpus=n)
    precs = [precision] + (["bf16"] if precision != "bf16" else [])
    curves = {p: gpu_curve(spec, GpuOperatingPoint(gpu=gpu, precision=p, n_gpus=n),
                           PARETO_BATCHES, prompt_len, gen_len) for p in precs}
    a = aimc_curve(spec.name, n_tiers, preset, AIMC_PARETO_BATCHES, prompt_len, gen_len)
    fig = figure(11.0, 4.8)
    ax1, ax2 = fig.subplots(1, 2)
    for p, rr in curves.items():
        if not rr:
            continue
        lab = f"{rr[0].n_gpus} x {rr[0].gpu}, {p} (calibrated roofline)"
        style = "s-" if p == precision else "s--"
        ax1.plot([r.time_per_output_token_s * 1e3 for r in rr], [r.tokens_per_s for r in rr],
                 style, color=C_PREC.get(p, "k"), label=lab)
        ax2.plot([r.tokens_per_s for r in rr], [r.energy_per_token_j * 1e3 for r in rr], style,
                 color=C_PREC.get(p, "k"), label=lab)
        for r in rr:
            if r.batch in (1, 8, 64, 512):
                ax1.annotate(f"B={r.batch}", (r.time_per_output_token_s * 1e3, r.tokens_per_s),
                             fontsize=FONT_SIZE - 3, xytext=(3, -9), textcoords="offset points")
    lab = f"3D AIMC, {n_tiers} tiers ({preset}, simulated)"
    ax1.plot([x.tpot_s * 1e3 for x in a], [x.tokens_per_s for x in a], "o-", color=C_AIMC,
             label=lab)
    for x in a:
        ax1.annotate(f"B={x.batch}", (x.tpot_s * 1e3, x.tokens_per_s), fontsize=FONT_SIZE - 3,
                     xytext=(3, 4), textcoords="offset points", color=C_AIMC)
    ax2.plot([x.tokens_per_s for x in a], [x.energy_per_token_j * 1e3 for x in a], "o-",
             color=C_AIMC, label=lab + ", total")
    ax2.plot([x.tokens_per_s for x in a], [dynamic_energy_per_token_j(x) * 1e3 for x in a], "o:",
             color=C_AIMC, mfc="none", label=lab + ", dynamic")
    ax1.axvline(tpot_target_ms, color="0.5", lw=1, ls="-.")
    ax1.text(tpot_target_ms, 0.03, f" {tpot_target_ms:g} ms target", fontsize=FONT_SIZE - 2,
             color="0.4", rotation=90, va="bottom", transform=ax1.get_xaxis_transform())
    for ax, xl, yl, t in ((ax1, "time per output token (ms)", "throughput (generated tokens/s)",
                           "throughput vs latency (batch 1 ... 512)"),
                          (ax2, "throughput (generated tokens/s)", "energy per token (mJ)",
                           "energy per token vs throughput")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(t)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=FONT_SIZE - 3, loc="lower left")
    ax2.legend(fontsize=FONT_SIZE - 3, loc="upper right")
    c = compare_operating_points(spec.name, op, n_tiers, preset, (tpot_target_ms / 1e3,),
                                 PARETO_BATCHES, AIMC_PARETO_BATCHES, prompt_len, gen_len)[0]
    if c.aimc is None or c.gpu is None:
        who = "GPU" if c.gpu is None else "AIMC chip"
        takeaway = f"no {who} batch meets {tpot_target_ms:g} ms per output token"
    else:
        takeaway = (f"best batch within {tpot_target_ms:g} ms: AIMC B={c.aimc.batch} "
                    f"{c.aimc.tokens_per_s:,.0f} vs GPU B={c.gpu.batch} "
                    f"{c.gpu.tokens_per_s:,.0f} tokens/s ({c.throughput_ratio:.2g}x); per mm² "
                    f"(HBM counted) {c.per_area_ratio:.2g}x; per W {c.per_power_ratio:.2g}x "
                    f"({c.per_power_dynamic_ratio:.2g}x vs AIMC dynamic)")
    plain_log_axes(fig)
    g0 = curves[precision][0] if curves[precision] else None
    side = (f"{g0.n_gpus} x {g0.gpu} {precision}" if g0 else f"{gpu} {precision}")
    return finish(fig, f"{spec.name}, {prompt_len} + {gen_len} tokens: {side} vs 3D AIMC "
                       f"{n_tiers} tiers ({preset})", takeaway)


def format_operating_comparisons(rows) -> str:
    """A plain-text table of :func:`~aimoe_lib.gpu_comparison.compare_operating_points` rows:
    target, preset, each side's best batch, tokens/s, energy per token (AIMC total and dynamic),
    power and area, and the ratios."""
    head = (f"{'TPOT':>6} {'preset':>8} | {'AIMC B':>6} {'tok/s':>9} {'mJ/tok':>7} {'dyn':>6} "
            f"{'W':>6} {'mm²':>6} | {'GPU B':>5} {'tok/s':>8} {'mJ/tok':>7} {'W':>6} "
            f"{'mm²':>6} | {'tok/s':>6} {'/mm²':>6} {'/W':>6}")
    lines = [head, "-" * len(head)]
    for c in rows:
        checks_ok = isinstance(c, OperatingComparison)
        if not checks_ok:
            raise ValueError(f"format_operating_comparisons(rows=...): {c!r} is not an "
                             "OperatingComparison; pass compare_operating_points() rows")
        t = f"{c.tpot_target_s * 1e3:g}ms"
        if c.aimc is None or c.gpu is None:
            lines.append(f"{t:>6} {c.preset:>8} | none meets the target "
                         f"({'GPU' if c.gpu is None else 'AIMC'})")
            continue
        a, g = c.aimc, c.gpu
        aw = a.energy_per_token_j * a.tokens_per_s
        lines.append(
            f"{t:>6} {c.preset:>8} | {a.batch:6d} {a.tokens_per_s:9,.0f} "
            f"{a.energy_per_token_j * 1e3:7.2f} {dynamic_energy_per_token_j(a) * 1e3:6.2f} "
            f"{aw:6.0f} {a.area_mm2:6.0f} | {g.batch:5d} {g.tokens_per_s:8,.0f} "
            f"{g.energy_per_token_j * 1e3:7.1f} {g.power_w:6.0f} {g.package_area_mm2:6.0f} | "
            f"{c.throughput_ratio:5.2g}x {c.per_area_ratio:5.2g}x {c.per_power_ratio:5.2g}x")
    return "\n".join(lines)


def published_validation_figure(rows=None, tolerance: float = 0.25) -> Figure:
    """The model's error on the published points (``rows`` of
    :func:`aimoe_lib.gpu.published_validation`, default the decode table) in two panels: by source
    (one line per source, its rows spread across the line) and against batch size; fit, held-out
    and excluded rows marked apart, with the ±``tolerance`` band. Each row's name and numbers are
    in :func:`aimoe_lib.gpu.format_published_validation`."""
    if rows is None:
        rows = gpu_mod.published_validation("decode")
    rows = list(rows)
    if not rows:
        raise ValueError("published_validation_figure(): rows is empty; pass the rows of "
                         "gpu.published_validation()")
    sources = list(dict.fromkeys(r.point.source_key for r in rows))
    fig = figure(10.0, 1.9 + 0.34 * len(sources))
    by_src, by_batch = fig.subplots(1, 2, width_ratios=(1.25, 1.0))
    marks = {"fit": ("o", "tab:blue"), "heldout": ("D", "tab:orange"), "excluded": ("x", "0.5")}
    groups = {k: [i for i, r in enumerate(rows) if r.point.source_key == k] for k in sources}
    # a row's height on its source's line: spread evenly in file order (no jitter)
    y = np.empty(len(rows))
    for line, idx in enumerate(groups.values()):
        y[idx] = line - 0.3 + 0.6 * (np.arange(len(idx)) + 0.5) / len(idx)
    for role, (m, col) in marks.items():
        idx = [i for i, r in enumerate(rows) if r.point.role == role]
        if not idx:
            continue
        err = [rows[i].error * 100 for i in idx]
        by_src.scatter(err, [y[i] for i in idx], marker=m, color=col, s=18, zorder=3,
                       label=f"{role} ({len(idx)})")
        by_batch.scatter([rows[i].point.batch for i in idx], err, marker=m, color=col, s=18,
                         zorder=3)
    for line, idx in enumerate(groups.values()):  # used rows within the band, at the line's end
        used = [rows[i] for i in idx if rows[i].point.role != "excluded"]
        inside = sum(abs(r.error) <= tolerance for r in used)
        by_src.annotate(f"{inside}/{len(used)}" if used else "excluded",
                        (1.0, line), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=FONT_SIZE - 3, color="0.3")
    band = dict(color="tab:green", alpha=0.12)
    by_src.axvspan(-tolerance * 100, tolerance * 100, label=f"±{tolerance:.0%}", **band)
    by_batch.axhspan(-tolerance * 100, tolerance * 100, **band)
    by_src.axvline(0, color="0.3", lw=0.8)
    by_batch.axhline(0, color="0.3", lw=0.8)
    labels = []
    for k, idx in groups.items():
        rr = sorted({rows[i].point.round for i in idx})
        labels.append(f"{k} (round {rr[0]})" if len(rr) == 1
                      else f"{k} (rounds {rr[0]}–{rr[-1]})")
    by_src.set_yticks(range(len(sources)))
    by_src.set_yticklabels(labels, fontsize=FONT_SIZE - 2)
    by_src.set_ylim(len(sources) - 0.5, -0.5)
    for j in range(len(sources) - 1):
        by_src.axhline(j + 0.5, color="0.9", lw=0.6)
    by_src.set_xlabel("model error (%; < 0: model faster or less energy)")
    by_src.set_title("by source (used rows within the band, right)", pad=22)
    by_src.legend(fontsize=FONT_SIZE - 2, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4,
                  frameon=False, handletextpad=0.3, columnspacing=1.0)
    by_batch.set_xscale("log")
    by_batch.set_xlabel("batch size (sequences)")
    by_batch.set_ylabel("model error (%)")
    by_batch.set_title("against batch size", pad=22)
    plain_log_axes(fig)
    used = [r for r in rows if r.point.role != "excluded"]
    inside = sum(abs(r.error) <= tolerance for r in used)
    held = [r for r in used if r.point.role == "heldout"]
    takeaway = (f"{inside} of {len(used)} used points within ±{tolerance:.0%}; held out: "
                f"{sum(abs(r.error) <= tolerance for r in held)} of {len(held)} "
                f"(worst {max((abs(r.error) for r in held), default=0):.0%})")
    return finish(fig, "GPU model vs published measurements", takeaway)


__all__ += ["operating_points_slider", "SLIDER_PRECISIONS", "SLIDER_TPOT_TARGETS_MS",
            "SLIDER_PRESETS"]

SLIDER_PRECISIONS = ("bf16", "fp8", "int8", "int4")
"""GPU weight formats on chapter 7's static slider (the H100 supports all four)."""
SLIDER_TPOT_TARGETS_MS = (20.0, 50.0)
"""Time-per-output-token targets on chapter 7's static slider, ms (the issue's two)."""
SLIDER_PRESETS = ("physical", "paper")
"""AIMC cost presets on chapter 7's static slider: the book's and the earlier constants."""


def operating_points_slider(model: str = "mixtral-8x7b", gpu: str = "h100", n_tiers: int = 64,
                            precisions: Sequence[str] = SLIDER_PRECISIONS,
                            targets_ms: Sequence[float] = SLIDER_TPOT_TARGETS_MS,
                            presets: Sequence[str] = SLIDER_PRESETS,
                            default: tuple = ("fp8", 50.0, PRESET)) -> StaticSlider:
    """:func:`operating_points` precomputed for the static book
    (:func:`~aimoe_lib.viz.static.static_slider`): sliders for the GPU's weight format, the TPOT
    target and the AIMC preset; starts at ``default`` (precision, target, preset), the chapter's
    headline figure. The AIMC curves are simulated once per preset (cached)."""
    def draw(precision: str, tpot_target_ms: float, preset: str) -> Figure:
        return operating_points(model, gpu=gpu, precision=precision, n_tiers=n_tiers,
                                preset=preset, tpot_target_ms=tpot_target_ms)

    return static_slider(draw, {"precision": tuple(precisions), "tpot_target_ms": tuple(targets_ms),
                                "preset": tuple(presets)},
                         default=dict(zip(("precision", "tpot_target_ms", "preset"), default,
                                          strict=True)),
                         labels={"precision": "GPU weights", "tpot_target_ms": "TPOT target",
                                 "preset": "AIMC cost preset"},
                         formats={"tpot_target_ms": "{:.0f} ms"})


__all__ += ["measured_figure"]

_MODEL_COLOURS = {"mixtral-8x7b": "tab:purple", "llama-3-8b": "tab:green",
                  "llama-2-70b": "tab:brown"}


def measured_figure(checks=None, stream=None) -> Figure:
    """The harness's measurements on one H200 against the model, in three panels: time per output
    token against batch (measured CUDA-graph and eager decode, calibrated and bare roofline);
    measured board power against the power model at the measured utilisation; and the bandwidth
    of one weight-streaming matrix product against batch. ``checks``: rows of
    :func:`aimoe_lib.gpu.measured_validation` over both modes (default the shipped run);
    ``stream``: rows of :func:`aimoe_lib.gpu.load_weight_stream` (default the shipped run)."""
    if checks is None:
        checks = gpu_mod.measured_validation(modes=("eager", "cuda-graph"))
    if stream is None:
        stream = gpu_mod.load_weight_stream()
    checks, stream = list(checks), list(stream)
    fig = figure(12.0, 4.0)
    ax_t, ax_p, ax_s = fig.subplots(1, 3)
    models = list(dict.fromkeys(c.row.model for c in checks))
    for m in models:
        col = _MODEL_COLOURS.get(m, "0.3")
        graph = sorted((c for c in checks if c.row.model == m and c.row.mode == "cuda-graph"),
                       key=lambda c: c.row.batch)
        eager = sorted((c for c in checks if c.row.model == m and c.row.mode == "eager"),
                       key=lambda c: c.row.batch)
        if graph:
            b = [c.row.batch for c in graph]
            ax_t.plot(b, [c.measured_tpot_s * 1e3 for c in graph], "o", color=col, label=m)
            ax_t.plot(b, [c.predicted.time_per_output_token_s * 1e3 for c in graph], "-",
                      color=col, lw=1.2)
            ax_t.plot(b, [c.physics.time_per_output_token_s * 1e3 for c in graph], ":",
                      color=col, lw=1.2)
        if eager:
            ax_t.plot([c.row.batch for c in eager], [c.measured_tpot_s * 1e3 for c in eager],
                      "o", mfc="none", color=col)
        for rows, mark in ((graph, "o"), (eager, "s")):
            ax_p.plot([c.power_at_measured_time_w for c in rows],
                      [c.row.avg_power_w for c in rows], mark, color=col,
                      mfc=col if mark == "o" else "none")
    # legend entries for the line and marker kinds
    ax_t.plot([], [], "ko", label="measured, CUDA graph")
    ax_t.plot([], [], "ko", mfc="none", label="measured, eager")
    ax_t.plot([], [], "k-", label="model (calibrated)")
    ax_t.plot([], [], "k:", label="bare roofline")
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    ax_t.set_xlabel("batch (sequences)")
    ax_t.set_ylabel("time per output token (ms)")
    ax_t.set_title("decode step, whole model")
    ax_t.legend(fontsize=FONT_SIZE - 3, frameon=False)
    lo, hi = 150.0, 760.0
    xs = np.array([lo, hi])
    ax_p.plot(xs, xs, color="0.3", lw=0.8)
    ax_p.fill_between(xs, xs / 1.15, xs * 1.15, color="tab:green", alpha=0.12,
                      label="±15 %")
    ax_p.plot([], [], "ko", label="CUDA graph")
    ax_p.plot([], [], "ks", mfc="none", label="eager")
    ax_p.set_xlim(lo, hi)
    ax_p.set_ylim(lo, hi)
    ax_p.set_xlabel("power model at the measured step time (W)")
    ax_p.set_ylabel("measured board power (W)")
    ax_p.set_title("board power during decode")
    ax_p.legend(fontsize=FONT_SIZE - 3, frameon=False, loc="upper left")
    b = [r["batch"] for r in stream]
    ax_s.plot(b, [r["tb_per_s"] for r in stream], "o-", color="tab:red", label="measured")
    g = gpu_mod.h200()
    ax_s.axhline(g.hbm_bandwidth_gb_s / 1e3, color="0.3", lw=0.8, ls="--",
                 label="datasheet (4.8 TB/s)")
    ax_s.axhline(g.hbm_bandwidth_gb_s * g.bw_efficiency / 1e3, color="tab:blue", lw=1.0,
                 label=f"model ({g.hbm_bandwidth_gb_s * g.bw_efficiency / 1e3:.2f} TB/s)")
    ax_s.set_xscale("log", base=2)
    plain_log_axes(fig)
    ax_s.set_xticks(b)
    ax_s.set_xticklabels([str(v) for v in b], fontsize=FONT_SIZE - 3)
    ax_s.set_ylim(0, 5.2)
    ax_s.set_xlabel("tokens in the product (batch)")
    ax_s.set_ylabel("bytes moved / time (TB/s)")
    ax_s.set_title("one 8192 × 28672 bf16 weight")
    ax_s.legend(fontsize=FONT_SIZE - 3, frameon=False, loc="lower left")
    graph = [c for c in checks if c.row.mode == "cuda-graph"]
    dense = [c for c in graph if c.predicted.distinct_experts == 0]
    moe = [c for c in graph if c.predicted.distinct_experts > 0]
    mem = [r["tb_per_s"] for r in stream if r["batch"] <= 64]

    def span(v):
        return f"{min(v):+.0%} to {max(v):+.0%}" if v else "none"

    takeaway = (f"model vs CUDA-graph decode: dense {span([c.tpot_error for c in dense])}, "
                f"MoE {span([c.tpot_error for c in moe])}; power "
                f"{span([c.power_error for c in graph])}; streaming "
                f"{min(mem):.2f}-{max(mem):.2f} TB/s at batch <= 64")
    return finish(fig, "Measured on one H200 against the model", takeaway)
