"""What is wrong with a Keras model's initialization: :func:`audit`.

The checks of :func:`varprop.torch.audit` that apply to Keras (docs/keras.md), per
layer with a kernel, on the kernel's values (so a model re-initialized after it was
built is judged by what it holds):

* ``glorot_before_relu``: Keras's default ``glorot_uniform`` (or ``glorot_normal``),
  variance ``2 / (fan_in + fan_out)``, feeds a ReLU or leaky ReLU. ReLU keeps half of
  ``E[z^2]``, so the forward variance shrinks by ``fan_in / (fan_in + fan_out)`` per
  layer, a half for square layers; He's ``2 / fan_in`` keeps it. Harmless when a
  normalization sits between the layer and the ReLU (it removes the scale).
* ``selu_init``: a layer feeding a SELU whose kernel does not fit LeCun's ``1 / fan_in``
  (any family), which self-normalization needs (Klambauer et al. 2017). Glorot on a
  square layer has LeCun's variance and is not flagged.
* ``identical_weights``: equal to another layer's kernel (a layer built from another's
  weights): the two start as the same function. ``constant_weights``: every entry equal.
* from :func:`varprop.analyze` on the traced network: ``vanishing``/``exploding`` and
  ``float16_overflow``/``float16_underflow``, as :func:`varprop.torch.audit`'s.

"Fits" is :func:`varprop.torch._law.fits` at miss rate ``alpha`` (default 1e-3).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..adapters.audit import (Finding, constant_finding, identical_finding,
                              variance_findings)
from ..initializers import compute_fans, recommended_initializer
from ..torch import _law  # numpy and scipy only: no torch imported (docs/keras.md)
from .init import _keras, kernels_of, roles, to_numpy, weighted_layers

__all__ = ["audit", "Finding"]

_RELUS = ("relu", "leaky_relu")
_FAMILIES = ("normal", "uniform", "truncated_normal")


def audit(model: Any, example_input: Any = None, *, alpha: float = _law.ALPHA
          ) -> list[Finding]:
    """Audit a Keras model's initialization (module doc; docs/keras.md).

    Args:
        model: a built ``keras.Model`` (an unbuilt Sequential is built from
            ``example_input``).
        example_input: a batch (channels last) whose mean and variance the variance
            checks start from; None: mean 0 and variance 1 at the model's input shape.
            A model :func:`varprop.keras.trace` cannot read gets a ``not_analyzed``
            finding, and the kernel checks still run.
        alpha: the miss rate of each statistical check (a layer drawn from the pattern
            escapes it with this probability).

    Returns:
        The findings (:class:`varprop.torch.Finding`), in layer order; empty when there
        is nothing to report.

    Raises:
        TypeError: ``model`` not a Keras model. ValueError: ``alpha`` outside (0, 1), or
        a model without built kernels.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
        'torch'
        >>> import keras, varprop.keras
        >>> model = keras.Sequential([keras.Input((64,))]
        ...     + [keras.layers.Dense(64, activation="relu") for _ in range(3)])
        >>> sorted({f.kind for f in varprop.keras.audit(model)})
        ['glorot_before_relu']
        >>> model = varprop.keras.init_(model, "he_normal", seed=0)
        >>> [f for f in varprop.keras.audit(model) if f.harmful]
        []
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"audit: model must be a keras.Model, got {type(model).__name__}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"audit: alpha must be in (0, 1), got {alpha!r}")
    from .trace import Graph, trace
    findings: list[Finding] = []
    result = None
    try:
        result = trace(model, example_input)
    except (TypeError, ValueError) as exc:  # unsupported layers, a subclassed model
        findings.append(Finding("(model)", "not_analyzed", str(exc), False,
                                "the variance checks need a model trace can read"))
    layers = weighted_layers(model)
    if not layers:
        raise ValueError("audit: model has no built Dense or Conv layer (build it first, or "
                         "pass example_input)")
    try:
        role = roles(Graph(model))
    except (TypeError, ValueError):  # a subclassed model: no graph, no roles
        role = {}
    seen: dict[tuple, tuple[str, int]] = {}
    for name, layer in layers:
        for attr, var, options in kernels_of(layer):
            w = np.asarray(to_numpy(var), np.float64)
            label = name if attr == "kernel" else f"{name}.{attr}"
            findings += _kernel_checks(label, layer, w, options,
                                       role.get(name, ("other", "other")), alpha)
            findings += _identical(label, var, w, seen)
    if result is not None and result.measured:  # theory needs their measurement first
        findings.append(Finding("(model)", "not_analyzed", "the variance checks need the "
                                "theory through the measured-only layers ("
                                + "; ".join(m.name for m in result.measured) + "), which is "
                                "re-anchored on a measurement of the model.", False,
                                "varprop.keras.compare(model, x) measures them and shows the "
                                "theory around them"))
    elif result is not None:
        findings += _variance_checks(result, example_input)
    return findings


