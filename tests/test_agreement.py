"""The log-space test of theory against measurement (varprop.agreement, docs/comparison.md).

Three parts:

* the default report's size (depth 30, width 512, batch 192, 3 seeds): the mean-field
  theory of four plain MLPs whose theory is exact to first order is not flagged, and the
  same theory with a rule perturbed by 10% per layer is, forward and backward;
* the statistics against an independent reference: log-normal random walks simulated
  with numpy, whose exact mean is known, give a family-wise false-alarm rate of at most
  ``alpha`` (binomial tolerance), a calibrated p-value at a single layer and an unbiased
  bias-corrected log ratio;
* the explicit rules for zeros, overflow, values beyond float32's range, one seed and
  missing per-seed values (docs/comparison.md, "Degenerate cases").

Every random draw is seeded and Hypothesis runs derandomized, so the results are fixed.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import varprop
from varprop.agreement import ALPHA, FIELDS, POWER, agreement
from varprop.compare import compare
from varprop.network import dense_stack
from varprop.profile import LayerRecord, Profile

DEPTH, WIDTH, BATCH, SEEDS = 30, 512, 192, 3  # the default report's networks
REPORT_NETWORKS = 91  # 13 initializers x 7 activations share the report's alpha
GOOD_PAIRS = [("he_normal", "relu"), ("glorot_normal", "tanh"), ("lecun_normal", "selu"),
              ("orthogonal", "linear")]


@pytest.fixture(scope="module")
def measured() -> dict[tuple[str, str], tuple[Profile, Profile]]:
    """Theory and measurement of the good pairs at the default report's size."""
    out = {}
    for init, act in GOOD_PAIRS:
        net = dense_stack(WIDTH, DEPTH, act, init)
        out[(init, act)] = (varprop.analyze(net), varprop.measure(net, batch=BATCH, seeds=SEEDS))
    return out


def perturbed(theory: Profile, forward: bool = True, gradient: str = "forward") -> Profile:
    """``theory`` with a rule off by 10% per layer: z_var of layer l times 1.1^(l+1);
    grad_var times 1.1^(l+1) ("forward", the issue's literal perturbation) or
    1.1^(L-l) ("backward": the backward rule off by 10% per layer from the output)."""
    out = copy.deepcopy(theory)
    n = len(out)
    for r in out.records:
        if forward:
            r.z_var *= 1.1 ** (r.index + 1)
        if gradient == "forward":
            r.grad_var *= 1.1 ** (r.index + 1)
        elif gradient == "backward":
            r.grad_var *= 1.1 ** (n - r.index)
    return out


# ----------------------------------------------------------------------------- default size
@pytest.mark.parametrize("pair", GOOD_PAIRS)
def test_the_correct_theory_is_not_flagged(measured, pair):
    theory, meas = measured[pair]
    # alpha for this network alone (stricter than its 1/91 share of a report)
    result = agreement(theory, meas, alpha=ALPHA)
    assert result.status == "agree", result.summary()
    assert all(t.status == "agree" for t in result.tests), result.summary()
    assert result.spread == {"z_var": "random walk", "grad_var": "random walk"}


@pytest.mark.parametrize("pair", GOOD_PAIRS)
def test_a_rule_off_by_10_percent_per_layer_is_flagged(measured, pair):
    theory, meas = measured[pair]
    for wrong in (perturbed(theory), perturbed(theory, gradient="backward")):
        result = agreement(wrong, meas, alpha=ALPHA, n_networks=REPORT_NETWORKS)
        assert result.disagrees, result.summary()
    # the gradient alone, either way: its own tests reject it
    for gradient in ("backward", "forward"):
        result = agreement(perturbed(theory, forward=False, gradient=gradient), meas,
                           n_networks=REPORT_NETWORKS)
        assert {t.field for t in result.tests if t.status == "disagree"} == {"grad_var"}


def test_the_power_statement_matches_what_is_detected(measured):
    theory, meas = measured[("he_normal", "relu")]
    result = agreement(theory, meas, n_networks=REPORT_NETWORKS)
    # He-ReLU at width 512: a per-layer error of a few percent is detectable, 10% is
    # well beyond it (the planted errors above) ...
    assert 0.01 < result.detectable["z_var"] < 0.1
    assert 0.005 < result.detectable["grad_var"] < 0.1
    # ... while a 10% error in the last layer alone is not: one seed's log scatters by
    # ~0.4 there (Hanin & Rolnick: Var log ~ 5 sum 1/n = 0.29), its mean over 3 seeds by
    # ~0.25, far more than log 1.1 = 0.095
    end = [t for t in result.tests if t.field == "z_var" and t.layer == DEPTH - 1][0]
    assert 0.1 < end.se < 0.5
    wrong = copy.deepcopy(theory)
    wrong.records[-1].z_var *= 1.1
    assert not agreement(wrong, meas, n_networks=REPORT_NETWORKS).disagrees
    # the detectable error is (t_crit + z_power) se over the depth
    crit = float(stats.t.isf(end.level / 2, end.dof)) + float(stats.norm.ppf(POWER))
    expected = math.expm1(crit * end.se / DEPTH)
    assert result.detectable["z_var"] == pytest.approx(expected, rel=1e-12)


