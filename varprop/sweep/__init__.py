"""Sweeps across width, depth and parameterization: the coordinate check of muP with
the mean-field theory beside it, on this machine or a Dask cluster (docs/sweep.md).

    >>> from varprop import sweep
    >>> result = sweep.run(sweep.Grid(widths=(64, 128), parameterizations=("mup",),
    ...                               seeds=(0,), steps=1), executor="serial")
    >>> result.series[0]["slopes"]["dz"][1][-1]["verdict"]
    'stable'

:class:`Grid` names the axes, :class:`~varprop.sweep.cell.Cell` one point,
:func:`~varprop.sweep.cell.compute_cell` computes it (a pure function),
:func:`run` computes a grid (cached, resumable, on any executor) and analyzes it.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

from .._json import json_clean
from .._validate import non_negative_int, positive_int
from .analysis import FALSE_ALARM, SLOPE_FLOOR, analyze_results, fit_slope, verdict
from .cell import INITIALIZERS, RNG_STREAM_VERSION, Cell, cell_key, compute_cell
from .executors import EXECUTORS, Cache, run_cells
from .parameterization import PARAMETERIZATIONS, layer_rules

__all__ = ["Grid", "Cell", "run", "SweepResult", "compute_cell", "cell_key", "layer_rules",
           "RNG_STREAM_VERSION", "PARAMETERIZATIONS", "INITIALIZERS", "fit_slope",
           "verdict", "SLOPE_FLOOR", "FALSE_ALARM"]

#: The default widths: the coordinate check of ``varprop sweep``.
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep; :meth:`cells` is their product.

    Every axis is a tuple (a single value is taken as a one-element tuple); ``steps``,
    ``batch``, ``dtype``, ``input_dim``, ``n_classes``, ``epsilon`` (Adam's, at the base
    width) are single values. ``base_width``
    None means the smallest width. The defaults are those of ``varprop sweep``: a
    4-layer ReLU MLP under SP and muP, widths 64..2048, 3 Adam steps, 5 seeds.
    ``archs`` ``("residual",)`` builds residual MLPs whose ``depths`` are block counts
    (depth-muP's setting); with two depths or more the result also holds the coordinate
    check against depth (docs/sweep.md section 7), and one width is then enough.
    """

    widths: Sequence[int] = DEFAULT_WIDTHS
    depths: Sequence[int] = (4,)
    archs: Sequence[str] = ("mlp",)
    initializers: Sequence[str] = ("he_normal",)
    activations: Sequence[str] = ("relu",)
    parameterizations: Sequence[str] = ("sp", "mup")
    optimizers: Sequence[str] = ("adam",)
    learning_rates: Sequence[float] = (0.01,)
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    steps: int = 3
    batch: int = 64
    dtype: str = "float32"
    input_dim: int = 32
    n_classes: int = 10
    base_width: int | None = None
    epsilon: float = 1e-7

    def __post_init__(self) -> None:
        for f in ("widths", "depths", "archs", "initializers", "activations", "parameterizations",
                  "optimizers", "learning_rates", "seeds"):
            value = getattr(self, f)
            if isinstance(value, (str, int, float)):
                value = (value,)
            try:
                value = tuple(value)
            except TypeError:
                raise TypeError(f"{f} must be a list of values, got "
                                f"{type(value).__name__}") from None
            if not value:
                raise ValueError(f"{f} must not be empty")
            if len(set(value)) != len(value):
                raise ValueError(f"{f} has a repeated value: {list(value)}")
            object.__setattr__(self, f, value)
        widths = [positive_int("widths", w) for w in self.widths]
        if len(widths) < 2 and len(self.depths) < 2:
            raise ValueError(f"widths needs at least two widths to fit a slope against "
                             f"width (or depths two depths, for the depth check), got "
                             f"widths {widths} and depths {list(self.depths)}")
        object.__setattr__(self, "widths", tuple(sorted(widths)))
        positive_int("batch", self.batch)
        non_negative_int("steps", self.steps)
        if self.base_width is not None:
            positive_int("base_width", self.base_width)

    def cells(self) -> list[Cell]:
        """Every grid point as a validated :class:`Cell` (a bad value raises here,
        naming its field)."""
        base = self.base_width if self.base_width is not None else min(self.widths)
        out = []
        for (p, o, lr, arch, d, i, a, s, w) in itertools.product(
                self.parameterizations, self.optimizers, self.learning_rates, self.archs,
                self.depths, self.initializers, self.activations, self.seeds, self.widths):
            out.append(Cell(width=w, depth=d, arch=arch, initializer=i, activation=a,
                            parameterization=p, optimizer=o, learning_rate=lr,
                            steps=self.steps, batch=self.batch, seed=s, dtype=self.dtype,
                            input_dim=self.input_dim, n_classes=self.n_classes,
                            base_width=base, epsilon=self.epsilon))
        return out


