"""Analytic and measured profiles side by side, and a verdict a person understands.

:func:`verdict` reads one profile (analytic or measured) and says whether the network
preserves the signal and the gradient, lets them vanish or explode (with the factor per
layer), or collapses to symmetric units. :func:`compare` runs both halves of the analyzer
on one network and lines them up per layer with relative errors, z-scores and the
log-space test of :mod:`varprop.agreement`, which decides whether theory and measurement
disagree (docs/comparison.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .agreement import ALPHA, Agreement, agreement
from .analytic import analyze
from .network import Network
from .profile import STAT_FIELDS, Profile

__all__ = ["Verdict", "verdict", "Comparison", "compare", "PRESERVE_DECADES"]

#: A network "preserves" when forward and gradient variance change by less than this many
#: decades (a factor of 10) over its whole depth.
PRESERVE_DECADES = 1.0


@dataclass(frozen=True)
class Verdict:
    """What a profile says about trainability at initialization.

    Attributes:
        kind: "preserves", "vanishes", "explodes" or "symmetric".
        forward_factor: geometric-mean change of the pre-activation variance per layer.
        backward_factor: geometric-mean change of the gradient variance per layer, going
            from the output back to the input.
        forward_total, backward_total: the same over the whole depth.
        message: one sentence for a person.
    """

    kind: str
    forward_factor: float
    backward_factor: float
    forward_total: float
    backward_total: float
    message: str


def _per_layer(total: float, steps: int) -> float:
    if steps <= 0 or not math.isfinite(total) or total <= 0:
        return total if steps > 0 else 1.0
    return total ** (1.0 / steps)


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return math.inf if a > 0 else (1.0 if a == 0 else math.nan)
    if math.isinf(a) and math.isinf(b):  # both overflowed: the change is lost
        return math.nan
    return a / b


def _usable(v: float) -> bool:
    return 0.0 < v < math.inf


def _change(values: list[float]) -> tuple[float, float, int | None]:
    """(total, per-layer factor, first layer out of range) of variances in the order of
    travel. The factor is ``total^(1/steps)``; where the variance overflowed to inf or
    underflowed to 0 at an end (the total is then inf, 0 or undefined), it is the
    geometric mean of the per-layer change over the longest stretch of layers that are
    still finite and positive (inf or 0 when no two neighbours are), and the index of
    the first layer outside that range is returned too (docs/theory.md, section 10)."""
    steps = len(values) - 1
    if steps <= 0:
        return 1.0, 1.0, None
    total = _ratio(values[-1], values[0])
    if 0.0 < total < math.inf or any(math.isnan(v) for v in values):
        return total, _per_layer(total, steps), None
    if all(_usable(v) for v in values):  # only the ratio itself left float64's range
        return total, math.exp((math.log(values[-1]) - math.log(values[0])) / steps), None
    best = (0, 0)  # the longest run values[i..j] of finite, positive variances
    i = None
    for j, v in enumerate(values + [math.nan]):
        if _usable(v):
            i = j if i is None else i
        elif i is not None:
            if j - 1 - i > best[1] - best[0]:
                best = (i, j - 1)
            i = None
    first = next(j for j, v in enumerate(values) if not _usable(v))
    i, j = best
    if j > i:
        factor = math.exp((math.log(values[j]) - math.log(values[i])) / (j - i))
    else:  # no two finite neighbours: the direction is all that is known
        factor = math.inf if values[first] == math.inf else 0.0
    if math.isnan(total):  # inf at both ends: it overflowed, whatever came between
        total = math.inf if values[0] == math.inf else 0.0
    return total, factor, first


def _axis(profile: Profile) -> tuple[str, str]:
    """How a profile's rows are named: ("layer", "dense layer"), or ("step", "time
    step") for a recurrent network's profile (one row per time step)."""
    unit = profile.row_name
    return unit, ("time step" if unit == "step" else "dense layer")


