"""Figures of the reports (matplotlib, Agg; ``pip install varprop[plot]``).

Every function returns a :class:`matplotlib.figure.Figure` made without pyplot (no
global state, no display needed); :func:`figure_bytes` renders one to PNG or SVG. An
initializer has the same colour, line style and marker in every figure
(:func:`initializer_style`): seven distinct hues times two line styles, so no two
initializers look alike, and curves that coincide carry direct labels at their ends.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ._labels import label_bundles

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .reporting.phase import PhaseDiagram
    from .reporting.results import Report

__all__ = ["initializer_color", "initializer_style", "variance_figure", "verdict_figure", "weight_histograms",
           "phase_figure", "figure_bytes", "require_matplotlib"]

# Seven distinct hues (no light/dark pairs) times two line styles: every initializer has
# its own (hue, line style), and the initializers whose curves coincide in theory (LeCun,
# Glorot (square), orthogonal, truncated normal and identity (linear); He normal/uniform)
# differ in hue.
_HUES = {"blue": "#1f77b4", "orange": "#ff7f0e", "green": "#2ca02c", "red": "#d62728",
         "purple": "#9467bd", "brown": "#8c564b", "black": "#222222"}
_STYLES = {  # name: (hue, line style, marker, short tag for the direct labels)
    "glorot_normal": ("blue", "-", "o", "GN"), "glorot_uniform": ("red", "--", "s", "GU"),
    "lecun_normal": ("green", "-", "^", "LN"), "lecun_uniform": ("purple", "--", "v", "LU"),
    "orthogonal": ("brown", "-", "D", "O"), "truncated_normal": ("orange", "--", "P", "TN"),
    "identity": ("black", "-", "X", "I"), "he_normal": ("orange", "-", "o", "HN"),
    "he_uniform": ("blue", "--", "s", "HU"), "random_normal": ("red", "-", "^", "RN"),
    "random_uniform": ("green", "--", "v", "RU"), "ones": ("purple", "-", "D", "1"),
    "zeros": ("brown", "--", "X", "0"),
}
_USED = {(st[0], st[1]) for st in _STYLES.values()}
# spare (hue, line style) pairs for other initializers, none taken by the named ones
_EXTRA = [(h, ls) for ls in ("--", "-.", ":") for h in _HUES if (h, ls) not in _USED]
_EXTRA_MARKERS = ("o", "s", "^", "v", "D", "P", "X")

#: Variances outside this band are drawn at its edge of the log axis (off-scale).
_CLIP = (1e-30, 1e30)


def require_matplotlib() -> None:
    """Raise ImportError with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the figures need matplotlib: pip install 'varprop[plot]'") from exc


def _extra_index(name: str, order: Sequence[str]) -> int:
    extra = [n for n in order if n not in _STYLES]
    return extra.index(name) if name in extra else abs(hash(name))


def initializer_style(name: str, order: Sequence[str] = ()) -> dict[str, str]:
    """``color``, ``ls`` (line style), ``marker`` and ``tag`` (a short name for direct
    labels) of initializer ``name`` in every figure. Two initializers of the report never
    share both colour and line style; others take spare pairs in the order given."""
    if name in _STYLES:
        hue, ls, marker, tag = _STYLES[name]
        return {"color": _HUES[hue], "ls": ls, "marker": marker, "tag": tag}
    i = _extra_index(name, order)
    hue, ls = _EXTRA[i % len(_EXTRA)]
    return {"color": _HUES[hue], "ls": ls, "marker": _EXTRA_MARKERS[i % len(_EXTRA_MARKERS)],
            "tag": name[:3]}


def initializer_color(name: str, order: Sequence[str] = ()) -> str:
    """The colour of initializer ``name`` in every figure (others take spare colours in
    the order given); see :func:`initializer_style` for its line style and marker."""
    return initializer_style(name, order)["color"]


