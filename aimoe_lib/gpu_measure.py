"""Measurement harness: time prefill and decode of zoo-shaped decoder layers on a real GPU.

Usage (on a CUDA machine with torch)::

    python -m aimoe_lib.gpu_measure --model mixtral-8x7b --layers 2 \\
        --batches 1,2,4,8,16,32,64 --out data/gpu_h100.csv

The harness builds ``--layers`` decoder layers shaped like the zoo model (attention with its
query / key-value heads, the dense or gated FFN, or the MoE block with router, top-k routed experts
and shared experts) with random weights in ``--dtype`` (bfloat16 by default), plus the LM head.
For every batch size it prefills ``--prompt-len`` tokens per sequence into a KV cache, then decodes
``--decode-steps`` tokens one at a time, timing both with CUDA events after warm-up. Average board
power comes from NVML (``pynvml``) when it can be imported. Times of the model are the measured
per-layer mean times ``n_layers`` of the full model plus the LM head (the CSV states both the
measured and the scaled numbers and how many layers ran). An MoE layer runs every expert that got
tokens once over its tokens (gather, FFN, scatter-add), so it reads each distinct expert once per
step, as :func:`aimoe_lib.gpu.roofline` assumes; the CSV records the distinct experts observed.

``--graph`` captures one decode step of the built layers in a CUDA graph and replays it
``--decode-steps`` times, so the host's kernel-launch time drops out and the time is the GPU's
(the step at context ``--prompt-len`` + 1, replayed; an MoE step's routing is that of an eager run
of the same step on the same inputs, which the replay reproduces). ``--power-seconds S`` adds a
steady-state window of S seconds after the timing in which decode runs back to back and the
board's energy counter (NVML total energy, else power samples every 10 ms) gives the average
power; without it power is sampled during the timed repetitions. ``--weight-stream`` measures
instead the bandwidth that one weight-streaming matrix product (the decode GEMM of a batch of
tokens against a bf16 weight) reaches, per batch size, and writes :data:`STREAM_COLUMNS`;
``--gemm-rates`` the FLOP rate and bandwidth of bfloat16 and FP8 matrix products at
:data:`GEMM_SHAPES` (:data:`GEMM_COLUMNS`). ``tools/measure_gpu.sh`` runs the whole set that
``data/gpu_h200*.csv`` holds.

``--device cpu --dry-run`` runs a tiny model of the same kind on the CPU in seconds and writes the
same columns (no power reading): the test suite uses it so the harness cannot rot without a GPU.
Without a GPU and without ``--dry-run`` the harness exits with a message, not a traceback.

torch is imported only inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import argparse
import os
import csv
import math
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import checks, zoo
from .models import AttentionKind, ModelSpec, NormKind

__all__ = ["COLUMNS", "STREAM_COLUMNS", "GEMM_COLUMNS", "GEMM_SHAPES", "GEMM_FORMATS",
           "MeasureSettings", "tiny_like", "measure", "measure_stream", "measure_gemm",
           "write_csv", "main"]

COLUMNS = (
    "gpu_name", "driver", "torch_version", "cuda_version", "device", "model", "layers_run",
    "layers_model", "d_model", "n_experts", "top_k", "dtype", "batch", "prompt_len",
    "decode_steps", "warmup", "repeats", "mode", "prefill_s_layers_run", "decode_step_s_layers_run",
    "lm_head_prefill_s", "lm_head_decode_s", "prefill_s_model", "decode_step_s_model",
    "decode_tokens_per_s_model", "distinct_experts_per_layer", "avg_power_w", "power_samples",
    "power_limit_w", "power_method", "power_window_s", "dry_run", "timestamp_utc", "note",
)
"""Columns of the CSV the harness writes, in order."""

STREAM_COLUMNS = (
    "gpu_name", "driver", "torch_version", "device", "dtype", "batch", "d_in", "d_out",
    "n_weights", "repeats", "time_s", "weight_bytes", "bytes_moved", "tb_per_s", "tflop_per_s",
    "dry_run", "timestamp_utc", "note",
)
"""Columns of the CSV ``--weight-stream`` writes, in order (one row per batch size)."""

GEMM_COLUMNS = (
    "gpu_name", "driver", "torch_version", "device", "format", "m", "k", "n", "n_weights",
    "repeats", "time_s", "tflop_per_s", "tb_per_s", "dry_run", "timestamp_utc", "note",
)
"""Columns of the CSV ``--gemm-rates`` writes, in order (one row per shape and format)."""

GEMM_SHAPES = tuple((m, 4096, 14336) for m in (16, 128, 1024, 4096, 16384)) \
    + ((16384, 4096, 7168), (8192, 8192, 8192))
"""Default shapes (m tokens, k, n) of ``--gemm-rates``: Mixtral-8x7B's expert up-projection
(4096 x 14336) for 16 to 16,384 tokens per expert, the same split over two GPUs (n = 7,168, as
tensor parallelism on two GPUs runs it), and the 8192-cubed product that vendors' GEMM benchmarks
quote."""

GEMM_FORMATS = ("bfloat16", "float8_e4m3fn")
"""Formats of ``--gemm-rates``: bfloat16 products, and FP8 (e4m3) products with unit scales and
bfloat16 output (``torch._scaled_mm``, the cuBLASLt FP8 path)."""


class HarnessError(RuntimeError, ValueError):
    """A condition the harness reports as a message and exit status, not a traceback. A
    RuntimeError (as before) and a ValueError (as every refused argument of the library)."""


@dataclass(frozen=True)
class MeasureSettings:
    """What to measure (the command-line options)."""

    model: str = "mixtral-8x7b"
    """Zoo model name."""
    layers: int = 2
    """Decoder layers actually built and timed (results are scaled to the model's n_layers)."""
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Batch sizes."""
    prompt_len: int = 128
    """Prompt tokens per sequence."""
    decode_steps: int = 32
    """Decode steps timed per batch size."""
    warmup: int = 3
    """Untimed repetitions before timing."""
    repeats: int = 5
    """Timed repetitions of the prefill (the decode loop is timed once over decode_steps steps,
    repeated this many times)."""
    dtype: str = "bfloat16"
    """Weight and activation dtype: bfloat16 or float16 (float32 on the CPU dry run)."""
    device: str = "cuda"
    """'cuda' or 'cpu' (cpu only with dry_run)."""
    dry_run: bool = False
    """Tiny model, few steps, no power reading: checks the harness end to end."""
    seed: int = 0
    """Seed of the random weights and inputs."""
    graph: bool = False
    """Replay one captured decode step from a CUDA graph (CUDA only): no host launch time."""
    power_seconds: float = 0.0
    """Length of the steady-state power window after the timing, s (0: sample power while
    timing)."""

    def __post_init__(self) -> None:
        """Types and ranges of every field (the model, device and dtype against the machine are
        checked by :func:`measure`)."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        o = "MeasureSettings"
        set_("model", checks.string(o, "model", self.model, empty=False,
                                    fix="pass a zoo model name, e.g. 'mixtral-8x7b'"))
        set_("layers", checks.integer(o, "layers", self.layers, minimum=1,
                                      maximum=checks.INT32_MAX))
        fix = "give batch sizes >= 1, e.g. batches=(1, 2, 4, 8)"
        batches = checks.items(o, "batches", self.batches, fix=fix)
        set_("batches", tuple(checks.integer(o, "batches", b, minimum=1, maximum=2**20, fix=fix)
                              for b in batches))
        for f in ("prompt_len", "decode_steps", "repeats"):
            set_(f, checks.integer(o, f, getattr(self, f), minimum=1, maximum=2**20))
        set_("warmup", checks.integer(o, "warmup", self.warmup, minimum=0, maximum=2**20))
        checks.choice(o, "dtype", self.dtype, ("bfloat16", "float16", "float32"), what="dtype")
        set_("device", checks.string(o, "device", self.device, empty=False,
                                     fix="pass 'cuda', 'cuda:N' or 'cpu'"))
        set_("dry_run", checks.boolean(o, "dry_run", self.dry_run))
        set_("seed", checks.seed(o, "seed", self.seed))
        set_("graph", checks.boolean(o, "graph", self.graph))
        set_("power_seconds", float(checks.real(o, "power_seconds", self.power_seconds,
                                                minimum=0, maximum=600,
                                                fix="give seconds in 0 .. 600, e.g. 4")))


def tiny_like(spec: ModelSpec) -> ModelSpec:
    """A tiny model of the same kind as ``spec`` (dense or MoE, FFN kind, GQA ratio, shared
    experts) for the CPU dry run: d_model 64, 4 query heads, FFN 128, experts of 64."""
    checks.instance("tiny_like()", "spec", spec, ModelSpec, fix="pass a models.ModelSpec")
    kv = max(1, 4 * spec.n_kv_heads // spec.n_heads)
    while 4 % kv:
        kv -= 1
    moe = {}
    if spec.is_moe:
        e = min(spec.n_experts, 8)
        moe = dict(n_experts=e, top_k=min(spec.top_k, e), d_expert=64,
                   n_shared_experts=min(spec.n_shared_experts, 1), d_shared_expert=64,
                   first_dense=min(spec.first_dense, 1))
    return ModelSpec(name=f"{spec.name}-tiny", d_model=64, n_layers=spec.n_layers, n_heads=4,
                     n_kv_heads=kv, d_ff=128, vocab_size=256, ffn=spec.ffn, norm=spec.norm, **moe)


# ------------------------------------------------------------------------------------ torch model
def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is in the project environment
        raise HarnessError("gpu_measure needs torch: pip install torch") from err
    return torch


def _build(spec: ModelSpec, n_layers: int, dtype, device, seed: int):
    """Decoder layers (and LM head) of ``spec`` with random weights, as plain tensors."""
    torch = _torch()
    gen = torch.Generator(device=device).manual_seed(seed)  # on the GPU: seconds, not minutes

    def w(i, o):
        return (torch.randn(i, o, generator=gen, device=device) * 0.02).to(dtype=dtype)

    d, hd = spec.d_model, spec.head_dim
    gated = spec.ffn.gated

    def ffn(width):
        return {"gate": w(d, width) if gated else None, "up": w(d, width), "down": w(width, d)}

    layers = []
    for i in range(n_layers):
        layer = {"q": w(d, spec.n_heads * hd), "k": w(d, spec.n_kv_heads * hd),
                 "v": w(d, spec.n_kv_heads * hd), "o": w(spec.n_heads * hd, d),
                 "norm1": torch.ones(d, device=device, dtype=dtype),
                 "norm2": torch.ones(d, device=device, dtype=dtype)}
        if spec.is_moe_layer(i):
            layer["router"] = w(d, spec.n_experts)
            layer["experts"] = [ffn(spec.d_expert) for _ in range(spec.n_experts)]
            layer["shared"] = [ffn(spec.d_shared_expert) for _ in range(spec.n_shared_experts)]
        else:
            layer["ffn"] = ffn(spec.d_ff)
        layers.append(layer)
    head = w(d, spec.vocab_size)
    return layers, head


def _norm(spec, x, scale):
    torch = _torch()
    if spec.norm is NormKind.RMSNORM:  # the library's RMSNorm (one fused kernel on a GPU)
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight=scale, eps=1e-6)
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight=scale)


