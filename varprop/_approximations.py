"""Where the analyzer's theory is only approximate, and why: the kinds of
approximation that ``analyze`` lists in ``meta["approximations"]`` with their reasons,
which every report format prints (docs/theory.md)."""

from __future__ import annotations

from typing import Any, Sequence

from .layers import BatchNorm, Step, iter_steps
from .theory.finite_width import REASON as FINITE_WIDTH_REASON

__all__ = ["APPROXIMATION_REASONS", "APPROXIMATION_SUMMARIES", "approximations",
           "layer_ranges", "has_batch_norm"]


#: Why the theory of a layer is only approximate, by kind (analyze's
#: ``meta["approximations"]``; the reports print the reason).
APPROXIMATION_REASONS = {
    "gaussian": "units known not to be Gaussian (an identity layer with random biases or "
                "more outputs than inputs, or a residual sum of such units) are treated as "
                "Gaussian for want of their exact law",
    "unresolved": "along an identity or constant chain the gradient's expectation has a "
                  "feature narrower than the quadrature rule resolves (a steep transition "
                  "after many GELU-like layers, or a spike near an unstable fixed point of "
                  "the activation such as SELU's 0, where rare units carry most of the "
                  "mean): the theory's value is not reliable, and a measurement of a finite "
                  "batch may not converge to the mean either",
    "finite_width": FINITE_WIDTH_REASON,  # a template: {sigma}, {width}, ...
    "fan_in": "these layers have few inputs per unit (a fan in below "
              "{fan_in_limit}, such as a first convolution on one-channel images): "
              "their pre-activation is a mixture of Gaussians over the few weights, not "
              "the Gaussian of the mean field; second moments stay exact only through a "
              "linear or ReLU-like activation of a zero-mean pre-activation",
    "spatial": "the per-pixel theory of a convolutional network is approximate from these "
               "layers on: a max pooling's output is not Gaussian and the pixel pairs after "
               "it are carried in the Gaussian approximation (its own moments are accurate "
               "to about 1e-10 for windows of up to four taps or of independent taps; a "
               "quasi-Monte-Carlo rule, about 2e-4, for larger correlated windows), "
               "non-centred convolution weights "
               "keep only the diagonal of their shared term, BatchNorm's gradient after "
               "convolutions ignores the spread of the channels' scales (measured up to "
               "~10 % above it, ~40 % after a first layer of fan in 9), or a layer needed pixel pairs that were not tracked "
               "(images of more than 1024 pixels)",
}


#: The same, in a few words, for a report that names many networks of one kind.
APPROXIMATION_SUMMARIES = {
    "gaussian": "non-Gaussian units treated as Gaussian (docs/theory.md, section 2)",
    "unresolved": "the gradient along an identity or constant chain has a feature finer "
                  "than the quadrature resolves, so its value is not reliable "
                  "(docs/theory.md, section 2)",
    "finite_width": "at this width the fluctuations of the layer variances are amplified "
                    "layer after layer, so the mean field is the infinite-width limit, not "
                    "what a network this wide gives (docs/theory.md, section 11); in "
                    "parentheses the predicted spread of log(measured / theory) and how "
                    "many times wider the layers would have to be for a spread of 0.5",
    "spatial": "per-pixel theory approximate after max pooling or untracked pixel "
               "covariances (docs/theory.md, section 8)",
    "fan_in": "a layer with few inputs per unit: its pre-activation is not Gaussian "
              "(docs/theory.md, section 8)",
    "recurrent": "the recurrent theory is approximate at some time steps, for the cause in "
                 "parentheses: one_hot (one-hot tokens through a curved activation), "
                 "non_centred (recurrent weights with a mean), tied_weights (a random "
                 "recurrent kernel at or near criticality, whose leading modes one draw "
                 "follows), identity_input (identity "
                 "recurrence fed repeated tokens), varying_input (identity recurrence fed "
                 "an input variance that changes with time), correlated_reads (identity "
                 "recurrence read at several steps by gradients that share a term), "
                 "correlated_input (inputs correlated across steps, accumulated by a "
                 "gated cell or an identity recurrence), coarse_chain (an identity chain "
                 "spread beyond its grid) or rare_paths (an expected gradient carried by "
                 "chains too rare for the measurement to sample or pin down) (docs/recurrent.md)",
}


#: Below this fan in, a pre-activation is flagged as not Gaussian ("fan_in").
SMALL_FAN_IN = 50


def approximations(gaussian: Sequence[int], unresolved: Sequence[int],
                   finite_width: Any = None, spatial: Sequence[int] = (),
                   fan_in: Sequence[int] = ()) -> list[dict[str, Any]]:
    """``[{"kind", "layers", "reason", "detail"}, ...]`` for the kinds that occur
    (``finite_width``: a :class:`~varprop.theory.finite_width.Regime`, or None).
    ``layers`` lists the dense layers concerned as inclusive ``[first, last]`` ranges
    (a 100,000-layer network would otherwise list every index); ``detail`` is this
    network's numbers ("" when the kind has none)."""
    out = []
    for kind, layers in (("gaussian", gaussian), ("unresolved", unresolved),
                         ("fan_in", fan_in), ("spatial", spatial)):
        if layers:
            out.append({"kind": kind, "layers": layer_ranges(layers),
                        "reason": APPROXIMATION_REASONS[kind].format(
                            fan_in_limit=SMALL_FAN_IN), "detail": ""})
    if finite_width is not None and finite_width.layers:
        fields = finite_width.reason_fields()
        out.append({"kind": "finite_width", "layers": layer_ranges(finite_width.layers),
                    "reason": APPROXIMATION_REASONS["finite_width"].format(**fields),
                    "detail": f"spread {fields['sigma']}, {fields['factor']}x wider"})
    return out


def layer_ranges(layers: Sequence[int]) -> list[list[int]]:
    """Sorted layer indices as inclusive ``[first, last]`` runs: [0, 1, 2, 5] ->
    [[0, 2], [5, 5]]."""
    runs: list[list[int]] = []
    for i in sorted(set(int(i) for i in layers)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def has_batch_norm(steps: Sequence[Step]) -> bool:
    return any(isinstance(step.layer, BatchNorm) for step in iter_steps(steps))