def test_compare_carries_the_test(measured):
    theory, meas = measured[("he_normal", "relu")]
    net = dense_stack(WIDTH, DEPTH, "relu", "he_normal")
    cmp = compare(net, analytic=perturbed(theory), empirical=meas)
    assert cmp.disagrees and not cmp.agree and cmp.agreement is not None
    rows = [r for r in cmp.rows if r["field"] == "z_var"]
    assert all(math.isfinite(r["log_z"]) and r["test"] in ("agree", "disagree") for r in rows)
    assert all(r["test"] is None for r in cmp.rows if r["field"] not in FIELDS)
    assert "disagree" in cmp.table().splitlines()[-1]


# ----------------------------------------------------------------------------- statistics
def profiles(theory: dict[str, np.ndarray], seeds: dict[str, np.ndarray],
             batch: int | None = None) -> tuple[Profile, Profile]:
    """Analytic and empirical profiles holding the given theory and per-seed values."""
    n = len(theory["z_var"])

    def records(values: dict[str, np.ndarray]) -> list[LayerRecord]:
        return [LayerRecord(i, WIDTH, WIDTH, z_mean=0.0, z_var=float(values["z_var"][i]),
                            grad_var=float(values["grad_var"][i])) for i in range(n)]

    means = {k: np.mean(v, axis=0) if len(v) else np.full(n, np.nan) for k, v in seeds.items()}
    meta = {} if batch is None else {"batch": batch}
    return (Profile("analytic", records(theory)),
            Profile("empirical", records(means), meta=meta,
                    seed_values={k: np.asarray(v).tolist() for k, v in seeds.items()}))


def walk(rng: np.random.Generator, seeds: int, layers: int, tau: float,
         first: float | None = None, drift: float = -0.05) -> tuple[np.ndarray, np.ndarray]:
    """Log-normal random walks: log v_s(l) = sum_{k<=l} (drift + sd_k N(0, 1)), sd_k = tau
    (the first step's ``first`` if given); and the exact mean E v(l) the theory predicts."""
    sd = np.full(layers, tau)
    if first is not None:
        sd[0] = first
    logs = np.cumsum(drift + sd * rng.standard_normal((seeds, layers)), axis=1)
    var = np.cumsum(sd ** 2)
    return np.exp(logs), np.exp(drift * np.arange(1, layers + 1) + var / 2)


def simulate(n: int, alpha: float, **kw) -> tuple[int, list, np.ndarray]:
    """Family-wise false alarms in ``n`` simulated 3-seed measurements of a correct theory
    (z_var forward, grad_var backward), the results, and the uncorrected mean log ratio
    ``mean_s log v_s - log E v`` of z_var at the last layer."""
    rng = np.random.default_rng(20180305)
    alarms, results, raw = 0, [], []
    for _ in range(n):
        vz, tz = walk(rng, SEEDS, DEPTH, **kw)
        vg, tg = walk(rng, SEEDS, DEPTH, **kw)
        a, e = profiles({"z_var": tz, "grad_var": tg[::-1]},
                        {"z_var": vz, "grad_var": vg[:, ::-1]})
        r = agreement(a, e, alpha=alpha)
        alarms += r.disagrees
        results.append(r)
        raw.append(np.mean(np.log(vz[:, -1])) - math.log(tz[-1]))
    return alarms, results, np.array(raw)


def binomial_bound(p: float, n: int) -> float:
    """p plus 3 binomial standard deviations (a 0.1% one-sided tolerance)."""
    return p + 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("kw", [
    {"tau": 0.08},  # He-ReLU at width 512: 5/512 = 0.1^2 per layer in log variance
    {"tau": 0.01},  # tanh-like: small steps
    {"tau": 0.2},  # wide: the bias correction sigma^2/2 reaches 0.6
    {"tau": 1e-6, "first": 0.005},  # orthogonal-linear-like: all the spread in one step
])
def test_false_alarm_rate_is_at_most_alpha(kw):
    n, alpha = 1000, 0.05  # alpha this large makes the rate measurable with 1000 draws
    alarms, results, _ = simulate(n, alpha, **kw)
    assert alarms / n <= binomial_bound(alpha, n), (kw, alarms)
    # the model checks rarely reject independent steps (each at 1% or 0.1%)
    kept = sum(r.spread["z_var"] == "random walk" for r in results)
    assert kept / n >= 0.97