def _act(spec, x):
    f = _torch().nn.functional
    return {"silu": f.silu, "gelu": f.gelu, "relu": f.relu}[spec.ffn.activation](x)


def _ffn(spec, p, x):
    h = x @ p["up"]
    h = _act(spec, x @ p["gate"]) * h if p["gate"] is not None else _act(spec, h)
    return h @ p["down"]


def _moe(spec, layer, x, seen, route=None):
    """Top-k MoE over the rows of x (tokens, d): each expert with tokens runs once on them.

    ``route`` is None (count the tokens per expert on the host), or a dict ``{"counts": list |
    None}``: with counts None they are counted and stored there, with counts given they are used
    as they are and nothing waits for the GPU (what a CUDA-graph capture needs; the caller
    guarantees the same inputs, hence the same routing)."""
    torch = _torch()
    logits = (x @ layer["router"]).float()
    probs, idx = torch.topk(torch.softmax(logits, dim=-1), spec.top_k, dim=-1)
    probs = (probs / probs.sum(-1, keepdim=True)).to(x.dtype)
    out = torch.zeros_like(x)
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    if route is not None and route.get("counts") is not None:
        counts = route["counts"]
    else:
        counts = torch.bincount(flat, minlength=spec.n_experts).tolist()
        if route is not None:
            route["counts"] = counts
    tok = (order // spec.top_k)
    start = 0
    used = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        used += 1
        sel = order[start:start + c]
        rows = tok[start:start + c]
        y = _ffn(spec, layer["experts"][e], x[rows]) * probs.reshape(-1)[sel, None]
        out.index_add_(0, rows, y)
        start += c
    seen.append(used)
    for p in layer["shared"]:
        out = out + _ffn(spec, p, x)
    return out


def _attention(q, keys, vals, t: int):
    """Attention of q (b, hq, t, hd) over keys and values (b, hk, n, hd), hq a multiple of hk.

    Decode (t = 1): the hq // hk query heads that share a key-value head attend to the same keys
    with no mask, so they go in as that head's rows of queries and every cached key and value is
    read once per key-value head (as decode kernels of serving frameworks do), not copied per
    query head. Prefill (t > 1, causal): each key-value head is copied for its query heads (as
    ``repeat_interleave`` does)."""
    torch = _torch()
    b, hq, _, hd = q.shape
    hk, n = keys.shape[1], keys.shape[2]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if hk == hq:
        return sdpa(q, keys, vals, is_causal=t > 1)
    g = hq // hk
    if t == 1:
        return sdpa(q.reshape(b, hk, g, hd), keys, vals).reshape(b, hq, 1, hd)
    keys = keys[:, :, None].expand(b, hk, g, n, hd).reshape(b, hq, n, hd)
    vals = vals[:, :, None].expand(b, hk, g, n, hd).reshape(b, hq, n, hd)
    return sdpa(q, keys, vals, is_causal=True)


def _layer(spec, layer, x, cache, pos: int, seen, route=None):
    """One decoder layer over x (batch, t, d) at positions pos .. pos + t - 1 of the KV cache
    (``route``: see :func:`_moe`)."""
    torch = _torch()
    b, t, d = x.shape
    hd, hq, hk = spec.head_dim, spec.n_heads, spec.n_kv_heads
    h = _norm(spec, x, layer["norm1"])
    q = (h @ layer["q"]).view(b, t, hq, hd).transpose(1, 2)
    k = (h @ layer["k"]).view(b, t, hk, hd).transpose(1, 2)
    v = (h @ layer["v"]).view(b, t, hk, hd).transpose(1, 2)
    kc, vc = cache
    kc[:, :, pos:pos + t] = k
    vc[:, :, pos:pos + t] = v
    keys, vals = kc[:, :, :pos + t], vc[:, :, :pos + t]
    att = _attention(q, keys, vals, t)
    x = x + att.transpose(1, 2).reshape(b, t, hq * hd) @ layer["o"]
    h = _norm(spec, x, layer["norm2"]).reshape(b * t, d)
    if "ffn" in layer:
        y = _ffn(spec, layer["ffn"], h)
    else:
        y = _moe(spec, layer, h, seen, route)
    return x + y.view(b, t, d)


# ------------------------------------------------------------------------------------ timing
class _Timer:
    """CUDA events on a GPU, perf_counter on the CPU; returns seconds."""

    def __init__(self, device) -> None:
        self.torch = _torch()
        self.cuda = str(device).startswith("cuda")

    def time(self, fn) -> float:
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


class _PowerSampler:
    """Average board power from NVML sampled every 10 ms in a thread (no-op without pynvml)."""

    def __init__(self, enabled: bool, index: int = 0) -> None:
        self.samples: list[float] = []
        self.limit_w = math.nan
        self._handle = None
        self._nvml = None
        self._stop = threading.Event()
        self._thread = None
        if not enabled:
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
            self.limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / 1e3
        except Exception:  # noqa: BLE001 - no NVML: power is simply not reported
            self._handle = None

    def __enter__(self):
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3)
            self._stop.wait(0.01)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def average_w(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan


class _PowerWindow:
    """Average board power over ``seconds`` of back-to-back calls of a function (the decode
    loop), from NVML's total-energy counter (mJ since the driver loaded) where the GPU has one,
    else from power samples every 10 ms; a no-op for 0 seconds, the CPU or a dry run."""

    def __init__(self, device, seconds: float, dry_run: bool) -> None:
        self.seconds = 0.0 if (dry_run or str(device) == "cpu") else float(seconds)
        self.device = device
        self.average_w = math.nan
        self.n_samples = 0
        self.method = ""
        self.limit_w = math.nan

    def run(self, fn) -> None:
        if not self.seconds:
            return
        torch = _torch()
        sampler = _PowerSampler(True, torch.device(self.device).index or 0)
        self.limit_w = sampler.limit_w
        if sampler._handle is None:  # no NVML: no window, no power
            self.seconds = 0.0
            return
        nvml, handle = sampler._nvml, sampler._handle
        try:
            e0 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception:  # noqa: BLE001 - no energy counter: samples below
            e0 = None
        torch.cuda.synchronize(self.device)
        with sampler:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < self.seconds:
                fn()
                torch.cuda.synchronize(self.device)
            t1 = time.perf_counter()
        self.n_samples = len(sampler.samples)
        if e0 is not None:
            e1 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.average_w = (e1 - e0) * 1e-3 / (t1 - t0)
            self.method = "nvml-energy-counter"
        else:
            self.average_w = sampler.average_w
            self.method = "nvml-samples"
        self.seconds = t1 - t0


def _environment(device) -> dict:
    torch = _torch()
    env = {"torch_version": torch.__version__, "cuda_version": torch.version.cuda or "",
           "device": str(device), "gpu_name": "cpu", "driver": ""}
    if str(device).startswith("cuda"):
        env["gpu_name"] = torch.cuda.get_device_name(device)
        try:
            import pynvml
            pynvml.nvmlInit()
            env["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001 - driver version is informative only
            env["driver"] = ""
    return env


def _check_settings(s: MeasureSettings) -> ModelSpec:
    if not isinstance(s, MeasureSettings):
        raise ValueError(f"measure(settings={type(s).__name__}): pass a "
                         "gpu_measure.MeasureSettings")
    spec = zoo._lookup(s.model, f"MeasureSettings.model={s.model!r}").spec  # ValueError
    if spec.attention is AttentionKind.MLA or spec.is_encoder_decoder:
        raise HarnessError(f"--model {s.model}: the harness builds standard (GQA) attention "
                           "decoder-only layers; MLA and encoder-decoder models are not supported")
    if s.layers < 1 or s.layers > spec.n_layers:
        raise HarnessError(f"--layers {s.layers}: must be in 1..{spec.n_layers} for {spec.name}")
    if not s.batches or min(s.batches) < 1:
        raise HarnessError(f"--batches {s.batches}: give positive integers, e.g. 1,2,4,8")
    for name in ("prompt_len", "decode_steps", "repeats"):
        if getattr(s, name) < 1:
            raise HarnessError(f"--{name.replace('_', '-')} must be >= 1")
    if s.device not in ("cuda", "cpu") and not s.device.startswith("cuda:"):
        raise HarnessError(f"--device {s.device}: use cuda, cuda:N or cpu")
    if s.device == "cpu" and not s.dry_run:
        raise HarnessError("--device cpu is only for --dry-run: CPU timings are no GPU baseline")
    if s.device.startswith("cuda"):
        torch = _torch()
        if not torch.cuda.is_available():
            raise HarnessError("no CUDA GPU is available (torch.cuda.is_available() is False): "
                               "run this on a machine with an NVIDIA GPU, or check the harness "
                               "with --device cpu --dry-run")
    if s.power_seconds and s.dry_run:
        raise HarnessError(f"--power-seconds {s.power_seconds:g} with --dry-run: a dry run reads "
                           "no power; drop one of them")
    if s.dtype not in ("bfloat16", "float16", "float32"):
        raise HarnessError(f"--dtype {s.dtype}: use bfloat16, float16 or float32")
    return spec


def measure(settings: MeasureSettings) -> list[dict]:
    """Run the measurement; one CSV row (a dict over :data:`~aimoe_lib.gpu_measure.COLUMNS`) per
    batch size."""
    spec = _check_settings(settings)
    torch = _torch()
    s = settings
    if s.dry_run:
        spec = tiny_like(spec)
        s = MeasureSettings(**{**s.__dict__, "decode_steps": min(s.decode_steps, 2),
                               "warmup": min(s.warmup, 1), "repeats": 1,
                               "prompt_len": min(s.prompt_len, 8)})
    device = torch.device(s.device)
    dtype = torch.float32 if device.type == "cpu" else getattr(torch, s.dtype)
    torch.manual_seed(s.seed)
    layers, head = _build(spec, s.layers, dtype, device, s.seed)
    env = _environment(device)
    timer = _Timer(device)
    rows = []
    for batch in s.batches:
        ctx = s.prompt_len + s.decode_steps
        shape = (batch, spec.n_kv_heads, ctx, spec.head_dim)
        caches = [(torch.zeros(shape, device=device, dtype=dtype),
                   torch.zeros(shape, device=device, dtype=dtype)) for _ in layers]
        prompt = torch.randn(batch, s.prompt_len, spec.d_model, device=device, dtype=dtype)
        seen: list[int] = []

        def prefill():
            x = prompt
            for lay, c in zip(layers, caches):
                x = _layer(spec, lay, x, c, 0, seen)
            return x

        def eager_decode():
            x = prompt[:, -1:]
            for step in range(s.decode_steps):
                for lay, c in zip(layers, caches):
                    x = _layer(spec, lay, x, c, s.prompt_len + step, seen)
            return x

        last = prompt[:, -1]
        with torch.inference_mode():
            for _ in range(s.warmup):
                prefill()
                eager_decode()
            decode, graph_distinct = eager_decode, None
            if s.graph:
                decode, graph_distinct = _graph_decode(spec, layers, caches, prompt, s, seen)
            seen.clear()
            window = _PowerWindow(device, s.power_seconds, s.dry_run)
            sampled = _PowerSampler(device.type == "cuda" and not s.dry_run
                                    and not s.power_seconds)
            with sampled:
                t_pre = min(timer.time(prefill) for _ in range(s.repeats))
                n_seen_pre = len(seen)
                t_dec = min(timer.time(decode) for _ in range(s.repeats)) / s.decode_steps
                for _ in range(max(s.warmup, 1)):  # a cold first product costs milliseconds
                    last @ head
                t_head_pre = min(timer.time(lambda: last @ head) for _ in range(s.repeats))
                t_head_dec = t_head_pre
            window.run(decode)
        decode_seen = seen[n_seen_pre:]
        moe_layers = [i for i in range(s.layers) if spec.is_moe_layer(i)]
        if graph_distinct is not None:
            distinct = graph_distinct
        else:
            distinct = (sum(decode_seen) / len(decode_seen)
                        if (moe_layers and decode_seen) else math.nan)
        if s.power_seconds:
            avg_w, n_samples, method = window.average_w, window.n_samples, window.method
        else:
            avg_w, n_samples = sampled.average_w, len(sampled.samples)
            method = "nvml-samples" if sampled.samples else ""
        scale = spec.n_layers / s.layers
        pre_model = t_pre * scale + t_head_pre
        dec_model = t_dec * scale + t_head_dec
        mode = ("eager" if not s.graph else
                "cuda-graph" if device.type == "cuda" else "fixed-step-cpu")
        how = ("decode step = one step at context prompt_len + 1 captured in a CUDA graph and "
               "replayed decode_steps times, min over repeats of the mean; prefill eager"
               if s.graph else
               "decode step time = min over repeats of the mean over decode_steps steps")
        rows.append({
            **env, "model": spec.name, "layers_run": s.layers, "layers_model": spec.n_layers,
            "d_model": spec.d_model, "n_experts": spec.n_experts, "top_k": spec.top_k,
            "dtype": str(dtype).replace("torch.", ""), "batch": batch, "prompt_len": s.prompt_len,
            "decode_steps": s.decode_steps, "warmup": s.warmup, "repeats": s.repeats,
            "mode": mode,
            "prefill_s_layers_run": t_pre, "decode_step_s_layers_run": t_dec,
            "lm_head_prefill_s": t_head_pre, "lm_head_decode_s": t_head_dec,
            "prefill_s_model": pre_model, "decode_step_s_model": dec_model,
            "decode_tokens_per_s_model": batch / dec_model,
            "distinct_experts_per_layer": distinct, "avg_power_w": avg_w,
            "power_samples": n_samples,
            "power_limit_w": sampled.limit_w if not s.power_seconds else window.limit_w,
            "power_method": method, "power_window_s": window.seconds,
            "dry_run": s.dry_run,
            "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": (f"{s.layers} of {spec.n_layers} decoder layers timed with random weights; "
                     f"model times = measured layer time x {spec.n_layers}/{s.layers} + LM head; "
                     f"{how}; LM head = min over repeats after warm-up; embedding lookup and "
                     "sampling not timed"
                     + (f"; power = average over a {window.seconds:g} s window of back-to-back "
                        "decode after the timing" if s.power_seconds else "")
                     + ("; DRY RUN on a tiny model, numbers are meaningless" if s.dry_run else "")),
        })
        del caches
    return rows


def _check_replay(out, ref) -> None:
    """The replayed step must compute what the eager step did (up to the order of atomic adds)."""
    err = float((out.float() - ref.float()).abs().max())
    scale = float(ref.float().abs().max()) or 1.0
    if not err <= 1e-2 * scale:
        raise HarnessError(f"the replayed decode step differs from the eager one (max |diff| "
                           f"{err:.3g}, max |value| {scale:.3g}): the capture is not faithful; "
                           "measure without --graph")


def _graph_decode(spec, layers, caches, prompt, s: MeasureSettings, seen):
    """A decode function that replays one captured decode step ``s.decode_steps`` times, and the
    distinct experts per MoE layer of that step (nan for a dense model).

    The step (the last prompt token at position ``s.prompt_len``) first runs eagerly, which
    counts the tokens each expert gets; the capture then uses those counts, so nothing in it
    waits for the GPU, and each replay computes exactly what the eager run did."""
    torch = _torch()
    x_in = prompt[:, -1:].clone()
    routes = [{"counts": None} for _ in layers]

    def step():
        x = x_in
        for lay, c, r in zip(layers, caches, routes):
            x = _layer(spec, lay, x, c, s.prompt_len, seen, r)
        return x

    ref = step()  # eager; counts the routing of this step
    moe = [r["counts"] for r in routes if r["counts"] is not None]
    distinct = (sum(sum(1 for c in counts if c) for counts in moe) / len(moe)
                if moe else math.nan)
    if not str(prompt.device).startswith("cuda"):  # the CPU dry run: the fixed-routing step, eager
        _check_replay(step(), ref)

        def decode_eager():
            for _ in range(s.decode_steps):
                step()
        return decode_eager, distinct
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    graph.replay()
    torch.cuda.synchronize()
    _check_replay(out, ref)

    def decode():
        for _ in range(s.decode_steps):
            graph.replay()

    return decode, distinct


def _time_products(products, device, timer, s: MeasureSettings) -> float:
    """Fastest of ``s.repeats`` timed calls of ``products`` after ``s.warmup`` (at least one)
    untimed ones; on a GPU the calls are captured once in a CUDA graph and replayed, so launch
    time drops out."""
    torch = _torch()
    run = products
    with torch.inference_mode():
        for _ in range(max(s.warmup, 1)):
            products()
        if device.type == "cuda":
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                products()
            graph.replay()
            run = graph.replay
        return min(timer.time(run) for _ in range(s.repeats))


def measure_stream(settings: MeasureSettings, d_in: int = 8192, d_out: int = 28672
                   ) -> list[dict]:
    """Bandwidth of weight streaming: for each batch size b of ``settings.batches``, the time of
    the matrix product of b tokens (b, d_in) with a (d_in, d_out) weight in ``settings.dtype``,
    cycling through enough weights that together they exceed 1 GB (none stays in the L2 cache).
    On a GPU the products are captured in a CUDA graph and replayed (``settings.repeats``
    replays, the fastest kept), so launch time is excluded; one row per batch over
    :data:`STREAM_COLUMNS` with the bytes moved (weights, inputs, outputs) per second and the
    FLOP rate. The default shape is a Llama-2-70B FFN up-projection (8192 x 28672)."""
    if not isinstance(settings, MeasureSettings):
        raise ValueError(f"measure_stream(settings={type(settings).__name__}): pass a "
                         "gpu_measure.MeasureSettings")
    for name, v in (("d_in", d_in), ("d_out", d_out)):
        checks.integer("measure_stream()", name, v, minimum=1, maximum=2**20)
    _check_settings(settings)
    torch = _torch()
    s = settings
    if s.dry_run:
        d_in, d_out = min(d_in, 64), min(d_out, 128)
    device = torch.device(s.device)
    dtype = torch.float32 if device.type == "cpu" else getattr(torch, s.dtype)
    esize = torch.tensor([], dtype=dtype).element_size()
    weight_bytes = d_in * d_out * esize
    n_w = 1 if s.dry_run else max(2, math.ceil(1e9 / weight_bytes))
    gen = torch.Generator(device=device).manual_seed(s.seed)
    weights = [torch.randn(d_in, d_out, generator=gen, device=device).to(dtype)
               for _ in range(n_w)]
    env = _environment(device)
    timer = _Timer(device)
    rows = []
    for batch in s.batches:
        x = torch.randn(batch, d_in, generator=gen, device=device).to(dtype)
        outs = [torch.empty(batch, d_out, device=device, dtype=dtype) for _ in weights]

        def products():
            for w, o in zip(weights, outs):
                torch.matmul(x, w, out=o)

        t = _time_products(products, device, timer, s) / n_w
        moved = weight_bytes + (batch * d_in + batch * d_out) * esize
        rows.append({
            **env, "dtype": str(dtype).replace("torch.", ""), "batch": batch, "d_in": d_in,
            "d_out": d_out, "n_weights": n_w, "repeats": s.repeats, "time_s": t,
            "weight_bytes": weight_bytes, "bytes_moved": moved, "tb_per_s": moved / t / 1e12,
            "tflop_per_s": 2 * batch * d_in * d_out / t / 1e12, "dry_run": s.dry_run,
            "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": (f"time of one ({batch} x {d_in}) @ ({d_in} x {d_out}) product, {n_w} "
                     "distinct weights cycled, "
                     + ("CUDA graph replay, " if device.type == "cuda" else "")
                     + "min over repeats" + ("; DRY RUN, numbers are meaningless"
                                             if s.dry_run else "")),
        })
    return rows


def measure_gemm(settings: MeasureSettings, shapes=GEMM_SHAPES, formats=GEMM_FORMATS
                 ) -> list[dict]:
    """Rate of single matrix products (m x k) @ (k x n) per shape of ``shapes`` and format of
    ``formats`` (:data:`GEMM_FORMATS`): the fastest of ``settings.repeats`` replays of a CUDA
    graph (on a GPU) that cycles through enough weights to exceed 1 GB, so small products stream
    their weights from HBM rather than the L2 cache. One row per shape and format over
    :data:`GEMM_COLUMNS`: FLOP rate (2 m k n per product) and bytes moved per second (weights,
    inputs, outputs). FP8 products take e4m3 inputs and weights with unit scales and write
    bfloat16 (``torch._scaled_mm``)."""
    if not isinstance(settings, MeasureSettings):
        raise ValueError(f"measure_gemm(settings={type(settings).__name__}): pass a "
                         "gpu_measure.MeasureSettings")
    shapes = checks.items("measure_gemm()", "shapes", shapes,
                          fix="pass (m, k, n) triples, e.g. ((16, 4096, 14336),)")
    shapes = [tuple(checks.integer("measure_gemm()", "shapes", v, minimum=1, maximum=2**17)
                    for v in sh) for sh in shapes]
    if any(len(sh) != 3 for sh in shapes):
        raise ValueError(f"measure_gemm(shapes={shapes!r}): each shape is (m, k, n)")
    formats = checks.items("measure_gemm()", "formats", formats, fix=f"pass {GEMM_FORMATS}")
    for f in formats:
        checks.choice("measure_gemm()", "formats", f, GEMM_FORMATS, what="format")
    _check_settings(settings)
    torch = _torch()
    s = settings
    device = torch.device(s.device)
    gen = torch.Generator(device=device).manual_seed(s.seed)
    env = _environment(device)
    timer = _Timer(device)
    rows = []
    for m, k, n in shapes:
        if s.dry_run:
            m, k, n = min(m, 32), min(k, 64), min(n, 48)
        for fmt in formats:
            fp8 = fmt == "float8_e4m3fn"
            dt = torch.float8_e4m3fn if fp8 else (
                torch.float32 if device.type == "cpu" else torch.bfloat16)
            esize = torch.empty(0, dtype=dt).element_size()
            n_w = 1 if s.dry_run else max(2, math.ceil(1e9 / (k * n * esize)))
            x = torch.randn(m, k, generator=gen, device=device).to(dt)
            # weights stored (n, k) row-major: the column-major (k, n) operand FP8 products need
            ws = [torch.randn(n, k, generator=gen, device=device).to(dt) for _ in range(n_w)]
            out_dt = torch.bfloat16 if fp8 else dt
            outs = [torch.empty(m, n, device=device, dtype=out_dt) for _ in ws]
            one = torch.ones((), device=device)

            def products():
                for w, o in zip(ws, outs):
                    if fp8:
                        torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one,
                                         out_dtype=torch.bfloat16, out=o)
                    else:
                        torch.matmul(x, w.t(), out=o)

            t = _time_products(products, device, timer, s) / n_w
            moved = k * n * esize + m * k * esize + m * n * (2 if fp8 else esize)
            rows.append({
                **env, "format": str(dt).removeprefix("torch."),
                "m": m, "k": k, "n": n, "n_weights": n_w, "repeats": s.repeats, "time_s": t,
                "tflop_per_s": 2 * m * k * n / t / 1e12, "tb_per_s": moved / t / 1e12,
                "dry_run": s.dry_run,
                "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "note": (f"one ({m} x {k}) @ ({k} x {n}) product, {n_w} weights cycled, "
                         + ("CUDA graph replay, " if device.type == "cuda" else "")
                         + "min over repeats"
                         + ("; FP8 e4m3, unit scales, bfloat16 output (torch._scaled_mm)"
                            if fp8 else "")
                         + ("; DRY RUN, numbers are meaningless" if s.dry_run else "")),
            })
            del ws, outs
    return rows


