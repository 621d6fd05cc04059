"""The seed experiments' qualitative claims, asserted."""

import math
import sys

import numpy as np
import pytest

from varprop import experiments as ex
from varprop.activations import get_activation


@pytest.fixture(scope="module")
def iris_default():
    return ex.run_iris()


def test_iris_default_zero_init_at_chance_others_learn(iris_default):
    r = iris_default
    assert r.mean_accuracy("zeros") < 0.4
    np.testing.assert_allclose(r.test_accuracy["zeros"], 1 / 3)
    assert r.mean_accuracy("he_normal") > 0.85
    for label in ("random_normal(0.1)", "glorot_uniform"):
        assert r.mean_accuracy(label) > 0.85
    # with zeros only the output bias learns: the hidden weight gradients are exactly 0
    assert np.all(r.grad_w_var["zeros"] == 0)
    assert r.loss_curves["he_normal"].shape == (5, 50)


def test_iris_default_is_fast_and_renders(iris_default, tmp_path):
    # the budget is 30 s; allow slack for a loaded CI machine
    assert iris_default.elapsed < 60
    table = iris_default.table()
    for label in iris_default.labels:
        assert label in table
    assert "50 epochs" in table
    pytest.importorskip("matplotlib")
    out = iris_default.plot(tmp_path / "iris.png")
    assert out.stat().st_size > 1000


def test_symmetry_exact_for_zero_and_constant_init():
    r = ex.run_symmetry(epochs=20)
    assert np.all(r.spread("zeros") == 0.0)
    assert np.all(r.spread("zeros", "float32") == 0.0)
    assert np.all(r.spread("constant(0.1)") == 0.0)
    const = next(row for row in r.rows if row["label"] == "constant(0.1)" and row["dtype"] == "float64")
    assert const["distinct"] == [1, 1]
    assert np.all(const["grad_w_var"] > 0)  # gradients flow, but identically per unit
    zeros = next(row for row in r.rows if row["label"] == "zeros" and row["dtype"] == "float64")
    assert np.all(zeros["grad_w_var"][:-1] == 0) and zeros["grad_w_var"][-1] == 0
    for label in ("random_normal(0.1)", "he_normal"):
        assert np.all(r.spread(label) > 0.1)
    # float32 may split tied columns only at rounding level
    assert np.all(r.spread("constant(0.1)", "float32") < 1e-4)
    assert "1 of 32 / 1 of 16" in r.table()


def test_deep_relu_he_trains_xavier_stalls_and_matches_theory():
    r = ex.run_deep_relu(seeds=(0,), epochs=4)
    he, xavier = r.labels
    assert r.loss_drop(he) > 0.15
    assert abs(r.loss_drop(xavier)) < 0.02
    mz_he, mz_x = r.measured_grad_z_var[he][0], r.measured_grad_z_var[xavier][0]
    # Xavier halves Var[dL/dz] per ReLU layer: 2^-28 from the last hidden layer to the first
    assert mz_x[0] / mz_x[-2] < 1e-6
    # He keeps it within the finite-width band of constant
    lower, upper = r.log_band
    assert lower[0] < math.log(mz_he[0] / mz_he[-2]) < upper[0]
    assert r.within_band(he) and r.within_band(xavier)
    pred = r.predicted_grad_z_var[xavier][0]
    assert pred[0] / pred[-2] == pytest.approx(0.5 ** 28)
    assert "analytic" in r.table()


def test_digits_reduced_run():
    r = ex.run_digits(initializers=("zeros", "he_normal"), epochs=4)
    assert r.mean_accuracy("zeros") < 0.15
    assert r.mean_accuracy("he_normal") > 0.85
    assert r.ranking()[0] == "he_normal"
    assert r.loss_curves["he_normal"].shape == (1, 4)
    assert "digits 64-128-64-10" in r.table()


def test_digits_defaults_name_twelve_keras_initializers():
    from varprop.initializers import get

    assert len(ex.DIGITS_INITIALIZERS) == 12
    for name in ex.DIGITS_INITIALIZERS:
        get(name)((64, 128), seed=0)


