"""The recurrent trainer (varprop.recurrent.train) and the rnn experiment: gradients
against finite differences, zero-init symmetry, the adding-problem data, a quick run
of the experiment and of its command line."""

import math
import subprocess
import sys

import numpy as np
import pytest

from varprop.experiments.rnn import (ADDING_BASELINE, adding_problem, below_threshold,
                                     run_rnn)
from varprop.recurrent import SimpleRNN, rnn_preset
from varprop.recurrent.measure import draw_parameters
from varprop.recurrent.train import (RNNClassifier, evaluate_rnn, fit_rnn,
                                     loss_and_gradients)

from _env import subprocess_env


def _loss_at(model, x, y, loss):
    return loss_and_gradients(model, x, y, loss).loss


def _finite_differences(model, x, y, loss, eps=1e-6):
    """Central differences of the loss with respect to every parameter entry."""
    out = []
    for p in model.params:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + eps
            up = _loss_at(model, x, y, loss)
            p[i] = keep - eps
            down = _loss_at(model, x, y, loss)
            p[i] = keep
            g[i] = (up - down) / (2 * eps)
        out.append(g)
    return out


@pytest.mark.parametrize("loss, activation, outputs", [("cross_entropy", "tanh", 3),
                                                       ("mse", "relu", 1)])
def test_gradients_match_finite_differences(loss, activation, outputs):
    rnn = SimpleRNN(3, 5, activation, kernel_init={"name": "random_normal", "stddev": 0.7},
                    recurrent_init="orthogonal",
                    bias_init={"name": "random_normal", "stddev": 0.3})
    model = RNNClassifier.init(rnn, outputs, seed=3, dtype=np.float64)
    model.b_o[:] = np.linspace(-0.2, 0.2, outputs)  # a non-zero readout bias too
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 3))
    y = rng.integers(0, outputs, 4) if loss == "cross_entropy" else \
        rng.standard_normal((4, 1))
    got = loss_and_gradients(model, x, y, loss).grads
    want = _finite_differences(model, x, y, loss)
    assert len(got) == len(want) == 5  # w_x, w_h, b, w_o, b_o
    for name, g, w in zip(model.names, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9, err_msg=name)


def test_last_state_gradient_and_clipping():
    rnn = SimpleRNN(2, 4, "tanh", bias_init=None)
    model = RNNClassifier.init(rnn, 1, seed=1, dtype=np.float64)
    assert model.names == ["w_x", "w_h", "w_o", "b_o"]  # no recurrent bias
    x = np.random.default_rng(2).standard_normal((5, 3, 2))
    y = np.array([[0.5], [1.0], [2.0]])
    step = loss_and_gradients(model, x, y, "mse")
    fwd, out = model.forward(x)
    d_out = 2 * (out - y) / 3
    # dL/dz_{T-1} = (dL/dlogits W_o^T) * phi'(z_{T-1})
    want = (d_out @ model.w_o.T) * (1 - np.tanh(fwd.z[-1]) ** 2)
    np.testing.assert_allclose(step.grad_z[-1], want, rtol=1e-12)
    from varprop.recurrent.train import _clip
    grads = [g.copy() for g in step.grads]
    norm, clipped = _clip(grads, 1e-3)
    assert clipped and norm == pytest.approx(math.sqrt(sum(float((g * g).sum())
                                                           for g in step.grads)))
    assert math.sqrt(sum(float((g * g).sum()) for g in grads)) == pytest.approx(1e-3)
    assert _clip(grads, 10.0) == (pytest.approx(1e-3), False)


def test_step_zero_is_the_measured_network():
    rnn = rnn_preset("xavier")
    model = RNNClassifier.init(rnn, 2, seed=4)
    for got, want in zip((model.w_x, model.w_h, model.b), draw_parameters(rnn, 4)):
        np.testing.assert_array_equal(got, want)
    assert model.w_o.shape == (128, 2) and model.w_o.dtype == np.float32
    bound = math.sqrt(6 / (128 + 2))  # glorot_uniform readout
    assert 0.9 * bound < np.abs(model.w_o).max() <= bound


def _tokens(n, steps, vocab, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (steps, n))
    return np.eye(vocab, dtype=np.float32)[tokens], tokens


