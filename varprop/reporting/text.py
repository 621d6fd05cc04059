"""Plain-text renderers: the terminal table and Markdown (GitHub pipe tables)."""

from __future__ import annotations

import math
import textwrap
from typing import Any, Sequence

from .._approximations import APPROXIMATION_SUMMARIES
from .results import GATED_ARCHS, TIME_ARCHS, Entry, Report

__all__ = ["fmt", "fmt_ci", "report_table", "report_markdown", "VERDICT_SHORT", "describe_settings",
           "test_cell", "agreement_sentence", "TEST_LEGEND"]

#: Short forms of the verdicts for the overview matrix.
VERDICT_SHORT = {"preserves": "ok", "vanishes": "vanish", "explodes": "explode",
                 "symmetric": "symm"}


def fmt(x: Any, digits: int = 3) -> str:
    """A number as a person reads it: 3 significant digits, short exponents (2.18e15),
    and nan/inf spelled out."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 10 ** digits:
        return f"{x:.{digits}g}"
    mant, exp = f"{x:.{digits - 1}e}".split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def fmt_ci(value: float, ci: float) -> str:
    """``value ± ci`` (the half-width to 2 digits), or just the value without a finite ci."""
    if ci is None or not math.isfinite(ci) or not math.isfinite(value):
        return fmt(value)
    return f"{fmt(value)} ± {fmt(ci, 2)}"


def describe_settings(report: Report) -> str:
    s = report.settings
    bias = "zero biases" if s.bias_var == 0 else f"biases ~ N(0, {fmt(s.bias_var)})"
    if s.arch == "rnn":
        line = (f"Elman RNN h_t = phi(x_t W_x + h_(t-1) W_h + b) of {s.width} units over "
                f"{s.depth} time steps (rows: time steps), the initializer drawing W_x and "
                f"W_h, {bias}, {s.width} input features ~ N(0, {fmt(s.input_var)}) per step, "
                "the loss on the last state.")
    elif s.arch in GATED_ARCHS:
        from .compute import chrono_t_max
        line = (f"{s.arch.upper()} of {s.width} units over {s.depth} time steps (rows: time "
                f"steps; columns: each framework's weight layout), {s.width} input features "
                f"~ N(0, {fmt(s.input_var)}) per step, the loss on the last state. 'default': "
                "the layout's framework defaults (Keras: glorot_uniform kernel, orthogonal "
                "recurrent kernel, zero bias" + (", unit_forget_bias" if s.arch == "lstm"
                                                   else "") +
                "; PyTorch: U(-1/sqrt(H), 1/sqrt(H)) everywhere); 'chrono': those defaults "
                f"with chrono gate biases, T_max = {chrono_t_max(s.depth):g}; other rows: the "
                f"initializer drawing the input and recurrent kernels, {bias}. Forward: Var "
                "h_t; fwd in the test: Var of " + ("the cell state c_t" if s.arch == "lstm"
                                                    else "the candidate's pre-activation") +
                "; gradient: Var dL/dh_t (docs/gated.md).")
    else:
        line = (f"MLP of {s.depth} dense layers x {s.width} units (each followed by the "
                f"activation), {bias}, inputs ~ N(0, {fmt(s.input_var)}).")
    if s.analytic_only:
        return line + " Theory only (mean field, infinite width)."
    ci = ("± = 95% CI over seeds." if s.seeds != 1 else
          "one seed, so no confidence interval (it comes from the spread between seeds).")
    return (line + f" Theory: mean field (infinite width). Measured: {s.seeds} seed"
            f"{'s' if s.seeds != 1 else ''} x batch {s.batch}, float32, {ci}")


def _verdict_cell(e: Entry) -> str:
    if e.verdicts_agree:
        return e.verdict.kind
    return f"{e.verdict.kind} (theory: {e.analytic_verdict.kind})"


_FIELD_SHORT = {"z_var": "fwd", "grad_var": "grad"}

#: What the "test" column says (text, Markdown and HTML).
TEST_LEGEND = ("test: the log-space test of theory against measurement (docs/comparison.md); "
               "for a disagreement, the layer that disagrees most (fwd: Var[z], grad: "
               "Var[dL/dz]) and its z, 'exact' where a rule for zeros or overflow decided; "
               "[approx.]: the theory of that network is known to be approximate (the note "
               "above the legend says why).")


def test_cell(e: Entry) -> str:
    """The test's outcome for the table: agree, untestable, or where it disagrees most."""
    ag = e.agreement
    if ag is None:
        return ""
    flag = " [approx.]" if e.analytic.meta.get("approximations") else ""
    if not ag.disagrees:
        return ag.status + flag
    w = ag.worst
    z = "exact" if not math.isfinite(w.z) else f"z {w.z:+.3g}"
    return f"disagree ({_FIELD_SHORT.get(w.field, w.field)} {w.layer}, {z}){flag}"


