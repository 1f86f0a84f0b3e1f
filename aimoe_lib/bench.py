"""Benchmarks: ``python -m aimoe_lib.bench [mapping]``.

Each case runs in a fresh subprocess so that its peak resident memory is its own; the printout
gives wall time, peak memory (traced numpy/Python allocations and the process's max RSS) and the
ratio to the target from the issue that set it.
"""

from __future__ import annotations

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
        out = subprocess.run([sys.executable, "-m", "aimoe_lib.bench", "_case", "mapping", name],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{name:28s} {r['blocks']:>10,d} {r['tiles']:>7,d}x{r['tiers']:<8,d} "
              f"{r['wall_s']:8.2f} {r['wall_s'] / t_lim:7.2f} {r['traced_mb']:10.0f} "
              f"{r['maxrss_mb']:8.0f} {r['maxrss_mb'] / m_lim:7.2f}")
    return rows


SUITES = {"mapping": bench_mapping}


def main(argv: list[str]) -> int:
    if argv[:1] == ["_case"]:
        print(json.dumps(_run_mapping_case(argv[2])))
        return 0
    names = argv or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"unknown benchmark {unknown}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    for n in names:
        print(f"== {n}")
        SUITES[n]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
