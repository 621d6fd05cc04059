"""Checks shared by the PyTorch and Keras adapter tests: the chi-square band of a weight
tensor's mean of squares, and equality of two profiles to 1e-12."""

from __future__ import annotations

import pytest
from scipy import stats

ALPHA = 1e-3
FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var")
# kurtosis E[w^4] / E[w^2]^2 of each family, from scipy (not from varprop)
KURTOSIS = {"uniform": 9.0 / 5.0, "normal": 3.0,
            "truncated_normal": float(stats.truncnorm(-2, 2).stats(moments="k")) + 3.0}


def chi2_band(var, n, kurtosis, alpha=ALPHA):
    """Two-sided 1 - alpha bounds of the mean of squares of n zero-mean entries of
    variance ``var``: dof * m2 / var ~ chi2(dof), dof = 2 n / (kurtosis - 1)
    (Satterthwaite; exact for normal entries)."""
    dof = 2.0 * n / (kurtosis - 1.0)
    return (var * stats.chi2.ppf(alpha / 2, dof) / dof,
            var * stats.chi2.ppf(1 - alpha / 2, dof) / dof)


def assert_profiles_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for name in FIELDS:
            assert getattr(g, name) == pytest.approx(getattr(w, name), rel=1e-12, abs=1e-300), name
