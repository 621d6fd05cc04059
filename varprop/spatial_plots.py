"""Figures of convolutional networks: per-pixel variance maps (theory next to
measurement, first and last weighted layer) and signal propagation plots (Brock, De and
Smith 2021: per layer, the average over channels of the squared channel mean and of the
channel variance). Used by the HTML report for ``--arch cnn`` and ``seeds_cnn``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .plots import _figure, initializer_style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .reporting.results import Report

__all__ = ["pixel_map_figure", "signal_propagation_figure", "map_entries"]


def map_entries(report: "Report", limit: int = 4) -> list[Any]:
    """The report's entries whose analytic profile has per-pixel maps (at most
    ``limit``, preferring distinct initializers of the first activation)."""
    entries = [e for e in report.entries if e.analytic.maps]
    first_act = [e for e in entries if e.activation == report.settings.activations[0]]
    chosen = first_act[:limit]
    return chosen + [e for e in entries if e not in chosen][:limit - len(chosen)]


def _map_layers(profile: Any) -> tuple[int, int]:
    layers = sorted(profile.maps)
    return layers[0], layers[-1]


def _as_image(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, float)
    return a[None, :] if a.ndim == 1 else a


def pixel_map_figure(report: "Report", field: str = "z_var") -> "Figure":
    """Rows: entries; columns: the first and the last weighted spatial layer, theory and
    measurement (when measured) side by side, each map on its own colour scale with its
    range in the title; the corners' loss of variance to zero padding shows as dark
    borders."""
    entries = map_entries(report)
    measured = not report.settings.analytic_only
    ncols = 4 if measured else 2
    fig = _figure(2.6 * ncols, 2.3 * max(len(entries), 1) + 0.4)
    if not entries:
        fig.text(0.5, 0.5, "no per-pixel maps (not a convolutional network)", ha="center")
        return fig
    axes = fig.subplots(len(entries), ncols, squeeze=False)
    for r, e in enumerate(entries):
        first, last = _map_layers(e.analytic)
        panels = []
        for layer in (first, last):
            panels.append((e.analytic.maps[layer].get(field), f"theory, layer {layer}"))
            if measured and e.measured is not None and layer in e.measured.maps:
                panels.append((e.measured.maps[layer].get(field), f"measured, layer {layer}"))
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels) or panels[c][0] is None:
                ax.set_visible(False)
                continue
            img, title = panels[c]
            img = _as_image(img)
            finite = img[np.isfinite(img)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0, 1)
            ax.imshow(img, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_title(f"{title}\n{lo:.3g} .. {hi:.3g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{e.initializer}\n{e.activation}", fontsize=9)
    fig.suptitle("Per-pixel Var[$z$]: zero padding starves the borders" if field == "z_var"
                 else f"Per-pixel {field}", fontsize=11)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.03, wspace=0.15,
                        hspace=0.45)
    return fig


def signal_propagation_figure(report: "Report", limit: int = 13) -> "Figure":
    """Signal propagation plots of the measured networks: per weighted layer, the
    average channel squared mean and the average channel variance (log scale), one line
    per initializer of the first activation (empty when nothing was measured)."""
    fig = _figure(11.0, 4.0)
    axes = fig.subplots(1, 2)
    act = report.settings.activations[0]
    entries = [e for e in report.entries if e.activation == act and e.measured is not None]
    order: Sequence[str] = report.settings.initializers
    for e in entries[:limit]:
        style = initializer_style(e.initializer, order)
        layers = np.arange(len(e.measured.records))
        for ax, name in zip(axes, ("channel_sq_mean", "channel_var")):
            y = np.array([getattr(rec, name) for rec in e.measured.records], float)
            y[~(y > 0)] = np.nan
            ax.plot(layers, y, color=style["color"], ls=style["ls"], marker=style["marker"],
                    ms=4, label=e.initializer)
    for ax, title in zip(axes, ("average channel squared mean", "average channel variance")):
        ax.set_yscale("log")
        ax.set_xlabel("weighted layer")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(f"{title} ({act})", fontsize=10)
    if entries:
        axes[1].legend(fontsize=8, ncol=2, loc="best")
    else:
        axes[0].text(0.5, 0.5, "not measured (--analytic-only)", ha="center",
                     transform=axes[0].transAxes)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.13, wspace=0.25)
    return fig
