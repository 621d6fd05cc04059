"""What is wrong with a PyTorch model's initialization: :func:`audit`.

Checks, per Linear/Conv layer (docs/torch.md):

* ``torch_default_init``: PyTorch's layer default ``kaiming_uniform_(a=sqrt(5))``, i.e.
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` of variance ``1 / (3 fan_in)``, is still in
  place: a third of the LeCun variance, so the second moment shrinks 3-fold per layer
  (6-fold with ReLU). Harmless when a normalization follows the layer.
* ``identical_weights``: equal to another layer's weights, as ``copy.deepcopy`` of one
  layer leaves them (pytorch issue 72253): the copies start as the same function.
* ``constant_weights``: every entry equal: the units cannot become different.
* ``selu_gain``: a layer feeding a SELU drawn with PyTorch's SELU gain 3/4
  (``kaiming_normal_(nonlinearity="selu")``, variance ``(9/16) / fan_in``) instead of
  LeCun's ``1 / fan_in``, which self-normalization needs (Klambauer et al. 2017;
  pytorch issue 54055).
* with ``example_input``, from :func:`varprop.analyze` on the traced network:
  ``vanishing``/``exploding`` (the forward variance changed by more than a factor 10
  since the input, or the gradient variance since the output; one-off changes by
  design, across a pooling or a layer's change of width, are not counted) and
  ``float16_overflow``/``float16_underflow`` (values beyond 65504 at 6 standard
  deviations, or a typical magnitude below float16's normal range, 2^-14).

"Fits" is the test of :func:`varprop.torch._law.fits`: mean, a chi-square band on the
mean of squares, the support and the kurtosis, each missing a layer that was drawn that
way with probability ``alpha`` (default 1e-3).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..initializers import recommended_initializer
from . import _law
from ._ops import next_ops, symbolic_graph
from .init import true_fans, weighted_modules

__all__ = ["Finding", "audit", "FLOAT16_MAX", "FLOAT16_TINY", "SIGMAS", "DECADES"]

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
    """One thing :func:`audit` found.

    Attributes:
        layer: the module's name (as ``model.named_modules()`` gives it).
        kind: ``torch_default_init``, ``identical_weights``, ``constant_weights``,
            ``selu_gain``, ``vanishing``, ``exploding``, ``float16_overflow``,
            ``float16_underflow`` or ``not_analyzed``.
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


