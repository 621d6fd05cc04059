"""What ``varprop model`` found (:mod:`varprop.torch.command`), rendered as text,
Markdown, JSON or HTML: :class:`_Doc`.

The tables show one row per weighted layer and, in model order, one row per
measured-only op (an op varprop has no theory for: attention, an LSTM; docs/torch.md,
"Measured-only ops") with its measured values, no theory, and "measured only" where the
verdict would be. The JSON carries those ops in ``comparison.rows`` (``"measured_only":
True``, ``after``: the layer row they precede), as :func:`varprop.adapters.compare.
with_measured` puts them there.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["_Doc"]


class _Doc:
    """What the command found, rendered as text, Markdown, JSON or HTML."""

    def __init__(self, model: Any, path: Path, factory: str, shape: tuple, batch: int,
                 seeds: int, init: "str | None", findings: list, result: Any, cmp: Any,
                 framework: str, classes: list[str]):
        self.framework, self.classes = framework, classes
        self.model, self.path, self.factory, self.shape = model, path, factory, shape
        self.batch, self.seeds, self.init, self.findings = batch, seeds, init, findings
        self.result, self.cmp = result, cmp
        self.notes = list(result.notes) + list(cmp.empirical.meta.get("notes", []))
        if init is not None and findings:
            self.notes.append(f"the audit reads the model as {factory}() builds it; the "
                              f"comparison re-draws its weights with {init}")

    def render(self, fmt: str) -> str:
        return {"table": self.text, "markdown": self.markdown, "json": self.json,
                "html": self.html}[fmt]()

    def settings(self) -> str:
        weights = (f"weights re-drawn with {self.init} (biases zero)" if self.init else
                   "weights re-drawn from the laws read off the model's own")
        return (f"{type(self.model).__name__} from {self.path}:{self.factory}, input "
                f"{self.shape}, batch {self.batch}, {self.seeds} seed"
                f"{'s' if self.seeds != 1 else ''}; {weights}")

    def mode(self) -> str:
        return (f"measured: the {self.framework} model itself; "
                f"{self.cmp.empirical.meta['modes']}")

    def audit_head(self) -> str:
        harmful = sum(f.harmful for f in self.findings)
        n = len(self.findings)
        return (f"audit: {n} finding{'s' if n != 1 else ''}, {harmful} harmful" if n else
                "audit: nothing found")

    def layer_rows(self) -> list[tuple[str, str, str, str]]:
        """(index, module, its class, weight law) per record."""
        rows = []
        for i, (name, laws, cls) in enumerate(zip(self.result.names, self.result.laws,
                                                  self.classes)):
            rows.append((str(i), name, cls, f"{laws[0].label} ({laws[0].source})"))
        return rows

    def text(self) -> str:
        lines = [f"varprop model: {self.settings()}", self.mode(), "", self.audit_head()]
        for f in self.findings:
            lines.append(f"  {'harmful ' if f.harmful else 'harmless'}  {f.layer}: "
                         f"{f.kind}: {f.message}")
            lines.append(f"            fix: {f.fix}")
        lines += ["", "theory vs measured (per weighted layer; measured: mean ± 95% "
                      "interval over seeds)", self.cmp.table(), "", "layers:"]
        rows = self.layer_rows()
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        lines += [f"  {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"
                  for r in rows]
        if self.notes:
            lines += ["notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _cells(self) -> list[list[str]]:
        """The table's rows, in model order: per layer its index, module, then theory and
        measured of Var[z], Var[a], Var[dL/dz] and the test of z_var/grad_var; per
        measured-only op (before the layer row it precedes, as the text table puts it)
        "m", the op, no theory ("—"), its measured output variance under Var[z] and
        Var[a], the gradient into it under Var[dL/dz], and "measured only"."""
        from ..reporting.text import fmt, fmt_ci
        tests = {(r["layer"], r["field"]): r["test"] for r in self.cmp.rows if r["test"]}
        ops = list(getattr(self.cmp, "measured_only", []) or [])
        out = []
        rows = list(zip(self.layer_rows(), self.cmp.analytic, self.cmp.empirical))
        for k in range(len(rows) + 1):
            out += [self._measured_cells(op) for op in ops if op["after"] == k]
            if k == len(rows):
                break
            (i, name, _, _), a, e = rows[k]
            row = [i, name]
            for f in ("z_var", "a_var", "grad_var"):
                row += [fmt(getattr(a, f)), fmt_ci(getattr(e, f), getattr(e, f + "_ci"))]
            row.append(", ".join(f"{f}: {tests[(a.index, f)]}" for f in ("z_var", "grad_var")
                                 if (a.index, f) in tests))
            out.append(row)
        return out

    @staticmethod
    def _measured_cells(op: dict[str, Any]) -> list[str]:
        """A measured-only op's row (:meth:`_cells`): no theory, no verdict."""
        from ..reporting.text import fmt, fmt_ci
        out = fmt_ci(op["out_var"], op["out_var_ci"])
        verdict = "measured only"
        gated = op.get("recurrent_theory")
        if gated:
            verdict += f"; {gated['label']} beside it ({gated['what']}): {fmt(gated['var'])}"
        return ["m", op["op"], "—", out, "—", out, "—",
                fmt_ci(op["grad_var"], op["grad_var_ci"]), verdict]

    _HEAD = ["layer", "module", "Var[z] theory", "Var[z] measured", "Var[a] theory",
             "Var[a] measured", "Var[dL/dz] theory", "Var[dL/dz] measured", "test"]

    def verdict_lines(self) -> list[str]:
        lines = [f"theory: {self.cmp.analytic_verdict.message}",
                 f"measured: {self.cmp.empirical_verdict.message}"]
        if self.cmp.agreement is not None:
            lines.append(f"test: {self.cmp.agreement.summary()}")
        return lines + [f"approximate: {n}" for n in getattr(self.cmp, "approximate", [])]

    def markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|")

        lines = [f"# varprop model: {self.factory}()", "", esc(self.settings()) + ".",
                 "", esc(self.mode()) + ".", "", f"## {self.audit_head().capitalize()}", ""]
        lines += [f"- **{'harmful' if f.harmful else 'harmless'}** `{f.layer}` {f.kind}: "
                  f"{esc(f.message)} Fix: {esc(f.fix)}" for f in self.findings]
        lines += ["", "## Theory vs measured", "", "| " + " | ".join(self._HEAD) + " |",
                  "|" + "|".join("---:" if k not in (1, 8) else ":---"
                                 for k in range(len(self._HEAD))) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self._cells()]
        lines += [""] + [f"- {esc(v)}" for v in self.verdict_lines()]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {esc(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        from .. import __version__
        cmp = self.cmp
        return {
            "varprop": __version__, "command": "model",
            "model": {"file": str(self.path), "factory": self.factory,
                      "class": type(self.model).__name__, "framework": self.framework},
            "input_shape": list(self.shape), "batch": self.batch, "seeds": self.seeds,
            "init": self.init, "modes": cmp.empirical.meta["modes"],
            "audit": [{"layer": f.layer, "kind": f.kind, "harmful": f.harmful,
                       "message": f.message, "fix": f.fix} for f in self.findings],
            "layers": [{"index": int(i), "module": name, "class": cls, "law": law}
                       for i, name, cls, law in self.layer_rows()],
            "covered": self.result.covered, "notes": self.notes,
            "comparison": {"network": cmp.network, "disagrees": cmp.disagrees,
                           "theory_verdict": cmp.analytic_verdict.message,
                           "measured_verdict": cmp.empirical_verdict.message,
                           "agreement": None if cmp.agreement is None else cmp.agreement.to_dict(),
                           "rows": cmp.rows,
                           # notes flagging the theory after a point as approximate
                           "approximate": list(getattr(cmp, "approximate", []))},
            "theory": cmp.analytic.to_dict(), "measured": cmp.empirical.to_dict(),
        }

    def json(self) -> str:
        from ..reporting.commands import _json_text
        return _json_text(self.to_dict())

    def html(self) -> str:
        from ..reporting.html import figure_html, page
        e = html.escape
        items = "".join(
            f"<li><b>{'harmful' if f.harmful else 'harmless'}</b> <code>{e(f.layer)}</code> "
            f"{e(f.kind)}: {e(f.message)}<br><i>Fix:</i> {e(f.fix)}</li>" for f in self.findings)
        audit = f"<ul>{items}</ul>" if items else "<p>Nothing found.</p>"
        head = "".join(f'<th{" class=l" if k in (1, 8) else ""}>{e(h)}</th>'
                       for k, h in enumerate(self._HEAD))
        body = "\n".join("<tr>" + "".join(
            f'<td{" class=l" if k in (1, 8) else ""}>{e(c)}</td>' for k, c in enumerate(row))
            + "</tr>" for row in self._cells())
        table = (f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
                 + "".join(f"<p>{e(v)}</p>" for v in self.verdict_lines()))
        names = list(self.result.names)
        sections = [("audit", self.audit_head().capitalize(), audit),
                    ("table", "Theory vs measured", table)]
        for sid, field, title, what in (
                ("forward", "z_var", "Forward signal", "the pre-activations z"),
                ("backward", "grad_var", "Backward gradient", "dL/dz for a standard normal "
                 "gradient at the output (read it from the right)")):
            png = _variance_png(self.cmp, field, names)
            sections.append((sid, title, figure_html(
                png, f"{field} against layer", f"Variance of {e(what)} at each weighted "
                "layer. Line: mean-field theory; points: the model measured (mean over "
                "seeds); band: the 95% interval over seeds.")))
        if self.notes:
            sections.append(("notes", "Notes", "<ul>" + "".join(
                f"<li>{e(n)}</li>" for n in self.notes) + "</ul>"))
        header = (f"<h1>varprop model: {e(self.factory)}()</h1><p>{e(self.settings())}.</p>"
                  f"<p>{e(self.mode())}.</p>")
        return page(f"varprop model {self.factory}", header, sections,
                    "varprop model: theory (mean field) against the model itself")


def _variance_png(cmp: Any, field: str, names: list[str]) -> bytes:
    """``field`` against layer, theory as a line, measurement as points with a band."""
    import numpy as np

    from .. import plots
    n = len(cmp.analytic)
    fig = plots._figure(min(plots.PAGE_WIDTH, 4.0 + 0.28 * n), 4.2)
    ax = fig.subplots()
    x = np.arange(n)
    theory = plots._positive(cmp.analytic.column(field))
    m, ci = cmp.empirical.column(field), cmp.empirical.column(field + "_ci")
    ax.plot(x, theory, "-", color="#1f77b4", lw=1.6, label="theory (mean field)")
    ax.plot(x, plots._positive(m), "o", color="#ff7f0e", ms=4.5, mec="none",
            label="measured (mean of seeds)")
    if np.any(np.isfinite(ci)):
        lo, hi = plots._log_band(m, ci)
        ax.fill_between(x, lo, hi, color="#ff7f0e", alpha=0.2, lw=0, label="95% band")
    ax.set_yscale("log")
    values = np.concatenate([theory, plots._positive(m)])
    values = values[np.isfinite(values)]
    plots._tame_log_axis(ax, [float(values.min()), float(values.max())] if values.size else None)
    if n <= 48:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7.5)
    ax.set_xlabel("weighted layer")
    ax.set_ylabel(plots._FIELD_LABEL[field][1])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8.5, frameon=False)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.96, bottom=0.32 if n <= 48 else 0.14)
    return plots.figure_bytes(fig, "png", dpi=100)


