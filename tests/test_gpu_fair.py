"""Tests of the fair GPU comparison: weight formats, the calibration and power model fitted to
published measurements (data/gpu_published.json), continuous serving, operating-point curves and
the comparisons at equal TPOT, area and power."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from aimoe_lib import gpu, gpu_comparison, shipped, zoo
from aimoe_lib.gpu_comparison import GpuOperatingPoint

LLAMA7 = zoo.get("llama-2-7b")
MIXTRAL = zoo.get("mixtral-8x7b")


# ------------------------------------------------------------------------------- weight formats
def test_precisions_set_bytes_and_tensor_cores():
    assert gpu.PRECISIONS == {"bf16": (2.0, "bf16"), "fp8": (1.0, "fp8"), "int8": (1.0, "int8"),
                              "int4": (0.5, "bf16")}
    b16 = gpu.roofline(LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2, precision="bf16")
    f8 = gpu.roofline(LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2, precision="fp8")
    i4 = gpu.roofline(LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2, precision="int4")
    # weights read once per step: bytes scale with the format exactly
    assert f8.decode_weight_bytes == pytest.approx(b16.decode_weight_bytes / 2)
    assert i4.decode_weight_bytes == pytest.approx(b16.decode_weight_bytes / 4)
    assert (b16.compute, f8.compute, i4.compute) == ("bf16", "fp8", "bf16")
    assert f8.precision == "fp8"
    # precision='bf16' is the default roofline exactly
    assert b16.time_per_output_token_s == gpu.roofline(
        LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2).time_per_output_token_s


def test_compute_bound_prefill_doubles_with_fp8_peak():
    # 16 x 2048 prompt tokens of Llama-2-7B: compute-bound; FP8 peak is twice BF16 (1978.9 vs
    # 989.4 TFLOP/s) with the same GEMM efficiency, so the prefill takes half as long (minus
    # the all-reduce-free, memory-independent part: one GPU, no communication).
    kw = dict(batch=16, prompt_len=2048, gen_len=1, n_gpus=1)
    b16 = gpu.roofline(LLAMA7, "h100", precision="bf16", **kw)
    f8 = gpu.roofline(LLAMA7, "h100", precision="fp8", **kw)
    assert b16.prefill_bound == f8.prefill_bound == "compute"
    assert f8.ttft_s == pytest.approx(b16.ttft_s * 989.4 / 1978.9)


@pytest.mark.parametrize("kw, match", [
    (dict(precision="fp4"), "precision"),
    (dict(precision="fp8", bytes_per_param=1), "precision='fp8' and bytes_per_param"),
    (dict(precision="int8", compute="int8"), "precision='int8' and compute"),
    (dict(batch=0), "batch"),
    (dict(batch=1.5), "batch"),
    (dict(n_gpus=0), "n_gpus"),
    (dict(n_gpus=-2), "n_gpus"),
    (dict(serving="dynamic"), "serving"),
    (dict(power_model="measured"), "power_model"),
    (dict(calibrated="yes"), "calibrated"),
])
def test_invalid_operating_points_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        gpu.roofline(LLAMA7, "h100", **kw)


def test_fp8_on_a100_is_refused():
    with pytest.raises(ValueError, match="no FP8"):
        gpu.roofline(LLAMA7, "a100", precision="fp8")


def test_effective_bits_closed_form():
    # uniform quantiser step D = 2 w_max / 2^b has rounding noise D / sqrt(12); 5 % noise:
    # 2^b = 2 / (0.05 sqrt(12)) = 11.547 -> 3.53 bits
    assert gpu.effective_bits(0.05) == pytest.approx(math.log2(2 / (0.05 * math.sqrt(12))))
    assert gpu.effective_bits(0.05) == pytest.approx(3.53, abs=0.01)
    with pytest.raises(ValueError, match="relative_noise"):
        gpu.effective_bits(0)


# ------------------------------------------------------------------------------- calibration
def test_calibration_adds_overhead_per_pass():
    # batch 1, one decode step: calibrated time = datasheet roofline time + overhead + per-seq
    # (KV scaled by 1/kv_efficiency: KV bytes of a 1-token context are tiny but counted)
    cal = gpu.Calibration({f: 0.001 for f in gpu.FRAMEWORKS}, flop_half_tokens=0.0,
                          per_seq_s=0.0, kv_efficiency=1.0)
    a = gpu.roofline(LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2)
    b = gpu.roofline(LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2, calibrated=cal)
    assert b.time_per_output_token_s == pytest.approx(a.time_per_output_token_s + 0.001)
    assert b.ttft_s == pytest.approx(a.ttft_s + 0.001)
    cal2 = gpu.Calibration({f: 0.0 for f in gpu.FRAMEWORKS}, 0.0, per_seq_s=1e-5)
    c = gpu.roofline(LLAMA7, "h100", batch=8, prompt_len=1, gen_len=2, calibrated=cal2)
    d = gpu.roofline(LLAMA7, "h100", batch=8, prompt_len=1, gen_len=2)
    assert c.time_per_output_token_s == pytest.approx(d.time_per_output_token_s + 8e-5)


def _bare(framework="nim", allreduce_scale=1.0):
    # a calibration that adds nothing but its structure: no overheads, full efficiencies
    return gpu.Calibration({f: 0.0 for f in gpu.FRAMEWORKS}, flop_half_tokens=0.0, per_seq_s=0.0,
                           kv_efficiency=1.0, framework=framework,
                           allreduce_scale=allreduce_scale)


def test_calibrated_step_adds_gemm_and_attention_kernels():
    # Llama-2-7B (hand-counted from its config: 32 layers, d 4096, vocab 32000, MHA), one H100
    # in bf16, 512 sequences at 1,024 tokens of context: the GEMMs are compute-bound, attention
    # is memory-bound, and the calibrated step is the sum of the two kernels' rooflines, where
    # the plain roofline takes the larger of total bytes and total FLOPs.
    spec, h = zoo.get("llama-2-7b"), gpu.get("h100")
    B, ctx = 512, 1024
    bw = 3350e9 * (2970 / 3350)                 # Azure Triad 2.97 TB/s
    fl = 989.4e12 * (1290.1 / 1978.9)           # cuBLASLt FP8 GEMM / FP8 peak, applied to bf16
    embed = 32000 * 4096
    w_bytes = (spec.total_params - embed + B * 4096) * 2
    lin_flops = B * 2 * (spec.active_params - embed)  # the LM head counts, the lookup does not
    kv_bytes = B * (2 * 32 * 4096 * 2) * (ctx + 1)    # read the context, write one entry
    att_flops = B * (4 * 4096 * 32) * ctx              # QK^T and PV: 4 d FLOPs per key and layer
    kw = dict(batch=B, prompt_len=ctx - 1, gen_len=2, check_memory=False, n_gpus=1)
    cal = gpu.roofline(spec, "h100", calibrated=_bare(), **kw)
    plain = gpu.roofline(spec, "h100", **kw)
    want = max(w_bytes / bw, lin_flops / fl) + max(kv_bytes / bw, att_flops / fl)
    assert lin_flops / fl > w_bytes / bw and kv_bytes / bw > att_flops / fl
    assert cal.time_per_output_token_s == pytest.approx(want, rel=2e-3)
    assert plain.time_per_output_token_s == pytest.approx(
        max((w_bytes + kv_bytes) / bw, (lin_flops + att_flops) / fl), rel=2e-3)
    assert h.bw_efficiency == pytest.approx(2970 / 3350)


def test_gqa_reads_per_query_head_in_frameworks_that_do():
    # Llama-2-70B: 64 query heads share 8 KV heads. gpt-fast and TensorRT-LLM v0.6.1 read the
    # context once per query head, 8 times; NIM and vLLM once. One decode step at context c
    # (plus one written entry): (8 c + 1) / (c + 1) times the bytes.
    kw = dict(batch=4, prompt_len=999, gen_len=2, n_gpus=2, precision="fp8", kv_bytes=1)
    by = {fw: gpu.roofline("llama-2-70b", "h100", calibrated=_bare(fw), **kw).decode_kv_bytes
          for fw in gpu.FRAMEWORKS}
    c = 1000
    assert by["tensorrt-llm"] / by["nim"] == pytest.approx((8 * c + 1) / (c + 1))
    assert by["gpt-fast"] == by["tensorrt-llm"] and by["vllm"] == by["nim"]
    assert by["nim"] == pytest.approx(4 * (2 * 80 * 8 * 128 * 1) * (c + 1))
    # a model whose KV heads are its query heads reads the same in every framework
    mha = {fw: gpu.roofline("llama-2-7b", "h100", batch=4, prompt_len=999, gen_len=2,
                            calibrated=_bare(fw)).decode_kv_bytes for fw in gpu.FRAMEWORKS}
    assert len(set(mha.values())) == 1


def test_allreduce_scale_scales_the_latency_only():
    # batch 1 on 2 GPUs: 2 all-reduces per layer, each latency x scale + 2(n-1)/n bytes / bus
    h = gpu.get("h100")
    kw = dict(batch=1, prompt_len=1, gen_len=2, n_gpus=2)
    one = gpu.roofline(LLAMA7, "h100", calibrated=_bare(allreduce_scale=1.0), **kw)
    half = gpu.roofline(LLAMA7, "h100", calibrated=_bare(allreduce_scale=0.5), **kw)
    assert one.decode_comm_s - half.decode_comm_s == pytest.approx(
        2 * 32 * 0.5 * h.allreduce_latency_us * 1e-6)
    assert one.decode_comm_s == pytest.approx(
        2 * 32 * (h.allreduce_latency_us * 1e-6 + 1 * 4096 * 2 / (h.allreduce_bus_gb_s * 1e9)))
    with pytest.raises(ValueError, match="allreduce_scale"):
        _bare(allreduce_scale=-1)


def test_overhead_per_layer_is_paid_once_per_layer():
    # Llama-2-7B has 32 layers: 50 µs per layer is 1.6 ms per pass, in the prefill and each step
    per_pass = _bare()
    ov = {f: 50e-6 for f in gpu.FRAMEWORKS}
    per_layer = gpu.Calibration(ov, 0.0, 0.0, 1.0, overhead_per_layer=True)
    assert per_layer.pass_overhead_s(32) == pytest.approx(1.6e-3)
    kw = dict(batch=2, prompt_len=10, gen_len=5)
    a = gpu.roofline(LLAMA7, "h100", calibrated=per_pass, **kw)
    b = gpu.roofline(LLAMA7, "h100", calibrated=per_layer, **kw)
    assert b.time_per_output_token_s - a.time_per_output_token_s == pytest.approx(1.6e-3)
    assert b.ttft_s - a.ttft_s == pytest.approx(1.6e-3)
    assert per_layer.for_framework("vllm").overhead_per_layer


def test_fit_searches_overheads_exactly():
    # the fit evaluates each row at two overheads and searches the overhead grid in closed form;
    # an exhaustive search over the same small grid (every row predicted at every overhead)
    # must pick the same overheads
    grid = dict(kv_efficiencies=(1.0,), half_tokens=(0.0,), per_seq_s=(15e-6,),
                allreduce_scales=(0.1,), int8_efficiencies=(0.8,), expert_efficiencies=(0.55,))
    ohs = (0.0, 26e-6, 56e-6, 74e-6, 92e-6, 150e-6)
    fast = gpu.fit_calibration(overheads_s=ohs, **grid)
    pts = gpu.published_points("decode", ("fit",))
    for fw in gpu.FRAMEWORKS:
        fp = [p for p in pts if p.framework == fw]

        def loss(oh):
            c = gpu.Calibration({f: oh for f in gpu.FRAMEWORKS}, 0.0, 15e-6, 1.0, fw, 0.1,
                                overhead_per_layer=True, int8_weight_efficiency=0.8,
                                gathered_expert_efficiency=0.55)
            return sum(math.log(p.predict(c, "tdp") / p.value) ** 2 for p in fp)

        assert fast.overheads_s[fw] == min(ohs, key=loss)


def test_int8_and_gathered_expert_reads_only_where_the_framework_does_them():
    # batch 1, one decode step of Mixtral in int8 on one A100: the weight kernel reads the dense
    # part at 1 / e8 and the 2 selected experts of each of 32 layers at 1 / (e8 ge) of their
    # bytes in gpt-fast; other frameworks read every byte at the full bandwidth.
    e8, ge = 0.8, 0.55
    cal = gpu.Calibration({f: 0.0 for f in gpu.FRAMEWORKS}, 0.0, int8_weight_efficiency=e8,
                          gathered_expert_efficiency=ge)
    assert cal.for_framework("gpt-fast").weight_read_factor(True, True) == pytest.approx(
        1 / (e8 * ge))
    assert cal.for_framework("vllm").weight_read_factor(True, True) == 1.0
    a = gpu.get("a100")
    bw = a.hbm_bandwidth_gb_s * 1e9 * a.bw_efficiency
    kw = dict(batch=1, prompt_len=1, gen_len=2, n_gpus=1, precision="int8", check_memory=False)
    expert = 32 * 2 * 3 * 4096 * 14336            # config.json: 32 layers, top-2, 3 matrices
    fast = gpu.roofline(MIXTRAL, "a100", calibrated=cal.for_framework("gpt-fast"), **kw)
    vllm = gpu.roofline(MIXTRAL, "a100", calibrated=cal.for_framework("vllm"), **kw)
    w = vllm.decode_weight_bytes                   # 1 byte per weight read
    assert fast.decode_weight_bytes == w           # the bytes are the same; their time is not
    dense = w - expert
    assert fast.time_per_output_token_s - vllm.time_per_output_token_s == pytest.approx(
        (dense * (1 / e8 - 1) + expert * (1 / (e8 * ge) - 1)) / bw, rel=1e-3)
    # bf16 weights: only the expert gather
    kw["precision"] = "bf16"
    fast = gpu.roofline(MIXTRAL, "a100", calibrated=cal.for_framework("gpt-fast"), **kw)
    vllm = gpu.roofline(MIXTRAL, "a100", calibrated=cal.for_framework("vllm"), **kw)
    assert fast.time_per_output_token_s - vllm.time_per_output_token_s == pytest.approx(
        2 * expert * (1 / ge - 1) / bw, rel=1e-3)
    for field in ("int8_weight_efficiency", "gathered_expert_efficiency"):
        with pytest.raises(ValueError, match=field):
            gpu.Calibration({f: 0.0 for f in gpu.FRAMEWORKS}, 0.0, **{field: 0.0})


def test_fitted_int8_efficiency_matches_the_published_bandwidths():
    # gpt-fast's README publishes the bandwidth its runs reach (commit c9f683e, Benchmarks
    # table): Llama-2-7B 1,397.31 GB/s in BF16, 1,069.20 GB/s in int8; Llama-3.1-8B 1,410.76 and
    # 1,030.89. The ratio (0.73-0.77, which also carries the fixed per-layer time) is what the fit
    # found for the int8 reads from the tokens/s alone, within a grid step.
    ratios = (1069.20 / 1397.31, 1030.89 / 1410.76)
    assert all(abs(gpu.CALIBRATION.int8_weight_efficiency - r) <= 0.075 for r in ratios)


def test_flop_scale_is_half_at_half_tokens():
    cal = gpu.Calibration({f: 0.0 for f in gpu.FRAMEWORKS}, flop_half_tokens=128.0)
    assert cal.flop_scale(128) == 0.5 and cal.flop_scale(384) == 0.75


def test_continuous_serving_adds_joining_prefills():
    # in-flight batching at B sequences: every step carries B / gen_len prefills of one sequence
    kw = dict(batch=25, prompt_len=5000, gen_len=500, n_gpus=2, precision="fp8")
    cont = gpu.roofline("llama-2-70b", "h100", serving="continuous", **kw)
    one = gpu.roofline("llama-2-70b", "h100", batch=1, prompt_len=5000, gen_len=1, n_gpus=2,
                       precision="fp8")
    assert cont.ttft_s == pytest.approx(one.ttft_s)
    # the step itself at the mean context 5000 + 250
    step = gpu.roofline("llama-2-70b", "h100", batch=25, prompt_len=5250, gen_len=2, n_gpus=2,
                        precision="fp8")
    assert cont.time_per_output_token_s == pytest.approx(
        step.time_per_output_token_s + 25 / 500 * one.ttft_s, rel=1e-3)


def test_calibration_constants_are_the_fit():
    # the shipped constants are what fit_calibration finds on the shipped fit rows (~30 s)
    assert gpu.fit_calibration() == gpu.CALIBRATION


def test_calibration_constants_are_a_local_optimum_of_the_fit():
    # moving any constant one grid step does not lower the fitted loss
    pts = gpu.published_points("decode", ("fit",))
    base = gpu.CALIBRATION

    def loss(c):
        return sum(math.log(p.predict(c, "tdp") / p.value) ** 2 for p in pts)

    def cal(**kw):
        return replace(base, **kw)

    l0 = loss(base)
    for kv in (base.kv_efficiency - 0.1, base.kv_efficiency + 0.1):
        if 0 < kv <= 1:
            assert loss(cal(kv_efficiency=kv)) >= l0 - 1e-9
    for ar in (0.0, 0.25):                     # the grid neighbours of the fitted 0.1
        assert loss(cal(allreduce_scale=ar)) >= l0 - 1e-9
    for ps in (base.per_seq_s - 5e-6, base.per_seq_s + 5e-6):
        if ps >= 0:
            assert loss(cal(per_seq_s=ps)) >= l0 - 1e-9
    for f in ("int8_weight_efficiency", "gathered_expert_efficiency"):
        for step in (-0.05, 0.05):
            v = round(getattr(base, f) + step, 2)
            if 0 < v <= 1:
                assert loss(cal(**{f: v})) >= l0 - 1e-9
    for fw in gpu.FRAMEWORKS:
        for step in (-2e-6, 2e-6):
            ov = dict(base.overheads_s)
            ov[fw] = ov[fw] + step
            if ov[fw] >= 0:
                assert loss(cal(overheads_s=ov)) >= l0 - 1e-9
    # a fixed time per pass instead of per layer fits the same rows worse (the choice the
    # validation appendix states): the best per-pass calibration near the shipped one
    per_pass = gpu.fit_calibration(overhead_per_layer=False, kv_efficiencies=(1.0,),
                                   half_tokens=(0.0,), per_seq_s=(10e-6, 15e-6),
                                   allreduce_scales=(0.5,), int8_efficiencies=(0.75, 0.8),
                                   expert_efficiencies=(0.55, 0.6))
    assert loss(per_pass) > l0


# ------------------------------------------------------------------------------- published data
def test_every_published_row_names_its_source():
    data = json.loads(shipped.data_path("gpu_published.json").read_text())
    for kind in ("decode", "energy"):
        for row in data[kind]:
            src = data["sources"][row["source"]]
            for f in ("title", "authors", "year", "url"):
                assert src[f], (row["id"], f)
            assert row["where"] and row["published"] and row["value"] > 0
            assert row["role"] in ("fit", "heldout", "excluded")
            if row["role"] == "excluded":
                assert row.get("note")


def test_published_values_are_the_published_numbers():
    # value = the published number converted as stated (checked by hand)
    pts = {p.id: p for p in gpu.published_points("decode") + gpu.published_points("energy")}
    assert pts["gptfast-llama2-7b-1xa100"].value == pytest.approx(1 / 104.9)
    assert pts["nim-llama33-70b-c25-h100"].value == pytest.approx(38.75e-3)
    assert pts["trtllm-llama2-70b-b1024-h100"].value == pytest.approx(2657 * 2)
    assert pts["vllm-mixtral-b8-h200"].value == pytest.approx(1.91744)
    assert pts["alice-mistral-7b-b1-h100"].value == pytest.approx(732e-6 * 3600)
    assert pts["mlenergy-v3-llama31-8b-b64-h100"].value == 0.12
    # third round: gpt-fast README c9f683e and vLLM nightly builds 9523 (A100) and 9555 (H100)
    assert pts["gptfast-llama31-70b-2xa100"].value == pytest.approx(1 / 16.03)
    assert pts["gptfast-llama2-70b-int8-8xa100"].value == pytest.approx(1 / 80.44)
    assert pts["vllm-mixtral-b8-a100"].value == pytest.approx(3.64384)
    assert pts["vllm-mixtral-b8-h100"].value == pytest.approx(2.32697)
    assert pts["mlenergy-v2-llama31-8b-b64-h100"].gpu_busy_fraction == 0.38


def test_stated_conversion_matches_the_published_number():
    # a row whose conversion reads '1 / X tokens/s' publishes X tokens/s and stores 1/X seconds
    data = json.loads(shipped.data_path("gpu_published.json").read_text())
    n = 0
    for row in data["decode"]:
        conv = row["converted"]
        if conv.startswith("1 / ") and conv.endswith(" tokens/s"):
            x = conv[len("1 / "):-len(" tokens/s")]
            assert row["published"] == f"{x} tokens/s", row["id"]
            assert row["value"] == pytest.approx(1 / float(x.replace(",", ""))), row["id"]
            n += 1
    assert n >= 10


def test_held_out_rows_are_not_used_by_the_fit():
    fit = {p.id for p in gpu.published_points("decode", ("fit",))}
    held = {p.id for p in gpu.published_points("decode", ("heldout",))}
    assert len(held) >= 2 and not fit & held
    # the fit covers batch 1 and batch >= 8, A100 and H100-class GPUs, dense and MoE
    pts = gpu.published_points("decode", ("fit", "heldout"))
    assert {p.gpu for p in pts} >= {"a100", "h100"}
    assert any(p.batch == 1 for p in pts) and any(p.batch >= 8 for p in pts)
    assert any(p.model == "mixtral-8x7b" for p in pts) and any(p.model == "llama-2-7b"
                                                                for p in pts)
    # so does the held-out set of the current round on its own
    ho = gpu.published_points("decode", ("heldout",))
    assert {p.gpu for p in ho} >= {"a100", "h100"} and {p.batch for p in ho} >= {1, 8}
    assert any(p.model == "mixtral-8x7b" for p in ho) and any(p.model != "mixtral-8x7b"
                                                              for p in ho)
    assert {p.round for p in ho} == {3, 4, 5, 6}
    # the fourth round adds continuous-serving throughput (vLLM 0.11.1) at batch 16 to 1024
    r4 = [p for p in ho if p.round == 4]
    r5 = [p for p in ho if p.round == 5]
    assert {p.precision for p in r5} == {"bf16", "fp8"} and {p.model for p in r5} == {
        "qwen3-235b-a22b"}
    assert {p.metric for p in r4} == {"tokens_per_s"} and {p.serving for p in r4} == {"continuous"}
    assert min(p.batch for p in r4) == 16 and max(p.batch for p in r4) == 1024


def test_power_model_never_exceeds_tdp():
    h = gpu.get("h100")
    assert gpu.POWER_MODEL.power_w(h, 1.0, 1.0) <= h.tdp_w
    assert gpu.POWER_MODEL.power_w(h, 0.0, 0.0) == pytest.approx(gpu.POWER_MODEL.idle_w)
    r = gpu.roofline(MIXTRAL, "h100", batch=64, prompt_len=16, gen_len=16, precision="fp8",
                     calibrated=True, power_model="fitted")
    assert r.power_w <= r.n_gpus * h.tdp_w
    assert r.power_model == "fitted"


def test_hbm_counted_in_package_area():
    r = gpu.roofline(LLAMA7, "h100", batch=1, prompt_len=1, gen_len=2)
    assert r.hbm_area_mm2 == 5 * gpu.HBM_STACK_AREA_MM2
    assert r.package_area_mm2 == pytest.approx(814 + 5 * gpu.HBM_STACK_AREA_MM2)


# ------------------------------------------------------------------------------- operating points
def test_pareto_front_and_best_within():
    class P:  # a minimal point: TPOT and tokens/s
        def __init__(self, t, s):
            self.time_per_output_token_s, self.tokens_per_s = t, s

    pts = [P(0.01, 100), P(0.02, 90), P(0.03, 300), P(0.05, 250)]
    front = gpu_comparison.pareto_front(pts)
    assert [(p.time_per_output_token_s, p.tokens_per_s) for p in front] == [(0.01, 100),
                                                                           (0.03, 300)]
    assert gpu_comparison.best_within(pts, 0.025).tokens_per_s == 100
    assert gpu_comparison.best_within(pts, 0.005) is None


def test_gpu_curve_fixed_count_drops_batches_that_do_not_fit():
    op = GpuOperatingPoint("h100", "bf16", n_gpus=1)
    curve = gpu_comparison.gpu_curve(LLAMA7, op, (1, 8, 4096), prompt_len=2048, gen_len=2048)
    assert [r.batch for r in curve] == [1, 8]


@pytest.mark.parametrize("kw, match", [
    (dict(precision="fp16"), "precision"),
    (dict(n_gpus=0), "n_gpus"),
    (dict(n_gpus=2.0), "n_gpus"),
    (dict(power_model="x"), "power_model"),
    (dict(gpu="b200"), "gpu"),
])
def test_invalid_gpu_operating_point(kw, match):
    with pytest.raises(ValueError, match=match):
        GpuOperatingPoint(**kw)


@pytest.mark.parametrize("batches", [(), (0,), (1.5,), "8"])
def test_invalid_batches(batches):
    with pytest.raises(ValueError, match="batch"):
        gpu_comparison.gpu_curve(LLAMA7, GpuOperatingPoint(), batches)


def test_compare_operating_points_ratios_are_consistent():
    rows = gpu_comparison.compare_operating_points(
        "olmoe-1b-7b", GpuOperatingPoint("h100", "fp8"), n_tiers=64, tpot_targets=(0.05,),
        gpu_batches=(1, 8, 64), aimc_batches=(1, 8))
    (c,) = rows
    a, g = c.aimc, c.gpu
    assert c.throughput_ratio == pytest.approx(a.tokens_per_s / g.tokens_per_s)
    assert c.per_area_ratio == pytest.approx(c.throughput_ratio * g.package_area_mm2
                                             / a.area_mm2)
    assert c.per_power_ratio == pytest.approx(g.energy_per_token_j / a.energy_per_token_j)
    assert a.tpot_s <= 0.05 and g.time_per_output_token_s <= 0.05
    with pytest.raises(ValueError, match="tpot_targets"):
        gpu_comparison.compare_operating_points("olmoe-1b-7b", tpot_targets=(0,))


def test_power_model_constants_are_a_local_optimum_of_the_fit():
    pts = gpu.published_points("energy", ("fit",))
    pm = gpu.POWER_MODEL

    def loss(m):
        return sum(math.log(p.predict(True, m) / p.value) ** 2 for p in pts)

    l0 = loss(pm)
    for dm, dc in ((0.02, 0), (-0.02, 0), (0, 0.02), (0, -0.02)):
        other = gpu.PowerModel(pm.idle_w, pm.mem_fraction + dm, pm.comp_fraction + dc)
        assert loss(other) >= l0 - 1e-9


def test_validation_bars():
    # the bar: decode within 25 % on every used row, energy within 35 %. Rows that miss it are
    # named here and in the validation appendix; no other row may join them:
    # - one held-out row of the third round (gpt-fast's Llama-3.1-70B on two A100s, -26 %);
    # - the fifth round's FP8 rows (vLLM 0.11.1 serving Qwen3-235B-A22B in FP8 on eight H100s:
    #   34-39 % slower and 52-60 % more energy than modelled; the source attributes FP8's small
    #   gain to quantisation steps not fused into the matrix products);
    # - nine rows of the sixth round (TensorRT-LLM v0.9.0): Mixtral in FP8 with short outputs on
    #   H100 and H200 (the model up to 2x too fast), and Mistral and Mixtral with 2,048-token
    #   outputs, mostly on A100 (the model too slow);
    #   gpu_readings.alternative_readings() gives their error under the other reading of the
    #   two setup facts the source leaves open (XQA kernel; Mixtral's weight format), never used
    #   here: the bar is checked on the model's reading;
    # - energy: Serial Alice at batch 128 (+84 %, a fit row whose sequence lengths are not
    #   published) and the fifth round's BF16 row at batch 256 (-37 %).
    r5_fp8 = {p.id for p in gpu.published_points("decode") + gpu.published_points("energy")
              if p.round == 5 and p.precision == "fp8"}
    assert len(r5_fp8) == 14
    r6 = {"trtllm09-mixtral-b1024-128-128-2xh200", "trtllm09-mixtral-b64-2048-128-2xh200",
          "trtllm09-mixtral-b512-128-128-2xh100", "trtllm09-mixtral-b64-2048-128-2xh100",
          "trtllm09-mistral-7b-b56-2048-2048-1xh100", "trtllm09-mistral-7b-b120-128-2048-1xa100",
          "trtllm09-mistral-7b-b56-2048-2048-1xa100", "trtllm09-mixtral-b128-128-2048-2xa100",
          "trtllm09-mixtral-b32-2048-2048-2xa100"}
    known_misses = {"gptfast-llama31-70b-2xa100"} | r5_fp8 | r6
    dec = gpu.published_validation("decode", power_model="tdp")
    ids = {r.point.id for r in dec}
    assert r6 <= ids
    miss = {r.point.id for r in dec if r.point.role != "excluded" and abs(r.error) > 0.25}
    assert miss <= known_misses
    assert all(abs(r.error) <= 0.20 for r in dec if r.point.role == "fit")
    known_energy_misses = {"alice-mistral-7b-b128-h100",
                           "mlenergy-v3-qwen3-235b-bf16-b256-8xh100"} | r5_fp8
    en = gpu.published_validation("energy")
    miss = {r.point.id for r in en if r.point.role != "excluded" and abs(r.error) > 0.35}
    assert miss <= known_energy_misses
    assert sum(r.point.role == "heldout" for r in en) >= 26
    # every row of rounds 5 and 6 is held out: none shaped the model
    assert all(p.role == "heldout" for p in gpu.published_points("decode")
               + gpu.published_points("energy") if p.round >= 5)


def test_kv_reads_once_override_changes_only_the_kv_reads():
    # Llama-2-70B: 64 query heads over 8 KV heads; reading each KV head once instead of once per
    # query head removes 7/8 of the context reads of every decode step
    spec = zoo.get("llama-2-70b")
    base = gpu.CALIBRATION.for_framework("tensorrt-llm")
    assert base.kv_reads_per_query_head
    once = replace(base, kv_reads_once=True)
    assert not once.kv_reads_per_query_head
    assert not replace(gpu.CALIBRATION.for_framework("vllm"), kv_reads_once=False).kv_reads_once
    kw = dict(batch=64, prompt_len=2048, gen_len=2, n_gpus=2, precision="fp8", kv_bytes=1)
    a = gpu.roofline(spec, "h100", calibrated=base, **kw)
    b = gpu.roofline(spec, "h100", calibrated=once, **kw)
    assert a.decode_weight_bytes == b.decode_weight_bytes
    ctx = 2048 + 1  # the one decode step's context
    kv_tok = 80 * 2 * 8 * 128 * 1  # bytes of keys and values per token (all layers)
    assert a.decode_kv_bytes - b.decode_kv_bytes == pytest.approx(64 * kv_tok * ctx * (8 - 1))
    with pytest.raises(ValueError, match="kv_reads_once"):
        replace(base, kv_reads_once="yes")
    # the data flag it only where the source states the kernel: round 6's Llama-2-70B rows
    flagged = [p for p in gpu.published_points("decode") if p.kv_reads_once is not None]
    assert len(flagged) == 12 and all(p.model == "llama-2-70b" and p.round == 6
                                      and "TRTLLM_ENABLE_XQA=1" in p.note for p in flagged)


def test_qwen3_235b_matches_its_model_card():
    # 'Number of Parameters: 235B in total and 22B activated', 'Non-Embedding: 234B'
    m = gpu._published_model("qwen3-235b-a22b")
    assert 234.5e9 <= m.total_params < 235.5e9
    assert 21.5e9 <= m.active_params < 22.5e9
    assert 233.5e9 <= m.params(embedding=False, head=False) < 234.5e9
    assert (m.n_layers, m.n_experts, m.top_k, m.n_kv_heads) == (94, 128, 8, 4)


def test_power_model_is_the_fit_and_the_closed_form_search_is_exhaustive():
    assert gpu.fit_power_model() == gpu.POWER_MODEL
    # on a small grid, the closed-form search equals predicting every row for every pair
    pts = gpu.published_points("energy", ("fit",))
    ms, cs = (0.6, 0.88, 1.2), (0.5, 1.44, 2.0)
    best = min(((sum(math.log(p.predict(True, gpu.PowerModel(80.3, m, c)) / p.value) ** 2
                     for p in pts), m, c) for m in ms for c in cs))
    pm = gpu.fit_power_model(mem_fractions=ms, comp_fractions=cs)
    assert (pm.mem_fraction, pm.comp_fraction) == (best[1], best[2])


def test_ml_energy_figure_rows_agree_with_its_power_figure():
    # the energy, throughput and power points were read from three separate figures of the ML.ENERGY
    # post; energy per token must equal power / throughput (the post's own identity)
    data = json.loads(shipped.data_path("gpu_published.json").read_text())
    tput = {(r["model"], r["batch"]): r["value"] for r in data["decode"]
            if r["source"] == "mlenergy_fig"}
    rows = [r for r in data["energy"] if r["source"] == "mlenergy_fig"]
    assert len(rows) == 20 and len(tput) == 21
    for r in rows:
        assert r["value"] == pytest.approx(r["power_w"] / tput[(r["model"], r["batch"])],
                                           rel=2e-3), r["id"]
    # and the figure's batch-64 point is the post's sentence (0.12 J; it is that row, not another)
    assert data["energy"][0]["id"] == "mlenergy-v3-llama31-8b-b64-h100"
    assert 610.3 / tput[("llama-3-8b", 64)] == pytest.approx(0.12, abs=0.005)


# ------------------------------------------------------------------------------- figures, panel
def test_operating_points_figure_states_the_comparison():
    from aimoe_lib.viz import gpu as viz_gpu

    fig = viz_gpu.operating_points("olmoe-1b-7b", gpu="h100", precision="fp8", n_gpus=1,
                                   n_tiers=64, preset="physical", tpot_target_ms=50.0)
    assert fig.get_supxlabel().startswith("best batch within 50 ms")
    ax1, ax2 = fig.axes[:2]
    assert "ms" in ax1.get_xlabel() and "tokens/s" in ax1.get_ylabel()
    assert "mJ" in ax2.get_ylabel()
    assert "fp8" in fig._suptitle.get_text() and "physical" in fig._suptitle.get_text()


def test_format_operating_comparisons_refuses_other_rows():
    from aimoe_lib.viz import gpu as viz_gpu

    with pytest.raises(ValueError, match="OperatingComparison"):
        viz_gpu.format_operating_comparisons([1])


def test_published_validation_figure_counts_roles():
    from aimoe_lib.viz import gpu as viz_gpu

    rows = gpu.published_validation("decode", power_model="tdp")
    fig = viz_gpu.published_validation_figure(rows)
    used = [r for r in rows if r.point.role != "excluded"]
    inside = sum(abs(r.error) <= 0.25 for r in used)
    assert fig.get_supxlabel().startswith(f"{inside} of {len(used)} used points")
    # one line per source, not per row: the figure stays a page tall however many rows a round
    # adds; each line ends with its used rows inside the band, e.g. gpt-fast's first table: 5/5
    by_src = fig.axes[0]
    labels = [t.get_text() for t in by_src.get_yticklabels()]
    assert len(labels) == len({r.point.source_key for r in rows}) < len(rows) / 5
    assert fig.get_size_inches()[1] < 8
    assert labels[0] == "gptfast (rounds 1–2)"
    notes = [a.get_text() for a in by_src.texts]
    assert notes[0] == "5/5" and notes[labels.index("trtllm090 (round 6)")] == "39/48"
    with pytest.raises(ValueError, match="rows is empty"):
        viz_gpu.published_validation_figure([])


def test_operating_panel_builds():
    from aimoe_lib.widgets import gpu as widgets_gpu

    panel = widgets_gpu.operating_panel(model="olmoe-1b-7b", n_gpus=1)
    names = {c.description for c in panel.children if hasattr(c, "description")}
    assert {"GPU weights", "TPOT target (ms)"} <= names


def test_host_bound_engine_stretches_time_at_idle_power():
    # busy fraction b: every pass takes its GPU time / b; under the fitted power model the
    # utilisation terms are energy per byte and per FLOP, so the energy grows by the idle power
    # times the added wall time (Llama-3-8B, batch 64 on one H100: below TDP, not capped)
    kw = dict(batch=64, prompt_len=512, gen_len=64, n_gpus=1, calibrated=True,
              power_model="fitted")
    one = gpu.roofline("llama-3-8b", "h100", **kw)
    host = gpu.roofline("llama-3-8b", "h100", gpu_busy_fraction=0.38, **kw)
    assert one.power_w < gpu.get("h100").tdp_w
    assert host.time_per_output_token_s == pytest.approx(one.time_per_output_token_s / 0.38)
    assert host.ttft_s == pytest.approx(one.ttft_s / 0.38)
    e = host.total_time_s * host.power_w - one.total_time_s * one.power_w
    assert e == pytest.approx(gpu.POWER_MODEL.idle_w * (host.total_time_s - one.total_time_s))
    assert gpu.VLLM_053_GPU_BUSY == 0.38
    pts = {p.id: p for p in gpu.published_points("energy")}
    assert pts["mlenergy-v2-llama31-8b-b64-h100"].gpu_busy_fraction == 0.38
    assert pts["mlenergy-v3-llama31-8b-b64-h100"].gpu_busy_fraction == 1.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="gpu_busy_fraction"):
            gpu.roofline("llama-3-8b", "h100", gpu_busy_fraction=bad)


def test_fit_memo_keys_on_every_constant_a_row_depends_on():
    # the fit reuses a row's prediction while the constants _relevant() names are unchanged; so
    # changing any other constant must leave the prediction exactly as it is
    base = gpu.CALIBRATION
    for p in gpu.published_points("decode", ("fit", "heldout")):
        key = gpu._relevant(p, base)
        others = {f: o * 3 + 1e-4 for f, o in base.overheads_s.items() if f != p.framework}
        for change in (dict(allreduce_scale=0.9), dict(int8_weight_efficiency=0.35),
                       dict(gathered_expert_efficiency=0.35),
                       dict(overheads_s={**base.overheads_s, **others})):
            c = replace(base, **change)
            if gpu._relevant(p, c) == key:
                assert p.predict(c, "tdp") == p.predict(base, "tdp"), (p.id, change)
            else:
                assert p.predict(c, "tdp") != p.predict(base, "tdp"), (p.id, change)


def test_published_validation_table_shows_whole_ids():
    rows = gpu.published_validation("decode", power_model="tdp")
    text = gpu.format_published_validation(rows)
    for r in rows:
        assert r.point.id + " " in text
    with pytest.raises(ValueError, match="rows"):
        gpu.format_published_validation(["not a row"])


def test_precision_figure_rows_follow_the_posts_caption():
    # the caption: 'FP8 loses at batch size 8-16, then wins at batch sizes from 32' (energy);
    # this checks which series is which (red FP8, blue BF16 in the figure's legend)
    e = {(p.precision, p.batch): p.value for p in gpu.published_points("energy")
         if p.model == "qwen3-235b-a22b"}
    assert e[("fp8", 16)] > e[("bf16", 16)]
    assert all(e[("fp8", b)] < e[("bf16", b)] for b in (32, 64, 96, 128, 192, 256))


def test_data_readme_states_the_row_counts():
    from pathlib import Path
    data = json.loads(shipped.data_path("gpu_published.json").read_text())
    readme = (Path(__file__).resolve().parents[1] / "data" / "README.md").read_text()
    assert (f"decode ({len(data['decode'])} rows) and energy ({len(data['energy'])} rows)"
            in readme)


def test_roofline_reports_the_utilisations_its_power_model_uses():
    h = gpu.get("h100")
    # one forward pass (gen_len 1): the run is the prefill, so the utilisations are its bytes and
    # FLOPs over the datasheet peaks times its time
    r = gpu.roofline("llama-3-8b", "h100", batch=4, prompt_len=256, gen_len=1, n_gpus=2,
                     precision="fp8", calibrated=True, power_model="fitted")
    assert r.hbm_utilisation == pytest.approx(
        r.prefill_bytes / (2 * h.hbm_bandwidth_gb_s * 1e9 * r.ttft_s))
    assert r.tensor_utilisation == pytest.approx(
        r.prefill_flops / (2 * h.peak_tflops("fp8") * 1e12 * r.ttft_s))
    assert r.power_w == pytest.approx(
        2 * gpu.POWER_MODEL.power_w(h, r.hbm_utilisation, r.tensor_utilisation))
    # they do not depend on the power model
    t = gpu.roofline("llama-3-8b", "h100", batch=4, prompt_len=256, gen_len=1, n_gpus=2,
                     precision="fp8", calibrated=True, power_model="tdp")
    assert (t.hbm_utilisation, t.tensor_utilisation) == (r.hbm_utilisation, r.tensor_utilisation)
