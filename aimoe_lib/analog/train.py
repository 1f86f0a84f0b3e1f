"""Train chapter 8's models in floating point and hardware-aware, evaluate them, ship the results.

``python -m aimoe_lib.analog.train`` trains the three models of
:data:`aimoe_lib.analog.config.MODELS` on the Shakespeare corpus and writes to the folder
``--out`` (default ``aimoe_runs/analog`` in the current directory; the shipped results are
regenerated with ``--out data/analog`` from the repository's root):

* ``results.json`` — settings, corpus sizes, parameter counts, training curves and times, and one
  record per evaluated condition (model, training, analog parts, noise, per-seed perplexities
  and routing changes);
* ``ckpt_<model>_<fp|hwa>.npz`` — checkpoints (:mod:`aimoe_lib.analog.checkpoint`) of the models
  named by ``--checkpoints`` (default: the dense model and the 4-expert MoE, for chapter 8's live
  panel);
* ``trace_shakespeare-<moe>.npz`` — routing traces of the floating-point MoEs on validation text
  (:func:`aimoe_lib.routing.save_trace`, tokens x MoE layers x k) for chapter 6.

Each model is trained in one process (``--workers`` at a time, one torch thread each by default):
``pretrain_steps`` in floating point, then two branches from the same weights, data order and
learning-rate schedule: ``finetune_steps`` more in floating point (the FP model) or with
aihwkit-lightning's noise injection (the HWA model). Both are rounded to 8 bits per row
(A-CKPT-INT8), the FP model's input ranges calibrated, the HWA model's learned ones kept, and
both evaluated on the test split (:func:`~aimoe_lib.analog.train.evaluate_pair`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import numbers
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import routing
from ..shipped import data_path
from . import checkpoint, hwa
from .config import HWAConfig, LMConfig, Periphery, Settings, TrainConfig
from .corpus import Corpus, eval_windows, load_corpus, sample_windows
from .evaluate import NoisyEvaluator, noise_record, perplexity, routing_choices
from .models import TinyLM
from .pcm import TIMES_S, GaussianNoise, PCMNoise

__all__ = ["OUT_DIR", "DEFAULT_OUT", "GAUSSIAN_LEVELS", "SENSITIVITY_NOISE", "N_SEEDS",
           "EVAL_WINDOWS", "TRACE_WINDOWS", "lr_at", "train_fp", "train_hwa", "train_model",
           "evaluate_pair", "run", "check_run", "main", "quick_settings"]

OUT_DIR = data_path() / "analog"
"""Where the shipped results live: ``data/analog`` of the package
(:func:`~aimoe_lib.shipped.data_path`), the repository's own ``data/analog`` in an editable
install. Nothing writes here unless asked to (``run(settings, OUT_DIR)``, or
``--out data/analog`` from the repository's root)."""

DEFAULT_OUT = Path("aimoe_runs") / "analog"
"""The command line's output folder without ``--out``, relative to the current directory."""

GAUSSIAN_LEVELS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)
"""Gaussian weight-noise levels (std relative to each row's largest ``abs(W)``) of the noise
sweep."""

SENSITIVITY_NOISE = GaussianNoise(0.06)
"""Noise of the per-part sensitivity study (each part analog alone)."""

N_SEEDS = 5
"""Noise seeds per condition (mean ± std over them)."""

EVAL_WINDOWS = 128
"""Test-split windows (of context + 1 tokens) every condition is evaluated on."""

TRACE_WINDOWS = 512
"""Validation windows whose routing the traces record (512 x 64 = 32 768 tokens)."""

_VAL_WINDOWS = 16
_LOG_EVERY = 50


def lr_at(step: int, total: int, peak: float, warmup: int = 0) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up over ``warmup`` steps, then a cosine
    from ``peak`` down to ``peak / 10``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _loss(model: TinyLM, batch: torch.Tensor, aux_weight: float) -> tuple[torch.Tensor, float]:
    logits = model(batch[:, :-1])
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
    loss = ce + aux_weight * model.aux_loss() if model.cfg.is_moe else ce
    return loss, float(ce.detach())


@torch.no_grad()
def _val_loss(model, windows: torch.Tensor) -> float:
    was = model.training
    model.eval()
    logits = model(windows[:, :-1])
    out = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    model.train(was)
    return float(out)


