"""The recurrent theory (issue 15) against independent references: exact results for the
ReLU random walk of an identity-recurrent network, Monte Carlo of one unit's chain, and
a plain-numpy simulation of the whole network (no varprop kernel, no varprop theory).

Statistical checks use fixed seeds; each bound is a t quantile at a two-sided
false-alarm rate of 1e-4 per check, on the spread between independent draws."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from scipy import stats

from varprop.recurrent import SimpleRNN, analyze_rnn, rnn_preset
from varprop.recurrent.identity_chain import chain_moments, relu_walk_second_moment
from varprop.activations import get_activation

ALPHA = 1e-4


def _irnn(act: str = "relu", stddev: float = 0.1, bias=None, input_size: int = 100):
    return SimpleRNN(input_size, 64, act, kernel_init={"name": "random_normal", "stddev": stddev},
                     recurrent_init="identity", bias_init=bias)


def _bound(values: np.ndarray) -> float:
    """Half-width of the mean of ``values`` at the false-alarm rate ALPHA."""
    n = len(values)
    return float(stats.t.ppf(1 - ALPHA / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))


# --------------------------------------------------------------------------- exact
@pytest.mark.parametrize("steps", [1, 2, 10, 50, 100])
def test_relu_irnn_second_moment_is_the_reflected_walks(steps):
    # input term variance F * stddev^2 = 1: h_{T-1} is the maximum of a standard walk
    p = analyze_rnn(_irnn(), steps)
    last = p[steps - 1]
    second = last.a_var + last.a_mean ** 2
    assert second == pytest.approx(relu_walk_second_moment(steps), rel=2e-4)
    # Spitzer: E[max] = sum_k E[S_k^+] / k = sum_k 1 / sqrt(2 pi k)
    mean = sum(1 / math.sqrt(2 * math.pi * k) for k in range(1, steps + 1))
    assert last.a_mean == pytest.approx(mean, rel=2e-4)


def test_spitzer_formula_itself_against_brute_force():
    """The reference used above, checked by enumerating a two-step walk's maximum."""
    rng = np.random.default_rng(5)
    s = np.cumsum(rng.standard_normal((2_000_000, 3)), axis=1)
    m = np.maximum(0, s.max(axis=1))
    sq = m ** 2
    assert abs(sq.mean() - relu_walk_second_moment(3)) < _bound(sq)


@pytest.mark.parametrize("steps", [1, 3, 20, 60])
def test_relu_irnn_last_gradient_is_sparre_andersens(steps):
    # Var dL/dz_{T-1} = P(z_{T-1} > 0) = 1 - P(all T partial sums <= 0) = 1 - C(2T,T)/4^T
    p = analyze_rnn(_irnn(), steps)
    exact = 1 - comb(2 * steps, steps) / 4 ** steps
    assert p[steps - 1].grad_var == pytest.approx(exact, rel=2e-4)


def test_identity_chain_without_input_noise_is_the_deterministic_orbit():
    act = get_activation("tanh")
    out = chain_moments(act, 0.9, 0.3, 0.0, 6, np.eye(6)[-1])
    z = 0.3
    for t in range(6):
        assert out[t, 0] == pytest.approx(z, abs=1e-15)
        z = 0.9 * math.tanh(z) + 0.3


# --------------------------------------------------------------------------- Monte Carlo
def _chains(act, gain, sigma, steps, n, rng, bias_sd=0.0, loss="last", drift=0.0):
    """One unit's chain simulated: per step E z^2 and E phi^2 and Var dL/dz, as arrays of
    per-batch means (20 batches) for the spread. ``drift``: a fixed input mean added at
    every step (with a random bias of standard deviation ``bias_sd`` around it)."""
    batches = 20
    out = np.zeros((batches, 3, steps))
    for k in range(batches):
        b = drift + (rng.normal(0, bias_sd, n) if bias_sd else 0.0)
        z = rng.normal(0, sigma, n) + b
        zs = [z]
        for _ in range(1, steps):
            z = gain * act.value(z) + rng.normal(0, sigma, n) + b
            zs.append(z)
        g = np.zeros(n)
        for t in range(steps - 1, -1, -1):
            read = rng.standard_normal(n) if (loss == "sequence" or t == steps - 1) else 0.0
            g = (read + gain * g) * act.derivative(zs[t])
            out[k, 2, t] = np.mean(g * g)
            out[k, 0, t] = np.mean(zs[t] ** 2)
            out[k, 1, t] = np.mean(act.value(zs[t]) ** 2)
    return out


