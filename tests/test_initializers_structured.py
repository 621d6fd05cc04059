"""Orthogonal, identity, Dirac, delta-orthogonal and sparse initializers.

Exact properties are checked to rounding (orthonormality, counts of ones and zeros);
distributional ones (Haar measure, the zero pattern) with KS p-values or z-scores at
the stated false-alarm probability ALPHA per check, on seeded draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import varprop.initializers as I

ALPHA = 1e-6
Z_CRIT = float(stats.norm.isf(ALPHA / 2))
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _flat(w: np.ndarray, out_axis: int) -> np.ndarray:
    """The (rest, out) matrix of the flattening rule."""
    return np.moveaxis(w, out_axis, -1).reshape(-1, w.shape[out_axis])


def _assert_semi_orthogonal(m: np.ndarray, gain: float, rtol: float) -> None:
    rows, cols = m.shape
    m = m.astype(np.float64)
    gram = m.T @ m if rows >= cols else m @ m.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=rtol * gain**2 * 10)


ORTHO_SHAPES = [
    ((16, 16), "keras", -1),
    ((10, 30), "keras", -1),  # wide: rows orthonormal
    ((30, 10), "keras", -1),  # tall: columns orthonormal
    ((3, 3, 4, 8), "keras", -1),  # 36 x 8
    ((3, 3, 16, 200), "keras", -1),  # 144 x 200
    ((8, 4, 3, 3), "torch", 0),  # out 8 against 36
    ((200, 16, 3, 3), "torch", 0),  # out 200 against 144
    ((5, 7, 2), "jax", 1),  # explicit out_axis (JAX's column_axis)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "layout", "out_axis"), ORTHO_SHAPES)
def test_orthogonal_every_orientation(shape: tuple, layout: str, out_axis: int, dtype: type) -> None:
    kwargs = dict(out_axis=out_axis) if layout == "jax" else {}
    init = I.orthogonal(gain=1.7, layout=layout, **kwargs)
    w = init(shape, seed=4, dtype=dtype)
    assert w.shape == shape and w.dtype == dtype and w.flags.c_contiguous
    m = _flat(w, out_axis)
    _assert_semi_orthogonal(m, 1.7, RTOL[dtype])
    mom = init.moments(shape)
    assert mom.structure == "orthogonal" and mom.mean == 0.0
    assert mom.var == pytest.approx(1.7**2 / max(m.shape), rel=1e-15)
    # the second moment is exact for every draw: sum of squares = gain^2 min(rows, cols)
    assert float(np.mean(w.astype(np.float64) ** 2)) == pytest.approx(mom.var, rel=RTOL[dtype] * 10)


@pytest.mark.parametrize(("rows", "cols", "entry"), [(3, 3, (0, 0)), (3, 3, (2, 1)), (40, 5, (0, 0)), (5, 40, (4, 39))])
def test_orthogonal_is_haar(rows: int, cols: int, entry: tuple) -> None:
    """A column (or row) of a Haar semi-orthogonal m x n matrix is uniform on the sphere S^{m-1},
    so one entry squared is Beta(1/2, (m-1)/2) and its sign is fair. Without the sign fix
    d = sign(diag R), LAPACK's Q[0, 0] is never positive."""
    init = I.orthogonal()
    g = np.random.default_rng(2024)
    x = np.array([init((rows, cols), seed=g, dtype=np.float64)[entry] for _ in range(3000)])
    m = max(rows, cols)
    assert stats.kstest(x**2, stats.beta(0.5, (m - 1) / 2).cdf).pvalue > ALPHA
    assert stats.binomtest(int((x > 0).sum()), x.size, 0.5).pvalue > ALPHA


@settings(deadline=None, max_examples=30, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 12), min_size=2, max_size=4).map(tuple),
    layout=st.sampled_from(["keras", "torch"]),
    gain=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_orthogonal_property(shape: tuple, layout: str, gain: float, seed: int) -> None:
    init = I.orthogonal(gain=gain, layout=layout)
    w = init(shape, seed=seed, dtype=np.float64)
    out_axis = -1 if layout == "keras" else 0
    _assert_semi_orthogonal(_flat(w, out_axis), gain, 1e-12)
    rows = math.prod(shape) // shape[out_axis]
    assert init.moments(shape).var == pytest.approx(gain**2 / max(rows, shape[out_axis]), rel=1e-14)


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (7, 3)])
def test_identity_moments_are_those_of_its_entries(shape: tuple) -> None:
    init = I.identity(gain=2.5)
    w = init(shape, dtype=np.float64)
    np.testing.assert_array_equal(w, 2.5 * np.eye(*shape))
    m = init.moments(shape)
    assert (m.structure, m.symmetric) == ("identity", False)
    assert m.mean == pytest.approx(w.mean(), rel=1e-14)
    assert m.var == pytest.approx(w.var(), rel=1e-14)
    assert I.get("eye") == I.identity()


DIRAC_CASES = [
    ((6, 4, 3), "torch", 1),
    ((6, 2, 3, 3), "torch", 3),
    ((4, 4, 2, 3, 3), "torch", 2),
    ((8, 3, 5, 5), "torch", 1),  # more outputs than inputs
    ((3, 3, 4, 6), "keras", 2),
    ((5, 4, 4), "keras", 1),
]


