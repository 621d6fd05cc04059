"""The Elman recurrent layer inside a Network (varprop.layers.Recurrent): its arrays
against the plain-numpy recurrence, its records against statistics of those arrays,
its theory's wiring against analyze_rnn, and its theory against measurement in stacked
networks whose per-step inputs and gradients vary (false-alarm rate ALPHA per check,
fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from varprop import (Act, Conv, Dense, Flatten, Network, Recurrent, analyze, compare,
                     measure)
from varprop._empirical_run import FIELDS, SeedRun
from varprop._reference_rnn import rnn_backward as ref_backward
from varprop._reference_rnn import rnn_forward as ref_forward
from varprop.recurrent import SimpleRNN, analyze_rnn

ALPHA = 1e-4


def _bound(values: np.ndarray) -> float:
    """Half-width of the mean of ``values`` at the false-alarm rate ALPHA."""
    n = len(values)
    return float(stats.t.ppf(1 - ALPHA / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))


def _cell(act="tanh", units=16, inputs=5, **kw):
    return SimpleRNN(inputs, units, act, bias_init=kw.pop("bias_init", "random_normal"), **kw)


# --------------------------------------------------------------------------- arrays
def _round_trip(layer, shape, dtype, data_seed, base):
    """The layer's forward and backward in one seed's run on a batch-major input that is
    not C-contiguous in the kernels' time-major order: ``(the input time-major, the
    run, y, dL/dx, the dL/dy it got)``."""
    batch, steps, features = shape
    net = Network((steps, features), [layer])
    rng = np.random.default_rng(data_seed)
    x = np.asfortranarray(rng.standard_normal(shape).astype(dtype))
    run = SeedRun(net.steps, 1, base, np.dtype(dtype), 1)
    y, _, cache = run.forward(net.steps[0], x, None, keep=True, record=True)
    grad = rng.standard_normal(y.shape).astype(dtype)
    gx = run.backward(net.steps[0], cache, grad)
    return np.ascontiguousarray(np.swapaxes(x, 0, 1)), run, y, gx, grad


def _time_major(grad, states, sequences):
    """dL/dh_t as the numpy twins take it, (T, B, H): every state's, or the last's."""
    grad_h = np.zeros_like(states)
    if sequences:
        grad_h[...] = np.swapaxes(grad, 0, 1)
    else:
        grad_h[-1] = grad
    return grad_h


def _same_arrays(y, gx, states, grad_x, sequences, rtol):
    """The layer's output and input gradient against the twin's (time-major) ones."""
    want = np.swapaxes(states, 0, 1) if sequences else states[-1]
    np.testing.assert_allclose(y, want, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gx, np.swapaxes(grad_x, 0, 1), rtol=rtol * 10,
                               atol=rtol * 10)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_forward_and_backward_are_the_numpy_recurrence(dtype, rtol, sequences, act):
    steps, batch = 7, 6
    layer = Recurrent(_cell(act), return_sequences=sequences)
    xt, run, y, gx, grad = _round_trip(layer, (batch, steps, 5), dtype, 3, 11)
    (w_x, w_h), b = layer.draw(run, 0)
    ref = ref_forward(xt, w_x, w_h, b, activation=act)
    g = ref_backward(xt, w_x, w_h, ref.z, ref.h, _time_major(grad, ref.h, sequences),
                     activation=act)
    _same_arrays(y, gx, ref.h, g.grad_x, sequences, rtol)
    # the records are the statistics of those arrays
    row = {name: run.values[i, 0] for i, name in enumerate(FIELDS)}
    z, gz = np.asarray(ref.z, np.float64), np.asarray(g.grad_z, np.float64)
    assert row["z_var"] == pytest.approx(z.var(), rel=rtol * 10)
    assert row["a_var"] == pytest.approx(np.var(np.asarray(ref.h, np.float64)), rel=rtol * 10)
    assert row["grad_var"] == pytest.approx(gz.var(), rel=rtol * 10)
    assert row["weight_grad_var"] == pytest.approx(
        np.var(np.asarray(g.grad_w_x, np.float64)) / batch, rel=rtol * 100)
    maps = run.maps[0]
    np.testing.assert_allclose(maps["z_var"], z.reshape(steps, -1).var(axis=1),
                               rtol=rtol * 10)
    np.testing.assert_allclose(maps["grad_var"], gz.reshape(steps, -1).var(axis=1),
                               rtol=rtol * 10)


def test_measure_is_bitwise_the_same_for_any_thread_count():
    net = Network((9, 5), [Recurrent(_cell("tanh", 48), return_sequences=True),
                           Recurrent(_cell("relu", 32, 48)), Dense(32, 3, "glorot_normal")])
    one = measure(net, batch=40, seeds=2, n_threads=1)
    two = measure(net, batch=40, seeds=2, n_threads=2)
    for field in ("z_var", "a_var", "grad_var", "weight_grad_var"):
        assert np.array_equal(one.column(field), two.column(field)), field
    assert np.array_equal(one.maps[0]["grad_var"], two.maps[0]["grad_var"])


# --------------------------------------------------------------------------- the walk
def test_an_act_after_it_is_a_step_of_its_own():
    net = Network((4, 3), [Recurrent(_cell(inputs=3)), Act("relu"), Dense(16, 2, "he_normal")])
    assert [type(s.layer).__name__ for s in net.steps] == ["Recurrent", "Act", "Dense"]
    assert net.steps[0].act is None and net.depth == 2


@pytest.mark.parametrize("build,error,match", [
    (lambda: Recurrent("rnn"), TypeError, "cell must be a varprop.recurrent.SimpleRNN"),
    (lambda: Recurrent(_cell(), return_sequences="yes"), TypeError, "return_sequences"),
    (lambda: Network(5, [Recurrent(_cell())]), ValueError, r"layer 0: Recurrent needs"),
    (lambda: Network((4, 6), [Recurrent(_cell())]), ValueError,
     "expects 5 input features per step but receives 6"),
    (lambda: Network((4, 4, 5), [Recurrent(_cell())]), ValueError, "is 1-D"),
    (lambda: Network((4, 5), [Recurrent(_cell()), Recurrent(_cell(inputs=16))]),
     ValueError, "layer 1: Recurrent needs"),
])
def test_bad_input_is_refused_by_name(build, error, match):
    with pytest.raises(error, match=match):
        build()


# --------------------------------------------------------------------------- theory wiring
@pytest.mark.parametrize("cell", [
    SimpleRNN(8, 64, "tanh", recurrent_init="orthogonal"),
    SimpleRNN(8, 64, "relu", kernel_init="he_normal", recurrent_init="identity"),
    SimpleRNN(8, 64, "sigmoid", recurrent_init="glorot_normal", bias_init="ones"),
])
@pytest.mark.parametrize("sequences", [False, True])
def test_alone_it_is_analyze_rnn_step_by_step(cell, sequences):
    """A network of the layer alone, read at its last state (or every state, which the
    network's loss then reads with variance 1 each), is analyze_rnn's loss "last" (or
    "sequence"), step by step: the per-step maps are the spec's records, the row their
    pooled values."""
    steps = 12
    p = analyze(Network((steps, 8), [Recurrent(cell, return_sequences=sequences)]))
    want = analyze_rnn(cell, steps, loss="sequence" if sequences else "last")
    for field in ("z_var", "a_var", "grad_var"):
        np.testing.assert_allclose(p.maps[0][field], [getattr(r, field) for r in want],
                                   rtol=1e-12, err_msg=field)
    z_mean = np.array([r.z_mean for r in want])
    second = np.mean([r.z_var + r.z_mean ** 2 for r in want])
    assert p[0].z_var == pytest.approx(second - z_mean.mean() ** 2, rel=1e-12)
    assert p[0].grad_var == pytest.approx(np.mean([r.grad_var for r in want]), rel=1e-12)


# --------------------------------------------------------------------------- against measurement
def _per_seed_maps(net: Network, seeds: range, batch: int) -> dict[str, np.ndarray]:
    """Per seed (rows) the per-step maps of layer ``index`` of each weighted layer."""
    out: dict[tuple[int, str], list[np.ndarray]] = {}
    for s in seeds:
        m = measure(net, batch=batch, seeds=[s])
        for index, maps in m.maps.items():
            for name, values in maps.items():
                out.setdefault((index, name), []).append(values)
    return {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("upper", [
    SimpleRNN(128, 192, "tanh", recurrent_init="orthogonal"),
    SimpleRNN(128, 192, "relu", kernel_init="he_normal", recurrent_init="glorot_normal",
              bias_init="zeros"),
])
def test_stacked_layers_agree_with_measurement_step_by_step(upper):
    """A convolution with 'same' padding hands the first recurrent layer a smaller
    input variance at the two border steps; the first hands the second a variance that
    grows over the first steps, and gets back from it a gradient at every step: the
    per-step input and reads paths of the theory, against the measurement."""
    steps = 12
    net = Network((steps, 16), [
        Conv(16, 64, 5, "he_normal", padding="same", spatial_dims=1), Act("relu"),
        Recurrent(SimpleRNN(64, 128, "tanh", recurrent_init="orthogonal"),
                  return_sequences=True),
        Recurrent(upper), Dense(upper.units, 4, "glorot_normal")])
    p = analyze(net)
    sim = _per_seed_maps(net, range(12), 64)
    checked = 0
    for index in (1, 2):
        for name in ("z_var", "a_var", "grad_var"):
            theory = p.maps[index][name]
            assert theory[0] != theory[steps // 2]  # the steps do differ
            for t in (0, 1, steps // 2, steps - 1):
                ratio = sim[(index, name)][:, t] / theory[t]
                assert abs(ratio.mean() - 1) < _bound(ratio), (index, name, t)
                checked += 1
    assert checked == 24


def test_flatten_after_every_state_agrees_with_measurement():
    """Flatten hands every state to its own dense weights: reads independent per step."""
    steps = 10
    net = Network((steps, 8), [Recurrent(SimpleRNN(8, 96, "tanh"), return_sequences=True),
                               Flatten(), Dense(steps * 96, 64, "glorot_normal")])
    assert compare(net, batch=128, seeds=4).agree


# --------------------------------------------------------------------------- pairs of steps
def _simulate_pairs(cell: SimpleRNN, steps: int, batch: int, seeds: int) -> np.ndarray:
    """Plain numpy, per seed: E[h_s h_t] over the batch and the units, (seeds, T, T)."""
    out = np.empty((seeds, steps, steps))
    for s in range(seeds):
        rng = np.random.default_rng(100 + s)
        w_x = cell.kernel_init(cell.kernel_shape, seed=rng, dtype=np.float64)
        w_h = cell.recurrent_init(cell.recurrent_shape, seed=rng, dtype=np.float64)
        b = 0.0 if cell.bias_init is None else \
            cell.bias_init((cell.units,), seed=rng, dtype=np.float64)
        x = rng.standard_normal((steps, batch, cell.input_size))
        h, states = np.zeros((batch, cell.units)), []
        for t in range(steps):
            h = cell.activation.value(x[t] @ w_x + h @ w_h + b)
            states.append(h)
        hs = np.array(states)
        out[s] = np.einsum("sbh,tbh->st", hs, hs) / (batch * cell.units)
    return out


@pytest.mark.parametrize("cell", [
    SimpleRNN(8, 256, "relu", kernel_init="he_normal", recurrent_init="glorot_normal"),
    SimpleRNN(8, 256, "tanh", recurrent_init="orthogonal", bias_init="random_normal"),
    SimpleRNN(64, 256, "gelu", kernel_init="glorot_normal", recurrent_init="he_normal"),
])
def test_state_pairs_match_a_numpy_simulation(cell):
    """E[h_s h_t] across steps (what a pooling over time reads), against a plain numpy
    recurrence; F = 8 makes the units' input variances spread (their column norms)."""
    from varprop.recurrent.theory import input_term, loss_reads, state_pairs, through_time
    steps = 10
    u = input_term(cell, "gaussian", 1.0)
    records = through_time(cell, steps, u, loss_reads("last", steps))[0]
    pairs = state_pairs(cell, records, u, np.ones(steps), np.eye(steps))
    sim = _simulate_pairs(cell, steps, 128, 12)
    for s, t in ((0, 1), (0, 9), (1, 2), (4, 5), (5, 9), (8, 9), (9, 9)):
        ratio = sim[:, s, t] / pairs[s, t]
        assert abs(ratio.mean() - 1) < _bound(ratio), (s, t)


@pytest.mark.parametrize("cell", [
    SimpleRNN(8, 128, "tanh"),
    SimpleRNN(8, 128, "relu", kernel_init="he_normal", recurrent_init="glorot_normal"),
])
def test_a_pooling_over_time_agrees_with_measurement(cell):
    """GlobalAvgPool over the states reads their pairs of steps (E[y^2] of the average
    is (1/T^2) sum_st E[h_s h_t]): not flagged, and the readout's variance agrees per
    seed. Centred tanh states at different steps are uncorrelated in the mean field
    (no bias, white inputs); ReLU states share their mean, so the pairs more than
    double the diagonal's share. (64 readout units: the pooled variance of a handful of
    units that share a mean term is biased low by the mean's share / units.)"""
    from varprop import GlobalAvgPool
    steps = 16
    net = Network((steps, 8), [Recurrent(cell, return_sequences=True), GlobalAvgPool(),
                               Dense(128, 64, "glorot_normal")])
    p = analyze(net)
    assert not any(a["kind"] == "spatial" for a in p.meta["approximations"])
    diagonal_only = 128 / 96 * (p[0].a_var + p[0].a_mean ** 2) / steps
    if cell.activation.name == "relu":
        assert p[1].z_var > 2 * diagonal_only
    else:
        assert p[1].z_var == pytest.approx(diagonal_only, rel=1e-9)
    m = measure(net, batch=128, seeds=list(range(10)))
    ratio = np.array(m.seed_values["z_var"])[:, 1] / p[1].z_var
    assert abs(ratio.mean() - 1) < _bound(ratio)
    ratio = np.array(m.seed_values["grad_var"])[:, 0] / p[0].grad_var
    assert abs(ratio.mean() - 1) < _bound(ratio)


def test_identity_recurrence_read_by_a_pooling_is_flagged_and_alone_is_not():
    """The identity chain adds what each step reads as independent: a pooling over
    time reads every step with one shared gradient (flagged correlated_reads); a loss
    on every state reads them independently (not flagged)."""
    from varprop import GlobalAvgPool, MaxPool
    cell = SimpleRNN(8, 64, "relu", kernel_init="he_normal", recurrent_init="identity")
    pooled = Network((12, 8), [Recurrent(cell, return_sequences=True), GlobalAvgPool(),
                               Dense(64, 32, "glorot_normal")])
    details = [a["detail"] for a in analyze(pooled).meta["approximations"]]
    assert "correlated_reads at time steps 0-11 of layer 0" in details
    alone = Network((12, 8), [Recurrent(cell, return_sequences=True)])
    assert not analyze(alone).meta["approximations"]
    # a max pooling over time gets no Gaussian pair law from the states: flagged
    maxed = Network((12, 8), [Recurrent(SimpleRNN(8, 64, "tanh"), return_sequences=True),
                              MaxPool(2, spatial_dims=1), Flatten(),
                              Dense(6 * 64, 8, "glorot_normal")])
    assert any(a["kind"] == "spatial" for a in analyze(maxed).meta["approximations"])


# --------------------------------------------------------------------------- gated cells
from varprop.recurrent.gated import keras_gru, keras_lstm, torch_gru, torch_lstm  # noqa: E402
from varprop.recurrent.gated_arrays import gated_backward, gated_forward  # noqa: E402

GATED = {"keras_lstm": keras_lstm, "torch_lstm": torch_lstm, "keras_gru": keras_gru,
         "torch_gru": torch_gru}


@pytest.mark.parametrize("make", list(GATED), ids=list(GATED))
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-11), (np.float32, 5e-5)])
@pytest.mark.parametrize("sequences", [False, True])
def test_gated_arrays_are_the_numpy_cells(make, dtype, rtol, sequences):
    """The layer on the fused gated kernels against the cells' plain-numpy twin
    (varprop.recurrent.gated_arrays), with the parameters the layer drew."""
    steps, batch, features = 6, 5, 7
    cell = GATED[make](features, 12)
    layer = Recurrent(cell, return_sequences=sequences)
    xt, run, y, gx, grad = _round_trip(layer, (batch, steps, features), dtype, 5, 13)
    params, _ = layer.draw(run, 0)
    ref = gated_forward(cell, xt, params)
    g = gated_backward(cell, xt, params, ref, _time_major(grad, ref.h, sequences))
    _same_arrays(y, gx, ref.h, g.grad_x, sequences, rtol)
    z = ref.c if ref.c is not None else ref.cand_pre
    row = {name: run.values[i, 0] for i, name in enumerate(FIELDS)}
    assert row["z_var"] == pytest.approx(np.var(np.asarray(z, np.float64)), rel=rtol * 10)
    assert row["grad_var"] == pytest.approx(np.var(np.asarray(g.grad_h, np.float64)),
                                            rel=rtol * 100)