def test_zero_init_stays_symmetric():
    rnn = rnn_preset("zeros")
    x, _ = _tokens(64, 8, 10, 0)
    y = np.random.default_rng(1).integers(0, 2, 64)  # random labels
    # every weight zero: the state stays 0 for ever and only the readout bias learns
    model = RNNClassifier.init(rnn, 2, seed=0, readout_init="zeros")
    hist = fit_rnn(model, x, y, epochs=3, batch_size=16, learning_rate=1e-2, seed=0)
    for name in ("w_x", "w_h", "b", "w_o"):
        assert np.all(getattr(model, name) == 0), name
    assert np.any(model.b_o != 0)
    assert np.all(hist.initial_grad_var == 0)
    # a random readout: at step 0 the gradient reaches the last step only, W_h gets none
    model = RNNClassifier.init(rnn, 2, seed=0)
    step = loss_and_gradients(model, x[:, :16], y[:16], "cross_entropy")
    assert np.all(step.grad_z[:-1] == 0) and np.any(step.grad_z[-1] != 0)
    assert np.all(step.grads[1] == 0)


def test_trainer_learns_a_learnable_task_and_is_deterministic():
    # the label is the last token's parity: learnable from the last state
    x, tokens = _tokens(256, 6, 4, 5)
    y = tokens[-1] % 2
    rnn = SimpleRNN(4, 16, "tanh")
    runs = []
    for threads in (1, 2):
        model = RNNClassifier.init(rnn, 2, seed=0)
        hist = fit_rnn(model, x, y, epochs=6, batch_size=32, learning_rate=1e-2,
                       clipnorm=5.0, validation_data=(x, y), eval_every=8, seed=0,
                       n_threads=threads)
        runs.append((model, hist))
    (m1, h1), (m2, h2) = runs
    assert h1.val_accuracy[-1] > 0.95
    assert h1.val_loss[-1] < 0.5 * h1.val_loss[0]
    assert list(h1.step) == [0, 8, 16, 24, 32, 40, 48]
    np.testing.assert_array_equal(h1.loss, h2.loss)
    for a, b in zip(m1.params, m2.params):
        np.testing.assert_array_equal(a, b)
    loss, acc = evaluate_rnn(m1, x, y)
    assert loss == pytest.approx(h1.val_loss[-1]) and acc == h1.val_accuracy[-1]


def test_nonfinite_loss_stops_training():
    x, tokens = _tokens(32, 4, 3, 0)
    x[0, 0, 0] = np.nan
    model = RNNClassifier.init(SimpleRNN(3, 4), 1, seed=0)
    hist = fit_rnn(model, x, tokens[-1].astype(float), loss="mse", epochs=2, batch_size=32)
    assert hist.diverged_at == 0 and np.all(np.isnan(hist.loss[1:]))


def test_trainer_errors_name_the_argument():
    model = RNNClassifier.init(SimpleRNN(3, 4), 2, seed=0)
    x = np.zeros((5, 8, 3), np.float32)
    y = np.zeros(8, int)
    cases = [
        (dict(x=np.zeros((5, 8)), y=y), ValueError, "x must be 3-D"),
        (dict(x=np.zeros((5, 8, 2)), y=y), ValueError, "features"),
        (dict(x=x, y=y.astype(float)), TypeError, "integer class labels"),
        (dict(x=x, y=np.zeros(7, int)), ValueError, "same number of samples"),
        (dict(x=x, y=y, loss="hinge"), ValueError, "loss"),
        (dict(x=x, y=y, clipnorm=-1.0), ValueError, "clipnorm"),
        (dict(x=x, y=y, epochs=0), ValueError, "epochs"),
        (dict(x=x, y=y, batch_size=2.5), TypeError, "batch_size"),
        (dict(x=x, y=y, loss="mse"), ValueError, "one output"),
        (dict(x=x, y=y, validation_data=x), TypeError, "validation_data"),
    ]
    for kwargs, error, text in cases:
        with pytest.raises(error, match=text):
            fit_rnn(model, **kwargs)
    with pytest.raises(TypeError, match="model"):
        fit_rnn("net", x, y)
    with pytest.raises(TypeError, match="rnn"):
        RNNClassifier.init("rnn", 2)
    with pytest.raises(ValueError, match="readout_init"):
        RNNClassifier.init(SimpleRNN(3, 4), 2, readout_init="bogus")
    with pytest.raises(TypeError, match="regression targets"):
        RNNClassifier.init(SimpleRNN(3, 4), 1).check_targets(["a"] * 8, "mse", 8)


