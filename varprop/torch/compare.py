"""Theory against measurement for a PyTorch model: :func:`compare`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ..analytic import analyze
from ..compare import Comparison
from ..compare import compare as _compare
from .profile import keep_modes, profile_traced
from .trace import trace

__all__ = ["compare", "TorchComparison", "DEFAULT_BATCH", "MEASURES", "ANCHORING"]

#: How the theory treats a measured-only op (docs/torch.md), in every output.
ANCHORING = ("measured-only ops have no theory and no verdict; the theory is re-anchored "
             "on each one's measured output variance (forward) and on the measured "
             "gradient variance at its input (backward), so every other layer keeps its "
             "theory")


@dataclass
class TorchComparison(Comparison):
    """A :class:`varprop.Comparison` with the model's measured-only ops: ``measured_only``
    holds one dict per op (``op``, ``after``: the record it precedes, ``out_var``,
    ``grad_var`` at its input, their ``_ci``, ``gated_theory``), shown in :meth:`table`
    as rows without theory or verdict, and also in ``rows`` (``"measured_only": True``,
    ``analytic`` NaN, ``test`` None) so that the JSON carries them."""

    measured_only: list[dict[str, Any]] = field(default_factory=list)
    anchoring: str = ANCHORING

    def table(self, fields: tuple[str, ...] = ("z_var", "a_var", "grad_var")) -> str:
        """:meth:`varprop.Comparison.table` with a row per measured-only op, in forward
        order: its measured output variance in the ``Var[z]`` and ``Var[a]`` columns, the
        gradient into it in ``grad_var``, "measured only" in place of theory."""
        lines = super().table(fields).split("\n")
        if not self.measured_only:
            return "\n".join(lines)
        body = lines[2:2 + len(self.analytic)]
        out = lines[:2]
        for i in range(len(body) + 1):
            for row in (r for r in self.measured_only if r["after"] == i):
                cells = []
                for f in fields:
                    key = "grad_var" if f == "grad_var" else "out_var"
                    v, ci = row[key], row[key + "_ci"]
                    measured = f"{v:.4g}" + (f"±{ci:.2g}" if math.isfinite(ci) else "")
                    cells.append(f" {'measured only':>14} {measured:>16}")
                out.append(f"{'m':>5}" + "".join(cells) + f"  {row['op']}")
                if row.get("gated_theory"):
                    g = row["gated_theory"]
                    out.append(f"{'':>5} gated theory beside it ({g['what']}): {g['var']:.4g}")
            if i < len(body):
                out.append(body[i])
        out += lines[2 + len(self.analytic):]
        out.append(f"measured only: {self.anchoring}")
        return "\n".join(out)

#: The batch ``measure="traced"`` draws when none is given: enough rows for each
#: variance estimate, whatever the size of the example input.
DEFAULT_BATCH = 256
#: What :func:`compare` can measure.
MEASURES = ("model", "traced")


def compare(model: nn.Module, example_input: torch.Tensor, *,
            seeds: "int | Sequence[int]" = 3, batch: "int | None" = None, init: Any = None,
            measure: str = "model", n_threads: "int | None" = None, progress: Any = None
            ) -> Comparison:
    """Trace ``model`` (:func:`varprop.torch.trace`) and compare the mean-field theory
    of the traced network with a measurement (:func:`varprop.compare`).

    ``measure="model"`` (the default) measures the PyTorch model itself with
    :func:`varprop.torch.profile`: forward and tensor hooks on its own forward and
    backward, each seed re-drawing its Linear/Conv weights from the law the trace found
    (or from ``init``), on standard-normal inputs, Dropout off and BatchNorm in training
    mode. The theory then takes standard-normal inputs too, and the ``batch`` measured.

    ``measure="traced"`` measures the traced network on varprop's kernels instead
    (:func:`varprop.measure`), with inputs of the example's mean and variance: the
    behaviour of earlier versions.

    Args:
        model, example_input, init: as for :func:`varprop.torch.trace`.
        seeds: independent draws of the measurement (>= 2 for confidence intervals):
            a count or a sequence of distinct seeds.
        batch: rows of each measured batch (and the batch BatchNorm's theory uses);
            None: the example's own batch with ``measure="model"``,
            :data:`DEFAULT_BATCH` with ``measure="traced"``.
        measure: "model" or "traced" (above).
        n_threads: threads of the ``measure="traced"`` measurement (None: varprop's
            default); the model runs on torch's own threads.
        progress: as for :func:`varprop.torch.profile` / :func:`varprop.measure`.

    Returns:
        A :class:`varprop.Comparison` (``.table()`` prints theory next to measurement;
        ``.disagrees`` is the log-space test of docs/comparison.md).

    Raises:
        ValueError: an unknown ``measure``; and as :func:`varprop.torch.trace` and
            :func:`varprop.torch.profile`.

    Example:
        >>> import torch, varprop.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(),
        ...                             torch.nn.Linear(64, 64))
        >>> cmp = varprop.torch.compare(model, torch.randn(128, 64), seeds=3)
        >>> len(cmp.analytic), cmp.agree
        (2, True)
    """
    if measure not in MEASURES:
        raise ValueError(f"compare: measure must be one of {MEASURES}, got {measure!r}")
    with keep_modes(model):
        result = trace(model, example_input, init=init, anchor=False)
    if measure == "traced" and result.measured:
        raise ValueError("compare: measure='traced' runs the traced network on varprop's "
                         "kernels, which have no array code for its measured-only ops ("
                         + "; ".join(op.name for op in result.measured)
                         + "): use measure='model'")
    if measure == "traced":
        x = example_input.detach().double()
        var = float(x.var(unbiased=False))
        return _compare(result.network, batch=DEFAULT_BATCH if batch is None else batch,
                        seeds=seeds, input_mean=float(x.mean()),
                        input_var=var if var > 0 else 1.0, n_threads=n_threads,
                        progress=progress)
    with keep_modes(model):
        empirical = profile_traced(model, result, tuple(example_input.shape), seeds=seeds,
                                   init=init, batch=batch, progress=progress)
    rows = empirical.meta["batch"]
    if result.measured:  # theory re-anchored on this very measurement
        result = result.anchor(empirical)
    in_mean, in_var = result.input_moments
    # BatchNorm's gradient depends on the batch it normalizes over (docs/theory.md)
    analytic = analyze(result.network, input_mean=in_mean, input_var=in_var, batch=rows)
    cmp = _compare(result.network, batch=rows, analytic=analytic, empirical=empirical)
    extra = empirical.meta.get("measured_only", [])
    out = TorchComparison(**{f.name: getattr(cmp, f.name) for f in dataclasses.fields(cmp)},
                          measured_only=extra)
    for row in extra:
        for name, key in (("z_var", "out_var"), ("grad_var", "grad_var")):
            out.rows.append({"layer": None, "op": row["op"], "field": name,
                             "measured_only": True, "analytic": math.nan,
                             "measured": row[key], "ci": row[key + "_ci"],
                             "after": row["after"], "test": None,
                             "gated_theory": row.get("gated_theory")})
    return out
