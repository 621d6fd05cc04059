"""Per-pixel mean-field theory of convolutions (docs/theory.md, section 8; Xiao et al.
2018, arXiv 1806.05393; Novak et al. 2019, arXiv 1810.05148).

With many channels, every channel of a layer is alike and channels are independent, so
one unit per pixel describes a layer: :class:`SpatialMoments` holds, per pixel, the
mean and second moment of a unit, and optionally the pixel-pair second moments
``E[x_p x_q]`` (same channel, same sample) that pooling needs. A convolution with
independent weights of mean ``m`` and variance ``v`` sums over its window and its
``C`` input channels, so

    E[z_o] = C m sum_k E[x_{i_k(o)}] + m_b,
    E[z_o z_o'] = v C sum_k E[x_{i_k(o)} x_{i_k(o')}] + v_b + m_b^2 + (terms in m)

where ``i_k(o) = o s + k d - before`` is the input pixel that tap ``k`` of output ``o``
reads, and a zero-padded position contributes nothing: border pixels lose variance.
An activation maps each pixel by the Gaussian moments of docs/theory.md section 5 and
each pair of pixels by their bivariate Gaussian (:mod:`.spatial_gauss`). Backward
(gradient independence), a pixel's gradient variance sums the outputs that read it:
``Var[dL/dx_i] = (v + m^2) C_out sum_{(o, k): i_k(o) = i} Var[dL/dz_o]``. Pooling lives
in :mod:`varprop.theory.spatial_pool`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .gaussian import gaussian_moments
from .spatial_gauss import pair_cross

__all__ = ["SpatialMoments", "white", "from_data", "resolve_padding", "output_shape",
           "tap_sources", "conv_forward", "conv_backward", "conv_weight_grad_var",
           "act_forward", "act_backward", "flatten_backward", "pooled", "between_samples",
           "pooled_correlation"]


@dataclass
class SpatialMoments:
    """One unit per pixel (channels alike): ``mean`` and ``second`` (E[x^2]) over the
    spatial dims; ``cross`` the ``(P, P)`` matrix of E[x_p x_q] over the flattened pixels
    (C order), or None when not carried; ``gaussian``: each pixel's unit is Gaussian
    (a pre-activation of random weights); ``exact``: no approximation upstream."""

    mean: np.ndarray
    second: np.ndarray
    cross: np.ndarray | None = None
    gaussian: bool = True
    exact: bool = True
    #: ``(P, P)`` E[x_{b,p} x_{b',q}] for two different samples of a batch (which share
    #: the weights: each channel's own offset), carried only where a BatchNorm needs it
    bcross: np.ndarray | None = None
    #: ``(P, P)`` E[x_p x'_q] of two inputs with a given correlation through the same
    #: weights (the correlation map, ``analyze(input_correlation=c)``); None: not carried
    icross: np.ndarray | None = None

    @property
    def var(self) -> np.ndarray:
        return np.maximum(self.second - self.mean * self.mean, 0.0)

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(np.shape(self.mean))


def white(spatial: Sequence[int], mean: float, var: float, cross: bool = False
          ) -> SpatialMoments:
    """Independent N(mean, var) inputs at every pixel and channel."""
    shape = tuple(spatial)
    second = var + mean * mean
    pairs = None
    if cross:
        p = math.prod(shape)
        pairs = np.full((p, p), mean * mean)
        np.fill_diagonal(pairs, second)
    return SpatialMoments(np.full(shape, float(mean)), np.full(shape, float(second)), pairs)


def from_data(x: np.ndarray) -> SpatialMoments:
    """A dataset ``(N, *spatial, C)``'s per-pixel moments averaged over channels (a
    convolution sums over its input channels, so only those averages enter) and its
    pixel pairs ``(1/C) sum_c E[x_pc x_qc]``. Image pixels are not Gaussian: the
    next convolution's pre-activations are, given many taps and channels."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[0], x.shape[-1]
    spatial = x.shape[1:-1]
    flat = np.moveaxis(x.reshape(n, -1, c), -1, 1).reshape(n * c, -1)  # (N C, P)
    cross = flat.T @ flat / (n * c)
    mean = flat.mean(axis=0).reshape(spatial)
    return SpatialMoments(mean, np.diag(cross).reshape(spatial).copy(), cross, gaussian=False)


