"""The per-pixel theory of convolutional networks through ``varprop.analyze``: against an
independent per-pixel recursion (explicit loops, exact to rounding) and against
measurement at many channels, border pixels included (docs/theory.md, "Convolutions and
pooling")."""

import math

import numpy as np
import pytest

import varprop


def _relu_same_recursion(image, depth, channels, input_var=1.0):
    """Per-pixel Var[z] of a ReLU CNN of 3x3 "same" convolutions, He-normal weights
    (variance 2 / (9 C_in)), zero biases, white-noise input: written out pixel by pixel.

    Var[z_p] = v C_in sum_{taps inside the image} E[x_{p+k}^2], and for a zero-mean
    Gaussian z, E[relu(z)^2] = Var[z] / 2."""
    h, w = image
    second = [[input_var] * w for _ in range(h)]  # E[x^2] of the input pixels
    c_in = 1
    out = []
    for _ in range(depth):
        v = 2.0 / (9 * c_in)
        z = [[0.0] * w for _ in range(h)]
        for i in range(h):
            for j in range(w):
                total = 0.0
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < h and 0 <= j + dj < w:
                            total += second[i + di][j + dj]
                z[i][j] = v * c_in * total
        out.append(np.array(z))
        second = [[z[i][j] / 2.0 for j in range(w)] for i in range(h)]
        c_in = channels
    return out


@pytest.mark.parametrize("image", [(8, 8), (5, 7)])
def test_relu_cnn_per_pixel_variance_equals_independent_recursion(image):
    depth = 10
    net = varprop.cnn((*image, 1), [32] * depth, head="none")
    p = varprop.analyze(net)
    want = _relu_same_recursion(image, depth, 32)
    for layer in range(depth):
        got = p.maps[layer]["z_var"]
        assert got.shape == image
        np.testing.assert_allclose(got, want[layer], rtol=1e-10, atol=0)
        assert math.isclose(p[layer].z_var, float(np.mean(want[layer])), rel_tol=1e-10)
    # zero padding: the corners lose variance, and the loss travels inward with depth
    last = p.maps[depth - 1]["z_var"]
    assert last[0, 0] < 0.5 * last[image[0] // 2, image[1] // 2]
    first = p.maps[0]["z_var"]
    assert first[1, 1] == pytest.approx(first[image[0] // 2, image[1] // 2], rel=1e-12)
    assert last[1, 1] < 0.99 * last[image[0] // 2, image[1] // 2]


def test_gradient_maps_are_the_transposed_recursion():
    """Backward, per pixel: Var[dL/dx_p] = v' C_out sum over the outputs that read p of
    Var[dL/dz_q] (v' the weights' variance), times E[relu'(z)^2] = 1/2 (gradient
    independence); written out independently for a 3-layer net."""
    image, depth, c = (6, 6), 3, 16
    net = varprop.cnn((*image, 1), [c] * depth, head="none")
    p = varprop.analyze(net)
    h, w = image
    g = np.ones(image) * 0.5  # dL/dz of the top layer: unit output gradient x relu'^2
    want = [None] * depth
    want[depth - 1] = g
    for layer in range(depth - 1, 0, -1):
        v = 2.0 / (9 * c)
        back = np.zeros(image)
        for i in range(h):
            for j in range(w):
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        qi, qj = i - di, j - dj  # the output pixel whose tap reads (i, j)
                        if 0 <= qi < h and 0 <= qj < w:
                            back[i, j] += v * c * g[qi, qj]
        g = back * 0.5
        want[layer - 1] = g
    for layer in range(depth):
        np.testing.assert_allclose(p.maps[layer]["grad_var"], want[layer], rtol=1e-10)
        assert math.isclose(p[layer].grad_var, float(np.mean(want[layer])), rel_tol=1e-10)


def test_theory_agrees_with_measurement_at_many_channels_border_pixels_included():
    """A 10-layer ReLU CNN of 128 channels on 8x8 white noise, 8 weight draws of a batch
    of 32. Per draw, the measured per-pixel map divided by its own pixel mean (which
    removes the draw's common factor: its input batch and its weights' scale) against
    the theory's map divided likewise, corners, edges and centre; and the pooled value
    per layer. Each check is a t test of the 8 draws' log ratios at a false-alarm rate
    of 1e-3 for the whole test (Bonferroni over 390 checks: t_7 quantile at 1.3e-6 per
    side). Ignoring the padding (a uniform map) would miss the corners by log 4 = 1.4,
    where the draws' standard error is about 0.02."""
    from scipy import stats
    depth, c, draws = 10, 128, 8
    net = varprop.cnn((8, 8, 1), [c] * depth, head="none")
    theory = varprop.analyze(net)
    per_seed = [varprop.measure(net, batch=32, seeds=[s]) for s in range(draws)]
    checks = 3 * 2 * (64 + 1)
    bound = stats.t.ppf(1 - 1e-3 / (2 * checks), draws - 1)
    for layer in (0, depth // 2, depth - 1):
        for field in ("z_var", "grad_var"):
            t = theory.maps[layer][field]
            shape = np.array([np.log((m.maps[layer][field] / m.maps[layer][field].mean())
                                     / (t / t.mean())) for m in per_seed])
            pooled = np.array([np.log(getattr(m[layer], field) / getattr(theory[layer], field))
                               for m in per_seed])
            for logs in (shape, pooled):
                mean = logs.mean(axis=0)
                se = logs.std(axis=0, ddof=1) / math.sqrt(draws)
                assert np.all(np.abs(mean) <= bound * se), (layer, field, mean, se)
    # and the borders' loss is large: the corner keeps under a third of the centre's
    t = theory.maps[depth - 1]["z_var"]
    assert t[0, 0] < t[4, 4] / 3


def test_batchnorm_after_convolutions_removes_each_channels_offset():
    """Conv -> BatchNorm -> ReLU, 128 channels: BatchNorm divides by the within-channel
    variance, which excludes each channel's offset (its weights are shared by every sample
    and pixel); the next convolution's variance is then ~0.88, where ignoring the offsets
    predicts 1.0. Measured over 8 draws: the theory within 3 of the seeds' 95 % half-widths
    (a false alarm below 1e-3 per layer), the offset-free value outside."""
    from varprop import BatchNorm, Conv, Network
    from varprop.layers import Act
    layers, c_in = [], 1
    for _ in range(4):
        layers += [Conv(c_in, 128, 3, "he_normal", padding="same"), BatchNorm(), Act("relu")]
        c_in = 128
    net = Network((8, 8, 1), tuple(layers))
    theory = varprop.analyze(net)
    measured = varprop.measure(net, batch=64, seeds=8, backward=False)
    for t, m in zip(theory.records[1:], measured.records[1:]):
        assert abs(t.z_var - m.z_var) <= 3 * m.z_var_ci, (t.z_var, m.z_var, m.z_var_ci)
    mean_measured = np.mean([m.z_var for m in measured.records[1:]])
    assert abs(mean_measured - 1.0) > 0.05 and abs(theory[2].z_var - 0.88) < 0.01
    kinds = {a["kind"] for a in theory.meta["approximations"]}
    assert "spatial" in kinds  # the gradient rule is flagged