def _figure(width: float, height: float) -> "Figure":
    require_matplotlib()
    from matplotlib.figure import Figure

    # fixed margins (set by each figure) instead of constrained layout, which costs
    # several extra draws: seconds for a 15-panel figure
    return Figure(figsize=(width, height))


def warmup_figure() -> "Figure":
    """A tiny figure with text, a log axis and a legend: rendering it loads what the
    report's figures need (fonts, mathtext off), so the next render starts warm."""
    fig = _figure(2.0, 1.5)
    ax = fig.subplots()
    ax.plot([1, 2], [1, 10], label="x")
    ax.set_yscale("log")
    _log_ticks(ax.yaxis)
    ax.set_title("warm-up")
    ax.legend()
    return fig


def figure_bytes(fig: "Figure", fmt: str = "png", dpi: int = 100) -> bytes:
    """The figure as PNG or SVG bytes (metadata without dates, so output is stable)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    meta = {"Software": "varprop"} if fmt == "png" else {"Date": None, "Creator": "varprop"}
    extra = {"pil_kwargs": {"compress_level": 3}} if fmt == "png" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta, **extra)
    return buf.getvalue()


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return int(math.ceil(n / ncols)), ncols


def _positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, float).copy()
    y[~(y > 0)] = np.nan
    return np.clip(y, *_CLIP)


_FIELD_LABEL = {
    "z_var": ("Forward: variance of the pre-activations through depth",
              "Var[$z_\\ell$]"),
    "grad_var": ("Backward: variance of the gradient through depth",
                 "Var[$\\partial L/\\partial z_\\ell$]"),
}


#: Width (inches) of the figures the HTML page shows across its column: at 100 dpi they
#: are no wider than the column (1180 px less its padding), so they are shown at their
#: own size and a 9 pt label reads as 9 pt (CSS: 96 px per inch, so a little larger).
PAGE_WIDTH = 11.3
#: Point sizes of the variance figures' text.
_TEXT_PT = {"tick": 9.0, "label": 9.5, "title": 10.5, "legend": 9.5, "tag": 9.0}


def variance_figure(report: "Report", field: str = "z_var",
                    labels: "tuple[str, str] | None" = None) -> "Figure":
    """Per activation, ``field`` (``z_var`` or ``grad_var``) against layer on a log scale:
    theory as lines, measurement as points with 95% confidence bands, one colour per
    initializer. Zero variances (zeros init) cannot sit on a log axis and are left out.
    At most :data:`PAGE_WIDTH` wide, the legend below the panels, so the HTML page shows
    it at its own size."""
    from matplotlib.ticker import MaxNLocator

    acts = list(report.settings.activations)
    inits = list(report.settings.initializers)
    rows, cols = _grid(len(acts), 4)
    width = min(PAGE_WIDTH, 2.65 * cols + 0.95)
    n_legend = len(inits) + (1 if report.settings.analytic_only else 3)
    ncol = max(1, min(n_legend, int(width // 2.25)))
    legend_in = 0.2 * (math.ceil(n_legend / ncol) + 1) + 0.15
    fig = _figure(width, 2.45 * rows + 0.55 + 0.45 + legend_in)
    axes = fig.subplots(rows, cols, squeeze=False)
    title, ylabel = labels or _FIELD_LABEL[field]  # labels: (title, y label) to override
    layers = np.arange(1, report.settings.depth + 1)
    handles = {}
    to_label = []  # (axes, line ends, x of the ends): labelled once the layout is set
    for k, act in enumerate(acts):
        ax = axes[k // cols][k % cols]
        span = [math.inf, -math.inf]  # y-range of the non-degenerate initializers
        ends = []  # (log10 of the last drawn value, initializer) for the direct labels
        for init in inits:
            e = report.entry(init, act)
            st = initializer_style(init, inits)
            color = st["color"]
            y = _positive(e.analytic.column(field))
            (line,) = ax.plot(layers, y, color=color, ls=st["ls"], lw=1.6, label=init)
            handles[init] = line
            end = 0 if field == "grad_var" else -1  # gradients are read from the output
            if np.isfinite(y[end]):
                ends.append((math.log10(y[end]), init))
            if not e.analytic.symmetric:
                _extend(span, y)
            if e.measured is not None:
                m = e.measured.column(field)
                ci = e.measured.column(field + "_ci")
                ym = _positive(m)
                ax.plot(layers, ym, st["marker"], ls="", ms=3.2, color=color, mec="none",
                        alpha=0.9)
                if not e.analytic.symmetric:
                    _extend(span, ym)
                if np.any(np.isfinite(ci)):
                    lo, hi = _log_band(m, ci)
                    ax.fill_between(layers, lo, hi, color=color, alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.set_xlim(0.5, report.settings.depth + 0.5)
        ax.set_title(act, fontsize=_TEXT_PT["title"], y=1.0)  # an explicit y skips title
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))  # auto-placement (~0.4 s)
        ax.tick_params(labelsize=_TEXT_PT["tick"])
        ax.grid(True, which="major", alpha=0.3)
        _tame_log_axis(ax, span)
        to_label.append((ax, ends, 1 if field == "grad_var" else report.settings.depth))
        if k % cols == 0:
            ax.set_ylabel(ylabel, fontsize=_TEXT_PT["label"])
        if k // cols == rows - 1 or k + cols >= len(acts):
            ax.set_xlabel("time step $t$" if report.settings.axis == "time step" else
                          "dense layer $\\ell$", fontsize=_TEXT_PT["label"])
    for k in range(len(acts), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend = []
    for init in inits:
        st = initializer_style(init, inits)
        legend.append(Line2D([], [], color=st["color"], ls=st["ls"], lw=1.6,
                             marker=None if report.settings.analytic_only else st["marker"],
                             ms=4, mec="none", label=f"{st['tag']}: {init}"))
    legend += [Line2D([], [], color="0.55", lw=1.6, label="lines: theory (mean field)")]
    if not report.settings.analytic_only:
        legend += [Line2D([], [], color="0.55", marker="o", ls="", ms=4,
                          label="points: measured (mean of seeds)"),
                   Patch(facecolor="0.55", alpha=0.3, label="95% band over seeds")]
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width,
                        bottom=(legend_in + 0.45) / height, top=1 - 0.55 / height,
                        wspace=0.3, hspace=0.4)
    for ax, ends, x in to_label:
        label_bundles(ax, ends, x, {n: initializer_style(n, inits) for n in inits},
                      _TEXT_PT["tag"])
    fig.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
               fontsize=_TEXT_PT["legend"], frameon=False, handlelength=2.6,
               columnspacing=1.4, title="the tags label curves that coincide",
               title_fontsize=_TEXT_PT["legend"])
    fig.suptitle(title, fontsize=12, y=1 - 0.08 / height, va="top")
    return fig


def _log_band(m: np.ndarray, ci: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 95% band for a log axis: ``m exp(-+ ci / m)``, the interval of log m by the
    delta method (se(log m) = se(m) / m). The linear ``m -+ ci`` of three seeds often
    reaches below zero, which a log axis would draw as a band down to its floor."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.clip(np.asarray(ci, float) / np.asarray(m, float), 0.0, 50.0)
        lo, hi = _positive(m * np.exp(-rel)), _positive(m * np.exp(rel))
    return lo, hi


def _extend(span: list[float], y: np.ndarray) -> None:
    y = y[np.isfinite(y)]
    if y.size:
        span[0], span[1] = min(span[0], float(y.min())), max(span[1], float(y.max()))


def _tame_log_axis(ax: Any, span: Sequence[float] | None = None) -> None:
    """y-limits from ``span`` (the curves that matter; zeros/ones may run off-scale),
    padded, clipped to the drawable band and at least two decades wide."""
    if span is not None and span[1] >= span[0]:
        lo, hi = span[0] / 3, span[1] * 3
    else:
        lo, hi = ax.get_ylim()
    lo, hi = max(lo, _CLIP[0]), min(hi, _CLIP[1])
    if not (hi > lo):
        lo, hi = 1e-2, 1e2
    if hi / lo < 1e2:  # at least two decades, so a flat line reads as flat
        mid = math.sqrt(hi * lo)
        lo, hi = mid / 10, mid * 10
    ax.set_ylim(lo, hi)
    _log_ticks(ax.yaxis)


def _log_ticks(axis: Any, numticks: int = 6) -> None:
    """Decade ticks labelled 1e-6, 1, 1e6 in plain text (mathtext labels cost ~10 ms each)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    def label(v: float, _pos: Any) -> str:
        if not v > 0:
            return ""
        e = int(round(math.log10(v)))
        return {0: "1", 1: "10", -1: "0.1"}.get(e, f"1e{e}")

    axis.set_major_locator(LogLocator(base=10, numticks=numticks))
    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_locator(NullLocator())  # hundreds of minor-tick artists cost seconds


