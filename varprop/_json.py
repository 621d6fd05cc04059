"""Values for JSON: the one place NaN and infinity become null.

JSON has no NaN or infinity, so every document varprop writes (profiles, reports, phase
diagrams, ``varprop init``) turns a non-finite float into ``null``; numpy scalars become
the Python ones :mod:`json` can write.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_number", "json_clean"]


def json_number(v: Any) -> Any:
    """A value for JSON: NaN and +-inf become None (null), numpy floats, ints and bools
    the Python ones; anything else (None, str, a Python int) is returned as is."""
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def json_clean(obj: Any) -> Any:
    """``obj`` with :func:`json_number` applied to every value inside its dicts, lists
    and tuples (tuples become lists, keys strings)."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    return json_number(obj)
