"""Regression tests of issue 13 of varprop.initializers: overflow, the far tail of the
truncated normal, wide uniform ranges, rank-0 shapes, Keras 3 configs, ``dtype=None``.

Statistical checks compare a sample mean with the analytic one at 5 standard errors
(analytic variance, n draws): a false alarm has probability 2 (1 - Phi(5)) = 5.7e-7 per
check under the normal approximation; the seeds are fixed, so the outcome is too.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import special, stats

import varprop.initializers as I
from varprop.initializers import _core

# --------------------------------------------------------------------------- 1. overflow
HUGE = [
    (lambda: I.xavier_normal(gain=1e300), (3, 3)),
    (lambda: I.xavier_uniform(gain=1e300), (3, 3)),
    (lambda: I.random_normal(stddev=1e300), (3, 3)),
    (lambda: I.random_normal(stddev=1e200, mean=1e300), (3, 3)),
    (lambda: I.truncated_normal(stddev=1e300), (3, 3)),
    (lambda: I.trunc_normal(std=1e300, a=-1e300, b=1e300), (3, 3)),
    (lambda: I.orthogonal(gain=1e300), (3, 3)),
    (lambda: I.identity(gain=1e300), (3, 3)),
    (lambda: I.delta_orthogonal(gain=1e300), (3, 2, 4)),
    (lambda: I.sparse(0.5, std=1e300), (4, 4)),
]


@pytest.mark.parametrize(("make", "shape"), HUGE)
def test_overflowing_variance_is_inf_in_moments(make, shape) -> None:  # type: ignore[no-untyped-def]
    m = make().moments(shape)
    assert m.var == math.inf
    assert m.second_moment == math.inf


@pytest.mark.parametrize(("make", "shape"), HUGE)
def test_huge_scale_draws_finite_float64_or_refuses_float32(make, shape) -> None:  # type: ignore[no-untyped-def]
    init = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        w = init(shape, seed=0, dtype=np.float64)
        assert np.isfinite(w).all()
        with pytest.raises(ValueError, match=r"float32 range.*float64|exceed the float32"):
            init(shape, seed=0, dtype=np.float32)


def test_huge_scale_float64_draw_has_the_stated_spread() -> None:
    w = I.random_normal(stddev=1e300)((4000,), seed=1, dtype=np.float64)
    assert np.std(w / 1e300) == pytest.approx(1.0, rel=0.05)
    w = I.xavier_normal(gain=1e300)((200, 200), seed=1, dtype=np.float64)
    assert np.std(w / 1e300) == pytest.approx(math.sqrt(2 / 400), rel=0.05)


@pytest.mark.parametrize(("make", "param"), [
    (lambda: I.random_normal(stddev=1e300), "stddev"),
    (lambda: I.random_uniform(-1e308, 1e308), "minval"),
    (lambda: I.xavier_normal(gain=1e300), "gain"),
    (lambda: I.constant(1e300), "value"),
])
def test_float32_overflow_error_names_the_parameter(make, param) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=param):
        make()((8, 8), seed=0)


def test_float16_cast_overflow_is_refused() -> None:
    with pytest.raises(ValueError, match="stddev.*float16"):
        I.random_normal(stddev=1e5)((100,), seed=0, dtype=np.float16)
    w = I.random_normal(stddev=1e3)((100,), seed=0, dtype=np.float16)  # fits: returned
    assert np.isfinite(w).all()


def test_moments_do_not_overflow_before_the_result_does() -> None:
    # stddev^2 = 1e310 overflows, the variance 1e310 * 6.2e-4 does not
    m = I.truncated_normal(stddev=1e155, lower=40.0, upper=50.0).moments(())
    _, v = _core.truncated_normal_moments(40.0, 50.0)
    assert m.var == pytest.approx(1e155 * (1e155 * v), rel=1e-12)
    assert I.random_normal(stddev=1e154).moments(()).var == pytest.approx(1e308)
    assert I.random_normal(stddev=1e155).moments(()).var == math.inf
    assert I.xavier_normal(gain=1e155).moments((300, 300)).var == pytest.approx(1e155 * (1e155 / 300))
    assert I.orthogonal(gain=1e155).moments((1000, 1000)).var == pytest.approx(1e307)
    assert I.random_uniform(-1e154, 1e154).moments(()).var == pytest.approx(1e154 * (4e154 / 12))
    assert I.random_uniform(1e308, 1.5e308).moments(()).mean == pytest.approx(1.25e308)


@pytest.mark.parametrize(("make", "param"), [
    (lambda: I.random_normal(stddev=10**400), "stddev"),
    (lambda: I.random_normal(mean=-(10**400)), "mean"),
    (lambda: I.random_uniform(maxval=10**400), "maxval"),
    (lambda: I.truncated_normal(upper=10**400), "upper"),
    (lambda: I.trunc_normal(b=10**400), "b"),
    (lambda: I.xavier_normal(gain=10**400), "gain"),
    (lambda: I.kaiming_normal(a=10**400), "a"),
    (lambda: I.variance_scaling(scale=10**400), "scale"),
    (lambda: I.orthogonal(gain=10**400), "gain"),
    (lambda: I.sparse(0.1, std=10**400), "std"),
    (lambda: I.constant(10**400), "value"),
    (lambda: I.torch_default_bias(10**400), "fan_in"),
])
def test_int_beyond_float_names_the_parameter(make, param) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=param):
        make()


def test_tiny_gain_of_a_huge_slope_draws_finite_values() -> None:
    # the gain sqrt(2 / (1 + a^2)) used to underflow to 0 (and Kaiming refused it); it is
    # sqrt(2) / a, so the weights are tiny but finite (0 in float32, where they underflow)
    w = I.kaiming_normal(a=1e300)((4, 4), seed=0, dtype=np.float64)
    assert np.all(np.isfinite(w)) and np.all(np.abs(w) < 1e-295)


# ------------------------------------------------------------------ 2. truncated normal tail
def _reference_moments(lo: float, hi: float) -> tuple[float, float]:
    """Mean and variance of N(0, 1) cut to [lo, hi] in 60-digit arithmetic (mpmath),
    independent of scipy."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        a, b = mpmath.mpf(lo), mpmath.mpf(hi)
        z = mpmath.ncdf(-a) - mpmath.ncdf(-b) if lo > 0 else mpmath.ncdf(b) - mpmath.ncdf(a)
        pa, pb = mpmath.npdf(a), mpmath.npdf(b)
        mean = (pa - pb) / z
        var = 1 + (a * pa - b * pb) / z - mean**2
        return float(mean), float(var)


