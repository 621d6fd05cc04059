"""The analyzer on convolutional networks: the per-pixel signal from white noise or a
dataset, the walk forward and back over the network's steps, and the profile with its
per-pixel maps (docs/theory.md, section 8)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._analytic_parts import _Gradient
from ._approximations import approximations, has_batch_norm
from .layers import AvgPool, GlobalAvgPool, MaxPool, iter_steps
from .layers._spatial import PairGradient, SpatialGradient
from .profile import Profile

__all__ = ["analyze_spatial", "MAX_CROSS_PIXELS", "BEHIND_SKIP_NOTE", "OVERLAP_NOTE",
           "OVERLAP_QMC_NOTE", "spatial_inputs"]

#: Pixel-pair moments are carried (P x P per layer) for images of at most this many
#: pixels; larger images keep only the per-pixel moments, and a pooling that needs the
#: pairs is flagged approximate.
MAX_CROSS_PIXELS = 1024

_NEEDS_CROSS = (MaxPool, AvgPool, GlobalAvgPool)

#: The ``detail`` of the "spatial" approximation when a max pooling follows a skip
#: connection (docs/theory.md, section 8, "Max pooling behind a skip connection").
BEHIND_SKIP_NOTE = ("max pooling after a residual sum: the gradient before it by a "
                    "quasi-Monte-Carlo integral of the window's joint law, ~2e-3")
#: The same for overlapping max-pool windows (stride < pool size) where the covariance
#: of the gradients of two windows sharing a tap did not come back to the pool (a layer
#: above without a pixel-pair gradient rule, pixel pairs not carried, or a pool behind a
#: skip connection): the rule lacks the cross term (docs/theory.md, section 8), measured
#: up to 2.3x below the measurement.
OVERLAP_NOTE = ("overlapping max-pool windows: the gradient before them lacks the "
                "covariance of two windows' gradients, measured up to 2.3x above")
#: Overlapping windows whose cross term was integrated (docs/theory.md, section 8).
OVERLAP_QMC_NOTE = ("overlapping max-pool windows: the gradient's cross term between "
                    "windows by a quasi-Monte-Carlo integral of their joint law, ~2e-3")
_NOTES = {"skip": BEHIND_SKIP_NOTE, "overlap": OVERLAP_NOTE,
          "overlap_qmc": OVERLAP_QMC_NOTE}


def spatial_inputs(net: Any, inputs: Any, argname: str = "inputs") -> np.ndarray:
    """A dataset for ``net`` as a float64 channels-last array ``(N, *spatial, C)``,
    checked (PyTorch's ``(N, C, *spatial)`` when ``net.layout == "torch"``)."""
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__len__"):
        raise TypeError(f"{argname} must be an array of shape (N, *spatial, channels), got "
                        f"{type(inputs).__name__}")
    try:
        x = np.asarray(inputs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{argname} must be a real array: {exc}") from None
    shape = net.input_shape
    if net.layout == "torch" and x.ndim == len(shape) + 1:
        x = np.moveaxis(x, 1, -1)
    if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
        want = shape if net.layout != "torch" else (shape[-1], *shape[:-1])
        raise ValueError(f"{argname} must have shape (N, {', '.join(map(str, want))}) for "
                         f"this network ({net.layout} layout), got {np.shape(inputs)}")
    if x.shape[0] < 1:
        raise ValueError(f"{argname} needs at least one sample")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{argname} has non-finite entries")
    return x


def analyze_spatial(net: Any, analyzer: Any, *, input_mean: float, input_var: float,
                    inputs: Any = None, correlation: float | None = None) -> Profile:
    """:func:`varprop.analyze` for a network whose input has spatial dims."""
    from .theory import spatial as sp
    spatial = net.input_shape[:-1]
    pixels = math.prod(spatial)
    if correlation is not None and inputs is not None:
        raise ValueError("input_correlation: the correlation map starts from white-noise "
                         "inputs (two inputs of correlation c); with a dataset (inputs=) "
                         "leave it None")
    if correlation is not None and pixels > MAX_CROSS_PIXELS:
        raise ValueError(f"input_correlation: the correlation map of a convolutional "
                         f"network carries every pair of pixels, for images of at most "
                         f"{MAX_CROSS_PIXELS} pixels; this input has {pixels}")
    analyzer.track_cross = pixels <= MAX_CROSS_PIXELS and any(
        isinstance(step.layer, _NEEDS_CROSS) or getattr(step.layer, "needs_input_pairs", False)
        for step in iter_steps(net.steps))
    track_bcross = pixels <= MAX_CROSS_PIXELS and has_batch_norm(net.steps)
    # set by an overlapping max pool: the readout's rules then carry the gradient's pixel
    # pairs back to it (docs/theory.md, section 8, "Overlapping windows")
    analyzer.grad_pairs = False
    if inputs is not None:
        data = spatial_inputs(net, inputs)
        x = sp.from_data(data)
        in_mean, in_var = float(np.mean(data)), float(np.var(data))
        if not analyzer.track_cross:
            x.cross = None
        if track_bcross:  # independent samples: E[x_bp x_b'q] = E[x_p] E[x_q], per channel
            means = data.mean(axis=0).reshape(pixels, -1)
            x.bcross = means @ means.T / means.shape[1]
    else:
        x = sp.white(spatial, input_mean, input_var, cross=analyzer.track_cross)
        in_mean, in_var = input_mean, input_var
        if track_bcross:
            x.bcross = np.full((pixels, pixels), input_mean * input_mean)
        if correlation is not None:  # two inputs, pixel by pixel correlated c
            x.icross = np.full((pixels, pixels), input_mean * input_mean)
            x.icross[np.diag_indices(pixels)] += correlation * input_var
    out, ops = analyzer.forward(net.steps, x)
    from .layers._spatial_rules import is_spatial
    if is_spatial(out):  # the loss gradient: independent units, diagonal pairs
        shape = np.shape(out.mean)
        g = (PairGradient(np.eye(math.prod(shape)), shape) if analyzer.grad_pairs
             else SpatialGradient(np.ones(shape)))
    else:
        g = _Gradient(1.0)
    analyzer.backward(ops, g)
    records = analyzer.records
    # layers behind a max pool that follows a skip connection (their gradient comes back
    # through the quasi-Monte-Carlo rule of the joint law) or whose windows overlap (the
    # cross term by a quasi-Monte-Carlo integral, or missing where the gradients'
    # covariance did not come back): docs/theory.md, section 8
    backward = getattr(analyzer, "spatial_backward_approximate", {})
    behind = sorted(set().union(*backward.values())) if backward else []
    meta = {"assumptions": "mean field per pixel: many channels, Gaussian pre-activations "
                           "at each pixel, gradient independence",
            "gaussian_approximation": analyzer.approximate,
            "approximations": approximations(analyzer.approximate,
                                             sorted(analyzer.unresolved), None,
                                             spatial=sorted(set(_downstream(
                                                 analyzer.spatial_approximate,
                                                 len(records))) | set(behind)),
                                             fan_in=sorted(analyzer.fan_in_approximate)),
            "finite_width_sigma": None,
            "input": "dataset" if inputs is not None else "white noise",
            "pixel_pairs": bool(analyzer.track_cross)}
    meta["approximations"] += _recurrent_entries(getattr(analyzer, "recurrent_flags", {}),
                                                 len(records))
    if behind:
        for entry in meta["approximations"]:
            if entry["kind"] == "spatial":
                entry["detail"] = "; ".join(_NOTES[why] for why in sorted(backward))
    return Profile("analytic", records, net.describe(), in_var, in_mean, meta,
                   maps=analyzer.maps)


#: Causes that touch only the gradient a recurrent layer sends back: the layers at and
#: before it. Every other cause changes its forward moments too, which the layers after
#: it read, and its derivatives, through which the gradient of the layers before it
#: passes: every layer.
_BACKWARD_ONLY = ("rare_paths", "correlated_reads")


def _recurrent_entries(flags: dict[int, tuple[dict[str, list[int]], Any]], n: int
                       ) -> list[dict[str, Any]]:
    """``meta["approximations"]`` entries for recurrent layers (:class:`~varprop.layers.
    Recurrent`) whose theory is approximate at some steps: kind ``recurrent`` per cause
    (the layer and its steps in ``detail``), and ``finite_width`` where the spread of one
    network around the mean field passes the threshold (docs/recurrent.md). ``layers``
    are the weighted layers whose values the cause reaches (``n`` in all)."""
    from ._approximations import approximations, layer_ranges
    from .recurrent.gated import GATED_REASONS
    from .recurrent.theory import RECURRENT_REASONS
    reasons = {**RECURRENT_REASONS, **GATED_REASONS}
    out: list[dict[str, Any]] = []
    for index, (causes, regime) in sorted(flags.items()):
        for cause, steps in causes.items():
            ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}"
                               for a, b in layer_ranges(steps))
            reach = [[0, index]] if cause in _BACKWARD_ONLY else [[0, n - 1]]
            out.append({"kind": "recurrent", "layers": reach, "reason": reasons[cause],
                        "detail": f"{cause} at time steps {ranges} of layer {index}"})
        if regime is not None:
            steps = ", ".join(f"{a}-{b}" for a, b in layer_ranges(regime.layers))
            for entry in approximations([], [], finite_width=regime):
                entry["layers"] = [[0, n - 1]]
                entry["detail"] += f" (through time: steps {steps} of layer {index})"
                out.append(entry)
    return out


def _downstream(flagged: set[int], n: int) -> list[int]:
    """Every weighted layer from the first flagged one on (an approximation upstream
    carries into everything after it)."""
    return list(range(min(flagged), n)) if flagged else []
