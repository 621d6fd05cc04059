"""Seeded two-dimensional toy classification sets."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .._validate import as_generator, finite_real, integer, one_of
from ._common import SeedLike
from ._shipped import Dataset

# --------------------------------------------------------------------------------------
# Toy 2-D data
# --------------------------------------------------------------------------------------

#: Kinds :func:`make_toy_2d` draws, with their default ``noise``.
TOY_KINDS: dict[str, float] = {
    "blobs": 1.0,
    "moons": 0.1,
    "circles": 0.05,
    "spiral": 0.05,
    "xor": 0.3,
}
_MULTICLASS_KINDS = ("blobs", "spiral")




def make_toy_2d(
    n_samples: int = 200,
    kind: str = "blobs",
    *,
    noise: Optional[float] = None,
    n_classes: int = 2,
    seed: SeedLike = None,
) -> Dataset:
    """Draw a small two-dimensional classification data set.

    Kinds (the shapes are fixed; ``noise`` is the standard deviation of isotropic Gaussian
    noise added to every point, default per kind in :data:`TOY_KINDS`):

    - ``"blobs"``: one Gaussian blob per class, centres on a circle of radius 2.5 (for two
      classes at ``±(1.77, 1.77)``, 5 apart); with the default ``noise=1.0`` two classes
      are linearly separable up to about 0.6 % of the points.
    - ``"moons"``: two interleaved half circles (as in scikit-learn's ``make_moons``).
    - ``"circles"``: two concentric circles, radii 1 and 0.5.
    - ``"spiral"``: ``n_classes`` interleaved spiral arms out to radius 1.
    - ``"xor"``: four blobs at ``(±1, ±1)``; class 1 where the coordinates' signs differ.

    ``"blobs"`` and ``"spiral"`` take any ``n_classes >= 2``, the others exactly 2. Classes
    are as equal in size as ``n_samples`` allows (the first ``n_samples % n_classes``
    classes get one more), and the rows are shuffled.

    Parameters
    ----------
    n_samples:
        Total number of points, at least ``n_classes``.
    kind:
        One of ``"blobs"``, ``"moons"``, ``"circles"``, ``"spiral"``, ``"xor"``.
    noise:
        Standard deviation of the added Gaussian noise (>= 0); ``None`` for the kind's
        default.
    n_classes:
        Number of classes.
    seed:
        ``None``, int, SeedSequence or Generator; the same seed gives the same data.

    Returns
    -------
    Dataset
        ``x`` float64 ``(n_samples, 2)``, ``y`` int64, ``name == "toy-<kind>"``.
    """
    one_of("kind", kind, tuple(TOY_KINDS))
    n_classes = integer("n_classes", n_classes, minimum=2)
    if n_classes != 2 and kind not in _MULTICLASS_KINDS:
        raise ValueError(f"n_classes must be 2 for kind={kind!r}; got {n_classes}")
    n_samples = integer("n_samples", n_samples, minimum=n_classes)
    if noise is None:
        noise = TOY_KINDS[kind]
    noise = finite_real("noise", noise, non_negative=True)
    rng = as_generator(seed)

    sizes = [n_samples // n_classes + (k < n_samples % n_classes) for k in range(n_classes)]
    parts = []
    if kind == "blobs":
        for k, m in enumerate(sizes):
            angle = math.pi / 4 + 2 * math.pi * k / n_classes
            parts.append(np.tile([2.5 * math.cos(angle), 2.5 * math.sin(angle)], (m, 1)))
    elif kind == "moons":
        t0 = np.linspace(0.0, math.pi, sizes[0])
        t1 = np.linspace(0.0, math.pi, sizes[1])
        parts.append(np.column_stack([np.cos(t0), np.sin(t0)]))
        parts.append(np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)]))
    elif kind == "circles":
        for k, radius in enumerate((1.0, 0.5)):
            t = np.linspace(0.0, 2 * math.pi, sizes[k], endpoint=False)
            parts.append(radius * np.column_stack([np.cos(t), np.sin(t)]))
    elif kind == "spiral":
        for k, m in enumerate(sizes):
            r = np.linspace(0.1, 1.0, m)
            t = 2 * math.pi * k / n_classes + 1.5 * math.pi * r
            parts.append(np.column_stack([r * np.cos(t), r * np.sin(t)]))
    else:  # xor
        for k, m in enumerate(sizes):
            corners = [(1.0, 1.0), (-1.0, -1.0)] if k == 0 else [(1.0, -1.0), (-1.0, 1.0)]
            half = m // 2
            parts.append(np.vstack([np.tile(corners[0], (half, 1)), np.tile(corners[1], (m - half, 1))]))
    x = np.vstack(parts).astype(np.float64)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), sizes)
    x += rng.normal(0.0, noise, size=x.shape) if noise > 0 else 0.0
    order = rng.permutation(n_samples)
    return Dataset(
        x=np.ascontiguousarray(x[order]),
        y=y[order],
        class_names=tuple(str(k) for k in range(n_classes)),
        name=f"toy-{kind}",
        description=(
            f"Synthetic 2-D '{kind}' data from varprop.datasets.make_toy_2d: {n_samples} points, "
            f"{n_classes} classes, Gaussian noise std {noise:g}."
        ),
        feature_names=("x0", "x1"),
    )
