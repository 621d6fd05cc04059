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
