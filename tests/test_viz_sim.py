"""Figures and analyses of simulated inference (aimoe_lib.viz.simulation,
aimoe_lib.widgets.simulation)."""

import math

import numpy as np
import pytest
from figure_checks import check_figure
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from aimoe_lib import experiments, hardware, mapping, teaching
from aimoe_lib.models import ModelSpec
from aimoe_lib.simulator import Workload, simulate, trace
from aimoe_lib.viz import simulation as viz_sim
from aimoe_lib.viz.simulation import BINNED_ALPHA_FLOOR
from aimoe_lib.viz.style import time_scale


# ------------------------------------------------------------------------- fixtures
def _run(spec, chip, strategy="in_order", **wl):
    m = mapping.map_model(spec, chip, strategy)
    return simulate(spec, chip, m, Workload(record_events=True, **wl))


def _chip(spec, n_tiers, units="per_layer", preset=experiments.PRESET, **fields):
    """The chapter's chip: the fewest tiles of ``n_tiers`` tiers of the book's preset that hold
    ``spec``."""
    return mapping.fitting_chip(spec, n_tiers=n_tiers, units=units, name="fitted", preset=preset,
                                **fields)


@pytest.fixture(scope="module")
def small():
    """The chapter's small MoE on a 16-tier chip: one token, and 4 sequences x (2 + 3) tokens."""
    spec = teaching.simulation_moe()
    chip = _chip(spec, 16)
    one = _run(spec, chip, batch=1, prompt_len=1, gen_len=1)
    batch = _run(spec, chip, batch=4, prompt_len=2, gen_len=3)
    return spec, chip, one, batch


def _tiny():
    """One layer, one tile: every MVM of the model runs on tile 0, one after another."""
    spec = ModelSpec(d_model=16, n_layers=1, n_heads=2, d_ff=16, vocab_size=8, ffn="relu")
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, 16, 16)
                 for m in spec.matrices() if m.role.value != "embedding")
    chip = hardware.ChipConfig(n_tiles=1, n_tiers=blocks, tier_rows=16, tier_cols=16)
    return spec, chip




# ------------------------------------------------------------------------- figures
FIGURES = {
    "gantt one token": lambda s: viz_sim.gantt(s[2], color_by="op"),
    "gantt batch": lambda s: viz_sim.gantt(s[3]),
    "token_timeline batch": lambda s: viz_sim.token_timeline(s[3], seq=1),
    "token_timeline one token": lambda s: viz_sim.token_timeline(s[2]),
    "energy_breakdown": lambda s: viz_sim.energy_breakdown(s[3]),
    "latency_breakdown busy only": lambda s: viz_sim.latency_breakdown(s[3], with_path=False),
    "latency_breakdown with path": lambda s: viz_sim.latency_breakdown(s[3], pass_=0),
    "overview": lambda s: viz_sim.overview(s[3], color_by="op"),
    "conflicts_picture": lambda s: viz_sim.conflicts_picture(s[0], n_tiers=16, batch=2),
    "sweep_batch": lambda s: viz_sim.sweep_batch(s[0], s[1], mapping.map_model(s[0], s[1]),
                                                 batches=(1, 4), gen_len=2),
}


@pytest.mark.parametrize("make", FIGURES.values(), ids=FIGURES.keys())
def test_figures_have_title_takeaway_and_labelled_axes(small, make):
    check_figure(make(small))


def test_a_large_run_is_aggregated_and_says_so(small):
    spec, chip, _, _ = small
    r = _run(spec, chip, batch=8, prompt_len=4, gen_len=4)
    data = trace.gantt_data(r, max_rows=10)
    assert len(data.labels) == 10 and data.truncated
    assert data.n_used["tiles"] == chip.n_tiles
    fig = viz_sim.gantt(r, max_rows=10, max_bars=100, n_bins=50)
    check_figure(fig)
    assert "busiest rows" in fig.get_suptitle() and "bins" in fig.get_suptitle()
    ax = fig.axes[0]
    assert len(ax.images) == 1 and ax.images[0].get_array().shape[:2] == (10, 50)


