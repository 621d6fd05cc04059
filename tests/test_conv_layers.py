"""Convolutional layers as network specs: validation that names the argument, the walk's
feature shapes, the builders, and the array path (measure, the trainer) against plain
numpy."""

import math

import numpy as np
import pytest

import varprop
from varprop import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Network
from varprop.layers import Act, walk


@pytest.mark.parametrize("kwargs, match", [
    ({"groups": 3}, "groups"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": (3, 3, 3)}, "spatial_dims"),
    ({"stride": 0}, "stride"),
    ({"dilation": -1}, "dilation"),
    ({"padding": -1}, "padding"),
    ({"padding": "full"}, "padding"),
    ({"padding": (1, 2, 3)}, "padding"),
    ({"layout": "nchw"}, "layout"),
    ({"init": 3}, "init"),
    ({"in_channels": 0}, "in_channels"),
])
def test_conv_rejects_bad_arguments_naming_them(kwargs, match):
    args = {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "init": "he_normal"}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        Conv(**args)


def test_walk_gives_each_layer_its_feature_shape():
    net = varprop.cnn((8, 8, 1), [16, 32], pool="max", n_classes=10)
    steps, out = walk(net.layers, net.input_width)
    assert out == 10
    assert net.depth == 3
    shapes = []
    width = net.input_width
    for layer in net.layers:
        width = layer.output_width(width, "test")
        shapes.append(width)
    # 8x8x1 -conv-> 8x8x16 -act- -pool-> 4x4x16 -conv-> 4x4x32 -act- -pool-> 2x2x32 -> 128 -> 10
    assert shapes == [(8, 8, 16), (8, 8, 16), (4, 4, 16), (4, 4, 32), (4, 4, 32), (2, 2, 32),
                      128, 10]


def test_shape_mismatches_name_the_layer_and_the_fix():
    conv = Conv(1, 4, 3, "he_normal")
    with pytest.raises(ValueError, match="Flatten"):
        Network((8, 8, 1), (conv, Dense(64, 10, "he_normal")))
    with pytest.raises(ValueError, match="input channels"):
        Network((8, 8, 3), (conv,))
    with pytest.raises(ValueError, match="spatial"):
        Network(16, (conv,))
    with pytest.raises(ValueError, match="2-D"):
        Network((8, 1), (conv,))
    with pytest.raises(ValueError, match="kernel"):  # 5x5 kernel on a 3x3 valid input
        Network((3, 3, 1), (Conv(1, 4, 5, "he_normal"),))
    with pytest.raises(ValueError, match="groups"):
        Network((8, 8, 4), (Conv(4, 4, 3, "he_normal"), varprop.GroupNorm(groups=3)))
    with pytest.raises(ValueError, match="input_width"):
        Network((8, 8, 8, 8, 1), (conv,))


def test_builders_and_presets():
    net = varprop.cnn_preset("seeds_cnn", init="glorot_uniform")
    assert net.input_shape == (8, 8, 1) and net.depth == 3
    assert "seeds_cnn" in net.describe()
    torch_net = varprop.cnn((1, 8, 8), [4], layout="torch", n_classes=3)
    assert torch_net.input_shape == (8, 8, 1) and torch_net.layout == "torch"
    with pytest.raises(ValueError, match="name"):
        varprop.cnn_preset("resnet50")
    with pytest.raises(ValueError, match="pool"):
        varprop.cnn((8, 8, 1), [4], pool="min")
    with pytest.raises(ValueError, match="channels"):
        varprop.cnn((8, 8, 1), [])


def _numpy_forward(net, params, x):
    """An independent forward pass of a conv / pool / dense network in plain numpy
    (explicit loops over the kernel taps): the reference for measure's arrays."""
    h = x.astype(np.float64)
    k = 0
    for layer in net.layers:
        if isinstance(layer, Conv):
            w, b = (p.astype(np.float64) for p in params[k])
            k += 1
            kh, kw = layer.kernel_size
            pads = layer.geometry(h.shape[1:3])["padding"]
            hp = np.pad(h, ((0, 0), pads[0], pads[1], (0, 0)))
            oh = (hp.shape[1] - kh) // layer.stride[0] + 1
            ow = (hp.shape[2] - kw) // layer.stride[1] + 1
            out = np.zeros((h.shape[0], oh, ow, w.shape[-1]))
            for i in range(kh):
                for j in range(kw):
                    patch = hp[:, i:i + oh * layer.stride[0]:layer.stride[0],
                               j:j + ow * layer.stride[1]:layer.stride[1], :]
                    out += patch @ w[i, j]
            h = out + b
        elif isinstance(layer, Dense):
            w, b = (p.astype(np.float64) for p in params[k])
            k += 1
            h = h @ w + b
        elif isinstance(layer, Act):
            h = layer.activation(h)  # the record's numpy value
        elif isinstance(layer, MaxPool):
            n, hh, ww, c = h.shape
            p = layer.pool_size[0]
            h = h[:, :hh // p * p, :ww // p * p].reshape(n, hh // p, p, ww // p, p, c).max(axis=(2, 4))
        elif isinstance(layer, AvgPool):
            n, hh, ww, c = h.shape
            p = layer.pool_size[0]
            h = h[:, :hh // p * p, :ww // p * p].reshape(n, hh // p, p, ww // p, p, c).mean(axis=(2, 4))
        elif isinstance(layer, GlobalAvgPool):
            h = h.mean(axis=(1, 2))
        elif isinstance(layer, Flatten):
            h = h.reshape(h.shape[0], -1)
        else:
            raise AssertionError(type(layer))
    return h


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_convnet_logits_match_an_independent_numpy_forward(pool):
    from varprop.training.convnet import ConvNet
    net = varprop.cnn((8, 8, 1), [4, 6], pool=pool, n_classes=5, activation="tanh")
    model = ConvNet.from_network(net, seed=3, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((7, 64))
    got = model.logits(x)
    want = _numpy_forward(net, model.weights, x.reshape(7, 8, 8, 1))
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_convnet_gradients_match_finite_differences():
    from varprop.training.convnet import ConvNet
    from varprop.training import softmax_cross_entropy
    net = varprop.cnn((6, 6, 1), [3], pool="avg", n_classes=4, activation="tanh",
                      bias_init={"name": "random_normal", "stddev": 0.1})
    model = ConvNet.from_network(net, seed=1, dtype=np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 36))
    y = rng.integers(0, 4, 5)
    cache = model.forward(x)
    _, g, _ = softmax_cross_entropy(cache.logits, y)
    grads, _ = model.backward(cache, g)
    for l, (w, b) in enumerate(model.weights):
        for arr, grad in ((w, grads[l][0]), (b, grads[l][1])):
            flat = arr.reshape(-1)
            for idx in rng.choice(flat.size, size=min(4, flat.size), replace=False):
                old = flat[idx]
                eps = 1e-6
                flat[idx] = old + eps
                up = softmax_cross_entropy(model.forward(x).logits, y, grad=False)[0]
                flat[idx] = old - eps
                down = softmax_cross_entropy(model.forward(x).logits, y, grad=False)[0]
                flat[idx] = old
                fd = (up - down) / (2 * eps)
                # central differences: O(eps^2) truncation, O(1e-16 / eps) rounding
                assert math.isclose(grad.reshape(-1)[idx], fd, rel_tol=1e-6, abs_tol=1e-9)
