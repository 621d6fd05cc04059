"""LSUV reaches its target variance; Fixup's factor and its application."""

import numpy as np
import pytest

from varprop import train
from varprop.datasets import load_digits
from varprop.lsuv import apply_fixup, fixup_scaling, lsuv


@pytest.fixture(scope="module")
def digits_batch():
    return (load_digits().x / 16.0)[:400]


def _layer_vars(weights, acts, x):
    """Var and per-unit mean of every layer's z, in numpy float64."""
    h = x.astype(np.float64)
    out = []
    for (w, b), act in zip(weights, acts):
        z = h @ w.astype(np.float64) + b
        out.append((z.var(), z.mean(axis=0)))
        h = act(z)
    return out


@pytest.mark.parametrize("activation", ["relu", "tanh", "selu"])
def test_lsuv_reaches_target_variance(digits_batch, activation):
    model = train.classifier([64, 128, 96, 64, 10], activation, seed=0)
    before = [w.copy() for w, _ in model.weights]
    res = lsuv(model, digits_batch, seed=1)
    assert res.converged
    for rec in res.records:
        assert abs(rec.final_var - 1.0) <= 0.01 and rec.iterations <= 10
    measured = _layer_vars(res.weights, res.model.activations, digits_batch)
    for var, _ in measured:
        assert var == pytest.approx(1.0, abs=0.011)
    for w, (w_old, _) in zip(before, model.weights):  # the input model is untouched
        np.testing.assert_array_equal(w, w_old)


def test_lsuv_orthonormal_preinit_and_determinism(digits_batch):
    w_list = [np.ones((64, 32), np.float32), np.ones((32, 16), np.float32), np.ones((16, 10), np.float32)]
    res = lsuv(w_list, digits_batch, seed=3)
    for (w, b), rec in zip(res.weights, res.records):
        q = w.astype(np.float64) / rec.scale
        np.testing.assert_allclose(q.T @ q, np.eye(w.shape[1]), atol=1e-5)
        assert np.all(b == 0)
    again = lsuv(w_list, digits_batch, seed=3)
    for (w1, _), (w2, _) in zip(res.weights, again.weights):
        np.testing.assert_array_equal(w1, w2)
    weights, records = res  # unpacks as (weights, records)
    assert len(weights) == len(records) == 3 and res.model is None


def test_lsuv_other_target_and_tolerance(digits_batch):
    model = train.classifier([64, 64, 64, 10], "relu", seed=0, dtype=np.float64)
    res = lsuv(model, digits_batch, target_var=2.5, tol=1e-6, seed=0)
    assert res.converged
    for var, _ in _layer_vars(res.weights, res.model.activations, digits_batch):
        assert var == pytest.approx(2.5, abs=1e-6)


def test_lsuv_with_biases_iterates_and_center_zeroes_means(digits_batch):
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((64, 48)), 0.5 * rng.standard_normal(48)),
             (rng.standard_normal((48, 10)), 0.5 * rng.standard_normal(10))]
    res = lsuv(pairs, digits_batch, orthogonal=False, tol=1e-4, max_iter=50)
    assert res.converged and max(r.iterations for r in res.records) > 1
    for (w, b), (w0, b0) in zip(res.weights, pairs):
        np.testing.assert_array_equal(b, b0)  # the mean is not corrected by default
    centred = lsuv(pairs, digits_batch, orthogonal=False, center=True, tol=1e-6)
    acts = [train.classifier([64, 48, 10]).activations[0], train.classifier([64, 48, 10]).activations[1]]
    for (var, unit_mean), rec in zip(_layer_vars(centred.weights, acts, digits_batch), centred.records):
        assert var == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(unit_mean, 0, atol=1e-9)
        assert rec.iterations == 1


