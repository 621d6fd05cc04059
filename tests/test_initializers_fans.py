"""Fans per layout (tables written out by hand), gains, and recommended initializers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

import varprop.initializers as I

# (description, shape, compute_fans kwargs, expected varprop fans, what PyTorch/Keras return)
FAN_TABLE = [
    ("dense keras (in 5, out 7)", (5, 7), {}, (5, 7), (5, 7)),
    ("dense torch (out 7, in 5)", (7, 5), dict(layout="torch"), (5, 7), (5, 7)),
    ("dense jax", (5, 7), dict(layout="jax"), (5, 7), (5, 7)),
    ("conv1d keras (k5, in4, out6)", (5, 4, 6), {}, (20, 30), (20, 30)),
    ("conv1d torch (out6, in4, k5)", (6, 4, 5), dict(layout="torch"), (20, 30), (20, 30)),
    ("conv2d keras (3,3,16,32)", (3, 3, 16, 32), {}, (144, 288), (144, 288)),
    ("conv2d torch (32,16,3,3)", (32, 16, 3, 3), dict(layout="torch"), (144, 288), (144, 288)),
    ("conv3d keras (2,3,4,in5,out6)", (2, 3, 4, 5, 6), {}, (120, 144), (120, 144)),
    ("conv3d torch (6,5,2,3,4)", (6, 5, 2, 3, 4), dict(layout="torch"), (120, 144), (120, 144)),
    # Conv2d(16, 32, 3, groups=4): weight (32, 4, 3, 3); each output sees 4*9 inputs,
    # each input feeds 8*9 outputs. PyTorch says fan_out = 32*9 (pytorch#23854).
    ("grouped torch", (32, 4, 3, 3), dict(layout="torch", groups=4), (36, 72), (36, 288)),
    ("grouped keras", (3, 3, 4, 32), dict(groups=4), (36, 72), (36, 288)),
    # depthwise Conv2d(8, 16, 3, groups=8): weight (16, 1, 3, 3): (9, 2*9).
    ("depthwise torch", (16, 1, 3, 3), dict(layout="torch", groups=8), (9, 18), (9, 144)),
    # Keras DepthwiseConv2D(3, depth_multiplier=2) on 8 channels: kernel (3, 3, 8, 2).
    ("depthwise keras", (3, 3, 8, 2), dict(depthwise=True), (9, 18), (72, 18)),
    ("depthwise keras, groups given", (3, 3, 8, 2), dict(depthwise=True, groups=8), (9, 18), (72, 18)),
    # ConvTranspose2d(16, 32, 3): weight (in 16, out 32, 3, 3): each output sees 16*9.
    ("transposed torch", (16, 32, 3, 3), dict(layout="torch", transposed=True), (144, 288), (288, 144)),
    ("transposed torch as torch", (16, 32, 3, 3), dict(layout="torch"), (288, 144), (288, 144)),
    # ConvTranspose2d(16, 32, 3, groups=4): weight (16, 8, 3, 3): (4*9, 8*9).
    ("transposed grouped torch", (16, 8, 3, 3), dict(layout="torch", transposed=True, groups=4), (36, 72),
     (72, 144)),
    # Keras Conv2DTranspose(32) on 16 channels: kernel (3, 3, out 32, in 16).
    ("transposed keras", (3, 3, 32, 16), dict(transposed=True), (144, 288), (288, 144)),
    # JAX explicit axes
    ("jax batch axis", (7, 3, 3, 16, 32), dict(layout="jax", batch_axis=0), (144, 288), None),
    ("jax int batch axis", (3, 3, 16, 32, 7), dict(batch_axis=-1, in_axis=-3, out_axis=-2), (144, 288), None),
    ("jax tuple axes", (2, 3, 5), dict(in_axis=(0, 1), out_axis=2), (6, 5), None),
    ("jax in first", (16, 3, 3, 32), dict(in_axis=0, out_axis=-1), (144, 288), None),
    ("vector as fan-in", (9,), dict(in_axis=0, out_axis=()), (9, 1), None),
    ("scalar", (), dict(in_axis=(), out_axis=()), (1, 1), None),
]


@pytest.mark.parametrize(("what", "shape", "kwargs", "fans", "library"), FAN_TABLE, ids=[r[0] for r in FAN_TABLE])
def test_fan_table(what: str, shape: tuple, kwargs: dict, fans: tuple, library: tuple | None) -> None:
    got = I.compute_fans(shape, **kwargs)
    assert got == fans and all(type(f) is int for f in got)
    if library is not None:
        # What PyTorch / Keras compute: the plain rule without groups, transposition or depthwise.
        plain = {k: v for k, v in kwargs.items() if k in ("layout",)}
        assert I.compute_fans(shape, **plain) == library


def test_fan_options_reach_the_moments() -> None:
    w_torch = (32, 16, 3, 3)
    assert I.he_normal(layout="torch").moments(w_torch).var == 2 / 144
    assert I.he_normal().moments(w_torch, layout="torch").var == 2 / 144
    assert I.he_normal().moments(w_torch).var == 2 / (16 * 32 * 3)  # read as keras: in 3, out 3
    grouped = I.glorot_uniform(layout="torch", groups=4)
    assert grouped.moments((32, 4, 3, 3)).var == 2 / (36 + 72)
    assert grouped.get_config()["groups"] == 4
    assert I.get(grouped.get_config()) == grouped


BAD_FANS = [
    (dict(shape=(5,)), ValueError, "pass in_axis and out_axis"),
    (dict(shape=()), ValueError, "pass in_axis and out_axis"),
    (dict(shape=(5,), layout="torch"), ValueError, "pass in_axis and out_axis"),
    (dict(shape=(4, 5), layout="tf"), ValueError, "layout"),
    (dict(shape=(4, 5), in_axis=2), ValueError, "in_axis"),
    (dict(shape=(4, 5), in_axis=1, out_axis=1), ValueError, "in_axis"),
    (dict(shape=(4, 5, 6), batch_axis=(0, 0)), ValueError, "batch_axis"),
    (dict(shape=(4, 5, 6), batch_axis=1), ValueError, "batch_axis"),
    (dict(shape=(4, 5), out_axis="1"), TypeError, "out_axis"),
    (dict(shape=(4, 5), groups=0), ValueError, "groups"),
    (dict(shape=(4, 6), groups=4), ValueError, "groups"),
    (dict(shape=(4, 6), groups=True), TypeError, "groups"),
    (dict(shape=(4, 6), transposed=1), TypeError, "transposed"),
    (dict(shape=(3, 3, 8, 2), depthwise=True, groups=4), ValueError, "groups"),
    (dict(shape=(16, 1, 3, 3), depthwise=True, layout="torch"), ValueError, "groups=in_channels"),
    (dict(shape=(3, 3, 8, 2), depthwise=True, transposed=True), ValueError, "depthwise"),
    (dict(shape=(4.0, 5)), TypeError, "shape"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BAD_FANS)
def test_bad_fan_arguments(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        I.compute_fans(**kwargs)


# --------------------------------------------------------------------------- gains
def test_pytorch_gain_table() -> None:
    expect = {
        "linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
        "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5 / 3,
        "relu": math.sqrt(2), "selu": 0.75,
    }
    for name, gain in expect.items():
        assert I.calculate_gain(name) == gain
    assert I.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert I.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / (1 + 0.2**2))
    assert I.calculate_gain("leaky_relu", 0) == math.sqrt(2)
    assert I.calculate_gain("relu", 0.3) == math.sqrt(2)  # param ignored, as in PyTorch
    assert I.calculate_gain("ReLU") == math.sqrt(2)


def _second_moment(phi) -> float:  # type: ignore[no-untyped-def]
    """E[phi(z)^2], z ~ N(0, 1), by adaptive quadrature split at the kink."""
    f = lambda z: phi(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
               for a, b in [(-40, -5), (-5, 0), (0, 5), (5, 40)])


VARPROP_ACTIVATIONS = {
    "gelu": lambda x: x * special.ndtr(x),
    "gelu_tanh": lambda x: 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "silu": lambda x: x * special.expit(x),
    "softplus": lambda x: float(np.logaddexp(0.0, x)),
    "softsign": lambda x: x / (1 + abs(x)),
}


@pytest.mark.parametrize("name", sorted(VARPROP_ACTIVATIONS))
def test_varprop_gains_are_the_unit_fixed_point_gains(name: str) -> None:
    expected = 1 / math.sqrt(_second_moment(VARPROP_ACTIVATIONS[name]))
    assert I.calculate_gain(name) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 1.6732632423543773])
def test_elu_gain_closed_form(alpha: float) -> None:
    elu = lambda x: x if x > 0 else alpha * math.expm1(x)  # noqa: E731
    expected = 1 / math.sqrt(_second_moment(elu))
    assert I.calculate_gain("elu", alpha) == pytest.approx(expected, rel=1e-12)
    # the same rule reproduces PyTorch's relu and leaky_relu entries
    assert 1 / math.sqrt(_second_moment(lambda x: max(x, 0.0))) == pytest.approx(math.sqrt(2), rel=1e-12)


def test_gain_errors() -> None:
    with pytest.raises(ValueError, match="nonlinearity 'rleu'.*did you mean 'relu'"):
        I.calculate_gain("rleu")
    with pytest.raises(TypeError, match="param"):
        I.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(TypeError, match="param"):
        I.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match="param"):
        I.calculate_gain("leaky_relu", float("inf"))
    with pytest.raises(TypeError, match="nonlinearity"):
        I.calculate_gain(None)  # type: ignore[arg-type]
    assert I.calculate_gain("swish") == I.calculate_gain("silu")
    assert "gelu" in I.gain_names() and "relu" in I.gain_names()


# --------------------------------------------------------------------------- recommendations
def test_recommended_initializers() -> None:
    n = 256
    assert I.recommended_initializer("relu") == I.he_normal()
    assert I.recommended_initializer("selu") == I.lecun_normal()
    for act in ("linear", "tanh", "sigmoid", "softsign"):
        assert I.recommended_initializer(act) == I.glorot_normal()
    leaky = I.recommended_initializer("leaky_relu", negative_slope=0.2)
    assert leaky.moments((n, 64)).var == pytest.approx(2 / (1 + 0.04) / n, rel=1e-14)
    assert I.recommended_initializer("leaky_relu").moments((n, 64)).var == pytest.approx(
        2 / (1 + 1e-4) / n, rel=1e-14
    )
    gelu = I.recommended_initializer("gelu")
    second = _second_moment(VARPROP_ACTIVATIONS["gelu"])
    assert n * gelu.moments((n, 64)).var * second == pytest.approx(1.0, rel=1e-10)
    elu = I.recommended_initializer("elu", alpha=0.5)
    assert elu.moments((n, 8)).var == pytest.approx(I.calculate_gain("elu", 0.5) ** 2 / n)
    torch_he = I.recommended_initializer("relu", layout="torch")
    assert torch_he.moments((64, n)).var == 2 / n
    assert I.recommended_initializer("Swish") == I.recommended_initializer("silu")


def test_recommended_initializer_errors() -> None:
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        I.recommended_initializer("rleu")
    with pytest.raises(TypeError, match="alpha"):
        I.recommended_initializer("relu", alpha=1.0)
    with pytest.raises(TypeError, match="activation"):
        I.recommended_initializer(3)  # type: ignore[arg-type]