def test_adding_problem_data():
    n, steps = 20_000, 21
    x, y = adding_problem(n, steps, seed=7)
    assert x.shape == (steps, n, 2) and y.shape == (n,) and x.dtype == np.float32
    values, marks = x[..., 0], x[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert np.all(np.isin(marks, (0.0, 1.0)))
    half = steps // 2
    assert np.all(marks[:half].sum(axis=0) == 1) and np.all(marks[half:].sum(axis=0) == 1)
    np.testing.assert_allclose(y, (values * marks).sum(axis=0), rtol=1e-6)
    # predicting 1: MSE = Var(u1 + u2) = 1/6; (y - 1)^2 has variance 7/180, so the sample
    # mean lies within 4 standard errors of 1/6 but once in 15,000 draws
    mse = float(np.mean((1.0 - y.astype(np.float64)) ** 2))
    assert abs(mse - ADDING_BASELINE) < 4 * math.sqrt(7 / 180 / n)
    np.testing.assert_array_equal(adding_problem(50, 10, seed=7)[0],
                                  adding_problem(50, 10, seed=7)[0])
    assert below_threshold(2000) == pytest.approx(1 / 6 - 3 * math.sqrt(7 / 180 / 2000))
    with pytest.raises(ValueError, match="steps"):
        adding_problem(5, 1)


@pytest.fixture(scope="module")
def quick():
    return run_rnn(quick=True, seeds=(0,))


def test_quick_run_table_and_figure(quick, tmp_path):
    r = quick
    T = r.settings["steps"]
    assert r.labels == ["zeros", "random", "xavier", "he"]
    # zeros: the gradient never leaves the last step, in theory, measured and in training
    for part in (r.theory, r.measured, r.training):
        assert part["zeros"][0] == 0 and part["zeros"][-1] > 0
    # N(0, 0.01^2) weights: 128 x 1e-4 x E[tanh'^2] ~ 0.0128 per step, theory and measured
    for part in (r.theory, r.measured):
        factor = (part["random"][0] / part["random"][-1]) ** (1 / (T - 1))
        assert 0.011 < factor < 0.015
    assert r.record_steps[0] == 0 and r.test_curves["orthogonal tanh"].shape == \
        (1, r.record_steps.size)
    table = r.table()
    for text in ("RANDOM labels", "theory ratio", "measured ratio", "adding problem",
                 "1/6 = 0.1667", "irnn (relu, identity)", "glorot_uniform tanh",
                 "vanishes", "symmetric"):
        assert text in table, text
    pytest.importorskip("matplotlib")
    fig = r.figure()
    assert len(fig.axes) == 3
    out = r.plot(tmp_path / "rnn.png")
    assert out.stat().st_size > 1000


def test_run_rnn_errors():
    with pytest.raises(ValueError, match="inits"):
        run_rnn(quick=True, inits=("bogus",))
    with pytest.raises(ValueError, match="steps"):
        run_rnn(quick=True, steps=1)
    with pytest.raises(ValueError, match="adding_inits"):
        run_rnn(quick=True, adding_inits={"x": {"recurrent_init": "bogus"}})
    with pytest.raises(TypeError, match="quick"):
        run_rnn(quick="yes")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "varprop", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=subprocess_env())


def test_cli_experiment_rnn_quick(tmp_path):
    r = _cli("experiment", "rnn", "--quick", "--seeds", "1", "--steps", "10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(a) gradient through time" in r.stdout and "T = 10" in r.stdout
    assert "(b) adding problem" in r.stdout and "seeds [0]" in r.stdout
    for bad, text in ((["iris", "--quick"], "rnn experiment only"),
                      (["rnn", "--steps", "1"], "--steps"),
                      (["rnn", "--seeds", "0"], "--seeds")):
        r = _cli("experiment", *bad, cwd=tmp_path)
        assert r.returncode == 2 and text in r.stderr, (bad, r.stderr)