def test_lsuv_stops_when_biases_alone_exceed_the_target(digits_batch):
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((64, 10)), 3 * rng.standard_normal(10))]
    assert np.var(pairs[0][1]) > 1.5
    res = lsuv(pairs, digits_batch, orthogonal=False, max_iter=50, activation="linear")
    assert not res.converged and res.records[0].iterations < 50
    fixed = lsuv(pairs, digits_batch, orthogonal=False, center=True, activation="linear")
    assert fixed.converged


def test_lsuv_max_iter_and_dead_layers(digits_batch):
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((64, 8)), 0.3 * rng.standard_normal(8))]
    res = lsuv(pairs, digits_batch, orthogonal=False, tol=1e-12, max_iter=1, activation="linear")
    assert res.records[0].iterations == 1
    dead = lsuv([np.ones((64, 4))], np.zeros((10, 64)), activation="linear")
    assert not dead.converged and dead.records[0].final_var == 0
    assert "NO" in dead.table()


def test_lsuv_bad_input(digits_batch):
    model = train.classifier([64, 8, 10], seed=0)
    with pytest.raises(ValueError, match="target_var"):
        lsuv(model, digits_batch, target_var=0)
    with pytest.raises(ValueError, match="tol"):
        lsuv(model, digits_batch, tol=-1)
    with pytest.raises(ValueError, match="max_iter"):
        lsuv(model, digits_batch, max_iter=0)
    with pytest.raises(ValueError, match="data"):
        lsuv(model, digits_batch[:, :10])
    with pytest.raises(ValueError, match="at least 2"):
        lsuv(model, digits_batch[:1])
    with pytest.raises(TypeError, match="model_or_weights"):
        lsuv("net", digits_batch)
    with pytest.raises(ValueError, match="takes 9 inputs"):
        lsuv([np.ones((64, 8)), np.ones((9, 2))], digits_batch)
    with pytest.raises(TypeError, match="center"):
        lsuv(model, digits_batch, center="yes")


def test_fixup_scaling_values():
    assert fixup_scaling(16, 2) == pytest.approx(0.25)
    assert fixup_scaling(8, 3) == pytest.approx(8 ** -0.25)
    assert fixup_scaling(1, 5) == 1.0
    with pytest.raises(ValueError, match="layers_per_branch"):
        fixup_scaling(4, 1)
    with pytest.raises(ValueError, match="n_branches"):
        fixup_scaling(0, 2)
    with pytest.raises(TypeError, match="n_branches"):
        fixup_scaling(2.0, 2)


def test_apply_fixup():
    rng = np.random.default_rng(0)
    branches = [[rng.standard_normal((8, 8)) for _ in range(3)] for _ in range(4)]
    classifier = (rng.standard_normal((8, 2)), np.ones(2))
    originals = [[w.copy() for w in br] for br in branches]
    new, cls = apply_fixup(branches, classifier=classifier)
    factor = 4 ** (-1 / 4)
    for br, old in zip(new, originals):
        np.testing.assert_allclose(br[0], old[0] * factor)
        np.testing.assert_allclose(br[1], old[1] * factor)
        assert np.all(br[2] == 0)
    assert np.all(cls[0] == 0) and np.all(cls[1] == 0)
    for br, old in zip(branches, originals):  # inputs untouched
        for w, w0 in zip(br, old):
            np.testing.assert_array_equal(w, w0)
    # a residual stack with Fixup branches is the identity map at initialization
    x = rng.standard_normal((5, 8))
    h = x
    for br in new:
        f = h
        for i, w in enumerate(br):
            f = f @ w
            f = np.maximum(f, 0) if i < len(br) - 1 else f
        h = h + f
    np.testing.assert_array_equal(h, x)
    pairs, _ = apply_fixup([[(np.ones((2, 2)), np.ones(2)), (np.ones((2, 2)), np.ones(2))]])
    assert np.all(pairs[0][1][0] == 0) and np.all(pairs[0][1][1] == 0)
    with pytest.raises(TypeError, match="branches"):
        apply_fixup([])