def _configured(layer: Any) -> str:
    config = layer.get_config().get("kernel_initializer")
    if isinstance(config, dict):
        return str(config.get("class_name", "unknown"))
    return "unknown" if config is None else str(config)


def _fix(role: str) -> str:
    if role in ("other", "norm"):
        return ("initialize it for the activation that follows: kernel_initializer="
                "'he_normal' for ReLU, 'lecun_normal' for SELU, 'glorot_normal' for tanh, "
                "or varprop.keras.init_(model, scheme)")
    rec = recommended_initializer(role)
    return (f"initialize it for the {role} that follows: {rec!r} "
            f"(varprop.keras.init_(model, {rec.name!r}) for a whole {role} network)")


def _kernel_checks(name: str, layer: Any, w: np.ndarray, options: dict, role: tuple,
                   alpha: float) -> list[Finding]:
    nxt, after = role
    s = _law._summary(w)
    if s["var"] == 0.0:
        return [constant_finding(name, w, _fix(after))]  # type: ignore[list-item]
    out = []
    fan_in, fan_out = compute_fans(w.shape, layout="keras")  # the fans Keras drew with
    glorot = 2.0 / (fan_in + fan_out)
    if after in _RELUS and any(_law.fits(s, glorot, fam, alpha)
                               for fam in ("uniform", "truncated_normal")) and \
            not any(_law.fits(s, 2.0 / fan_in, fam, alpha) for fam in _FAMILIES):
        harmless = nxt == "norm"
        lo, hi = _law.variance_band(glorot, s["n"], _law.KURTOSIS["uniform"], alpha)
        out.append(Finding(
            name, "glorot_before_relu",
            f"Glorot's variance 2 / (fan_in + fan_out) = {glorot:.4g} (its "
            f"kernel_initializer: {_configured(layer)}; mean of squares {s['m2']:.4g}, "
            f"{1 - alpha:.1%} band [{lo:.4g}, {hi:.4g}] for uniform entries) feeds a {after}: "
            f"ReLU keeps half of E[z^2], so the forward variance shrinks by fan_in / "
            f"(fan_in + fan_out) = {fan_in / (fan_in + fan_out):.3g} per layer (He's 2 / fan_in "
            "keeps it)" + ("; harmless: a normalization follows and removes the scale."
                           if harmless else "."),
            not harmless, "kernel_initializer='he_normal' (Keras), or "
            "varprop.keras.init_(model, 'he_normal')"))
    true_in = compute_fans(w.shape, layout="keras", **options)[0]
    if nxt == "selu" and not any(_law.fits(s, 1.0 / true_in, fam, alpha) for fam in _FAMILIES):
        out.append(Finding(
            name, "selu_init",
            f"feeds a SELU, but its mean of squares {s['m2']:.4g} does not fit LeCun's "
            f"1 / fan_in = {1 / true_in:.4g} (its kernel_initializer: {_configured(layer)}), "
            "which SELU's self-normalization needs (Klambauer et al. 2017): the variance "
            f"changes by {s['m2'] * true_in:.3g} per layer.", True,
            "kernel_initializer='lecun_normal', or varprop.keras.init_(model, 'lecun_normal')"))
    return out


def _identical(name: str, var: Any, w: np.ndarray, seen: dict) -> list[Finding]:
    """A finding when ``w`` equals a kernel met before in another variable (one
    variable used by two layers is sharing, meant)."""
    found = identical_finding(name, id(var), w, seen, "set_weights or a copied kernel",
                              "re-initialize one: varprop.keras.init_(model, scheme) after "
                              "building the model, or layer.kernel.assign(new values)")
    return [] if found is None else [found]


def _variance_checks(result: Any, x: Any) -> list[Finding]:
    in_mean, in_var = 0.0, 1.0
    if x is not None:
        arr = to_numpy(x).astype(np.float64)
        in_mean, in_var = float(arr.mean()), float(arr.var())
        in_var = in_var if in_var > 0 else 1.0  # a constant example: relative to unit inputs
    return variance_findings(
        result.network, result.names, result.next_op, in_mean, in_var,
        fix="initialize the layers for the activations after them "
            "(varprop.recommended_initializer; varprop.keras.init_); "
            "varprop.keras.compare(model, x).table() shows the theory layer by layer",
        overflow_fix="rescale the initialization, or use the 'mixed_bfloat16' policy or "
                     "float32",
        underflow_fix="use a loss scale (keras.optimizers.LossScaleOptimizer) for "
                      "gradients, or rescale the initialization, or use 'mixed_bfloat16'")
