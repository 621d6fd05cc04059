"""Issue 13 (C): the trainer's flags and seeds are checked by name; a stateful
optimizer refuses a model of other shapes with a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from varprop import train
from varprop.datasets import make_toy_2d


@pytest.mark.parametrize("kwargs, match", [
    ({"shuffle": "no"}, "shuffle must be True or False; got 'no'"),
    ({"progress": "yes"}, "progress must be True or False; got 'yes'"),
    ({"track_gradients": None}, "track_gradients must be True or False; got None"),
    ({"shuffle": 1}, "shuffle must be True or False"),
])
def test_fit_flags_must_be_booleans(kwargs, match):
    data = make_toy_2d(20, "blobs", seed=0)
    model = train.classifier([2, 4, 2], seed=0)
    before = [w.copy() for w, _ in model.weights]
    with pytest.raises(TypeError, match=match):
        train.fit(model, data.x, data.y, epochs=1, **kwargs)
    for w, (after, _) in zip(before, model.weights):
        np.testing.assert_array_equal(w, after)  # refused before any step


def test_fit_accepts_numpy_bools():
    data = make_toy_2d(20, "blobs", seed=0)
    model = train.classifier([2, 4, 2], seed=0)
    train.fit(model, data.x, data.y, epochs=1, shuffle=np.bool_(False), seed=0)


def test_negative_seed_is_named_everywhere():
    data = make_toy_2d(20, "blobs", seed=0)
    model = train.classifier([2, 4, 2], seed=0)
    with pytest.raises(ValueError, match=r"^seed must be .*got -1"):
        train.fit(model, data.x, data.y, epochs=1, seed=-1)
    with pytest.raises(ValueError, match=r"^seed must be .*got -1"):
        train.classifier([2, 4, 2], seed=-1)


@pytest.mark.parametrize("name", ["adam", "momentum", "nesterov"])
def test_stateful_optimizer_reused_on_other_shapes(name):
    data = make_toy_2d(20, "blobs", seed=0)
    opt = train.get_optimizer(name)
    train.fit(train.classifier([2, 4, 2], seed=0), data.x, data.y, epochs=1, optimizer=opt, seed=0)
    other = train.classifier([2, 5, 2], seed=0)  # same number of arrays, other shapes
    with pytest.raises(ValueError, match=r"belongs to a model with parameter shapes .*reset\(\)"):
        train.fit(other, data.x, data.y, epochs=1, optimizer=opt, seed=0)
    opt.reset()  # the documented way to reuse it
    train.fit(other, data.x, data.y, epochs=1, optimizer=opt, seed=0)


def test_sgd_has_no_state_and_moves_between_models():
    data = make_toy_2d(20, "blobs", seed=0)
    opt = train.SGD()
    train.fit(train.classifier([2, 4, 2], seed=0), data.x, data.y, epochs=1, optimizer=opt)
    train.fit(train.classifier([2, 5, 2], seed=0), data.x, data.y, epochs=1, optimizer=opt)