def test_backward_variance_relu_by_hand():
    # ReLU, E[relu'^2] = 1/2: square He layers (Var[W] = 2/n) keep Var[dL/dz] constant,
    # square Xavier layers (1/n) halve it per layer, k layers down: 2^-k
    n, depth = 32, 12
    widths = [n] * depth + [5]
    he = ex.backward_variance(widths, 2 / n, "relu", output_grad_var=3.0)
    assert he[-1] == 3.0
    assert he[-2] == pytest.approx(5 * (2 / n) * 0.5 * 3.0, rel=1e-15)  # fan-out 5 on top
    np.testing.assert_allclose(he[:-1], he[-2], rtol=1e-15)
    xavier = ex.backward_variance(widths, 1 / n, "relu")
    k = np.arange(depth - 2, -1, -1)  # layers between each hidden layer and the last one
    np.testing.assert_allclose(xavier[:-1] / xavier[-2], 0.5 ** k, rtol=1e-15)
    np.testing.assert_allclose(ex.backward_variance([4, 4, 4], 0.5, "linear"), [2.0, 1.0])
    leaky = ex.backward_variance([4, 4, 4], 0.25, get_activation("leaky_relu", negative_slope=0.5))
    assert leaky[0] == pytest.approx(4 * 0.25 * (1 + 0.5**2) / 2, rel=1e-15)


def test_backward_variance_glorot_tanh_against_quadrature():
    # the mean-field recursions for tanh, forward q and backward, with every Gaussian
    # expectation by adaptive quadrature (scipy), independent of varprop.theory
    from scipy import integrate

    def gauss(f, q):
        pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return integrate.quad(lambda z: f(math.sqrt(q) * z) * pdf(z), -40, 40,
                              epsabs=0, epsrel=1e-13, limit=200, points=[0.0])[0]

    widths, input_var = [8, 16, 24, 16, 4], 1.5
    v = [2 / (widths[l] + widths[l + 1]) for l in range(4)]  # Glorot
    q = [widths[0] * v[0] * input_var]
    for l in range(1, 4):
        q.append(widths[l] * v[l] * gauss(lambda x: math.tanh(x) ** 2, q[-1]))
    dphi2 = [gauss(lambda x: (1 - math.tanh(x) ** 2) ** 2, ql) for ql in q]
    ref = [2.0]
    for l in range(3, 0, -1):
        ref.insert(0, widths[l + 1] * v[l] * dphi2[l - 1] * ref[0])
    got = ex.backward_variance(widths, v, "tanh", output_grad_var=2.0, input_var=input_var)
    np.testing.assert_allclose(got, ref, rtol=1e-11)


def test_finite_width_band_shape():
    lower, upper = ex.finite_width_log_band([64] + [64] * 29 + [10], 64)
    assert lower[-1] == upper[-1] == 0
    assert np.all(np.diff(upper[:-1]) < 0) and np.all(lower < 0.0 + 1e-12)
    wide_lower, wide_upper = ex.finite_width_log_band([64] + [1024] * 29 + [10], 64)
    assert wide_upper[0] < upper[0] / 3


def test_run_experiment_and_errors(monkeypatch):
    assert set(ex.EXPERIMENTS) == {"iris", "digits", "deep-relu", "symmetry", "cnn", "rnn"}
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.run_experiment("mnist")
    with pytest.raises(ValueError, match="seeds"):
        ex.run_experiment("iris", seeds=())
    with pytest.raises(ValueError, match="initializers"):
        ex.run_iris(initializers=["bogus"])
    with pytest.raises(ValueError, match="widths"):
        ex.run_digits(widths=(10, 10))
    with pytest.raises(TypeError, match="progress"):
        ex.run_symmetry(progress="loud")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        ex.require_pyplot()


def test_progress_callable_receives_lines():
    lines = []
    r = ex.run_experiment("symmetry", epochs=1, dtypes=("float64",),
                          initializers=["zeros"], progress=lines.append)
    assert len(lines) == 1 and "zeros" in lines[0]
    assert len(r.rows) == 1
