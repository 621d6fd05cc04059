"""Measuring recurrent networks (issue 15): measure_rnn against a plain-numpy run,
determinism across threads, the comparison's verdicts through time, the Jacobian's
singular-value spread, and ``varprop report --arch rnn``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from varprop.recurrent import SimpleRNN, analyze_rnn, rnn_preset
from varprop.recurrent.compare import compare_rnn
from varprop.recurrent.isometry import measure_jacobian_spread, predict_jacobian_spread
from varprop.recurrent.measure import draw_inputs, draw_parameters, measure_rnn

pytest.importorskip("varprop._rnn")


def test_measure_rnn_is_the_plain_numpy_run_of_its_draws():
    rnn = SimpleRNN(6, 16, "tanh", bias_init={"name": "random_normal", "stddev": 0.3})
    prof = measure_rnn(rnn, 5, batch=8, seeds=[3], dtype=np.float64)
    from varprop._empirical_run import stream
    w_x, w_h, b = draw_parameters(rnn, 3, np.float64)
    x = draw_inputs(rnn, 5, 8, "gaussian", 1.0, stream(3, 1), np.float64)
    h = np.zeros((8, 16))
    zs = []
    for t in range(5):
        z = x[t] @ w_x + h @ w_h + b
        h = np.tanh(z)
        zs.append(z)
        assert prof[t].z_var == pytest.approx(z.var(), rel=1e-12)
        assert prof[t].a_mean == pytest.approx(h.mean(), rel=1e-12, abs=1e-15)
    g = np.random.default_rng(stream(3, 2)).standard_normal((8, 16))
    for t in range(4, -1, -1):
        gz = g * (1 - np.tanh(zs[t]) ** 2)
        assert prof[t].grad_var == pytest.approx(np.mean(gz ** 2), rel=1e-12)
        g = gz @ w_h.T


def test_measure_rnn_bitwise_the_same_for_any_thread_count():
    rnn = rnn_preset("he", units=40)
    a = measure_rnn(rnn, 12, batch=33, seeds=2, inputs="one_hot", n_threads=1)
    b = measure_rnn(rnn, 12, batch=33, seeds=2, inputs="one_hot", n_threads=2)
    for name in ("z_var", "a_var", "grad_var"):
        assert np.array_equal(a.column(name), b.column(name))


def test_measure_rnn_progress_and_errors():
    calls = []
    measure_rnn(rnn_preset("xavier", units=8), 3, batch=4, seeds=2,
                progress=lambda k, n: calls.append((k, n)))
    assert calls == [(1, 2), (2, 2)]
    rnn = rnn_preset("xavier", units=8)
    for kwargs, error, match in [({"batch": 1}, ValueError, "batch"),
                                 ({"seeds": 0}, ValueError, "seeds"),
                                 ({"dtype": np.int32}, TypeError, "dtype"),
                                 ({"progress": 3}, TypeError, "progress"),
                                 ({"input_var": 0.0}, ValueError, "input_var")]:
        with pytest.raises(error, match=match):
            measure_rnn(rnn, 3, **kwargs)


def test_compare_speaks_per_step_and_agrees_for_the_mean_field():
    cmp = compare_rnn(SimpleRNN(64, 256, "tanh", recurrent_init="orthogonal",
                                kernel_init="glorot_normal"), 20, batch=64, seeds=5)
    assert not cmp.disagrees, cmp.agreement.summary()
    assert "per step" in cmp.analytic_verdict.message
    assert cmp.analytic_verdict.kind == "vanishes"
    assert "step" in cmp.table().splitlines()[1]


def test_compare_notices_a_wrong_rule():
    """The comparison can fail: a theory for twice the recurrent variance disagrees."""
    rnn = SimpleRNN(64, 256, "tanh", recurrent_init="orthogonal", kernel_init="glorot_normal")
    wrong = analyze_rnn(rnn.with_inits(recurrent_init={"name": "orthogonal", "gain": 1.3}), 20)
    empirical = measure_rnn(rnn, 20, batch=64, seeds=5)
    from varprop.compare import compare
    assert compare(rnn, analytic=wrong, empirical=empirical).disagrees


def test_linear_orthogonal_recurrence_is_exactly_isometric():
    rnn = SimpleRNN(8, 64, "linear", recurrent_init="orthogonal")
    m = measure_jacobian_spread(rnn, 6, samples=1, seeds=1)
    assert np.allclose(m.mean, 1.0, atol=1e-12) and np.all(np.abs(m.variance) < 1e-12)
    assert np.all(predict_jacobian_spread(rnn, 6).variance == 0.0)


def test_gaussian_recurrence_spreads_as_free_probability_predicts():
    """Linear Gaussian: the product of t + 1 Ginibre factors has normalized variance
    t + 1; tanh with an orthogonal kernel: the D's alone spread it. Finite width adds
    O(t / H) (the Ginibre moments' 1/N corrections), which bounds the tolerance."""
    for act, rec in (("linear", "glorot_normal"), ("tanh", "orthogonal")):
        rnn = SimpleRNN(32, 600, act, kernel_init={"name": "random_normal", "stddev": 0.1},
                        recurrent_init=rec)
        p = predict_jacobian_spread(rnn, 4)
        m = measure_jacobian_spread(rnn, 4, samples=3, seeds=3)
        if act == "linear":
            assert np.allclose(p.variance, [1, 2, 3, 4])
        for t in range(4):
            se = m.variance_ci[t] / stats.t.ppf(0.975, 8)
            tol = stats.t.ppf(1 - 1e-4 / 2, 8) * se + 2.0 * (t + 1) ** 2 / rnn.units
            assert abs(m.variance[t] - p.variance[t]) < tol, (act, t)


@pytest.mark.parametrize("fmt", ["json"])
def test_report_arch_rnn(tmp_path, fmt):
    out = subprocess.run([sys.executable, "-m", "varprop", "report", "--arch", "rnn",
                          "-i", "orthogonal", "identity", "zeros", "-a", "tanh", "relu",
                          "--depth", "12", "--width", "48", "--seeds", "3", "--batch", "32",
                          "--format", fmt, "-q"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["settings"]["arch"] == "rnn"
    entries = {(e["initializer"], e["activation"]): e for e in data["results"]}
    assert len(entries) == 6
    irnn = entries[("identity", "relu")]["analytic"]
    assert irnn["profile"]["meta"]["rule"] == "identity chain"
    assert len(irnn["profile"]["records"]) == 12
    assert "per step" in entries[("orthogonal", "tanh")]["analytic"]["verdict"]["message"]
    assert entries[("zeros", "relu")]["analytic"]["verdict"]["kind"] == "symmetric"
    assert len(entries[("orthogonal", "tanh")]["measured"]["profile"]["records"]) == 12


def test_report_rnn_html_labels_time_steps(tmp_path):
    out = subprocess.run([sys.executable, "-m", "varprop", "report", "--arch", "rnn",
                          "-i", "orthogonal", "-a", "tanh", "--depth", "6", "--width", "16",
                          "--analytic-only", "--out", "r.html", "-q"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "r.html").read_text()
    assert "time step" in page and "Elman RNN" in page
