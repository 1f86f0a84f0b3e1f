"""The inference noise models of aimoe_lib.analog.pcm against their formulas (numpy only).

Formulas (aihwkit PCMLikeNoiseModel, Nandakumar et al. 2019): programming noise std
(0.26348 + 1.9650 g - 1.1731 g^2) uS at g_max = 25 uS; drift nu = |N(mu, sigma)| with clipped
log-linear mu and sigma; g(t) = g_prog ((t + t0) / t0)^-nu; read noise
|g(t)| Q_s sqrt(ln((t + t0 + t_read) / (2 t_read))), Q_s = min(0.0088 / g^0.65, 0.2); global
drift compensation alpha = mean|G_prog| / mean|G(t)|.
"""

import math

import numpy as np
import pytest

from aimoe_lib.analog import pcm
from aimoe_lib.analog.pcm import GaussianNoise, PCMNoise

N = 200_000


def test_published_constants():
    assert pcm.G_MAX_US == 25.0 and pcm.T0_S == 20.0 and pcm.T_READ_S == 250e-9
    assert pcm.PROG_COEFF == (0.26348, 1.9650, -1.1731)


@pytest.mark.parametrize("g_us, expected", [
    (0.0, 0.26348),
    (12.5, 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.25),
    (25.0, 0.26348 + 1.9650 - 1.1731),
])
def test_programming_noise_std_closed_form(g_us, expected):
    assert pcm.programming_noise_std_us(g_us) == pytest.approx(expected, rel=1e-12)


def test_programming_noise_scales_with_g_max():
    """Coefficients are in uS at 25 uS; at g_max = 50 uS the same relative g doubles the std."""
    assert pcm.programming_noise_std_us(25.0, g_max_us=50.0) == pytest.approx(
        2 * pcm.programming_noise_std_us(12.5, g_max_us=25.0))


@pytest.mark.parametrize("g_us", [5.0, 12.5, 25.0])
def test_programmed_conductances_have_the_fitted_std(g_us):
    m = PCMNoise()
    g = m.program(np.full(N, g_us), np.random.default_rng(0))
    # 5 uS is 5 sigma above zero: clipping at 0 is negligible
    assert g.mean() == pytest.approx(g_us, abs=4 * pcm.programming_noise_std_us(g_us) / N**0.5)
    assert g.std() == pytest.approx(pcm.programming_noise_std_us(g_us), rel=0.01)


def test_programmed_conductances_are_never_negative():
    g = PCMNoise().program(np.zeros(N), np.random.default_rng(1))
    assert g.min() == 0.0 and (g > 0).mean() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("g_rel, mu, sigma", [
    (1.0, 0.049, 0.008),  # both clipped at their lower bounds (ln 1 = 0)
    (0.01, -0.0155 * math.log(0.01) + 0.0244, 0.045),  # sigma clipped at its upper bound
    (0.1, -0.0155 * math.log(0.1) + 0.0244, -0.0125 * math.log(0.1) - 0.0059),
    (0.0, 0.1, 0.045),  # g = 0 is clipped to 1e-7 first
])
def test_drift_mean_and_std(g_rel, mu, sigma):
    m, s = pcm.drift_mu_sigma(25.0 * g_rel)
    assert float(m) == pytest.approx(max(0.049, min(mu, 0.1)), rel=1e-12)
    assert float(s) == pytest.approx(max(0.008, min(sigma, 0.045)), rel=1e-12)


def test_drift_exponents_are_folded_normals():
    nu = PCMNoise().drift_exponents(np.full(N, 2.5), np.random.default_rng(2))
    mu, sigma = pcm.drift_mu_sigma(2.5)
    assert nu.min() >= 0
    assert nu.mean() == pytest.approx(float(mu), rel=0.01)  # mu/sigma > 2: folding negligible
    assert nu.std() == pytest.approx(float(sigma), rel=0.02)


def test_drift_is_a_power_law():
    """Without read noise, log g(t) is linear in log((t + t0) / t0) with slope -nu."""
    g_prog = np.array([25.0, 10.0, 1.0])
    nu = np.array([0.05, 0.08, 0.1])
    times = np.array([1.0, 3600.0, 86400.0, 3.15e7])
    g = np.stack([PCMNoise(t, read_scale=0.0).drift_and_read(g_prog, nu, np.random.default_rng(0))
                  for t in times])
    x = np.log((times + pcm.T0_S) / pcm.T0_S)
    np.testing.assert_allclose(g, g_prog * np.exp(-np.outer(x, nu)), rtol=1e-12)
    slopes = np.polyfit(x, np.log(g), 1)[0]
    np.testing.assert_allclose(slopes, -nu, rtol=1e-9)


def test_no_drift_right_after_programming():
    g_prog = np.array([20.0])
    out = PCMNoise(0.0, read_scale=0.0).drift_and_read(g_prog, np.array([0.1]),
                                                        np.random.default_rng(0))
    assert out[0] == 20.0


