"""Split laws of the identity chain (docs/recurrent.md, sections 3 and 6): an expanding
piecewise-linear chain, whose uniform grid cannot resolve the input noise after a few
steps, against a Monte Carlo of the chain (tests/test_rnn_theory.py's ``_chains``: per
step E z^2, E phi^2 and Var dL/dz over 20 independent batches; each bound a t quantile at
a two-sided false-alarm rate of 1e-4 per check, fixed seed)."""

from __future__ import annotations

import numpy as np
import pytest

from test_rnn_theory import _bound, _chains
from varprop.activations import get_activation
from varprop.recurrent.identity_chain import chain_moments


@pytest.mark.parametrize("act_name,gain,drift,loss", [("relu", 6.0, 0.0, "last"),
                                                      ("leaky_relu", 5.0, 0.0, "sequence"),
                                                      ("relu", 4.0, -0.5, "sequence"),
                                                      ("linear", 3.0, 0.0, "last")])
def test_split_chain_matches_monte_carlo(act_name, gain, drift, loss):
    steps, sigma = 10, 1.0
    act = get_activation(act_name)
    reads = np.ones(steps) if loss == "sequence" else np.eye(steps)[-1]
    out = chain_moments(act, gain, drift, sigma, steps, reads)
    assert not out[:, 5].any()  # exact: no step flagged coarse
    rng = np.random.default_rng(5)
    mc = _chains(act, gain, sigma, steps, 20_000, rng, 0.0, loss, drift)
    for t in (0, 3, steps - 1):
        theory = (out[t, 1], out[t, 3], out[t, 4])
        for j, value in enumerate(theory):
            assert abs(mc[:, j, t].mean() - value) < _bound(mc[:, j, t]), (t, j)

