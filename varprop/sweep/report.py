"""A sweep's result as text tables, JSON and a self-contained HTML page with the
coordinate-check plots (the page layout and CSS of varprop.reporting.html)."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["axis_values", "series_title", "text_report", "html_report", "coord_check_figure"]


def axis_values(s: dict[str, Any]) -> tuple[str, list[int]]:
    """A series' x axis: ``("width", widths)`` or ``("depth", depths)`` (the depth check
    of residual MLPs, varprop/sweep/depth.py)."""
    axis = s.get("axis", "width")
    return axis, s["depths"] if axis == "depth" else s["widths"]


def series_title(s: dict[str, Any]) -> str:
    c = s["config"]
    axis, xs = axis_values(s)
    if axis == "depth":
        net, span = f"residual MLP width {c['width']}", f"blocks {xs[0]}..{xs[-1]}"
    else:
        net = (f"residual MLP blocks {c['depth']}" if c.get("arch") == "residual"
               else f"depth {c['depth']}")
        span = f"widths {xs[0]}..{xs[-1]}"
    return (f"{c['parameterization']}, {c['optimizer']} lr {c['learning_rate']:g}, {net}, "
            f"{c['initializer']} {c['activation']}, {c['dtype']}, {span}, "
            f"{len(s['seeds'])} seed(s), {c['steps']} step(s), batch {c['batch']}")


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.{digits}f}"


def text_report(series: Sequence[dict[str, Any]], stats: dict[str, Any]) -> str:
    """One table per series: per layer, the step-0 slope of z (theory, measured) and
    the slope of the update dz at each step, with the verdicts of step 0 and the last
    step and the named expected exceptions."""
    lines = ["Coordinate check: slope of log scale against log width (or log depth) per "
             "layer (z = RMS of the pre-activations, dz = RMS of their change since step 0)"]
    for s in series:
        steps = s["config"]["steps"]
        lines.append("")
        lines.append(series_title(s))
        if s.get("axis") == "depth":
            lines.append("slopes against depth (blocks); groups: input layer, the stream "
                         "after the last block, the readout")
        head = (f"{'layer':>5} {'kind':<6} | {'z@0 th':>7} {'z@0 meas':>8} {'tol':>5} "
                f"{'verdict':<22}|" + "".join(f" {'dz@' + str(t):>7}" for t in range(1, steps + 1))
                + f" | {'verdict (last)':<22} note")
        lines.append(head)
        lines.append("-" * len(head))
        for l, kind in enumerate(s["kinds"]):
            z0 = s["slopes"]["z"][0][l]
            dz = [s["slopes"]["dz"][t][l] for t in range(1, steps + 1)]
            last = dz[-1] if dz else None
            notes = [e["note"] for e in (z0, last) if e and e["note"]]
            row = (f"{l:>5} {kind:<6} | {_f(s['theory_slope'][l]):>7} {_f(z0['slope']):>8} "
                   f"{z0['tol']:>5.2f} {z0['verdict']:<22}|"
                   + "".join(f" {_f(e['slope']):>7}" for e in dz)
                   + (f" | {last['verdict']:<22} " if last else f" | {'':<22} ")
                   + "; ".join(notes))
            lines.append(row.rstrip())
    lines.append("")
    lines.append(f"{stats.get('cells', 0)} cells: {stats.get('computed', 0)} computed, "
                 f"{stats.get('cached', 0)} from the cache, executor {stats.get('executor')}, "
                 f"{stats.get('seconds', math.nan):.1f} s")
    return "\n".join(lines) + "\n"


def coord_check_figure(s: dict[str, Any]) -> "Figure":
    """The coordinate check of one series: per dense layer (columns), the RMS of z
    (top) and of its change dz (bottom) against width on log-log axes, one line per
    training step (light to dark), the mean-field theory at step 0 dashed."""
    from .. import plots

    plots.require_matplotlib()
    from matplotlib import cm
    from matplotlib.figure import Figure

    n = len(s["kinds"])
    steps = s["config"]["steps"]
    axis, xs_all = axis_values(s)
    fig = Figure(figsize=(3.0 * n, 5.4), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    colors = cm.viridis([0.9 * t / max(steps, 1) for t in range(steps + 1)])
    for l in range(n):
        for row, q in enumerate(("z", "dz")):
            ax = axes[row][l]
            span: list[float] = []
            for t in range(0 if q == "z" else 1, steps + 1):
                y = [s["measured"][q][t][j][l] for j in range(len(xs_all))]
                xs = [w for w, v in zip(xs_all, y) if v is not None]
                ys = [v for v in y if v is not None]
                ax.plot(xs, ys, "o-", color=colors[t], ms=3, lw=1.2,
                        label=f"step {t}" if l == 0 and row == 0 else None)
                span.extend(ys)
            if q == "z":
                ax.plot(xs_all, [th[l] for th in s["theory"]], "k--", lw=1.2,
                        label="theory, step 0" if l == 0 else None)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            _decade_at_least(ax, span)
            ax.set_title(f"layer {l} ({s['kinds'][l]}): {'|z|' if q == 'z' else '|z - z0|'}",
                         fontsize=9)
            ax.tick_params(labelsize=7)
            if row == 1:
                ax.set_xlabel("blocks" if axis == "depth" else "width", fontsize=8)
    axes[0][0].set_ylabel("RMS of z", fontsize=8)
    axes[1][0].set_ylabel("RMS of z_t - z_0", fontsize=8)
    fig.legend(loc="outside lower center", ncol=steps + 2, fontsize=7, frameon=False)
    return fig


def _decade_at_least(ax: Any, values: list[float]) -> None:
    """Show at least a factor 10 on a log axis, so that the noise of a flat line does
    not fill the panel; plain-number tick labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    v = [x for x in values if x and x > 0 and math.isfinite(x)]
    if v:
        lo, hi = min(v), max(v)
        if hi / lo < 10:
            mid = math.sqrt(lo * hi)
            ax.set_ylim(mid / math.sqrt(10), mid * math.sqrt(10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _table_html(s: dict[str, Any]) -> str:
    steps = s["config"]["steps"]
    head = ("<tr><th>layer</th><th class=\"l\">kind</th><th>z slope<br>theory, step 0</th>"
            "<th>z slope<br>measured, step 0</th><th class=\"l\">verdict</th>"
            + "".join(f"<th>dz slope<br>step {t}</th>" for t in range(1, steps + 1))
            + "<th class=\"l\">verdict (last step)</th><th class=\"l\">note</th></tr>")
    rows = []
    for l, kind in enumerate(s["kinds"]):
        z0 = s["slopes"]["z"][0][l]
        dz = [s["slopes"]["dz"][t][l] for t in range(1, steps + 1)]
        last = dz[-1] if dz else None
        notes = "; ".join(e["note"] for e in (z0, last) if e and e["note"])
        cells = [f"<td>{l}</td>", f'<td class="l">{kind}</td>',
                 f"<td>{_f(s['theory_slope'][l])}</td>",
                 f"<td title=\"tol {z0['tol']:.2f}\">{_f(z0['slope'])}</td>",
                 f'<td class="l">{html.escape(z0["verdict"])}</td>']
        cells += [f"<td title=\"tol {e['tol']:.2f}\">{_f(e['slope'])}</td>" for e in dz]
        cells.append(f'<td class="l">{html.escape(last["verdict"]) if last else ""}</td>')
        cells.append(f'<td class="l">{html.escape(notes)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def html_report(series: Sequence[dict[str, Any]], stats: dict[str, Any],
                command: str = "") -> str:
    """The whole page: per series, its coordinate-check figure and slope table."""
    from .. import __version__, plots
    from ..reporting.html import figure_html, page

    sections = []
    for i, s in enumerate(series):
        png = plots.figure_bytes(coord_check_figure(s), "png", dpi=90)
        axis = axis_values(s)[0]
        caption = ("Coordinate check (as in microsoft/mup): each layer's scale against "
                   f"{axis}, one line per training step (light: early, dark: late); "
                   "dashed: the mean-field theory at step 0 for the parameterization's init "
                   "variances and multipliers. A flat line is a stable layer.")
        sections.append((f"s{i}", series_title(s),
                         figure_html(png, f"coordinate check of {series_title(s)}", caption)
                         + "\n" + _table_html(s)))
    header = ("<h1>varprop sweep</h1><p>Slopes of log scale against log width, or log "
              "depth for residual MLPs (least squares; mean over seeds). Verdict tolerance: "
              "max(t-quantile &times; seed spread, 0.25) (docs/sweep.md).</p>")
    footer = (f"varprop {html.escape(__version__)} &middot; {stats.get('cells', 0)} cells, "
              f"{stats.get('computed', 0)} computed, {stats.get('cached', 0)} cached"
              + (f" &middot; <code>{html.escape(command)}</code>" if command else ""))
    return page("varprop sweep", header, sections, footer)
