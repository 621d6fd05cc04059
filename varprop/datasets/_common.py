"""Types shared by the dataset modules (the argument checks are :mod:`varprop._validate`'s)."""

from __future__ import annotations

import os
from typing import Union

from .._validate import SeedLike

__all__ = ["SeedLike", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]
