"""The law of a weight tensor: read from its entries (a known scheme when one fits, else
an initializer with its sample moments), and the statistical band that decides "fits".

The band. The mean of squares ``m2 = sum(w^2) / n`` of ``n`` independent zero-mean
entries of variance ``v`` and kurtosis ``k = E[w^4] / v^2`` has mean ``v`` and variance
``(k - 1) v^2 / n``. Matching those two moments with a scaled chi-square (the
Welch-Satterthwaite approximation) gives ``dof * m2 / v ~ chi2(dof)``, ``dof = 2 n / (k -
1)``: exact for normal entries (``k = 3``, ``dof = n``), and ``2.5 n`` degrees of freedom
for uniform ones (``k = 9/5``). :func:`variance_band` is its two-sided ``1 - alpha``
interval: a tensor drawn with variance ``v`` falls outside it with probability
``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..initializers import (TRUNCATED_NORMAL_STD_FACTOR, Initializer, compute_fans)
from ..initializers import get as get_initializer

__all__ = ["ALPHA", "KURTOSIS", "Law", "variance_band", "read_weight", "read_bias",
           "for_layer", "scheme_law"]

#: Per-check miss rate of the band: a tensor drawn from a scheme fails that scheme's
#: band (or its support check) with this probability.
ALPHA = 1e-3
#: Kurtosis E[w^4] / E[w^2]^2 of each family: uniform 9/5, normal 3, and the normal cut
#: at +-2 standard deviations (Keras's and JAX's truncated normal).
KURTOSIS = {"uniform": 1.8, "normal": 3.0,
            "truncated_normal": float(stats.truncnorm(-2, 2).stats(moments="k")) + 3.0}
# (name, its parameters, family): the schemes a tensor is matched against, in this order,
# PyTorch's default first; fans as PyTorch reads them (groups ignored)
_CANDIDATES = (
    ("torch_default", {}, "uniform"),
    ("kaiming_uniform", {}, "uniform"),
    ("kaiming_normal", {}, "normal"),
    ("he_normal", {}, "truncated_normal"),
    ("xavier_uniform", {}, "uniform"),
    ("xavier_normal", {}, "normal"),
    ("glorot_normal", {}, "truncated_normal"),
    ("lecun_normal", {}, "truncated_normal"),
    ("lecun_uniform", {}, "uniform"),
    ("kaiming_normal", {"nonlinearity": "linear"}, "normal"),
    ("kaiming_normal", {"nonlinearity": "selu"}, "normal"),
    ("kaiming_uniform", {"nonlinearity": "selu"}, "uniform"),
)


@dataclass
class Law:
    """What a traced parameter is drawn from, and how that was decided.

    Attributes:
        layer: the module's name; ``param``: "weight" or "bias".
        initializer: the varprop initializer the network draws it with.
        source: "matched" (its entries fit a known scheme: moments, support and
            kurtosis), "moments" (no scheme fits: an initializer with its sample mean
            and variance), "constant", "identity" or "scheme" (``init=`` given).
        label: the scheme's name, or ``random_normal(mean, stddev)``.
        n, mean, var: the entries' count, sample mean and sample variance.
    """

    layer: str
    param: str
    initializer: Initializer
    source: str
    label: str
    n: int = 0
    mean: float = math.nan
    var: float = math.nan
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.source == "scheme":
            return f"{self.layer}.{self.param}: {self.label} (scheme)"
        return (f"{self.layer}.{self.param}: {self.label} ({self.source}; n={self.n}, "
                f"mean {self.mean:.3g}, var {self.var:.3g})")


def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def variance_band(var: float, n: int, kurtosis: float, alpha: float = ALPHA
                  ) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` interval of the mean of squares of ``n`` zero-mean
    entries of variance ``var`` and kurtosis ``kurtosis`` (module doc).

    Example:
        >>> lo, hi = variance_band(1.0, 10_000, 3.0)
        >>> round(lo, 3), round(hi, 3)
        (0.954, 1.047)
    """
    dof = 2.0 * n / max(kurtosis - 1.0, 1e-12)
    return (var * float(stats.chi2.ppf(alpha / 2.0, dof)) / dof,
            var * float(stats.chi2.ppf(1.0 - alpha / 2.0, dof)) / dof)


def _summary(w: np.ndarray) -> dict[str, float]:
    w = w.astype(np.float64, copy=False).ravel()
    m2 = float(np.mean(w * w))
    return {"n": w.size, "mean": float(w.mean()), "var": float(w.var()), "m2": m2,
            "max": float(np.max(np.abs(w))),
            "kurtosis": float(np.mean(w ** 4) / m2 ** 2) if m2 > 0 else math.nan}


def fits(s: dict[str, float], var: float, family: str, alpha: float = ALPHA) -> bool:
    """Whether the entries summarized by ``s`` fit a zero-mean ``family`` of variance
    ``var``: mean, mean of squares (:func:`variance_band`), support and kurtosis, each
    at miss rate ``alpha``."""
    n, z = s["n"], _z(alpha)
    if not var > 0 or abs(s["mean"]) > z * math.sqrt(var / n):
        return False
    lo, hi = variance_band(var, n, KURTOSIS[family], alpha)
    if not lo <= s["m2"] <= hi:
        return False
    sd = math.sqrt(var)
    cut = 2.0 * sd / TRUNCATED_NORMAL_STD_FACTOR  # the truncated normal's bound
    if family == "uniform":
        bound = math.sqrt(3.0) * sd
        # the largest |w| of n uniform entries is below t*bound with probability t^n
        if not bound * alpha ** (1.0 / n) <= s["max"] <= bound * (1 + 1e-6):
            return False
    elif family == "truncated_normal":
        if s["max"] > cut * (1 + 1e-6):
            return False
    elif (1.0 - 2.0 * stats.norm.sf(cut / sd)) ** n < alpha and s["max"] <= cut:
        return False  # a normal of this size would have passed the truncation bound
    # the sample kurtosis's spread is at most the normal's sqrt(24 / n) for these families
    return abs(s["kurtosis"] - KURTOSIS[family]) <= z * math.sqrt(24.0 / n)


