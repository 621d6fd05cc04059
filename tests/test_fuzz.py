"""A bounded Hypothesis fuzz of the public API and of the CLI's arguments.

The property everywhere: a call either returns or raises ``ValueError``/``TypeError``
(the CLI: exits 0, 1 or 2 with no traceback); never another exception, a crash or a
hang. The CI profile (tests/conftest.py) makes the runs derandomized and bounded."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import varprop
from varprop import ACTIVATION_NAMES
from varprop.datasets.idx import load_idx

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EXPECTED = (ValueError, TypeError)
INITS = varprop.initializers.available_initializers()
# numbers users type, and the ones that break arithmetic
WILD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**400, 10**400),
                 st.sampled_from([0, 1, -1, 0.5, 1e-300, 1e300, 2**31, 10**9]), st.none(),
                 st.text(max_size=3), st.booleans())


def _call(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except EXPECTED:
            return None


@FUZZ
@given(batch=st.integers(0, 9), n_in=st.integers(0, 9), n_out=st.integers(0, 9),
       act=st.sampled_from(ACTIVATION_NAMES), dtype=st.sampled_from(["f4", "f8"]),
       n_threads=st.one_of(st.none(), st.integers(-2, 5000)), fill=WILD, stats=st.booleans())
def test_kernels(batch, n_in, n_out, act, dtype, n_threads, fill, stats):
    x = np.full((batch, n_in), fill if isinstance(fill, float) else 1.0, dtype)
    w = np.random.default_rng(0).standard_normal((n_in, n_out)).astype(dtype)
    r = _call(varprop.dense_forward, x, w, None, act, stats=stats, n_threads=n_threads)
    if r is not None:
        assert r.a.shape == (batch, n_out)
        _call(varprop.dense_backward, x, w, r.z, np.ones_like(r.z), act, n_threads=n_threads)


@FUZZ
@given(name=st.sampled_from(INITS), key=st.sampled_from(
           ["gain", "stddev", "mean", "minval", "maxval", "scale", "sparsity", "std", "a", "b",
            "lower", "upper", "value", "mode", "distribution", "fan_in", "seed"]),
       value=WILD, shape=st.lists(st.integers(0, 5), max_size=4), seed=WILD)
def test_initializers(name, key, value, shape, seed):
    init = _call(varprop.get_initializer, {"name": name, key: value})
    if init is None:
        init = _call(varprop.get_initializer, name)
    if init is None:
        return
    _call(init.moments, tuple(shape))
    out = _call(init, tuple(shape), seed=seed if isinstance(seed, int) and seed >= 0 else 0)
    if out is not None:
        assert out.shape == tuple(shape)


@FUZZ
@given(widths=st.lists(st.integers(1, 12), min_size=2, max_size=6),
       act=st.sampled_from(ACTIVATION_NAMES), init=st.sampled_from(INITS),
       mean=WILD, var=WILD, corr=WILD, batch=WILD)
def test_analyzer(widths, act, init, mean, var, corr, batch):
    net = _call(varprop.mlp, widths, act, init)
    if net is None:
        return
    p = _call(varprop.analyze, net, input_mean=mean, input_var=var, input_correlation=corr,
              batch=batch)
    if p is not None:
        assert len(p) == net.depth
        assert not any(math.isnan(r.z_var) for r in p if math.isfinite(r.z_mean))


_RECURRENT_INITS = ["glorot_uniform", "orthogonal", "identity", "zeros", "ones", "he_normal",
                    {"name": "random_normal", "stddev": 0.01}]


@st.composite
def _sequence_network(draw):
    """A small network over a (T, F) sequence: an optional 1-D convolution, one or two
    recurrent layers (Elman of any activation and initializer, or a gated cell), and a
    head (the last state, Flatten, a pooling over time)."""
    from varprop.recurrent import SimpleRNN
    from varprop.recurrent.gated import keras_gru, keras_lstm, torch_gru, torch_lstm
    steps, features = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    layers, width = [], features
    if draw(st.booleans()):
        kernel = draw(st.sampled_from([1, 3]))
        padding = draw(st.sampled_from(["same", "valid"])) if kernel <= steps else "same"
        layers += [varprop.Conv(features, 4, kernel, "he_normal", padding=padding,
                                spatial_dims=1), varprop.Act("relu")]
        width = 4
    count = draw(st.integers(1, 2))
    for i in range(count):
        units = draw(st.integers(1, 6))
        kind = draw(st.sampled_from(["elman", "elman", "keras_lstm", "torch_lstm",
                                     "keras_gru", "torch_gru"]))
        if kind == "elman":
            cell = SimpleRNN(width, units, draw(st.sampled_from(ACTIVATION_NAMES)),
                             kernel_init=draw(st.sampled_from(_RECURRENT_INITS[:1] + ["ones"])),
                             recurrent_init=draw(st.sampled_from(_RECURRENT_INITS)),
                             bias_init=draw(st.sampled_from(["zeros", "ones", None,
                                                             "random_normal"])))
        else:
            make = {"keras_lstm": keras_lstm, "torch_lstm": torch_lstm,
                    "keras_gru": keras_gru, "torch_gru": torch_gru}[kind]
            cell = make(width, units)
        last = i == count - 1
        sequences = (not last) or draw(st.booleans())
        layers.append(varprop.Recurrent(cell, return_sequences=sequences))
        width = units
    if layers[-1].return_sequences:
        head = draw(st.sampled_from(["flatten", "global", "avg"]))
        if head == "flatten":
            flat = varprop.layers.walk(layers, (steps, features))[1]
            layers += [varprop.Flatten(), varprop.Dense(flat[0] * flat[1], 3, "glorot_normal")]
        elif head == "global":
            layers += [varprop.GlobalAvgPool(), varprop.Dense(width, 3, "glorot_normal")]
        else:
            layers += [varprop.AvgPool(2, padding=1, spatial_dims=1)]
    else:
        layers.append(varprop.Dense(width, 3, "glorot_normal"))
    return varprop.Network((steps, features), layers)


@settings(FUZZ, max_examples=200)  # 40 missed the identical-units defect (commit bdb7af9)
@given(net=_sequence_network(), corr=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0])),
       dtype=st.sampled_from(["float32", "float64"]))
def test_sequence_networks(net, corr, dtype):
    """Recurrent layers among other layers, every network valid by construction:
    analyze and measure return (no exception at all, not even a TypeError), with one
    row per weighted layer; exploding or vanishing values are answers."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = varprop.analyze(net, input_correlation=corr)
        m = varprop.measure(net, batch=3, seeds=1, dtype=dtype)
    assert len(p) == len(m) == net.depth
    assert not any(math.isnan(getattr(r, f)) for r in p if math.isfinite(r.z_mean)
                   for f in ("z_var", "a_var", "grad_var"))


