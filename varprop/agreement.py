"""Does the measurement contradict the theory? A log-space test per layer: :func:`agreement`.

The variances a deep network propagates are products of one random factor per layer, so
their logarithms are sums: a random walk over depth whose spread grows with the number of
layers and shrinks with the width (Hanin & Rolnick 2018, arXiv 1803.01719: Var log ~
5 sum 1/n_l for He-ReLU). The test works on those logs; docs/comparison.md describes it
for users. For a field (``z_var`` forward from the input, ``grad_var`` backward from the
output) and the ``S`` seeds of a measured profile:

* *spread*: the steps ``D_s(k) = log v_s(k) - log v_s(k-1)`` along the path (the first
  step is the first layer's log itself) are independent across layers and seeds; their
  variance ``u_k`` is estimated per step from the seeds (``S - 1`` degrees of freedom
  each), so one seed's log at path position ``k`` has variance ``sum_{j<=k} u_j``, with
  Welch-Satterthwaite degrees of freedom. Mean-reverting networks (tanh, sigmoid) make
  this conservative. Positively correlated steps (an expanding map, a drift that
  differs from seed to seed, heavy tails) would make it too small, so two checks guard
  it: the standardized steps' lag-1 correlation (rejects above 3.09 standard errors,
  one-sided 0.1%) and an F test of the last layer's spread over the seeds against the
  walk's (one-sided 1%). If either rejects, the field falls back to the seed-by-seed
  variance of each layer's log (``S - 1`` degrees of freedom: little power with few
  seeds, but no assumption about the steps). Floors: the first step varies at least as
  much as a sample variance of ``batch x width`` Gaussian numbers (``2 / (B n)``: the
  drawn input or output gradient), and every step by ``(16 eps_float32)^2``;
* *bias*: the mean of the log sits ``sigma^2 / 2`` below the log of the mean
  (log-normal), and the theory predicts the mean: ``d = mean_s log v_s + sigma^2 / 2 -
  log theory``, ``se^2 = sigma^2 / S + sigma^4 / (2 dof)`` (the second term: the
  correction's own uncertainty), ``t = d / se``, two-sided p from Student's t;
* *many tests*: a network's false-alarm budget ``alpha / n_networks`` is split evenly
  between the fields; within a field a third goes to the first layer of the path (a
  constant error: input scaling, the last layer's derivative), a third to the last (an
  error per layer compounding over the depth: the end-to-end ratio) and a third is shared
  by the layers in between (weighted Bonferroni). A network disagrees when any test
  rejects, so the whole report errs with probability at most ``alpha`` (default 1%);
* *power*: the per-layer relative error ``delta`` of a rule that the last layer's test
  detects with probability :data:`POWER`: ``L log(1 + delta) = (t_crit + z_power) se``;
* *degenerate values* (exact zeros, overflow, values float32 cannot resolve, one seed)
  follow the explicit rules of :func:`_exact`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ._json import json_number
from .profile import Profile

__all__ = ["ALPHA", "FIELDS", "POWER", "LayerTest", "Agreement", "agreement"]

#: Family-wise false-alarm rate: the chance that a correct theory is flagged anywhere in
#: one call (one network for :func:`varprop.compare`, every network of a report).
ALPHA = 0.01
#: The fields tested: pre-activation variance (forward) and gradient variance (backward).
FIELDS = ("z_var", "grad_var")
#: Probability of detection at which :attr:`Agreement.detectable` is stated.
POWER = 0.8
_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32, 1.18e-38
_EPS = float(np.finfo(np.float32).eps)
_ULPS = 4.0  # a variance must exceed (4 ulp of the mean)^2 to be resolved in float32
_HUGE = float(np.finfo(np.float32).max)  # 3.40e38
_NUMERIC = (16 * float(np.finfo(np.float32).eps)) ** 2  # per-step variance floor
_CORRELATED_Z = 3.09  # one-sided 0.1% for the lag-1 correlation of the steps
_MODEL_CHECK = 0.01  # one-sided level of the F test of the last layer's spread


@dataclass(frozen=True)
class LayerTest:
    """One field at one layer.

    Attributes:
        field, layer: "z_var" or "grad_var", and the dense layer's index.
        theory, measured: the analytic value and the mean over seeds.
        log_ratio: ``d`` (module doc): the bias-corrected log of measured over theory;
            NaN when no statistic was computed.
        se, dof: its standard error and degrees of freedom.
        z: ``d / se`` (Student's t); +-inf for an exact disagreement, NaN if untested.
        p: two-sided p-value (0 for an exact disagreement, 1 for an exact agreement).
        level: the test's share of the false-alarm budget; it rejects when p <= level.
        status: "agree", "disagree" or "untestable"; reason: why, for the last two and
            the exact rules.
    """

    field: str
    layer: int
    theory: float
    measured: float
    log_ratio: float
    se: float
    dof: float
    z: float
    p: float
    level: float
    status: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (json_number(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Agreement:
    """The log-space comparison of one network (see the module doc).

    Attributes:
        network: its description; n_seeds: seeds measured.
        alpha, n_networks: the family-wise false-alarm rate and the number of networks
            sharing it (this network's budget is ``alpha / n_networks``).
        tests: one :class:`LayerTest` per field and layer.
        spread: per field, the spread model used ("random walk", or why not).
        detectable: per field, the per-layer relative error detected with probability
            :data:`POWER` (NaN where the last layer is untestable).
    """

    network: str
    n_seeds: int
    alpha: float
    n_networks: int
    tests: list[LayerTest] = field(default_factory=list)
    spread: dict[str, str] = field(default_factory=dict)
    detectable: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """"disagree" if any test rejects, "untestable" if no test could be made, else
        "agree"."""
        kinds = {t.status for t in self.tests}
        if "disagree" in kinds:
            return "disagree"
        return "agree" if "agree" in kinds else "untestable"

    @property
    def disagrees(self) -> bool:
        return self.status == "disagree"

    @property
    def p_value(self) -> float:
        """Weighted-Bonferroni p-value of the network (family: its own tests): the
        smallest ``p / share``, at most 1; NaN when nothing was tested."""
        budget = self.alpha / self.n_networks
        ps = [min(1.0, t.p * budget / t.level) for t in self.tests if math.isfinite(t.p)]
        return min(ps) if ps else math.nan

    @property
    def worst(self) -> LayerTest | None:
        """The test with the smallest adjusted p-value (None when nothing was tested)."""
        tested = [t for t in self.tests if math.isfinite(t.p)]
        if not tested:
            return None
        return min(tested, key=lambda t: (t.p / t.level, -abs(t.z) if math.isfinite(t.z) else 0.0))

    @property
    def detectable_error(self) -> float:
        """The larger of the fields' detectable per-layer errors (an error of this size in
        either rule is caught with probability :data:`POWER`); NaN if neither is known."""
        vals = [v for v in self.detectable.values() if not math.isnan(v)]
        return max(vals) if vals else math.nan

    def summary(self) -> str:
        """One sentence: the decision, the worst test and the detectable error."""
        w = self.worst
        if self.status == "untestable" or w is None:
            reasons = sorted({t.reason for t in self.tests if t.reason})
            return "untestable: " + ("; ".join(reasons) or "no test possible")
        where = f"{w.field} layer {w.layer}"
        what = (f"z = {w.z:+.3g} at {where}" if math.isfinite(w.z) else f"{w.reason} at {where}")
        head = "theory and measurement disagree" if self.disagrees else "consistent"
        tail, delta = "", self.detectable_error
        if not math.isnan(delta):
            size = "over 1000%" if delta > 10 else f"{100 * delta:.2g}%"
            tail = f"; a per-layer error of {size} would be detected ({100 * POWER:.0f}% power)"
        return (f"{head} (worst {what}, p = {w.p:.2g}; false-alarm rate {self.alpha:g} over "
                f"{self.n_networks} network{'s' if self.n_networks != 1 else ''}){tail}")

    def to_dict(self) -> dict[str, Any]:
        w = self.worst
        return {
            "status": self.status, "p_value": json_number(self.p_value),
            "alpha": self.alpha, "n_networks": self.n_networks, "n_seeds": self.n_seeds,
            "worst": None if w is None else w.to_dict(),
            "detectable_error": json_number(self.detectable_error),
            "detectable": {k: json_number(v) for k, v in self.detectable.items()},
            "spread": dict(self.spread),
            "tests": [t.to_dict() for t in self.tests],
        }


def agreement(analytic: Profile, empirical: Profile, *, alpha: float = ALPHA,
              n_networks: int = 1) -> Agreement:
    """Test the measured ``z_var`` and ``grad_var`` of ``empirical`` (per seed, from
    :attr:`~varprop.profile.Profile.seed_values`) against ``analytic``, layer by layer.

    Args:
        analytic, empirical: profiles of the same network (same number of layers).
        alpha: family-wise false-alarm rate, in (0, 1).
        n_networks: networks sharing ``alpha`` (a report's size): each gets
            ``alpha / n_networks``.

    Raises:
        ValueError: mismatched profiles, alpha outside (0, 1), n_networks < 1.
    """
    if len(analytic) != len(empirical):
        raise ValueError(f"agreement: the profiles have {len(analytic)} and {len(empirical)} layers")
    if not 0 < alpha < 1:
        raise ValueError(f"agreement: alpha must be in (0, 1), got {alpha!r}")
    if isinstance(n_networks, bool) or not isinstance(n_networks, int) or n_networks < 1:
        raise ValueError(f"agreement: n_networks must be an integer >= 1, got {n_networks!r}")
    meta = empirical.meta
    n_layers = len(analytic)
    budget = alpha / n_networks / len(FIELDS)
    batch = meta.get("batch")
    out = Agreement(empirical.network or analytic.network, 0, alpha, n_networks)
    for name in FIELDS:
        seeds = empirical.seed_column(name)
        out.n_seeds = max(out.n_seeds, seeds.shape[0])
        backward = name == "grad_var"
        missing = ""
        if seeds.shape[0] == 0:
            missing = "no per-seed values in the measured profile"
        elif backward and meta.get("backward") is False:
            missing = "the backward pass was not measured"
        # the first step's floor: the relative variance of a mean square of B x n Gaussian
        # numbers, 2 / (B n): the output gradient (n = the last layer's width), or the
        # input seen through the first layer's weights (n = its rank, <= min(n_in, n_out));
        # none for a fixed input batch (docs/comparison.md)
        floor = 0.0
        if isinstance(batch, int) and batch > 0:
            if backward:
                floor = 2.0 / (batch * empirical[-1].n_out)
            elif meta.get("inputs") != "given":
                floor = 2.0 / (batch * min(empirical[0].n_in, empirical[0].n_out))
        lower = np.full(n_layers, _TINY)
        if name == "z_var":  # values near a mean m are float32 multiples of eps |m|
            with np.errstate(invalid="ignore"):
                m = np.fmax(np.abs(analytic.column("z_mean")), np.abs(empirical.column("z_mean")))
            lower = np.maximum(lower, (_ULPS * _EPS * np.nan_to_num(m)) ** 2)
        tests, note, delta = _field(name, analytic.column(name), empirical.column(name), seeds,
                                    backward, floor, budget, missing, lower)
        out.tests += sorted(tests, key=lambda t: t.layer)
        out.spread[name], out.detectable[name] = note, delta
    return out


# ----------------------------------------------------------------------------- one field
def _shares(n: int) -> np.ndarray:
    """Budget shares along a path of n layers: a third each to the first and the last,
    a third shared by the others (weighted Bonferroni; sums to 1)."""
    if n <= 2:
        return np.full(n, 1.0 / n)
    w = np.full(n, (1.0 / 3.0) / (n - 2))
    w[0] = w[-1] = 1.0 / 3.0
    return w


def _field(name: str, theory: np.ndarray, means: np.ndarray, seeds: np.ndarray, backward: bool,
           floor: float, budget: float, missing: str,
           lower: np.ndarray) -> tuple[list[LayerTest], str, float]:
    n = len(theory)
    if n == 0:
        return [], "no layers", math.nan
    order = np.arange(n)[::-1] if backward else np.arange(n)
    th = np.asarray(theory, dtype=float)[order]
    lo = lower[order]
    levels = budget * _shares(n)
    if missing:
        return ([LayerTest(name, int(order[i]), float(th[i]), float(means[order[i]]),
                           math.nan, math.nan, math.nan, math.nan, math.nan, float(levels[i]),
                           "untestable", missing) for i in range(n)], missing, math.nan)
    x = seeds[:, order]
    S = x.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.clip(x, lo, _HUGE))  # 0 -> the lower edge, inf -> the upper
    nan_layers = np.flatnonzero(np.isnan(logs).any(axis=0))
    walk = int(nan_layers[0]) if nan_layers.size else n  # the spread needs a path from the start
    var, dof, note = (np.full(n, math.nan), np.full(n, math.nan), "one seed: no spread")
    if S >= 2 and walk > 0:
        var[:walk], dof[:walk], note = _spread(logs[:, :walk], floor)
    elif S >= 2:
        note = "no spread: the first layer is undefined (NaN)"
    # the statistic, for every layer at once (exact rules and NaN spreads overrule it below)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = logs.mean(axis=0) + var / 2 - np.log(np.clip(th, lo, _HUGE))
        se = np.sqrt(var / S + var ** 2 / (2 * dof))
        z = d / se
        p = 2 * stats.t.sf(np.abs(z), dof)
    tests = []
    for i in range(n):
        layer, level = int(order[i]), float(levels[i])
        common = (name, layer, float(th[i]), float(means[layer]))
        exact = _exact(th[i], x[:, i], lo[i])
        if exact is not None:
            status, reason = exact
            p_i, z_i = {"agree": (1.0, 0.0), "disagree": (0.0, _direction(th[i], x[:, i]) * math.inf)
                        }.get(status, (math.nan, math.nan))
            tests.append(LayerTest(*common, math.nan, math.nan, math.nan, z_i, p_i, level, status,
                                   reason))
        elif not math.isfinite(var[i]):
            reason = "one seed: no spread" if S < 2 else "an earlier layer is undefined (NaN)"
            tests.append(LayerTest(*common, math.nan, math.nan, math.nan, math.nan, math.nan,
                                   level, "untestable", reason))
        else:
            inside = lo[i] <= th[i] <= _HUGE and np.all((x[:, i] >= lo[i]) & (x[:, i] <= _HUGE))
            clipped = "" if inside else "values float32 cannot resolve clipped to its range"
            tests.append(LayerTest(*common, float(d[i]), float(se[i]), float(dof[i]), float(z[i]),
                                   float(p[i]), level, "disagree" if p[i] <= level else "agree",
                                   clipped))
    delta = math.nan
    end = tests[-1]
    if math.isfinite(end.se):
        crit = float(stats.t.isf(end.level / 2, end.dof)) + float(stats.norm.ppf(POWER))
        step = crit * end.se / n
        delta = math.expm1(step) if step < 700 else math.inf  # beyond: no power at all
    return tests, note, delta


def _spread(logs: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Variance of one seed's log at each path position and its degrees of freedom, from
    the (S, K) logs of the seeds along the path (module doc)."""
    S, K = logs.shape
    steps = np.diff(logs, axis=1, prepend=0.0)
    resid = steps - steps.mean(axis=0)
    u = np.maximum((resid ** 2).sum(axis=0) / (S - 1), _NUMERIC)
    u[0] = max(u[0], floor)
    var = np.cumsum(u)
    dof = var ** 2 / np.cumsum(u ** 2 / (S - 1))
    # two checks of independence: the lag-1 correlation of the standardized steps, and
    # the last layer's spread over the seeds against the walk's (F test)
    why = ""
    ratio = float(logs[:, -1].var(ddof=1) / var[-1])
    if ratio > float(stats.f.isf(_MODEL_CHECK, S - 1, dof[-1])):
        why = f"the last layer varies {ratio:.3g}x more than the walk's steps add up to"
    if K >= 3:
        pairs = (K - 1) * (S - 1)
        e = resid / np.sqrt(u)
        r = float((e[:, 1:] * e[:, :-1]).sum() / pairs)
        if r > _CORRELATED_Z / math.sqrt(pairs):
            why = why or f"the steps are correlated (lag-1 r = {r:.2f})"
    if not why:
        return var, dof, "random walk"
    # the steps are not independent: each layer's own spread over the seeds
    minimum = np.cumsum(np.full(K, _NUMERIC)) + floor
    var = np.maximum(logs.var(axis=0, ddof=1), minimum)
    return var, np.full(K, S - 1.0), "seed by seed: " + why


def _exact(theory: float, values: np.ndarray, low: float) -> tuple[str, str] | None:
    """The rules for values no log-normal statistic can handle; None: test statistically.
    float32 resolves a variance in ``[low, 3.4e38]``: ``low`` is the smallest normal
    float32 (1.18e-38) or, for values around a mean m, ``(4 eps |m|)^2`` if larger (a
    smaller variance is lost in the rounding of the values themselves).

    * theory NaN: untestable; a seed NaN (float32 overflow, inf - inf): disagree if the
      theory is within float32's range, else untestable;
    * theory 0: agree if every seed is 0 or below the resolved range, else disagree;
    * theory and every seed outside the resolved range on the same side (seeds 0 or inf
      included): untestable;
    * theory within the range and a seed exactly 0 or inf: disagree;
    * everything else is tested, values outside the range clipped to it (which can only
      hide a disagreement, never make one)."""
    if math.isnan(theory):
        return "untestable", "theory undefined (NaN)"
    if np.isnan(values).any():
        if theory > _HUGE:
            return "untestable", "theory and measurement beyond float32's range"
        return "disagree", "measurement undefined (NaN, float32 overflow)"
    if theory == 0:
        if np.all(values < low):
            return "agree", ("both exactly 0" if np.all(values == 0)
                             else "0 and below float32's resolution")
        return "disagree", "theory exactly 0, measured > 0"
    side = 0 if low <= theory <= _HUGE else (-1 if theory < low else 1)
    sides = np.where(values < low, -1, np.where(values > _HUGE, 1, 0))
    if side != 0 and np.all(sides == side):
        return "untestable", ("theory and measurement beyond float32's range" if side > 0
                              else "theory and measurement below float32's resolution")
    if side == 0 and np.any((values == 0) | np.isinf(values)):
        return "disagree", ("measured exactly 0" if np.any(values == 0)
                            else "measurement overflows float32")
    if values.size < 2:
        return "untestable", "one seed: no spread"
    return None


def _direction(theory: float, values: np.ndarray) -> float:
    """+1 when the measurement lies above the theory, -1 below (for an exact disagreement's
    infinite z)."""
    finite = values[np.isfinite(values)]
    if np.isnan(values).any() or np.isinf(values).any():
        return 1.0
    return 1.0 if finite.size and float(np.mean(finite)) > theory else -1.0
