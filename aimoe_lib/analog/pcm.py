"""Inference-time weight noise of analog tiles, in numpy with an explicit seeded generator.

Two models act on a weight matrix ``W`` of shape (out_features, in_features) — torch's layout, one
row per output, the row being what one column of a crossbar holds:

* :class:`~aimoe_lib.analog.pcm.GaussianNoise` — ``W + std * max_row|W| * N(0, 1)``: additive
  Gaussian noise relative to each row's largest magnitude (the noise aihwkit-lightning injects
  during HWA training with ``ADD_NORMAL_PER_CHANNEL``).
* :class:`~aimoe_lib.analog.pcm.PCMNoise` — the statistical phase-change-memory model of aihwkit's
  ``PCMLikeNoiseModel`` (``src/aihwkit/inference/noise/pcm.py``), fitted by Nandakumar et al.
  (ICECS 2019) and used by Joshi et al. (Nat. Commun. 11, 2473, 2020): each weight is a pair of
  devices (G+, G-), one programmed to ``g_max * |w| / max_row|w|`` and the other to 0
  (aihwkit's ``SinglePairConductanceConverter``, with the row scaling of A-PCM-ROW-SCALE);
  then programming noise, a drift exponent per device, power-law drift and accumulated 1/f read
  noise up to the inference time, and a global drift compensation of one scalar per tile.

We re-implement the formulas rather than import aihwkit because aihwkit 1.1.0 cannot be
installed from ``requirements.txt`` next to torch 2.13.0 (it requires torchvision, cmake,
scikit-build and others; it runs only with ``--no-deps``) and because its noise draws from
torch's global random state, where every step here takes a ``numpy.random.Generator``.
The tests hold every step to the formulas below.

Constants (source: aihwkit ``PCMLikeNoiseModel`` defaults, fitted by Nandakumar et al. 2019):

* g_max = 25 uS; t0 = 20 s (first read after programming); t_read = 250 ns;
* programming noise std (uS) = (c0 + c1 g + c2 g^2) * g_max / 25 uS with g = g_target / g_max,
  c = (0.26348, 1.9650, -1.1731); programmed conductances are clipped at 0;
* drift exponent per device ``nu = abs(N(mu, sigma))`` with
  mu = clip(-0.0155 ln g + 0.0244, 0.049, 0.1), sigma = clip(-0.0125 ln g - 0.0059, 0.008, 0.045)
  (g clipped below at 1e-7);
* drift: g(t) = g_prog * ((t + t0) / t0)^(-nu), t the time since programming;
* read noise: ``std = abs(g(t)) * Q_s * sqrt(ln((t + t0 + t_read) / (2 t_read)))`` with
  Q_s = min(0.0088 / max(g_prog/g_max, 1e-3)^0.65, 0.2) — aihwkit evaluates the 1/f integral at
  the time since the *start* of programming, t + t0 (A-PCM-READ-T); conductances clipped at 0;
* global drift compensation (aihwkit ``GlobalDriftCompensation``): a reference read right after
  programming and another at time t give ``alpha = mean(abs(G_prog)) / mean(abs(G(t)))``
  (mean over the tile's outputs to one-hot inputs = over its weights, here in conductance units,
  read without noise as aihwkit's exact-reference variant does: A-PCM-GDC); the tile's output is
  multiplied by alpha digitally. Here a tile is one layer (one weight matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["G_MAX_US", "T0_S", "T_READ_S", "PROG_COEFF", "PROG_COEFF_G_MAX_US",
           "GaussianNoise", "PCMNoise", "programming_noise_std_us", "drift_mu_sigma",
           "read_noise_q", "to_conductances", "from_conductances", "TIMES_S", "time_label"]

G_MAX_US = 25.0
"""Conductance of the largest weight magnitude, uS (aihwkit ``PCMLikeNoiseModel`` default)."""
T0_S = 20.0
"""Time of the first read after programming, s (aihwkit default; Nandakumar et al. 2019)."""
T_READ_S = 250e-9
"""Duration of one read, s (aihwkit default)."""
PROG_COEFF = (0.26348, 1.9650, -1.1731)
"""Programming-noise polynomial in g = g_target / g_max, in uS at g_max = 25 uS (aihwkit
``PCMLikeNoiseModel.prog_coeff``; Nandakumar et al. 2019)."""
PROG_COEFF_G_MAX_US = 25.0
"""The g_max at which PROG_COEFF was fitted, uS."""
_DRIFT_MU = (-0.0155, 0.0244, 0.049, 0.1)
"""mu = clip(a ln g + b, lo, hi) (aihwkit ``generate_drift_coefficients``)."""
_DRIFT_SIGMA = (-0.0125, -0.0059, 0.008, 0.045)
"""sigma = clip(a ln g + b, lo, hi) (aihwkit ``generate_drift_coefficients``)."""
_READ_Q = (0.0088, 0.65, 0.2, 1e-3)
"""Q_s = min(a / max(g, floor)^b, cap) (aihwkit ``apply_drift_noise_to_conductance``)."""
_ZERO_CLIP = 1e-7
"""Smallest relative conductance in ln g (aihwkit ``_ZERO_CLIP``)."""

TIMES_S = (1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0)
"""Times since programming studied in chapter 8: 1 s, 1 h, 1 day, 30 days, 1 year."""


def time_label(t_s: float) -> str:
    """'1 s', '1 h', '1 day', '30 days', '1 year' and similar."""
    for unit, sec in (("year", 365 * 86400.0), ("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if t_s >= sec:
            n = t_s / sec
            s = f"{n:.3g}"
            plural = "s" if unit in ("year", "day") and s != "1" else ""
            return f"{s} {unit}{plural}"
    return f"{t_s:.3g} s"


def programming_noise_std_us(g_target_us, g_max_us: float = G_MAX_US):
    """Std of the programming noise (uS) at target conductance ``g_target_us``."""
    g = np.asarray(g_target_us, dtype=float) / g_max_us
    c0, c1, c2 = PROG_COEFF
    return (c0 + c1 * g + c2 * g * g) * (g_max_us / PROG_COEFF_G_MAX_US)


def drift_mu_sigma(g_target_us, g_max_us: float = G_MAX_US):
    """Mean and std of the drift exponent's normal distribution at ``g_target_us``."""
    g = np.maximum(np.abs(np.asarray(g_target_us, dtype=float)) / g_max_us, _ZERO_CLIP)
    a, b, lo, hi = _DRIFT_MU
    mu = np.clip(a * np.log(g) + b, lo, hi)
    a, b, lo, hi = _DRIFT_SIGMA
    sigma = np.clip(a * np.log(g) + b, lo, hi)
    return mu, sigma