def agreement_sentence(report: Report) -> str:
    """The test over the report in one sentence ("" when nothing was measured)."""
    a = report.agreement_summary()
    if a is None:
        return ""
    untestable = f"; {a['untestable']} untestable" if a["untestable"] else ""
    known = len(a.get("flagged_approximate", []))
    known = f", {known} of them where the theory is flagged approximate" if known else ""
    out = (f"theory and measurement disagree on {a['disagree']} of {a['networks']}{known} "
           f"(log-space test, family-wise false-alarm rate {100 * a['alpha']:g}%{untestable})")
    med, worst = a["detectable_error_median"], a["detectable_error_max"]
    if med is not None:
        out += (f"; a per-layer error of {_percent(med)} or more in the forward or backward "
                f"rule would have been detected ({100 * a['power']:g}% power; median over "
                f"the networks, {_percent(worst)} for the least precise)")
    return out


def _percent(x: float | None) -> str:
    """A relative error in percent; None (JSON's infinity) and > 10 as "over 1000%"."""
    return "over 1000%" if x is None or x > 10 else f"{fmt(100 * x, 2)}%"


def _rows(report: Report) -> list[list[str]]:
    rows = []
    previous = None
    for e in report.entries:
        a, m = e.ratios("analytic"), e.ratios("measured")
        name = e.initializer if e.initializer != previous else ""
        previous = e.initializer
        over_fwd, over_grad = e.overflowed()
        row = [name, e.activation, fmt(a.forward)]
        if not report.settings.analytic_only:
            row.append("overflow" if over_fwd else fmt_ci(m.forward, m.forward_ci))
        row.append(fmt(a.gradient))
        if not report.settings.analytic_only:
            row.append("overflow" if over_grad else fmt_ci(m.gradient, m.gradient_ci))
        row.append(_verdict_cell(e))
        if not report.settings.analytic_only:
            row.append(test_cell(e))
        rows.append(row)
    return rows


def _headers(report: Report) -> tuple[list[str], list[str]]:
    """Two header lines: the quantity, then theory/measured."""
    col = report.settings.column
    if report.settings.analytic_only:
        return (["initializer", col, "Var[out]/Var[in]", "Var[g_in]/Var[g_out]", "verdict"],
                ["", "", "theory", "theory", ""])
    return (["initializer", col, "Var[out]/Var[in]", "", "Var[g_in]/Var[g_out]", "",
             "verdict", "test"],
            ["", "", "theory", "measured", "theory", "measured", "", ""])


def _right(report: Report, cols: int) -> list[bool]:
    """Right-align the numeric columns (the ratios), left-align the others."""
    numeric = 2 if report.settings.analytic_only else 4
    return [False, False] + [True] * numeric + [False] * (cols - 2 - numeric)


def _align(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(r, widths, right)]
        out.append("  ".join(cells).rstrip())
    return out


def _matrix(report: Report) -> list[list[str]]:
    acts = list(report.settings.activations)
    rows = [["", *acts]]
    for init in report.settings.initializers:
        rows.append([init, *(VERDICT_SHORT[report.entry(init, a).verdict.kind] for a in acts)])
    return rows


def _summary(report: Report) -> str:
    counts = report.counts()
    total = len(report.entries)
    parts = [f"{counts[k]} {k}" for k in ("preserves", "vanishes", "explodes", "symmetric")
             if counts.get(k)]
    side = "theory" if report.settings.analytic_only else "measured"
    tail = "" if report.settings.analytic_only else "; " + agreement_sentence(report)
    return f"Of {total} networks ({side}): {', '.join(parts)}{tail}."


_LEGEND = ("Var[out]/Var[in]: variance of the last activation over the input's. "
           "Var[g_in]/Var[g_out]: variance of dL/dz at the first layer over that at the last "
           "(standard normal output gradient). A network 'preserves' when both stay within a "
           "factor 10 over the depth. nan: 0/0, or a float32 overflow (inf-inf) while "
           "measuring.")
#: The legend of the recurrent reports: time steps instead of layers, and overflow named.
_TIME_LEGEND = ("Var[out]/Var[in]: variance of the last state h_(T-1) over the input's. "
                "Var[g_in]/Var[g_out]: the gradient's variance at step 0 over that at the "
                "last step (standard normal gradient on the last state). A network "
                "'preserves' when both stay within a factor 10 over the steps. overflow: "
                "the float32 measurement overflowed (inf) at that end; nan: 0/0.")


def legend(report: Report) -> str:
    """The table's legend for the report's architecture."""
    text = _TIME_LEGEND if report.settings.arch in TIME_ARCHS else _LEGEND
    return text if report.settings.analytic_only else text + " " + TEST_LEGEND


def _spanned(report: Report) -> list[str]:
    """The table's lines: a group header centred over its theory/measured columns, the
    column header, and the body (blank line between initializers)."""
    head1, head2 = _headers(report)
    body = _rows(report)
    head2 = [low or high for high, low in zip(head1, head2)]
    cols = len(head2)
    widths = [max(len(r[i]) for r in [head2, *body]) for i in range(cols)]
    per = 1 if report.settings.analytic_only else 2
    groups = [(2, head1[2]), (2 + per, head1[2 + per])]
    for start, label in groups:  # widen the group's last column if its label is longer
        span = sum(widths[start:start + per]) + 2 * (per - 1)
        if len(label) > span:
            widths[start + per - 1] += len(label) - span
    top = " " * (sum(widths[:2]) + 4)
    for start, label in groups:
        span = sum(widths[start:start + per]) + 2 * (per - 1)
        top += label.center(span) + "  "
    right = _right(report, cols)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if rt else c.ljust(w)
                         for c, w, rt in zip(cells, widths, right)).rstrip()

    out = [top.rstrip(), line(head2), "-" * len(line(head2))]
    for i, row in enumerate(body):
        if i and row[0]:
            out.append("")
        out.append(line(row))
    out.append(out[2])
    return out