def verdict(profile: Profile) -> Verdict:
    """Classify a profile: symmetric units first, else the larger of the forward and
    backward changes over depth decides between preserves, vanishes and explodes.

    A variance that overflowed float64 (inf) explodes and one that underflowed to 0
    vanishes; the factor per layer is then the geometric mean over the layers that are
    still finite (:func:`_change`), so it is finite wherever two neighbouring layers are.
    """
    if len(profile) == 0:
        raise ValueError("verdict: the profile has no layers")
    z_var = profile.column("z_var")
    grad = profile.column("grad_var")
    fwd, ff, f_out = _change(list(z_var))
    bwd, bf, b_out = _change(list(grad)[::-1])
    if b_out is not None:
        b_out = len(profile) - 1 - b_out  # back to the profile's layer index
    depth = len(profile)
    unit, where = _axis(profile)
    if profile.symmetric:
        first = next(r.index for r in profile if r.symmetric)
        return Verdict("symmetric", ff, bf, fwd, bwd,
                       f"collapses to symmetric units: from {where} {first} on every unit "
                       "computes the same function (zeros/constant weights), so gradients "
                       "cannot tell the units apart and training cannot break the symmetry")
    logs = [math.log10(v) if v > 0 and math.isfinite(v) else (math.inf if v == math.inf else -math.inf)
            for v in (fwd, bwd)]
    if any(math.isnan(v) for v in (fwd, bwd)):
        return Verdict("vanishes", ff, bf, fwd, bwd,
                       "the variance reaches zero or is undefined (NaN) through the network")
    worst = max(range(2), key=lambda i: abs(logs[i]))
    what = ("forward signal", "gradient")[worst]
    factor = (ff, bf)[worst]
    total = (fwd, bwd)[worst]
    if abs(logs[worst]) < PRESERVE_DECADES:
        return Verdict("preserves", ff, bf, fwd, bwd,
                       f"preserves: forward variance x{ff:.3g} and gradient variance x{bf:.3g} "
                       f"per {unit} ({fwd:.3g} and {bwd:.3g} over {depth} {unit}s)")
    kind = "explodes" if logs[worst] > 0 else "vanishes"
    out = (f_out, b_out)[worst]
    if out is None:
        change = f"variance x{factor:.3g} per {unit}, {total:.3g} over {depth} {unit}s"
    else:  # the variance left float64's range: say where
        values = (z_var, grad)[worst]
        limit = "overflows float64" if values[out] == math.inf else "underflows to 0"
        change = (f"variance x{factor:.3g} per {unit} until it {limit} at {where} {out} "
                  f"of {depth}" if 0 < factor < math.inf else
                  f"the variance {limit} at {where} {out} of {depth}, with no two "
                  f"neighbouring {unit}s in range to give a factor")
    return Verdict(kind, ff, bf, fwd, bwd,
                   f"the {what} {kind}: {change} "
                   f"(forward x{ff:.3g}, gradient x{bf:.3g} per {unit})")


@dataclass
class Comparison:
    """Analytic and empirical profiles of one network, aligned layer by layer.

    ``rows`` holds one dict per (layer, field): analytic, measured, ci (95% half-width),
    rel_error = (measured - analytic) / |analytic| and z_score = (measured - analytic)
    / standard error (the half-width over 1.96; NaN with one seed): linear-space
    descriptions. The decision is the log-space test in ``agreement``
    (:class:`~varprop.agreement.Agreement`); its per-layer results are also in the rows of
    the tested fields (``z_var``, ``grad_var``): log_ratio (bias-corrected log of measured
    over theory), log_se, log_z, p_value and test ("agree", "disagree", "untestable";
    None for the other fields).
    """

    network: str
    analytic: Profile
    empirical: Profile
    rows: list[dict[str, Any]] = field(default_factory=list)
    agreement: Agreement | None = None

    @property
    def disagrees(self) -> bool:
        """The log-space test rejects the theory somewhere (docs/comparison.md)."""
        return self.agreement is not None and self.agreement.disagrees

    @property
    def agree(self) -> bool:
        """Not :attr:`disagrees` (an untestable comparison does not disagree)."""
        return not self.disagrees

    @property
    def analytic_verdict(self) -> Verdict:
        return verdict(self.analytic)

    @property
    def empirical_verdict(self) -> Verdict:
        return verdict(self.empirical)

    def rows_for(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["field"] == name]

    def max_abs_z(self, name: str) -> float:
        zs = [abs(r["z_score"]) for r in self.rows_for(name) if math.isfinite(r["z_score"])]
        return max(zs) if zs else math.nan

    def table(self, fields: tuple[str, ...] = ("z_var", "a_var", "grad_var")) -> str:
        """A plain-text table: per layer, analytic and measured values of each field."""
        head = f"{_axis(self.analytic)[0]:>5}" + "".join(f" {f + ' theory':>14} {f + ' measured':>16}" for f in fields)
        lines = [self.network, head]
        for rec_a, rec_e in zip(self.analytic, self.empirical):
            cells = []
            for f in fields:
                a, e = getattr(rec_a, f), getattr(rec_e, f)
                ci = getattr(rec_e, f + "_ci")
                measured = f"{e:.4g}" + (f"±{ci:.2g}" if math.isfinite(ci) else "")
                cells.append(f" {a:>14.4g} {measured:>16}")
            lines.append(f"{rec_a.index:>5}" + "".join(cells))
        lines.append(f"theory:   {self.analytic_verdict.message}")
        lines.append(f"measured: {self.empirical_verdict.message}")
        if self.agreement is not None:
            lines.append(f"test:     {self.agreement.summary()}")
        return "\n".join(lines)