def read_noise_q(g_prog_us, g_max_us: float = G_MAX_US):
    """Q_s of the 1/f read noise at programmed conductance ``g_prog_us``."""
    a, b, cap, floor = _READ_Q
    g = np.maximum(np.abs(np.asarray(g_prog_us, dtype=float)) / g_max_us, floor)
    return np.minimum(a / g**b, cap)


def to_conductances(w, g_max_us: float = G_MAX_US):
    """Map ``w`` (rows = outputs) to a device pair per weight: returns (g_plus, g_minus, scale)
    with ``w = (g_plus - g_minus) * scale`` and ``scale = max(abs(row)) / g_max``, shape (rows, 1).
    A row of zeros gets scale 1 (any scale maps it to zero conductance)."""
    w = np.asarray(w, dtype=float)
    if w.ndim != 2:
        raise ValueError(f"w has shape {w.shape}: pass a 2-D weight matrix (out, in)")
    wmax = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(wmax > 0, wmax / g_max_us, 1.0)
    g = w / scale
    return np.clip(g, 0.0, g_max_us), np.clip(-g, 0.0, g_max_us), scale


def from_conductances(g_plus, g_minus, scale):
    """Inverse of :func:`~aimoe_lib.analog.pcm.to_conductances`."""
    return (np.asarray(g_plus) - np.asarray(g_minus)) * scale


@dataclass(frozen=True)
class GaussianNoise:
    """Additive Gaussian weight noise: ``W + std * max_row|W| * N(0, 1)``."""

    std: float = 0.05
    """Noise std relative to each row's largest ``abs(W)``."""

    def __post_init__(self) -> None:
        if not self.std >= 0:
            raise ValueError(f"GaussianNoise.std={self.std!r}: must be >= 0")

    def apply(self, w, rng: np.random.Generator) -> np.ndarray:
        """A noisy copy of ``w`` (float64)."""
        w = np.asarray(w, dtype=float)
        if self.std == 0:
            return w.copy()
        wmax = np.abs(w).max(axis=1, keepdims=True)
        return w + self.std * wmax * rng.standard_normal(w.shape)

    def label(self) -> str:
        """Short description for figures."""
        return f"Gaussian {100 * self.std:g}% of row max"