# The padding rule and the output size have one home, the kernels' module (pure
# Python: it imports without the compiled extension); the theory reads the same pixels.
from ..conv_kernels import conv_output_shape as output_shape  # noqa: E402
from ..conv_kernels import resolve_padding  # noqa: E402


def tap_sources(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                pads: Sequence[tuple[int, int]], dilation: Sequence[int]
                ) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(src, out)``: ``src[k]`` is, for each flattened output pixel, the flattened input
    pixel that kernel tap ``k`` (row-major over the kernel) reads, ``i_k(o) = o s + k d
    - before``, or ``P`` (one past the last) where it reads the zero padding; ``out`` the
    output's spatial dims."""
    spatial = tuple(spatial)
    out = output_shape(spatial, kernel, stride, tuple(pads), dilation)
    p = math.prod(spatial)
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    src = np.empty((math.prod(kernel), math.prod(out)), np.int64)
    for t, tap in enumerate(np.ndindex(*kernel)):
        flat = np.zeros(out, np.int64)
        inside = np.ones(out, bool)
        for dim in range(len(spatial)):
            pos = grids[dim] * stride[dim] + tap[dim] * dilation[dim] - pads[dim][0]
            inside &= (pos >= 0) & (pos < spatial[dim])
            flat = flat * spatial[dim] + pos
        src[t] = np.where(inside, flat, p).ravel()
    return src, out


def _padded(values: np.ndarray) -> np.ndarray:
    """A flattened map with one trailing 0: the value read at a padded position."""
    return np.append(values.ravel(), 0.0)


def _window_sums(src: np.ndarray, p: int) -> np.ndarray:
    """The ``(outputs, P)`` matrix ``A`` with ``A[o, i]`` the number of taps of output
    ``o`` that read pixel ``i`` (padded taps read nothing)."""
    a = np.zeros((src.shape[1], p + 1))
    rows = np.arange(src.shape[1])
    for tap in src:
        np.add.at(a, (rows, tap), 1.0)
    return a[:, :p]


def conv_forward(s: SpatialMoments, *, w_mean: float, w_var: float, b_mean: float,
                 b_var: float, fan_channels: int, kernel: Sequence[int],
                 stride: Sequence[int], padding_pairs: Sequence[tuple[int, int]],
                 dilation: Sequence[int], track_cross: bool = False) -> SpatialMoments:
    """The pre-activation ``z`` of a convolution (docs/theory.md, section 8): per output
    pixel ``E[z_o] = C m sum_k E[x_{i_k(o)}] + m_b`` and

        E[z_o z_o'] = v C sum_k E[x_{i_k(o)} x_{i_k(o')}] + v_b + m_b^2
                      + m^2 E[S_o S_o'] + m m_b (E[S_o] + E[S_o'])

    with ``S_o`` the sum of output ``o``'s window over taps and channels, ``C =
    fan_channels``, ``v = w_var``, ``m = w_mean``; a padded tap reads 0. The pixel pairs
    ``(P_out, P_out)`` are returned when ``track_cross`` and ``s.cross`` is carried.
    Non-centred weights: ``Cov[S_o, S_o'] = C sum_{k,k'} Cov[x_{i_k(o)}, x_{i_k'(o')}]``
    counts the input's channels as independent, which an upstream non-centred layer
    breaks (its channels share ``m S``: section 2's identical-units case), and without
    ``s.cross`` only the diagonal ``k = k'`` is known; so ``m != 0`` is flagged
    (exact=False). The output is Gaussian (a sum over many independent channels)."""
    src, out = tap_sources(s.spatial, kernel, stride, padding_pairs, dilation)
    c = float(fan_channels)
    p = math.prod(s.spatial)
    mean_in, second_in = _padded(s.mean), _padded(s.second)
    window_mean = mean_in[src].sum(axis=0)
    mean = c * w_mean * window_mean + b_mean
    exact = s.exact and (s.cross is not None or not track_cross)
    with np.errstate(over="ignore", invalid="ignore"):
        second = w_var * c * second_in[src].sum(axis=0) + b_var + b_mean * b_mean
        cross = None
        if track_cross and s.cross is not None:
            padded = np.zeros((p + 1, p + 1))
            padded[:p, :p] = s.cross
            acc = np.zeros((src.shape[1], src.shape[1]))
            for tap in src:  # the same tap (and channel) of both outputs: one weight
                acc += padded[np.ix_(tap, tap)]
            cross = w_var * c * acc + b_var + b_mean * b_mean
        if w_mean != 0.0:
            exact = False
            e_s = c * window_mean  # E[S_o]
            if s.cross is not None:
                a = _window_sums(src, p)
                cov_s = c * (a @ (s.cross - np.outer(s.mean.ravel(), s.mean.ravel())) @ a.T)
                var_s = np.diag(cov_s).copy()
            else:  # independent pixels: the diagonal k = k' only
                var_s = c * _padded(s.var)[src].sum(axis=0)
            second = second + w_mean**2 * (var_s + e_s * e_s) + 2 * w_mean * b_mean * e_s
            if cross is not None:
                cross = cross + w_mean**2 * (cov_s + np.outer(e_s, e_s)) \
                    + w_mean * b_mean * (e_s[:, None] + e_s[None, :])
    return SpatialMoments(mean.reshape(out), second.reshape(out), cross, gaussian=True,
                          exact=exact)


