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

from typing import Any

import numpy as np
import torch
from torch import nn

from ..adapters.audit import (DECADES, FLOAT16_MAX, FLOAT16_TINY, SIGMAS, Finding,
                              constant_finding, identical_finding, variance_findings)
from ..initializers import recommended_initializer
from . import _law
from ._ops import next_ops, symbolic_graph
from .init import true_fans, weighted_modules

__all__ = ["Finding", "audit", "FLOAT16_MAX", "FLOAT16_TINY", "SIGMAS", "DECADES"]


def audit(model: nn.Module, example_input: "torch.Tensor | None" = None, *,
          alpha: float = _law.ALPHA, input_kind: str = "auto") -> list[Finding]:
    """Audit ``model``'s initialization (module doc; docs/torch.md).

    Args:
        model: an ``nn.Module``; its Linear and convolution layers are checked.
        example_input: a batch for :func:`varprop.torch.trace`; with it the predicted
            variances of every layer are checked too (its mean and variance are the
            inputs'). A model that cannot be traced gets a ``not_analyzed`` finding.
        alpha: the miss rate of each statistical check (a layer drawn from the pattern
            escapes it with this probability).
        input_kind: what a rank-3 ``example_input`` is, as for
            :func:`varprop.torch.trace` (an ambiguous one is a ``not_analyzed`` finding
            that asks for it; a bad value raises).

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
    from ._input_kind import check_input_kind
    input_kind = check_input_kind(input_kind, "audit")  # a typo raises, not a finding
    findings: list[Finding] = []
    result = None
    if example_input is not None:
        from .trace import trace
        try:
            result = trace(model, example_input, input_kind=input_kind)
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
    found = identical_finding(name, id(m) if param else id(m.weight), w, seen,
                              "copy.deepcopy copies the weights; pytorch issue 72253",
                              f"re-initialize the copy: {name}.reset_parameters(), or "
                              "varprop.torch.init_(model, scheme) after building the model")
    return [] if found is None else [found]


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
        return [constant_finding(name, w, _fix_for(role))]  # type: ignore[list-item]
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


def _variance_checks(result: Any, x: torch.Tensor, branches: dict[str, str]
                     ) -> list[Finding]:
    if result.measured or result.tokens:  # the inputs the measured-only ops were anchored on
        in_mean, in_var = result.input_moments
    else:
        x64 = x.detach().double()
        in_mean, in_var = float(x64.mean()), float(x64.var(unbiased=False))
        if not in_var > 0:
            in_var = 1.0  # a constant example: the variances relative to unit inputs
    return variance_findings(
        result.network, result.names, result.next_op, in_mean, in_var,
        tokens=result.tokens, branches=branches,
        fix="re-initialize the layers for the activations after them "
            "(varprop.recommended_initializer; varprop.torch.init_); "
            "varprop.torch.compare(model, x).table() shows the theory layer by layer",
        overflow_fix="rescale the initialization, or train in bfloat16/float32",
        underflow_fix="use a loss scale (torch.amp.GradScaler) for gradients, or "
                      "rescale the initialization, or train in bfloat16")