def test_gated_measure_is_bitwise_the_same_for_any_thread_count():
    net = Network((8, 6), [Recurrent(keras_lstm(6, 40), return_sequences=True),
                           Recurrent(torch_gru(40, 24)), Dense(24, 3, "glorot_normal")])
    one = measure(net, batch=33, seeds=2, n_threads=1)
    two = measure(net, batch=33, seeds=2, n_threads=2)
    for field in ("z_var", "a_var", "grad_var", "weight_grad_var"):
        assert np.array_equal(one.column(field), two.column(field)), field


@pytest.mark.parametrize("make", list(GATED), ids=list(GATED))
@pytest.mark.parametrize("sequences", [False, True])
def test_gated_alone_is_analyze_gated_step_by_step(make, sequences):
    from varprop.recurrent.gated import analyze_gated
    steps = 10
    cell = GATED[make](16, 48)
    p = analyze(Network((steps, 16), [Recurrent(cell, return_sequences=sequences)]))
    want = analyze_gated(cell, steps, loss="sequence" if sequences else "last")
    for field in ("z_var", "a_var", "grad_var"):
        np.testing.assert_allclose(p.maps[0][field], [getattr(r, field) for r in want],
                                   rtol=1e-12, err_msg=field)
    details = {a["detail"].split(" at ")[0] for a in p.meta["approximations"]}
    assert details == {"gated"}  # white inputs, independent reads: only the cell's own