def write_csv(rows: list[dict], path, columns=COLUMNS) -> Path:
    """Write ``rows`` with the header ``columns`` (:data:`~aimoe_lib.gpu_measure.COLUMNS`, or
    :data:`~aimoe_lib.gpu_measure.STREAM_COLUMNS` for :func:`measure_stream`); creates the parent
    directory. A folder or a file where a folder should be is refused (ValueError)."""
    if columns not in (COLUMNS, STREAM_COLUMNS, GEMM_COLUMNS):
        raise ValueError("write_csv(columns=...): pass gpu_measure.COLUMNS, STREAM_COLUMNS or "
                         "GEMM_COLUMNS")
    fix = "pass the rows of gpu_measure.measure() (dicts over COLUMNS)"
    rows = checks.items("write_csv()", "rows", rows, nonempty=False, fix=fix)
    for r in rows:
        checks.instance("write_csv()", "rows", r, dict, fix=fix)
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes) or path == "":
        raise ValueError(f"write_csv(path={path!r}): must be a file path (a str or "
                         "pathlib.Path), e.g. 'data/gpu_h100.csv'")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"write_csv(path={str(path)!r}): is a folder; pass a CSV file path, e.g. "
                         f"{str(path / 'gpu.csv')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"write_csv(path={str(path)!r}): its folder cannot be made ({e}); pass "
                         "a writable CSV path") from e
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=columns)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: r.get(k, "") for k in columns})
    return path


