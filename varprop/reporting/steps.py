"""The per-step table of a recurrent report (``--arch rnn``, ``lstm``, ``gru``): the
variance of the state ``h_t`` and of the gradient through time at a few time steps,
theory beside measurement, for every network. The text, Markdown and HTML renderers
share these rows; the JSON document holds every step (each profile's records).

A measured value that overflowed float32 reads "overflow" and one where every seed's
float32 mean square fell below the dtype's floor reads "underflow"
(:mod:`varprop.recurrent.measure`, docs/recurrent.md section 6): never an inf or NaN
average.
"""

from __future__ import annotations

from typing import Any

from .results import GATED_ARCHS, TIME_ARCHS, Report

__all__ = ["step_columns", "step_rows", "step_quantities", "measured_cell", "STEP_LEGEND"]

#: Time steps the table shows: the first, the last and three between.
_SHOWN = 5


def step_columns(steps: int) -> list[int]:
    """The time steps shown: 0, the quarters and ``steps - 1`` (each once)."""
    if steps <= _SHOWN:
        return list(range(steps))
    return sorted({round(k * (steps - 1) / (_SHOWN - 1)) for k in range(_SHOWN)})


def step_quantities(report: Report) -> list[tuple[str, str]]:
    """``(field, label)`` of the table's quantities: the state's variance and the
    gradient the profiles hold (``dL/dh_t`` for a gated cell, ``dL/dz_t`` for an Elman
    RNN: docs/gated.md, section 2.3)."""
    grad = "Var dL/dh_t" if report.settings.arch in GATED_ARCHS else "Var dL/dz_t"
    return [("a_var", "Var h_t"), ("grad_var", grad)]


def measured_cell(profile: Any, field: str, t: int) -> str:
    """A measured value (the mean over seeds), or "overflow" / "underflow" where the
    float32 measurement could not hold it (see the module doc)."""
    from .text import fmt
    meta = profile.meta
    if t in (meta.get("overflow") or {}).get(field, []):
        return "overflow"
    rec = profile[t]
    value = getattr(rec, field)
    if t in (meta.get("underflow") or {}).get(field, []) and value == 0.0:
        return "underflow"
    return fmt(value)


def step_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """The header and the rows (one per network and quantity) of the per-step table;
    each cell is "theory / measured" (theory alone with ``--analytic-only``)."""
    from .text import fmt
    if report.settings.arch not in TIME_ARCHS or not report.entries:
        return [], []
    shown = step_columns(len(report.entries[0].analytic))
    header = ["initializer", report.settings.column, "quantity",
              *(f"t = {t}" for t in shown)]
    rows = []
    for e in report.entries:
        for k, (field, label) in enumerate(step_quantities(report)):
            cells = []
            for t in shown:
                theory = fmt(getattr(e.analytic[t], field))
                if e.measured is None:
                    cells.append(theory)
                else:
                    cells.append(f"{theory} / {measured_cell(e.measured, field, t)}")
            rows.append([e.initializer if k == 0 else "", e.activation if k == 0 else "",
                         label, *cells])
    return header, rows


#: What the per-step table's cells are (text, Markdown and HTML).
STEP_LEGEND = ("Per time step: theory / measured (mean over seeds; the JSON output holds "
               "every step with its 95% interval); 'overflow': "
               "the float32 measurement overflowed at that step (left out of the test "
               "where the theory too is beyond float32's range); 'underflow': every "
               "seed's float32 mean square fell below the float32 floor (entries "
               "subnormal or flushed to 0), so no measured value is shown.")