def audit(model: nn.Module, example_input: "torch.Tensor | None" = None, *,
          alpha: float = _law.ALPHA) -> list[Finding]:
    """Audit ``model``'s initialization (module doc; docs/torch.md).

    Args:
        model: an ``nn.Module``; its Linear and convolution layers are checked.
        example_input: a batch for :func:`varprop.torch.trace`; with it the predicted
            variances of every layer are checked too (its mean and variance are the
            inputs'). A model that cannot be traced gets a ``not_analyzed`` finding.
        alpha: the miss rate of each statistical check (a layer drawn from the pattern
            escapes it with this probability).

    Returns:
        The findings, in layer order; an empty list for a model with nothing to report.

    Example:
        >>> import torch, varprop.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
        ...                             torch.nn.Linear(64, 64))
        >>> print(varprop.torch.audit(model)[0].kind)
        torch_default_init
        >>> model = varprop.torch.init_(model, "he_normal", seed=0)
        >>> [f for f in varprop.torch.audit(model) if f.harmful]
        []
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"audit: model must be a torch.nn.Module, got {type(model).__name__}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"audit: alpha must be in (0, 1), got {alpha!r}")
    findings: list[Finding] = []
    result = None
    if example_input is not None:
        from .trace import trace
        try:
            result = trace(model, example_input)
        except ValueError as exc:
            findings.append(Finding("(model)", "not_analyzed", str(exc), False,
                                    "the variance checks need a model trace can read"))
    roles = result.next_op if result is not None else next_ops(symbolic_graph(model), model)
    branches = _branch_modules(model, result) if result is not None else {}
    seen: dict[tuple, tuple[str, int]] = {}
    for name, m in weighted_modules(model):
        w = m.weight.detach().cpu().double().numpy()
        findings += _weight_checks(name, m, w, roles.get(name, "other"), alpha,
                                   branches.get(name))
        findings += _identical(name, m, w, seen)
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            w = m.in_proj_weight.detach().cpu().double().numpy()
            findings += packed_qkv(name, w, alpha)
            findings += _identical(f"{name}.in_proj_weight", m.in_proj_weight, w, seen, True)
    if result is not None:
        findings += _variance_checks(result, example_input, branches)
        findings += [Finding(op.name, "measured_only", f"no theory: {'; '.join(op.reasons)}. "
                             "It is measured, and the theory re-anchored on it (docs/torch.md).",
                             False, "nothing to fix: varprop.torch.compare(model, x).table() "
                             "shows its measured variance") for op in result.measured]
    return findings


def _identical(name: str, m: Any, w: np.ndarray, seen: dict, param: bool = False
               ) -> list[Finding]:
    """A finding when ``w`` equals the weights of a layer met before (``seen``: digest ->
    (name, id of its Parameter)); one Parameter shared by two layers is tying, meant.
    ``m`` is the module, or (``param``) the Parameter itself."""
    if not np.var(w) > 0:  # constant weights: a finding of their own
        return []
    pid = id(m) if param else id(m.weight)
    key = (w.shape, hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest())
    first = seen.setdefault(key, (name, pid))
    if first[0] == name or first[1] == pid:
        return []
    return [Finding(name, "identical_weights", f"its weights equal those of {first[0]!r}: "
                    "the two layers start as the same function (copy.deepcopy copies the "
                    "weights; pytorch issue 72253).", True,
                    f"re-initialize the copy: {name}.reset_parameters(), or "
                    "varprop.torch.init_(model, scheme) after building the model")]


def _fix_for(role: str) -> str:
    if role in ("other", "norm"):
        return ("re-initialize it for the activation that follows: varprop.torch.init_(model, "
                "'he_normal') for ReLU, 'lecun_normal' for SELU, 'glorot_normal' for tanh "
                "(varprop.recommended_initializer)")
    rec = recommended_initializer(role)
    return (f"re-initialize it for the {role} that follows: {rec!r} "
            f"(varprop.torch.init_(model, {rec.name!r}) for a whole {role} network)")


def _weight_checks(name: str, m: nn.Module, w: np.ndarray, role: str, alpha: float,
                   branch: "str | None" = None) -> list[Finding]:
    s = _law._summary(w)
    out = []
    if s["var"] == 0.0:
        return [Finding(name, "constant_weights", f"every entry is {float(w.ravel()[0]):.4g}: "
                        "all units of the layer compute the same function and get the same "
                        "gradient, so training cannot tell them apart.", True, _fix_for(role))]
    fan_in = _law.torch_fans(tuple(w.shape))[0]  # the fan PyTorch drew with
    default = 1.0 / (3.0 * fan_in)
    if _law.fits(s, default, "uniform", alpha):
        lo, hi = _law.variance_band(default, s["n"], _law.KURTOSIS["uniform"], alpha)
        after = {"norm": "a normalization follows, and it removes the scale"}.get(role)
        if after is None and branch == "prenorm":
            after = ("it sits in a residual branch that starts with a normalization (pre-norm): "
                     "its scale only sets how much the branch adds to the skip, and does not "
                     "compound from block to block")
        out.append(Finding(
            name, "torch_default_init",
            f"PyTorch's default kaiming_uniform_(a=sqrt(5)) is still in place: mean of "
            f"squares {s['m2']:.4g} lies in the {1 - alpha:.1%} band [{lo:.4g}, {hi:.4g}] "
            f"of 1 / (3 fan_in) = {default:.4g} (n = {s['n']}) and the entries fill "
            f"U(-1/sqrt({fan_in}), 1/sqrt({fan_in})): a third of LeCun's variance, the "
            "second moment shrinks 3x per layer (6x with ReLU)"
            + (f"; harmless: {after}." if after else "."),
            after is None, _fix_for(role)))
    true_in = true_fans(m)[0]
    if role == "selu":
        gain = (9.0 / 16.0) / fan_in
        if any(_law.fits(s, gain, fam, alpha) for fam in ("normal", "uniform")) and \
                not any(_law.fits(s, 1.0 / true_in, fam, alpha)
                        for fam in ("normal", "uniform", "truncated_normal")):
            out.append(Finding(
                name, "selu_gain",
                f"drawn with PyTorch's SELU gain 3/4: mean of squares {s['m2']:.4g} fits "
                f"(9/16) / fan_in = {gain:.4g}, not LeCun's 1 / fan_in = {1 / true_in:.4g} "
                "that SELU's self-normalization needs (Klambauer et al. 2017; pytorch "
                "issue 54055): the variance shrinks by 9/16 per layer.", True,
                "varprop.torch.init_(model, 'lecun_normal'), or "
                "torch.nn.init.kaiming_normal_(w, nonlinearity='linear')"))
    return out


#: Fans schemes whose variance depends on the fan-out: on a packed (3d, d) QKV matrix
#: they read fan_out = 3d where each projection has d (pytorch issue 166378).
_FAN_OUT_SCHEMES = (("xavier_uniform", {}, "uniform"), ("xavier_normal", {}, "normal"),
                    ("glorot_normal", {}, "truncated_normal"),
                    ("kaiming_uniform", {"mode": "fan_out"}, "uniform"),
                    ("kaiming_normal", {"mode": "fan_out"}, "normal"))


def packed_qkv(name: str, w: np.ndarray, alpha: float = _law.ALPHA) -> list[Finding]:
    """``packed_qkv_fans`` when ``nn.MultiheadAttention``'s packed ``in_proj_weight``
    ``(3d, d)`` fits a scheme drawn at the packed matrix's fans and not at each ``(d,
    d)`` projection's own: ``xavier_uniform_``, PyTorch's own choice, then gives each
    projection variance ``1 / (2d)`` instead of ``1 / d`` (pytorch issue 166378)."""
    from ..initializers import get as get_initializer
    s = _law._summary(w)
    rows = w.shape[0] // 3
    for scheme, params, family in _FAN_OUT_SCHEMES:
        init = get_initializer(scheme, layout="torch", **params)
        packed = init.moments(tuple(w.shape)).var
        block = init.moments((rows, *w.shape[1:])).var
        if abs(packed / block - 1.0) < 0.05 or not _law.fits(s, packed, family, alpha):
            continue
        if _law.fits(s, block, family, alpha):
            continue
        r = packed / block
        return [Finding(
            f"{name}.in_proj_weight", "packed_qkv_fans",
            f"the packed Q, K, V matrix {tuple(w.shape)} fits {scheme} at its own fans "
            f"(variance {packed:.4g}), not at each ({rows}, {w.shape[1]}) projection's "
            f"({block:.4g}): each projection has {r:.3g}x the variance the scheme means, so "
            f"the query-key scores have {r * r:.3g}x theirs (attention starts closer to "
            f"uniform) and the values {r:.3g}x (pytorch issue 166378).", True,
            f"draw each projection at its own fans: varprop.torch.init_(model, {scheme!r}) "
            "does, block by block")]
    return []


def _branch_modules(model: nn.Module, result: Any) -> dict[str, str]:
    """Module name -> "prenorm" (inside a residual branch that starts with a
    normalization) or "branch" (inside another residual branch), for the traced
    Linear/Conv layers and the modules inside measured-only ops."""
    from ..layers import BatchNorm, GroupNorm, LayerNorm, Residual
    from ..layers.measured import Measured
    norms = (BatchNorm, GroupNorm, LayerNorm)
    names = {id(m): n for n, m in model.named_modules()}
    ops = {id(op.layer): op for op in result.measured}
    out: dict[str, str] = {}
    count = [0]

    def walk(layers: Any, role: "str | None") -> None:
        for layer in layers:
            if isinstance(layer, Residual):
                inner = "prenorm" if layer.branch and isinstance(layer.branch[0], norms) \
                    else (role or "branch")
                walk(layer.branch, inner if role != "prenorm" else role)
            elif layer.weighted:
                if role:
                    out[result.names[count[0]]] = role
                count[0] += 1
            elif isinstance(layer, Measured) and role and id(layer) in ops:
                module = ops[id(layer)].module
                prefix = names.get(id(module)) if module is not None else None
                for n in names.values():
                    if prefix and (n == prefix or n.startswith(prefix + ".")):
                        out[n] = role

    walk(result.network.layers, None)
    return out


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


def _changes(profile: Any, network: Any, in_var: float, tokens: int = 0
             ) -> tuple[list[float], list[float]]:
    """Per weighted layer, the change of the forward variance since the input and of the
    gradient variance since the output, as products of the changes between consecutive
    weighted layers. One-off changes that the architecture makes by design are left
    out, so that only what compounds with depth counts: a pooling's averaging (or, for
    max pooling, the pixels it drops), and, backward, the ratio ``n_out / n_in`` of a
    layer that is not square (a 10-class head after 512 units sends back 10/512 of the
    gradient under any fan-in scheme, He's included). Forward, the change starts afresh
    after a normalization and after a measured-only op (:func:`_resets`): what came
    before is removed by the one, and measured, not predicted, at the other."""
    z = [r.z_var for r in profile]
    g = [r.grad_var for r in profile]
    resets = _resets(network, tokens)
    pooled = [one_off for one_off, _, _ in resets]
    layers = list(network.dense_layers())
    fwd, f = [], 1.0
    for i in range(len(z)):
        _, restart, ref = resets[i]
        if restart:
            f = _ratio(z[i], ref)
        elif not pooled[i]:
            f *= _ratio(z[i], in_var if i == 0 else z[i - 1])
        fwd.append(f)
    bwd = _backward_changes(g, network.layers)
    return fwd, bwd


def _backward_changes(g: list[float], layers: tuple) -> list[float]:
    """Per weighted layer, the change of the gradient variance along its chain: the
    product of the ratios between consecutive weighted layers of one sequence (the main
    chain, or one residual branch), with a pooling's or a measured-only op's one-off
    change and a layer's change of width left out (:func:`_changes`). A residual branch
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


def _variance_checks(result: Any, x: torch.Tensor, branches: dict[str, str]
                     ) -> list[Finding]:
    from ..analytic import analyze
    if result.measured or result.tokens:  # the inputs the measured-only ops were anchored on
        in_mean, in_var = result.input_moments
    else:
        x64 = x.detach().double()
        in_mean, in_var = float(x64.mean()), float(x64.var(unbiased=False))
        if not in_var > 0:
            in_var = 1.0  # a constant example: the variances relative to unit inputs
    profile = analyze(result.network, input_mean=in_mean, input_var=in_var)
    fwd, bwd = _changes(profile, result.network, in_var, result.tokens)
    findings = []
    for rec, name, f_ratio, g_ratio in zip(profile, result.names, fwd, bwd):
        role = result.next_op.get(name, "other")
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
                   "scale." if harmless else "."),
                not harmless, "re-initialize the layers for the activations after them "
                "(varprop.recommended_initializer; varprop.torch.init_); "
                "varprop.torch.compare(model, x).table() shows the theory layer by layer"))
        findings += _float16(name, rec)
    return findings


