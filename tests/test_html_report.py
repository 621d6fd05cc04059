"""The HTML report's figures (issue 13): undefined heat-map cells are the grey the caption
names, every initializer's curve is told apart by colour or line style, coinciding curves
carry direct labels, and the heat map's cell labels are readable on the page."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_rgba  # noqa: E402

from varprop import _labels, plots  # noqa: E402
from varprop.reporting import ReportSettings, build_report, report_html  # noqa: E402

ALL_INITS = ("zeros", "ones", "random_normal", "random_uniform", "truncated_normal",
             "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
             "lecun_uniform", "orthogonal", "identity")
#: the HTML column at a 1400 px window: body max-width 1180 px less 2 x 1.6em padding
PAGE_COLUMN_PX = 1180 - 2 * 1.6 * 15


@pytest.fixture(scope="module")
def nan_report():
    # zeros x relu has a 0/0 gradient ratio (NaN), ones x tanh and sigmoid too
    return build_report(ReportSettings(initializers=("zeros", "ones", "he_normal"),
                                       activations=("relu", "tanh", "sigmoid"), depth=8,
                                       width=64, analytic_only=True))


@pytest.fixture(scope="module")
def all_inits_report():
    return build_report(ReportSettings(initializers=ALL_INITS,
                                       activations=("linear", "relu", "tanh"), depth=8,
                                       width=64, analytic_only=True))


def _cell_pixel(fig, png_rgba: np.ndarray, ax, i: int, j: int) -> np.ndarray:
    x, y = ax.transData.transform((j - 0.4, i - 0.3))  # inside the cell, off its label
    return png_rgba[int(round(png_rgba.shape[0] - y)), int(round(x))]


def test_heat_map_undefined_cells_are_the_caption_grey(nan_report):
    import io

    import matplotlib.image

    e = nan_report.entry("zeros", "relu")
    assert math.isnan(e.ratios("analytic").gradient), "the fixture needs a NaN ratio"
    html = report_html(nan_report)
    caption = re.search(r'<section id="verdicts">.*?<figcaption>(.*?)</figcaption>', html, re.S)[1]
    grey = re.search(r'background:(#[0-9a-fA-F]{6})"></span>grey', caption)[1]
    assert "undefined" in caption and "infinite" in caption

    fig = plots.verdict_figure(nan_report)
    png = matplotlib.image.imread(io.BytesIO(plots.figure_bytes(fig, "png")))
    fwd_ax, grad_ax = (ax for ax in fig.axes if ax.images)
    inits = list(nan_report.settings.initializers)
    acts = list(nan_report.settings.activations)
    i, j = inits.index("zeros"), acts.index("relu")
    im = grad_ax.images[0]
    # the figure object: the cell is masked and maps to the caption's grey ...
    assert np.ma.getmaskarray(im.get_array())[i, j]
    assert np.allclose(im.to_rgba(im.get_array())[i, j], to_rgba(grey))
    # ... and so does the rendered pixel (not the darkest blue it used to be)
    assert np.allclose(_cell_pixel(fig, png, grad_ax, i, j)[:3], to_rgba(grey)[:3], atol=0.02)
    darkest_blue = im.cmap(0.0)
    assert not np.allclose(_cell_pixel(fig, png, grad_ax, i, j)[:3], darkest_blue[:3], atol=0.05)
    # a ratio of exactly 0 (zeros, forward) is the darkest blue: the end of the scale
    assert np.allclose(_cell_pixel(fig, png, fwd_ax, i, j)[:3], darkest_blue[:3], atol=0.02)


def test_heat_map_ratio_mapping_of_zero_inf_and_nan():
    assert math.isnan(plots._log10_ratio(math.nan))
    assert plots._log10_ratio(0.0) == -math.inf
    assert plots._log10_ratio(math.inf) == math.inf  # clipped to +12: darkest red
    assert plots._log10_ratio(100.0) == pytest.approx(2.0)
    cmap = plots._cmap()
    assert np.allclose(cmap(np.ma.masked_invalid([math.nan]))[0], to_rgba(plots.UNDEFINED_GREY))


def test_every_pair_of_series_differs_in_colour_or_style(all_inits_report):
    styles = {n: plots.initializer_style(n, ALL_INITS) for n in ALL_INITS}
    for a, b in itertools.combinations(ALL_INITS, 2):
        sa, sb = styles[a], styles[b]
        assert (sa["color"], sa["ls"]) != (sb["color"], sb["ls"]), (a, b)
        assert sa["tag"] != sb["tag"]
    # no two hues are light/dark shades of one another: 7 clearly distinct hues at most
    assert len({s["color"] for s in styles.values()}) <= 7
    # unknown initializers take spare pairs, still all different
    extra = ("a", "b", "c", "d")
    seen = {(s["color"], s["ls"]) for s in styles.values()}
    for n in extra:
        s = plots.initializer_style(n, ALL_INITS + extra)
        assert (s["color"], s["ls"]) not in seen
        seen.add((s["color"], s["ls"]))

    fig = plots.variance_figure(all_inits_report, "z_var")
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label() in ALL_INITS]
        if not lines:
            continue
        assert len(lines) == len(ALL_INITS)
        for la, lb in itertools.combinations(lines, 2):
            assert (to_rgba(la.get_color()), la.get_linestyle()) != \
                (to_rgba(lb.get_color()), lb.get_linestyle()), (la.get_label(), lb.get_label())
        # curves that coincide (same values at every layer) differ in hue, and are tagged
        tags = {t.get_text() for t in ax.texts}
        for la, lb in itertools.combinations(lines, 2):
            ya, yb = np.asarray(la.get_ydata(), float), np.asarray(lb.get_ydata(), float)
            if np.all(np.isfinite(ya)) and np.allclose(ya, yb, rtol=1e-6):
                assert to_rgba(la.get_color()) != to_rgba(lb.get_color()), \
                    (ax.get_title(), la.get_label(), lb.get_label())
                assert {styles[la.get_label()]["tag"], styles[lb.get_label()]["tag"]} <= tags
    # the five initializers of variance 1/fan-in coincide under linear and are labelled
    linear = next(ax for ax in fig.axes if ax.get_title() == "linear")
    assert {"GN", "GU", "LN", "LU", "O"} <= {t.get_text() for t in linear.texts}


def test_bundles_group_curves_that_end_together():
    ends = [(0.0, "a"), (0.01, "b"), (3.0, "c"), (-5.0, "d"), (-5.02, "e"), (-5.04, "f")]
    assert _labels.bundles(ends, 0.03) == [["b", "a"], ["d", "e", "f"]]


def test_heat_map_cell_labels_are_readable_on_the_page(nan_report):
    fig = plots.verdict_figure(nan_report)
    labels = [t for ax in fig.axes for t in ax.texts]
    assert labels and min(t.get_fontsize() for t in labels) >= 9
    # shown at 100 dpi in the page's column, the figure is scaled by at most this much:
    # the labels still read as >= 9 pt there (CSS: 96 px per inch)
    width_px = fig.get_figwidth() * 100
    scale = min(1.0, PAGE_COLUMN_PX / width_px)
    shown_pt = min(t.get_fontsize() for t in labels) * 100 / 96 * scale
    assert shown_pt >= 9, f"cell labels show at {shown_pt:.1f} pt"


@pytest.mark.parametrize("field", ["z_var", "grad_var"])
def test_variance_figures_are_shown_at_their_own_size(all_inits_report, field):
    # no wider than the page's column at 100 dpi: the page shows them unscaled, so the
    # legend, the tags and the tick labels read as >= 9 pt (CSS: 96 px per inch)
    fig = plots.variance_figure(all_inits_report, field)
    assert fig.get_figwidth() * 100 <= PAGE_COLUMN_PX
    texts = [t for t in fig.legends[0].get_texts()] + [t for ax in fig.axes for t in ax.texts]
    texts += [t for ax in fig.axes if ax.get_visible() for t in ax.get_yticklabels()]
    assert min(t.get_fontsize() for t in texts) * 100 / 96 >= 9
    # the legend sits below the panels, not beside them
    plots.figure_bytes(fig, "png")  # lays the figure out
    legend_box = fig.legends[0].get_window_extent()
    assert all(legend_box.y1 < ax.get_window_extent().y0 for ax in fig.axes if ax.get_visible())


def test_direct_labels_do_not_overlap(all_inits_report):
    fig = plots.variance_figure(all_inits_report, "z_var")
    plots.figure_bytes(fig, "png")
    renderer = fig.canvas.get_renderer()
    checked = 0
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        for a, b in itertools.combinations(boxes, 2):
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 0.5 or overlap_y <= 0.5, (ax.get_title(), a, b)
            checked += 1
    assert checked > 10


def test_declutter_keeps_rows_apart_and_inside():
    rows = _labels.declutter([50.0, 52.0, 51.0, 98.0, -5.0], 10.0, 100.0)
    ordered = sorted(rows)
    assert all(b - a >= 10.0 - 1e-9 for a, b in zip(ordered, ordered[1:]))
    assert min(rows) >= 0.0 and max(rows) <= 90.0
    assert rows[0] <= rows[2] <= rows[1]  # the order of the wanted heights is kept
    assert _labels.declutter([20.0, 60.0], 10.0, 100.0) == [20.0, 60.0]  # room: unmoved