def test_the_kept_rows_are_the_busiest_tiles(small):
    r = small[3]
    data = trace.gantt_data(r, max_rows=8, resources=("tiles",))
    shown = set(data.unit.tolist())
    busy = r.tile_busy_ns
    assert len(shown) == 8
    assert min(busy[list(shown)]) >= max(np.delete(busy, list(shown)))


def test_binned_cells_add_up_to_the_busy_time(small):
    """Busy time is split exactly over the bins an event overlaps."""
    r = small[3]
    data = trace.gantt_data(r, max_rows=100)
    cls = data.layer % 2
    n_bins = 37
    busy = viz_sim._binned_busy(data, cls, 2, r.makespan_ns, n_bins)
    assert busy.shape == (len(data.labels), 2, n_bins)
    per_row = np.bincount(data.row, weights=data.end_ns - data.start_ns)
    assert np.allclose(busy.sum(axis=(1, 2)), per_row, rtol=1e-12, atol=1e-6)
    assert np.all(busy.sum(axis=1) <= r.makespan_ns / n_bins * (1 + 1e-9))  # one unit, one op
    img = viz_sim._binned_image(data, cls, ["k", "r"], 2, r.makespan_ns, n_bins)
    assert img.shape == (len(data.labels), n_bins, 4)
    assert np.all((img[..., 3] == 0) | (img[..., 3] >= BINNED_ALPHA_FLOOR))


def test_gantt_bars_of_one_tile_match_the_event_log():
    spec, chip = _tiny()
    r = _run(spec, chip, batch=1, prompt_len=1, gen_len=1)
    ev = r.events[r.events["resource"] == 0]
    assert ev.size >= 4 and set(ev["unit"].tolist()) == {0}
    fig = viz_sim.gantt(r, color_by="op")
    f, unit = time_scale(r.makespan_ns)
    assert unit == "ns" and f == 1.0
    ax = fig.axes[0]
    row = trace.gantt_data(r).labels.index("tile 0")
    bars = []
    for coll in ax.collections:
        if (coll.get_gid() or "").startswith("gantt:"):
            for path in coll.get_paths():
                v = path.vertices
                if math.isclose((v[:, 1].min() + v[:, 1].max()) / 2, row, abs_tol=1e-9):
                    bars.append((float(v[:, 0].min()), float(v[:, 0].max())))
    expect = zip(ev["start_ns"].tolist(), ev["end_ns"].tolist(), strict=True)
    assert sorted(bars) == sorted(expect)


def test_energy_bars_are_the_energy_breakdown_in_uj(small):
    r = small[3]
    fig = viz_sim.energy_breakdown(r)
    bars = {p.get_gid(): p.get_height() for p in fig.axes[0].patches
            if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("energy:")}
    assert bars == {f"energy:{k}": v / 1e6 for k, v in r.energy_breakdown_pj.items()}


def test_figures_need_the_event_log(small):
    spec, chip = small[0], small[1]
    m = mapping.map_model(spec, chip)
    r = simulate(spec, chip, m, Workload())
    with pytest.raises(ValueError, match="record_events"):
        viz_sim.gantt(r)
    with pytest.raises(ValueError, match="color_by"):
        viz_sim.gantt(small[2], color_by="seq")
    with pytest.raises(ValueError, match="seq"):
        viz_sim.token_timeline(small[2], seq=3)