TAIL = [  # (initializer, mean, std, lo, hi in standard units)
    (I.truncated_normal(stddev=1.0, lower=40.0, upper=50.0), 0.0, 1.0, 40.0, 50.0),
    (I.truncated_normal(stddev=1.0, lower=-50.0, upper=-40.0), 0.0, 1.0, -50.0, -40.0),
    (I.truncated_normal(mean=3.0, stddev=2.0, lower=38.0, upper=38.5), 3.0, 2.0, 38.0, 38.5),
    (I.trunc_normal(a=40.0, b=41.0), 0.0, 1.0, 40.0, 41.0),
    (I.trunc_normal(a=-41.0, b=-40.0), 0.0, 1.0, -41.0, -40.0),
    (I.trunc_normal(mean=1.0, std=0.5, a=30.0, b=1000.0), 1.0, 0.5, 58.0, 1998.0),
]


@pytest.mark.parametrize(("init", "mu", "sd", "lo", "hi"), TAIL)
def test_far_tail_sample_mean_matches_analytic(init, mu, sd, lo, hi) -> None:  # type: ignore[no-untyped-def]
    n = 20_000
    w = init((n,), seed=3, dtype=np.float64)
    m, v = _reference_moments(lo, hi)
    mean, var = mu + sd * m, sd * sd * v
    assert np.ptp(w) > 0  # not every draw at one bound
    assert (w >= mu + sd * lo).all() and (w <= mu + sd * hi).all()
    assert abs(w.mean() - mean) < 5 * math.sqrt(var / n)
    assert w.var() == pytest.approx(var, rel=0.1)


