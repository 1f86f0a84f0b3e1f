"""aimoe_lib.gpu_readings: the bandwidth a published measurement implies, and the model's error
under the other reading of a setup fact its source leaves open. Expected values are worked by
hand from the models' published configurations and the GPU datasheets."""

from dataclasses import replace

import pytest

from aimoe_lib import gpu, gpu_readings

A100_BW = 2039e9  # A100 80GB SXM datasheet HBM bandwidth, B/s
H100_BW = 3350e9  # H100 SXM datasheet HBM bandwidth, B/s


def _point(pid):
    (p,) = [q for q in gpu.published_points("decode") if q.id == pid]
    return p


def _llama2_7b_read_params():
    # meta-llama/Llama-2-7b-hf config: 32 layers, d 4096, FFN 11008, vocab 32000, untied LM
    # head; a decode step reads every matrix and norm but not the embedding table
    layer = 4 * 4096 ** 2 + 3 * 4096 * 11008 + 2 * 4096
    return 32 * layer + 4096 + 32000 * 4096


def _mixtral_read_params(batch):
    # mistralai/Mixtral-8x7B-v0.1 config: 32 layers, d 4096, 32 query and 8 KV heads of 128,
    # 8 experts of FFN width 14336, top-2, vocab 32000; uniform routing touches
    # 8 (1 - (1 - 2/8)^batch) distinct experts per layer
    attn = 4096 * (4096 + 2 * 1024 + 4096)
    expert = 3 * 4096 * 14336
    distinct = 8 * (1 - 0.75 ** batch)
    layer = attn + 4096 * 8 + distinct * expert + 2 * 4096
    return 32 * layer + 4096 + 32000 * 4096


def test_implied_bandwidth_share_of_a_dense_batch_1_row():
    # gpt-fast, Llama-2-7B on one A100 at 104.9 tokens/s: 6.61B weights of 2 bytes each step,
    # plus the KV cache of ~105 tokens (5 + 200 / 2) at 32 x 2 x 4096 x 2 B per token
    p = _point("gptfast-llama2-7b-1xa100")
    step_bytes = 2 * _llama2_7b_read_params() + 105 * 32 * 2 * 4096 * 2
    want = step_bytes / A100_BW / p.value
    assert want == pytest.approx(0.683, abs=0.002)
    assert gpu_readings.implied_bandwidth_share(p) == pytest.approx(want, rel=0.002)


def test_mixtral_on_a100_with_long_outputs_beats_the_datasheet_bandwidth():
    # TensorRT-LLM v0.9.0, Mixtral in FP16 on two A100s, batch 32, 2,048 + 2,048 tokens:
    # 801 tok/s/GPU. Every expert read each step (93.1 GB) plus the KV cache of ~3,072 tokens
    # per sequence (32 x 2 x 8 x 128 x 2 B per token) over 2 x 2,039 GB/s is a 26.0 ms step;
    # 2,047 such steps take longer than the whole measured run
    p = _point("trtllm09-mixtral-b32-2048-2048-2xa100")
    step_bytes = 2 * _mixtral_read_params(32) + 32 * 3072 * 32 * 2 * 8 * 128 * 2
    step = step_bytes / (2 * A100_BW)
    assert step == pytest.approx(0.0260, abs=0.0001)
    want = p.value * 2047 * step / (32 * 2048)
    assert want == pytest.approx(1.30, abs=0.01)
    assert gpu_readings.implied_bandwidth_share(p) == pytest.approx(want, rel=0.003)


def test_only_that_row_needs_more_than_the_datasheet_bandwidth():
    # a data fact: of all decode rows, one implies more bytes per second than the HBM can
    # deliver; the next highest needs 78 % (the STREAM-measured ceiling is 83 to 89 %)
    shares = {p.id: gpu_readings.implied_bandwidth_share(p) for p in gpu.published_points("decode")}
    over = {k for k, v in shares.items() if v > 1.0}
    assert over == {"trtllm09-mixtral-b32-2048-2048-2xa100"}
    assert max(v for k, v in shares.items() if k not in over) < 0.86


def test_implied_bandwidth_share_refuses_energy_rows_and_other_objects():
    e = gpu.published_points("energy")[0]
    with pytest.raises(ValueError, match=r"energy row.*published_points\('decode'\)"):
        gpu_readings.implied_bandwidth_share(e)
    with pytest.raises((TypeError, ValueError), match="point"):
        gpu_readings.implied_bandwidth_share("trtllm09-mixtral-b32-2048-2048-2xa100")


