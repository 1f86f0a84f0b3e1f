"""Figures and tables of chapter 8 (analog noise and hardware-aware training), numpy only.

Everything here reads the shipped results of ``python -m aimoe_lib.analog.train --out data/analog``
(``data/analog/results.json``, :func:`~aimoe_lib.viz.analog.load_results`); nothing imports
torch, so the chapter renders its figures in well under a second. The one figure that needs no
results, :func:`~aimoe_lib.viz.analog.pcm_device`, draws the PCM noise model of
:mod:`aimoe_lib.analog.pcm` itself.

Figures (each a ``matplotlib.figure.Figure`` with a title and a one-line takeaway computed from
what it plots, as in :mod:`aimoe_lib.viz`): :func:`~aimoe_lib.viz.analog.noise_sweep` (the
headline), :func:`~aimoe_lib.viz.analog.pcm_device`, :func:`~aimoe_lib.viz.analog.drift_sweep`,
:func:`~aimoe_lib.viz.analog.router_stability`, :func:`~aimoe_lib.viz.analog.sensitivity`,
:func:`~aimoe_lib.viz.analog.training_curves`, :func:`~aimoe_lib.viz.analog.live_figure` (the
panel of :mod:`aimoe_lib.widgets.analog`). Numbers: :func:`~aimoe_lib.viz.analog.summary_table`,
:func:`~aimoe_lib.viz.analog.findings`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..analog.config import PARTS
from ..analog.live import MODEL_NAMES, TRAININGS, live_evaluate
from ..analog.pcm import TIMES_S, PCMNoise, programming_noise_std_us, time_label
from ..checks import UnknownKeyError
from ..shipped import data_path
from .style import FONT_SIZE, figure, finish

__all__ = ["MODEL_NAMES", "TRAININGS", "load_results", "find", "mean_std",
           "noise_sweep", "pcm_device", "drift_sweep", "router_stability", "sensitivity",
           "training_curves", "summary_table", "findings", "live_figure", "live_reevaluation"]

_COLOR = {"dense": "tab:gray", "moe-4": "tab:blue", "moe-16": "tab:purple"}
_STYLE = {"fp": dict(ls="--", marker="o", mfc="white"), "hwa": dict(ls="-", marker="s")}
_TRAIN_LABEL = {"fp": "FP-trained", "hwa": "HWA-trained"}
_PART_LABEL = {"attention": "attention", "router": "router", "ffn": "FFN / experts",
               "lm_head": "LM head"}


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"results {path!r} are missing; run "
                                "python -m aimoe_lib.analog.train --out data/analog to make them")
    return json.loads(p.read_text())


def load_results(path=None) -> dict:
    """The results of ``python -m aimoe_lib.analog.train --out data/analog`` at ``path`` (default: the shipped
    ``data/analog/results.json``, :func:`~aimoe_lib.shipped.data_path`); cached, treat as
    read-only."""
    return _load(str(data_path("analog", "results.json") if path is None else path))


def _parts(res: dict, model: str) -> list[str]:
    cfg = res["models"][model]["config"]
    return [p for p in PARTS if p != "router" or cfg["n_experts"] > 0]


def find(res: dict, model: str, training: str, noise: str, level: float = 0.0, analog=None,
         compensate=None) -> dict:
    """The record of one condition; ``analog`` defaults to every part of the model (for
    ``noise='digital'``, no part). KeyError names the condition if it was not evaluated."""
    if analog is None:
        analog = [] if noise == "digital" else _parts(res, model)
    analog = [p for p in PARTS if p in analog]
    for r in res["records"]:
        if (r["model"] == model and r["training"] == training and r["noise"] == noise
                and np.isclose(r["level"], level) and r["analog"] == analog
                and (compensate is None or r["compensate"] == compensate)):
            return r
    raise UnknownKeyError(f"no record for model={model!r} training={training!r} noise={noise!r} "
                   f"level={level!r} analog={analog!r} compensate={compensate!r}")


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _ppl(res, model, training, noise, level=0.0, analog=None, compensate=None):
    return mean_std(find(res, model, training, noise, level, analog, compensate)["ppl"])


def _digital(res, model, training) -> float:
    return _ppl(res, model, training, "digital")[0]


def _increase(res, model, training, noise, level=0.0, analog=None, compensate=None,
              reference=None):
    """Per-seed perplexity increase in % over ``reference`` (default: the digital perplexity of
    the FP-trained model of the same architecture, the model one would run without analog
    tiles); returns (mean, std)."""
    ref = _digital(res, model, "fp") if reference is None else reference
    ppl = np.asarray(find(res, model, training, noise, level, analog, compensate)["ppl"])
    return mean_std(100.0 * (ppl / ref - 1.0))


def _part_increase(res, model, training, part):
    """Per-seed % increase from the sensitivity noise with ``part`` alone analog, over the
    noise-free run of the same configuration."""
    sn = res["settings"]["sensitivity_noise"]
    clean = find(res, model, training, "none", 0.0, [part])["ppl"][0]
    return _increase(res, model, training, sn["noise"], sn["level"], [part], reference=clean)


def _gaussian_curve(res, model, training, analog=None):
    levels = res["settings"]["gaussian_levels"]
    pts = [_ppl(res, model, training, "none", 0.0, analog) if s == 0 else
           _ppl(res, model, training, "gaussian", s, analog) for s in levels]
    return np.array(levels), np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def _models(res) -> list[str]:
    return [m for m in MODEL_NAMES if m in res["models"]]


def _big_moe(res) -> str:
    """The MoE with the most experts in the results."""
    moes = [m for m in _models(res) if res["models"][m]["config"]["n_experts"] > 0]
    return max(moes, key=lambda m: res["models"][m]["config"]["n_experts"])


# =============================================================================== figures
def noise_sweep(res: dict | None = None) -> Figure:
    """The headline: perplexity under Gaussian weight noise (std relative to each row's largest
    ``abs(W)``, every linear layer analog, 8-bit DAC/ADC) for the dense and MoE models, FP- and
    HWA-trained, mean ± std over the noise seeds. Left: perplexity; right: its increase over the
    digital perplexity of the FP-trained model of the same architecture."""
    res = load_results() if res is None else res
    fig = figure(11.0, 4.2)
    ax_abs, ax_rel = fig.subplots(1, 2)
    for m in _models(res):
        for t in TRAININGS:
            x, y, e = _gaussian_curve(res, m, t)
            label = f"{m}, {_TRAIN_LABEL[t]}"
            ax_abs.errorbar(100 * x, y, yerr=e, color=_COLOR[m], capsize=3, label=label,
                            **_STYLE[t])
            d = _digital(res, m, "fp")
            ax_rel.errorbar(100 * x, 100 * (y / d - 1), yerr=100 * e / d, color=_COLOR[m],
                            capsize=3, label=label, **_STYLE[t])
    ax_abs.set(xlabel="weight noise (% of row max |W|)", ylabel="test perplexity (characters)",
               title="Perplexity under weight noise")
    ax_rel.set(xlabel="weight noise (% of row max |W|)",
               ylabel="increase over digital FP model (%)",
               title="Cost of analog tiles, per architecture")
    for ax in (ax_abs, ax_rel):
        ax.grid(True, alpha=0.3)
    ax_abs.legend(fontsize=FONT_SIZE - 3, ncol=2, loc="upper left")
    f, b = findings(res), _big_moe(res)
    s = f["level_pct"]
    takeaway = (f"At {s:g}% noise, perplexity over digital FP (FP-trained -> HWA-trained): "
                f"dense +{f['dense_fp_inc']:.1f}% -> +{f['dense_hwa_inc']:.1f}%, "
                f"{b} +{f[f'{b}_fp_inc']:.1f}% -> +{f[f'{b}_hwa_inc']:.1f}%")
    return finish(fig, "Dense vs MoE on noisy analog tiles, FP vs hardware-aware training",
                   takeaway)


def pcm_device(t_s: float = 86400.0, seed: int = 0) -> Figure:
    """The PCM noise model itself (:class:`~aimoe_lib.analog.pcm.PCMNoise`): programming noise
    against target conductance, conductances drifting with time, and the weight error of a
    random tile with and without global drift compensation. Seeded; no results needed."""
    rng = np.random.default_rng(seed)
    model = PCMNoise(t_s)
    fig = figure(12.0, 3.9)
    ax_prog, ax_drift, ax_err = fig.subplots(1, 3)

    g = np.linspace(0, 25, 101)
    std = programming_noise_std_us(g)
    ax_prog.plot(g, std, color="k", label="std (fit)")
    targets = np.repeat([2.5, 7.5, 12.5, 17.5, 22.5], 400)
    prog = model.program(targets, rng)
    for tg in np.unique(targets):
        ax_prog.plot(tg, prog[targets == tg].std(), "o", color="tab:red")
    ax_prog.plot([], [], "o", color="tab:red", label="sampled")
    ax_prog.set(xlabel="target conductance (uS)", ylabel="programming noise std (uS)",
                title="Programming noise", ylim=(0, 1.3))
    ax_prog.legend(fontsize=FONT_SIZE - 2)

    times = np.unique(np.r_[np.logspace(0, np.log10(10 * 365 * 86400.0), 36), TIMES_S, t_s])
    for tg, color in ((25.0, "tab:blue"), (12.5, "tab:green"), (2.5, "tab:orange")):
        target = np.full(2000, tg)
        p = model.program(target, rng)
        nu = model.drift_exponents(target, rng)
        q = np.array([np.percentile(PCMNoise(t).drift_and_read(p, nu, rng), [10, 50, 90])
                      for t in times])
        ax_drift.fill_between(times, q[:, 0], q[:, 2], color=color, alpha=0.2)
        ax_drift.plot(times, q[:, 1], color=color, label=f"target {tg:g} uS")
    ax_drift.set(xscale="log", xlabel="time since programming (s)", ylabel="conductance (uS)",
                 title="Drift and read noise (10-90%)")
    ax_drift.legend(fontsize=FONT_SIZE - 2)

    w = rng.standard_normal((64, 128))
    rel = {True: [], False: []}
    for t in times:
        for comp in (True, False):
            noisy = PCMNoise(t, compensate=comp).apply(w, np.random.default_rng(seed))
            rel[comp].append(np.sqrt(np.mean((noisy - w) ** 2)) / np.abs(w).max())
    ax_err.plot(times, 100 * np.array(rel[False]), "--", color="tab:red", label="uncompensated")
    ax_err.plot(times, 100 * np.array(rel[True]), color="k", label="global drift compensation")
    ax_err.set(xscale="log", xlabel="time since programming (s)",
               ylabel="rms weight error (% of max |W|)", title="Weight error of one tile")
    ax_err.legend(fontsize=FONT_SIZE - 2)
    for ax in (ax_prog, ax_drift, ax_err):
        ax.grid(True, alpha=0.3)
    i = int(np.argmin(np.abs(times - t_s)))
    takeaway = (f"After {time_label(times[i])}, the rms weight error is "
                f"{100 * rel[True][i]:.1f}% of max |W| with drift compensation and "
                f"{100 * rel[False][i]:.1f}% without")
    return finish(fig, "Phase-change memory: programming noise, drift, read noise", takeaway)


def drift_sweep(res: dict | None = None) -> Figure:
    """Perplexity on PCM tiles from 1 s to 1 year after programming (every linear layer analog,
    global drift compensation), FP- and HWA-trained models; right: the same without drift
    compensation for the HWA-trained models."""
    res = load_results() if res is None else res
    times = np.array(res["settings"]["times_s"])
    fig = figure(11.0, 4.2)
    ax_c, ax_u = fig.subplots(1, 2)
    for m in _models(res):
        for t in TRAININGS:
            pts = [_ppl(res, m, t, "pcm", x, compensate=True) for x in times]
            ax_c.errorbar(times, [p[0] for p in pts], yerr=[p[1] for p in pts], color=_COLOR[m],
                          capsize=3, label=f"{m}, {_TRAIN_LABEL[t]}", **_STYLE[t])
        pts = [_ppl(res, m, "hwa", "pcm", x, compensate=False) for x in times]
        ax_u.errorbar(times, [p[0] for p in pts], yerr=[p[1] for p in pts], color=_COLOR[m],
                      capsize=3, label=f"{m}, uncompensated", ls=":", marker="^")
        pts = [_ppl(res, m, "hwa", "pcm", x, compensate=True) for x in times]
        ax_u.errorbar(times, [p[0] for p in pts], yerr=[p[1] for p in pts], color=_COLOR[m],
                      capsize=3, label=f"{m}, compensated", **_STYLE["hwa"])
    for ax, title in ((ax_c, "With global drift compensation"),
                      (ax_u, "HWA-trained: compensation on and off")):
        ax.set(xscale="log", xlabel="time since programming (s)",
               ylabel="test perplexity (characters)", title=title)
        ax.set_xticks(times, [time_label(x) for x in times])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=FONT_SIZE - 3, ncol=2 if ax is ax_c else 1)
    f, b = findings(res), _big_moe(res)
    takeaway = (f"After 1 year: HWA-trained {b} {f[f'year_{b}_hwa']:.2f}, dense "
                f"{f['year_dense_hwa']:.2f} (FP-trained: {f[f'year_{b}_fp']:.2f}, "
                f"{f['year_dense_fp']:.2f}); without compensation dense HWA reaches "
                f"{f['year_dense_hwa_uncomp']:.2f}")
    return finish(fig, "Perplexity as PCM conductances drift", takeaway)


def router_stability(res: dict | None = None) -> Figure:
    """Fraction of (token, MoE layer) pairs whose set of top-k experts differs from the
    noise-free analog model's (same parts, same converters), against Gaussian weight noise, with
    the router on analog tiles (solid) or on digital units (dashed, the rest analog). Left:
    FP-trained, right: HWA-trained."""
    res = load_results() if res is None else res
    levels = np.array(res["settings"]["gaussian_levels"])
    moes = [m for m in _models(res) if res["models"][m]["config"]["n_experts"] > 0]
    fig = figure(11.0, 4.0)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, t in zip(axes, TRAININGS, strict=True):
        for m in moes:
            for router_analog in (True, False):
                analog = _parts(res, m) if router_analog else [
                    p for p in _parts(res, m) if p != "router"]
                pts = [mean_std(find(res, m, t, "none" if s == 0 else "gaussian", s,
                                     analog)["route_changed"]) for s in levels]
                ax.errorbar(100 * levels, [100 * p[0] for p in pts],
                            yerr=[100 * p[1] for p in pts], color=_COLOR[m], capsize=3,
                            ls="-" if router_analog else "--",
                            marker="s" if router_analog else "o",
                            mfc=None if router_analog else "white",
                            label=f"{m}, router {'analog' if router_analog else 'digital'}")
        ax.set(xlabel="weight noise (% of row max |W|)", title=_TRAIN_LABEL[t])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("routing decisions changed by noise (%)")
    axes[0].legend(fontsize=FONT_SIZE - 3)
    f, b = findings(res), _big_moe(res)
    takeaway = (f"At {f['level_pct']:g}% noise (HWA, {b}): "
                f"{f[f'route_{b}_hwa_analog']:.1f}% of routing decisions change with the "
                f"router analog, {f[f'route_{b}_hwa_digital']:.1f}% with it digital")
    return finish(fig, "Router stability under weight noise", takeaway)


def sensitivity(res: dict | None = None) -> Figure:
    """Perplexity increase caused by weight noise when one part alone is analog (at the
    sensitivity noise of the results, Gaussian), over the same configuration without noise
    (same part analog, same 8-bit converters), per model and training; bars show mean ± std
    over seeds. Measuring against the noise-free configuration separates the noise from the
    converters and from running the rest of an HWA-trained model digitally."""
    res = load_results() if res is None else res
    sn = res["settings"]["sensitivity_noise"]
    fig = figure(11.0, 4.2)
    ax = fig.subplots()
    combos = [(m, t) for m in _models(res) for t in TRAININGS]
    width = 0.8 / len(combos)
    for j, (m, t) in enumerate(combos):
        xs, ys, es = [], [], []
        for i, part in enumerate(PARTS):
            if part not in _parts(res, m):
                continue
            mu, sd = _part_increase(res, m, t, part)
            xs.append(i + (j - (len(combos) - 1) / 2) * width)
            ys.append(mu)
            es.append(sd)
        ax.bar(xs, ys, width, yerr=es, color=_COLOR[m], alpha=0.45 if t == "fp" else 0.95,
               hatch="//" if t == "fp" else None, capsize=2, edgecolor="k", lw=0.5,
               label=f"{m}, {_TRAIN_LABEL[t]}")
    ax.set_xticks(range(len(PARTS)), [_PART_LABEL[p] for p in PARTS])
    ax.set(ylabel="increase over no noise (%)",
           xlabel=f"the only analog part (Gaussian weight noise {100 * sn['level']:g}%)",
           title="Each part alone on analog tiles")
    ax.axhline(0, color="k", lw=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=FONT_SIZE - 3, ncol=3)
    f, b = findings(res), _big_moe(res)
    takeaway = (f"FP-trained {b}: the {_PART_LABEL[f[f'worst_part_{b}_fp']]} costs most "
                f"(+{f[f'worst_inc_{b}_fp']:.1f}%), the router "
                f"+{f[f'router_inc_{b}_fp']:.2f}%; HWA-trained: "
                f"{_PART_LABEL[f[f'worst_part_{b}_hwa']]} +{f[f'worst_inc_{b}_hwa']:.1f}%")
    return finish(fig, "Which parts can live on analog tiles?", takeaway)


def training_curves(res: dict | None = None) -> Figure:
    """Validation loss (nats per character) during pretraining and the two fine-tuning branches;
    the HWA branch is measured on the noise-free analog model (8-bit DAC/ADC)."""
    res = load_results() if res is None else res
    fig = figure(11.0, 3.8)
    ax_pre, ax_ft = fig.subplots(1, 2)
    for m in _models(res):
        c = res["models"][m]["curves"]
        pre = np.array(c["pretrain"])
        ax_pre.plot(pre[:, 0], pre[:, 2], color=_COLOR[m], label=m)
        for t in TRAININGS:
            ft = np.array(c[t])
            ax_ft.plot(ft[:, 0], ft[:, 2], color=_COLOR[m], ls=_STYLE[t]["ls"],
                       marker=_STYLE[t]["marker"], mfc=_STYLE[t].get("mfc"), ms=4,
                       label=f"{m}, {_TRAIN_LABEL[t]}")
    ax_pre.set(xlabel="step", ylabel="validation loss (nats / char)",
               title="Floating-point pretraining")
    ax_ft.set(xlabel="fine-tuning step", ylabel="validation loss (nats / char)",
              title="Fine-tuning: FP and HWA branches")
    for ax in (ax_pre, ax_ft):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=FONT_SIZE - 3)
    last = {m: res["models"][m]["curves"]["pretrain"][-1][2] for m in _models(res)}
    takeaway = "Validation loss after pretraining: " + ", ".join(
        f"{m} {v:.3f}" for m, v in last.items())
    return finish(fig, "Training on Shakespeare (character level)", takeaway)


# =============================================================================== numbers
def summary_table(res: dict | None = None) -> str:
    """One line per model and training: parameters, digital perplexity, noise-free analog
    perplexity (8-bit DAC/ADC), and mean ± std at the headline noise level and after a day and
    a year on PCM."""
    res = load_results() if res is None else res
    s = findings(res)["level"]
    rows = [f"{'model':7} {'train':5} {'total':>6} {'active':>6} {'digital':>7} "
            f"{'analog':>7} {'gauss ' + format(100 * s, 'g') + '%':>13} {'PCM 1 day':>13} "
            f"{'PCM 1 year':>13}"]
    for m in _models(res):
        info = res["models"][m]
        for t in TRAININGS:
            g = _ppl(res, m, t, "gaussian", s)
            d = _ppl(res, m, t, "pcm", 86400.0, compensate=True)
            y = _ppl(res, m, t, "pcm", 365 * 86400.0, compensate=True)
            total, active = info["params_total"] / 1e6, info["params_active"] / 1e6
            rows.append(
                f"{m:7} {t:5} {total:5.2f}M {active:5.2f}M "
                f"{_digital(res, m, t):7.3f} {_ppl(res, m, t, 'none')[0]:7.3f} "
                f"{g[0]:6.3f}±{g[1]:.3f} {d[0]:6.3f}±{d[1]:.3f} {y[0]:6.3f}±{y[1]:.3f}")
    return "\n".join(rows)


def findings(res: dict | None = None, level: float = 0.06) -> dict:
    """The key numbers of the chapter, computed from the results: perplexity increases at
    Gaussian noise ``level`` (``<model>_<training>_inc``, % over the digital perplexity of the
    FP-trained model of the same architecture, and ``..._inc_std``), perplexities after a year
    on PCM, routing changes (``route_*``: % of routing decisions changed by the noise;
    ``route_*_quant``: changed by the 8-bit converters alone, against the digital model), and
    per-part sensitivities."""
    res = load_results() if res is None else res
    out = {"level": level, "level_pct": 100 * level}
    year = 365 * 86400.0
    for m in _models(res):
        for t in TRAININGS:
            mu, sd = _increase(res, m, t, "gaussian", level)
            out[f"{m}_{t}_inc"], out[f"{m}_{t}_inc_std"] = mu, sd
            out[f"{m}_{t}_digital"] = _digital(res, m, t)
            out[f"{m}_{t}_analog"] = _ppl(res, m, t, "none")[0]
            out[f"year_{m}_{t}"] = _ppl(res, m, t, "pcm", year, compensate=True)[0]
            out[f"year_{m}_{t}_std"] = _ppl(res, m, t, "pcm", year, compensate=True)[1]
            out[f"year_{m}_{t}_uncomp"] = _ppl(res, m, t, "pcm", year, compensate=False)[0]
            out[f"year_{m}_{t}_inc"] = _increase(res, m, t, "pcm", year, compensate=True)[0]
            incs = {p: _part_increase(res, m, t, p)[0] for p in _parts(res, m)}
            worst = max(incs, key=incs.get)
            out[f"worst_part_{m}_{t}"], out[f"worst_inc_{m}_{t}"] = worst, incs[worst]
            for p, v in incs.items():
                out[f"{p}_inc_{m}_{t}"] = v
            if res["models"][m]["config"]["n_experts"] > 0:
                full = _parts(res, m)
                no_router = [p for p in full if p != "router"]
                out[f"route_{m}_{t}_analog"] = 100 * mean_std(
                    find(res, m, t, "gaussian", level, full)["route_changed"])[0]
                out[f"route_{m}_{t}_digital"] = 100 * mean_std(
                    find(res, m, t, "gaussian", level, no_router)["route_changed"])[0]
                out[f"route_{m}_{t}_quant"] = 100 * mean_std(
                    find(res, m, t, "none", 0.0, full)["route_changed_vs_digital"])[0]
                out[f"router_inc_{m}_{t}"] = incs["router"]
    return out


def live_figure(live: dict, res: dict | None = None) -> Figure:
    """The panel's figure: perplexity of a live re-evaluation (``live``, from
    :func:`~aimoe_lib.analog.live.live_evaluate`: model, training, analog parts, noise label,
    per-seed perplexities, digital perplexities of this model and of the FP-trained one,
    optional routing changes) next to the shipped noise sweep of the same architecture."""
    res = load_results() if res is None else res
    m, t = live["model"], live["training"]
    ref = live.get("reference_ppl", live["digital_ppl"])
    fig = figure(11.0, 3.8)
    ax_live, ax_ref = fig.subplots(1, 2)
    ppl = np.asarray(live["ppl"])
    mu, sd = mean_std(ppl)
    clean = live.get("clean_ppl", live["digital_ppl"])
    labels = ["digital, FP-trained", f"digital, {_TRAIN_LABEL[t]}", "analog, no noise",
              live["label"]]
    ax_live.barh([0, 1, 2, 3], [ref, live["digital_ppl"], clean, mu], xerr=[0, 0, 0, sd],
                 color=["0.85", "0.65", "0.45", _COLOR[m]], capsize=4)
    ax_live.plot(ppl, np.full_like(ppl, 3.0), "k.", ms=6, label="one noise seed each")
    ax_live.set_yticks([0, 1, 2, 3], labels)
    values = np.r_[ppl, ref, live["digital_ppl"], clean]
    ax_live.set(xlabel="perplexity on the panel's test windows (characters)",
                title=f"{m}, {_TRAIN_LABEL[t]}; analog: {', '.join(live['analog']) or 'none'}",
                xlim=(0.95 * values.min(), 1.03 * values.max()))
    ax_live.legend(fontsize=FONT_SIZE - 3, loc="lower right")
    for tt in TRAININGS:
        x, y, e = _gaussian_curve(res, m, tt)
        ax_ref.errorbar(100 * x, y, yerr=e, color=_COLOR[m], capsize=3,
                        label=f"{m}, {_TRAIN_LABEL[tt]} (shipped)", **_STYLE[tt])
    ax_ref.set(xlabel="weight noise (% of row max |W|)", ylabel="test perplexity",
               title="Shipped sweep, all parts analog")
    ax_ref.grid(True, alpha=0.3)
    ax_ref.legend(fontsize=FONT_SIZE - 3)
    takeaway = (f"{live['label']}: perplexity {mu:.3f} ± {sd:.3f} over {len(ppl)} seeds, "
                f"{100 * (mu / ref - 1):+.1f}% vs the digital FP-trained model")
    if live.get("route_changed") is not None:
        takeaway += (f"; noise changes {100 * np.mean(live['route_changed']):.1f}% of routing "
                     "decisions")
    return finish(fig, "Live re-evaluation of a shipped model", takeaway)


def live_reevaluation(**kw) -> Figure:
    """:func:`live_figure` of :func:`~aimoe_lib.analog.live.live_evaluate` run now (keyword
    arguments are that function's; the first call imports torch and loads the checkpoints)."""
    return live_figure(live_evaluate(**kw))
