"""Pieces shared by the experiments: data preparation, initializer labels, progress,
plain-text tables and the optional matplotlib import."""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np

from .._validate import one_of, seed_list
from ..datasets import Dataset, standardize, train_test_split

__all__ = [
    "ProgressLike",
    "InitSpec",
    "reporter",
    "format_table",
    "init_label",
    "normalize_inits",
    "prepare_split",
    "require_pyplot",
    "check_seeds",
    "ExperimentResult",
]

ProgressLike = Union[None, bool, Callable[[str], Any]]
#: An initializer as the experiments take it: a name, a config dict
#: (``{"name": "random_normal", "stddev": 0.1}``), an Initializer, or a
#: ``(label, spec)`` pair to set the label shown in tables and plots.
InitSpec = Any


def reporter(progress: ProgressLike) -> Callable[[str], None]:
    """None/False: silent; True: print to stderr; a callable: called with each line."""
    if progress is None or progress is False:
        return lambda msg: None
    if progress is True:
        return lambda msg: print(msg, file=sys.stderr, flush=True)
    if callable(progress):
        return progress
    raise TypeError(f"progress must be None, a bool or a callable, got {type(progress).__name__}")


def init_label(spec: InitSpec) -> str:
    """A short label: ``"he_normal"``, ``"random_normal(stddev=0.1)"``."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        params = {k: v for k, v in spec.items() if k != "name"}
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}"
                          for k, v in params.items())
        return f"{spec.get('name', '?')}({inner})" if inner else str(spec.get("name", "?"))
    return getattr(spec, "name", None) or repr(spec)


def normalize_inits(inits: Iterable[InitSpec], argname: str = "initializers") -> list[tuple[str, Any]]:
    """``[(label, spec), ...]``, each spec checked with :func:`varprop.initializers.get`."""
    from ..initializers import get

    if isinstance(inits, (str, Mapping)):
        inits = [inits]
    out = []
    for spec in inits:
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            label, spec = spec
        else:
            label = init_label(spec)
        try:
            get(spec)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{argname}: {exc}") from exc
        out.append((label, spec))
    if not out:
        raise ValueError(f"{argname} must name at least one initializer")
    return out


def check_seeds(seeds: Any) -> tuple[int, ...]:
    """A non-empty tuple of non-negative ints; one int is one seed (not a count)."""
    return tuple(seed_list("seeds", seeds, int_is_count=False))


def prepare_split(data: Dataset, seed: int, test_size: float = 0.2, scale: str = "standardize"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified split, then ``"standardize"`` (training statistics), ``"divide"``
    (by the training maximum, e.g. 16 for the digits) or ``"none"``."""
    one_of("scale", scale, ("standardize", "divide", "none"))
    xtr, xte, ytr, yte = train_test_split(data.x, data.y, test_size=test_size, seed=seed)
    if scale == "standardize":
        xtr, xte, _, _ = standardize(xtr, xte)
    elif scale == "divide":
        top = float(np.max(np.abs(xtr))) or 1.0
        xtr, xte = xtr / top, xte / top
    return xtr, xte, ytr, yte


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"  # exact zeros stay visibly exact
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                 title: str | None = None, notes: Sequence[str] = ()) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [title] if title else []
    out += [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out += list(notes)
    return "\n".join(out)


def require_pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or a clear ImportError."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot() needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'varprop[plot]')"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


class ExperimentResult:
    """Base of the experiments' results: ``table()`` renders the result as text,
    ``plot(path)`` writes a figure (PNG, PDF or SVG by the suffix) and returns the path,
    ``elapsed`` is the wall time of the run in seconds."""

    name = "experiment"
    elapsed: float = math.nan

    def table(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def plot(self, path: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def __str__(self) -> str:
        return self.table()

    def mean_accuracy(self, label: str) -> float:
        """Mean test accuracy of one initializer over the seeds (the training experiments)."""
        return float(np.mean(self.test_accuracy[label]))  # type: ignore[attr-defined]

    def _save(self, fig: Any, path: Any) -> Any:
        from pathlib import Path

        out = Path(path)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
        return out