@pytest.mark.parametrize("act_name,bias_sd,loss", [("relu", 0.0, "sequence"),
                                                  ("tanh", 0.7, "last"),
                                                  ("gelu", 0.0, "last")])
def test_identity_chain_matches_monte_carlo(act_name, bias_sd, loss):
    steps = 12
    bias = None if bias_sd == 0 else {"name": "random_normal", "stddev": bias_sd}
    rnn = _irnn(act_name, bias=bias)
    p = analyze_rnn(rnn, steps, loss=loss)
    mc = _chains(rnn.activation, 1.0, 1.0, steps, 20_000, np.random.default_rng(11),
                 bias_sd, loss)
    for t in (0, 5, steps - 1):
        r = p[t]
        theory = (r.z_var + r.z_mean ** 2, r.a_var + r.a_mean ** 2, r.grad_var)
        for j, value in enumerate(theory):
            assert abs(mc[:, j, t].mean() - value) < _bound(mc[:, j, t]), (t, j)


# --------------------------------------------------------------------------- mean field
def _simulate(rnn: SimpleRNN, steps: int, batch: int, seeds: int, corr=None):
    """Plain numpy: per seed and step, var z_t, var h_t, mean (dL/dz_t)^2 and z_corr."""
    act = rnn.activation
    out = np.zeros((seeds, 4, steps))
    for s in range(seeds):
        rng = np.random.default_rng(1000 + s)
        w_x = np.asarray(rnn.kernel_init(rnn.kernel_shape, seed=rng, dtype=np.float64))
        w_h = np.asarray(rnn.recurrent_init(rnn.recurrent_shape, seed=rng, dtype=np.float64))
        b = 0.0 if rnn.bias_init is None else \
            np.asarray(rnn.bias_init((rnn.units,), seed=rng, dtype=np.float64))
        x = rng.standard_normal((steps, batch, rnn.input_size))
        x2 = None if corr is None else \
            corr * x + math.sqrt(1 - corr ** 2) * rng.standard_normal(x.shape)
        h = np.zeros((batch, rnn.units))
        h2 = np.zeros_like(h)
        zs = []
        for t in range(steps):
            z = x[t] @ w_x + h @ w_h + b
            h = act.value(z)
            zs.append(z)
            out[s, 0, t], out[s, 1, t] = z.var(), h.var()
            if x2 is not None:
                z2 = x2[t] @ w_x + h2 @ w_h + b
                h2 = act.value(z2)
                out[s, 3, t] = (z * z2).sum() / math.sqrt((z * z).sum() * (z2 * z2).sum())
        g_h = rng.standard_normal((batch, rnn.units))
        for t in range(steps - 1, -1, -1):
            g_z = g_h * act.derivative(zs[t])
            out[s, 2, t] = np.mean(g_z ** 2)
            g_h = g_z @ w_h.T
    return out


@pytest.mark.parametrize("act,recurrent", [("tanh", "orthogonal"), ("tanh", "glorot_normal"),
                                           ("relu", "orthogonal"), ("gelu", "he_normal")])
def test_mean_field_matches_a_numpy_simulation(act, recurrent):
    rnn = SimpleRNN(48, 512, act, kernel_init="glorot_normal", recurrent_init=recurrent)
    _check_against_simulation(rnn)


def test_mean_field_with_a_constant_bias_matches_a_numpy_simulation():
    """A constant bias gives z a mean: z_corr is the uncentred E[z1 z2] / E[z^2] in both
    (the theory's was centred before: 0.50 at step 0, where both now give 0.80)."""
    _check_against_simulation(SimpleRNN(48, 512, "tanh", kernel_init="glorot_normal",
                                        bias_init={"name": "constant", "value": 0.5}))


def _check_against_simulation(rnn: SimpleRNN) -> None:
    steps = 16
    p = analyze_rnn(rnn, steps, input_correlation=0.5)
    sim = _simulate(rnn, steps, 32, 10, corr=0.5)
    for t in (0, 1, 7, steps - 1):
        for j, name in ((0, "z_var"), (1, "a_var"), (3, "z_corr")):
            ratio = sim[:, j, t] / getattr(p[t], name)
            assert abs(ratio.mean() - 1) < _bound(ratio), (name, t)
    # the gradient's spread between draws grows with the steps it has travelled
    ratio = sim[:, 2, 0] / p[0].grad_var
    assert abs(ratio.mean() - 1) < _bound(ratio)


