"""Tests of varprop.initializers on bad input: every error names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import varprop.initializers as I


# --------------------------------------------------------------------------- bad input
BAD_CONSTRUCTION = [
    (lambda: I.variance_scaling(scale=-1.0), ValueError, "scale"),
    (lambda: I.variance_scaling(scale=0.0), ValueError, "scale"),
    (lambda: I.variance_scaling(scale=float("nan")), ValueError, "scale"),
    (lambda: I.variance_scaling(mode="fan_sum"), ValueError, "mode"),
    (lambda: I.variance_scaling(distribution="cauchy"), ValueError, "distribution"),
    (lambda: I.random_normal(stddev=0.0), ValueError, "stddev"),
    (lambda: I.random_normal(stddev="1"), TypeError, "stddev"),
    (lambda: I.random_normal(mean=True), TypeError, "mean"),
    (lambda: I.random_uniform(0.5, 0.1), ValueError, "maxval"),
    (lambda: I.truncated_normal(lower=2.0, upper=1.0), ValueError, "upper"),
    (lambda: I.trunc_normal(a=1.0, b=0.0), ValueError, "b must be greater"),
    (lambda: I.trunc_normal(std=-1.0), ValueError, "std"),
    (lambda: I.sparse(1.0), ValueError, "sparsity"),
    (lambda: I.sparse(-0.1), ValueError, "sparsity"),
    (lambda: I.sparse(0.1, std=0.0), ValueError, "std"),
    (lambda: I.orthogonal(gain=0.0), ValueError, "gain"),
    (lambda: I.xavier_normal(gain=-1.0), ValueError, "gain"),
    (lambda: I.dirac(groups=0), ValueError, "groups"),
    (lambda: I.kaiming_normal(mode="fan_avg"), ValueError, "mode"),
    (lambda: I.kaiming_normal(nonlinearity="relux"), ValueError, "nonlinearity"),
    (lambda: I.torch_default_bias(0), ValueError, "fan_in"),
    (lambda: I.torch_default_bias(2.5), TypeError, "fan_in"),
    (lambda: I.he_normal(layout="tf"), ValueError, "layout"),
    (lambda: I.he_normal(groups=0), ValueError, "groups"),
    (lambda: I.he_normal(transposed="yes"), TypeError, "transposed"),
    (lambda: I.he_normal(in_axis=1.5), TypeError, "in_axis"),
    (lambda: I.he_normal(seed=0), TypeError, "seed"),
    (lambda: I.he_normal(scale=2.0), TypeError, "scale"),
    (lambda: I.get("he_nromal"), ValueError, "did you mean 'he_normal'"),
    (lambda: I.get("normal"), ValueError, "ambiguous"),
    (lambda: I.get("uniform_"), ValueError, "ambiguous"),
    (lambda: I.get(5), TypeError, "identifier"),
    (lambda: I.get("he_normal", stddev=1.0), TypeError, "stddev"),
    (lambda: I.get("sparse"), TypeError, "sparsity"),
    (lambda: I.get({"foo": 1}), ValueError, "name"),
    (lambda: I.get(I.he_normal(), layout="torch"), TypeError, "layout"),
    (lambda: I.WeightMoments(0.0, -1.0), ValueError, "var"),
    (lambda: I.WeightMoments(0.0, 1.0, structure="banded"), ValueError, "structure"),
]


@pytest.mark.parametrize(("make", "exc", "match"), BAD_CONSTRUCTION)
def test_bad_construction_is_refused(make, exc, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=match):
        make()


BAD_CALLS = [
    (I.he_normal(), dict(shape=(3.0, 4)), TypeError, "shape"),
    (I.he_normal(), dict(shape=(-1, 4)), ValueError, "shape"),
    (I.he_normal(), dict(shape="34"), TypeError, "shape"),
    (I.he_normal(), dict(shape=(5,)), ValueError, "in_axis and out_axis"),
    (I.he_normal(), dict(shape=()), ValueError, "in_axis and out_axis"),
    (I.he_normal(groups=3), dict(shape=(4, 8)), ValueError, "groups"),
    (I.orthogonal(), dict(shape=(5,)), ValueError, "rank >= 2"),
    (I.identity(), dict(shape=(3, 3, 3)), ValueError, "2-D"),
    (I.dirac(), dict(shape=(3, 3)), ValueError, "3-D to 5-D"),
    (I.dirac(groups=3), dict(shape=(3, 4, 8)), ValueError, "groups"),
    (I.delta_orthogonal(), dict(shape=(3, 8, 4)), ValueError, "in channels <= out"),
    (I.sparse(0.1), dict(shape=(3, 4, 5)), ValueError, "2-D"),
    (I.he_normal(), dict(shape=(4, 4), dtype=np.int32), TypeError, "dtype"),
    (I.zeros(), dict(shape=(4, 4), dtype=np.complex64), TypeError, "dtype"),
    (I.zeros(), dict(shape=(4, 4), dtype=bool), TypeError, "dtype"),
    (I.he_normal(), dict(shape=(4, 4), seed="abc"), TypeError, "seed"),
    (I.he_normal(), dict(shape=(4, 4), seed=1.5), TypeError, "seed"),
    (I.he_normal(), dict(shape=(4, 4), seed=-1), ValueError, "seed"),
    (I.he_normal(), dict(shape=(4, 4), seed=np.random.RandomState(0)), TypeError, "seed"),
]


@pytest.mark.parametrize(("init", "kwargs", "exc", "match"), BAD_CALLS)
def test_bad_calls_are_refused(init, kwargs, exc, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=match):
        init(**kwargs)


def test_moments_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="fan_in of shape"):
        I.he_normal().moments((0, 5))
    with pytest.raises(TypeError, match="unknown fan option"):
        I.he_normal().moments((4, 4), layuot="torch")
    with pytest.raises(ValueError, match="rank >= 2"):
        I.orthogonal().moments((4,))