@pytest.mark.parametrize(("init", "mu", "sd", "lo", "hi"), TAIL)
def test_far_tail_analytic_moments_are_right(init, mu, sd, lo, hi) -> None:  # type: ignore[no-untyped-def]
    m, v = _reference_moments(lo, hi)
    got = init.moments((4,))
    assert got.mean == pytest.approx(mu + sd * m, rel=1e-12)
    assert got.var == pytest.approx(sd * sd * v, rel=1e-8)
    # scipy's truncnorm (used nearer the centre) has the mean, not the variance, out here
    sm, sv = stats.truncnorm.stats(lo, hi, moments="mv")
    assert float(sm) == pytest.approx(m, rel=1e-10)
    assert float(sv) == pytest.approx(v, rel=1e-5)


def test_tail_inverse_cdf_keeps_the_bits_near_the_centre() -> None:
    u = np.random.default_rng(0).random(1000)
    for lo, hi in [(-2.0, 2.0), (-0.5, 3.0), (1.0, 2.0), (-35.0, -30.0)]:
        if lo >= 0:
            p_lo, p_hi = special.ndtr(-hi), special.ndtr(-lo)
            old = -np.clip(special.ndtri(p_lo + u * (p_hi - p_lo)), -hi, -lo)
        else:
            p_lo, p_hi = special.ndtr(lo), special.ndtr(hi)
            old = np.clip(special.ndtri(p_lo + u * (p_hi - p_lo)), lo, hi)
        assert np.array_equal(_core._truncated_icdf(u, lo, hi), old)


# ------------------------------------------------------------------ 3. wide uniform ranges
@pytest.mark.parametrize(("lo", "hi", "dtype"), [
    (-1e308, 1e308, np.float64), (-1.7e308, 1.79e308, np.float64), (-3e38, 3e38, np.float32),
    (-3.4e38, 3.4e38, np.float32),
])
def test_wide_uniform_range_stays_finite(lo, hi, dtype) -> None:  # type: ignore[no-untyped-def]
    n = 20_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = I.random_uniform(lo, hi)((n,), seed=0, dtype=dtype).astype(np.float64)
    assert np.isfinite(w).all() and w.min() >= lo and w.max() <= hi
    s = max(hi, -lo)  # w / s in [-1, 1]: its mean is (lo + hi) / (2 s), its sd (hi - lo) / (s sqrt 12)
    assert abs((w / s).mean() - (lo / s + hi / s) / 2) < 5 * (hi / s - lo / s) / math.sqrt(12 * n)
    assert I.random_uniform(lo, hi).moments(()).mean == pytest.approx(lo / 2 + hi / 2, abs=1e300)


def test_ordinary_uniform_draw_is_unchanged() -> None:
    u = np.random.default_rng(5).random((7, 3), dtype=np.float32)
    u *= np.float32(0.2 - -0.1)
    u += np.float32(-0.1)
    assert np.array_equal(I.random_uniform(-0.1, 0.2)((7, 3), seed=5), u)