#: Grey of the heat maps' undefined (NaN) cells, as the HTML caption names it.
UNDEFINED_GREY = "#bdbdbd"
#: The heat map's colour scale ends at log10 ratios of -+12; ratios of 0 and inf sit there.
_HEAT_CLIP = 12.0
#: Point size of the verdict labels in the heat-map cells. The figure is drawn
#: :data:`VERDICT_WIDTH` inches wide, at 100 dpi about the width of the HTML page's column,
#: so the labels show at about this size there too.
VERDICT_LABEL_PT = 10.0
VERDICT_WIDTH = 11.2


def _log10_ratio(r: float) -> float:
    """log10 of a variance ratio for the heat map: NaN (0/0, inf/inf) stays NaN (grey),
    0 becomes -inf and inf +inf (drawn at the ends of the clipped scale)."""
    if math.isnan(r):
        return math.nan
    if r <= 0:
        return -math.inf
    return math.log10(r)  # log10(inf) = inf


def verdict_figure(report: "Report") -> "Figure":
    """Two heat maps, initializer x activation, one above the other: log10 of the forward
    ratio Var[out]/Var[in] and of the gradient ratio, measured when measured (else theory),
    the cells of the first labelled with the pair's verdict. Undefined ratios (NaN) are
    grey; 0 and inf take the darkest blue and red, the ends of the clipped scale. Row
    labels take the initializer's colour."""
    from matplotlib.colors import TwoSlopeNorm

    inits, acts = list(report.settings.initializers), list(report.settings.activations)
    side = "analytic" if report.settings.analytic_only else "measured"
    fwd = np.full((len(inits), len(acts)), np.nan)
    grad = fwd.copy()
    labels = np.empty(fwd.shape, dtype=object)
    short = {"preserves": "ok", "vanishes": "vanish", "explodes": "explode", "symmetric": "symm"}
    for i, init in enumerate(inits):
        for j, act in enumerate(acts):
            e = report.entry(init, act)
            r = e.ratios(side)
            fwd[i, j] = _log10_ratio(float(r.forward))
            grad[i, j] = _log10_ratio(float(r.gradient))
            labels[i, j] = short[e.verdict.kind] + ("" if e.agree else "*")
    row_in = 0.3  # inches per initializer row
    panel = row_in * len(inits)
    top, gap, bottom = (0.95 if side == "analytic" else 1.15), 0.55, 0.45
    height = top + 2 * panel + gap + bottom
    width = max(VERDICT_WIDTH, 2.9 + 0.9 * len(acts))
    fig = _figure(width, height)
    left, right = 1.75 / width, 1 - 1.05 / width
    norm = TwoSlopeNorm(0.0, -_HEAT_CLIP, _HEAT_CLIP)
    cmap = _cmap()
    axes = []
    for k, (data, name) in enumerate(((fwd, "forward: Var[out] / Var[in]"),
                                      (grad, "backward: Var[g_in] / Var[g_out]"))):
        y0 = bottom + (1 - k) * (panel + gap)
        ax = fig.add_axes((left, y0 / height, right - left, panel / height),
                          sharex=axes[0] if axes else None)
        axes.append(ax)
        shown = np.clip(data, -_HEAT_CLIP, _HEAT_CLIP)  # NaN stays NaN: drawn grey
        im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto",
                       interpolation="nearest")
        ax.set_yticks(range(len(inits)), inits, fontsize=9.5)
        ax.set_xticks(range(len(acts)), acts, fontsize=9.5)
        ax.tick_params(axis="x", labelbottom=k == 1, labeltop=k == 0, length=0)
        for i in range(len(inits)):
            for j in range(len(acts)):
                if k == 0:  # the verdict is per pair: label the cells once
                    text = labels[i, j]
                elif np.isnan(shown[i, j]):
                    text = "n/a"  # say in words what the grey means
                else:
                    continue
                dark = np.isfinite(shown[i, j]) and abs(shown[i, j]) > 7
                ax.text(j, i, text, ha="center", va="center", fontsize=VERDICT_LABEL_PT,
                        color="white" if dark else "black")
        ax.set_title(name, fontsize=11, y=1.0, pad=22 if k == 0 else 6)
        for lab in ax.get_yticklabels():
            lab.set_color(initializer_color(lab.get_text(), inits))
            lab.set_fontweight("bold")
    cax = fig.add_axes((1 - 0.85 / width, bottom / height, 0.17 / width,
                        (2 * panel + gap) / height))
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("log10 ratio (clipped at ±12; 0 and inf at the ends)", fontsize=9.5)
    fig.suptitle("Verdicts (theory); colour: log10 of the ratio over the whole depth; "
                 "grey: undefined" if side == "analytic" else
                 "Verdicts (measured; * = the log-space test rejects the theory)\n"
                 "colour: log10 of the ratio over the whole depth; grey: undefined",
                 fontsize=11.5, y=1 - 0.08 / height, va="top")
    return fig


