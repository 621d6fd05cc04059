"""varprop.measure: the empirical profile.

Tolerances come from the sample sizes and from finite-width theory (docs/theory.md section 7:
the log of a He-ReLU net's output norm ratio has variance ~ 5 * sum_l 1/n_l per input;
averaging over S seeds divides it by S), or from floating-point error bounds; none is
tuned until green.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
from scipy import stats

from varprop import _empirical_run as run
from varprop.activations import get_activation
from varprop.empirical import measure as _measure
from varprop.initializers import get as get_init
from varprop.network import Act, BatchNorm, Dense, LayerNorm, Network, Residual, mlp

RELU = get_activation("relu")


def measure(net, **kwargs):
    """One OpenMP thread unless a test asks: results are the same for any count (tested
    below) and on a busy 2-core runner each parallel region can cost milliseconds."""
    kwargs.setdefault("n_threads", 1)
    return _measure(net, **kwargs)
N_SIGMA = 4.0  # two-sided 4 sigma: ~6e-5 false-alarm rate per comparison


def log_tol(n_layers: int, width: int, seeds: int) -> float:
    """4 sigma of log(measured / mean-field) after n_layers layers of width `width`
    averaged over `seeds` seeds: Var[log] <= 5 * n_layers / width per draw."""
    return N_SIGMA * math.sqrt(5.0 * n_layers / width / seeds)


def assert_log_close(measured, expected, tols, what):
    measured, expected = np.asarray(measured), np.asarray(expected)
    err = np.abs(np.log(measured / expected))
    bad = np.nonzero(err > tols)[0]
    assert bad.size == 0, (f"{what}: layers {bad.tolist()} off: measured "
                           f"{measured[bad]}, expected {expected[bad]}, |log err| "
                           f"{err[bad]} > tol {np.asarray(tols)[bad]}")


# ----------------------------------------------------------------------------- theory
WIDTH, BATCH, DEPTH, SEEDS = 512, 1024, 6, 2


@pytest.fixture(scope="module")
def he_relu():
    return measure(mlp([WIDTH] * (DEPTH + 1), "relu", "he_normal"), batch=BATCH, seeds=SEEDS)


@pytest.fixture(scope="module")
def lecun_relu():
    return measure(mlp([WIDTH] * (DEPTH + 1), "relu", "lecun_normal"), batch=BATCH,
                   seeds=SEEDS)


def _forward_tols():
    return np.array([log_tol(i + 1, WIDTH, SEEDS) for i in range(DEPTH)])


def _backward_tols():
    return np.array([log_tol(DEPTH - i, WIDTH, SEEDS) for i in range(DEPTH)])


def test_he_relu_keeps_forward_variance(he_relu):
    # layer 1: n_in Var[W] E[x^2] = n * (2/n) * 1 = 2; then ReLU halves, He doubles.
    assert_log_close(he_relu.column("z_var"), np.full(DEPTH, 2.0), _forward_tols(), "He z_var")
    # a = relu(z): E[a^2] = q/2 = 1 at every layer
    a2 = he_relu.column("a_var") + he_relu.column("a_mean") ** 2
    assert_log_close(a2, np.ones(DEPTH), _forward_tols(), "He E[a^2]")
    # layer 1 is tr(W^T S W) / (B n_out) with S = X^T X / B: relative variance
    # 2 / (n_in n_out) from W's squares, 2 / (B n_in) from tr S, 2 / (B n_out) from the
    # off-diagonal of S: tight
    rel = math.sqrt(2 / (WIDTH * WIDTH) + 4 / (BATCH * WIDTH)) / math.sqrt(SEEDS)
    assert abs(he_relu[0].z_var - 2.0) <= N_SIGMA * 2.0 * rel


def test_lecun_relu_halves_forward_variance(lecun_relu):
    expected = 2.0 ** -np.arange(DEPTH)  # layer 1: n * (1/n) * 1; each ReLU halves
    assert_log_close(lecun_relu.column("z_var"), expected, _forward_tols(), "LeCun z_var")


def test_gradient_variance_he_constant_lecun_decays(he_relu, lecun_relu):
    # last layer: Var[G relu'(z)] = 1/2; one layer back: n_out Var[W] E[relu'^2] = n (2/n) / 2 = 1
    assert_log_close(he_relu.column("grad_var"), np.full(DEPTH, 0.5), _backward_tols(),
                     "He grad_var")
    # LeCun (= Xavier for square layers): backward gain n (1/n) / 2 = 1/2 per layer
    expected = 0.5 * 2.0 ** -(DEPTH - 1 - np.arange(DEPTH))
    assert_log_close(lecun_relu.column("grad_var"), expected, _backward_tols(), "LeCun grad_var")


def test_weight_gradient_per_sample_convention(he_relu):
    # per sample: E[a_{l-1}^2] Var[g_l] with the measured E[a^2] of the previous layer
    a2_prev = np.concatenate([[1.0], (he_relu.column("a_var") + he_relu.column("a_mean") ** 2)[:-1]])
    expected = a2_prev * he_relu.column("grad_var")
    # the product of two measured numbers of one draw: only the batch-sampling error
    # of a B-sample average of a^2 g^2 (kurtosis <= 9 for Gaussian-times-ReLU) remains
    tol = N_SIGMA * math.sqrt(9.0 / BATCH)
    assert_log_close(he_relu.column("weight_grad_var"), expected, np.full(DEPTH, tol), "dW")


def test_records_are_complete(he_relu):
    assert he_relu.kind == "empirical" and len(he_relu) == DEPTH
    r = he_relu[0]
    assert (r.index, r.n_in, r.n_out, r.symmetric) == (0, WIDTH, WIDTH, False)
    for name in ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var",
                 "z_mean_ci", "z_var_ci", "grad_var_ci", "channel_sq_mean", "channel_var"):
        assert np.all(np.isfinite(he_relu.column(name))), name
    assert np.all(np.isnan(he_relu.column("z_corr")))  # not asked for
    # z_var = channel_var + spread of the unit means (all per-unit statistics ddof 0)
    zv, cv, csq, zm = (he_relu.column(n) for n in ("z_var", "channel_var",
                                                   "channel_sq_mean", "z_mean"))
    assert np.all(cv <= zv * (1 + 1e-12)) and np.all(csq >= zm ** 2 * (1 - 1e-9))
    meta = he_relu.meta
    assert meta["batch"] == BATCH and meta["seeds"] == [0, 1] and meta["dtype"] == "float32"
    assert meta["n_threads"] >= 1 and meta["time_s"] > 0
    assert he_relu.to_json()


def test_linear_orthogonal_preserves_norms_exactly():
    width, depth, batch = 128, 4, 64
    net = mlp([width] * (depth + 1), "linear", "orthogonal", bias_init=None)
    x = np.random.default_rng(5).standard_normal((batch, width)) * 1.7 + 0.3
    p = measure(net, inputs=x, seeds=1, dtype=np.float64)
    second = p.column("z_var") + p.column("z_mean") ** 2
    # an orthogonal W keeps every row norm; float64 GEMM error per layer <= gamma_n per entry
    gamma = width * np.finfo(np.float64).eps
    np.testing.assert_allclose(second, np.mean(x * x), rtol=4 * depth * gamma)
    assert p.input_var == pytest.approx(np.var(x)) and p.input_mean == pytest.approx(np.mean(x))


def test_correlation_follows_relu_c_map():
    width, depth, seeds, c0 = 512, 5, 2, 0.5
    p = measure(mlp([width] * (depth + 1), "relu", "he_normal"), batch=512, seeds=seeds,
                input_correlation=c0, backward=False)
    # c-map of He-ReLU (arc-cosine kernel): c' = (sin t + (pi - t) cos t) / pi, t = arccos c
    cs = [c0]
    for _ in range(depth - 1):
        t = math.acos(cs[-1])
        cs.append((math.sin(t) + (math.pi - t) * math.cos(t)) / math.pi)
    cs = np.array(cs)
    # finite width: a correlation over n units has sd (1 - c^2) / sqrt(n) per layer
    tol = N_SIGMA * np.sqrt(np.cumsum((1 - cs ** 2) ** 2 / width) / seeds)
    measured = p.column("z_corr")
    assert np.all(np.abs(measured - cs) <= tol), (measured, cs, tol)
    assert abs(measured[-1] - c0) > tol[-1]  # not the linear answer
    assert np.all(np.isfinite(p.column("z_corr_ci")))


def test_correlation_extremes():
    net = mlp([64, 64, 64], "tanh", "glorot_normal")
    same = measure(net, batch=32, seeds=1, input_correlation=1.0, backward=False)
    np.testing.assert_allclose(same.column("z_corr"), 1.0, rtol=1e-6)
    opposite = measure(mlp([64, 64], "linear", "glorot_normal", bias_init=None), batch=32,
                       seeds=1, input_correlation=-1.0, backward=False)
    np.testing.assert_allclose(opposite.column("z_corr"), -1.0, rtol=1e-6)


# ----------------------------------------------------------------------------- residual / norms
def test_batchnorm_resets_whatever_the_init_scale():
    width, batch = 256, 256
    layers = []
    for std in (0.1, 30.0, 0.2, 400.0):
        layers += [Dense(width, width, get_init({"name": "random_normal", "stddev": std})),
                   BatchNorm(), Dense(width, width, get_init("identity"))]
    p = measure(Network(width, tuple(layers)), batch=batch, seeds=1)
    after = p.column("z_var")[1::2]  # the identity layers read the BN outputs
    # each unit exactly mean 0, variance v / (v + eps), v = n std^2 E[x^2] >= 2.56 here
    np.testing.assert_allclose(after, 1.0, atol=1e-5 / 2.56 + 1e-5)
    np.testing.assert_allclose(p.column("channel_var")[1::2], 1.0, atol=1e-5 / 2.56 + 1e-5)
    assert np.all(p.column("channel_sq_mean")[1::2] < 1e-10)
    assert np.all(np.isfinite(p.column("grad_var")))


def test_residual_unnormalized_doubles_normalized_grows_linearly():
    width, blocks, seeds, batch = 256, 5, 2, 256
    he = get_init("he_normal")
    # x + relu(x) W, He: Var[x_{l+1}] = Var[x_l] + 2 Var[x_l] / 2 -> 2^l (docs/theory.md s. 6)
    plain = Network(width, tuple(Residual((Act(RELU), Dense(width, width, he)))
                                 for _ in range(blocks)))
    p = measure(plain, batch=batch, seeds=seeds)
    expected = 2.0 ** np.arange(blocks)  # the branch's z_var is 2 * Var[x_l] / 2
    tols = np.array([log_tol(i + 1, width, seeds) for i in range(blocks)])
    assert_log_close(p.column("z_var"), expected, tols, "plain residual")
    # x + BN(x W): each branch adds 1, so Var[x_l] = 1 + l and z_var = 2 (1 + l)
    normed = Network(width, tuple(Residual((Dense(width, width, he), BatchNorm()))
                                  for _ in range(blocks)))
    q = measure(normed, batch=batch, seeds=seeds)
    assert_log_close(q.column("z_var"), 2.0 * (1 + np.arange(blocks)), tols, "BN residual")


# ----------------------------------------------------------------------------- gradients
def _toy_ops():
    w = 6
    inits = [get_init("he_normal"), get_init("glorot_uniform")]
    layers = (
        Dense(5, w, inits[0], get_init("random_normal")), Act(get_activation("tanh")),
        Residual((LayerNorm(), Dense(w, w, inits[1]), Act(RELU), Dense(w, w, inits[0])), 0.7),
        BatchNorm(), Act(get_activation("gelu")),
        Residual((Dense(w, w, inits[1], get_init("random_normal")),), 1.3),
        Dense(w, 3, inits[0]),
    )
    return Network(5, layers)


def test_backward_matches_finite_differences():
    net = _toy_ops()
    ops = net.steps
    seed_run = run.SeedRun(ops, net.depth, 11, np.float64, 1)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((4, 5))
    g_out = rng.standard_normal((4, 3))

    def loss(x):
        for op in ops:
            x, _, _ = seed_run.forward(op, x, None, keep=False, record=False)
        return float(np.sum(g_out * x))

    h, caches = x0, []
    for op in ops:
        h, _, c = seed_run.forward(op, h, None, keep=True, record=False)
        caches.append(c)
    grad = g_out
    for op, c in zip(reversed(ops), reversed(caches)):
        grad = seed_run.backward(op, c, grad)
    num = np.zeros_like(x0)
    step = 1e-6
    for idx in np.ndindex(*x0.shape):
        xp, xm = x0.copy(), x0.copy()
        xp[idx] += step
        xm[idx] -= step
        num[idx] = (loss(xp) - loss(xm)) / (2 * step)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_one_layer_against_numpy_with_documented_streams():
    n_in, n_out, batch = 16, 8, 50
    net = mlp([n_in, n_out], "linear", "he_normal", bias_init=None)
    p = measure(net, batch=batch, seeds=[3], dtype=np.float64)
    x = np.random.default_rng(np.random.SeedSequence(3).spawn(1)[0]).standard_normal((batch, n_in))
    w = get_init("he_normal")((n_in, n_out), seed=np.random.SeedSequence(3).spawn(4)[3]
                              .spawn(1)[0].spawn(1)[0], dtype=np.float64)
    g = np.random.default_rng(np.random.SeedSequence(3).spawn(3)[2]).standard_normal((batch, n_out))
    z = x @ w
    r = p[0]
    assert r.z_var == pytest.approx(np.var(z), rel=1e-12)
    assert r.z_mean == pytest.approx(np.mean(z), rel=1e-9, abs=1e-12)
    assert r.channel_sq_mean == pytest.approx(np.mean(z.mean(0) ** 2), rel=1e-9)
    assert r.channel_var == pytest.approx(np.mean(z.var(0)), rel=1e-12)
    assert r.grad_var == pytest.approx(np.var(g), rel=1e-12)
    assert r.weight_grad_var == pytest.approx(np.var(x.T @ g) / batch, rel=1e-12)


def test_ci_is_t_half_width_over_seeds():
    net = mlp([32, 32, 32], "tanh", "glorot_normal")
    both = measure(net, batch=64, seeds=[4, 9])
    singles = [measure(net, batch=64, seeds=[s]) for s in (4, 9)]
    for name in ("z_var", "grad_var", "a_mean"):
        vals = np.stack([s.column(name) for s in singles])
        np.testing.assert_allclose(both.column(name), vals.mean(0), rtol=1e-12)
        half = stats.t.ppf(0.975, 1) * vals.std(0, ddof=1) / math.sqrt(2)
        np.testing.assert_allclose(both.column(name + "_ci"), half, rtol=1e-9)
        assert np.all(np.isnan(singles[0].column(name + "_ci")))


# ----------------------------------------------------------------------------- determinism
def _records(p):
    return [dataclasses.asdict(r) for r in p.records]  # LayerRecord has slots: no vars()


def _same(p, q):
    a, b = _records(p), _records(q)
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for k in ra:
            va, vb = ra[k], rb[k]
            assert va == vb or (isinstance(va, float) and math.isnan(va) and math.isnan(vb)), k


def test_deterministic_and_thread_independent():
    net = mlp([96, 80, 80, 40], ["relu", "tanh", "selu"], "he_uniform", bias_init="random_normal")
    kw = dict(batch=300, seeds=2, input_correlation=0.3)
    one = measure(net, n_threads=1, **kw)
    _same(one, measure(net, n_threads=1, **kw))
    _same(one, measure(net, n_threads=2, **kw))
    _same(one, measure(net, n_threads=3, **kw))
    other = measure(net, n_threads=1, batch=300, seeds=[5, 6], input_correlation=0.3)
    assert other[0].z_var != one[0].z_var


def test_seeds_side_by_side_give_the_serial_bits():
    # 2+ threads and 2+ seeds: seeds run side by side on one kernel thread each; the
    # orthogonal draws' QR must not see a different BLAS thread count either
    net = mlp([300] * 4, ["relu", "tanh", "gelu"], "orthogonal", bias_init="random_normal")
    kw = dict(batch=64, seeds=3)
    serial = measure(net, n_threads=1, **kw)
    side = measure(net, n_threads=2, **kw)
    assert serial.meta["seeds_side_by_side"] == 1 and side.meta["seeds_side_by_side"] == 2
    _same(serial, side)
    assert measure(net, n_threads=2, batch=64, seeds=1).meta["seeds_side_by_side"] == 1


@pytest.mark.parametrize("make", ["mlp", "mixed"])
def test_checkpointing_is_bitwise_identical(make):
    if make == "mlp":
        net = mlp([48] * 51, "tanh", "glorot_normal", bias_init="random_normal")
    else:
        w = 32
        block = Residual((LayerNorm(), Dense(w, w, get_init("he_normal")), Act(RELU),
                          Dense(w, w, get_init("he_normal"))), 0.5)
        net = Network(w, (Dense(w, w, get_init("lecun_normal")), BatchNorm(), Act(RELU))
                      + (block,) * 12 + (Dense(w, 8, get_init("glorot_normal")),))
    full = measure(net, batch=40, seeds=1, checkpoint_every=10 ** 6)
    for k in (1, 3, 7, None):
        _same(full, measure(net, batch=40, seeds=1, checkpoint_every=k))
    fwd = measure(net, batch=40, seeds=1, backward=False)
    np.testing.assert_array_equal(fwd.column("z_var"), full.column("z_var"))
    assert np.all(np.isnan(fwd.column("grad_var")))


def test_odd_networks():
    empty = measure(Network(4, ()), batch=8, seeds=2)
    assert len(empty) == 0
    odd = Network(6, (Act(get_activation("tanh")), LayerNorm(),
                      Dense(6, 5, get_init("lecun_normal"), None), BatchNorm()))
    p = measure(odd, batch=16, seeds=2, input_correlation=0.2)
    assert len(p) == 1 and np.isfinite(p[0].grad_var) and np.isfinite(p[0].z_corr)
    assert p[0].a_var == p[0].z_var  # no activation follows: a = z


# ----------------------------------------------------------------------------- misc
def test_progress_callback_and_symmetric_flag():
    calls = []
    net = mlp([16, 16, 16, 16], "relu", ["he_normal", "zeros", "he_normal"])
    p = measure(net, batch=8, seeds=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 12) for i in range(1, 13)]
    assert p.column("symmetric").tolist() == [False, True, False] and p.symmetric
    calls.clear()
    measure(net, batch=8, seeds=1, backward=False, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)
    measure(net, batch=8, seeds=1, progress=True)  # stderr is not a tty under pytest: silent


def test_progress_line_on_a_terminal(monkeypatch):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    measure(mlp([8, 8, 8], "relu"), batch=4, seeds=1, progress=True)
    text = err.getvalue()
    assert "4/4 layer steps" in text and text.endswith("\n")


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(batch=0), ValueError, "batch"),
    (dict(batch=1), ValueError, "batch"),
    (dict(inputs=np.zeros((1, 8))), ValueError, "batch"),
    (dict(inputs=np.zeros((1, 8)), batch=1), ValueError, "batch"),
    (dict(inputs=np.full((4, 8), np.nan)), ValueError, "inputs must be finite"),
    (dict(inputs=np.full((4, 8), np.inf, dtype=np.float32)), ValueError, "inputs must be finite"),
    (dict(batch=2.5), TypeError, "batch"),
    (dict(seeds=0), ValueError, "seeds"),
    (dict(seeds=[]), ValueError, "seeds"),
    (dict(seeds=[1, 1]), ValueError, "seeds"),
    (dict(seeds=[-1]), ValueError, "seeds"),
    (dict(seeds=1.5), TypeError, "seeds"),
    (dict(inputs=np.zeros((4, 7))), ValueError, "inputs"),
    (dict(inputs=np.zeros(8)), ValueError, "inputs"),
    (dict(inputs=[[0.0] * 8]), TypeError, "inputs"),
    (dict(inputs=np.zeros((4, 8)), batch=5), ValueError, "batch"),
    (dict(input_var=0.0), ValueError, "input_var"),
    (dict(input_var=-1.0), ValueError, "input_var"),
    (dict(input_mean=float("nan")), ValueError, "input_mean"),
    (dict(input_correlation=1.5), ValueError, "input_correlation"),
    (dict(input_correlation="0.5"), TypeError, "input_correlation"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype="nonsense"), TypeError, "dtype"),
    (dict(n_threads=0), ValueError, "n_threads"),
    (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
    (dict(progress="yes"), TypeError, "progress"),
    (dict(backward="no"), TypeError, "backward"),
])
def test_bad_arguments(kwargs, exc, word):
    net = mlp([8, 8], "relu", "he_normal")
    with pytest.raises(exc, match=word):
        _measure(net, **kwargs)


def test_bad_network_and_batchnorm_batch():
    with pytest.raises(TypeError, match="net"):
        _measure([8, 8])
    bn = Network(4, (Dense(4, 4, get_init("he_normal")), BatchNorm()))
    with pytest.raises(ValueError, match="batch"):
        measure(bn, batch=1)
    # every field is a variance estimate over the batch: one sample is an error too
    with pytest.raises(ValueError, match="batch must be >= 2"):
        measure(mlp([8, 8], "relu"), batch=1, seeds=1)
    assert len(measure(mlp([8, 8], "relu"), batch=2, seeds=1)) == 1
    # bad layer specs never reach measure: the layers reject them at construction
    with pytest.raises(ValueError, match="Residual: alpha must be finite"):
        Residual((Dense(4, 4, get_init("he_normal")),), math.nan)
    with pytest.raises(ValueError, match="LayerNorm: eps must be >= 0"):
        LayerNorm(eps=-1e-5)


def test_float64_and_given_inputs():
    net = mlp([20, 30, 10], "silu", "lecun_uniform")
    x = np.random.default_rng(1).standard_normal((40, 20)).astype(np.float32)
    p = measure(net, inputs=x, seeds=2, dtype=np.float64)
    assert p.meta["batch"] == 40 and p.meta["dtype"] == "float64" and p.meta["inputs"] == "given"
    assert np.all(np.isfinite(p.column("grad_var")))
    assert p.input_var == pytest.approx(float(np.var(x.astype(np.float64))))


def test_correlation_with_a_constant_bias_is_the_measurements_uncentred_one():
    """z_corr is E[z1 z2] / E[z^2] in both halves (uncentred, as the measurement pools
    it): with a constant bias the centred correlation differs (0.5 against 0.6 at the
    first layer here), which the analyzer reported before. The measured 95 % half-widths
    (4 seeds) are widened to a false-alarm rate of 1e-4 per layer."""
    from varprop import analyze
    net = mlp([256] * 4, "tanh", "glorot_normal",
              bias_init={"name": "constant", "value": 0.5})
    theory = analyze(net, input_correlation=0.5).column("z_corr")
    # first layer in closed form: (c v + b^2) / (v + b^2) with v = 256 * 2 / 512 = 1
    assert theory[0] == pytest.approx((0.5 + 0.25) / 1.25, rel=1e-12)
    m = measure(net, batch=512, seeds=4, input_correlation=0.5, backward=False)
    widen = stats.t.ppf(1 - 0.5e-4, 3) / stats.t.ppf(0.975, 3)
    measured, ci = m.column("z_corr"), m.column("z_corr_ci")
    assert np.all(np.abs(measured - theory) <= widen * ci), (measured, theory, ci)
