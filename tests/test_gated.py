"""Gated recurrent cells (issue 15): LSTM and GRU specs, their numpy forward and backward
passes against PyTorch, finite differences and a re-implementation of Keras's equations,
the mean-field theory against measurement at width 512 (docs/gated.md), chrono biases,
and the argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from varprop._empirical_run import stream
from varprop.recurrent.gated import (GATED_REASONS, GRU, LSTM, chrono_bias, chrono_cdf,
                                     chrono_nodes, keras_gru, keras_lstm, torch_gru,
                                     torch_lstm)
from varprop.recurrent.gated_arrays import (draw_gated_parameters, gated_backward,
                                            gated_forward)
from varprop.recurrent.gated_measure import measure_gated
from varprop.recurrent.gated_theory import analyze_gated
from varprop.recurrent.measure import draw_inputs

CELLS = {"keras_lstm": keras_lstm, "torch_lstm": torch_lstm, "keras_gru": keras_gru,
         "torch_gru": torch_gru}


def _random_cell(kind: str, layout: str, f: int = 4, h: int = 5):
    """A cell whose every array is random (biases too), so no gradient is trivially 0."""
    u = {"name": "random_uniform", "minval": -0.6, "maxval": 0.6}
    cls = LSTM if kind == "lstm" else GRU
    kw = {"unit_forget_bias": False} if kind == "lstm" else {}
    return cls(f, h, u, u, u, layout, **kw)


def _run(cell, steps=6, batch=3, seed=0):
    p = draw_gated_parameters(cell, seed, np.float64)
    rng = np.random.default_rng(seed + 10)
    x = rng.standard_normal((steps, batch, cell.input_size))
    g = rng.standard_normal((steps, batch, cell.units))
    fwd = gated_forward(cell, x, p)
    return p, x, g, fwd, gated_backward(cell, x, p, fwd, g)


# --------------------------------------------------------------------- (a) PyTorch
def _to_torch_arrays(cell, p):
    """The cell's arrays in PyTorch's layout, mapped here independently of varprop."""
    if cell.layout == "torch":
        return {k: p[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    h = cell.units
    kernel, rec, bias = p["kernel"], p["recurrent_kernel"], p["bias"]
    if cell.kind == "lstm":  # Keras i, f, c, o is PyTorch's i, f, g, o; one bias
        return {"weight_ih": kernel.T, "weight_hh": rec.T, "bias_ih": bias,
                "bias_hh": np.zeros_like(bias)}
    perm = np.r_[h:2 * h, 0:h, 2 * h:3 * h]  # Keras z, r, h -> PyTorch r, z, n
    return {"weight_ih": kernel.T[perm], "weight_hh": rec.T[perm], "bias_ih": bias[0][perm],
            "bias_hh": bias[1][perm]}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layout", ["keras", "torch"])
def test_forward_and_backward_match_torch(kind, layout):
    torch = pytest.importorskip("torch")
    cell = _random_cell(kind, layout)
    p, x, g, fwd, bwd = _run(cell)
    arrays = _to_torch_arrays(cell, p)
    f_, h_ = cell.input_size, cell.units
    # the whole sequence through nn.LSTM / nn.GRU: states and parameter gradients
    mod = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(f_, h_).double()
    with torch.no_grad():
        for k, v in arrays.items():
            getattr(mod, k + "_l0").copy_(torch.from_numpy(np.ascontiguousarray(v)))
    xt = torch.from_numpy(x).requires_grad_()
    out, _ = mod(xt)
    (out * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), fwd.h, rtol=0, atol=1e-13)
    np.testing.assert_allclose(xt.grad.numpy(), bwd.grad_x, rtol=0, atol=1e-12)
    mapped = _to_torch_arrays(cell, bwd.params)  # the gradients map like the arrays
    for k in arrays:
        if not (layout == "keras" and kind == "lstm" and k == "bias_hh"):  # Keras: one bias
            np.testing.assert_allclose(getattr(mod, k + "_l0").grad.numpy(), mapped[k],
                                       rtol=0, atol=1e-12)
    # step by step through the cell: c_t and the total dL/dh_t (retain_grad)
    cell_mod = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(f_, h_).double()
    with torch.no_grad():
        for k, v in arrays.items():
            getattr(cell_mod, k).copy_(torch.from_numpy(np.ascontiguousarray(v)))
    h = torch.zeros(x.shape[1], h_, dtype=torch.float64)
    c = torch.zeros_like(h)
    hs, cs = [], []
    for t in range(x.shape[0]):
        if kind == "lstm":
            h, c = cell_mod(torch.from_numpy(x[t]), (h, c))
            c.retain_grad()
            cs.append(c)
        else:
            h = cell_mod(torch.from_numpy(x[t]), h)
        h.retain_grad()
        hs.append(h)
    sum((hh * torch.from_numpy(g[t])).sum() for t, hh in enumerate(hs)).backward()
    for t in range(x.shape[0]):
        np.testing.assert_allclose(hs[t].grad.numpy(), bwd.grad_h[t], rtol=0, atol=1e-12)
        if kind == "lstm":
            np.testing.assert_allclose(cs[t].detach().numpy(), fwd.c[t], atol=1e-13)
            np.testing.assert_allclose(cs[t].grad.numpy(), bwd.grad_c[t], atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layout", ["keras", "torch"])
def test_gradients_match_finite_differences_in_float64(kind, layout):
    cell = _random_cell(kind, layout, f=3, h=4)
    p, x, g, fwd, bwd = _run(cell, steps=5, batch=2, seed=3)

    def loss(params, xx):
        return float(np.sum(g * gated_forward(cell, xx, params).h))

    rng = np.random.default_rng(0)
    eps = 1e-6
    for name, arr in list(p.items()) + [("x", x)]:
        want = bwd.grad_x if name == "x" else bwd.params[name]
        assert want.shape == arr.shape
        for flat in rng.choice(arr.size, size=min(6, arr.size), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            if name == "x":
                num = (loss(p, plus) - loss(p, minus)) / (2 * eps)
            else:
                num = (loss({**p, name: plus}, x) - loss({**p, name: minus}, x)) / (2 * eps)
            assert want[idx] == pytest.approx(num, rel=1e-6, abs=1e-9), (name, idx)


def test_float32_runs_in_float32_and_agrees_with_float64():
    cell = _random_cell("lstm", "keras", f=8, h=16)
    p64 = draw_gated_parameters(cell, 1, np.float64)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x = np.random.default_rng(2).standard_normal((7, 4, 8))
    f64 = gated_forward(cell, x, p64)
    f32 = gated_forward(cell, x.astype(np.float32), p32)
    assert f32.h.dtype == np.float32 and f32.c.dtype == np.float32
    np.testing.assert_allclose(f32.h, f64.h, atol=2e-6)


# --------------------------------------------------------------------- (b) Keras
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _keras_lstm_reference(x, kernel, recurrent_kernel, bias):
    """Keras 3 LSTMCell.call (implementation 2) written out: z = x K + h R + b, split
    in i, f, c, o; c = f c + i tanh(z_c); h = o tanh(c)."""
    units = recurrent_kernel.shape[0]
    h = np.zeros((x.shape[1], units))
    c = np.zeros_like(h)
    hs, cs = [], []
    for x_t in x:
        z = x_t @ kernel + h @ recurrent_kernel + bias
        z0, z1, z2, z3 = np.split(z, 4, axis=1)
        i, f, o = _sigmoid(z0), _sigmoid(z1), _sigmoid(z3)
        c = f * c + i * np.tanh(z2)
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.array(hs), np.array(cs)


def _keras_gru_reference(x, kernel, recurrent_kernel, bias):
    """Keras 3 GRUCell.call with reset_after=True written out: input and recurrent
    biases are bias[0] and bias[1]; the reset gate multiplies the recurrent part."""
    units = recurrent_kernel.shape[0]
    h = np.zeros((x.shape[1], units))
    hs = []
    for x_t in x:
        x_z, x_r, x_h = np.split(x_t @ kernel + bias[0], 3, axis=1)
        r_z, r_r, r_h = np.split(h @ recurrent_kernel + bias[1], 3, axis=1)
        z = _sigmoid(x_z + r_z)
        r = _sigmoid(x_r + r_r)
        hh = np.tanh(x_h + r * r_h)
        h = z * h + (1.0 - z) * hh
        hs.append(h)
    return np.array(hs)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_keras_layout_is_keras_equations(kind):
    cell = _random_cell(kind, "keras", f=5, h=6)
    p, x, g, fwd, bwd = _run(cell, steps=8, batch=4, seed=5)
    if kind == "lstm":
        h, c = _keras_lstm_reference(x, p["kernel"], p["recurrent_kernel"], p["bias"])
        np.testing.assert_allclose(fwd.c, c, atol=1e-14)
    else:
        h = _keras_gru_reference(x, p["kernel"], p["recurrent_kernel"], p["bias"])
    np.testing.assert_allclose(fwd.h, h, atol=1e-14)
    # the backward pass in Keras's own names against the reference's finite differences
    ref = _keras_lstm_reference if kind == "lstm" else _keras_gru_reference
    eps = 1e-6
    for name in ("kernel", "recurrent_kernel", "bias"):
        arr = p[name]
        idx = np.unravel_index(np.random.default_rng(1).integers(arr.size), arr.shape)
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += eps
        minus[idx] -= eps
        args = [p["kernel"], p["recurrent_kernel"], p["bias"]]
        k = ("kernel", "recurrent_kernel", "bias").index(name)

        def total(a):
            out = ref(x, *(a if j == k else args[j] for j in range(3)))
            return float(np.sum(g * (out[0] if kind == "lstm" else out)))

        assert bwd.params[name][idx] == pytest.approx((total(plus) - total(minus)) / (2 * eps),
                                                      rel=1e-6, abs=1e-9)


def test_framework_defaults():
    h = 100
    k = keras_lstm(20, h)
    assert k.array_shapes == {"kernel": (20, 4 * h), "recurrent_kernel": (h, 4 * h),
                              "bias": (4 * h,)}
    assert k.unit_forget_bias and k.gates == ("i", "f", "c", "o")
    # Keras's orthogonal (H, 4H): each gate block's entries have second moment 1 / (4H)
    assert k.recurrent_init.moments(k.recurrent_shape).var == pytest.approx(1 / (4 * h))
    assert k.kernel_init.moments(k.kernel_shape).var == pytest.approx(2 / (20 + 4 * h))
    p = draw_gated_parameters(k, 0)
    assert np.all(p["bias"][h:2 * h] == 1.0) and np.all(p["bias"][:h] == 0.0)
    assert keras_gru(20, h).array_shapes["bias"] == (2, 3 * h)
    for cell in (torch_lstm(20, h), torch_gru(20, h)):
        p = draw_gated_parameters(cell, 0)
        for name, arr in p.items():
            assert np.abs(arr).max() <= 1 / math.sqrt(h), name
            assert arr.shape == cell.array_shapes[name]
        assert not getattr(cell, "unit_forget_bias", False)
    assert torch_gru(20, h).gates == ("r", "z", "n")


# ----------------------------------------------------------------- measurement
def test_measure_gated_is_the_plain_numpy_run_of_its_draws():
    cell = keras_gru(6, 8)
    prof = measure_gated(cell, 5, batch=7, seeds=[4], dtype=np.float64)
    p = draw_gated_parameters(cell, 4, np.float64)
    x = draw_inputs(cell, 5, 7, "gaussian", 1.0, stream(4, 1), np.float64)
    fwd = gated_forward(cell, x, p)
    g = np.zeros_like(fwd.h)
    g[-1] = np.random.default_rng(stream(4, 2)).standard_normal(g.shape[1:])
    bwd = gated_backward(cell, x, p, fwd, g)
    for t in range(5):
        assert prof[t].a_var == pytest.approx(fwd.h[t].var(), rel=1e-12)
        assert prof[t].z_var == pytest.approx(fwd.cand_pre[t].var(), rel=1e-12)
        assert prof[t].grad_var == pytest.approx(np.mean(bwd.grad_h[t] ** 2), rel=1e-12)
    assert prof.meta["axis"] == "time step" and "dL/dh_t" in prof.meta["grad"]
    assert prof.kind == "empirical" and prof.seed_values["grad_var"][0][-1] == prof[4].grad_var


def test_measure_gated_is_deterministic_and_reports_progress():
    calls = []
    a = measure_gated(keras_lstm(4, 8), 6, batch=5, seeds=2, loss="sequence",
                      progress=lambda k, n: calls.append((k, n)))
    b = measure_gated(keras_lstm(4, 8), 6, batch=5, seeds=2, loss="sequence")
    assert calls == [(1, 2), (2, 2)]
    for name in ("z_var", "a_var", "grad_var"):
        assert np.array_equal(a.column(name), b.column(name))
    assert np.isfinite(a.column("grad_var_ci")).all()


def test_analytic_profile_is_flagged_and_shaped_like_the_measurement():
    for name, make in CELLS.items():
        p = analyze_gated(make(16, 32), 12)
        assert p.kind == "analytic" and len(p) == 12 and p.meta["axis"] == "time step"
        approx = p.meta["approximations"]
        assert approx[0] == {"kind": "recurrent", "layers": [[0, 11]],
                             "reason": GATED_REASONS["gated"], "detail": "gated"}, name
        assert p[-1].grad_var == pytest.approx(1.0, rel=1e-12) and p.gradient_ratio() < 1.0
        assert p.meta["grad"] == measure_gated(make(16, 32), 2, batch=2, seeds=1).meta["grad"]
    one_hot = analyze_gated(keras_gru(10, 32), 5, inputs="one_hot")
    assert [a["detail"] for a in one_hot.meta["approximations"]] == ["gated", "one_hot"]


def test_first_step_is_exact_where_the_inputs_are_the_only_term():
    # step 0: h_{-1} = 0, so the GRU's gates see only the input term: z, r ~ N(0, v_in)
    # and the candidate pre-activation's variance is exactly v_in
    cell = keras_gru(64, 32)
    p = analyze_gated(cell, 1, input_var=2.0)
    assert p[0].z_var == pytest.approx(64 * 2 / (64 + 96) * 2.0, rel=1e-12)


# ------------------------------------------------------ (c) theory vs measurement
# One measurement per default cell at H = F = 512, T = 50, 8 seeds of 128 sequences.
# Each test compares one field through a per-seed statistic whose mean the theory
# predicts: the ratio measured / theory at step 0 (the transient) and averaged over the
# steps 10 .. 49 (the steady state) for z_var and a_var; for grad_var the ratio at step 0
# (the end-to-end gradient) and at step 25. Tolerance: |mean - 1| <= t_{1 - a/4, S-1}
# sd / sqrt(S), a two-sided t test of the seeds' spread at false-alarm rate a = 0.001
# per test (Bonferroni over its two statistics), 0.012 over the 12 tests.
ALPHA = 1e-3
WIDTH, STEPS, SEEDS, BATCH = 512, 50, 8, 128
# where the approximation is known not to converge with width (docs/gated.md, section 3:
# the gap stays the same from H = 128 to H = 512, and the tied weights' correlations
# of a unit's gates across steps are its cause): kept as strict xfails, not tolerances
NOT_CONVERGING = {
    ("keras_lstm", "z_var"): "cell state 3.6% above from step 10 on: gates correlated "
                             "across steps by the tied weights",
    ("keras_lstm", "a_var"): "state 1.9% above at step 0 (c_0 = i g is not Gaussian inside "
                             "tanh), 3% from step 10 on (gates correlated across steps)",
    ("torch_lstm", "z_var"): "cell state 1.9% above from step 10 on (gates correlated "
                             "across steps; 3.8% at H = 128)",
    ("torch_lstm", "a_var"): "state 1.2% above at step 0 (c_0 not Gaussian), 2.4% later",
    ("keras_gru", "a_var"): "state 0.7% above from step 10 on: gates correlated across steps",
    ("keras_gru", "grad_var"): "gradient 49 steps back 1.6x above: the update gate "
                               "correlated across steps (1.9x at H = 128)",
    ("torch_gru", "a_var"): "state 1.4% above from step 10 on (2.2% at H = 128)",
    ("torch_gru", "grad_var"): "gradient 25 steps back 1.2x above: the update gate "
                               "correlated across steps",
}


@pytest.fixture(scope="module")
def wide_runs():
    cache = {}

    def get(name):
        if name not in cache:
            cell = CELLS[name](WIDTH, WIDTH)
            cache[name] = (analyze_gated(cell, STEPS),
                           measure_gated(cell, STEPS, batch=BATCH, seeds=SEEDS))
        return cache[name]
    return get


def _case(name, field):
    reason = NOT_CONVERGING.get((name, field))
    marks = [pytest.mark.slow]
    if reason:
        marks.append(pytest.mark.xfail(strict=True, reason=f"docs/gated.md s3: {reason}"))
    return pytest.param(name, field, marks=marks, id=f"{name}-{field}")


@pytest.mark.parametrize("name,field", [_case(n, f) for n in CELLS
                                        for f in ("z_var", "a_var", "grad_var")])
def test_theory_against_measurement_at_width_512(wide_runs, name, field):
    analytic, measured = wide_runs(name)
    theory = analytic.column(field)
    seeds = measured.seed_column(field)  # (S, T)
    ratio = seeds / theory
    if field == "grad_var":
        stats_ = {"step 0": ratio[:, 0], "step 25": ratio[:, 25]}
    else:
        stats_ = {"step 0": ratio[:, 0], "steps 10..49": ratio[:, 10:].mean(axis=1)}
    crit = stats.t.ppf(1 - ALPHA / 4, SEEDS - 1)
    for label, values in stats_.items():
        mean, se = values.mean(), values.std(ddof=1) / math.sqrt(SEEDS)
        assert abs(mean - 1.0) <= crit * se, (f"{name} {field} {label}: measured / theory "
                                               f"{mean:.4f} +- {se:.4f} (t crit {crit:.2f})")


def test_fresh_backward_is_the_one_time_recursion_and_far_off_when_tied():
    # the one-time recursion (a transposed matrix drawn afresh each step) underestimates
    # the tied network's gradient 49 steps back by orders of magnitude (docs/gated.md)
    cell = keras_lstm(128, 128)
    tied, fresh = (analyze_gated(cell, 50, backward=b) for b in ("tied", "fresh"))
    assert tied.meta["band"] == 49 and fresh.meta["band"] == 0
    assert tied.gradient_ratio() / fresh.gradient_ratio() > 100
    np.testing.assert_allclose(tied.column("a_var"), fresh.column("a_var"))


# --------------------------------------------------------------------- (d) chrono
def test_chrono_bias_law():
    t_max = 40.0
    b = chrono_bias(t_max, 20000, seed=7)
    assert b.min() >= 0.0 and b.max() <= math.log(t_max - 1)
    # Kolmogorov-Smirnov against P(b <= x) = (e^x - 1) / (T_max - 2); false alarm 1e-3
    assert stats.kstest(b, lambda v: chrono_cdf(v, t_max)).pvalue > 1e-3
    mean = ((t_max - 1) * (math.log(t_max - 1) - 1) + 1) / (t_max - 2)  # E[log U(1, T-1)]
    nodes, w = chrono_nodes(t_max)
    assert w.sum() == pytest.approx(1.0) and float(w @ nodes) == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("make", [keras_lstm, torch_lstm, keras_gru, torch_gru])
def test_chrono_biases_in_the_drawn_arrays(make):
    h, t_max = 3000, 25.0
    cell = make(4, h, chrono=t_max)
    assert cell.chrono == t_max and "chrono 25" in cell.describe()
    p = draw_gated_parameters(cell, seed=2)
    first = p["bias"] if cell.layout == "keras" and cell.kind == "lstm" else \
        (p["bias"][0] if cell.layout == "keras" else p["bias_ih"])
    second = None if cell.layout == "keras" and cell.kind == "lstm" else \
        (p["bias"][1] if cell.layout == "keras" else p["bias_hh"])

    def part(arr, gate):
        k = cell.gates.index(gate)
        return arr[k * h:(k + 1) * h]

    keep = "f" if cell.kind == "lstm" else "z"
    b = part(first, keep).astype(np.float64)
    assert stats.kstest(b, lambda v: chrono_cdf(v, t_max)).pvalue > 1e-3
    if cell.kind == "lstm":
        np.testing.assert_array_equal(part(first, "i"), -part(first, "f"))
    if second is not None:
        assert np.all(part(second, keep) == 0.0)
    # the theory integrates the same law: its first-step forget (update) gate mean
    nodes, w = chrono_nodes(t_max)
    assert np.mean(b) == pytest.approx(float(w @ nodes), abs=4 * np.std(b) / math.sqrt(h))


# --------------------------------------------------------------------- (e) errors
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_spec_validation(cls):
    name = cls.__name__
    for kwargs, error, match in [
        ({"input_size": 0}, ValueError, "input_size"),
        ({"input_size": 2.5}, TypeError, "input_size"),
        ({"units": True}, TypeError, "units"),
        ({"layout": "tf"}, ValueError, "layout"),
        ({"layout": 3}, TypeError, "layout"),
        ({"kernel_init": 3}, TypeError, "kernel_init"),
        ({"recurrent_init": "no_such_init"}, ValueError, "recurrent_init"),
        ({"bias_init": 1.0}, TypeError, "bias_init"),
        ({"chrono": 2}, ValueError, "chrono"),
        ({"chrono": "50"}, TypeError, "chrono"),
        ({"chrono": math.inf}, ValueError, "chrono"),
        ({"chrono": 10, "bias_init": None}, ValueError, "chrono"),
        ({"name": 5}, TypeError, "name"),
    ]:
        args = {"input_size": 4, "units": 8, **kwargs}
        with pytest.raises(error, match=match) as info:
            cls(**args)
        assert name in str(info.value)
    cell = cls(4, 8)
    with pytest.raises(AttributeError):
        cell.units = 3  # frozen
    assert cell.with_changes(units=16).units == 16
    with pytest.raises(TypeError, match="unknown"):
        cell.with_changes(width=3)


def test_lstm_forget_bias_validation():
    with pytest.raises(ValueError, match="unit_forget_bias and chrono"):
        LSTM(4, 8, unit_forget_bias=True, chrono=20)
    with pytest.raises(ValueError, match="unit_forget_bias"):
        LSTM(4, 8, bias_init=None, unit_forget_bias=True)
    with pytest.raises(TypeError, match="unit_forget_bias"):
        LSTM(4, 8, unit_forget_bias=1)
    assert LSTM(4, 8, chrono=20).unit_forget_bias is False
    assert LSTM(4, 8, bias_init=None).unit_forget_bias is False


def test_run_argument_validation():
    cell = keras_lstm(3, 4)
    for fn in (analyze_gated, measure_gated):
        with pytest.raises(TypeError, match="LSTM or GRU"):
            fn(object(), 3)
        with pytest.raises(ValueError, match="steps"):
            fn(cell, 0)
        with pytest.raises(ValueError, match="inputs"):
            fn(cell, 3, inputs="uniform")
        with pytest.raises(ValueError, match="loss"):
            fn(cell, 3, loss="mean")
        with pytest.raises(ValueError, match="input_var"):
            fn(cell, 3, input_var=-1.0)
    with pytest.raises(ValueError, match="backward"):
        analyze_gated(cell, 3, backward="untied")
    for kwargs, error, match in [({"batch": 1}, ValueError, "batch"),
                                 ({"seeds": 0}, ValueError, "seeds"),
                                 ({"seeds": [1, 1]}, ValueError, "seeds"),
                                 ({"dtype": np.int32}, TypeError, "dtype"),
                                 ({"progress": 3}, TypeError, "progress")]:
        with pytest.raises(error, match=match):
            measure_gated(cell, 3, **kwargs)
    p = draw_gated_parameters(cell, 0, np.float64)
    with pytest.raises(ValueError, match="x must be"):
        gated_forward(cell, np.zeros((2, 3, 5)), p)
    with pytest.raises(TypeError, match="float32 or float64"):
        gated_forward(cell, np.zeros((2, 3, 3), dtype=np.int64), p)
    fwd = gated_forward(cell, np.zeros((2, 3, 3)), p)
    with pytest.raises(ValueError, match="grad_out"):
        gated_backward(cell, np.zeros((2, 3, 3)), p, fwd, np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="t_max"):
        chrono_bias(2.0, 5)
