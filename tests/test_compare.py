"""Analytic against measured profiles, and the verdicts a person reads."""

import math

import numpy as np
import pytest

import varprop
from varprop.compare import verdict


@pytest.mark.parametrize("activation, init", [("relu", "he_normal"), ("tanh", "glorot_normal"),
                                              ("selu", "lecun_normal")])
def test_measured_matches_theory_for_a_wide_net(activation, init):
    depth, width, batch, seeds = 6, 512, 512, 4
    cmp = varprop.compare(varprop.mlp([width] * (depth + 1), activation, init),
                          batch=batch, seeds=seeds, n_threads=1)
    # Finite width: log z_var at layer l wanders with variance ~ 5 * l / width (docs/theory.md
    # section 7, He ReLU; smaller for saturating activations), so across `seeds` networks
    # the mean of z_var sits within 4 standard errors of that spread of the theory.
    for rec_a, rec_e in zip(cmp.analytic, cmp.empirical):
        log_sd = math.sqrt(5 * (rec_a.index + 1) / width / seeds)
        assert abs(math.log(rec_e.z_var / rec_a.z_var)) < 4 * log_sd + 4 * math.sqrt(2 / batch)
    assert cmp.analytic_verdict.kind == cmp.empirical_verdict.kind


def test_comparison_rows_have_errors_and_z_scores():
    cmp = varprop.compare(varprop.mlp([64] * 4, "relu", "he_normal"), batch=128, seeds=3,
                          n_threads=1)
    rows = cmp.rows_for("z_var")
    assert len(rows) == 3
    for r in rows:
        assert math.isfinite(r["rel_error"]) and math.isfinite(r["z_score"])
        assert r["rel_error"] == pytest.approx((r["measured"] - r["analytic"]) / r["analytic"])
    assert "theory:" in cmp.table() and "measured:" in cmp.table()


def test_verdicts_read_like_the_seeds():
    net = lambda act, init: varprop.mlp([256] * 31, act, init)  # noqa: E731
    he = verdict(varprop.analyze(net("relu", "he_normal")))
    assert he.kind == "preserves" and he.forward_factor == pytest.approx(1.0)
    xavier = verdict(varprop.analyze(net("relu", "lecun_normal")))
    assert xavier.kind == "vanishes" and xavier.forward_factor == pytest.approx(0.5)
    assert "x0.5 per layer" in xavier.message
    big = verdict(varprop.analyze(net("linear", "he_normal")))
    assert big.kind == "explodes" and big.forward_factor == pytest.approx(2.0)
    zeros = verdict(varprop.analyze(net("relu", "zeros")))
    assert zeros.kind == "symmetric" and "same function" in zeros.message


def test_profiles_of_different_depths_do_not_compare():
    a = varprop.analyze(varprop.mlp([8] * 3, "relu"))
    b = varprop.analyze(varprop.mlp([8] * 4, "relu"))
    with pytest.raises(ValueError, match="2 and 3 layers"):
        varprop.compare(varprop.mlp([8] * 3, "relu"), analytic=a, empirical=b)


def test_top_level_api_is_importable():
    for name in varprop.__all__:
        assert hasattr(varprop, name), name
    assert np.isfinite(varprop.edge_of_chaos("tanh", 0.05))
