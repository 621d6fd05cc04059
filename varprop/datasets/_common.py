"""Types and argument checks shared by the dataset modules."""

from __future__ import annotations

import numbers
import os
from typing import Union

import numpy as np

SeedLike = Union[None, int, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator]
PathLike = Union[str, "os.PathLike[str]"]

def _as_rng(seed: SeedLike) -> np.random.Generator:
    """Normalise ``seed`` with :func:`numpy.random.default_rng`, naming it in errors."""
    if isinstance(seed, (bool, np.bool_)) or not (
        seed is None
        or isinstance(
            seed,
            (numbers.Integral, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator),
        )
    ):
        raise TypeError(
            "seed must be None, an int, a numpy SeedSequence, BitGenerator or Generator; "
            f"got {type(seed).__name__}"
        )
    try:
        return np.random.default_rng(seed)
    except ValueError as exc:
        raise ValueError(f"seed must be a non-negative int; got {seed!r} ({exc})") from None


def _check_int(value: object, argname: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argname} must be at least {minimum}; got {value}")
    return int(value)