def compare(
    net: Network,
    *,
    batch: int = 1024,
    seeds: int = 5,
    input_mean: float = 0.0,
    input_var: float = 1.0,
    input_correlation: float | None = None,
    n_threads: int | None = None,
    analytic: Profile | None = None,
    empirical: Profile | None = None,
    progress: Any = None,
    alpha: float = ALPHA,
) -> Comparison:
    """Run the analytic and the empirical analyzer on ``net`` and line them up.

    Args:
        net: the network.
        batch, seeds, n_threads, progress: passed to :func:`varprop.measure`.
        input_mean, input_var, input_correlation: passed to both halves.
        analytic, empirical: precomputed profiles to reuse instead of running them.
        alpha: false-alarm rate of the log-space test (:func:`varprop.agreement.agreement`)
            for this network.

    Example:
        >>> cmp = compare(mlp([256] * 11, "relu", "he_normal"), batch=256, seeds=3)
        >>> cmp.analytic_verdict.kind
        'preserves'
    """
    if analytic is None:
        # BatchNorm's gradient depends on the batch it normalizes over (docs/theory.md)
        analytic = analyze(net, input_mean=input_mean, input_var=input_var,
                           input_correlation=input_correlation, batch=batch)
    if empirical is None:
        from .empirical import measure

        empirical = measure(net, batch=batch, seeds=seeds, input_mean=input_mean,
                            input_var=input_var, input_correlation=input_correlation,
                            n_threads=n_threads, progress=progress)
    if len(analytic) != len(empirical):
        raise ValueError(f"compare: the profiles have {len(analytic)} and {len(empirical)} layers")
    rows = []
    for rec_a, rec_e in zip(analytic, empirical):
        for name in STAT_FIELDS:
            a, e = getattr(rec_a, name), getattr(rec_e, name)
            ci = getattr(rec_e, name + "_ci")
            se = ci / 1.959963984540054 if math.isfinite(ci) else math.nan
            rel = (e - a) / abs(a) if a not in (0.0,) and math.isfinite(a) else math.nan
            z = (e - a) / se if se and math.isfinite(se) and se > 0 else math.nan
            rows.append({"layer": rec_a.index, "field": name, "analytic": a, "measured": e,
                         "ci": ci, "rel_error": rel, "z_score": z, "log_ratio": math.nan,
                         "log_se": math.nan, "log_z": math.nan, "p_value": math.nan,
                         "test": None})
    test = agreement(analytic, empirical, alpha=alpha)
    where = {(r["layer"], r["field"]): r for r in rows}
    for t in test.tests:
        where[(t.layer, t.field)].update(log_ratio=t.log_ratio, log_se=t.se, log_z=t.z,
                                         p_value=t.p, test=t.status)
    return Comparison(net.describe(), analytic, empirical, rows, test)

