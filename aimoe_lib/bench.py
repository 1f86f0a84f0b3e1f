"""Benchmarks: ``python -m aimoe_lib.bench [mapping] [sim] [serving] [--compare]``.

Each case runs in a fresh subprocess so that its peak resident memory is its own; the printout
gives wall time (of an untraced run), peak memory (traced numpy/Python allocations, from a second,
traced run, and the process's max RSS) and the ratio to the target from the issue that set it. ``serving`` (not run by default: minutes) runs
serving-scale workloads, compares the engine with the previous one
(:mod:`aimoe_lib.simulator.engine_v1`) and prints how peak memory grows with generated tokens.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from . import checks

# (suite, case) -> (model, strategy, tier rows/cols, tiers per tile, time limit s, memory limit MB)
MAPPING_CASES = {
    "deepseek-v3 in_order": ("deepseek-v3", "in_order", 512, 1024, 10.0, 1000.0),
    "deepseek-v3 moe_stacked": ("deepseek-v3", "moe_stacked", 512, 1024, 10.0, 1000.0),
    "deepseek-v3 balanced": ("deepseek-v3", "balanced", 512, 1024, 10.0, 1000.0),
    "mixtral-8x7b in_order": ("mixtral-8x7b", "in_order", 512, 128, 2.0, 1000.0),
    "mixtral-8x7b moe_stacked": ("mixtral-8x7b", "moe_stacked", 512, 128, 2.0, 1000.0),
}


def _run_mapping_case(name: str) -> dict:
    from . import hardware, mapping, zoo

    model_name, strategy, shape, n_tiers, _, _ = MAPPING_CASES[name]
    spec = zoo.get(model_name)
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, shape, shape)
                 for m in spec.matrices() if m.role.value != "embedding")
    chip = hardware.ChipConfig(n_tiles=-(-blocks // n_tiers), n_tiers=n_tiers,
                               tier_rows=shape, tier_cols=shape)
    # a fresh spec each time: time the matrix enumeration too
    wall, traced, m = _timed_then_traced(lambda: mapping.map_model(zoo.get(model_name), chip,
                                                                   strategy))
    return {"case": name, "wall_s": wall, "traced_mb": traced,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            "blocks": m.n_blocks, "tiles": chip.n_tiles, "tiers": chip.n_tiers,
            "utilisation": m.utilisation}


def _timed_then_traced(run):
    """``run()`` twice: timed without tracing (tracemalloc slows every allocation, several-fold
    for numpy-heavy loops), then under tracemalloc for the peak traced memory. Returns (wall s,
    traced MB, the first run's result)."""
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    tracemalloc.start()
    run()
    traced = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return wall, traced, out


def bench_mapping() -> list[dict]:
    """Map DeepSeek-V3 and Mixtral-8x7B on chips just large enough (512x512 tiers)."""
    rows = []
    print(f"{'case':28s} {'blocks':>10s} {'chip':>16s} {'time s':>8s} {'/limit':>7s} "
          f"{'traced MB':>10s} {'RSS MB':>8s} {'/limit':>7s}")
    for name, (*_, t_lim, m_lim) in MAPPING_CASES.items():
        r = _case("mapping", name)
        rows.append(r)
        print(f"{name:28s} {r['blocks']:>10,d} {r['tiles']:>7,d}x{r['tiers']:<8,d} "
              f"{r['wall_s']:8.2f} {r['wall_s'] / t_lim:7.2f} {r['traced_mb']:10.0f} "
              f"{r['maxrss_mb']:8.0f} {r['maxrss_mb'] / m_lim:7.2f}")
    return rows


# 3D-SiM's own figures on this kind of machine: 3 layers x 64 tokens: 78 s, 1.8 GB;
# 12 layers x 64 tokens x 4 sequences: 15 min, 11 GB.
SIM_CASES = {
    "3dsim-readme 3L x 64 tok x 1 seq": ("readme", 3, 1, 1, 64, True, 0.1, None, 78.0, 1800.0),
    "3dsim-readme 3L x 64 tok, no KV cache": ("readme", 3, 1, 1, 64, False, None, None, 78.0, 1800.0),
    "3dsim-readme 12L x 64 tok x 4 seq": ("readme", 12, 4, 1, 64, True, 0.5, 300.0, 900.0, 11000.0),
    "3dsim-readme 12L x 64 tok x 4 seq, no KV": ("readme", 12, 4, 1, 64, False, None, None, 900.0, 11000.0),
    "mixtral-8x7b 8 seq x (128+128)": ("mixtral-8x7b", 32, 8, 128, 128, True, 10.0, 1000.0, None, None),
    "mixtral-8x7b 8 seq x (512+512)": ("mixtral-8x7b", 32, 8, 512, 512, True, None, None, None, None),
}


def _sim_inputs(model_name: str, n_layers: int):
    from . import hardware, mapping, zoo
    from .models import ModelSpec

    if model_name == "readme":  # 3D-SiM README: d 512, 8 heads, d_ff 2048, vocab 1024
        spec = ModelSpec(name=f"3dsim-readme-{n_layers}L", d_model=512, n_layers=n_layers,
                         n_heads=8, d_ff=2048, vocab_size=1024, ffn="gelu")
        chip = hardware.ChipConfig(n_tiles=100, n_tiers=1024)
    else:
        spec = zoo.get(model_name)
        chip = mapping.fitting_chip(spec, n_tiers=128, units="per_layer", name="custom")
    return spec, chip, mapping.map_model(spec, chip, "in_order")


def _simulate_v1(spec, chip, m, w):
    """:func:`~aimoe_lib.simulator.simulate` with the previous engine
    (:mod:`~aimoe_lib.simulator.engine_v1`)."""
    from .simulator import engine, engine_v1, program
    from .simulator.result import make_result

    prog = program.build_program(spec, chip, m, w)
    return make_result(prog, engine_v1.run_engine_v1(engine.engine_input(prog)), 1)


def _run_sim_case(name: str, which: str = "engine") -> dict:
    from . import simulator

    model_name, n_layers, batch, prompt, gen, kv, *_ = SIM_CASES[name]
    spec, chip, m = _sim_inputs(model_name, n_layers)
    w = simulator.Workload(batch=batch, prompt_len=prompt, gen_len=gen, kv_cache=kv)
    sim = _simulate_v1 if which == "v1" else simulator.simulate
    t0 = time.perf_counter()
    sim(spec, chip, m, simulator.Workload())  # compile or load the engine
    first = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    wall, traced, r = _timed_then_traced(lambda: sim(spec, chip, m, w))
    return {"case": name, "wall_s": wall, "first_call_s": first, "traced_mb": traced,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            "rss_before_mb": rss0, "events": r.n_events, "tokens_per_s": r.tokens_per_s}


def _case(suite: str, name: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "aimoe_lib.bench", "_case", suite, name, *extra],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_sim() -> list[dict]:
    """The simulator on 3D-SiM's README model and on Mixtral-8x7B, next to the previous engine."""
    rows = []
    print(f"{'case':42s} {'events':>10s} {'time s':>8s} {'/limit':>7s} {'vs 3D-SiM':>10s} "
          f"{'traced MB':>10s} {'RSS MB':>8s} {'/limit':>7s} {'compile s':>9s} {'prev s':>7s} "
          f"{'speedup':>7s}")
    for name, (*_, t_lim, m_lim, t_3d, _m_3d) in SIM_CASES.items():
        r = _case("sim", name)
        prev = _case("sim", name, "v1")  # the previous engine, same run
        rows.append(r)
        tl = f"{r['wall_s'] / t_lim:7.3f}" if t_lim else "      -"
        ml = f"{r['maxrss_mb'] / m_lim:7.2f}" if m_lim else "      -"
        vs = f"{t_3d / r['wall_s']:9.0f}x" if t_3d else "         -"
        print(f"{name:42s} {r['events']:>10,d} {r['wall_s']:8.3f} {tl} {vs} "
              f"{r['traced_mb']:10.1f} {r['maxrss_mb']:8.0f} {ml} {r['first_call_s']:9.2f} "
              f"{prev['wall_s']:7.3f} {prev['wall_s'] / r['wall_s']:6.1f}x")
    by = {r["case"]: r for r in rows}
    a, b = by["mixtral-8x7b 8 seq x (128+128)"], by["mixtral-8x7b 8 seq x (512+512)"]
    print(f"4x the tokens: {b['wall_s'] / a['wall_s']:.2f}x the time (limit 4.5x), "
          f"{b['events'] / a['events']:.2f}x the events")
    return rows


# Serving scale: (model, batch, prompt, generated, time limit s, memory limit MB, previous engine's
# time s and peak RSS MB on the 2-core machine or None). The Mixtral figures of the previous engine
# were measured on the 2-core machine before the bounded-state engine (124 s, 5.3 GB); the others
# are measured in the same run with --compare.
SERVING_CASES = {
    "mixtral-8x7b 256 x (2048+512)": ("mixtral-8x7b", 256, 2048, 512, 60.0, 4000.0, 124.0, 5300.0),
    "deepseek-v3 64 x (1024+256)": ("deepseek-v3", 64, 1024, 256, 60.0, None, None, None),
    "mixtral-8x7b 64 x (512+512)": ("mixtral-8x7b", 64, 512, 512, None, None, None, None),
}
SERVING_TIERS = 64
"""Tiers per tile of the serving chips (``paper`` preset, tiles sized to the model by
:func:`~aimoe_lib.mapping.fitting_chip`, in_order mapping)."""
SERVING_ALWAYS_COMPARE = ("mixtral-8x7b 64 x (512+512)",)
"""Cases whose previous-engine run is short enough to repeat in every serving run."""
DECODE_GEN = (256, 512, 1024, 2048)
"""Generated tokens of the decode-heavy memory series (Mixtral-8x7B, 16 sequences of 128 prompt
tokens)."""


def _serving_inputs(model_name: str):
    from . import mapping, zoo

    spec = zoo.get(model_name)
    chip = mapping.fitting_chip(spec, n_tiers=SERVING_TIERS, preset="paper")
    return spec, chip, mapping.map_model(spec, chip, "in_order")


def _run_serving_case(name: str, which: str = "engine") -> dict:
    """One serving run in this process: ``which`` is 'engine' (the current one) or 'v1'. Cases
    named 'decode G' are the decode-heavy memory series."""
    from . import simulator
    from .simulator import engine, engine_v1, program

    if name.startswith("decode "):
        model_name, batch, prompt, gen = "mixtral-8x7b", 16, 128, int(name.split()[1])
    else:
        model_name, batch, prompt, gen, *_ = SERVING_CASES[name]
    t0 = time.perf_counter()
    spec, chip, m = _serving_inputs(model_name)
    map_s = time.perf_counter() - t0
    warm = simulator.Workload()
    if which == "v1":
        engine_v1.run_engine_v1(engine.engine_input(program.build_program(spec, chip, m, warm)))
    else:
        simulator.simulate(spec, chip, m, warm)  # compile or load the engine
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    w = simulator.Workload(batch=batch, prompt_len=prompt, gen_len=gen)
    t0 = time.perf_counter()
    r = (_simulate_v1 if which == "v1" else simulator.simulate)(spec, chip, m, w)
    wall = time.perf_counter() - t0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    n_events, makespan, tps = r.n_events, r.makespan_ns, r.tokens_per_s
    del r
    t0 = time.perf_counter()
    program.build_program(spec, chip, m, w)  # the program alone (routing included), again
    build_s = time.perf_counter() - t0
    return {"case": name, "engine": which, "wall_s": wall, "map_s": map_s, "build_s": build_s,
            "maxrss_mb": maxrss,
            "rss_before_mb": rss0, "events": n_events, "makespan_ns": makespan,
            "tokens_per_s": tps,
            "state_mb": engine.engine_state_bytes(spec, chip, w) / 1e6}


def bench_serving(compare: bool = False) -> list[dict]:
    """Serving-scale runs (Mixtral-8x7B, DeepSeek-V3) against the previous engine, and the memory
    of a decode-heavy run as generated tokens grow."""
    rows = []
    print(f"{'case':32s} {'events':>12s} {'time s':>8s} {'build s':>8s} {'/limit':>7s} "
          f"{'RSS MB':>8s} "
          f"{'/limit':>7s} {'prev s':>8s} {'speedup':>8s} {'prev MB':>8s} {'mem ratio':>9s}")
    for name, (*_, t_lim, m_lim, t_prev, m_prev) in SERVING_CASES.items():
        r = _case("serving", name)
        rows.append(r)
        src = "stored"
        if compare or name in SERVING_ALWAYS_COMPARE:
            p = _case("serving", name, "v1")
            rows.append(p)
            if p["makespan_ns"] != r["makespan_ns"] or p["events"] != r["events"]:
                raise RuntimeError(f"{name}: the engines disagree ({r['makespan_ns']!r} ns vs "
                                   f"{p['makespan_ns']!r} ns)")
            t_prev, m_prev, src = p["wall_s"], p["maxrss_mb"], "this run"
        tl = f"{r['wall_s'] / t_lim:7.2f}" if t_lim else "      -"
        ml = f"{r['maxrss_mb'] / m_lim:7.2f}" if m_lim else "      -"
        pv = (f"{t_prev:8.1f} {t_prev / r['wall_s']:7.1f}x {m_prev:8.0f} "
              f"{m_prev / r['maxrss_mb']:8.1f}x ({src})") if t_prev else \
            f"{'-':>8s} {'-':>8s} {'-':>8s} {'-':>9s} (--compare measures it)"
        print(f"{name:32s} {r['events']:>12,d} {r['wall_s']:8.1f} {r['build_s']:8.1f} {tl} "
              f"{r['maxrss_mb']:8.0f} {ml} "
              f"{pv}")
    series = [_case("serving", f"decode {g}") for g in DECODE_GEN]
    rows += series
    g = np.array(DECODE_GEN, dtype=float)
    mb = np.array([r["maxrss_mb"] for r in series])
    slope = np.polyfit(g, mb, 1)[0]  # MB per generated token (of each sequence)
    expo = np.polyfit(np.log(g), np.log(mb), 1)[0]
    print("decode-heavy (Mixtral-8x7B, 16 x (128 + G)): peak RSS "
          + ", ".join(f"G={int(x)}: {y:.0f} MB" for x, y in zip(g, mb, strict=True))
          + f"; slope {slope * 1e3 / 16:.1f} kB per generated token, log-log exponent {expo:.2f} "
          "(1 = linear)")
    return rows


SUITES = {"mapping": bench_mapping, "sim": bench_sim, "serving": bench_serving}
DEFAULT_SUITES = ("mapping", "sim")
"""Suites run when none is named (``serving`` takes minutes: name it)."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m aimoe_lib.bench",
        description="Benchmarks of the mapper and the simulator, each case in a fresh "
                    "subprocess; prints wall time, peak memory and the ratio to each limit.",
        epilog="suites: " + "; ".join(
            f"{n}: {(f.__doc__ or '').strip().partition(chr(10))[0].rstrip('.')}"
            for n, f in SUITES.items()))
    ap.add_argument("suites", nargs="*", metavar="SUITE",
                    help=f"suites to run, of {', '.join(SUITES)} (default: "
                         f"{', '.join(DEFAULT_SUITES)})")
    ap.add_argument("--compare", action="store_true",
                    help="serving: also run the previous engine on every case (minutes, GBs)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Command line; ``argv`` is the list of arguments (None: ``sys.argv[1:]``). Returns the exit
    status; unknown suites exit with status 2 and a message before anything runs."""
    argv = checks.argv("main", argv, "['mapping']")
    if argv[:1] == ["_case"]:  # internal: one case, in the subprocess _case starts
        serving = {**SERVING_CASES, **{f"decode {g}": None for g in DECODE_GEN}}
        cases = {"mapping": (_run_mapping_case, MAPPING_CASES), "sim": (_run_sim_case, SIM_CASES),
                 "serving": (_run_serving_case, serving)}
        ok = len(argv) == 3 or (len(argv) == 4 and argv[1] in ("sim", "serving")
                                and argv[3] in ("engine", "v1"))
        if not ok or argv[1] not in cases or argv[2] not in cases[argv[1]][1]:
            print(f"_case needs a suite ({', '.join(cases)}) and one of its case names "
                  "(sim, serving: then optionally 'engine' or 'v1')", file=sys.stderr)
            return 2
        print(json.dumps(cases[argv[1]][0](*argv[2:])))
        return 0
    ap = _parser()
    a = ap.parse_args(argv)
    unknown = [n for n in a.suites if n not in SUITES]
    if unknown:
        ap.error(f"unknown benchmark suite(s) {', '.join(map(repr, unknown))}; choose from "
                 f"{', '.join(SUITES)}")
    for n in a.suites or [n for n in SUITES if n in DEFAULT_SUITES]:
        print(f"== {n}")
        if n == "serving" and a.compare:
            SUITES[n](compare=True)
        else:
            SUITES[n]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