def _parse(argv) -> tuple[MeasureSettings, str]:
    p = argparse.ArgumentParser(prog="python -m aimoe_lib.gpu_measure",
                                description="Time prefill and decode of zoo-shaped decoder layers "
                                            "on a GPU and write a CSV.")
    p.add_argument("--model", default="mixtral-8x7b", help="zoo model name")
    p.add_argument("--layers", type=int, default=2, help="decoder layers to build and time")
    p.add_argument("--batches", default="1,2,4,8,16,32,64", help="comma-separated batch sizes")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--decode-steps", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny model, few steps, no power reading (use with --device cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--graph", action="store_true",
                   help="replay one captured decode step from a CUDA graph (no launch time)")
    p.add_argument("--power-seconds", type=float, default=0.0,
                   help="steady-state power window after the timing, s (0: sample while timing)")
    p.add_argument("--weight-stream", action="store_true",
                   help="measure the bandwidth of weight-streaming matrix products instead "
                        "(--batches, --dtype, --repeats; writes STREAM_COLUMNS)")
    p.add_argument("--gemm-rates", action="store_true",
                   help="measure bf16 and FP8 matrix-product rates at GEMM_SHAPES instead "
                        "(--repeats; writes GEMM_COLUMNS)")
    p.add_argument("--stream-shape", default="8192,28672",
                   help="d_in,d_out of the streamed weight for --weight-stream")
    p.add_argument("--out", default=None,
                   help="CSV path (default data/gpu_<gpu name>.csv)")
    a = p.parse_args(argv)
    try:
        batches = tuple(int(b) for b in a.batches.split(",") if b.strip())
    except ValueError:
        raise HarnessError(f"--batches {a.batches!r}: give comma-separated integers, "
                           "e.g. 1,2,4") from None
    s = MeasureSettings(model=a.model, layers=a.layers, batches=batches, prompt_len=a.prompt_len,
                        decode_steps=a.decode_steps, warmup=a.warmup, repeats=a.repeats,
                        dtype=a.dtype, device=a.device, dry_run=a.dry_run, seed=a.seed,
                        graph=a.graph, power_seconds=a.power_seconds)
    stream = None
    if a.weight_stream:
        try:
            d_in, d_out = (int(v) for v in a.stream_shape.split(","))
        except ValueError:
            raise HarnessError(f"--stream-shape {a.stream_shape!r}: give two integers d_in,d_out, "
                               "e.g. 8192,28672") from None
        stream = (d_in, d_out)
    if a.gemm_rates:
        if a.weight_stream:
            raise HarnessError("--gemm-rates and --weight-stream: choose one")
        stream = "gemm"
    return s, a.out, stream