def _steps(model, opt, ids: np.ndarray, tc: TrainConfig, steps: int, peak: float, warmup: int,
           rng: np.random.Generator, val: torch.Tensor, desc: str, position: int,
           progress: bool) -> list[list[float]]:
    """Run ``steps`` optimiser steps; returns [[step, train_loss, val_loss], ...] every
    ``_LOG_EVERY`` steps and at the end."""
    curve, recent = [], []
    model.train()
    bar = tqdm(range(steps), desc=desc, position=position, leave=False, disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak, warmup)
        batch = torch.from_numpy(sample_windows(ids, tc.batch, model.cfg.context, rng))
        loss, ce = _loss(model, batch, tc.aux_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent.append(ce)
        if (step + 1) % _LOG_EVERY == 0 or step + 1 == steps:
            curve.append([step + 1, float(np.mean(recent)), _val_loss(model, val)])
            recent = []
            bar.set_postfix(val_loss=f"{curve[-1][2]:.3f}")
    model.eval()
    return curve


def _adamw(params, tc: TrainConfig, lr: float, optimizer_cls=None, analog_layers=None):
    decay, no_decay = [], []
    for name, p in params:
        (decay if p.ndim == 2 and "input_range" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": tc.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if analog_layers is None:
        return torch.optim.AdamW(groups, lr=lr)
    return hwa.AnalogOptimizer(torch.optim.AdamW, analog_layers, groups, lr=lr)


def train_fp(cfg: LMConfig, tc: TrainConfig, corpus: Corpus, *, position: int = 0,
             progress: bool = True) -> tuple[TinyLM, dict]:
    """Pretrain ``cfg`` in floating point: (model, {"curve", "seconds"})."""
    torch.manual_seed(tc.seed)
    model = TinyLM(cfg)
    val = torch.from_numpy(eval_windows(corpus.validation, _VAL_WINDOWS, cfg.context))
    opt = _adamw(model.named_parameters(), tc, tc.lr)
    t = time.perf_counter()
    curve = _steps(model, opt, corpus.train, tc, tc.pretrain_steps, tc.lr, tc.warmup_steps,
                   np.random.default_rng([tc.seed, 0]), val, f"{cfg.name} FP pretrain",
                   position, progress)
    return model, {"curve": curve, "seconds": time.perf_counter() - t}


def finetune_fp(model: TinyLM, tc: TrainConfig, corpus: Corpus, *, position: int = 0,
                progress: bool = True) -> tuple[TinyLM, dict]:
    """The FP branch: ``finetune_steps`` more floating-point steps on a copy of ``model``."""
    model = copy.deepcopy(model)
    model.forget()
    val = torch.from_numpy(eval_windows(corpus.validation, _VAL_WINDOWS, model.cfg.context))
    opt = _adamw(model.named_parameters(), tc, tc.finetune_lr)
    torch.manual_seed(tc.seed + 1)
    t = time.perf_counter()
    curve = _steps(model, opt, corpus.train, tc, tc.finetune_steps, tc.finetune_lr, 0,
                   np.random.default_rng([tc.seed, 1]), val, f"{model.cfg.name} FP finetune",
                   position, progress)
    return model, {"curve": curve, "seconds": time.perf_counter() - t}


def train_hwa(model: TinyLM, tc: TrainConfig, hc: HWAConfig, periphery: Periphery,
              corpus: Corpus, *, position: int = 0,
              progress: bool = True) -> tuple[TinyLM, dict[str, float], dict]:
    """The HWA branch: every linear layer converted to an aihwkit-lightning ``AnalogLinear``
    (:func:`aimoe_lib.analog.hwa.training_rpu_config`), ``finetune_steps`` steps with noise
    injection and an ``AnalogOptimizer`` (weights clipped after every step). Returns the
    digital model with the trained weights, the learned input ranges and {"curve", "seconds"}."""
    analog = hwa.to_analog(model, hwa.training_rpu_config(hc, periphery))
    val = torch.from_numpy(eval_windows(corpus.validation, _VAL_WINDOWS, model.cfg.context))
    opt = _adamw(analog.named_parameters(), tc, tc.finetune_lr, analog_layers=analog.analog_layers)
    torch.manual_seed(tc.seed + 1)
    t = time.perf_counter()
    curve = _steps(analog, opt, corpus.train, tc, tc.finetune_steps, tc.finetune_lr, 0,
                   np.random.default_rng([tc.seed, 1]), val, f"{model.cfg.name} HWA finetune",
                   position, progress)
    seconds = time.perf_counter() - t
    ranges = hwa.input_ranges(analog)
    out = TinyLM(model.cfg)
    state = analog.state_dict()
    out.load_state_dict({k: state[k] for k in out.state_dict()})
    out.eval()
    return out, ranges, {"curve": curve, "seconds": seconds}


def evaluate_pair(models: dict, windows: np.ndarray, periphery: Periphery, seeds,
                  *, position: int = 0, progress: bool = True) -> list[dict]:
    """Every condition for the trained models ``{"fp": (model, ranges), "hwa": ...}`` of one
    architecture; one record per (training, analog parts, noise)."""
    records = []
    for training, (model, ranges) in models.items():
        ev = NoisyEvaluator(model, ranges, windows, periphery)
        moe = model.cfg.is_moe
        full = ev.parts()
        jobs = [(full, None)]
        jobs += [(full, GaussianNoise(s)) for s in GAUSSIAN_LEVELS if s > 0]
        jobs += [(full, PCMNoise(t)) for t in TIMES_S]
        jobs += [(full, PCMNoise(t, compensate=False)) for t in TIMES_S]
        if moe:
            no_router = ev.parts(digital=("embedding", "router"))
            jobs += [(no_router, None)]
            jobs += [(no_router, GaussianNoise(s)) for s in GAUSSIAN_LEVELS if s > 0]
        jobs += [((part,), noise) for part in full for noise in (None, SENSITIVITY_NOISE)]
        name = model.cfg.name
        bar = tqdm(jobs, desc=f"{name} {training} evaluate", position=position, leave=False,
                   disable=not progress)
        for analog, noise in bar:
            out = ev.run(noise, analog=analog, seeds=seeds)
            records.append({
                "model": name, "training": training, "analog": list(analog),
                **noise_record(noise), "seeds": list(out.seeds), "ppl": list(out.ppl),
                "route_changed": None if out.route_changed is None else list(out.route_changed),
                "route_changed_by_layer": (None if out.route_changed_by_layer is None
                                           else [list(x) for x in out.route_changed_by_layer]),
                "route_changed_vs_digital": (None if out.route_changed_vs_digital is None
                                             else list(out.route_changed_vs_digital)),
            })
        records.append({"model": name, "training": training, "analog": [], "noise": "digital",
                        "level": 0.0, "compensate": None, "seeds": list(seeds),
                        "ppl": [ev.digital_ppl] * len(seeds), "route_changed": None,
                        "route_changed_by_layer": None, "route_changed_vs_digital": None})
    return records


def train_model(cfg: LMConfig, settings: Settings, out_dir: Path, *, save_checkpoint: bool,
                spare_dir: Path | None = None, previous: dict | None = None, position: int = 0,
                progress: bool = True, threads: int | None = None) -> dict:
    """Train, round, calibrate, evaluate and store one architecture; returns its JSON part.

    Checkpoints go to ``out_dir`` when ``save_checkpoint`` (they are then listed in the
    results), otherwise to ``spare_dir`` if given. With ``previous`` (this model's part of an
    earlier results file) nothing is trained: the checkpoints are read from ``out_dir`` or
    ``spare_dir`` and only the evaluation and the trace are redone.
    """
    torch.set_num_threads(threads or settings.train.threads)
    corpus = load_corpus()
    tc, seeds = settings.train, list(range(N_SEEDS))
    windows = eval_windows(corpus.test, EVAL_WINDOWS, cfg.context)
    if previous is None:
        t0 = time.perf_counter()
        base, pre = train_fp(cfg, tc, corpus, position=position, progress=progress)
        fp, fp_log = finetune_fp(base, tc, corpus, position=position, progress=progress)
        hw, hw_ranges, hw_log = train_hwa(base, tc, settings.hwa, settings.periphery, corpus,
                                          position=position, progress=progress)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        unrounded = {"fp": perplexity(fp, windows), "hwa": perplexity(hw, windows)}
        checkpoint.round_weights(fp)
        checkpoint.round_weights(hw)
        rng = np.random.default_rng([tc.seed, 2])
        calib = [torch.from_numpy(sample_windows(corpus.train, tc.batch, cfg.context, rng))[:, :-1]
                 for _ in range(4)]
        fp_ranges = hwa.calibrate(fp, calib, settings.periphery, seed=tc.seed)
        calib_s = time.perf_counter() - t1
        info = {
            "curves": {"pretrain": pre["curve"], "fp": fp_log["curve"], "hwa": hw_log["curve"]},
            "seconds": {"pretrain": pre["seconds"], "fp_finetune": fp_log["seconds"],
                        "hwa_finetune": hw_log["seconds"], "train_total": train_s + calib_s},
            "ppl_before_rounding": unrounded, "input_ranges": {"fp": fp_ranges, "hwa": hw_ranges},
        }
        where = out_dir if save_checkpoint else spare_dir
        if where is not None:
            for training, (m, r) in (("fp", (fp, fp_ranges)), ("hwa", (hw, hw_ranges))):
                checkpoint.save(Path(where) / f"ckpt_{cfg.name}_{training}.npz", m, r,
                                {"model": cfg.name, "training": training})
    else:
        loaded = {}
        for training in ("fp", "hwa"):
            name = f"ckpt_{cfg.name}_{training}.npz"
            path = next((Path(d) / name for d in (out_dir, spare_dir)
                         if d is not None and (Path(d) / name).exists()), None)
            if path is None:
                raise FileNotFoundError(f"{name} is neither in {str(out_dir)!r} nor in "
                                        f"{str(spare_dir)!r}; train the model first")
            loaded[training] = checkpoint.load(path)[:2]
        (fp, fp_ranges), (hw, hw_ranges) = loaded["fp"], loaded["hwa"]
        info = {k: previous[k] for k in ("curves", "seconds", "ppl_before_rounding",
                                         "input_ranges")}
    t2 = time.perf_counter()
    records = evaluate_pair({"fp": (fp, fp_ranges), "hwa": (hw, hw_ranges)}, windows,
                            settings.periphery, seeds, position=position, progress=progress)
    info["seconds"] = {**info["seconds"], "evaluate": time.perf_counter() - t2}

    spec = cfg.spec()
    files = [f"ckpt_{cfg.name}_{t}.npz" for t in ("fp", "hwa") if save_checkpoint]
    if cfg.is_moe:
        trace = routing_choices(fp, eval_windows(corpus.validation, TRACE_WINDOWS, cfg.context))
        p = routing.save_trace(out_dir / f"trace_{spec.name}.npz", trace, spec)
        files.append(p.name)
    return {"name": cfg.name, "config": cfg.to_dict(), "spec_name": spec.name,
            "params_total": spec.total_params, "params_active": spec.active_params,
            **info, "records": records, "files": files}


def quick_settings() -> Settings:
    """A few steps of tiny models: the smoke test and ``--quick``."""
    tiny = dict(d_model=32, n_layers=1, n_heads=2, context=32, d_ff=64)
    models = (LMConfig("dense", **tiny),
              LMConfig("moe-4", n_experts=4, top_k=2, d_expert=32, **tiny))
    return Settings(models=models, train=TrainConfig(pretrain_steps=4, finetune_steps=3, batch=4,
                                                     warmup_steps=2))


def _worker(args):
    cfg, settings, out_dir, save_ckpt, spare_dir, previous, position, progress, threads = args
    return train_model(cfg, settings, out_dir, save_checkpoint=save_ckpt, spare_dir=spare_dir,
                       previous=previous, position=position, progress=progress, threads=threads)


def _positive_int(value) -> bool:
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
            and value >= 1)


def _not_a_file(path: Path, name: str) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is an existing file, not a folder; pass a folder "
                         "(it is created if missing)")


