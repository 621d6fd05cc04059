"""Argument checks shared by the trainer: each error names the argument, what was
expected and what came (the package convention)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_positive_int",
    "check_positive_float",
    "check_fraction",
    "check_features",
    "check_labels",
    "check_dtype",
]


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; TypeError for non-integers (bools included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = (value < 0) if allow_zero else (value <= 0)
    if not math.isfinite(value) or bad:
        what = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_fraction(value: Any, name: str, *, low: float, high: float,
                   closed_low: bool = False, closed_high: bool = False) -> float:
    """``value`` as a float in the interval from ``low`` to ``high``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok_low = value >= low if closed_low else value > low
    ok_high = value <= high if closed_high else value < high
    if not (math.isfinite(value) and ok_low and ok_high):
        lb = "[" if closed_low else "("
        rb = "]" if closed_high else ")"
        raise ValueError(f"{name} must lie in {lb}{low:g}, {high:g}{rb}, got {value!r}")
    return value


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """float32 or float64 (anything numpy reads as one of them)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


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
