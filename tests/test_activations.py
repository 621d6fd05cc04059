"""The activation registry and the C activation math against the numpy reference."""

import warnings

import numpy as np
import pytest

import varprop
from varprop import _reference as ref
from varprop.activations import ACTIVATION_NAMES, Activation, get_activation

# The accuracy contract: float32 within 1e-6 relative (1e-7 absolute near zero),
# float64 within 1e-13 relative. The float64 absolute floor of 1e-16 covers the zero
# crossings of derivatives (silu' at x ~ -1.28) and the subnormal tails (< 1e-300) that
# the C exp flushes to 0.
TOLERANCE = {np.float32: (1e-6, 1e-7), np.float64: (1e-13, 1e-16)}

EXTREMES = np.array([-np.inf, -1e4, -800.0, -745.0, -710.0, -41.0, -40.0, -38.0, -5.0,
                     -1e-300, -0.0, 0.0, 1e-300, 5.0, 38.0, 40.0, 41.0, 709.0, 710.0, 1e4,
                     np.inf])


def _inputs(dtype):
    rng = np.random.default_rng(12345)
    scales = (1e-6, 1e-3, 0.1, 1.0, 3.0, 10.0, 30.0)
    x = np.concatenate([rng.standard_normal(4000) * s for s in scales] + [EXTREMES])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("derivative", [False, True], ids=["value", "derivative"])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_c_math_matches_float64_reference(name, derivative, dtype):
    x = _inputs(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings, from either side
        fast = varprop.activation_apply(x, name, derivative=derivative)
        slow = ref.activation_apply(x.astype(np.float64), name, derivative=derivative)
    assert fast.dtype == dtype
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow), err_msg=f"{name} NaN")
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(fast.astype(np.float64), slow, rtol=rtol, atol=atol,
                               err_msg=f"{name} derivative={derivative} {dtype.__name__}")


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_nan_in_nan_out_and_no_nan_otherwise(name):
    x = np.array([np.nan, -np.inf, np.inf, -1e4, 1e4])
    for derivative in (False, True):
        out = varprop.activation_apply(x, name, derivative=derivative)
        assert np.isnan(out[0])
        assert not np.isnan(out[1:]).any(), (name, derivative, out)
        ref_out = ref.activation_apply(x, name, derivative=derivative)
        assert not np.isnan(ref_out[1:]).any(), (name, derivative, ref_out)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivatives_match_finite_differences(name):
    act = get_activation(name)
    x = np.linspace(-4, 4, 41) + 0.013  # off the kinks
    h = 1e-6
    fd = (act(x + h) - act(x - h)) / (2 * h)
    # central difference error <= h^2 / 6 max|phi'''| + 2 eps |phi| / h; both below 1e-8
    np.testing.assert_allclose(act.derivative(x), fd, atol=1e-8)
    fd2 = (act.derivative(x + h) - act.derivative(x - h)) / (2 * h)
    np.testing.assert_allclose(act.second_derivative(x), fd2, atol=1e-8)


def test_parameters_by_keyword_and_by_object_agree():
    x = np.linspace(-3, 3, 13)
    by_kw = varprop.activation_apply(x, "leaky_relu", negative_slope=0.2)
    by_obj = varprop.activation_apply(x, Activation("leaky_relu", negative_slope=0.2))
    np.testing.assert_array_equal(by_kw, by_obj)
    np.testing.assert_array_equal(by_kw, np.where(x > 0, x, 0.2 * x))
    elu = get_activation("elu", alpha=0.5)
    np.testing.assert_allclose(elu(np.array([-1.0])), 0.5 * np.expm1(-1.0), rtol=1e-15)


def test_selu_constants_give_the_self_normalizing_fixed_point():
    # E[selu(z)] = 0 and E[selu(z)^2] = 1 for z ~ N(0, 1) (Klambauer et al. 2017)
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    s = get_activation("selu")(nodes)
    # the kink at 0 limits Gauss-Hermite to ~1e-4; the closed forms are in test_gaussian
    assert abs(weights @ s) < 1e-3 and abs(weights @ s**2 - 1) < 1e-3


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown name 'rleu'.*Did you mean 'relu'"):
        get_activation("rleu")
    with pytest.raises(ValueError, match="Valid names: linear, relu"):
        get_activation("nope")
    with pytest.raises(TypeError, match="unexpected parameter.*alpha.*negative_slope"):
        get_activation("leaky_relu", alpha=0.1)
    with pytest.raises(TypeError, match="parameter 'alpha' must be a real number"):
        get_activation("elu", alpha="big")
    with pytest.raises(ValueError, match="'negative_slope' must be finite"):
        get_activation("leaky_relu", negative_slope=float("nan"))
    with pytest.raises(ValueError, match="'alpha' must be >= 0"):
        get_activation("elu", alpha=-1.0)
    with pytest.raises(TypeError, match="were given with an Activation object"):
        get_activation(Activation("relu"), negative_slope=0.1)
    with pytest.raises(TypeError, match="name \\(str\\) or an Activation"):
        get_activation(3)


def test_aliases_configs_and_equality():
    assert get_activation("swish") == get_activation("silu")
    act = get_activation({"name": "leaky_relu", "negative_slope": 0.3})
    assert act.params == {"negative_slope": 0.3}
    assert get_activation(act.get_config()) == act
    assert hash(act) == hash(Activation("leaky_relu", negative_slope=0.3))
    assert "negative_slope=0.3" in repr(act)


def test_activation_apply_keeps_shape_and_rejects_integers():
    x = np.zeros((2, 3, 4), np.float32)
    assert varprop.activation_apply(x, "tanh").shape == (2, 3, 4)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int64"):
        varprop.activation_apply(np.zeros(3, np.int64), "relu")
