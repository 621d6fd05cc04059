"""The trainer's array checks (features and labels): each error names the argument,
what was expected and what came. The scalar checks are :mod:`varprop._validate`'s."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_features", "check_labels"]


def check_features(x: Any, name: str, n_features: int, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous ``(n_samples, n_features)`` array of ``dtype``.

    Real-valued input of another float or integer dtype is converted (the model's dtype
    is the one the kernels run in); complex, bool, object and string data are refused.
    NaN and inf are kept: they propagate as IEEE arithmetic says.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features (shape {arr.shape}) but the model's first "
            f"layer takes {n_features}"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def check_labels(y: Any, name: str, n_samples: int, n_classes: int) -> np.ndarray:
    """Integer class labels ``(n_samples,)`` in ``0 .. n_classes - 1`` as int64."""
    arr = np.asarray(y)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        raise TypeError(
            f"{name} must hold integer class labels, got dtype {arr.dtype}; convert with "
            f"{name}.astype(int)"
        )
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,) of class indices, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"x and {name} must have the same number of samples, got {n_samples} and {arr.shape[0]}"
        )
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name} must lie in 0..{n_classes - 1} (the model has {n_classes} outputs), "
                f"got labels in {lo}..{hi}"
            )
    return arr.astype(np.int64, copy=False)