@pytest.mark.parametrize(("shape", "layout", "groups"), DIRAC_CASES)
def test_dirac_kernel(shape: tuple, layout: str, groups: int) -> None:
    init = I.dirac(groups=groups, layout=layout)
    w = init(shape, dtype=np.float64)
    oa, ia = (0, 1) if layout == "torch" else (len(shape) - 1, len(shape) - 2)
    spatial = [i for i in range(len(shape)) if i not in (ia, oa)]
    centre = tuple(shape[s] // 2 for s in spatial)
    per_group = shape[oa] // groups
    k = min(per_group, shape[ia])
    expected = np.zeros(shape)
    for g in range(groups):
        for d in range(k):
            idx = [0] * len(shape)
            idx[oa], idx[ia] = g * per_group + d, d
            for s, c in zip(spatial, centre):
                idx[s] = c
            expected[tuple(idx)] = 1
    np.testing.assert_array_equal(w, expected)
    m = init.moments(shape)
    assert m.structure == "dirac"
    assert m.mean == pytest.approx(w.mean(), rel=1e-14)
    assert m.var == pytest.approx(w.var(), rel=1e-14)


def test_dirac_convolution_copies_its_input() -> None:
    # a 1-D convolution (cross-correlation, 'same' padding) with a Dirac kernel is the identity
    kernel = I.dirac()((3, 4, 4), dtype=np.float64)  # keras (k, in, out)
    x = np.random.default_rng(0).standard_normal((10, 4))  # (length, channels)
    padded = np.pad(x, ((1, 1), (0, 0)))
    y = sum(padded[t:t + 10] @ kernel[t] for t in range(3))
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("n", [64, 300, 512])
def test_orthogonal_bits_do_not_depend_on_the_blas_thread_count(n: int) -> None:
    from threadpoolctl import threadpool_limits

    init = I.get("orthogonal")
    with threadpool_limits(limits=1, user_api="blas"):
        one = init((n, n), seed=11)
    with threadpool_limits(limits=2, user_api="blas"):
        two = init((n, n), seed=11)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize(("shape", "layout"), [((3, 4, 8), "keras"), ((3, 3, 5, 5), "keras"), ((2, 3, 4, 6, 6), "keras"),
                                               ((8, 4, 3, 3), "torch"), ((4, 4, 2), "torch")])
def test_delta_orthogonal(shape: tuple, layout: str) -> None:
    init = I.delta_orthogonal(gain=1.3, layout=layout)
    w = init(shape, seed=1, dtype=np.float64)
    oa, ia = (0, 1) if layout == "torch" else (len(shape) - 1, len(shape) - 2)
    spatial = [i for i in range(len(shape)) if i not in (ia, oa)]
    idx: list = [slice(None)] * len(shape)
    for s in spatial:
        idx[s] = (shape[s] - 1) // 2  # JAX's centre
    centre = w[tuple(idx)]
    m = centre if ia < oa else centre.T  # (in, out)
    np.testing.assert_allclose(m @ m.T, 1.3**2 * np.eye(shape[ia]), atol=1e-12)
    assert np.count_nonzero(w) == np.count_nonzero(centre)
    mom = init.moments(shape)
    assert mom.structure == "orthogonal"
    fan_in = I.compute_fans(shape, layout=layout)[0]
    # isometric: ||x W||^2 = gain^2 ||x||^2, spread over out >= in channels
    assert fan_in * mom.var == pytest.approx(1.3**2 * shape[ia] / shape[oa], rel=1e-14)
    assert float(np.mean(w**2)) == pytest.approx(mom.var, rel=1e-12)


@pytest.mark.parametrize(("shape", "layout", "sparsity"), [((300, 200), "keras", 0.3), ((200, 300), "torch", 0.3),
                                                         ((100, 10), "keras", 0.3), ((50, 40), "keras", 0.0)])
def test_sparse_exact_zero_counts_and_moments(shape: tuple, layout: str, sparsity: float) -> None:
    init = I.sparse(sparsity, std=0.2, layout=layout)
    w = init(shape, seed=8, dtype=np.float64)
    out_axis = 1 if layout == "keras" else 0
    n_out = shape[out_axis]
    n_zero = math.ceil(sparsity * n_out)  # PyTorch's rule, floating point included
    zeros_per_input = (w == 0).sum(axis=out_axis)
    assert np.all(zeros_per_input == n_zero)
    m = init.moments(shape)
    p = n_zero / n_out
    assert (m.mean, m.structure) == (0.0, "sparse")
    assert m.var == pytest.approx((1 - p) * 0.04, rel=1e-14)
    nz = w[w != 0]
    assert stats.kstest(nz, stats.norm(0, 0.2).cdf).pvalue > ALPHA
    # mean of w^2 over all entries: K non-zeros, Var(sum x^2) = 2 K std^4
    k = nz.size
    z = (float(np.mean(w**2)) - m.var) / (math.sqrt(2 * k) * 0.04 / w.size)
    assert abs(z) < Z_CRIT


def test_sparse_pattern_is_uniform_and_seeded() -> None:
    init = I.sparse(0.25, layout="keras")
    a, b = init((4000, 8), seed=1), init((4000, 8), seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a == 0, init((4000, 8), seed=2) == 0)
    # each of the 8 output positions is zero for a given input with probability 2/8
    hits = (a == 0).sum(axis=0)
    n, p = 4000, 2 / 8
    z = (hits - n * p) / math.sqrt(n * p * (1 - p))
    assert np.all(np.abs(z) < Z_CRIT)
    assert I.sparse(0.3).n_zero(10) == 3 and I.sparse(0.31).n_zero(10) == 4
