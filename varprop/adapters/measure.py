"""A framework model measured layer by layer, in :func:`varprop.measure`'s terms.

The adapters' ``profile`` functions run the model itself and hand each weighted layer's
pre-activation ``z``, its activation ``a`` and the gradient ``dL/dz`` here as numpy
arrays in varprop's layout (channels last). The statistics are ``varprop.measure``'s
(docs/comparison.md; the module doc of :mod:`varprop.empirical`): pooled mean and
variance over the batch and all units (and pixels) in float64, per-channel moments,
per-pixel maps of convolutions, ``weight_grad_var = Var[dL/dW entry] / batch``, and
means over seeds with 95% t half-widths (:func:`varprop.empirical._summarize`).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from .._empirical_run import FIELDS, LAYER_KEY, stream
from .._validate import seed_list, variance_batch
from ..empirical import _summarize, _weight_moments
from ..layers import iter_steps
from ..profile import SEED_FIELDS, LayerRecord, Profile

__all__ = ["ROW", "MEASURED_FIELDS", "Streams", "seeds_and_rows", "weighted_steps",
           "forward_stats", "grad_stats", "weight_grad_stat", "assemble", "reporter"]

#: The row of each statistic in a seed's ``(len(FIELDS), n_layers)`` array.
ROW = {name: i for i, name in enumerate(FIELDS)}
_CI_FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var", "z_corr")
#: What is measured at each measured-only layer, per seed (``Profile.meta["measured_only"]``).
MEASURED_FIELDS = ("out_mean", "out_var", "bcross", "grad_var", "in_var")


class Streams:
    """What a varprop layer's ``draw`` asks of a run: ``varprop.measure``'s streams, so
    that a seed draws the same weights in a model as ``varprop.measure`` in its trace."""

    def __init__(self, base: int, dtype: np.dtype) -> None:
        self.base, self.dtype = base, dtype

    def stream(self, index: int, k: int) -> np.random.SeedSequence:
        return stream(self.base, LAYER_KEY, index, k)


def seeds_and_rows(seeds: Any, batch: "int | None", example_shape: tuple[int, ...]
                   ) -> tuple[list[int], int]:
    """The seeds (a count or distinct non-negative ints) and the rows of each measured
    batch of a ``profile``: ``batch``, or the example's own batch (which then needs two
    rows: a variance needs two)."""
    bases = seed_list("seeds", seeds, int_is_count=True, unique=True, owner="profile")
    if batch is None and example_shape[0] < 2:
        raise ValueError(f"profile: the example input has {example_shape[0]} row(s) and a "
                         "variance needs two: pass batch= (e.g. batch=64)")
    return bases, variance_batch("batch", example_shape[0] if batch is None else batch,
                                 owner="profile")


def weighted_steps(network: Any) -> list:
    """The network's weighted steps (residual branches entered) in record order."""
    return sorted((s for s in iter_steps(network.steps) if s.layer.weighted),
                  key=lambda s: s.index)


def _pooled(t: np.ndarray) -> tuple[float, float]:
    t = np.asarray(t, np.float64)
    return float(t.mean()), float(t.var())


def forward_stats(col: np.ndarray, z: np.ndarray, a: np.ndarray, maps: dict, i: int) -> None:
    """Record ``i``'s forward statistics into ``col`` (one seed's column) from ``z`` and
    ``a`` of shape ``(batch, *spatial, units)``; per-pixel maps into ``maps[i]``."""
    col[ROW["z_mean"]], col[ROW["z_var"]] = _pooled(z)
    col[ROW["a_mean"]], col[ROW["a_var"]] = _pooled(a)
    per_unit = np.asarray(z, np.float64).reshape(-1, z.shape[-1])  # (batch * pixels) x units
    col[ROW["channel_sq_mean"]] = float((per_unit.mean(0) ** 2).mean())
    col[ROW["channel_var"]] = float(per_unit.var(0).mean())
    if z.ndim > 2:  # per-pixel maps, pooled over the batch and the channels
        maps.setdefault(i, {}).update(z_var=np.asarray(z, np.float64).var(axis=(0, -1)),
                                      a_var=np.asarray(a, np.float64).var(axis=(0, -1)))


