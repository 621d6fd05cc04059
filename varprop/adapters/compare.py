"""Theory against a model's measurement, as the adapters' ``compare`` gives it: on the
traced network (:func:`traced`), or on the model itself, with the rows of its
measured-only ops (a layer varprop has no mean-field rule for, kept in the network and
re-anchored on measurement: :mod:`varprop.layers.measured`): :class:`MeasuredComparison`
and :func:`with_measured`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compare import Comparison
from ..compare import compare as _compare

__all__ = ["MeasuredComparison", "with_measured", "traced", "ANCHORING", "DEFAULT_BATCH",
           "MEASURES", "APPROXIMATE"]

#: The batch ``measure="traced"`` draws when none is given: enough rows for each
#: variance estimate, whatever the size of the example input.
DEFAULT_BATCH = 256
#: What an adapter's ``compare`` can measure.
MEASURES = ("model", "traced")

#: How the theory treats measured-only ops (the footnote of :meth:`MeasuredComparison.table`).
ANCHORING = ("measured-only ops have no theory and no verdict; the theory is re-anchored "
             "on each one's measured output variance (forward) and on the measured "
             "gradient variance at its input (backward), so every other layer keeps its "
             "theory")

#: The words that end a trace's note flagging the theory after it as approximate (a
#: pooling over the steps of a measured-only recurrent or attention op, whose steps the
#: theory takes as independent): :func:`with_measured` carries such notes into the table.
APPROXIMATE = "the theory of the layers from here on is approximate"


@dataclass
class MeasuredComparison(Comparison):
    """A :class:`varprop.Comparison` with the model's measured-only ops: ``measured_only``
    holds one dict per op (``op``, ``after``: the record it precedes, ``out_var``,
    ``grad_var`` at its input, their ``_ci``, optionally ``recurrent_theory``), shown in
    :meth:`table` as rows without theory or verdict, and also in ``rows``
    (``"measured_only": True``, ``analytic`` NaN, ``test`` None) so that the JSON carries
    them."""

    measured_only: list[dict[str, Any]] = field(default_factory=list)
    anchoring: str = ANCHORING
    #: the trace's notes that flag the theory after a point as approximate (APPROXIMATE)
    approximate: list[str] = field(default_factory=list)

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
                if row.get("recurrent_theory"):
                    g = row["recurrent_theory"]
                    out.append(f"{'':>5} {g['label']} beside it ({g['what']}): {g['var']:.4g}")
            if i < len(body):
                out.append(body[i])
        out += lines[2 + len(self.analytic):]
        out.append(f"measured only: {self.anchoring}")
        out += [f"approximate: {note}" for note in self.approximate]
        return "\n".join(out)


def with_measured(cmp: Comparison, measured_only: list[dict[str, Any]],
                  notes: "list[str] | tuple" = ()) -> MeasuredComparison:
    """``cmp`` with the rows of the measured-only ops (``Profile.meta["measured_only"]``
    of an adapter's ``profile``) added, and those of the trace's ``notes`` that flag the
    theory as approximate (:data:`APPROXIMATE`)."""
    out = MeasuredComparison(**{f.name: getattr(cmp, f.name) for f in dataclasses.fields(cmp)},
                             measured_only=list(measured_only),
                             approximate=[n for n in notes if APPROXIMATE in n])
    for row in measured_only:
        for name, key in (("z_var", "out_var"), ("grad_var", "grad_var")):
            out.rows.append({"layer": None, "op": row["op"], "field": name,
                             "measured_only": True, "analytic": math.nan,
                             "measured": row[key], "ci": row[key + "_ci"],
                             "after": row["after"], "test": None,
                             "recurrent_theory": row.get("recurrent_theory")})
    return out


def traced(network: Any, x: np.ndarray, *, seeds: Any, batch: "int | None",
           n_threads: "int | None", progress: Any) -> Comparison:
    """``measure="traced"``: :func:`varprop.compare` of the traced ``network`` on
    varprop's kernels, with inputs of the example ``x``'s mean and variance (unit
    variance for a constant example) and :data:`DEFAULT_BATCH` rows unless ``batch``."""
    x = np.asarray(x, np.float64)
    var = float(x.var())
    return _compare(network, batch=DEFAULT_BATCH if batch is None else batch, seeds=seeds,
                    input_mean=float(x.mean()), input_var=var if var > 0 else 1.0,
                    n_threads=n_threads, progress=progress)