@pytest.mark.parametrize("make", list(GATED), ids=list(GATED))
def test_gated_input_gradient_agrees_with_measurement(make):
    """Var dL/dx_t = H (v_x + m_x^2) sum_k E[delta_k^2], from the gate deltas of the
    gated theory's backward pass, read where the layer hands it: a 1x1 convolution
    with Dirac weights below passes it on unchanged. Against the measurement (H = 256,
    24 seeds, false-alarm rate ALPHA per check) at the first step and averaged over the
    first half, where one network's scatter leaves a bound of 5 % (Keras) to 9 %
    (PyTorch's uniform weights). (The last step's is 2.5 % high for the Keras LSTM: its
    cell state is taken as Gaussian, docs/gated.md.)"""
    steps, features = 16, 32
    net = Network((steps, features), [Conv(features, features, 1, "dirac", spatial_dims=1),
                                      Recurrent(GATED[make](features, 256))])
    theory = analyze(net).maps[0]["grad_var"]
    ratio = _per_seed_maps(net, range(24), 64)[(0, "grad_var")] / theory
    for values in (ratio[:, 0], ratio[:, :steps // 2].mean(axis=1)):
        assert abs(values.mean() - 1) < _bound(values)


def test_correlated_inputs_are_flagged_for_gated_cells_and_integrated_for_the_chain():
    """A ReLU layer below hands inputs with a mean: fixed per unit over time. The
    identity chain integrates it as a random bias (exact: agrees with measurement,
    not flagged); a gated cell's memory accumulates it (flagged correlated_input)."""
    chain = SimpleRNN(64, 128, "relu", kernel_init={"name": "random_normal", "stddev": 0.05},
                      recurrent_init="identity")
    net = Network((24, 16), [Conv(16, 64, 1, "he_normal", spatial_dims=1), Act("relu"),
                             Recurrent(chain), Dense(128, 64, "glorot_normal")])
    p = analyze(net)
    assert not p.meta["approximations"]
    m = measure(net, batch=128, seeds=list(range(8)))
    for field in ("z_var", "grad_var"):
        ratio = np.array(m.seed_values[field])[:, 1] / getattr(p[1], field)
        assert abs(ratio.mean() - 1) < _bound(ratio), field
    gated = Network((24, 16), [Conv(16, 64, 1, "he_normal", spatial_dims=1), Act("relu"),
                               Recurrent(keras_lstm(64, 128))])
    details = [a["detail"] for a in analyze(gated).meta["approximations"]]
    assert "correlated_input at time steps 0-23 of layer 1" in details
    # overlapping windows of zero-mean weights do not correlate neighbouring steps on
    # average (two taps reading one input pixel have independent weights): centred
    # inputs through a 3-wide convolution are fresh per step
    wide = Network((24, 16), [Conv(16, 64, 3, "he_normal", spatial_dims=1), Act("tanh"),
                              Recurrent(keras_lstm(64, 128))])
    details = [a["detail"] for a in analyze(wide).meta["approximations"]]
    assert not any(d.startswith("correlated_input") for d in details)


def test_the_correlation_map_goes_through_the_mean_field():
    """Two correlated input sequences (input_correlation) through an Elman layer, its
    every-state output into another and into a pooling over time: z_corr against
    analyze_rnn alone (the per-step values, pooled) and against measurement (6 seeds,
    95 % half-widths widened to a false-alarm rate of 1e-4 per layer)."""
    from varprop import GlobalAvgPool
    cell = SimpleRNN(16, 256, "tanh", recurrent_init="orthogonal")
    alone = analyze(Network((12, 16), [Recurrent(cell)]), input_correlation=0.5)
    per_step = analyze_rnn(cell, 12, input_correlation=0.5)
    second = np.array([r.z_var + r.z_mean ** 2 for r in per_step])
    corr = np.array([r.z_corr for r in per_step])
    assert alone[0].z_corr == pytest.approx(float(np.sum(corr * second) / np.sum(second)),
                                            rel=1e-12)
    widen = stats.t.ppf(1 - 0.5e-4, 5) / stats.t.ppf(0.975, 5)
    upper = SimpleRNN(256, 256, "relu", kernel_init="he_normal", recurrent_init="glorot_normal")
    for head, last in (([Recurrent(upper), Dense(256, 64, "glorot_normal")], (0.6, 0.7)),
                       ([GlobalAvgPool(), Dense(256, 64, "glorot_normal")], (0.45, 0.49))):
        net = Network((12, 16), [Recurrent(cell, return_sequences=True), *head])
        theory = analyze(net, input_correlation=0.5).column("z_corr")
        m = measure(net, input_correlation=0.5, batch=256, seeds=6)
        assert np.all(np.isfinite(theory)) and last[0] < theory[-1] < last[1]
        assert np.all(np.abs(m.column("z_corr") - theory) <= widen * m.column("z_corr_ci"))


@pytest.mark.parametrize("make", ["keras_lstm", "keras_gru"])
def test_gated_pairs_of_steps_under_a_pooling_over_time(make):
    """A gated cell's states are correlated across steps (its memory): a pooling over
    time reads their pairs, from the two-time kernels of the forward recursions
    (gated_state_pairs). The readout's variance against per-seed measurement (8 seeds,
    false-alarm rate ALPHA); taking the steps as independent, as before, is 5x off and
    fails the same check. (PyTorch's cells, whose random biases give each unit a drive
    fixed over time, stay about 2x below: flagged, docs/gated.md.)"""
    from varprop import GlobalAvgPool
    steps, units = 20, 128
    net = Network((steps, 32), [Recurrent(GATED[make](32, units), return_sequences=True),
                                GlobalAvgPool(), Dense(units, 64, "glorot_normal")])
    p = analyze(net)
    assert p.meta["approximations"]  # the gated theory is flagged everywhere
    m = measure(net, batch=256, seeds=list(range(8)))
    ratio = np.array(m.seed_values["z_var"])[:, 1] / p[1].z_var
    assert abs(ratio.mean() - 1) < _bound(ratio)
    second = p[0].a_var + p[0].a_mean ** 2  # mean_t E[h_t^2], the steps pooled
    independent = units * (2 / (units + 64)) * second / steps  # E[y^2] = that / T
    assert abs(np.mean(ratio * p[1].z_var / independent) - 1) > _bound(ratio)
