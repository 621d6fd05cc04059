"""Tests of varprop.initializers: sample moments against the analytic ones, registry,
properties (bad input: tests/test_initializers_errors.py).

Statistical checks use a stated false-alarm probability per check, ALPHA, and
tolerances derived from the sample size: a z-score against the analytic standard
error (for the sample variance, sqrt((mu4 - sigma^4) / N) with mu4 the distribution's
fourth central moment), or a Kolmogorov-Smirnov p-value against the exact
distribution (scipy.stats). Every draw is seeded, so the tests are deterministic.
The oracles are scipy.stats distributions built here from each scheme's published
formula, independently of the code under test.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import varprop.initializers as I

ALPHA = 1e-6
"""False-alarm probability of each statistical check (two-sided)."""
Z_CRIT = float(stats.norm.isf(ALPHA / 2))  # 4.89

F_TRUNC = float(stats.truncnorm(-2, 2).std())  # std of N(0,1) cut at +-2, scipy's value


# --------------------------------------------------------------------------- oracles
def _trunc(std_after: float) -> stats.rv_continuous:
    """Keras/JAX variance-scaling truncated normal: cut at +-2 pre-truncation std, std after = std_after."""
    s = std_after / F_TRUNC
    return stats.truncnorm(-2, 2, loc=0.0, scale=s)


def _unif_sym(limit: float) -> stats.rv_continuous:
    return stats.uniform(-limit, 2 * limit)


def _leaky_gain(s: float) -> float:
    return math.sqrt(2 / (1 + s * s))


# name -> (constructor params, oracle(fan_in, fan_out) -> scipy distribution)
IID_CASES: dict[str, tuple[dict, object]] = {
    "random_normal": (dict(mean=0.3, stddev=0.2), lambda fi, fo: stats.norm(0.3, 0.2)),
    "random_uniform": (dict(minval=-0.1, maxval=0.3), lambda fi, fo: stats.uniform(-0.1, 0.4)),
    "truncated_normal": (dict(mean=0.1, stddev=0.5), lambda fi, fo: stats.truncnorm(-2, 2, 0.1, 0.5)),
    "truncated_normal_asym": (
        dict(stddev=1.5, lower=-1.0, upper=3.0),
        lambda fi, fo: stats.truncnorm(-1, 3, 0.0, 1.5),
    ),
    "trunc_normal": (
        dict(mean=1.0, std=2.0, a=-1.0, b=4.0),
        lambda fi, fo: stats.truncnorm(-1.0, 1.5, loc=1.0, scale=2.0),
    ),
    "trunc_normal_tail": (  # interval holding < 1 % of the mass: the inverse-CDF path
        dict(mean=0.0, std=1.0, a=2.5, b=4.0),
        lambda fi, fo: stats.truncnorm(2.5, 4.0),
    ),
    "variance_scaling": (
        dict(scale=3.0, mode="fan_geo_avg", distribution="normal"),
        lambda fi, fo: stats.norm(0, math.sqrt(3.0 / math.sqrt(fi * fo))),
    ),
    "variance_scaling_trunc_out": (
        dict(scale=0.5, mode="fan_out", distribution="truncated_normal"),
        lambda fi, fo: _trunc(math.sqrt(0.5 / fo)),
    ),
    "variance_scaling_uniform_avg": (
        dict(scale=1.7, mode="fan_avg", distribution="uniform"),
        lambda fi, fo: _unif_sym(math.sqrt(3 * 1.7 / ((fi + fo) / 2))),
    ),
    "glorot_normal": ({}, lambda fi, fo: _trunc(math.sqrt(2 / (fi + fo)))),
    "glorot_uniform": ({}, lambda fi, fo: _unif_sym(math.sqrt(6 / (fi + fo)))),
    "xavier_normal": (dict(gain=1.5), lambda fi, fo: stats.norm(0, 1.5 * math.sqrt(2 / (fi + fo)))),
    "xavier_uniform": (dict(gain=0.7), lambda fi, fo: _unif_sym(0.7 * math.sqrt(6 / (fi + fo)))),
    "he_normal": ({}, lambda fi, fo: _trunc(math.sqrt(2 / fi))),
    "he_uniform": ({}, lambda fi, fo: _unif_sym(math.sqrt(6 / fi))),
    "lecun_normal": ({}, lambda fi, fo: _trunc(math.sqrt(1 / fi))),
    "lecun_uniform": ({}, lambda fi, fo: _unif_sym(math.sqrt(3 / fi))),
    "kaiming_normal": (
        dict(a=0.3, mode="fan_out", nonlinearity="leaky_relu"),
        lambda fi, fo: stats.norm(0, _leaky_gain(0.3) / math.sqrt(fo)),
    ),
    "kaiming_uniform": (
        dict(a=math.sqrt(5)),
        lambda fi, fo: _unif_sym(_leaky_gain(math.sqrt(5)) * math.sqrt(3 / fi)),
    ),
    "kaiming_normal_tanh": (
        dict(nonlinearity="tanh", a=0.5),  # a is ignored for tanh, as in PyTorch
        lambda fi, fo: stats.norm(0, (5 / 3) / math.sqrt(fi)),
    ),
    "torch_default": ({}, lambda fi, fo: _unif_sym(1 / math.sqrt(fi))),
    "torch_default_bias": (dict(fan_in=50), lambda fi, fo: _unif_sym(1 / math.sqrt(50))),
}


def _registry_name(case: str) -> str:
    for name in sorted(I.available_initializers(), key=len, reverse=True):
        if case == name or case.startswith(name + "_"):
            return name
    raise KeyError(case)


def z_mean(x: np.ndarray, mean: float, var: float) -> float:
    """z-score of the sample mean against the analytic mean (SE = sqrt(var / N))."""
    return (float(np.mean(x, dtype=np.float64)) - mean) / math.sqrt(var / x.size)


def z_var(x: np.ndarray, mean: float, var: float, mu4: float) -> float:
    """z-score of mean((x - mean)^2) against var; SE = sqrt((mu4 - var^2) / N) exactly."""
    d = x.astype(np.float64) - mean
    return (float(np.mean(d * d)) - var) / math.sqrt((mu4 - var * var) / x.size)


def fourth_central(dist) -> float:  # type: ignore[no-untyped-def]
    var, kurt = (float(v) for v in dist.stats(moments="vk"))
    return (kurt + 3.0) * var * var


# --------------------------------------------------------------------------- iid schemes
SHAPE = (500, 400)  # keras layout: fan_in 500, fan_out 400; 200,000 samples


@pytest.mark.parametrize("case", sorted(IID_CASES))
def test_iid_scheme_matches_its_exact_distribution(case: str) -> None:
    params, oracle = IID_CASES[case]
    init = I.get(_registry_name(case), **params)
    dist = oracle(*SHAPE)  # type: ignore[operator]
    mean, var = float(dist.mean()), float(dist.var())

    m = init.moments(SHAPE)
    assert m.structure == "iid" and not m.symmetric
    assert m.mean == pytest.approx(mean, rel=1e-12, abs=1e-15)
    assert m.var == pytest.approx(var, rel=1e-12)
    assert m.second_moment == pytest.approx(var + mean**2, rel=1e-12)

    x = init(SHAPE, seed=1234, dtype=np.float64).ravel()
    assert abs(z_mean(x, mean, var)) < Z_CRIT
    assert abs(z_var(x, mean, var, fourth_central(dist))) < Z_CRIT
    assert stats.kstest(x, dist.cdf).pvalue > ALPHA
    lo, hi = dist.support()
    assert x.min() >= lo and x.max() <= hi


@pytest.mark.parametrize("name", ["he_normal", "glorot_uniform", "truncated_normal", "random_normal"])
def test_float32_draws_follow_the_same_law(name: str) -> None:
    params, oracle = IID_CASES[name]
    init = I.get(name, **params)
    x = init(SHAPE, seed=99)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    dist = oracle(*SHAPE)  # type: ignore[operator]
    assert stats.kstest(x.ravel().astype(np.float64), dist.cdf).pvalue > ALPHA


def test_truncation_constant_is_the_truncated_std() -> None:
    assert I.TRUNCATED_NORMAL_STD_FACTOR == pytest.approx(F_TRUNC, rel=2e-16)
    mean, var = I.truncated_normal_moments(-2.0, 2.0)
    assert mean == 0.0
    assert math.sqrt(var) == pytest.approx(I.TRUNCATED_NORMAL_STD_FACTOR, rel=2e-16)
    # the variance-scaling truncated normal has variance exactly scale / n
    assert I.he_normal().moments((300, 7)).var == 2.0 / 300


@pytest.mark.parametrize(
    ("layout", "shape", "fan_in"),
    [("keras", (3, 3, 16, 32), 144), ("torch", (32, 16, 3, 3), 144), ("keras", (5, 8, 12), 40)],
)
def test_conv_shapes_use_the_receptive_field(layout: str, shape: tuple, fan_in: int) -> None:
    init = I.he_uniform(layout=layout)
    assert init.moments(shape).var == 2.0 / fan_in
    x = init(shape, seed=3).astype(np.float64).ravel()
    limit = math.sqrt(6.0 / fan_in)
    dist = _unif_sym(limit)
    assert abs(x).max() <= limit
    assert abs(z_var(x, 0.0, dist.var(), fourth_central(dist))) < Z_CRIT


# --------------------------------------------------------------------------- constants
@pytest.mark.parametrize(("init", "value"), [(I.zeros(), 0.0), (I.ones(), 1.0), (I.constant(-0.25), -0.25)])
def test_constants_are_flagged_symmetric(init: I.Initializer, value: float) -> None:
    w = init((4, 6), seed=0)
    assert np.all(w == value) and w.dtype == np.float32
    m = init.moments((4, 6))
    assert (m.mean, m.var, m.symmetric, m.structure) == (value, 0.0, True, "constant")
    assert m.second_moment == value**2
    mean, var = m  # unpacks as (mean, var)
    assert (mean, var) == (value, 0.0)


# --------------------------------------------------------------------------- every name
def _default_instance(name: str) -> I.Initializer:
    required = {"sparse": dict(sparsity=0.25), "torch_default_bias": dict(fan_in=9)}
    return I.get(name, **required.get(name, {}))


def _shape_for(name: str) -> tuple[int, ...]:
    return (4, 5, 6) if name in ("dirac", "delta_orthogonal") else (40, 30)


@pytest.mark.parametrize("name", I.available_initializers())
def test_every_registered_initializer(name: str) -> None:
    init = _default_instance(name)
    assert init.name == name
    shape = _shape_for(name)
    # determinism by seed, SeedSequence and Generator (used as is)
    a = init(shape, seed=7)
    assert np.array_equal(a, init(shape, seed=7))
    assert np.array_equal(a, init(shape, seed=np.random.SeedSequence(7)))
    g = np.random.default_rng(7)
    assert np.array_equal(a, init(shape, seed=g))
    assert I.as_generator(g) is g
    assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
    assert init(shape, seed=7, dtype=np.float64).dtype == np.float64
    assert init(shape, seed=7, dtype="float16").dtype == np.float16
    # config round trip through JSON
    config = init.get_config()
    assert config["name"] == name and config == init.to_config()
    again = I.get(json.loads(json.dumps(config)))
    assert again == init and hash(again) == hash(init)
    assert np.array_equal(again(shape, seed=11), init(shape, seed=11))
    assert I.get(init) is init
    # the moments are a WeightMoments of a known structure
    m = init.moments(shape)
    assert isinstance(m, I.WeightMoments) and m.structure in I.STRUCTURES
    assert m.var >= 0 and math.isfinite(m.mean)
    assert repr(init).startswith(type(init).__name__ + "(")


@pytest.mark.parametrize("name", I.available_initializers())
def test_zero_size_shapes_give_empty_arrays_quietly(name: str) -> None:
    init = _default_instance(name)
    shapes = [(3, 3, 0, 4), (3, 3, 4, 0)] if name in ("dirac", "delta_orthogonal") else [(0, 5), (5, 0)]
    if name == "delta_orthogonal":
        shapes = [(3, 3, 0, 4), (3, 0, 2, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in shapes:
            w = init(shape, seed=0)
            assert w.shape == shape and w.size == 0


NON_DEFAULT = [
    (I.constant(2.5), (3, 4)),
    (I.random_normal(mean=1.0, stddev=0.3), (3, 4)),
    (I.random_uniform(0.0, 2.0), (3, 4)),
    (I.truncated_normal(stddev=0.2, lower=-1.0, upper=3.0), (3, 4)),
    (I.trunc_normal(mean=1.0, std=0.5, a=0.0, b=3.0), (3, 4)),
    (I.variance_scaling(0.5, "fan_geo_avg", "uniform", in_axis=0, out_axis=2, batch_axis=(1,)), (3, 5, 4)),
    (I.he_normal(layout="torch", groups=2), (8, 3, 3, 3)),
    (I.xavier_uniform(gain=1.3, transposed=True, layout="torch"), (8, 4, 3)),
    (I.kaiming_uniform(a=0.3, mode="fan_out", nonlinearity="tanh", depthwise=True), (3, 3, 8, 2)),
    (I.orthogonal(gain=0.5, layout="torch"), (6, 3, 2)),
    (I.identity(gain=3.0), (4, 6)),
    (I.dirac(groups=2, layout="torch"), (6, 3, 3, 3)),
    (I.delta_orthogonal(gain=2.0, layout="torch"), (8, 4, 3, 3)),
    (I.sparse(0.4, std=0.3, layout="torch"), (10, 7)),
    (I.torch_default(layout="torch"), (8, 3, 3)),
    (I.torch_default_bias(fan_in=12), (5,)),
]


@pytest.mark.parametrize(("init", "shape"), NON_DEFAULT, ids=lambda v: getattr(v, "name", str(v)))
def test_config_round_trip_keeps_every_parameter(init: I.Initializer, shape: tuple) -> None:
    again = I.get(json.loads(json.dumps(init.get_config())))
    assert again == init and again.get_config() == init.get_config()
    assert np.array_equal(again(shape, seed=3), init(shape, seed=3))
    assert again.moments(shape) == init.moments(shape)


def test_generator_advances_and_seeds_differ() -> None:
    init = I.he_normal()
    g = np.random.default_rng(5)
    first, second = init((8, 8), seed=g), init((8, 8), seed=g)
    assert not np.array_equal(first, second)
    assert not np.array_equal(init((8, 8), seed=1), init((8, 8), seed=2))


def test_docstring_examples() -> None:
    import doctest
    import importlib

    for mod in ("fans", "gains", "registry", "scaling", "simple"):
        module = importlib.import_module(f"varprop.initializers.{mod}")
        result = doctest.testmod(module, extraglobs={"np": np, **vars(module)})
        assert result.failed == 0, mod


def test_known_values_are_stable_across_versions() -> None:
    # PCG64 streams are stable across numpy versions and platforms; pin one draw.
    w = I.random_normal(stddev=1.0)((3,), seed=0, dtype=np.float64)
    np.testing.assert_array_equal(w, np.random.default_rng(0).standard_normal(3))


# --------------------------------------------------------------------------- registry
def test_names_from_every_ecosystem_resolve() -> None:
    expect = {
        "HeNormal": "he_normal",
        "GlorotUniform": "glorot_uniform",
        "VarianceScaling": "variance_scaling",
        "OrthogonalInitializer": "orthogonal",
        "IdentityInitializer": "identity",
        "zero": "zeros",
        "one": "ones",
        "kaiming_normal_": "kaiming_normal",
        "xavier_uniform_": "xavier_uniform",
        "trunc_normal_": "trunc_normal",
        "eye_": "identity",
        "dirac_": "dirac",
        "delta_orthogonal": "delta_orthogonal",
        "henormal": "he_normal",
    }
    for alias, canonical in expect.items():
        assert I.resolve_name(alias) == canonical
    assert set(I.available_initializers()) <= set(I.available_initializers(aliases=True))
    assert "HeNormal" in I.available_initializers(aliases=True)


def test_keras_config_format_is_read() -> None:
    init = I.get(
        {
            "module": "keras.initializers",
            "class_name": "VarianceScaling",
            "config": {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal", "seed": None},
            "registered_name": None,
        }
    )
    assert init == I.variance_scaling(2.0, "fan_in", "normal")
    assert I.get({"class_name": "HeNormal", "config": {"seed": None}}) == I.he_normal()
    with pytest.raises(ValueError, match="seed"):
        I.get({"class_name": "HeNormal", "config": {"seed": 3}})


def test_get_with_params_and_fan_options() -> None:
    init = I.get("kaiming_normal", a=0.2, layout="torch")
    assert init.get_config()["layout"] == "torch" and init.get_config()["a"] == 0.2
    assert init.moments((64, 32)).var == pytest.approx(2 / (1 + 0.04) / 32, rel=1e-15)
    assert I.get("random_normal", stddev=0.1).moments((2, 2)).var == pytest.approx(0.01)
    assert I.get({"name": "he_normal"}, layout="torch").fan_options.layout == "torch"


# --------------------------------------------------------------------------- properties
FAN_SCHEMES = [
    "lecun_normal",
    "lecun_uniform",
    "glorot_normal",
    "glorot_uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "torch_default",
]


def _dist_for(name: str, fan_in: int, fan_out: int):  # type: ignore[no-untyped-def]
    params, oracle = IID_CASES[name] if name in IID_CASES else ({}, None)
    if name in ("xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"):
        params = {}
        oracle = {
            "xavier_normal": lambda fi, fo: stats.norm(0, math.sqrt(2 / (fi + fo))),
            "xavier_uniform": lambda fi, fo: _unif_sym(math.sqrt(6 / (fi + fo))),
            "kaiming_normal": lambda fi, fo: stats.norm(0, math.sqrt(2 / fi)),
            "kaiming_uniform": lambda fi, fo: _unif_sym(math.sqrt(6 / fi)),
        }[name]
    return params, oracle(fan_in, fan_out)  # type: ignore[misc]


conv_shapes = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 12)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
)


IID_SCHEMES = FAN_SCHEMES + ["random_normal", "random_uniform", "truncated_normal", "trunc_normal",
                             "variance_scaling", "torch_default_bias"]


@settings(deadline=None, max_examples=40, derandomize=True)
@given(
    name=st.sampled_from(IID_SCHEMES),
    shape=conv_shapes,
    layout=st.sampled_from(["keras", "torch"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_moments_agree_with_moments_over_shapes(name: str, shape: tuple, layout: str, seed: int) -> None:
    fan_in, fan_out = I.compute_fans(shape, layout=layout)
    params, dist = _dist_for(name, fan_in, fan_out)
    init = I.get(name, layout=layout, **params)
    m = init.moments(shape)
    assert m.var == pytest.approx(float(dist.var()), rel=1e-12)
    assert m.mean == pytest.approx(float(dist.mean()), rel=1e-12, abs=1e-15)
    # enough independent draws (a Generator reused) for the CLT: >= 4000 samples
    g = np.random.default_rng(seed)
    reps = -(-4000 // math.prod(shape))
    x = np.concatenate([init(shape, seed=g, dtype=np.float64).ravel() for _ in range(reps)])
    assert abs(z_mean(x, m.mean, m.var)) < Z_CRIT
    assert abs(z_var(x, m.mean, m.var, fourth_central(dist))) < Z_CRIT


def _layer_second_moment(x: np.ndarray, w: np.ndarray, relu: bool) -> tuple[float, float]:
    """Mean over batch and units of z^2 (or relu(z)^2) and its conditional variance given W.

    The per-sample averages s_b = mean_j z_bj^2 are iid over the batch given W, so
    Var(mean_b s_b | W) = Var(s_b) / B, estimated from the batch.
    """
    z = x @ w
    if relu:
        np.maximum(z, 0.0, out=z)
    s = np.mean(z * z, axis=1)
    return float(s.mean()), float(s.var(ddof=1) / s.size)


@settings(deadline=None, max_examples=30, derandomize=True)
@given(
    name=st.sampled_from(["lecun_normal", "lecun_uniform", "glorot_normal", "xavier_uniform", "he_normal",
                          "kaiming_uniform", "torch_default"]),
    n_in=st.integers(32, 256),
    n_out=st.integers(32, 256),
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_layer_second_moment_is_n_in_var_w(name: str, n_in: int, n_out: int, seed: int) -> None:
    """E[z^2] = n_in Var[W] E[x^2] for z = x @ W, x ~ N(0, 1) (docs/theory.md section 2).

    Var(estimate) = E[Var(. | W)] + Var(||W||^2 / n_out) = Var(s_b)/B + n_in (mu4 - sigma^4) / n_out.
    Xavier with n_in != n_out gives 2 n_in / (n_in + n_out), Glorot & Bengio's trade-off.
    """
    rng = np.random.default_rng(seed)
    init = I.get(name)
    w = init((n_in, n_out), seed=rng, dtype=np.float64)
    var_w = init.moments((n_in, n_out)).var
    _, dist = _dist_for(name, n_in, n_out)
    x = rng.standard_normal((1024, n_in))
    est, cond_var = _layer_second_moment(x, w, relu=False)
    weight_var = n_in * (fourth_central(dist) - var_w**2) / n_out
    expected = n_in * var_w
    assert abs(est - expected) / math.sqrt(cond_var + weight_var) < Z_CRIT
    if name in ("glorot_normal", "xavier_uniform"):
        assert expected == pytest.approx(2 * n_in / (n_in + n_out), rel=1e-12)


@settings(deadline=None, max_examples=30, derandomize=True)
@given(
    name=st.sampled_from(["he_normal", "he_uniform", "kaiming_normal"]),
    n_in=st.integers(32, 256),
    n_out=st.integers(32, 256),
    seed=st.integers(0, 2**32 - 1),
)
def test_he_with_relu_keeps_the_second_moment(name: str, n_in: int, n_out: int, seed: int) -> None:
    """He et al. 2015: n_in Var[W] = 2, so E[relu(z)^2] = n_in Var[W] E[x^2] / 2 = E[x^2] = 1."""
    rng = np.random.default_rng(seed)
    init = I.get(name)
    w = init((n_in, n_out), seed=rng, dtype=np.float64)
    var_w = init.moments((n_in, n_out)).var
    assert n_in * var_w == pytest.approx(2.0, rel=1e-12)
    _, dist = _dist_for(name, n_in, n_out)
    x = rng.standard_normal((1024, n_in))
    est, cond_var = _layer_second_moment(x, w, relu=True)
    weight_var = n_in * (fourth_central(dist) - var_w**2) / (4 * n_out)
    assert abs(est - 1.0) / math.sqrt(cond_var + weight_var) < Z_CRIT
