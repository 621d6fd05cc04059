"""Analytic and measured profiles side by side, and a verdict a person understands.

:func:`verdict` reads one profile (analytic or measured) and says whether the network
preserves the signal and the gradient, lets them vanish or explode (with the factor per
layer), or collapses to symmetric units. :func:`compare` runs both halves of the analyzer
on one network and lines them up per layer with relative errors and z-scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
    return a / b


def verdict(profile: Profile) -> Verdict:
    """Classify a profile: symmetric units first, else the larger of the forward and
    backward changes over depth decides between preserves, vanishes and explodes."""
    if len(profile) == 0:
        raise ValueError("verdict: the profile has no layers")
    steps = len(profile) - 1
    z_var = profile.column("z_var")
    grad = profile.column("grad_var")
    fwd = _ratio(z_var[-1], z_var[0]) if steps else 1.0
    bwd = _ratio(grad[0], grad[-1]) if steps else 1.0
    ff, bf = _per_layer(fwd, steps), _per_layer(bwd, steps)
    depth = len(profile)
    if profile.symmetric:
        first = next(r.index for r in profile if r.symmetric)
        return Verdict("symmetric", ff, bf, fwd, bwd,
                       f"collapses to symmetric units: from dense layer {first} on every unit "
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
                       f"per layer ({fwd:.3g} and {bwd:.3g} over {depth} layers)")
    kind = "explodes" if logs[worst] > 0 else "vanishes"
    return Verdict(kind, ff, bf, fwd, bwd,
                   f"the {what} {kind}: variance x{factor:.3g} per layer, {total:.3g} over "
                   f"{depth} layers (forward x{ff:.3g}, gradient x{bf:.3g} per layer)")


@dataclass
class Comparison:
    """Analytic and empirical profiles of one network, aligned layer by layer.

    ``rows`` holds one dict per (layer, field): analytic, measured, ci (95% half-width),
    rel_error = (measured - analytic) / |analytic| and z_score = (measured - analytic)
    / standard error (the half-width over 1.96; NaN with one seed).
    """

    network: str
    analytic: Profile
    empirical: Profile
    rows: list[dict[str, Any]] = field(default_factory=list)

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
        head = f"{'layer':>5}" + "".join(f" {f + ' theory':>14} {f + ' measured':>16}" for f in fields)
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
) -> Comparison:
    """Run the analytic and the empirical analyzer on ``net`` and line them up.

    Args:
        net: the network.
        batch, seeds, n_threads, progress: passed to :func:`varprop.measure`.
        input_mean, input_var, input_correlation: passed to both halves.
        analytic, empirical: precomputed profiles to reuse instead of running them.

    Example:
        >>> cmp = compare(mlp([256] * 11, "relu", "he_normal"), batch=256, seeds=3)
        >>> cmp.analytic_verdict.kind
        'preserves'
    """
    if analytic is None:
        analytic = analyze(net, input_mean=input_mean, input_var=input_var,
                           input_correlation=input_correlation)
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
                         "ci": ci, "rel_error": rel, "z_score": z})
    return Comparison(net.describe(), analytic, empirical, rows)

