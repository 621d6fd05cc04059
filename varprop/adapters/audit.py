"""The framework-neutral half of an initialization audit: :class:`Finding`, and the rules
that read a traced :class:`~varprop.network.Network` or a weight array.

The framework adapters (``varprop.torch.audit``, ``varprop.keras.audit``) add their own
checks on the weights (PyTorch's default init, Keras's Glorot before a ReLU) and the
fixes in their own vocabulary; the rules here are the same for every framework:

* :func:`variance_findings`: ``vanishing``/``exploding``, the forward variance changed
  by more than :data:`DECADES` decades since the input or the gradient variance since
  the output, with the one-off changes that an architecture makes by design left out
  (:func:`changes`); ``float16_overflow``/``float16_underflow`` (:func:`float16_findings`);
* :func:`constant_finding`, :func:`identical_finding`: a weight tensor whose entries are
  all equal, or that equals another layer's (docs/torch.md, docs/keras.md).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Finding", "FLOAT16_MAX", "FLOAT16_TINY", "FLOAT16_SUBNORMAL", "SIGMAS", "DECADES",
           "pooled_before", "changes", "variance_findings", "float16_findings",
           "constant_finding", "identical_finding"]

#: float16's largest finite value and smallest positive normal value.
FLOAT16_MAX = 65504.0
FLOAT16_TINY = 2.0 ** -14
#: float16's smallest subnormal: below it a value is zero.
FLOAT16_SUBNORMAL = 2.0 ** -24
#: A value "reaches" |mean| + SIGMAS standard deviations.
SIGMAS = 6.0
#: A variance more than this many decades from its reference vanishes or explodes (the
#: threshold of varprop.verdict over a whole network, here per layer).
DECADES = 1.0


@dataclass(frozen=True)
class Finding:
    """One thing an audit found.

    Attributes:
        layer: the layer's name (PyTorch: as ``model.named_modules()`` gives it; Keras:
            the layer's ``name``), or ``"(model)"``.
        kind: the rule, e.g. ``torch_default_init``, ``glorot_before_relu``,
            ``identical_weights``, ``constant_weights``, ``vanishing``, ``exploding``,
            ``float16_overflow``, ``float16_underflow`` or ``not_analyzed``.
        message: what was found, with the numbers.
        harmful: False where the finding does not hurt training (a scale a
            normalization removes).
        fix: what to do.
    """

    layer: str
    kind: str
    message: str
    harmful: bool
    fix: str

    def __str__(self) -> str:
        return (f"[{'harmful' if self.harmful else 'harmless'}] {self.layer}: {self.kind}: "
                f"{self.message} Fix: {self.fix}")


# ----------------------------------------------------------------------------- weights
def constant_finding(name: str, w: np.ndarray, fix: str) -> "Finding | None":
    """``constant_weights`` when every entry of ``w`` is equal (the units then compute
    the same function and get the same gradient), else None."""
    if np.var(w) > 0.0:
        return None
    return Finding(name, "constant_weights", f"every entry is {float(w.ravel()[0]):.4g}: all "
                   "units of the layer compute the same function and get the same gradient, "
                   "so training cannot tell them apart.", True, fix)


def identical_finding(name: str, var_id: int, w: np.ndarray, seen: dict, why: str, fix: str
                      ) -> "Finding | None":
    """``identical_weights`` when ``w`` equals a tensor met before in another variable.

    Args:
        name: the layer (or ``layer.attribute``) of ``w``.
        var_id: ``id`` of the variable holding ``w``: one variable read by two layers is
            weight sharing, meant, and not reported.
        seen: ``(shape, digest) -> (name, var_id)`` of the tensors met so far (updated).
        why: how such copies arise in this framework (ends the message).
        fix: what to do.
    """
    if not np.var(w) > 0:  # constant weights: a finding of their own
        return None
    key = (w.shape, hashlib.sha1(np.ascontiguousarray(w, np.float64).tobytes()).hexdigest())
    first = seen.setdefault(key, (name, var_id))
    if first[0] == name or first[1] == var_id:
        return None
    return Finding(name, "identical_weights", f"its weights equal those of {first[0]!r}: the "
                   f"two layers start as the same function ({why}).", True, fix)


# ----------------------------------------------------------------------------- the network
def pooled_before(network: Any) -> list[bool]:
    """Per weighted layer (forward order): whether a pooling lies between it and the
    weighted layer before it (the input, for the first)."""
    from ..layers import AvgPool, GlobalAvgPool, MaxPool, iter_steps
    out, pooled = [], False
    for step in iter_steps(network.steps):
        if isinstance(step.layer, (MaxPool, AvgPool, GlobalAvgPool)):
            pooled = True
        elif step.layer.weighted:
            out.append(pooled)
            pooled = False
    return out


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return math.inf if a > 0 else (1.0 if a == 0 else math.nan)
    return a / b if math.isfinite(b) else (1.0 if math.isinf(a) else 0.0)


def _widening(layer: Any) -> float:
    """How much a layer's shape alone scales the gradient it sends back, per unit, under
    a fan-in scheme: ``n_out / n_in`` units (channels for a convolution, divided by its
    strides' product, since each input pixel then feeds fewer outputs)."""
    if hasattr(layer, "out_channels"):
        return layer.out_channels / layer.in_channels / math.prod(layer.stride)
    return layer.n_out / layer.n_in


def changes(profile: Any, network: Any, in_var: float) -> tuple[list[float], list[float]]:
    """Per weighted layer, the change of the forward variance since the input and of the
    gradient variance since the output, as products of the changes between consecutive
    weighted layers. One-off changes that the architecture makes by design are left
    out, so that only what compounds with depth counts: a pooling's averaging (or, for
    max pooling, the pixels it drops), and, backward, the ratio ``n_out / n_in`` of a
    layer that is not square (a 10-class head after 512 units sends back 10/512 of the
    gradient under any fan-in scheme, He's included)."""
    z = [r.z_var for r in profile]
    g = [r.grad_var for r in profile]
    pooled = pooled_before(network)
    layers = list(network.dense_layers())
    fwd, f = [], 1.0
    for i in range(len(z)):
        if not pooled[i]:
            f *= _ratio(z[i], in_var if i == 0 else z[i - 1])
        fwd.append(f)
    bwd, b = [1.0] * len(g), 1.0
    for i in range(len(g) - 2, -1, -1):
        if not pooled[i + 1]:
            b *= _ratio(g[i], g[i + 1]) / _widening(layers[i + 1])
        bwd[i] = b
    return fwd, bwd


def variance_findings(network: Any, names: list[str], next_op: dict[str, str],
                      in_mean: float, in_var: float, *, fix: str, overflow_fix: str,
                      underflow_fix: str) -> list[Finding]:
    """``vanishing``/``exploding`` and float16 findings of a traced network, from
    :func:`varprop.analyze` at inputs of mean ``in_mean`` and variance ``in_var``.

    Args:
        network: the traced :class:`~varprop.network.Network`.
        names: each weighted layer's name, in ``analyze(network)``'s order.
        next_op: per name what reads its output; ``"norm"`` makes a forward change
            harmless (the normalization removes the scale).
        in_mean, in_var: the inputs' moments (``in_var`` > 0).
        fix, overflow_fix, underflow_fix: each finding's fix, in the framework's words.
    """
    from ..analytic import analyze
    profile = analyze(network, input_mean=in_mean, input_var=in_var)
    fwd, bwd = changes(profile, network, in_var)
    findings = []
    for rec, name, f_ratio, g_ratio in zip(profile, names, fwd, bwd):
        role = next_op.get(name, "other")
        for what, ratio, ref in (("forward", f_ratio, "since the input"),
                                 ("gradient", g_ratio, "since the output")):
            if math.isnan(ratio):
                continue
            decades = math.log10(ratio) if 0 < ratio < math.inf else \
                (math.inf if ratio == math.inf else -math.inf)
            if abs(decades) <= DECADES:
                continue
            harmless = what == "forward" and role == "norm"
            value = rec.z_var if what == "forward" else rec.grad_var
            findings.append(Finding(
                name, "exploding" if decades > 0 else "vanishing",
                f"the predicted {what} variance ({value:.3g}) changed by a factor "
                f"{ratio:.3g} {ref} (beyond {10 ** DECADES:g}x; the one-off changes at "
                "poolings and width changes not counted)"
                + ("; harmless: a normalization follows and removes the scale."
                   if harmless else "."), not harmless, fix))
        findings += float16_findings(name, rec, overflow_fix, underflow_fix)
    return findings


def float16_findings(name: str, rec: Any, overflow_fix: str, underflow_fix: str
                     ) -> list[Finding]:
    """``float16_overflow`` when a layer's pre-activation, activation or gradient (for a
    unit output gradient) reaches beyond float16's largest value at :data:`SIGMAS`
    standard deviations; ``float16_underflow`` when its typical magnitude is below
    float16's normal range."""
    out = []
    for label, mean, var in (("pre-activation", rec.z_mean, rec.z_var),
                             ("activation", rec.a_mean, rec.a_var),
                             ("gradient (unit output gradient)", 0.0, rec.grad_var)):
        reach = abs(mean) + SIGMAS * math.sqrt(var) if var >= 0 else math.nan
        rms = math.sqrt(mean * mean + var) if var >= 0 else math.nan
        if reach > FLOAT16_MAX:
            out.append(Finding(name, "float16_overflow", f"its {label} reaches {reach:.3g} at "
                               f"{SIGMAS:g} standard deviations, beyond float16's "
                               f"{FLOAT16_MAX:g}.", True, overflow_fix))
        elif rms < FLOAT16_TINY:
            where = ("below float16's smallest subnormal: it is zero" if rms < FLOAT16_SUBNORMAL
                     else "in float16's subnormal range, with fewer significant bits")
            out.append(Finding(name, "float16_underflow", f"its {label} has typical magnitude "
                               f"{rms:.3g}, {where} (normal values start at "
                               f"{FLOAT16_TINY:.3g}).", True, underflow_fix))
    return out