def _constant(value: float) -> tuple[Initializer, str]:
    if value == 0.0:
        return get_initializer("zeros"), "zeros"
    if value == 1.0:
        return get_initializer("ones"), "ones"
    return get_initializer("constant", value=value), f"constant({value:.6g})"


def _from_moments(s: dict[str, float]) -> tuple[Initializer, str, list[str]]:
    """random_normal with the sample moments; a mean within sampling noise of 0 is 0
    (a non-zero mean would put an n m^2 term into every layer's variance)."""
    notes = []
    mean = s["mean"]
    if abs(mean) <= _z(ALPHA) * math.sqrt(s["var"] / s["n"]):
        mean = 0.0
        sd = math.sqrt(s["m2"])
    else:
        sd = math.sqrt(s["var"])
        notes.append(f"non-zero mean {mean:.3g} (beyond sampling noise): kept")
    init = get_initializer("random_normal", mean=mean, stddev=sd)
    return init, f"random_normal(mean={mean:.4g}, stddev={sd:.4g})", notes


def read_weight(layer: str, w: np.ndarray, groups: int = 1) -> Law:
    """The law of a PyTorch-layout weight ``(out, in // groups, *kernel)`` (module doc):
    a constant, ``gain * eye`` (2-D), the first scheme of the candidates that fits (at
    PyTorch's own fans, which ignore ``groups``: that is how PyTorch drew it), or
    ``random_normal`` with the sample moments. The initializer is in PyTorch's layout
    (:func:`for_layer` adapts it)."""
    s = _summary(w)
    base = {"layer": layer, "param": "weight", "n": s["n"], "mean": s["mean"], "var": s["var"]}
    if s["var"] == 0.0:
        init, label = _constant(float(w.ravel()[0]))
        return Law(initializer=init, source="constant", label=label, **base)
    if w.ndim == 2 and w[0, 0] > 0 and np.array_equal(w, w[0, 0] * np.eye(*w.shape)):
        gain = float(w[0, 0])
        return Law(initializer=get_initializer("identity", gain=gain), source="identity",
                   label=f"identity(gain={gain:.6g})", **base)
    for name, params, family in _CANDIDATES:
        init = get_initializer(name, layout="torch", **params)
        if fits(s, init.moments(w.shape).var, family):
            label = name + "".join(f"({k}={v!r})" for k, v in params.items())
            notes = [] if groups == 1 else [f"fans as PyTorch computes them (groups={groups} "
                                            "ignored, pytorch issue 23854)"]
            return Law(initializer=init, source="matched", label=label, notes=notes, **base)
    init, label, notes = _from_moments(s)
    return Law(initializer=init, source="moments", label=label, notes=notes, **base)


def read_bias(layer: str, b: np.ndarray, fan_in: int) -> Law:
    """The law of a bias vector: a constant, PyTorch's default
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` when it fits, else ``random_normal`` with
    its sample moments."""
    s = _summary(b)
    base = {"layer": layer, "param": "bias", "n": s["n"], "mean": s["mean"], "var": s["var"]}
    if s["var"] == 0.0:
        init, label = _constant(float(b.ravel()[0]))
        return Law(initializer=init, source="constant", label=label, **base)
    if fits(s, 1.0 / (3.0 * fan_in), "uniform"):
        init = get_initializer("torch_default_bias", fan_in=fan_in)
        return Law(initializer=init, source="matched",
                   label=f"torch_default_bias(fan_in={fan_in})", **base)
    init, label, notes = _from_moments(s)
    return Law(initializer=init, source="moments", label=label, notes=notes, **base)


def for_layer(init: Initializer, kind: str, groups: int = 1, transposed: bool = False
              ) -> Initializer:
    """``init`` with the fan options of a layer's weight: ``kind="dense"`` for varprop's
    ``(n_in, n_out)`` dense layout (PyTorch's Linear weight is its transpose: same
    fans), ``kind="torch"`` for a PyTorch-layout weight ``(out, in // groups, *k)`` (a
    Linear's ``(out, in)`` too) with the layer's ``groups`` and ``transposed``. Schemes
    whose draw ignores the fans are returned as they are."""
    if not init.uses_fan_options:
        return init
    config = init.get_config()
    if kind == "dense":
        config.update(layout="keras", groups=1, transposed=False)
    else:
        config.update(layout="torch", groups=groups, transposed=transposed)
    return type(init).from_config(config)


def scheme_law(layer: str, param: str, scheme: Any, kind: str, groups: int = 1) -> Law:
    """A law given by name (``init="he_normal"``): the scheme at the layer's true fans."""
    init = get_initializer(scheme)
    if param == "weight":
        init = for_layer(init, kind, groups)  # "dense" or "torch" (a convolution)
    return Law(layer=layer, param=param, initializer=init, source="scheme",
               label=getattr(init, "name", repr(init)))


def torch_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """The fans PyTorch's ``_calculate_fan_in_and_fan_out`` reads off a weight: dims 1
    and 0 times the receptive field, groups and transposition ignored."""
    return compute_fans(shape, layout="torch")