@pytest.mark.parametrize("g_us, t_s", [(25.0, 1.0), (5.0, 86400.0), (1.0, 3600.0)])
def test_read_noise_std(g_us, t_s):
    q = min(0.0088 / max(g_us / 25.0, 1e-3) ** 0.65, 0.2)
    expected = q * math.sqrt(math.log((t_s + 20.0 + 250e-9) / (2 * 250e-9)))
    assert float(pcm.read_noise_q(g_us)) == pytest.approx(q, rel=1e-12)
    m = PCMNoise(t_s, drift_scale=0.0)
    g = m.drift_and_read(np.full(N, g_us), np.zeros(N), np.random.default_rng(3))
    # clipping at 0 only matters below ~3 sigma; the cases here stay above it
    assert (g / g_us - 1).std() == pytest.approx(expected, rel=0.01)
    assert float(m.read_noise_std_us(g_us, g_us)) == pytest.approx(expected * g_us, rel=1e-12)


def test_conductance_mapping_round_trip():
    w = np.random.default_rng(4).standard_normal((7, 11))
    gp, gm, scale = pcm.to_conductances(w)
    assert gp.max(axis=1) @ np.ones(7) + gm.max(axis=1) @ np.ones(7) > 0
    np.testing.assert_allclose(np.maximum(gp, gm).max(axis=1), 25.0)  # row max -> g_max
    assert ((gp == 0) | (gm == 0)).all()  # one device of each pair stays at 0
    np.testing.assert_allclose(pcm.from_conductances(gp, gm, scale), w, rtol=1e-12)


def test_zero_row_maps_to_zero():
    w = np.zeros((2, 3))
    w[1, 0] = 1.0
    gp, gm, scale = pcm.to_conductances(w)
    assert (gp[0] == 0).all() and (gm[0] == 0).all()
    np.testing.assert_allclose(pcm.from_conductances(gp, gm, scale), w)


def test_all_scales_zero_returns_the_weights():
    w = np.random.default_rng(5).standard_normal((4, 6))
    m = PCMNoise(3.15e7, prog_scale=0, drift_scale=0, read_scale=0)
    np.testing.assert_allclose(m.apply(w, np.random.default_rng(0)), w, rtol=1e-12)


def test_drift_compensation_restores_the_mean():
    """alpha brings mean |G+ - G-| back to its value right after programming; without it the
    weights of a tile shrink by about ((t + t0) / t0)^-nu."""
    w = np.random.default_rng(6).standard_normal((64, 256))
    t = 3.15e7
    c = PCMNoise(t).conductances(w, np.random.default_rng(7))
    prog = np.abs(c["programmed"][0] - c["programmed"][1]).mean()
    now = np.abs(c["at_t"][0] - c["at_t"][1]).mean()
    assert c["alpha"] * now == pytest.approx(prog, rel=1e-12)
    assert now / prog < 0.6  # a year of drift at nu ~ 0.05..0.1 loses about half the signal

    comp = PCMNoise(t).apply(w, np.random.default_rng(7))
    raw = PCMNoise(t, compensate=False).apply(w, np.random.default_rng(7))
    slope_comp = np.sum(comp * w) / np.sum(w * w)
    slope_raw = np.sum(raw * w) / np.sum(w * w)
    assert slope_comp == pytest.approx(1.0, abs=0.05)
    assert slope_raw < 0.6


def test_noise_is_seeded():
    w = np.random.default_rng(8).standard_normal((5, 9))
    for model in (PCMNoise(86400.0), GaussianNoise(0.05)):
        a = model.apply(w, np.random.default_rng(11))
        b = model.apply(w, np.random.default_rng(11))
        c = model.apply(w, np.random.default_rng(12))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_gaussian_noise_is_relative_to_each_rows_max():
    w = np.ones((2, N))
    w[1] *= 10.0
    w[:, 0] = [2.0, 40.0]  # row maxima 2 and 40
    noisy = GaussianNoise(0.05).apply(w, np.random.default_rng(9))
    d = noisy - w
    assert d[0].std() == pytest.approx(0.05 * 2.0, rel=0.01)
    assert d[1].std() == pytest.approx(0.05 * 40.0, rel=0.01)
    np.testing.assert_array_equal(GaussianNoise(0.0).apply(w, np.random.default_rng(0)), w)


def test_invalid_parameters_name_the_field():
    with pytest.raises(ValueError, match="t_s"):
        PCMNoise(-1.0)
    with pytest.raises(ValueError, match="g_max_us"):
        PCMNoise(g_max_us=0)
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(-0.1)


def test_time_labels():
    assert [pcm.time_label(t) for t in pcm.TIMES_S] == ["1 s", "1 h", "1 day", "30 days",
                                                       "1 year"]