def _float16(name: str, rec: Any) -> list[Finding]:
    out = []
    for label, mean, var in (("pre-activation", rec.z_mean, rec.z_var),
                             ("activation", rec.a_mean, rec.a_var),
                             ("gradient (unit output gradient)", 0.0, rec.grad_var)):
        reach = abs(mean) + SIGMAS * math.sqrt(var) if var >= 0 else math.nan
        rms = math.sqrt(mean * mean + var) if var >= 0 else math.nan
        if reach > FLOAT16_MAX:
            out.append(Finding(name, "float16_overflow", f"its {label} reaches {reach:.3g} at "
                               f"{SIGMAS:g} standard deviations, beyond float16's "
                               f"{FLOAT16_MAX:g}.", True,
                               "rescale the initialization, or train in bfloat16/float32"))
        elif rms < FLOAT16_TINY:
            where = ("below float16's smallest subnormal: it is zero"
                     if rms < FLOAT16_SUBNORMAL else "in float16's subnormal range, with "
                     "fewer significant bits")
            out.append(Finding(name, "float16_underflow", f"its {label} has typical magnitude "
                               f"{rms:.3g}, {where} (normal values start at "
                               f"{FLOAT16_TINY:.3g}).", True,
                               "use a loss scale (torch.amp.GradScaler) for gradients, or "
                               "rescale the initialization, or train in bfloat16"))
    return out