def test_a_single_layer_p_value_is_calibrated():
    # the last layer's test alone (no multiple-testing rule): P(p <= 0.05) = 0.05
    n = 1500
    _, results, _ = simulate(n, 0.05, tau=0.08)
    ps = np.array([[t.p for t in r.tests if t.field == "z_var" and t.layer == DEPTH - 1][0]
                   for r in results])
    rate = float(np.mean(ps <= 0.05))
    tol = 3 * math.sqrt(0.05 * 0.95 / n)
    assert 0.05 - tol <= rate <= 0.05 + tol, rate


def test_the_bias_correction_centres_the_log_ratio():
    # sigma^2 = 30 * 0.2^2 = 1.2 at the last layer: uncorrected, the mean log sits
    # sigma^2 / 2 = 0.6 below the log of the mean; corrected, it is centred on it
    n = 1500
    _, results, raw = simulate(n, 0.05, tau=0.2)
    d = np.array([[t.log_ratio for t in r.tests if t.field == "z_var" and t.layer == DEPTH - 1][0]
                  for r in results])
    assert abs(float(np.mean(d))) < 4 * float(np.std(d)) / math.sqrt(n)
    assert float(np.mean(raw)) == pytest.approx(-0.6, abs=4 * float(np.std(raw)) / math.sqrt(n))


def test_seed_specific_drift_falls_back_to_the_seeds_own_spread():
    # correlated steps (each seed drifts at its own rate): the walk would understate the
    # spread; the model checks catch most such draws and the fallback stays calibrated
    rng = np.random.default_rng(7)
    fallback = alarms = 0
    n = 400
    for _ in range(n):
        logs = np.cumsum(0.05 * rng.standard_normal((SEEDS, DEPTH))
                         + 0.05 * rng.standard_normal((SEEDS, 1)), axis=1)
        var = 0.05 ** 2 * np.arange(1, DEPTH + 1) + 0.05 ** 2 * np.arange(1, DEPTH + 1) ** 2
        vg, tg = walk(rng, SEEDS, DEPTH, 0.05)
        a, e = profiles({"z_var": np.exp(var / 2), "grad_var": tg[::-1]},
                        {"z_var": np.exp(logs), "grad_var": vg[:, ::-1]})
        r = agreement(a, e, alpha=0.05)
        if r.spread["z_var"].startswith("seed by seed"):
            fallback += 1
            alarms += r.disagrees
    assert fallback / n >= 0.7
    assert alarms / fallback <= binomial_bound(0.05, fallback)


# ----------------------------------------------------------------------------- degenerate
def one_layer(theory: float, seeds: list[float], grad: float = 1.0, **meta) -> tuple[Profile, Profile]:
    """A one-layer network: z_var ``theory`` measured as ``seeds``; grad_var = 1 exactly."""
    s = np.array(seeds, dtype=float).reshape(len(seeds), 1)
    a, e = profiles({"z_var": np.array([theory]), "grad_var": np.array([grad])},
                    {"z_var": s, "grad_var": np.full_like(s, grad)})
    e.meta.update(meta)
    return a, e


def z_test(theory: float, seeds: list[float], **meta):
    a, e = one_layer(theory, seeds, **meta)
    result = agreement(a, e)
    return [t for t in result.tests if t.field == "z_var"][0], result


@pytest.mark.parametrize("theory, seeds, status, reason", [
    (0.0, [0.0, 0.0, 0.0], "agree", "both exactly 0"),  # zeros weights: exact zeros
    (0.0, [0.0, 1e-45, 0.0], "agree", "below float32's resolution"),
    (0.0, [0.0, 1.0, 0.0], "disagree", "theory exactly 0"),
    (1.0, [1.0, 0.0, 1.0], "disagree", "measured exactly 0"),
    (1.0, [1.0, math.inf, 1.0], "disagree", "overflows"),
    (1.0, [1.0, math.nan, 1.0], "disagree", "undefined"),
    (1e50, [math.inf, math.nan, math.inf], "untestable", "beyond float32's range"),
    (math.inf, [math.inf] * 3, "untestable", "beyond float32's range"),
    (1e-40, [1e-40, 2e-40, 0.0], "untestable", "below float32's resolution"),
    (math.nan, [1.0, 1.0, 1.0], "untestable", "theory undefined"),
    (1.0, [1.0], "untestable", "one seed"),  # no spread from one seed ...
    (1.0, [0.0], "disagree", "measured exactly 0"),  # ... but an exact rule needs none
])
def test_degenerate_values_follow_the_stated_rules(theory, seeds, status, reason):
    t, result = z_test(theory, seeds)
    assert t.status == status and reason in t.reason, t
    assert (t.p == 0.0) == (status == "disagree") and (t.p == 1.0) == (status == "agree")