def _cmap() -> Any:
    from matplotlib import colormaps

    return colormaps["RdBu_r"].with_extremes(bad=UNDEFINED_GREY)


def weight_histograms(initializers: Sequence[str], shape: tuple[int, int], seed: int = 0,
                      bins: int = 60) -> "Figure":
    """A histogram of the entries of each initializer's ``shape`` draw (seed ``seed``),
    in its colour, with the analytic mean and variance next to the sample's; a dashed
    normal density of the analytic moments for i.i.d. schemes."""
    from matplotlib.ticker import MaxNLocator

    from .initializers import get as get_initializer

    inits = list(initializers)
    rows, cols = _grid(len(inits), 5)
    fig = _figure(min(PAGE_WIDTH, 2.3 * cols), 2.3 * rows + 0.5)  # shown at its own size
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, name in enumerate(inits):
        ax = axes[k // cols][k % cols]
        init = get_initializer(name)
        w = np.asarray(init(shape, seed=seed), dtype=np.float64).ravel()
        mom = init.moments(shape)
        color = initializer_color(name, inits)
        lo, hi = float(w.min()), float(w.max())
        if hi - lo < 1e-12:
            ax.axvline(lo, color=color, lw=3)
            ax.set_xlim(lo - 1, hi + 1)
            ax.set_yticks([])
            ax.text(0.5, 0.55, f"every entry = {lo:g}", transform=ax.transAxes, ha="center",
                    fontsize=9)
        else:
            counts, edges = np.histogram(w, bins=bins, density=True)
            ax.stairs(counts, edges, fill=True, color=color, alpha=0.85)
            if mom.structure in ("iid", "orthogonal") and mom.var > 0:
                xs = np.linspace(lo, hi, 200)
                pdf = np.exp(-0.5 * (xs - mom.mean) ** 2 / mom.var) / math.sqrt(2 * math.pi * mom.var)
                ax.plot(xs, pdf, "k--", lw=0.9)
            if mom.structure == "identity":
                ax.set_yscale("log")
                ax.text(0.5, 0.55, f"{np.mean(w == 0):.1%} zeros", transform=ax.transAxes,
                        ha="center", fontsize=9)
        ax.set_title(name, fontsize=10, color=color, fontweight="bold", y=1.0)
        ax.tick_params(labelsize=8.5)
        ax.set_yticks([])  # densities: the shape is the message, the numbers are not
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.text(0.02, 0.97, f"var {w.var():.3g}\n(theory {mom.var:.3g})",
                transform=ax.transAxes, va="top", fontsize=8.5)
        if k // cols == rows - 1 or k + cols >= len(inits):
            ax.set_xlabel("weight value", fontsize=9)
    for k in range(len(inits), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.5 / height, top=1 - 0.7 / height,
                        wspace=0.15, hspace=0.5)
    fig.suptitle(f"Weights as drawn: one {shape[0]} x {shape[1]} matrix per initializer "
                 f"(seed {seed}); dashed = normal density of the analytic moments",
                 fontsize=11)
    return fig


def phase_figure(phase: "PhaseDiagram") -> "Figure":
    """The trainable depth ``6 xi_c`` over (sigma_w2, sigma_b2) as a log-scale heat map,
    the edge of chaos ``chi_1 = 1`` as a line; grey where the length map diverges."""
    from matplotlib.colors import LogNorm

    fig = _figure(8.2, 5.4)
    ax = fig.subplots()
    depth = np.asarray(phase.trainable_depth, float)
    shown = np.clip(depth, 1.0, 1e4)  # inf (the edge) at the top, NaN (diverging) grey
    finite = shown[np.isfinite(shown)]
    vmax = 1e4 if finite.size == 0 else max(10.0, min(1e4, float(np.nanmax(finite))))
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#bdbdbd")
    mesh = ax.pcolormesh(phase.sigma_w2, phase.sigma_b2, np.ma.masked_invalid(shown),
                         cmap=cmap, norm=LogNorm(vmin=1.0, vmax=vmax), shading="nearest")
    fig.subplots_adjust(left=0.09, right=0.95, bottom=0.1, top=0.92)
    cb = fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02)
    cb.set_label("trainable depth $6\\,\\xi_c$ (layers)")
    ok = np.isfinite(phase.edge_sigma_w2)
    if ok.any():
        ax.plot(phase.edge_sigma_w2[ok], phase.edge_sigma_b2[ok], "-", color="#d62728", lw=2.2,
                marker="o", ms=3.5, label="edge of chaos $\\chi_1 = 1$")
    for sw, label in ((1.0, "LeCun / Glorot (square)"), (2.0, "He")):
        if phase.sigma_w2[0] <= sw <= phase.sigma_w2[-1]:
            ax.axvline(sw, color="white", lw=0.9, ls=":")
            ax.text(sw, 0.98, f"{label} ", color="white", fontsize=8, va="top", ha="right",
                    rotation=90, transform=ax.get_xaxis_transform())
    ax.set_xlabel("$\\sigma_w^2$ = fan-in x Var[W]")
    ax.set_ylabel("$\\sigma_b^2$ = Var[b]")
    ax.set_title(f"Mean-field phase diagram of {phase.activation}: ordered (left) and "
                 "chaotic (right)", fontsize=11)
    if ok.any():
        ax.legend(loc="lower right", fontsize=9)
    ax.set_xlim(phase.sigma_w2[0], phase.sigma_w2[-1])
    ax.set_ylim(phase.sigma_b2[0], phase.sigma_b2[-1])
    return fig
