"""Self-contained HTML: inline CSS, figures embedded as PNG data URIs, no scripts and no
reference to anything on the network, so the file opens the same offline, attached to an
e-mail or in ten years. Each ``<section>`` holds exactly one ``<figure>``."""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Sequence

from .. import plots
from .results import GATED_ARCHS, GATED_PRESETS, SPATIAL_ARCHS, TIME_ARCHS, Report
from .text import (TEST_LEGEND, VERDICT_SHORT, agreement_sentence, approximate_note,
                   describe_settings, fmt, fmt_ci, test_cell)

__all__ = ["report_html", "phase_html", "page", "figure_html"]

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 max-width:1180px;margin:0 auto;padding:1.2em 1.6em;background:#fff}
h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.3em;border-bottom:1px solid #ddd;
 padding-bottom:.2em;margin-top:1.6em}
p.meta{color:#666;font-size:.85em}nav a{margin-right:1em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
table{border-collapse:collapse;font-size:.86em;margin:1em 0}
th,td{padding:.18em .6em;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f6f6f6;position:sticky;top:0}td.l,th.l{text-align:left}
tr.first td{border-top:2px solid #ccc}
.v-preserves{background:#e3f4e1}.v-vanishes{background:#e3ecfa}.v-explodes{background:#fbe3e1}
.v-symmetric{background:#eee}.swatch{display:inline-block;width:.8em;height:.8em;
 border-radius:2px;margin-right:.35em;vertical-align:-.05em}
.swatch.line{width:1.7em;height:0;border-radius:0;vertical-align:.3em}
.note{color:#555;font-size:.9em}code{font-size:.92em}td.disagree{color:#b00020;font-weight:600}
"""


def figure_html(png: bytes, alt: str, caption: str) -> str:
    """A ``<figure>`` holding ``png`` as a data URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def page(title: str, header: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """A whole document: ``sections`` are (id, heading, inner HTML)."""
    nav = " ".join(f'<a href="#{sid}">{html.escape(h)}</a>' for sid, h, _ in sections)
    body = "\n".join(f'<section id="{sid}">\n<h2>{html.escape(h)}</h2>\n{inner}\n</section>'
                     for sid, h, inner in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header>{header}<nav>{nav}</nav></header>\n{body}\n"
            f"<footer><p class=\"meta\">{footer}</p></footer>\n</body>\n</html>\n")


def _meta_line(version: str, created: str, command: str) -> str:
    parts = [f"varprop {html.escape(version)}"] if version else []
    if created:
        parts.append(html.escape(created))
    if command:
        parts.append(f"<code>{html.escape(command)}</code>")
    return " &middot; ".join(parts)


def _table(report: Report) -> str:
    measured = not report.settings.analytic_only
    head = ['<th class="l">initializer</th>', f'<th class="l">{report.settings.column}</th>',
            "<th>Var[out]/Var[in]<br>theory</th>"]
    if measured:
        head.append("<th>Var[out]/Var[in]<br>measured</th>")
    head.append("<th>Var[g<sub>in</sub>]/Var[g<sub>out</sub>]<br>theory</th>")
    if measured:
        head.append("<th>Var[g<sub>in</sub>]/Var[g<sub>out</sub>]<br>measured</th>")
    head.append('<th class="l">verdict</th>')
    if measured:
        head.append('<th class="l">test</th>')
    rows = []
    previous = None
    inits = list(report.settings.initializers)
    for e in report.entries:
        a, m = e.ratios("analytic"), e.ratios("measured")
        first = e.initializer != previous
        previous = e.initializer
        st = plots.initializer_style(e.initializer, inits)
        border = {"--": "dashed", "-.": "dashed", ":": "dotted"}.get(st["ls"], "solid")
        name = (f'<span class="swatch line" style="border-top:.22em {border} {st["color"]}">'
                f"</span>{e.initializer}" if first else "")
        cells = [f'<td class="l">{name}</td>', f'<td class="l">{e.activation}</td>',
                 f"<td>{fmt(a.forward)}</td>"]
        over_fwd, over_grad = e.overflowed()
        if measured:
            text = "overflow" if over_fwd else fmt_ci(m.forward, m.forward_ci)
            cells.append(f"<td>{html.escape(text)}</td>")
        cells.append(f"<td>{fmt(a.gradient)}</td>")
        if measured:
            text = "overflow" if over_grad else fmt_ci(m.gradient, m.gradient_ci)
            cells.append(f"<td>{html.escape(text)}</td>")
        verdict = e.verdict.kind if e.verdicts_agree else \
            f"{e.verdict.kind} (theory: {e.analytic_verdict.kind})"
        cells.append(f'<td class="l v-{e.verdict.kind}" title="{html.escape(e.verdict.message)}">'
                     f"{verdict}</td>")
        if measured:
            title = html.escape(e.agreement.summary()) if e.agreement is not None else ""
            cls = "l disagree" if not e.agree else "l"
            cells.append(f'<td class="{cls}" title="{title}">{html.escape(test_cell(e))}</td>')
        rows.append(f'<tr class="{"first" if first else ""}">{"".join(cells)}</tr>')
    return (f"<table>\n<thead><tr>{''.join(head)}</tr></thead>\n<tbody>\n" + "\n".join(rows)
            + "\n</tbody>\n</table>")


def _step_table(report: Report) -> str:
    """The per-step table of a recurrent report (:mod:`.steps`), or ""."""
    from .steps import STEP_LEGEND, step_rows
    header, rows = step_rows(report)
    if not rows:
        return ""
    head = "".join(f'<th class="{"l" if i < 3 else ""}">{html.escape(h)}</th>'
                   for i, h in enumerate(header))
    body = "\n".join(
        f'<tr class="{"first" if row[0] else ""}">' + "".join(
            f'<td class="{"l" if i < 3 else ""}">{html.escape(c)}</td>'
            for i, c in enumerate(row)) + "</tr>" for row in rows)
    return (f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
            f'<p class="note">{html.escape(STEP_LEGEND)}</p>')


def report_html(report: Report, pngs: dict[str, bytes] | None = None) -> str:
    """The HTML report: verdicts (heat map and the full table), forward and backward
    variance through depth, and the weights as drawn. ``pngs`` may hold the figures
    already rendered (:data:`.figures.FIGURES` names); the others are drawn here."""
    from .figures import render_png

    pngs = dict(pngs or {})
    for name in ("verdicts", "forward", "backward"):
        if name not in pngs:
            pngs[name] = render_png(name, report)
    s = report.settings
    drawn = [n for n in s.initializers if not (s.arch in GATED_ARCHS and n in GATED_PRESETS)]
    if "weights" not in pngs and drawn:
        pngs["weights"] = render_png("weights", report.settings)
    side = "theory" if s.analytic_only else "measurement"
    counts = report.counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in VERDICT_SHORT if counts.get(k))
    test = "" if s.analytic_only else "; " + html.escape(agreement_sentence(report))
    header = (f"<h1>varprop report</h1><p>{html.escape(describe_settings(report))}</p>"
              f"<p>Of {len(report.entries)} initializer x activation pairs ({side}): "
              f"{summary}{test}.</p><p class=\"meta\">{_meta_line(report.version, report.created, report.command)}</p>")
    approximate = approximate_note(report)
    if approximate:
        header += f'<p class="note">{html.escape(approximate)}</p>'
    sections = []
    sections.append(("verdicts", "Verdicts at a glance", figure_html(
        pngs["verdicts"], "heat maps of the forward and gradient variance ratios",
        "log10 of the variance ratio over the whole depth, forward (top) and backward "
        "(bottom); blue = shrinks, red = grows, white = kept, "
        f'<span class="swatch" style="background:{plots.UNDEFINED_GREY}"></span>grey '
        "(<i>n/a</i>) = undefined (0/0, or inf/inf as when a float32 measurement "
        "overflows). A ratio of exactly 0 takes the darkest "
        "blue and an infinite one (overflow) the darkest red: the ends of the scale, "
        "which is clipped at &plusmn;12. <i>ok</i>: both stay within a factor 10 over the depth; "
        "<i>symm</i>: zeros/constant weights make every unit identical (training cannot "
        "break the symmetry, whatever the variance does). Hover a verdict in the table "
        "for its sentence" + ("" if s.analytic_only else
                              "; * marks a network whose theory the log-space test rejects. "
                              + html.escape(TEST_LEGEND) + " Hover a test for its summary")
        + ".") + "\n" + _table(report) + _step_table(report)))
    meas = "" if s.analytic_only else (" Points: measured (mean over seeds); bands: the 95% "
                                        "confidence interval over seeds, of the log (m &times; "
                                        "exp(&plusmn;ci/m)).")
    gated = s.arch in GATED_ARCHS
    what = ("the state h_t at each time step" if gated else
            f"the pre-activations z of each {s.axis}")
    grad = "dL/dh_t (the state's total gradient)" if gated else "dL/dz"
    sections.append(("forward", "Forward signal", figure_html(
        pngs["forward"], f"variance against {'time step' if s.arch in TIME_ARCHS else 'depth'}",
        f"Variance of {what}. Lines: mean-field "
        "theory (infinite width); each initializer has its own colour and line style "
        "(and marker), and the short tags at a line's end name curves that coincide."
        f"{meas} Zeros gives exactly 0, which a log axis cannot "
        "show; values beyond 1e-30 or 1e30 are drawn at the edge.")))
    sections.append(("backward", "Backward gradient", figure_html(
        pngs["backward"], "gradient variance against "
        + ("time step" if s.arch in TIME_ARCHS else "depth"),
        f"Variance of {grad} at each {s.axis} for a standard normal gradient at the "
        + ("last state: read it from the right (the loss) to the left (step 0)." if
           s.arch in TIME_ARCHS else "output: read it from the right (output) to the "
           "left (input).") + meas)))
    if pngs.get("weights"):
        sections.append(("weights", "Weights as drawn", figure_html(
            pngs["weights"], "weight histograms per initializer",
            f"One {s.width} x {s.width} draw of each initializer"
            + (" (the rows that name one; the gated cells call it on their own layout's "
               "shapes, docs/gated.md)" if gated else
               ": the shape of every hidden layer of the report's networks")
            + ". Same colours as the curves above.")))
    if s.arch in SPATIAL_ARCHS:
        sections += _spatial_sections(report, pngs)
    footer = _meta_line(report.version, report.created, report.command)
    t = report.timings
    if t:
        footer += f" &middot; took {t.get('total_s', math.nan):.1f} s"
    return page("varprop report", header, sections, footer)


def _spatial_sections(report: Report, pngs: dict[str, bytes]) -> list[tuple[str, str, str]]:
    """Per-pixel variance maps and signal propagation plots of a convolutional report."""
    from .figures import render_png
    for name in ("pixel_maps", "signal_propagation"):
        if name not in pngs:
            pngs[name] = render_png(name, report)
    return [
        ("pixels", "Per-pixel variance", figure_html(
            pngs["pixel_maps"], "per-pixel variance maps of the first and last layers",
            "Var[z] at each pixel of the first and the last convolution, theory next to "
            "measurement (mean over seeds, pooled over the batch and the channels), each "
            "on its own colour scale (its range above it). Zero padding reads zeros at "
            "the borders, so border pixels get less variance, and the loss travels inward "
            "with depth (docs/theory.md, section 8).")),
        ("spp", "Signal propagation", figure_html(
            pngs["signal_propagation"], "signal propagation plots",
            "Signal propagation plots (Brock, De and Smith 2021): per weighted layer, the "
            "average over channels of the squared channel mean and of the channel "
            "variance of z (measured), for the first activation.")),
    ]


def phase_html(phase: Any) -> str:
    """The phase diagram with its edge-of-chaos table."""
    rows = "\n".join(
        f"<tr><td>{fmt(b)}</td><td>{fmt(w)}</td><td>{fmt(q)}</td></tr>"
        for b, w, q in zip(phase.edge_sigma_b2, phase.edge_sigma_w2, phase.edge_q_star))
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in phase.notes)
    inner = figure_html(
        plots.figure_bytes(plots.phase_figure(phase), "png"), f"phase diagram of {phase.activation}",
        "Colour: the depth 6&xi;<sub>c</sub> to which a network of this activation "
        "stays trainable at initialization (Schoenholz et al. 2017, arXiv 1611.01232): "
        "correlations between inputs survive about &xi;<sub>c</sub> layers. It diverges on "
        "the edge of chaos &chi;<sub>1</sub> = 1 (red), where gradients neither vanish "
        "(ordered phase, left) nor explode (chaotic phase, right).")
    inner += ("\n<table><thead><tr><th>&sigma;<sub>b</sub><sup>2</sup></th>"
              "<th>&sigma;<sub>w</sub><sup>2</sup> at &chi;<sub>1</sub> = 1</th>"
              f"<th>q* there</th></tr></thead><tbody>\n{rows}\n</tbody></table>{notes}")
    header = (f"<h1>Phase diagram: {html.escape(phase.activation)}</h1>"
              f"<p>Mean field for a deep fully connected network with weights of variance "
              f"&sigma;<sub>w</sub><sup>2</sup>/fan-in and biases of variance "
              f"&sigma;<sub>b</sub><sup>2</sup>.</p>"
              f"<p class=\"meta\">{_meta_line(phase.version, phase.created, phase.command)}</p>")
    return page(f"varprop phase {phase.activation}", header,
                [("phase", "Trainable depth and the edge of chaos", inner)],
                _meta_line(phase.version, phase.created, phase.command))