@dataclass
class SweepResult:
    """What :func:`run` returns: ``cells`` (each cell's result, grid order), ``series``
    (the slopes and verdicts of :func:`varprop.sweep.analysis.analyze_results`) and
    ``stats`` (``cells``, ``computed``, ``cached``, ``restarts``, ``executor``,
    ``seconds``)."""

    cells: list[dict[str, Any]]
    series: list[dict[str, Any]]
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (NaN as null)."""
        from .. import __version__

        return json_clean({"varprop": __version__, "rng_stream": RNG_STREAM_VERSION,
                           "slope_floor": SLOPE_FLOOR, "false_alarm": FALSE_ALARM,
                           "stats": self.stats, "series": self.series, "cells": self.cells})

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def text(self) -> str:
        from .report import text_report

        return text_report(self.series, self.stats)

    def html(self, command: str = "") -> str:
        from .report import html_report

        return html_report(self.series, self.stats, command)


def _as_cells(grid: Any) -> list[Cell]:
    if isinstance(grid, Grid):
        return grid.cells()
    if isinstance(grid, Mapping):
        names = {f.name for f in fields(Grid)}
        unknown = sorted(set(grid) - names)
        if unknown:
            raise ValueError(f"grid: unknown axis {unknown}; the axes are {sorted(names)}")
        return Grid(**grid).cells()
    if isinstance(grid, (list, tuple)) and grid and all(isinstance(c, Cell) for c in grid):
        return list(grid)
    raise TypeError(f"grid must be a varprop.sweep.Grid, a dict of its axes or a non-empty "
                    f"list of Cells, got {type(grid).__name__}")


def run(grid: Any = None, *, executor: Any = "local", cache_dir: Any = None,
        workers: int | None = None, scheduler: str | None = None, retries: int = 3,
        on_done: Callable[[Cell, bool], None] | None = None) -> SweepResult:
    """Compute every cell of ``grid`` (from the cache where it is there) and analyze.

    Args:
        grid: a :class:`Grid`, a dict of its axes, or a list of :class:`Cell`; None: the
            default grid (the coordinate check of ``varprop sweep``).
        executor: ``"local"`` (worker processes on all cores, the default), ``"serial"``
            (this process), ``"dask"`` (with ``scheduler``) or a
            ``dask.distributed.Client``.
        cache_dir: a directory for the finished cells (one JSON file per cell key,
            written atomically); a rerun reads them instead of computing (resume).
        workers: local worker processes (default: all cores).
        scheduler: ``tcp://HOST:PORT`` of a Dask scheduler (executor ``"dask"``).
        retries: times a crashed worker's cells are retried (local: pool restarts;
            Dask: the task's ``retries``).
        on_done: called with ``(cell, from_cache)`` as each cell finishes (progress).

    Returns:
        A :class:`SweepResult`; its numbers do not depend on the executor.
    """
    cells = _as_cells(Grid() if grid is None else grid)
    if not (isinstance(executor, str) and executor in EXECUTORS):
        try:
            from dask.distributed import Client
        except ImportError:
            Client = ()  # type: ignore[assignment]
        if not isinstance(executor, Client):  # type: ignore[arg-type]
            raise ValueError(f"executor must be one of {EXECUTORS} or a "
                             f"dask.distributed.Client, got {executor!r}")
    if workers is not None:
        workers = positive_int("workers", workers)
    retries = non_negative_int("retries", retries)
    if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
        raise ValueError(f"scheduler must be an address like tcp://HOST:PORT, got {scheduler!r}")
    cache = Cache(cache_dir)
    t0 = time.perf_counter()
    results, counts = run_cells(cells, executor=executor, workers=workers,
                                scheduler=scheduler, cache=cache, retries=retries,
                                on_done=on_done)
    ordered = [results[cell_key(c)] for c in cells]
    stats = {"cells": len(results), **counts,
             "executor": executor if isinstance(executor, str) else "dask",
             "seconds": time.perf_counter() - t0}
    # grid order, not completion order: the analysis is then the same on any executor
    unique = list({r["key"]: r for r in ordered}.values())
    return SweepResult(ordered, analyze_results(unique), stats)