def test_few_inputs_spread_the_units_input_variance():
    """With F = 4 Gaussian inputs each unit reads its own 4-weight column at every step:
    the theory integrates over the columns' norms. Without that it is measurably off."""
    rnn = SimpleRNN(4, 512, "tanh", kernel_init={"name": "random_normal", "stddev": 0.5},
                    recurrent_init="orthogonal")
    p = analyze_rnn(rnn, 8)
    sim = _simulate(rnn, 8, 32, 12)
    ratio = sim[:, 1, 7] / p[7].a_var
    assert abs(ratio.mean() - 1) < _bound(ratio)


def test_zero_weights_are_symmetric_with_the_kernels_derivative_at_the_kink():
    p = analyze_rnn(rnn_preset("zeros", activation="relu"), 5)
    assert p.symmetric
    assert all(r.z_var == 0 and r.grad_var == 0 for r in p)  # relu'(0) = 0, as the kernels
    p = analyze_rnn(rnn_preset("zeros"), 5)  # tanh'(0) = 1: the last step's gradient passes
    assert p[4].grad_var == 1.0 and p[3].grad_var == 0.0


def test_one_hot_inputs_add_one_row_of_w_x_and_are_flagged_through_tanh():
    rnn = rnn_preset("xavier")
    p = analyze_rnn(rnn, 3, inputs="one_hot")
    v = 2 / (10 + 128) / 3 * 3  # glorot_uniform's entry variance, 2 / (fan_in + fan_out)
    assert p[0].z_var == pytest.approx(v, rel=1e-12)
    kinds = [a["detail"] for a in p.meta["approximations"]]
    assert "one_hot" in kinds
    relu = analyze_rnn(rnn.with_inits(activation="relu"), 3, inputs="one_hot")
    assert "one_hot" not in [a["detail"] for a in relu.meta["approximations"]]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"steps": 0}, ValueError, "steps"),
    ({"steps": 2.5}, TypeError, "steps"),
    ({"inputs": "words"}, ValueError, "inputs"),
    ({"loss": "mean"}, ValueError, "loss"),
    ({"input_var": -1.0}, ValueError, "input_var"),
    ({"input_correlation": 2.0}, ValueError, "input_correlation"),
    ({"inputs": "one_hot", "input_correlation": 0.5}, ValueError, "input_correlation"),
])
def test_analyze_rnn_rejects_bad_arguments(kwargs, error, match):
    args = {"steps": 5, **kwargs}
    steps = args.pop("steps")
    with pytest.raises(error, match=match):
        analyze_rnn(rnn_preset("xavier"), steps, **args)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"input_size": 0}, ValueError, "input_size"),
    ({"units": "8"}, TypeError, "units"),
    ({"activation": "relux"}, ValueError, "activation"),
    ({"activation": 3}, TypeError, "activation"),
    ({"recurrent_init": "orthogonall"}, ValueError, "recurrent_init"),
    ({"kernel_init": 1.0}, TypeError, "kernel_init"),
])
def test_simple_rnn_rejects_bad_fields(kwargs, error, match):
    args = {"input_size": 4, "units": 8, **kwargs}
    with pytest.raises(error, match=match):
        SimpleRNN(**args)


def test_analyze_rnn_needs_a_simple_rnn():
    with pytest.raises(TypeError, match="rnn"):
        analyze_rnn("rnn", 4)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_identical_units_read_at_every_step(act):
    """Constant kernels make every unit the same chain; a loss on every state reads it
    at every step (this raised a TypeError before: the rare-path terms of a one-step
    read were taken for any read). Against the measurement per seed, float64."""
    from varprop.recurrent import measure_rnn
    cell = SimpleRNN(8, 64, act, kernel_init={"name": "constant", "value": 0.05},
                     recurrent_init={"name": "constant", "value": 0.01})
    p = analyze_rnn(cell, 10, loss="sequence")
    m = measure_rnn(cell, 10, loss="sequence", batch=512, seeds=12, dtype=np.float64)
    for field in ("a_var", "grad_var"):
        seeds = m.seed_column(field)
        for t in (0, 5, 9):
            ratio = seeds[:, t] / getattr(p[t], field)
            assert abs(ratio.mean() - 1) < _bound(ratio), (field, t)