def _check_out(out: str | None) -> None:
    """Refuse an output path that cannot be written, before any measurement: a folder where the
    CSV should be, a file where its folder should be, or a folder we may not write into."""
    path = Path(out) if out is not None else Path("data") / "gpu_x.csv"
    flag = "--out" if out is not None else "the default output (data/gpu_<gpu name>.csv)"
    if path.is_dir():
        raise HarnessError(f"{flag} {str(path)!r} is a folder; give a CSV file path, e.g. "
                           f"{str(path / 'gpu.csv')!r}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HarnessError(f"{flag} {str(path)!r}: {str(parent)!r} is a file, not a "
                                   "folder; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise HarnessError(f"{flag} {str(path)!r}: cannot write into {str(parent)!r}; "
                                   "choose a writable folder")
            break
    if path.exists() and not os.access(path, os.W_OK):
        raise HarnessError(f"{flag} {str(path)!r} exists and is read-only; choose another path")


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 a reported problem). The output
    path is checked before anything is measured."""
    argv = checks.argv("main", argv, "['--device', 'cpu', '--dry-run']")
    try:
        settings, out, stream = _parse(list(argv))
        _check_out(out)
        if stream is None:
            rows, columns, suffix = measure(settings), COLUMNS, ""
        elif stream == "gemm":
            rows, columns, suffix = measure_gemm(settings), GEMM_COLUMNS, "_gemm"
        else:
            rows, columns, suffix = measure_stream(settings, *stream), STREAM_COLUMNS, "_stream"
        if out is None:
            name = rows[0]["gpu_name"].lower().replace(" ", "_") if rows else "unknown"
            out = f"data/gpu_{name}{suffix}.csv"
        path = write_csv(rows, out, columns)
    except (HarnessError, ValueError) as err:  # refused settings or machine: a message
        print(f"gpu_measure: {err}", file=sys.stderr)
        return 2
    print(f"gpu_measure: wrote {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess in the tests
    sys.exit(main())