@FUZZ
@given(data=st.binary(max_size=64), gz=st.booleans())
def test_idx(tmp_path_factory, data, gz):
    import gzip
    path = tmp_path_factory.mktemp("idx") / ("f.idx.gz" if gz else "f.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        load_idx(path)
    except EXPECTED + (OSError,):  # a corrupt gzip stream is an OSError subclass
        pass


@FUZZ
@given(n=st.integers(0, 12), epochs=WILD, lr=WILD, batch_size=WILD, seed=WILD)
def test_trainer(n, epochs, lr, batch_size, seed):
    from varprop import train
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3)).astype("f4")
    y = rng.integers(0, 2, n)
    model = _call(train.classifier, [3, 4, 2], "relu", seed=0)
    if model is not None:
        _call(train.fit, model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)


TOKENS = st.sampled_from(["report", "init", "demo", "phase", "--depth", "--width", "--batch",
                          "--seeds", "-i", "-a", "--format", "json", "text", "--shape",
                          "--param", "relu", "tanh", "he_normal", "0", "-1", "1", "3", "1e308",
                          "nan", "99999999999999999999", "", ",", "--bias-var", "--seed",
                          "--resolution", "--analytic-only", "--help", "--version"])


@FUZZ
@given(argv=st.lists(TOKENS, max_size=7))
def test_cli_arguments(argv):
    from varprop.cli import main
    if "report" in argv and "--analytic-only" not in argv or "demo" in argv:
        argv = argv + ["--depth", "2", "--width", "4"]  # keep a measured run small
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    assert code in (0, 1, 2, None), (argv, code)
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
