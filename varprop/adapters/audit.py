"""The framework-neutral half of an initialization audit: :class:`Finding`, and the rules
that read a traced :class:`~varprop.network.Network` or a weight array.

The framework adapters (``varprop.torch.audit``, ``varprop.keras.audit``) add their own
checks on the weights (PyTorch's default init, Keras's Glorot before a ReLU) and the
fixes in their own vocabulary; the rules here are the same for every framework:

* :func:`variance_findings`: ``vanishing``/``exploding``, the forward variance changed
  by more than :data:`DECADES` decades since the input (or the last normalization or
  measured-only op) or the gradient variance since the output (per residual branch),
  with the one-off changes that an architecture makes by design left out
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
           "changes", "variance_findings", "float16_findings",
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
def _resets(network: Any, tokens: int) -> list[tuple[bool, str, float]]:
    """Per weighted layer (forward order), what lies between it and the weighted layer
    before it (the input, for the first): ``(one_off, restart, reference)``. ``one_off``:
    a pooling or a measured-only op, whose change is not counted (a pooling's by design,
    a measured-only op's measured, not predicted), or, for the first layer of token
    indices (an Embedding), the one-hot input, whose variance is no reference.
    ``restart``: "norm" (the forward change starts afresh from unit variance after a
    normalization), "measured" (from the measured output variance ``reference``), or ""."""
    from ..layers import AvgPool, BatchNorm, GlobalAvgPool, GroupNorm, LayerNorm, MaxPool
    from ..layers import iter_steps
    from ..layers.measured import Measured
    out: list[tuple[bool, str, float]] = []
    one_off, restart, ref = bool(tokens), "", 0.0
    for step in iter_steps(network.steps):
        layer = step.layer
        if isinstance(layer, (MaxPool, AvgPool, GlobalAvgPool)):
            one_off = True
        elif isinstance(layer, (BatchNorm, GroupNorm, LayerNorm)):
            restart, ref = "norm", 1.0
        elif isinstance(layer, Measured):
            one_off, restart, ref = True, "measured", layer.var
        elif layer.weighted:
            out.append((one_off, restart, ref))
            one_off, restart, ref = False, "", 0.0
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


def changes(profile: Any, network: Any, in_var: float, tokens: int = 0
            ) -> tuple[list[float], list[float]]:
    """Per weighted layer, the change of the forward variance since the input and of the
    gradient variance since the output, as products of the changes between consecutive
    weighted layers. One-off changes that the architecture makes by design are left
    out, so that only what compounds with depth counts: a pooling's averaging (or, for
    max pooling, the pixels it drops), and, backward, the ratio ``n_out / n_in`` of a
    layer that is not square (a 10-class head after 512 units sends back 10/512 of the
    gradient under any fan-in scheme, He's included). Forward, the change starts afresh
    after a normalization and after a measured-only op (:func:`_resets`): what came
    before is removed by the one, and measured, not predicted, at the other. ``tokens``:
    the vocabulary of token-index inputs (0: floats)."""
    z = [r.z_var for r in profile]
    fwd, f = [], 1.0
    for i, (one_off, restart, ref) in enumerate(_resets(network, tokens)):
        if restart:
            f = _ratio(z[i], ref)
        elif not one_off:
            f *= _ratio(z[i], in_var if i == 0 else z[i - 1])
        fwd.append(f)
    return fwd, _backward_changes([r.grad_var for r in profile], network.layers)


def _backward_changes(g: list[float], layers: tuple) -> list[float]:
    """Per weighted layer, the change of the gradient variance along its chain: the
    product of the ratios between consecutive weighted layers of one sequence (the main
    chain, or one residual branch), with a pooling's or a measured-only op's one-off
    change and a layer's change of width left out (:func:`changes`). A residual branch
    starts its own product at its last layer: the skip carries the gradient past it, so
    what happens inside one branch does not compound along the stream."""
    from ..layers import AvgPool, GlobalAvgPool, MaxPool, Residual
    from ..layers.measured import Measured
    order: dict[int, int] = {}

    def number(items: tuple) -> None:
        for layer in items:
            if isinstance(layer, Residual):
                number(layer.branch)
            elif layer.weighted:
                order[id(layer)] = len(order)

    number(layers)
    out = [1.0] * len(g)

    def walk(items: tuple) -> None:
        b, below, one_off = 1.0, None, False
        for layer in reversed(items):
            if isinstance(layer, Residual):
                walk(layer.branch)
            elif isinstance(layer, (MaxPool, AvgPool, GlobalAvgPool, Measured)):
                one_off = True
            elif layer.weighted:
                i = order[id(layer)]
                if below is not None and not one_off:
                    b *= _ratio(g[i], g[order[id(below)]]) / _widening(below)
                out[i], below, one_off = b, layer, False

    walk(layers)
    return out


def variance_findings(network: Any, names: list[str], next_op: dict[str, str],
                      in_mean: float, in_var: float, *, fix: str, overflow_fix: str,
                      underflow_fix: str, tokens: int = 0,
                      branches: "dict[str, str] | None" = None) -> list[Finding]:
    """``vanishing``/``exploding`` and float16 findings of a traced network, from
    :func:`varprop.analyze` at inputs of mean ``in_mean`` and variance ``in_var``.

    Args:
        network: the traced :class:`~varprop.network.Network`.
        names: each weighted layer's name, in ``analyze(network)``'s order.
        next_op: per name what reads its output; ``"norm"`` makes a forward change
            harmless (the normalization removes the scale).
        in_mean, in_var: the inputs' moments (``in_var`` > 0).
        fix, overflow_fix, underflow_fix: each finding's fix, in the framework's words.
        tokens: the vocabulary of token-index inputs (0: floats; :func:`changes`).
        branches: the names of the layers inside a residual branch: a forward vanishing
            there is harmless (the skip carries the signal).
    """
    from ..analytic import analyze
    branches = branches or {}
    profile = analyze(network, input_mean=in_mean, input_var=in_var)
    fwd, bwd = changes(profile, network, in_var, tokens)
    findings = []
    for rec, name, f_ratio, g_ratio in zip(profile, names, fwd, bwd):
        role = next_op.get(name, "other")
        for what, ratio, ref in (("forward", f_ratio, "since the input (or the last "
                                  "normalization or measured-only op)"),
                                 ("gradient", g_ratio, "since the output")):
            if math.isnan(ratio):
                continue
            decades = math.log10(ratio) if 0 < ratio < math.inf else \
                (math.inf if ratio == math.inf else -math.inf)
            if abs(decades) <= DECADES:
                continue
            kind = "exploding" if decades > 0 else "vanishing"
            in_branch = kind == "vanishing" and what == "forward" and name in branches
            harmless = what == "forward" and role == "norm" or in_branch
            value = rec.z_var if what == "forward" else rec.grad_var
            findings.append(Finding(
                name, kind, f"the predicted {what} variance ({value:.3g}) changed by a "
                f"factor {ratio:.3g} {ref} (beyond {10 ** DECADES:g}x; the one-off changes "
                "at poolings and width changes not counted)"
                + ("; harmless: a residual branch that starts small adds little to its "
                   "skip, which carries the signal (as ReZero and SkipInit start on purpose)."
                   if in_branch else "; harmless: a normalization follows and removes the "
                   "scale." if harmless else "."), not harmless, fix))
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
