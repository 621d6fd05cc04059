"""The report's figures as PNG bytes, rendered on a second core when there is one.

Rendering the four figures of the HTML report costs more than the whole mean-field
analysis (matplotlib lays out and rasterizes every label, ~0.5 s per figure, and its
import and font set-up another ~0.5 s), so :class:`FigureWorker` forks two worker
processes *before* the analysis starts (no OpenMP threads exist yet): one draws the
weight histograms, which need only the settings, the other imports matplotlib and warms
its font cache, both while the parent analyzes; at the end the two draw the remaining
three figures. Without ``fork`` (Windows, macOS's default), with one core, or if a
worker fails, the parent draws what is missing: the bytes are the same either way.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from typing import Any

from .. import plots

__all__ = ["FIGURES", "render_png", "FigureWorker", "report_variance_figure"]

#: The report's figures in the order of its sections.
FIGURES = ("verdicts", "forward", "backward", "weights")
#: The convolutional reports' extra figures (``--arch cnn``, ``seeds_cnn``).
SPATIAL_FIGURES = ("pixel_maps", "signal_propagation")


def render_png(name: str, obj: Any, dpi: int = 100) -> bytes:
    """Figure ``name`` of a Report (``weights``: of its ReportSettings) as PNG bytes."""
    if name == "warmup":  # import matplotlib and load the fonts, nothing else
        plots.figure_bytes(plots.warmup_figure(), "png", dpi=20)
        return b""
    if name == "verdicts":
        fig = plots.verdict_figure(obj)
    elif name in ("forward", "backward"):
        fig = report_variance_figure(obj, "z_var" if name == "forward" else "grad_var")
    elif name == "weights":
        from .results import GATED_ARCHS, GATED_PRESETS
        names = [n for n in obj.initializers
                 if not (obj.arch in GATED_ARCHS and n in GATED_PRESETS)]
        if not names:  # only the gated presets, whose draws are the frameworks' own
            return b""
        fig = plots.weight_histograms(names, (obj.width, obj.width))
    elif name == "pixel_maps":
        from .. import spatial_plots
        fig = spatial_plots.pixel_map_figure(obj)
    elif name == "signal_propagation":
        from .. import spatial_plots
        fig = spatial_plots.signal_propagation_figure(obj)
    else:
        raise ValueError(f"render_png: unknown figure {name!r}; one of {FIGURES} "
                         f"or {SPATIAL_FIGURES}")
    return plots.figure_bytes(fig, "png", dpi=dpi)


#: The gated reports' figure labels: their forward figure shows the state ``h_t`` (their
#: ``z`` is the LSTM's cell state or the GRU's candidate, docs/gated.md) and their
#: gradient is the state's, ``dL/dh_t``.
_GATED_LABELS = {
    "a_var": ("Forward: variance of the state through time", "Var[$h_t$]"),
    "grad_var": ("Backward: variance of the gradient through time",
                 "Var[$\\partial L/\\partial h_t$]"),
}
_TIME_LABELS = {
    "z_var": ("Forward: variance of the pre-activations through time", "Var[$z_t$]"),
    "grad_var": ("Backward: variance of the gradient through time",
                 "Var[$\\partial L/\\partial z_t$]"),
}


def report_variance_figure(report: Any, field: str) -> Any:
    """:func:`varprop.plots.variance_figure`, with the recurrent reports' labels: per
    time step, and for the gated cells ``Var h_t`` forward (``a_var``) and ``dL/dh_t``
    backward."""
    from .results import GATED_ARCHS, TIME_ARCHS
    arch = report.settings.arch
    if arch not in TIME_ARCHS:
        return plots.variance_figure(report, field)
    if arch in GATED_ARCHS and field == "z_var":
        field = "a_var"
    labels = _GATED_LABELS if arch in GATED_ARCHS else _TIME_LABELS
    return plots.variance_figure(report, field, labels=labels[field])


def _worker_signals() -> None:
    """Give each worker the signal dispositions :meth:`FigureWorker.close` relies on.

    Ctrl-C is the parent's to handle (it terminates the workers): ignored, so no worker
    tracebacks. SIGTERM is how ``Pool.terminate`` stops a worker, so it must kill: a
    forked worker inherits the parent's Python-level handler (the ``varprop`` command
    turns SIGTERM into an exception), and an exception can be swallowed by the code it
    lands in (or the signal lost in the gap before a blocking wait); the worker then
    waits for its next task on a queue lock the terminating parent holds, and the
    parent's join never returns.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class FigureWorker:
    """Forked processes drawing figures asynchronously (see the module doc)."""

    def __init__(self, enabled: bool = True, processes: int = 2) -> None:
        self._pool = None
        self._pending: dict[str, Any] = {}
        if not enabled or (os.cpu_count() or 1) < 2 or \
                "fork" not in multiprocessing.get_all_start_methods():
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
                self._pool = multiprocessing.get_context("fork").Pool(
                    processes, initializer=_worker_signals)
        except (OSError, ValueError):  # pragma: no cover - no fork here
            self._pool = None

    def submit(self, name: str, obj: Any) -> None:
        if self._pool is not None:
            self._pending[name] = (self._pool.apply_async(render_png, (name, obj)), obj)

    def result(self, name: str, obj: Any) -> bytes:
        """The PNG of ``name``: from the worker if it was submitted and succeeded, else
        drawn here."""
        pending = self._pending.pop(name, None)
        if pending is not None:
            try:
                return pending[0].get(timeout=600)
            except Exception:  # noqa: BLE001 - the worker died or failed: draw it here
                pass
        return render_png(name, obj)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "FigureWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