def approximate_note(report: Report) -> str:
    """Sentences naming the entries whose theory is known to be only approximate, one
    per kind of approximation with its reason (``analyze``'s ``meta["approximations"]``),
    or ""."""
    # one sentence per kind: the networks (with their own numbers), then why
    kinds: dict[str, list[str]] = {}
    gated: list[str] = []  # the gated cells' own reason, said once (docs/gated.md)
    for e in report.entries:
        for a in e.analytic.meta.get("approximations", []):
            name = f"{e.initializer} x {e.activation}"
            detail = a.get("detail", "")
            if detail == "gated":
                gated.append(name)
                continue
            kinds.setdefault(a["kind"], []).append(f"{name} ({detail})" if detail else name)
    out = []
    if gated:
        from ..recurrent.gated import GATED_REASONS
        who = (f"every network of this report ({len(gated)})" if len(gated) == len(report.entries)
               else ", ".join(gated))
        out.append(f"Theory is approximate for {who}: {GATED_REASONS['gated']} "
                   "(docs/gated.md, section 3).")
    out += [f"Theory is approximate for {', '.join(names)}: "
            f"{APPROXIMATION_SUMMARIES.get(kind, kind)}." for kind, names in kinds.items()]
    return " ".join(out)


def report_table(report: Report) -> str:
    """The terminal table: one row per initializer x activation, then the overview."""
    out = ["varprop report", *textwrap.wrap(describe_settings(report), 100), ""]
    out += _spanned(report)
    note = approximate_note(report)
    out += [*textwrap.wrap(note, 100), ""] if note else []
    out += _step_lines(report)
    out += [*textwrap.wrap(legend(report), 100), "", "Verdicts at a glance (" +
            ("theory" if report.settings.analytic_only else "measured") + "):"]
    mat = _matrix(report)
    out += ["  " + line for line in _align(mat, [False] * len(mat[0]))]
    out += ["", *textwrap.wrap(_summary(report), 100), _timing_line(report)]
    return "\n".join(out) + "\n"


def _step_lines(report: Report) -> list[str]:
    """The per-step table of a recurrent report (:mod:`.steps`), or nothing."""
    from .steps import STEP_LEGEND, step_rows
    header, rows = step_rows(report)
    if not rows:
        return []
    lines = _align([header, *rows], [False, False, False] + [True] * (len(header) - 3))
    rule = "-" * max(len(line) for line in lines)
    out = [lines[0], rule]
    for i, line in enumerate(lines[1:]):
        if i and rows[i][0]:
            out.append("")
        out.append(line)
    return [*out, rule, *textwrap.wrap(STEP_LEGEND, 100), ""]


def _timing_line(report: Report) -> str:
    t = report.timings
    if not t:
        return ""
    s = f"Took {t.get('total_s', math.nan):.1f} s (theory {t.get('analytic_s', math.nan):.1f} s"
    if not report.settings.analytic_only:
        s += f", measurement {t.get('measured_s', math.nan):.1f} s"
    return s + ")."


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")
    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


def report_markdown(report: Report) -> str:
    """Markdown: the settings, the table (one row per initializer x activation) and the
    verdict matrix, ready to paste into an issue or a paper's supplement."""
    head1, head2 = _headers(report)
    header = [f"{a} {b}".strip() for a, b in zip(head1, head2)]
    if not report.settings.analytic_only:
        header[2:6] = ["Var[out]/Var[in] theory", "Var[out]/Var[in] measured",
                       "Var[g_in]/Var[g_out] theory", "Var[g_in]/Var[g_out] measured"]
    rows = []
    for e, row in zip(report.entries, _rows(report)):
        rows.append([f"`{e.initializer}`", f"`{e.activation}`", *row[2:]])
    right = _right(report, len(header))
    mat = _matrix(report)
    out = ["## varprop report", "", describe_settings(report), ""]
    out += _md_table(header, rows, right)
    note = approximate_note(report)
    from .steps import STEP_LEGEND, step_rows
    header_s, rows_s = step_rows(report)
    if rows_s:
        out += ["", "### Per time step", ""]
        out += _md_table(header_s, rows_s, [False, False, False] + [True] * (len(header_s) - 3))
        out += ["", STEP_LEGEND]
    out += ["", *([note, ""] if note else []), legend(report), "", "### Verdicts at a glance",
            ""]
    out += _md_table(["initializer", *mat[0][1:]],
                     [[f"`{r[0]}`", *r[1:]] for r in mat[1:]], [False] * len(mat[0]))
    out += ["", _summary(report), ""]
    return "\n".join(out)
