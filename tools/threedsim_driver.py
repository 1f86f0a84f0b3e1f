"""Run IBM's 3D-SiM (github.com/IBM/3D-CiM-LLM-Inference-Simulator) on its README
decoder-only model and print one JSON record with the reference numbers.

This is our own driver; it only imports 3D-SiM (no code copied from it).

Usage (in a venv with torch, numpy, tqdm, matplotlib, pydot):
    python threedsim_driver.py /path/to/3D-SiM/src \
        --n-layers 3 --target-len 12 --n-seqs 1 --start-len 1 [--kv-cache] \
        [--out result.json]

The model/accelerator/mapper/tracer/scheduler calls follow the README example
(d_model 512, 8 heads, ReLU FFN 4*d_model, vocab 1024, 100 tiles x 1024 tiers
of 512x512, GREEDY_IN_ORDER, split_ffn=True, stack_embedding=True,
communication=True, copy_and_cleanup_graph=False).
"""
import argparse
import json
import random
import resource
import sys
import time
from collections import Counter

OP_KINDS = [
    "tier_linear",
    "communication",
    "mha",
    "layer_norm",
    "digital_relu",
    "digital_gelu",
    "digital_add",
    "multinomial",
]


def op_kind(name):
    # same first-match order as the 3D-SiM scheduler's op_keys loop
    for k in OP_KINDS:
        if k in name:
            return k
    return "other"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src", help="path to 3D-SiM's src/ directory (contains threedsim/)")
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--target-len", type=int, default=12)
    p.add_argument("--n-seqs", type=int, default=1)
    p.add_argument("--start-len", type=int, default=1)
    p.add_argument("--kv-cache", action="store_true")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--nhead", type=int, default=8)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--tiles", type=int, default=100)
    p.add_argument("--tiers", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()

    sys.path.insert(0, a.src)
    import numpy as np
    import torch

    from threedsim.accelerator import Accelerator, AcceleratorConfig
    from threedsim.inference import fast_trace_decoder, schedule_execution
    from threedsim.mapping import Mapper, MapStrategy, Strategy
    from threedsim.models import DecoderOnlyTransformer
    from threedsim.modules import TransformerDecoderLayer
    from threedsim.modules.base import (
        assign_acc,
        fill_name_fields,
        make_traceable,
        make_use_linear,
    )

    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)

    t0 = time.time()
    config = AcceleratorConfig(
        tiles=a.tiles,
        tiers=a.tiers,
        tier_shape=(512, 512),
        kv_caching=a.kv_cache,
    )
    acc = Accelerator(config, device="meta")
    model = DecoderOnlyTransformer(
        TransformerDecoderLayer,
        num_layers=a.n_layers,
        decoder_layer_kwargs={
            "d_model": a.d_model,
            "nhead": a.nhead,
            "dim_feedforward": 4 * a.d_model,
        },
        embedding_layer_kwargs={
            "vocab_size": a.vocab,
            "embedding_dim": a.d_model,
            "max_seq_length": a.target_len,
        },
        device="meta",
    )
    assign_acc(model, acc)
    mapper = Mapper(
        accelerator=acc,
        model=model,
        map_strategy=MapStrategy(
            strategy=Strategy.GREEDY_IN_ORDER, split_ffn=True, stack_embedding=True
        ),
    )
    mapper.map_network()
    tile_sum = [int(x) for x in mapper.tile_sum]
    fill_name_fields(model)
    make_traceable(model, is_traceable=True)
    make_use_linear(model, use_linear=True)

    # mapping summary: layer name -> list of (tile, tier)
    from threedsim.modules import Embedding, Linear

    mapping = {}
    for n, m in model.named_modules():
        if isinstance(m, (Linear, Embedding)):
            mapping[n] = [[list(t[:2]) for t in row] for row in m.mapping]

    fast_traced = fast_trace_decoder(
        model, start_len=a.start_len, target_len=a.target_len, bsz=a.n_seqs
    )
    t_trace = time.time() - t0
    graph = fast_traced.graph
    counts_pre_comm = Counter(
        op_kind(n.name) for n in graph.nodes if n.op != "output"
    )
    # tier MVMs per layer name (before scheduling; the scheduler erases nodes)
    mvm_by_layer = Counter(
        n.kwargs["op_info"]["layer_name"]
        for n in graph.nodes
        if "tier_linear" in n.name
    )
    mha_seq_lens = sorted(
        Counter(
            n.kwargs["op_info"]["seq_len"] for n in graph.nodes if "mha" in n.name
        ).items()
    )

    t1 = time.time()
    (
        makespan,
        _mem_trace,
        peak_memory,
        energy,
        flops,
        energy_breakdown,
        latency_breakdown,
    ) = schedule_execution(
        graph,
        accelerator=model.accelerator,
        copy_and_cleanup_graph=False,
        communication=True,
    )
    t_sched = time.time() - t1

    conflicts_per_tile = {
        i: t.num_conflicts for i, t in enumerate(acc.tiles) if t.num_conflicts
    }
    active_time = {i: t.active_time for i, t in enumerate(acc.tiles) if t.active_time}

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rec = {
        "name": a.name
        or f"L{a.n_layers}_T{a.target_len}_S{a.n_seqs}_start{a.start_len}"
        + ("_kv" if a.kv_cache else "_nokv"),
        "n_layers": a.n_layers,
        "target_len": a.target_len,
        "n_seqs": a.n_seqs,
        "start_len": a.start_len,
        "kv_cache": a.kv_cache,
        "makespan_ns": makespan,
        "n_mvm": counts_pre_comm["tier_linear"],
        "op_counts_before_comm_insertion": dict(counts_pre_comm),
        "mvm_by_layer": dict(sorted(mvm_by_layer.items())),
        "mha_seq_len_counts": mha_seq_lens,
        "energy": {
            "total_nJ": energy,
            "active_nJ": energy - energy_breakdown["passive"],
            "breakdown_nJ": energy_breakdown,
        },
        "latency_breakdown_ns_summed_over_ops": latency_breakdown,
        "flops": flops,
        "peak_scratchpad": peak_memory,
        "tile_conflicts": int(sum(t.num_conflicts for t in acc.tiles)),
        "tile_conflicts_per_tile": conflicts_per_tile,
        "tile_active_time_ns": active_time,
        "tiers_used_per_tile": tile_sum,
        "max_tiers_per_tile": max(tile_sum),
        "n_tiles_used": sum(1 for x in tile_sum if x > 0),
        "mapping": mapping,
        "trace_s": round(t_trace, 2),
        "schedule_s": round(t_sched, 2),
        "wall_s_in_process": round(time.time() - t0, 2),
        "peak_rss_mb_in_process": round(peak_rss_mb, 1),
    }
    s = json.dumps(rec, indent=1, default=str)
    if a.out:
        with open(a.out, "w") as f:
            f.write(s)
    print("RESULT " + json.dumps({k: rec[k] for k in (
        "name", "makespan_ns", "n_mvm", "energy", "tile_conflicts",
        "max_tiers_per_tile", "wall_s_in_process", "peak_rss_mb_in_process")}, default=str))


if __name__ == "__main__":
    main()
