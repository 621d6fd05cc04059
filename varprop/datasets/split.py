"""Seeded stratified train/test splits and standardization."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .._validate import as_generator, boolean, real_in_range
from ._common import SeedLike

# --------------------------------------------------------------------------------------
# Splitting and scaling
# --------------------------------------------------------------------------------------


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` test samples over classes in proportion to ``counts``.

    Largest-remainder rounding in exact integer arithmetic, with every class keeping at
    least one sample on each side (``1 <= t_k <= counts_k - 1``); ties go to the lower
    class index. Feasible whenever ``len(counts) <= total <= counts.sum() - len(counts)``.
    """
    n = int(counts.sum())
    scaled = total * counts  # quota_k = scaled_k / n, kept exact as integers
    alloc = np.clip(scaled // n, 1, counts - 1)
    diff = total - int(alloc.sum())
    while diff:
        remainder = scaled - alloc * n  # (quota - alloc) * n
        if diff > 0:
            cand = np.flatnonzero(alloc < counts - 1)
            k = cand[np.argmax(remainder[cand])]
            alloc[k] += 1
            diff -= 1
        else:
            cand = np.flatnonzero(alloc > 1)
            k = cand[np.argmin(remainder[cand])]
            alloc[k] -= 1
            diff += 1
    return alloc


def train_test_split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float = 0.2,
    seed: SeedLike = None,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split samples into a training and a test set, seeded and (by default) stratified.

    The test set gets ``ceil(test_size * n_samples)`` samples. With ``stratify=True`` each
    class contributes in proportion to its size (largest-remainder rounding, so per-class
    counts are within one of exact proportion and sum to the total), and every class keeps
    at least one sample in each set. Within a class the samples are chosen at random, and
    each output set is shuffled. The same seed and inputs give the same split.

    Parameters
    ----------
    x:
        Samples along axis 0, shape ``(n_samples, ...)``.
    y:
        Labels, shape ``(n_samples,)``; any values ``numpy.unique`` can sort.
    test_size:
        Fraction of the samples for the test set, strictly between 0 and 1.
    seed:
        ``None``, int, SeedSequence or Generator.
    stratify:
        Keep class proportions in both sets (default) or split without regard to labels.

    Returns
    -------
    (x_train, x_test, y_train, y_test)
        New arrays (rows of the inputs, dtypes kept).

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in length, ``y`` is not 1-D, ``test_size`` is not in
        (0, 1) or leaves either set empty, or (stratified) a class has fewer than 2 samples
        or there are more classes than samples in the smaller set.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1:
        raise ValueError("x must have samples along axis 0; got a 0-d array")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D labels of shape (n_samples,); got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of samples; got x with {len(x)} and y with {len(y)}"
        )
    real_in_range("test_size", test_size, 0.0, 1.0, closed_low=False, closed_high=False)
    boolean("stratify", stratify)
    n = len(y)
    n_test = math.ceil(round(float(test_size) * n, 9))
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(
            f"test_size={test_size} with {n} samples leaves an empty "
            f"{'test' if n_test < 1 else 'training'} set"
        )
    rng = as_generator(seed)
    if not stratify:
        order = rng.permutation(n)
        test_idx, train_idx = order[:n_test], order[n_test:]
    else:
        classes, inverse = np.unique(y, return_inverse=True)
        counts = np.bincount(inverse).astype(np.int64)
        if counts.min() < 2:
            worst = int(np.argmin(counts))
            raise ValueError(
                f"y: stratify=True needs at least 2 samples of every class; class "
                f"{classes[worst].tolist()!r} has {int(counts[worst])}"
            )
        k = len(classes)
        if n_test < k or n_train < k:
            raise ValueError(
                f"test_size={test_size}: a stratified split of {n} samples in {k} classes needs "
                f"at least {k} samples in each set; it would give {n_train} training and "
                f"{n_test} test samples"
            )
        per_class = _apportion(counts, n_test)
        test_parts, train_parts = [], []
        for c in range(k):
            members = rng.permutation(np.flatnonzero(inverse == c))
            test_parts.append(members[: per_class[c]])
            train_parts.append(members[per_class[c]:])
        test_idx = rng.permutation(np.concatenate(test_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]


def _as_2d_numeric(value: object, argname: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{argname} must be a real numeric array; got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{argname} must be 2-D (n_samples, n_features); got shape {a.shape}")
    return a


def standardize(
    x_train: np.ndarray, x_test: Optional[np.ndarray] = None
) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Centre and scale features to zero mean and unit variance using training data only.

    Each column is transformed as ``(x - mean) / std`` with the mean and (population,
    ``ddof=0``) standard deviation of ``x_train``; ``x_test`` gets the same transform.
    Columns that are constant in ``x_train`` (common in the digits, whose border pixels
    are always 0) are centred but not scaled (``std`` is reported as 1 for them), so
    nothing is divided by zero and they stay exactly 0 on the training data. NaN
    propagates as IEEE arithmetic says.

    Parameters
    ----------
    x_train:
        Training features, ``(n_train, n_features)``, at least one row.
    x_test:
        Optional further features ``(n_test, n_features)`` to transform with the training
        statistics.

    Returns
    -------
    (x_train_std, x_test_std, mean, std)
        Transformed arrays (float32 if the input was float32, else float64;
        ``x_test_std`` is ``None`` if ``x_test`` was) and the float64 per-column ``mean``
        and divisor ``std`` used, so that ``(x_new - mean) / std`` transforms new data the
        same way.
    """
    xt = _as_2d_numeric(x_train, "x_train")
    if xt.shape[0] < 1:
        raise ValueError("x_train must have at least one sample; got 0 rows")
    x64 = xt.astype(np.float64)
    constant = x64.max(axis=0) == x64.min(axis=0)
    mean = np.where(constant, x64[0], x64.mean(axis=0))
    std = np.where(constant, 1.0, x64.std(axis=0))

    def transform(a: np.ndarray) -> np.ndarray:
        out_dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        return ((a.astype(np.float64) - mean) / std).astype(out_dtype, copy=False)

    x_test_std = None
    if x_test is not None:
        xs = _as_2d_numeric(x_test, "x_test")
        if xs.shape[1] != xt.shape[1]:
            raise ValueError(
                f"x_test must have the {xt.shape[1]} features of x_train; got {xs.shape[1]}"
            )
        x_test_std = transform(xs)
    return transform(xt), x_test_std, mean, std
