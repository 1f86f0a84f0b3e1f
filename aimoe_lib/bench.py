"""Benchmarks: ``python -m aimoe_lib.bench [mapping] [sim]``.

Each case runs in a fresh subprocess so that its peak resident memory is its own; the printout
gives wall time, peak memory (traced numpy/Python allocations and the process's max RSS) and the
ratio to the target from the issue that set it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

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
    spec = zoo.get(model_name)  # fresh spec: time the matrix enumeration too
    tracemalloc.start()
    t0 = time.perf_counter()
    m = mapping.map_model(spec, chip, strategy)
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return {"case": name, "wall_s": wall, "traced_mb": traced,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            "blocks": m.n_blocks, "tiles": chip.n_tiles, "tiers": chip.n_tiers,
            "utilisation": m.utilisation}


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


def _run_sim_case(name: str) -> dict:
    from . import simulator

    model_name, n_layers, batch, prompt, gen, kv, *_ = SIM_CASES[name]
    spec, chip, m = _sim_inputs(model_name, n_layers)
    w = simulator.Workload(batch=batch, prompt_len=prompt, gen_len=gen, kv_cache=kv)
    t0 = time.perf_counter()
    simulator.simulate(spec, chip, m, simulator.Workload())  # compile or load the engine
    first = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    tracemalloc.start()
    t0 = time.perf_counter()
    r = simulator.simulate(spec, chip, m, w)
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return {"case": name, "wall_s": wall, "first_call_s": first, "traced_mb": traced,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            "rss_before_mb": rss0, "events": r.n_events, "tokens_per_s": r.tokens_per_s}


def _case(suite: str, name: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "aimoe_lib.bench", "_case", suite, name],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_sim() -> list[dict]:
    """The simulator on 3D-SiM's README model and on Mixtral-8x7B."""
    rows = []
    print(f"{'case':42s} {'events':>10s} {'time s':>8s} {'/limit':>7s} {'vs 3D-SiM':>10s} "
          f"{'traced MB':>10s} {'RSS MB':>8s} {'/limit':>7s} {'compile s':>9s}")
    for name, (*_, t_lim, m_lim, t_3d, m_3d) in SIM_CASES.items():
        r = _case("sim", name)
        rows.append(r)
        tl = f"{r['wall_s'] / t_lim:7.3f}" if t_lim else "      -"
        ml = f"{r['maxrss_mb'] / m_lim:7.2f}" if m_lim else "      -"
        vs = f"{t_3d / r['wall_s']:9.0f}x" if t_3d else "         -"
        print(f"{name:42s} {r['events']:>10,d} {r['wall_s']:8.3f} {tl} {vs} "
              f"{r['traced_mb']:10.1f} {r['maxrss_mb']:8.0f} {ml} {r['first_call_s']:9.2f}")
    by = {r["case"]: r for r in rows}
    a, b = by["mixtral-8x7b 8 seq x (128+128)"], by["mixtral-8x7b 8 seq x (512+512)"]
    print(f"4x the tokens: {b['wall_s'] / a['wall_s']:.2f}x the time (limit 4.5x), "
          f"{b['events'] / a['events']:.2f}x the events")
    return rows


SUITES = {"mapping": bench_mapping, "sim": bench_sim}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m aimoe_lib.bench",
        description="Benchmarks of the mapper and the simulator, each case in a fresh "
                    "subprocess; prints wall time, peak memory and the ratio to each limit.",
        epilog="suites: " + "; ".join(
            f"{n}: {(f.__doc__ or '').strip().partition(chr(10))[0].rstrip('.')}"
            for n, f in SUITES.items()))
    ap.add_argument("suites", nargs="*", metavar="SUITE",
                    help=f"suites to run, of {', '.join(SUITES)} (default: all)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Command line; ``argv`` is the list of arguments (None: ``sys.argv[1:]``). Returns the exit
    status; unknown suites exit with status 2 and a message before anything runs."""
    if argv is None:
        argv = sys.argv[1:]
    if isinstance(argv, str) or not isinstance(argv, list | tuple) \
            or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"main(argv={argv!r}): pass a list of argument strings, e.g. "
                         "['mapping'] (a bare string would be split into letters)")
    argv = list(argv)
    if argv[:1] == ["_case"]:  # internal: one case, in the subprocess _case starts
        cases = {"mapping": (_run_mapping_case, MAPPING_CASES), "sim": (_run_sim_case, SIM_CASES)}
        if len(argv) != 3 or argv[1] not in cases or argv[2] not in cases[argv[1]][1]:
            print(f"_case needs a suite ({', '.join(cases)}) and one of its case names",
                  file=sys.stderr)
            return 2
        print(json.dumps(cases[argv[1]][0](argv[2])))
        return 0
    ap = _parser()
    a = ap.parse_args(argv)
    unknown = [n for n in a.suites if n not in SUITES]
    if unknown:
        ap.error(f"unknown benchmark suite(s) {', '.join(map(repr, unknown))}; choose from "
                 f"{', '.join(SUITES)}")
    for n in a.suites or list(SUITES):
        print(f"== {n}")
        SUITES[n]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