def conv_backward(g_out: np.ndarray, *, w_mean: float, w_var: float, out_channels: int,
                  kernel: Sequence[int], stride: Sequence[int],
                  padding_pairs: Sequence[tuple[int, int]], dilation: Sequence[int],
                  in_spatial: Sequence[int]) -> np.ndarray:
    """Var[dL/dx] per input pixel from Var[dL/dz] per output pixel: every (output,
    tap) that reads the pixel adds ``(v + m^2) C_out`` times its gradient variance
    (gradient independence; the dense rule's n' v + n' m^2, docs/theory.md)."""
    src, _ = tap_sources(in_spatial, kernel, stride, padding_pairs, dilation)
    p = math.prod(in_spatial)
    g = np.asarray(g_out, dtype=np.float64).ravel()
    acc = np.zeros(p + 1)
    for tap in src:  # taps in a fixed order; bincount adds the repeats of one tap
        acc += np.bincount(tap, weights=g, minlength=p + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        factor = (w_var + w_mean * w_mean) * out_channels
        out = np.where(acc[:p] == 0.0, 0.0, factor * acc[:p]) if factor != 0 else np.zeros(p)
    return out.reshape(tuple(in_spatial))


def conv_weight_grad_var(s: SpatialMoments, g_out: np.ndarray, *, kernel: Sequence[int],
                         stride: Sequence[int], padding_pairs: Sequence[tuple[int, int]],
                         dilation: Sequence[int]) -> float:
    """Var of one weight-gradient entry per sample, averaged over the taps:
    ``mean_k sum_o E[x_{i_k(o)}^2] Var[dL/dz_o]`` (independent terms)."""
    src, _ = tap_sources(s.spatial, kernel, stride, padding_pairs, dilation)
    second = _padded(s.second)
    g = np.asarray(g_out, dtype=np.float64).ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        per_tap = [float(np.sum(np.where(g == 0, 0.0, second[tap] * g))) for tap in src]
    return float(np.mean(per_tap))


def act_forward(z: SpatialMoments, act: Any, track_cross: bool = False,
                same_sample: bool = True) -> tuple[SpatialMoments, np.ndarray]:
    """``a = phi(z)`` at every pixel: ``(a, E[phi'(z)^2] per pixel)`` (the backward
    factor of :func:`act_backward`). Per pixel the Gaussian moments of docs/theory.md
    section 5 at the pixel's mean and variance (vectorized over the map); a constant
    unit (variance 0) takes phi and phi' at its value (relu'(0) = 0, as the kernels).
    The pixel pairs, when carried, from the bivariate Gaussian of ``(z_p, z_q)`` with
    each pixel's own mean (:func:`~varprop.theory.spatial_gauss.pair_cross`: closed
    form for piecewise-linear activations, the nested integral of section 4 otherwise).
    A ``z`` known not to be Gaussian is treated as one (exact=False).
    ``same_sample=False``: ``z.cross`` holds pairs of two different samples (see
    :func:`between_samples`), whose diagonal is a pair too, not ``E[z_p^2]``."""
    var = z.var
    with np.errstate(all="ignore"):
        m = gaussian_moments(act, var, mean=z.mean)
    e_phi, e_phi2, e_dphi2 = (np.array(m.e_phi, float), np.array(m.e_phi2, float),
                              np.array(m.e_dphi2, float))
    point = var == 0.0  # a constant unit (zero weights and bias): phi there, exactly,
    if np.any(point):   # with the kernels' derivative at kinks (relu'(0) = 0)
        at = z.mean[point]
        e_phi[point] = act(at)
        e_phi2[point] = e_phi[point] ** 2
        e_dphi2[point] = np.asarray(act.derivative(at), float) ** 2
    exact = z.exact and z.gaussian
    cross = None
    if track_cross and z.cross is not None:
        mean = z.mean.ravel()
        q = var.ravel()
        cov = z.cross - np.outer(mean, mean)
        iu = np.triu_indices(q.size, k=1 if same_sample else 0)
        bound = np.sqrt(q[iu[0]] * q[iu[1]])  # rounding can leave |cov| a hair above
        with np.errstate(all="ignore"):
            pair = pair_cross(act, mean[iu[0]], mean[iu[1]], q[iu[0]], q[iu[1]],
                              np.clip(cov[iu], -bound, bound))
        cross = np.empty_like(z.cross)
        cross[iu] = pair
        cross[(iu[1], iu[0])] = pair
        if same_sample:
            np.fill_diagonal(cross, e_phi2.ravel())
    a = SpatialMoments(e_phi.reshape(z.spatial), e_phi2.reshape(z.spatial), cross,
                       gaussian=getattr(act, "name", "") == "linear" and z.gaussian,
                       exact=exact and (cross is not None or not track_cross))
    return a, e_dphi2.reshape(z.spatial)


def act_backward(g: np.ndarray, dphi2: np.ndarray) -> np.ndarray:
    """Var[dL/dz_p] = Var[dL/da_p] E[phi'(z_p)^2] (gradient independence, section 3);
    a zero factor wins over an infinite gradient (section 10)."""
    g, d = np.asarray(g, float), np.asarray(dphi2, float)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where((g == 0) | (d == 0), 0.0, g * d)


def flatten_backward(g: Any, spatial: Sequence[int]) -> np.ndarray:
    """The per-pixel gradient variance under a Flatten: a map passes through unchanged;
    a scalar (a dense layer above, whose units are alike) becomes a uniform map."""
    g = np.asarray(g, float)
    return g.reshape(tuple(spatial)) if g.size == math.prod(spatial) and g.ndim else \
        np.full(tuple(spatial), float(g))


def pooled(s: SpatialMoments) -> tuple[float, float]:
    """``(mean, variance)`` of all the layer's entries pooled over pixels and channels,
    as a measurement pools them: the pixels' means differ at the borders, so the pooled
    variance is the mean second moment minus the squared mean of means."""
    mean = float(np.mean(s.mean))
    with np.errstate(over="ignore", invalid="ignore"):
        var = float(np.mean(s.second)) - mean * mean
    return mean, max(var, 0.0) if math.isfinite(var) else var


def between_samples(s: SpatialMoments, step: Any, pairs: str = "bcross"
                    ) -> np.ndarray | None:
    """The pairs of two different samples after a layer whose same-sample pair rule is
    ``step(moments) -> moments``: the between-sample pairs ``bcross`` (``pairs``) or the
    two correlated inputs' ``icross``. The rules are the same with those in the place of
    ``cross`` (a weight multiplies the same tap of both samples), so they run on a copy
    that carries them as its pairs (a rule must then take its diagonal as a pair too,
    not as ``E[x_p^2]``)."""
    other = getattr(s, pairs)
    if other is None:
        return None
    return step(SpatialMoments(s.mean, s.second, other, s.gaussian, s.exact)).cross


def pooled_correlation(s: SpatialMoments) -> float:
    """The correlation of two inputs' layer outputs, pooled over pixels as the
    measurement pools it: ``mean_p E[x_p x'_p] / mean_p E[x_p^2]`` (uncentred); NaN
    when ``icross`` is not carried."""
    if s.icross is None:
        return math.nan
    second = float(np.mean(s.second))
    return float(np.mean(np.diag(s.icross))) / second if 0 < second < math.inf else math.nan