# ------------------------------------------------------------------ 4. rank-0 shapes
ELEMENTWISE = ["zeros", "ones", "constant", "random_normal", "random_uniform", "truncated_normal",
               "trunc_normal"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_rank0_shape_gives_a_0d_array(name) -> None:  # type: ignore[no-untyped-def]
    w = I.get(name)((), seed=0)
    assert w.shape == () and w.dtype == np.float32
    assert I.torch_default_bias(4)((), seed=0).shape == ()
    assert I.truncated_normal(lower=40.0, upper=41.0)((), seed=0, dtype=np.float64).shape == ()


def test_rank0_fans_are_explicit_or_refused() -> None:
    init = I.he_normal(in_axis=(), out_axis=())  # fans (1, 1), as compute_fans
    assert init((), seed=0).shape == ()
    assert init.moments(()).var == 2.0
    with pytest.raises(ValueError, match="in_axis and out_axis"):
        I.he_normal()((), seed=0)
    for make in (I.orthogonal, I.identity, I.dirac, I.delta_orthogonal, lambda: I.sparse(0.1)):
        with pytest.raises(ValueError, match="rank|2-D|3-D"):
            make()((), seed=0)


# ------------------------------------------------------------------ 5. Keras 3 configs
KERAS_CLASSES = ["VarianceScaling", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform",
                 "LecunNormal", "LecunUniform"]


@pytest.mark.parametrize("cls", KERAS_CLASSES)
def test_keras_315_config_with_null_axes_is_accepted(cls) -> None:  # type: ignore[no-untyped-def]
    config = {"seed": None, "input_axes": None, "output_axes": None}
    if cls == "VarianceScaling":
        config.update({"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"})
    init = I.get({"module": "keras.initializers", "class_name": cls, "config": config,
                  "registered_name": None})
    default = I.get(cls, **({"scale": 2.0} if cls == "VarianceScaling" else {}))
    assert init == default
    assert init.moments((3, 3, 16, 32)) == default.moments((3, 3, 16, 32))
    assert np.array_equal(init((16, 32), seed=0), default((16, 32), seed=0))


def test_keras_named_axes_give_keras_fans() -> None:
    # EinsumDense "abc,cde->abde": kernel (c, d, e), input axes [0], output axes [1, 2]
    cfg = {"class_name": "GlorotUniform", "config": {"seed": None, "input_axes": [0], "output_axes": [1, 2]}}
    init = I.get(cfg)
    assert init.fans((8, 4, 5)) == (8, 20)
    assert init.moments((8, 4, 5)).var == pytest.approx(2 / 28)
    # Keras takes the named axes only: no receptive field from the unnamed axis 0
    he = I.get({"class_name": "HeNormal", "config": {"seed": None, "input_axes": [1], "output_axes": [2]}})
    assert he.moments((3, 16, 32)).var == pytest.approx(2 / 16)
    assert I.get(he.get_config()) == he
    assert he.get_config()["input_axes"] == [1]
    # one alone is ignored, as Keras does
    alone = I.get({"class_name": "HeNormal", "config": {"seed": None, "input_axes": [1], "output_axes": None}})
    assert alone.moments((3, 16, 32)).var == pytest.approx(2 / 48)


def test_keras_named_axes_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="input_axes and output_axes"):
        I.he_normal(input_axes=[0], output_axes=[1], in_axis=0)
    with pytest.raises(TypeError, match="input_axes"):
        I.he_normal(input_axes=3, output_axes=[1])
    with pytest.raises(ValueError, match="out of range"):
        I.he_normal(input_axes=[0], output_axes=[5]).moments((3, 4))
    assert "input_axes" in I.HeNormal.parameter_names()


# ------------------------------------------------------------------ 6. config and dtype
@pytest.mark.parametrize("inner", [[1, 2], "seed=0", 3])
def test_keras_config_not_a_dict_names_config(inner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="config must be a dict"):
        I.get({"class_name": "HeNormal", "config": inner})
    assert I.get({"class_name": "HeNormal", "config": None}) == I.he_normal()


@pytest.mark.parametrize("name", ["he_normal", "random_normal", "zeros", "orthogonal"])
def test_dtype_none_is_the_float32_default(name) -> None:  # type: ignore[no-untyped-def]
    init = I.get(name)
    w = init((4, 4), seed=0, dtype=None)
    assert w.dtype == np.float32
    assert np.array_equal(w, init((4, 4), seed=0))


def test_leaky_gain_of_a_huge_slope_does_not_underflow():
    # slope^2 overflowed and the gain became 0; sqrt(2 / (1 + s^2)) = sqrt(2) / s there
    import math
    assert I.calculate_gain("leaky_relu", 1e300) == pytest.approx(math.sqrt(2) * 1e-300,
                                                                       rel=1e-15)
    assert I.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