# ------------------------------------------------------------------------- analyses
CASES = {
    "in_order sram per-layer": dict(n_tiers=16, strategy="in_order", units="per_layer", kv="sram",
                                    wl=dict(batch=3, prompt_len=4, gen_len=3, routing="zipf")),
    "moe_stacked dram pool": dict(n_tiers=16, strategy="moe_stacked", units="pool", kv="dram",
                                  wl=dict(batch=2, prompt_len=3, gen_len=2)),
    "one tier no kv cache": dict(n_tiers=1, strategy="in_order", units="per_layer", kv="sram",
                                 wl=dict(batch=2, prompt_len=2, gen_len=3, kv_cache=False)),
    "balanced few tiles": dict(n_tiers=8, strategy="balanced", units="pool", kv="sram",
                               wl=dict(batch=4, prompt_len=1, gen_len=2, seed=3)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_conflict_causes_account_for_every_conflict(case):
    spec = teaching.simulation_moe()
    chip = _chip(spec, case["n_tiers"], units=case["units"],
                               kv_placement=case["kv"])
    r = _run(spec, chip, case["strategy"], **case["wl"])
    cc = trace.conflict_causes(r)
    assert sum(cc.count.values()) == r.tile_conflicts == len(cc.examples)
    assert math.isclose(sum(cc.stall_ns.values()), r.stall_ns, rel_tol=1e-9, abs_tol=1e-6)
    if case["n_tiers"] == 1:  # every block on a tile of its own: only the same weights collide
        assert cc.count["shared tile"] == cc.count["same token"] == 0


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_critical_path_adds_up_to_each_token_time(case):
    spec = teaching.simulation_moe()
    chip = _chip(spec, case["n_tiers"], units=case["units"],
                               kv_placement=case["kv"])
    r = _run(spec, chip, case["strategy"], **case["wl"])
    tt = r.token_times_ns
    for s in range(tt.shape[0]):
        for p in range(tt.shape[1]):
            cp = trace.critical_path(r, s, p)
            expect = tt[s, p] - (tt[s, p - 1] if p else 0.0)
            assert math.isclose(cp.total_ns, expect, rel_tol=1e-12)
            assert math.isclose(sum(cp.by_kind_ns.values()), expect, rel_tol=1e-9)
            assert all(v >= -1e-9 for v in cp.by_kind_ns.values())
            assert cp.steps[-1][0] == "sample"


@pytest.mark.parametrize("preset", ["paper", experiments.PRESET])
def test_one_token_on_its_own_tiles_waits_for_nothing(preset):
    """Batch 1, one token, one tier per tile: the critical path is compute plus network only, and
    its analog part is one MVM latency per MVM on the chain (every MVM depth 1)."""
    spec = teaching.simulation_moe()
    chip = _chip(spec, 1, preset=preset)
    r = _run(spec, chip, batch=1, prompt_len=1, gen_len=1)
    cp = trace.critical_path(r)
    prog = r.program
    assert cp.by_kind_ns["waiting for a tile"] == 0 and cp.by_kind_ns["waiting for a unit"] == 0
    n_mvm = sum(1 for name, *_ in cp.steps if prog.res[prog.names.index(name)] == 0)
    assert math.isclose(cp.by_kind_ns["analog MVM"], n_mvm * chip.cost.tier_mvm_latency_ns,
                        rel_tol=1e-12)
    assert cp.total_ns == r.makespan_ns


def test_batch_sweep_fills_the_pipeline(small):
    spec, chip = small[0], small[1]
    rows = experiments.batch_sweep(spec, chip, mapping.map_model(spec, chip), batches=(1, 2, 8),
                               gen_len=2)
    tps = [row["tokens_per_s"] for row in rows]
    assert tps[0] < tps[1] < tps[2]
    assert [row["batch"] for row in rows] == [1, 2, 8]


def test_op_kinds_come_from_the_program_not_from_names(small):
    """Each operation's kind is its Step label: the name without layer prefix and branch index."""
    prog = small[2].program
    index, labels = trace.op_kinds(prog)
    for name, k in zip(prog.names, index, strict=True):
        bare = name.split(".", 1)[1] if name.startswith("L") and "." in name else name
        assert labels[k] == bare.split("[", 1)[0]
    assert labels[:2] == ("embed+ln1", "qkv") and labels[-2:] == ("lm_head", "sample")


def test_the_chapter_chip_holds_the_model_with_the_fewest_tiles():
    spec = teaching.simulation_moe()
    chip = _chip(spec, 16)
    assert chip.n_tiles == math.ceil(214 / 16)
    assert chip.n_dpus == 24 * spec.n_layers and chip.unit_assignment.value == "per_layer"
    pool = _chip(spec, 16, units="pool")
    assert (pool.n_dpus, pool.n_mha_units) == (4, 1)
    mapping.map_model(spec, chip, "in_order")
    with pytest.raises(mapping.MappingError):
        mapping.map_model(spec, _chip(spec, 1).replace(n_tiles=213), "in_order")
    with pytest.raises(ValueError, match="units"):
        _chip(spec, 16, units="shared")


def test_a_result_keeps_its_workload_and_program(small):
    r = small[3]
    assert r.workload.batch == 4 and r.workload.gen_len == 3
    assert r.program.workload is r.workload
    assert r.op_names == r.program.names
    assert r.passive_power_w == small[1].passive_power_w


# ------------------------------------------------------------------------- context length
@pytest.fixture(scope="module")
def context_rows():
    """The context study on the small MoE, with 16 kB of KV capacity per attention unit so that
    the longest prompt spills."""
    from aimoe_lib import context_study

    spec = teaching.simulation_moe()
    chip = _chip(spec, 16, kv_sram_mb_per_mha_unit=0.016)
    m = mapping.map_model(spec, chip)
    return [context_study.context_point(spec, chip, m, p, gen_len=3) for p in (4, 16, 64)]


def test_context_figure_stacks_each_token_time_and_energy(context_rows):
    rows = context_rows
    assert rows[0].spill_fraction == 0 < rows[-1].spill_fraction
    fig = viz_sim.context_costs(rows)
    check_figure(fig)
    ax, axe = fig.axes[:2]

    def stacks(a, prefix):
        tops = {}
        for p in a.patches:
            if isinstance(p, Rectangle) and (p.get_gid() or "").startswith(prefix):
                x = round(p.get_x() + p.get_width() / 2)
                tops[x] = max(tops.get(x, 0.0), p.get_y() + p.get_height())
        return [tops[i] for i in sorted(tops)]

    assert np.allclose(stacks(ax, "time:"), [r.tpot_ns / 1e6 for r in rows], rtol=1e-9)
    assert np.allclose(stacks(axe, "energy:"), [r.decode_total_pj / 1e9 for r in rows], rtol=1e-9)
    att = [p.get_height() for p in ax.patches if p.get_gid() == "time:attention"]
    assert np.allclose(att, [r.attention_ns / 1e6 for r in rows], rtol=1e-9)
    last = rows[-1]
    take = fig.get_supxlabel()
    assert f"{last.attention_time_share:.0%} attention" in take
    assert f"{last.prompt_len:,} prompt tokens" in take
    with pytest.raises(ValueError, match="rows"):
        viz_sim.context_costs([])


def test_context_table_has_a_line_per_prompt_and_the_whole_run(context_rows):
    text = viz_sim.format_context_table(context_rows).splitlines()
    assert len(text) == 2 + len(context_rows) + 1
    for line, r in zip(text[2:], context_rows, strict=False):
        assert line.split()[0] == f"{r.prompt_len:,}"
        assert line.split()[-1] == f"{r.decode_total_pj / 1e9:.2f}"
    assert text[-1].startswith(f"whole run at {context_rows[-1].prompt_len:,} prompt tokens")
    with pytest.raises(ValueError, match="rows"):
        viz_sim.format_context_table([])


# ------------------------------------------------------------------------- widget panel
def test_simulation_panel_constructs_and_shows_mapping_errors():
    import ipywidgets

    from aimoe_lib.widgets.simulation import simulation_panel

    panel = simulation_panel(batch=2, prompt_len=2, gen_len=2)
    assert isinstance(panel, ipywidgets.interactive)
    assert isinstance(panel.result, Figure)
    bad = simulation_panel(batch=1, prompt_len=1, gen_len=1, n_tiers=4, strategy="moe_stacked")
    assert "MappingError" in bad.result.data


def test_chapter_4_slider_frames_are_the_panel_figure():
    """The static slider's frames are the live panel's figure at each grid point: its default is
    the panel at its defaults (4 sequences, 16 tiers), another frame the figure of that run."""
    from aimoe_lib.viz.static import png_bytes
    s = viz_sim.overview_slider(batches=(1, 4), tiers=(16,))
    assert s.shape == (2, 1) and s.names == ("batch", "n_tiers")
    assert s._repr_png_() == png_bytes(viz_sim.overview(experiments.small_run(None, 4, 4, 4, 16)))
    assert s.frame(batch=1, n_tiers=16) == png_bytes(
        viz_sim.overview(experiments.small_run(None, 1, 4, 4, 16)))