def test_open_setups_cover_the_rows_their_rule_names():
    rows = gpu_readings.alternative_readings()
    by_fact = {}
    for r in rows:
        by_fact.setdefault(dict(r.setup.setting).popitem()[0], []).append(r.modelled.point)
    # the kernel question: every round-6 row of the two grouped-query models on all three
    # GPUs (2 models x 3 GPUs x 4 shapes); the weight format: Mixtral in the FP8 tables (2 GPUs
    # x 4 shapes)
    kernel, fmt = by_fact["kv_reads_once"], by_fact["precision"]
    assert len(kernel) == 24 and len(fmt) == 8
    assert {p.model for p in kernel} == {"mistral-7b", "mixtral-8x7b"}
    assert {p.gpu for p in kernel} == {"a100", "h100", "h200"}
    assert all(p.source_key == "trtllm090" and p.round == 6 for p in kernel + fmt)
    assert {(p.model, p.precision) for p in fmt} == {("mixtral-8x7b", "fp8")}
    assert {p.gpu for p in fmt} == {"h100", "h200"}
    # the Llama-2 rows state their kernel and format: no open fact touches them
    assert not [p for p in kernel + fmt if p.model.startswith("llama")]


def test_the_other_weight_format_doubles_the_weight_bytes():
    (r,) = [r for r in gpu_readings.alternative_readings()
            if r.modelled.point.id == "trtllm09-mixtral-b512-128-128-2xh100"
            and r.other.point.precision == "bf16"]
    a, b = r.modelled.point.roofline(), r.other.point.roofline()
    assert b.decode_weight_bytes == pytest.approx(2 * a.decode_weight_bytes)
    assert b.decode_kv_bytes == pytest.approx(a.decode_kv_bytes)  # the FP8 KV cache is kept
    # 16-bit weights make the model slower, so the error (measured / modelled throughput - 1)
    # rises from -45 % towards zero
    assert r.error == pytest.approx(10510 / a.tokens_per_s - 1)
    assert r.error < -0.40 < r.other_error < 0
    # and the implied share (bare-roofline bytes: KV heads read once) scales as (2W + K)/(W + K)
    ratio = (gpu_readings.implied_bandwidth_share(r.other.point)
             / gpu_readings.implied_bandwidth_share(r.modelled.point))
    bare = r.modelled.point.roofline(calibrated=False)
    w, k = bare.decode_weight_bytes, bare.decode_kv_bytes
    assert ratio == pytest.approx((2 * w + k) / (w + k), rel=1e-6)


def test_the_other_kernel_reads_each_kv_head_once():
    (r,) = [r for r in gpu_readings.alternative_readings()
            if r.modelled.point.id == "trtllm09-mistral-7b-b56-2048-2048-1xa100"]
    a, b = r.modelled.point.roofline(), r.other.point.roofline()
    # Mistral-7B: 32 query heads over 8 KV heads; read once per KV head, 3/4 of the context
    # reads of a step go (the one token written per step stays)
    per_token = 32 * 2 * 8 * 128 * 2
    ctx = 2048 + 1024  # mean context of the 2,047 decode steps, within one token
    assert a.decode_kv_bytes - b.decode_kv_bytes == pytest.approx(56 * per_token * ctx * 3,
                                                                  rel=0.002)
    assert a.decode_weight_bytes == b.decode_weight_bytes


def test_alternative_readings_leave_the_validation_as_modelled():
    val = {r.point.id: r.error for r in gpu.published_validation("decode", power_model="tdp")}
    for r in gpu_readings.alternative_readings():
        assert r.error == pytest.approx(val[r.modelled.point.id], abs=1e-12)
        assert r.other.point.id == r.modelled.point.id


def test_format_alternative_readings_lists_rows_and_evidence():
    text = gpu_readings.format_alternative_readings()
    flat = " ".join(text.split())
    assert "trtllm09-mixtral-b32-2048-2048-2xa100" in text
    assert "Added FP8 quantization support for Mixtral" in flat
    assert "TRTLLM_ENABLE_XQA=1" in flat
    assert len(text.splitlines()) == 2 + 32 + 1 + sum(
        1 for line in text.splitlines() if line.startswith(("[", "    ")))
    with pytest.raises((TypeError, ValueError), match="rows"):
        gpu_readings.format_alternative_readings([1, 2])


def test_an_open_setup_may_set_only_row_fields(monkeypatch):
    bad = {"trtllm090": {**gpu.published_sources()["trtllm090"],
                         "open_setup": [{"fact": "f", "models": ["mistral-7b"],
                                         "precisions": ["fp8"], "as_modelled": "a",
                                         "setting": {"gpu": "a100"}, "reading": "r",
                                         "evidence": "e"}]}}
    monkeypatch.setattr(gpu, "published_sources", lambda: bad)
    with pytest.raises(ValueError, match=r"'trtllm090' sets \['gpu'\].*only"):
        gpu_readings.open_setups()


