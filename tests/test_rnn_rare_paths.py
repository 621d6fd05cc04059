"""The rare-path check of the identity chain (docs/recurrent.md, "Rare paths"): the
relative entropy ``D_t`` of the gradient's tilted paths against independent references
(Sparre Andersen's law for the ReLU walk, a Monte Carlo of the chain), and the flag it
raises where a measurement falls short of the expected gradient.

The Monte Carlo bound is a t quantile at a two-sided false-alarm rate of 1e-4 over
independent batches (fixed seed)."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from scipy import stats

from varprop.activations import get_activation
from varprop.recurrent import SimpleRNN, analyze_rnn, compare_rnn, measure_rnn
from varprop.recurrent.identity_chain import (GRID_POINTS, RARE_PATHS_NATS, chain_moments,
                                              tilted_entropy)

ALPHA = 1e-4


def _entropy(act: str, gain: float, drift: float, sigma: float, steps: int,
             points: int = GRID_POINTS) -> np.ndarray:
    out = chain_moments(get_activation(act), gain, drift, sigma, steps, np.eye(steps)[-1],
                        n=points)
    return tilted_entropy(out[:, 4], out[:, 6])


@pytest.mark.parametrize("steps", [1, 5, 50])
def test_relu_walk_entropy_is_sparre_andersens(steps):
    # ReLU, g = 1, no drift: P_0 is the indicator that the walk S_1..S_T stays positive,
    # so D_0 = -log P(stay positive) = -log(C(2T, T) / 4^T); and D_{T-1} = -log P(z > 0)
    # at the last step, = -log(1 - C(2T, T) / 4^T).
    stay = comb(2 * steps, steps) / 4 ** steps
    exact = np.array([-math.log(stay), -math.log(1 - stay)])
    coarse = _entropy("relu", 1.0, 0.0, 1.0, steps)[[0, -1]]
    fine = _entropy("relu", 1.0, 0.0, 1.0, steps, 2 * GRID_POINTS - 1)[[0, -1]]
    # the grid errs by O(h^2) at ReLU's kink (docs/recurrent.md): halving the spacing
    # quarters the error, so Richardson's (4 fine - coarse) / 3 cancels it, and the
    # default grid's error is about 4/3 of the change on halving
    np.testing.assert_allclose((4 * fine - coarse) / 3, exact, rtol=0, atol=1e-5)
    assert np.all(np.abs(coarse - exact) <= 1.5 * 4 / 3 * np.abs(coarse - fine) + 1e-9)


def test_a_linear_chain_has_no_rare_paths():
    # phi' = 1: the product is the constant g^(2(T-1-t)), its tilted measure the chain's own
    np.testing.assert_allclose(_entropy("linear", 0.9, 0.2, 1.0, 12), 0.0, atol=1e-9)


def test_entropy_matches_a_monte_carlo_of_the_chain():
    steps, gain, drift, sigma = 6, 1.3, 0.2, 1.0
    act = get_activation("tanh")
    rng = np.random.default_rng(7)
    batches, n = 20, 100_000
    e_p, e_plogp, e_p2 = np.empty(batches), np.empty(batches), np.empty(batches)
    for k in range(batches):
        z = drift + sigma * rng.standard_normal(n)
        log_p = np.zeros(n)
        for t in range(steps):
            log_p += 2 * np.log(np.abs(act.derivative(z))) + (2 * math.log(gain) if t else 0)
            z = gain * act.value(z) + drift + sigma * rng.standard_normal(n)
        p = np.exp(log_p)
        e_p[k], e_plogp[k], e_p2[k] = p.mean(), (p * log_p).mean(), (p * p).mean()
    # the gradient at step 0 multiplies the factors of steps 0..T-1 (g^2 on all but the
    # last): the same product as above, in the other order
    d = _entropy("tanh", gain, drift, sigma, steps)[0]
    # D = E[P log P] / E[P] - log E[P], its spread over batches by the delta method
    est = e_plogp.mean() / e_p.mean() - math.log(e_p.mean())
    per_batch = e_plogp / e_p - np.log(e_p)
    t_q = stats.t.ppf(1 - ALPHA / 2, batches - 1)
    bound = t_q * per_batch.std(ddof=1) / math.sqrt(batches)
    assert abs(d - est) <= bound, (d, est, bound)
    # and E[P^2], which sets a measured mean's relative standard error
    out = chain_moments(act, gain, drift, sigma, steps, np.eye(steps)[-1])
    assert abs(out[0, 7] - e_p2.mean()) <= t_q * e_p2.std(ddof=1) / math.sqrt(batches)


def test_all_ones_tanh_is_flagged_where_the_measurement_falls_short():
    rnn = SimpleRNN(128, 128, "tanh", "ones", "ones")
    theory = analyze_rnn(rnn, 30)
    flagged = {a["detail"]: a["layers"] for a in theory.meta["approximations"]}
    assert flagged == {"rare_paths": [[0, 29]]}
    measured = measure_rnn(rnn, 30, seeds=2, batch=64)
    # the expectation is carried by chains no batch contains: every measured gradient
    # variance is far below it (float32 even rounds tanh' of saturated units to 0)
    for t in (0, 15, 29):
        assert measured[t].grad_var < 1e-6 * theory[t].grad_var


def test_relu_irnn_is_not_flagged_even_for_one_sequence():
    # P is an indicator (E[P^2] = E[P] = P(stay positive) ~ 1/12.6 at T = 50): 128
    # chains pin it, D_0 = 2.53 < log 128 and (3 * 12.6 - 1) / 128 < 1
    rnn = SimpleRNN(64, 128, "relu", {"name": "random_normal", "stddev": 0.125}, "identity")
    for samples in (None, 1):
        meta = analyze_rnn(rnn, 50, samples=samples).meta
        assert "rare_paths" not in {a["detail"] for a in meta["approximations"]}
    out = chain_moments(get_activation("relu"), 1.0, 0.0, 1.0, 50, np.eye(50)[-1])
    np.testing.assert_allclose(out[:, 7], out[:, 4], rtol=1e-12)  # P^2 = P
    assert RARE_PATHS_NATS == pytest.approx(math.log(1e6))


def test_a_smaller_measurement_flags_more_steps_and_compare_uses_its_own_size():
    rnn = SimpleRNN(128, 128, "tanh", "glorot_uniform", "identity")

    def flagged(profile):
        (entry,) = [a for a in profile.meta["approximations"] if a["detail"] == "rare_paths"]
        return {t for lo, hi in entry["layers"] for t in range(lo, hi + 1)}

    default = flagged(analyze_rnn(rnn, 50))
    small = flagged(analyze_rnn(rnn, 50, samples=64 * 3))
    assert default and default < small and 0 in default
    cmp = compare_rnn(rnn, 50, batch=64, seeds=3)
    assert flagged(cmp.analytic) == small
    # where the check passes for this measurement, the measurement does reach the
    # expectation: every unflagged step agrees within its 95% interval's standard error
    # (two-sided, a family-wise false-alarm rate of 1e-3 over those steps, Bonferroni)
    rest = [t for t in range(50) if t not in small]
    z = stats.norm.ppf(1 - 1e-3 / (2 * len(rest)))
    for t in rest:
        e, a = cmp.empirical[t], cmp.analytic[t]
        assert abs(e.grad_var - a.grad_var) <= z * e.grad_var_ci / 1.96, t
