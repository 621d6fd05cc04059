"""muP's known result, reproduced by the coordinate check (Yang et al. 2022, Tensor
Programs V, arXiv 2203.03466, Figure 5 / Table 3): after a few Adam steps, under SP the
hidden and readout updates grow with width, under muP every layer's stays flat; at step
0 the measured slopes agree with the mean-field theory.

Tolerances: each slope is the mean of 5 per-seed slopes; its seed-spread tolerance is
t_{4, 0.995} * sd / sqrt(5) (false-alarm rate 1% per comparison, two-sided), and the
verdict's tolerance adds the floor 1/4 (varprop/sweep/analysis.py, docs/sweep.md)."""

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from varprop import sweep
from varprop.sweep import analysis


@pytest.fixture(scope="module")
def result():
    grid = sweep.Grid(widths=(64, 128, 256, 512, 1024), seeds=(0, 1, 2, 3, 4), steps=2,
                      parameterizations=("sp", "mup"), optimizers=("adam",),
                      learning_rates=(0.01,))
    return {s["config"]["parameterization"]: s
            for s in sweep.run(grid, executor="serial").series}


def test_sp_readout_and_hidden_updates_grow_with_width(result):
    sp = result["sp"]
    for step in (1, 2):
        for layer in (1, 2, 3):  # hidden and readout; the input layer's fan_in is fixed
            e = sp["slopes"]["dz"][step][layer]
            # clearly above 0: the whole tolerance band lies above the floor of growth
            assert e["slope"] - e["tol"] > 0, (step, layer, e)
            assert e["verdict"].startswith("grows")
        assert "expected" in sp["slopes"]["dz"][step][3]["note"]


def test_mup_every_layer_update_is_flat(result):
    mup = result["mup"]
    for step in (1, 2):
        for layer, e in enumerate(mup["slopes"]["dz"][step]):
            assert abs(e["slope"]) <= e["tol"], (step, layer, e)
            assert e["verdict"] == "stable"


def test_step0_theory_and_measured_slopes_agree(result):
    crit = student_t.ppf(1 - analysis.FALSE_ALARM / 2, 4)
    for name in ("sp", "mup"):
        s = result[name]
        for layer, e in enumerate(s["slopes"]["z"][0]):
            theory = s["theory_slope"][layer]
            # the statistical part only (no floor): the theory is the infinite-width
            # mean of E[z^2], the measurement its sample at 5 seeds
            tol = crit * e["sd"] / math.sqrt(5)
            assert abs(e["slope"] - theory) <= tol, (name, layer, e["slope"], theory, tol)
    # and the theory itself: muP's readout RMS ~ width^-1/2, everything else flat
    assert result["mup"]["theory_slope"][3] == pytest.approx(-0.5, abs=1e-9)
    assert np.allclose(result["sp"]["theory_slope"], 0.0, atol=1e-9)
