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

__all__ = ["COLUMNS", "MeasureSettings", "tiny_like", "measure", "write_csv", "main"]

COLUMNS = (
    "gpu_name", "driver", "torch_version", "cuda_version", "device", "model", "layers_run",
    "layers_model", "d_model", "n_experts", "top_k", "dtype", "batch", "prompt_len",
    "decode_steps", "warmup", "repeats", "prefill_s_layers_run", "decode_step_s_layers_run",
    "lm_head_prefill_s", "lm_head_decode_s", "prefill_s_model", "decode_step_s_model",
    "decode_tokens_per_s_model", "distinct_experts_per_layer", "avg_power_w", "power_samples",
    "power_limit_w", "dry_run", "timestamp_utc", "note",
)
"""Columns of the CSV the harness writes, in order."""


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
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def w(i, o):
        return (torch.randn(i, o, generator=gen) * 0.02).to(device=device, dtype=dtype)

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
    if spec.norm is NormKind.RMSNORM:
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * scale
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight=scale)


def _act(spec, x):
    f = _torch().nn.functional
    return {"silu": f.silu, "gelu": f.gelu, "relu": f.relu}[spec.ffn.activation](x)


def _ffn(spec, p, x):
    h = x @ p["up"]
    h = _act(spec, x @ p["gate"]) * h if p["gate"] is not None else _act(spec, h)
    return h @ p["down"]


def _moe(spec, layer, x, seen):
    """Top-k MoE over the rows of x (tokens, d): each expert with tokens runs once on them."""
    torch = _torch()
    logits = (x @ layer["router"]).float()
    probs, idx = torch.topk(torch.softmax(logits, dim=-1), spec.top_k, dim=-1)
    probs = (probs / probs.sum(-1, keepdim=True)).to(x.dtype)
    out = torch.zeros_like(x)
    flat = idx.reshape(-1)
    order = torch.argsort(flat)
    counts = torch.bincount(flat, minlength=spec.n_experts).tolist()
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


def _layer(spec, layer, x, cache, pos: int, seen):
    """One decoder layer over x (batch, t, d) at positions pos .. pos + t - 1 of the KV cache."""
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
    if hk != hq:
        keys = keys.repeat_interleave(hq // hk, dim=1)
        vals = vals.repeat_interleave(hq // hk, dim=1)
    att = torch.nn.functional.scaled_dot_product_attention(q, keys, vals, is_causal=t > 1)
    x = x + att.transpose(1, 2).reshape(b, t, hq * hd) @ layer["o"]
    h = _norm(spec, x, layer["norm2"]).reshape(b * t, d)
    if "ffn" in layer:
        y = _ffn(spec, layer["ffn"], h)
    else:
        y = _moe(spec, layer, h, seen)
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

        def decode():
            x = prompt[:, -1:]
            for step in range(s.decode_steps):
                for lay, c in zip(layers, caches):
                    x = _layer(spec, lay, x, c, s.prompt_len + step, seen)
            return x

        last = prompt[:, -1]
        with torch.inference_mode():
            for _ in range(s.warmup):
                prefill()
                decode()
            seen.clear()
            with _PowerSampler(device.type == "cuda" and not s.dry_run) as power:
                t_pre = min(timer.time(prefill) for _ in range(s.repeats))
                n_seen_pre = len(seen)
                t_dec = min(timer.time(decode) for _ in range(s.repeats)) / s.decode_steps
                t_head_pre = timer.time(lambda: last @ head)
                t_head_dec = t_head_pre
        decode_seen = seen[n_seen_pre:]
        moe_layers = [i for i in range(s.layers) if spec.is_moe_layer(i)]
        distinct = (sum(decode_seen) / len(decode_seen)
                    if (moe_layers and decode_seen) else math.nan)
        scale = spec.n_layers / s.layers
        pre_model = t_pre * scale + t_head_pre
        dec_model = t_dec * scale + t_head_dec
        rows.append({
            **env, "model": spec.name, "layers_run": s.layers, "layers_model": spec.n_layers,
            "d_model": spec.d_model, "n_experts": spec.n_experts, "top_k": spec.top_k,
            "dtype": str(dtype).replace("torch.", ""), "batch": batch, "prompt_len": s.prompt_len,
            "decode_steps": s.decode_steps, "warmup": s.warmup, "repeats": s.repeats,
            "prefill_s_layers_run": t_pre, "decode_step_s_layers_run": t_dec,
            "lm_head_prefill_s": t_head_pre, "lm_head_decode_s": t_head_dec,
            "prefill_s_model": pre_model, "decode_step_s_model": dec_model,
            "decode_tokens_per_s_model": batch / dec_model,
            "distinct_experts_per_layer": distinct, "avg_power_w": power.average_w,
            "power_samples": len(power.samples), "power_limit_w": power.limit_w,
            "dry_run": s.dry_run,
            "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": (f"{s.layers} of {spec.n_layers} decoder layers timed with random weights; "
                     f"model times = measured layer time x {spec.n_layers}/{s.layers} + LM head; "
                     "decode step time = min over repeats of the mean over decode_steps steps; "
                     "embedding lookup and sampling not timed"
                     + ("; DRY RUN on a tiny model, numbers are meaningless" if s.dry_run else "")),
        })
        del caches
    return rows


def write_csv(rows: list[dict], path) -> Path:
    """Write ``rows`` with the header :data:`~aimoe_lib.gpu_measure.COLUMNS`; creates the parent
    directory. A folder or a file where a folder should be is refused (ValueError)."""
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
        wr = csv.DictWriter(f, fieldnames=COLUMNS)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: r.get(k, "") for k in COLUMNS})
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
                        dtype=a.dtype, device=a.device, dry_run=a.dry_run, seed=a.seed)
    return s, a.out


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
        settings, out = _parse(list(argv))
        _check_out(out)
        rows = measure(settings)
        if out is None:
            name = rows[0]["gpu_name"].lower().replace(" ", "_") if rows else "unknown"
            out = f"data/gpu_{name}.csv"
        path = write_csv(rows, out)
    except (HarnessError, ValueError) as err:  # refused settings or machine: a message
        print(f"gpu_measure: {err}", file=sys.stderr)
        return 2
    print(f"gpu_measure: wrote {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess in the tests
    sys.exit(main())
