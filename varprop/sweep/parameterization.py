"""Parameterizations of an MLP: per-layer init variances, weight multipliers and learning
rates, as one table that the analyzer, the measurement and the trainer all read.

An MLP of ``L`` dense layers has three kinds of layer (Yang et al. 2022, Tensor Programs
V, arXiv 2203.03466, Table 3): the *input* layer (fan_in = the data's dimension, fixed),
the *hidden* layers (fan_in = fan_out = width) and the *output* (readout) layer
(fan_out = the class count, fixed). Each rule below is a power of the width ratios
``r_in = fan_in / base_fan_in`` and ``r_out = fan_out / base_fan_out``, where the base
fans are those of the same layer in the network of width ``base_width``: every
parameterization coincides with standard parameterization at the base width (the
``mup`` package's convention: ``set_base_shapes``), and the exponents are those of the
paper's tables. For a layer whose initializer gives ``Var[W] = sigma^2 / fan_in``:

* ``init var``: the weights are drawn with variance ``sigma^2 / fan_in * r_in**a``;
* ``multiplier``: layer l computes ``z = m * (x @ W) + b`` with ``m = r_in**c``
  (:class:`varprop.training.MLP`'s ``multipliers``); the analyzer sees the effective
  weights ``m W`` (variance ``m^2 sigma^2 r_in**a / fan_in``);
* ``lr``: the optimizer's learning rate times ``r_in**e_in * r_out**e_out`` for the weight
  and for the bias of that layer (``lr_scales`` of :mod:`varprop.training.optimizers`),
  one set of exponents for SGD (and momentum) and one for Adam;
* ``eps`` (Adam only): Adam's epsilon times ``r_in**e_in * r_out**e_out`` for the weight
  and for the bias (``eps_scales`` of :class:`varprop.training.Adam`): muP scales it like
  the gradient of that parameter, so that ``m / (sqrt(v) + eps)`` does not change with
  width (docs/sweep.md section 2).

Biases are initialized to zero in every parameterization. Sources and the derivation of
each row: docs/sweep.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._validate import one_of, positive_int

__all__ = ["PARAMETERIZATIONS", "LayerRule", "Exponents", "layer_kind", "layer_rules",
           "optimizer_family", "expected_exponent", "TABLE", "DEPTH_TABLE", "DepthRule",
           "depth_rule", "expected_depth_exponent", "DEPTH_GROUPS", "FIRST_ORDER_ONLY",
           "first_order_only"]


@dataclass(frozen=True)
class Exponents:
    """The exponents of one layer kind: ``init var ~ r_in**init``, ``multiplier ~
    r_in**mult``, learning rates ``~ r_in**lr_in * r_out**lr_out`` per optimizer family
    (weights; the bias's exponents follow in ``bias_sgd``/``bias_adam`` as (in, out)),
    and Adam's epsilon ``~ r_in**in * r_out**out`` (``eps`` for the weight, ``bias_eps``
    for the bias)."""

    init: float = 0.0
    mult: float = 0.0
    sgd: tuple[float, float] = (0.0, 0.0)
    adam: tuple[float, float] = (0.0, 0.0)
    bias_sgd: tuple[float, float] = (0.0, 0.0)
    bias_adam: tuple[float, float] = (0.0, 0.0)
    eps: tuple[float, float] = (0.0, 0.0)
    bias_eps: tuple[float, float] = (0.0, 0.0)


_SAME = Exponents()

#: The table: parameterization -> layer kind -> exponents (docs/sweep.md, "The rules").
TABLE: dict[str, dict[str, Exponents]] = {
    # standard parameterization: the initializer as given, one learning rate everywhere
    "sp": {"input": _SAME, "hidden": _SAME, "output": _SAME},
    # NTK parameterization (Jacot et al. 2018): W ~ N(0, sigma^2 / base_fan_in) times the
    # multiplier 1/sqrt(r_in), one learning rate for the raw weights
    "ntk": {kind: Exponents(init=1.0, mult=-0.5) for kind in ("input", "hidden", "output")},
    # muP, Tensor Programs V Table 3 (the form without multipliers): input weights and all
    # biases SGD lr ~ fan_out, Adam lr ~ 1; hidden SGD lr ~ 1, Adam lr ~ 1/fan_in; output
    # init var ~ 1/fan_in^2, SGD and Adam lr ~ 1/fan_in. Adam's eps scales like each
    # parameter's gradient (docs/sweep.md section 2): the backward signal of the input and
    # hidden layers is ~ 1/width (the readout's weights are ~ 1/fan_in), so their weights'
    # and biases' gradients are ~ 1/fan_out (input, biases) = 1/fan_in (hidden weights);
    # the readout's are ~ 1. Check: Adam lr / eps equals the SGD lr in every row (an
    # eps-dominated Adam step is an SGD step of lr / eps, which must then be muP's SGD).
    "mup": {
        "input": Exponents(sgd=(0.0, 1.0), bias_sgd=(0.0, 1.0), eps=(0.0, -1.0),
                           bias_eps=(0.0, -1.0)),
        "hidden": Exponents(adam=(-1.0, 0.0), bias_sgd=(0.0, 1.0), eps=(-1.0, 0.0),
                            bias_eps=(0.0, -1.0)),
        "output": Exponents(init=-1.0, sgd=(-1.0, 0.0), adam=(-1.0, 0.0)),
    },
}
# Depth-muP (Yang et al. 2023, Tensor Programs VI, arXiv 2310.02244; Bordelon et al.
# 2023, arXiv 2309.16620): muP in width, plus the depth rules of DEPTH_TABLE on the
# residual blocks of arch "residual". A plain MLP has no residual branch, so there it is
# muP itself (docs/sweep.md section 7).
TABLE["depth_mup"] = TABLE["mup"]

#: Depth rules of a residual MLP with L blocks (docs/sweep.md section 7): parameterization
#: -> (exponent of L in the branch multiplier, in the blocks' SGD learning rate, in their
#: Adam learning rate, in their Adam epsilon), for both the weights and the biases of
#: every block. Depth-muP: multiplier 1/sqrt(L); SGD lr L^0; Adam lr L^-1/2 (each block's
#: update moves the stream by a * lr for Adam, a^2 * lr for SGD, and L blocks add up
#: coherently: L a lr = 1 needs lr ~ L^-1/2 under Adam, L a^2 lr = 1 holds with lr ~ 1
#: under SGD); Adam eps L^-1/2, like the blocks' gradients (which carry the multiplier a).
#: These are the alpha = 1/2 column of Table 1 of Dey et al. 2025 (CompleteP, arXiv
#: 2505.01618: multiplier L^-alpha, Adam lr L^(alpha-1), eps L^-alpha), which names
#: alpha = 1/2 the depth-muP of Tensor Programs VI. The others have no depth rule: a
#: standard residual network, multiplier 1.
DEPTH_TABLE: dict[str, tuple[float, float, float, float]] = {
    "depth_mup": (-0.5, 0.0, -0.5, -0.5)}

#: Names a cell accepts.
PARAMETERIZATIONS: tuple[str, ...] = tuple(TABLE)

#: Leading-order exponent of each layer's *update* ``|z_t - z_0|`` with width after the
#: first steps (to first order in the learning rate), and of ``|z_0|`` at initialization,
#: per (parameterization, optimizer family, layer kind): the abc-parameterization analysis
#: of Tensor Programs IV/V (docs/sweep.md, "What to expect"). These name the expected
#: exceptions in a verdict. The readout's Adam update under SP and NTK carries the
#: term ``W_out dx`` where ``dx`` is aligned with the readout's few (fixed) columns:
#: ``width^(1/2)`` above the readout's own ``dW x`` (measured: SP 1.48, NTK 0.97 over
#: widths 1024..4096, tests/test_sweep_exponents.py).
_EXPECTED_UPDATE: dict[tuple[str, str], dict[str, float]] = {
    ("sp", "adam"): {"input": 0.0, "hidden": 1.0, "output": 1.5},
    ("sp", "sgd"): {"input": -0.5, "hidden": 0.5, "output": 1.0},
    ("ntk", "adam"): {"input": 0.0, "hidden": 0.5, "output": 1.0},
    ("ntk", "sgd"): {"input": -0.5, "hidden": -0.5, "output": 0.0},
    ("mup", "adam"): {"input": 0.0, "hidden": 0.0, "output": 0.0},
    ("mup", "sgd"): {"input": 0.0, "hidden": 0.0, "output": 0.0},
}
#: (parameterization, optimizer family) pairs whose updates grow with width at a fixed
#: learning rate: there the exponents above are those of the first order in lr, and the
#: higher orders (lr^2 width^(more), ...) take over once lr * width^q is no longer
#: small (docs/sweep.md section 3); the verdicts' notes say so.
FIRST_ORDER_ONLY: frozenset[tuple[str, str]] = frozenset(
    {("sp", "adam"), ("sp", "sgd"), ("ntk", "adam")})

_EXPECTED_INIT: dict[str, dict[str, float]] = {
    "sp": {"input": 0.0, "hidden": 0.0, "output": 0.0},
    "ntk": {"input": 0.0, "hidden": 0.0, "output": 0.0},
    # output init variance ~ 1/fan_in^2: the logits' RMS ~ width^-1/2
    "mup": {"input": 0.0, "hidden": 0.0, "output": -0.5},
}


@dataclass(frozen=True)
class LayerRule:
    """What one dense layer of a given network gets: ``init_factor`` multiplies the
    initializer's variance, ``multiplier`` its output ``x @ W``, ``lr_weight`` and
    ``lr_bias`` the optimizer's learning rate, ``eps_weight`` and ``eps_bias`` Adam's
    epsilon (1 for SGD and momentum)."""

    kind: str
    init_factor: float
    multiplier: float
    lr_weight: float
    lr_bias: float
    eps_weight: float = 1.0
    eps_bias: float = 1.0

    @property
    def effective_factor(self) -> float:
        """The factor on the variance of the effective weights ``m W`` (what the
        analyzer's mean-field recursion needs)."""
        return self.init_factor * self.multiplier * self.multiplier


def optimizer_family(optimizer: str) -> str:
    """``"adam"`` for Adam, ``"sgd"`` for SGD, momentum and Nesterov (the learning-rate
    exponents of Tensor Programs V are those of SGD for any momentum)."""
    name = one_of("optimizer", optimizer, ("sgd", "momentum", "nesterov", "adam"))
    return "adam" if name == "adam" else "sgd"


def layer_kind(index: int, n_layers: int) -> str:
    """``"input"`` for the first dense layer, ``"output"`` for the last, else
    ``"hidden"`` (a one-layer network's only layer is its output layer)."""
    if index == n_layers - 1:
        return "output"
    return "input" if index == 0 else "hidden"


def layer_rules(parameterization: str, widths: "list[int]", base_width: int,
                optimizer: str) -> list[LayerRule]:
    """The rule of each dense layer of the MLP ``widths`` (input dim, hidden widths,
    classes) under ``parameterization``, relative to the same MLP at ``base_width``.

    Example:
        >>> rules = layer_rules("mup", [32, 256, 256, 10], 64, "adam")
        >>> [r.lr_weight for r in rules]        # hidden and output Adam lr ~ 1/fan_in
        [1.0, 0.25, 0.25]
        >>> rules[-1].init_factor                # output init var ~ 1/fan_in^2
        0.25
        >>> [(r.eps_weight, r.eps_bias) for r in rules]   # Adam eps ~ the gradient
        [(0.25, 0.25), (0.25, 0.25), (1.0, 1.0)]
    """
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    family = optimizer_family(optimizer)
    base_width = positive_int("base_width", base_width)
    n = len(widths) - 1
    if n < 1:
        raise ValueError(f"widths needs the input dim and at least one layer, got {widths}")
    rules = []
    for l in range(n):
        kind = layer_kind(l, n)
        e = TABLE[name][kind]
        # the same layer at the base width: hidden fans are base_width, fixed ends stay
        base_in = widths[0] if l == 0 else base_width
        base_out = widths[-1] if l == n - 1 else base_width
        r_in, r_out = widths[l] / base_in, widths[l + 1] / base_out
        lw = e.adam if family == "adam" else e.sgd
        lb = e.bias_adam if family == "adam" else e.bias_sgd
        ew, eb = (e.eps, e.bias_eps) if family == "adam" else ((0.0, 0.0), (0.0, 0.0))
        rules.append(LayerRule(
            kind=kind,
            init_factor=r_in ** e.init,
            multiplier=r_in ** e.mult,
            lr_weight=r_in ** lw[0] * r_out ** lw[1],
            lr_bias=r_in ** lb[0] * r_out ** lb[1],
            eps_weight=r_in ** ew[0] * r_out ** ew[1],
            eps_bias=r_in ** eb[0] * r_out ** eb[1],
        ))
    return rules


def expected_exponent(parameterization: str, optimizer: str, kind: str,
                      quantity: str) -> float:
    """The leading-order width exponent expected for a layer of ``kind``: ``quantity``
    ``"z"`` at initialization (step 0) or ``"dz"`` (the update after training steps).
    In width, depth-muP is muP (its depth rules do not depend on width)."""
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    name = "mup" if name == "depth_mup" else name
    kind = one_of("kind", kind, ("input", "hidden", "output"))
    quantity = one_of("quantity", quantity, ("z", "dz"))
    if quantity == "z":
        return _EXPECTED_INIT[name][kind]
    return _EXPECTED_UPDATE[(name, optimizer_family(optimizer))][kind]


def first_order_only(parameterization: str, optimizer: str) -> bool:
    """True where :func:`expected_exponent`'s update exponents are those of the first order
    in the learning rate only (:data:`FIRST_ORDER_ONLY`): the parameterization's updates
    grow with width at a fixed lr, so higher orders take over at large widths or lr."""
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    name = "mup" if name == "depth_mup" else name
    return (name, optimizer_family(optimizer)) in FIRST_ORDER_ONLY


@dataclass(frozen=True)
class DepthRule:
    """What the blocks of a residual MLP with ``n_blocks`` blocks get: the branch
    multiplier ``a`` of ``h + a * branch``, ``block_lr``, the factor on the learning
    rates of every block's weight and bias, and ``block_eps``, the factor on their Adam
    epsilon (1 for SGD and momentum), on top of the width rules."""

    branch_multiplier: float
    block_lr: float
    block_eps: float = 1.0


def depth_rule(parameterization: str, n_blocks: int, optimizer: str) -> DepthRule:
    """The depth rule of :data:`DEPTH_TABLE` for ``n_blocks`` residual blocks.

    Example:
        >>> depth_rule("depth_mup", 16, "adam")
        DepthRule(branch_multiplier=0.25, block_lr=0.25, block_eps=0.25)
        >>> depth_rule("depth_mup", 16, "sgd").block_lr, depth_rule("sp", 16, "adam")
        (1.0, DepthRule(branch_multiplier=1.0, block_lr=1.0, block_eps=1.0))
    """
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    family = optimizer_family(optimizer)
    n_blocks = positive_int("n_blocks", n_blocks)
    mult, sgd, adam, eps = DEPTH_TABLE.get(name, (0.0, 0.0, 0.0, 0.0))
    return DepthRule(branch_multiplier=float(n_blocks) ** mult,
                     block_lr=float(n_blocks) ** (adam if family == "adam" else sgd),
                     block_eps=float(n_blocks) ** eps if family == "adam" else 1.0)


#: The layer groups of a depth series (docs/sweep.md section 7): the input layer (the
#: stream's start h_0), the stream after the last block (h_L) and the readout (logits).
DEPTH_GROUPS: tuple[str, ...] = ("input", "stream", "output")


def expected_depth_exponent(parameterization: str, optimizer: str, group: str,
                            quantity: str) -> "float | None":
    """The depth exponent expected for a layer ``group`` of :data:`DEPTH_GROUPS` of a
    residual MLP: 0 (flat in depth) or None (grows faster than any power of L).

    Depth-muP keeps every group flat at init and after the first steps (Tensor Programs
    VI; Bordelon et al. 2023). With multiplier 1 each block adds a branch of the
    stream's own size (``Var[h_l] = (1 + sigma^2/2) Var[h_{l-1}]`` for ReLU with
    ``Var[W] = sigma^2/fan_in``): the stream, the logits and their updates grow
    exponentially in L; the input layer's output is flat at init, and its update is
    flat under Adam (normalized steps) but grows under SGD (its gradient crosses L
    blocks)."""
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    family = optimizer_family(optimizer)
    group = one_of("group", group, DEPTH_GROUPS)
    quantity = one_of("quantity", quantity, ("z", "dz"))
    if name in DEPTH_TABLE or (group == "input" and (quantity == "z" or family == "adam")):
        return 0.0
    return None


def describe_rules(parameterization: str, optimizer: str) -> list[dict[str, Any]]:
    """The table's row for the report: per layer kind, the exponents as text."""
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    family = optimizer_family(optimizer)
    out = []
    for kind, e in TABLE[name].items():
        lw = e.adam if family == "adam" else e.sgd
        row = {"kind": kind, "init_var": _power("fan_in", e.init, "sigma^2/fan_in"),
               "multiplier": _power("fan_in", e.mult, "1"), "lr": _lr_text(lw)}
        if family == "adam":
            row["eps"] = _lr_text(e.eps).replace("lr", "eps", 1)
        out.append(row)
    return out


def _power(var: str, e: float, unit: str) -> str:
    if e == 0:
        return unit
    if math.isclose(e, round(e)):
        return f"{unit} * {var}^{int(round(e))}" if unit != "1" else f"{var}^{int(round(e))}"
    return f"{unit} * {var}^{e:g}" if unit != "1" else f"{var}^{e:g}"


def _lr_text(e: tuple[float, float]) -> str:
    parts = [f"fan_in^{e[0]:g}" if e[0] else "", f"fan_out^{e[1]:g}" if e[1] else ""]
    parts = [p for p in parts if p]
    return "lr * " + " * ".join(parts) if parts else "lr"