def test_open_setup_rows_use_the_stated_setup():
    # the modelled rows keep the tables' stated setup: FP8 weights and the usual kernel
    for r in gpu_readings.alternative_readings():
        p = r.modelled.point
        assert p.kv_reads_once is None
        assert replace(p, **dict(r.setup.setting)) == r.other.point


def test_max_distinct_experts_of_the_impossible_row():
    # the same A100 row: 32 x 2,048 tokens in 32 x 2,048 / 1,602 s, so a step takes at most
    # 40.9 s / 2,047 = 20.0 ms; at the A100's STREAM bandwidth (1.70 of 2.039 TB/s, [AZURE]) two
    # GPUs move 68.0 GB in it. The dense weights (attention, routers, norms, LM head) and the
    # KV cache take 2.9 + 12.9 GB; each expert in all 32 layers is 32 x 3 x 4096 x 14336 x 2 B
    # = 11.27 GB, so at most 4.6 experts of 8 per layer (uniform routing: 7.999)
    p = _point("trtllm09-mixtral-b32-2048-2048-2xa100")
    step = 32 * 2048 / 1602 / 2047
    budget = step * 2 * 2039e9 * (1.70 / 2.039)
    dense = 2 * (_mixtral_read_params(32) - 32 * 8 * (1 - 0.75 ** 32) * 3 * 4096 * 14336)
    kv = 32 * 3072 * 32 * 2 * 8 * 128 * 2
    expert = 2 * 32 * 3 * 4096 * 14336
    want = (budget - dense - kv) / expert
    assert want == pytest.approx(4.6, abs=0.05)
    assert gpu_readings.max_distinct_experts(p) == pytest.approx(want, rel=0.003)
    assert p.roofline(calibrated=False).distinct_experts == pytest.approx(8 * (1 - 0.75 ** 32))


def test_max_distinct_experts_at_batch_1_allows_the_two_experts_read():
    # gpt-fast's Mixtral at batch 1 reads its top-2 experts; the bound must allow at least that
    # for every MoE row that is not impossible, and exceed it only as far as the speed allows
    for p in gpu.published_points("decode"):
        if p.model == "mixtral-8x7b" and p.id != "trtllm09-mixtral-b32-2048-2048-2xa100":
            assert gpu_readings.max_distinct_experts(p) > 2.0


def test_max_distinct_experts_refuses_dense_and_energy_rows():
    with pytest.raises(ValueError, match="dense model 'llama-2-7b'.*mixture-of-experts"):
        gpu_readings.max_distinct_experts(_point("gptfast-llama2-7b-1xa100"))
    with pytest.raises(ValueError, match="energy row"):
        gpu_readings.max_distinct_experts(gpu.published_points("energy")[0])


# --- the prompt-length assumption (A-GPU-ENERGY-PROMPT) --------------------------------------

def test_prompt_assumed_rows_are_those_whose_sources_omit_the_prompt():
    # the Alice benchmark and every ML.ENERGY figure publish no prompt length: all 38 energy
    # rows and the 35 decode rows read from ML.ENERGY's figures (rounds 4 and 5) rest on it
    energy = gpu.published_points("energy")
    assert {p.id for p in gpu_readings.prompt_assumed("energy")} == {p.id for p in energy}
    assert {p.source_key for p in energy} == {"mlenergy", "mlenergy_fig", "mlenergy_v3_fig",
                                              "serialalice"}
    ml = [p for p in gpu.published_points("decode") if p.source_key.startswith("mlenergy")]
    assert {p.id for p in gpu_readings.prompt_assumed("decode")} == {p.id for p in ml}
    assert len(ml) == 10 + 11 + 14  # 8B at 10 batch limits, 70B at 11, Qwen3 2 x 7
    assert all(p.prompt_len == 512 for p in gpu_readings.prompt_assumed("energy"))


def test_the_file_value_reproduces_the_book():
    (r,) = gpu_readings.prompt_readings((512,))
    assert r.power_model == gpu.POWER_MODEL
    book = {x.point.id: x.error for x in gpu.published_validation("energy")}
    assert {x.point.id: x.error for x in r.energy} == book
    book = {x.point.id: x.error for x in gpu.published_validation("decode", power_model="tdp")}
    assert all(x.error == book[x.point.id] for x in r.decode)
    # within the bar: all 35 but the seven FP8 Qwen3 rows (test_gpu_fair's known misses)
    assert r.within("decode", 0.25) == (35 - 7, 35)
    assert r.at_grid_edge == ()
    # the harness check is the appendix's: one error per CUDA-graph row (3 models x batch 1, 8,
    # 64 and 256), each the book's power error
    book = [c.power_error for c in gpu.measured_validation()]
    assert len(book) == 3 * 4
    assert r.harness_power == pytest.approx(book, rel=1e-12)