def test_values_beyond_float32_are_clipped_and_can_still_disagree():
    # theory below float32's range, measurement well inside it: compared at the edge
    t, _ = z_test(1e-45, [0.9, 1.0, 1.1])
    assert t.status == "disagree" and "clipped" in t.reason and t.z > 10


def test_identical_seeds_have_a_finite_spread():
    # no spread between seeds (fixed inputs, deterministic weights): the float32 floor
    t, _ = z_test(1.0, [1.0, 1.0, 1.0])
    assert t.status == "agree" and math.isfinite(t.z) and t.se > 0
    t, _ = z_test(1.0, [1.01, 1.01, 1.01])
    assert t.status == "disagree" and t.z > 100


def test_the_first_step_floor_comes_from_the_batch():
    # three seeds that happen to agree to 1e-5 cannot beat the sampling error of a
    # variance over batch x width Gaussian numbers, sqrt(2 / (192 * 512)) = 0.0045
    seeds = [1.00651, 1.00657, 1.00676]
    strict, _ = z_test(1.0, seeds)
    floored, _ = z_test(1.0, seeds, batch=BATCH)
    assert strict.status == "disagree" and floored.status == "agree"
    assert floored.se == pytest.approx(math.sqrt(2 / (BATCH * WIDTH) / 3), rel=0.01)


def test_missing_per_seed_values_and_backward_pass_are_untestable():
    a, e = one_layer(1.0, [1.0, 1.1, 0.9], backward=False)
    result = agreement(a, e)
    assert all(t.status == "untestable" for t in result.tests if t.field == "grad_var")
    e.seed_values = {}
    result = agreement(a, e)
    assert result.status == "untestable" and not result.disagrees
    assert "no per-seed values" in result.summary()


def test_bad_arguments_raise():
    a, e = one_layer(1.0, [1.0, 1.1, 0.9])
    with pytest.raises(ValueError, match="alpha"):
        agreement(a, e, alpha=0.0)
    with pytest.raises(ValueError, match="n_networks"):
        agreement(a, e, n_networks=0)
    b = Profile("analytic", a.records * 2)
    with pytest.raises(ValueError, match="layers"):
        agreement(b, e)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(theory=st.lists(st.sampled_from([0.0, 1e-45, 1e-40, 1e-3, 1.0, 7.5, 1e40, 1e300,
                                        math.inf, math.nan]), min_size=1, max_size=6),
       seeds=st.integers(1, 4), data=st.data())
def test_never_raises_and_serializes(theory, seeds, data):
    values = st.sampled_from([0.0, 1e-45, 1e-39, 1e-3, 0.9, 1.0, 1.2, 1e39, math.inf, math.nan])
    n = len(theory)
    rows = data.draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=seeds,
                              max_size=seeds))
    x = np.array(rows, dtype=float)
    a, e = profiles({"z_var": np.array(theory), "grad_var": np.array(theory)},
                    {"z_var": x, "grad_var": x}, batch=BATCH)
    result = agreement(a, e, n_networks=3)
    assert len(result.tests) == 2 * n
    assert result.status in ("agree", "disagree", "untestable")
    assert all(t.status in ("agree", "disagree", "untestable") for t in result.tests)
    assert result.disagrees == any(t.status == "disagree" for t in result.tests)
    p = result.p_value
    assert math.isnan(p) or 0.0 <= p <= 1.0
    json.dumps(result.to_dict(), allow_nan=False)  # NaN and inf become null
    result.summary()


def test_per_seed_values_survive_json(measured):
    _, meas = measured[("he_normal", "relu")]
    again = Profile.from_dict(json.loads(meas.to_json()))
    np.testing.assert_array_equal(again.seed_column("grad_var"), meas.seed_column("grad_var"))
    assert again.seed_column("z_var").shape == (SEEDS, DEPTH)


# ----------------------------------------------------------------------------- the report
def test_the_report_uses_the_test():
    from varprop.reporting import ReportSettings, build_report, report_table

    settings = ReportSettings(initializers=("he_normal", "zeros"), activations=("relu", "tanh"),
                              depth=6, width=64, batch=32, seeds=3)
    report = build_report(settings)
    assert all(e.agreement is not None and e.agreement.n_networks == 4 for e in report.entries)
    summary = report.agreement_summary()
    assert summary["networks"] == 4 and summary["alpha"] == ALPHA
    assert summary["disagree"] == sum(not e.agree for e in report.entries)
    text = report_table(report)
    assert "disagree on" in text and "family-wise false-alarm rate 1%" in text
    doc = report.to_dict()
    assert doc["schema_version"] == 2 and doc["agreement"]["networks"] == 4
    assert {"agree", "verdicts_agree", "agreement"} <= set(doc["results"][0])