def grad_stats(col: np.ndarray, g: np.ndarray, maps: dict, i: int) -> None:
    """Record ``i``'s gradient statistics from ``g = dL/dz`` (``z``'s shape)."""
    col[ROW["grad_var"]] = _pooled(g)[1]
    if g.ndim > 2:
        maps.setdefault(i, {})["grad_var"] = np.asarray(g, np.float64).var(axis=(0, -1))


def weight_grad_stat(col: np.ndarray, dw: "np.ndarray | None", rows: int) -> None:
    """``Var[dL/dW entry] / batch`` (dL/dW sums ``batch`` per-sample terms); NaN without
    a gradient."""
    col[ROW["weight_grad_var"]] = np.nan if dw is None else \
        float(np.asarray(dw, np.float64).var()) / rows


def assemble(network: Any, bases: list[int], values: np.ndarray, seed_maps: list,
             meta: dict[str, Any], input_mean: float = 0.0, input_var: float = 1.0
             ) -> Profile:
    """The :class:`~varprop.profile.Profile` (``kind="empirical"``) of per-seed
    ``values`` ``(n_seeds, len(FIELDS), n_layers)``, one record per weighted step of
    ``network`` in ``analyze``'s order.

    Args:
        network: the traced network the records line up with.
        bases: the seeds, in ``values``' order.
        values: per seed the statistics of :func:`forward_stats`, :func:`grad_stats`
            and :func:`weight_grad_stat` (NaN where not measured, as ``z_corr``).
        seed_maps: per seed ``{record: {"z_var"|"a_var"|"grad_var": map}}``.
        meta: ``Profile.meta`` (``seeds`` and ``n_seeds`` are set here).
        input_mean, input_var: the moments of one input unit (standard normal: 0, 1).
    """
    mean, ci = _summarize(values)
    records = []
    for i, step in enumerate(weighted_steps(network)):
        layer = step.layer
        stats = {name: float(mean[j, i]) for j, name in enumerate(FIELDS)}
        cis = {f"{name}_ci": float(ci[ROW[name], i]) for name in _CI_FIELDS}
        records.append(LayerRecord(index=i, n_in=layer.n_in, n_out=layer.n_out,
                                   symmetric=bool(_weight_moments(layer).symmetric),
                                   **stats, **cis))
    maps = {i: {k: np.mean([m[i][k] for m in seed_maps], axis=0) for k in seed_maps[0][i]}
            for i in seed_maps[0]} if seed_maps else {}
    meta = {**meta, "seeds": list(bases), "n_seeds": len(bases)}
    per_seed = {name: values[:, ROW[name], :].tolist() for name in SEED_FIELDS}
    return Profile("empirical", records, network.describe(), input_var=input_var,
                   input_mean=input_mean, meta=meta, seed_values=per_seed, maps=maps)


def reporter(progress: Any, total: int, label: str, owner: str = "profile"
             ) -> "Callable[[int | None], None] | None":
    """``tick(k)`` after k steps (``tick(None)`` at the end), or None for no progress.

    Args:
        progress: None/False silent; True a line on stderr when it is a terminal; a
            callable gets ``(done, total)``.
        total: the number of steps.
        label: the progress line's prefix.
        owner: the function named in the error.

    Raises:
        TypeError: ``progress`` of another type.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            if not sys.stderr.isatty():
                return None
        except (AttributeError, ValueError):
            return None
        callback = None
    elif callable(progress):
        callback = progress
    else:
        raise TypeError(f"{owner}: progress must be None, True/False or a callable(done, "
                        f"total), got {type(progress).__name__}")
    done = [0]

    def tick(k: "int | None") -> None:
        if k is None:
            if callback is None:
                sys.stderr.write("\n")
            return
        done[0] += k
        if callback is not None:
            callback(done[0], total)
        else:
            sys.stderr.write(f"\r{label}: {done[0]}/{total} layer steps")
            sys.stderr.flush()

    return tick
