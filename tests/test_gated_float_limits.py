"""measure_gated applies the recurrent measurement's float32 limits (docs/recurrent.md,
section 6): seeds whose per-step mean square underflowed float32 are left out of the
displayed mean (kept per seed for the test), and the steps are listed in the meta."""

import numpy as np

from varprop.recurrent.gated import LSTM, measure_gated
from varprop.recurrent.measure import underflow_floor

# A small recurrent kernel: the gradient through time shrinks about 1e3 (in variance) every
# six steps, so over 150 steps the earliest ones fall below float32's resolution.
_CELL = LSTM(8, 16, "glorot_uniform", {"name": "random_normal", "stddev": 0.05}, "zeros",
             "keras", unit_forget_bias=False)


def test_underflowed_seeds_are_left_out_of_the_displayed_mean():
    p = measure_gated(_CELL, 150, batch=8, seeds=3, dtype=np.float32)
    floor = underflow_floor(np.float32)
    seeds = np.array(p.seed_values["grad_var"])
    below = (seeds < floor).any(axis=0)
    assert below.any() and not below.all()  # the case is exercised
    assert p.meta["underflow"]["grad_var"] == np.flatnonzero(below).tolist()
    shown = np.array(p.column("grad_var"))
    for t in np.flatnonzero(below):
        kept = seeds[:, t][seeds[:, t] >= floor]
        expected = kept.mean() if kept.size else 0.0
        assert shown[t] == expected or abs(shown[t] - expected) <= 1e-12 * expected
    # steps above the floor are the plain mean over the seeds
    t = int(np.flatnonzero(~below)[0])
    assert abs(shown[t] - seeds[:, t].mean()) <= 1e-12 * seeds[:, t].mean()
    assert p.meta["overflow"] == {} and not p.meta["nonfinite"]


def test_float64_leaves_nothing_out():
    p = measure_gated(_CELL, 40, batch=8, seeds=2, dtype=np.float64)
    assert p.meta["underflow"] == {} and p.meta["underflow_floor"] == 0.0