def test_every_assumed_row_takes_the_new_prompt_and_no_other_row_changes():
    (r,) = gpu_readings.prompt_readings((2048,))
    assumed = {p.id for p in gpu_readings.prompt_assumed("energy")}
    assert all(x.point.prompt_len == 2048 for x in r.energy if x.point.id in assumed)
    assert all(x.point.prompt_len == 2048 for x in r.decode)
    assert [x.point.gen_len for x in r.energy] == [p.gen_len for p in
                                                   gpu.published_points("energy")]


def test_fit_power_model_recovers_a_power_model_from_a_row_it_generated():
    # one row whose energy is what PowerModel(80.3 W, 0.5, 1.0) predicts: the fit finds a
    # model that reproduces it (zero loss; 0.5 and 1.0 lie on the grid)
    (p,) = [q for q in gpu.published_points("energy") if q.id == "mlenergy-v3-llama31-8b-b64-h100"]
    made = gpu.PowerModel(80.3, 0.5, 1.0)
    q = replace(p, value=p.predict(True, made))
    fitted = gpu.fit_power_model(points=[q])
    assert q.predict(True, fitted) == pytest.approx(q.value, rel=1e-9)


def test_power_at_the_cap_does_not_depend_on_the_reading():
    # Mixtral in FP8 on one H100 at a batch of 512 (chapter 7's 50 ms point): under the file's
    # reading the board is capped at its 700 W TDP, so energy per token = 700 W / tokens/s;
    # the 2,048-token reading's power model puts it below the cap
    kw = dict(batch=512, prompt_len=16, gen_len=16, n_gpus=1, precision="fp8", calibrated=True)
    at512, at2048 = gpu_readings.prompt_readings((512, 2048))
    a = gpu.roofline("mixtral-8x7b", "h100", power_model=at512.power_model, **kw)
    b = gpu.roofline("mixtral-8x7b", "h100", power_model=at2048.power_model, **kw)
    assert a.power_w == 700.0
    assert a.energy_per_token_j == pytest.approx(700.0 / a.tokens_per_s)
    assert b.power_w < 700.0 and b.tokens_per_s == a.tokens_per_s


def test_at_grid_edge_names_the_shares_at_an_end_of_the_grid():
    lo_m, hi_m, _ = gpu.POWER_FIT_GRID["mem_fraction"]
    lo_c, hi_c, _ = gpu.POWER_FIT_GRID["comp_fraction"]
    edge = gpu_readings.PromptReading(1, gpu.PowerModel(80.3, hi_m, lo_c), (), (), (0.0,))
    assert edge.at_grid_edge == ("mem_fraction", "comp_fraction")
    inner = gpu_readings.PromptReading(1, gpu.PowerModel(80.3, (lo_m + hi_m) / 2, 1.0), (), (),
                                       (0.0,))
    assert inner.at_grid_edge == ()


def test_format_prompt_readings_marks_edges_and_counts():
    rs = gpu_readings.prompt_readings((512, 2048))
    text = gpu_readings.format_prompt_readings(rs)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["prompt", "HBM", "share"]
    row512 = lines[2].split()
    assert row512[:3] == ["512", "0.88", "1.44"] and "28/35" in row512
    assert ("*" in lines[3]) == bool(rs[1].at_grid_edge)


@pytest.mark.parametrize("bad", [0, 1.5, True, "512", -3])
def test_prompt_readings_refuses_bad_prompt_lengths(bad):
    with pytest.raises(ValueError, match="prompt length"):
        gpu_readings.prompt_readings((bad,))


def test_prompt_readings_and_fit_refuse_bad_collections():
    with pytest.raises(ValueError, match="prompts"):
        gpu_readings.prompt_readings("512")
    with pytest.raises(ValueError, match="energy rows only"):
        gpu.fit_power_model(points=[_point("gptfast-llama2-7b-1xa100")])
    with pytest.raises(ValueError, match="points"):
        gpu.fit_power_model(points=[])
    with pytest.raises(ValueError, match="readings"):
        gpu_readings.format_prompt_readings([1])
    with pytest.raises(ValueError, match="kind"):
        gpu_readings.prompt_readings((512,))[0].within("power", 0.3)


def test_harness_power_rms_is_the_root_mean_square():
    r = gpu_readings.PromptReading(1, gpu.POWER_MODEL, (), (), (0.3, -0.4))
    assert r.harness_power_rms == pytest.approx((0.25 / 2) ** 0.5)  # sqrt((0.09 + 0.16) / 2)