@dataclass(frozen=True)
class PCMNoise:
    """The statistical PCM model (module docstring), evaluated ``t_s`` seconds after programming.

    Each step has a ``*_scale`` knob (1 = the fitted model, 0 = off), as in aihwkit.
    """

    t_s: float = 1.0
    """Time since programming ended, s (aihwkit ``t_inference``)."""
    prog_scale: float = 1.0
    """Scale of the programming noise."""
    drift_scale: float = 1.0
    """Scale of the drift exponents."""
    read_scale: float = 1.0
    """Scale of the 1/f read noise."""
    compensate: bool = True
    """Apply global drift compensation (one scalar per tile)."""
    g_max_us: float = G_MAX_US
    """Conductance of a row's largest ``abs(w)``, uS."""
    t0_s: float = T0_S
    """First read after programming, s."""
    t_read_s: float = T_READ_S
    """Read duration, s."""

    def __post_init__(self) -> None:
        for f in ("t_s", "prog_scale", "drift_scale", "read_scale"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"PCMNoise.{f}={getattr(self, f)!r}: must be >= 0")
        for f in ("g_max_us", "t0_s", "t_read_s"):
            if not getattr(self, f) > 0:
                raise ValueError(f"PCMNoise.{f}={getattr(self, f)!r}: must be > 0")

    # -- the hooks, one physical step each ----------------------------------------------------
    def program(self, g_target, rng: np.random.Generator) -> np.ndarray:
        """Programmed conductances: target + N(0, std(target)), clipped at 0."""
        g_target = np.asarray(g_target, dtype=float)
        std = programming_noise_std_us(g_target, self.g_max_us)
        g = g_target + self.prog_scale * std * rng.standard_normal(g_target.shape)
        return np.maximum(g, 0.0)

    def drift_exponents(self, g_target, rng: np.random.Generator) -> np.ndarray:
        """One drift exponent per device: ``abs(N(mu(g), sigma(g))) * drift_scale``."""
        mu, sigma = drift_mu_sigma(g_target, self.g_max_us)
        return np.abs(mu + sigma * rng.standard_normal(mu.shape)) * self.drift_scale

    def drift_and_read(self, g_prog, nu, rng: np.random.Generator) -> np.ndarray:
        """Conductances at time ``t_s``: power-law drift, then accumulated 1/f read noise."""
        g_prog = np.asarray(g_prog, dtype=float)
        t = self.t_s + self.t0_s
        g = g_prog * (t / self.t0_s) ** (-np.asarray(nu)) if self.t_s > 0 else g_prog.copy()
        sig = read_noise_q(g_prog, self.g_max_us) * math.sqrt(
            math.log((t + self.t_read_s) / (2 * self.t_read_s)))
        g = g + np.abs(g) * self.read_scale * sig * rng.standard_normal(g.shape)
        return np.maximum(g, 0.0)

    def read_noise_std_us(self, g_prog_us, g_t_us) -> np.ndarray:
        """Std of the read noise at time ``t_s`` (for tests and figures)."""
        t = self.t_s + self.t0_s
        return np.abs(g_t_us) * self.read_scale * read_noise_q(g_prog_us, self.g_max_us) * \
            math.sqrt(math.log((t + self.t_read_s) / (2 * self.t_read_s)))

    # -- the whole chain ------------------------------------------------------------------------
    def conductances(self, w, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Every stage for one tile: target, programmed and read-at-``t_s`` conductances of both
        devices (arrays of shape (2, out, in)), the drift exponents, the row scale and the drift
        compensation factor ``alpha``."""
        g_plus, g_minus, scale = to_conductances(w, self.g_max_us)
        target = np.stack([g_plus, g_minus])
        prog = self.program(target, rng)
        nu = self.drift_exponents(target, rng)
        at_t = self.drift_and_read(prog, nu, rng)
        alpha = 1.0
        if self.compensate:
            ref = np.abs(prog[0] - prog[1]).mean()
            now = np.abs(at_t[0] - at_t[1]).mean()
            alpha = float(ref / now) if now > 0 else 1.0
        return {"target": target, "programmed": prog, "at_t": at_t, "nu": nu, "scale": scale,
                "alpha": alpha}

    def apply(self, w, rng: np.random.Generator) -> np.ndarray:
        """The weights a tile computes with at time ``t_s``, drift compensation folded in:
        ``alpha * (G+(t) - G-(t)) * scale`` (float64)."""
        c = self.conductances(w, rng)
        return c["alpha"] * from_conductances(c["at_t"][0], c["at_t"][1], c["scale"])

    def label(self) -> str:
        """Short description for figures."""
        return f"PCM at {time_label(self.t_s)}" + ("" if self.compensate else ", uncompensated")