def _writable_folder(path: Path, name: str) -> None:
    """Create ``path`` (a folder) and write a probe file in it, or raise naming ``name``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ValueError(f"{name}={str(path)!r} cannot be written ({e}); pass a writable "
                         "folder") from e


def check_run(settings: Settings, out_dir, *, workers: int = 2, checkpoints=("dense", "moe-4"),
              spare_dir=None, evaluate_only: bool = False, threads: int = 1) -> None:
    """Refuse, before any work, what :func:`run` would fail on late: step counts, workers or
    threads below 1, checkpoint names that are not models of ``settings``, output folders that
    are files or cannot be written, output files that are folders, and (``evaluate_only``) a
    missing ``results.json`` or checkpoint. Creates the output folders only when everything
    else passed; raises ValueError or FileNotFoundError naming the argument, its value and the
    fix."""
    tc = settings.train
    for name in ("pretrain_steps", "finetune_steps", "batch"):
        if not _positive_int(getattr(tc, name)):
            raise ValueError(f"{name}={getattr(tc, name)!r}: must be a whole number >= 1")
    for name, value in (("workers", workers), ("threads", threads)):
        if not _positive_int(value):
            raise ValueError(f"{name}={value!r}: must be a whole number >= 1")
    names = [c.name for c in settings.models]
    if isinstance(checkpoints, str):
        raise ValueError(f"checkpoints={checkpoints!r}: pass a list of model names, e.g. "
                         f"{tuple(names[:2])!r}")
    unknown = [c for c in checkpoints if c not in names]
    if unknown:
        raise ValueError(f"checkpoints: {', '.join(map(repr, unknown))} "
                         f"{'is not a model' if len(unknown) == 1 else 'are not models'} of this "
                         f"run; choose from {', '.join(names)}")
    out_dir = Path(out_dir)
    _not_a_file(out_dir, "out_dir")
    if spare_dir is not None:
        _not_a_file(Path(spare_dir), "spare_dir")
    files = [(out_dir, "results.json")]
    for cfg in settings.models:
        where = out_dir if cfg.name in checkpoints else spare_dir
        if where is not None:
            files += [(Path(where), f"ckpt_{cfg.name}_{t}.npz") for t in ("fp", "hwa")]
        if cfg.is_moe:
            files.append((out_dir, f"trace_{cfg.spec().name}.npz"))
    for folder, name in files:
        if (folder / name).is_dir():
            raise ValueError(f"{str(folder / name)!r} is a folder, but this run writes a file "
                             "there; move it away or pass another output folder")
    if evaluate_only:
        res = out_dir / "results.json"
        if not res.is_file():
            raise FileNotFoundError(f"evaluate_only: {str(res)!r} is missing; train first "
                                    "(without evaluate_only / --evaluate-only) into this folder")
        try:
            models = json.loads(res.read_text())["models"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"evaluate_only: {str(res)!r} is not a results file of this script "
                             f"({type(e).__name__}: {e}); train again without evaluate_only") from e
        if not isinstance(models, dict):
            raise ValueError(f"evaluate_only: {str(res)!r} has models={type(models).__name__}, "
                             "not an object of per-model results; train again")
        missing = [n for n in names if n not in models]
        if missing:
            raise ValueError(f"evaluate_only: {str(res)!r} has no results for "
                             f"{', '.join(missing)}; train them first")
        for cfg in settings.models:
            for t in ("fp", "hwa"):
                name = f"ckpt_{cfg.name}_{t}.npz"
                if not any((Path(d) / name).is_file() for d in (out_dir, spare_dir)
                           if d is not None):
                    raise FileNotFoundError(
                        f"evaluate_only: {name} is neither in out_dir={str(out_dir)!r} nor in "
                        f"spare_dir={None if spare_dir is None else str(spare_dir)!r}; pass the "
                        "spare_dir (--spare-dir) that holds it, or train first")
    _writable_folder(out_dir, "out_dir")
    if spare_dir is not None:
        _writable_folder(Path(spare_dir), "spare_dir")


def run(settings: Settings | None, out_dir, *, workers: int = 2,
        checkpoints=("dense", "moe-4"), spare_dir=None, evaluate_only: bool = False,
        progress: bool = True, threads: int = 1) -> dict:
    """Train and evaluate every model of ``settings`` (None: :class:`~aimoe_lib.analog.config.Settings`) and write
    ``results.json`` (plus checkpoints and traces) to ``out_dir``; returns the results.

    ``out_dir`` has no default: pass a folder of your own, or :data:`~aimoe_lib.analog.train.OUT_DIR` to overwrite the
    shipped results. Checkpoints of the models in ``checkpoints`` go to ``out_dir``, the others
    to ``spare_dir`` (if given). ``evaluate_only`` redoes the evaluation from those checkpoints,
    keeping the training curves and times of the ``results.json`` already in ``out_dir``.
    Arguments are checked (:func:`~aimoe_lib.analog.train.check_run`) before any work.
    """
    settings = settings or Settings()
    check_run(settings, out_dir, workers=workers, checkpoints=checkpoints, spare_dir=spare_dir,
              evaluate_only=evaluate_only, threads=threads)
    out_dir = Path(out_dir)
    previous, prev_wall = {}, None
    if evaluate_only:
        old = json.loads((out_dir / "results.json").read_text())
        previous = old["models"]
        prev_wall = old.get("train_wall_seconds")
    corpus = load_corpus()
    for cfg in settings.models:
        if cfg.vocab_size != corpus.tokenizer.vocab_size:
            raise ValueError(f"model {cfg.name!r} has vocab_size={cfg.vocab_size}; the corpus "
                             f"tokenizer has {corpus.tokenizer.vocab_size}")
    # longest first, so that two workers finish together
    order = sorted(settings.models, key=lambda c: -c.spec().total_params)
    jobs = [(cfg, settings, out_dir, cfg.name in checkpoints, spare_dir,
             previous.get(cfg.name) if evaluate_only else None, i % max(workers, 1), progress,
             threads) for i, cfg in enumerate(order)]
    t = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            parts = list(ex.map(_worker, jobs))
    else:
        parts = [_worker(j) for j in jobs]
    wall = time.perf_counter() - t
    by_name = {p["name"]: p for p in parts}
    results = {
        "format": 1,
        "settings": {"models": [c.to_dict() for c in settings.models],
                     "train": asdict(settings.train), "hwa": asdict(settings.hwa),
                     "periphery": asdict(settings.periphery),
                     "gaussian_levels": list(GAUSSIAN_LEVELS), "times_s": list(TIMES_S),
                     "sensitivity_noise": noise_record(SENSITIVITY_NOISE),
                     "n_seeds": N_SEEDS, "eval_windows": EVAL_WINDOWS,
                     "eval_tokens": EVAL_WINDOWS * settings.models[0].context,
                     "trace_windows": TRACE_WINDOWS},
        "corpus": {"tokens": {s: int(len(corpus.split(s))) for s in ("train", "validation",
                                                                       "test")},
                   "works": {s: list(v) for s, v in corpus.works.items()},
                   "vocab_size": corpus.tokenizer.vocab_size},
        "machine": {"workers": workers, "threads_per_worker": threads,
                    "cpu_count": os.cpu_count()},
        "wall_seconds": wall,
        "train_wall_seconds": prev_wall if evaluate_only else wall,
        "models": {c.name: {k: v for k, v in by_name[c.name].items() if k != "records"}
                   for c in settings.models},
        "records": [r for c in settings.models for r in by_name[c.name]["records"]],
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


def _step_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def main(argv=None) -> int:
    """Command line: ``python -m aimoe_lib.analog.train [--out DIR] [--workers N] [--quick]``.

    Every argument is checked (:func:`~aimoe_lib.analog.train.check_run`) before the corpus is read or a model built;
    the output folder is printed before the run starts."""
    ap = argparse.ArgumentParser(prog="python -m aimoe_lib.analog.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT),
                    help=f"output folder (default {DEFAULT_OUT} in the current directory; "
                         "--out data/analog from the repository's root regenerates the shipped "
                         "results)")
    ap.add_argument("--workers", type=_step_count, default=2,
                    help="models trained at once (processes)")
    ap.add_argument("--threads", type=_step_count, default=1, help="torch threads per worker")
    ap.add_argument("--checkpoints", default="dense,moe-4",
                    help="comma-separated models whose checkpoints to write")
    ap.add_argument("--spare-dir", default=None,
                    help="where the checkpoints of the other models go (default: not written)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="re-evaluate the checkpoints in --out / --spare-dir, no training")
    ap.add_argument("--quick", action="store_true", help="tiny models, a few steps (smoke run)")
    ap.add_argument("--pretrain-steps", type=_step_count, default=None)
    ap.add_argument("--finetune-steps", type=_step_count, default=None)
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    a = ap.parse_args(argv)
    settings = quick_settings() if a.quick else Settings()
    changes = {k: v for k, v in (("pretrain_steps", a.pretrain_steps),
                                 ("finetune_steps", a.finetune_steps)) if v is not None}
    if changes:
        settings = replace(settings, train=replace(settings.train, **changes))
    checkpoints = tuple(a.checkpoints.split(",")) if a.checkpoints else ()
    kw = dict(workers=a.workers, checkpoints=checkpoints, spare_dir=a.spare_dir,
              evaluate_only=a.evaluate_only, threads=a.threads)
    try:
        check_run(settings, a.out, **kw)
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e).replace("checkpoints:", "--checkpoints:").replace(
            "out_dir=", "--out ").replace("spare_dir=", "--spare-dir "))
    out = Path(a.out).resolve()
    print(f"writing results to {out}", file=sys.stderr)
    run(settings, a.out, progress=not a.no_progress, **kw)
    print(f"wrote {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
