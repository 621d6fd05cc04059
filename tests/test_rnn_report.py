"""The Elman RNN's float32 limits in measure_rnn and ``varprop report --arch rnn`` (issue 15).

* Overflow: a state or a gradient through time beyond float32's range (``ones`` recurrent
  weights) is recorded as overflowed (+inf per seed, ``meta["overflow"]``), with no
  RuntimeWarning, never NaN; where the theory too is beyond float32's range the step is
  left out of the log-space test, as ``varprop.measure``'s overflowed layers are.
* Underflow: seeds whose float32 mean square fell below the floor are left out of the
  displayed mean over seeds (0, with no interval, when every seed did), the per-seed
  values (which the test reads) kept as measured.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats

from _env import subprocess_env
from varprop.agreement import agreement
from varprop.recurrent import SimpleRNN, analyze_rnn, rnn_preset
from varprop.recurrent.measure import FIELDS, measure_rnn, step_records, underflow_floor

pytest.importorskip("varprop._rnn")

_F32_MAX = float(np.finfo(np.float32).max)


def test_overflow_is_recorded_as_overflowed_without_warnings():
    """ReLU with all-ones kernels: the state grows ~ H per step, and its entries pass
    float32's 3.4e38 (Var z ~ 1e77) after ~21 steps for H = 64; the gradient through time
    does so far from the loss."""
    rnn = SimpleRNN(64, 64, "relu", "ones", "ones")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning fails the test
        m = measure_rnn(rnn, 30, batch=16, seeds=3)
    over = m.meta["overflow"]
    assert over["z_var"] and over["grad_var"] and m.meta["nonfinite"]
    theory = analyze_rnn(rnn, 30)
    for field in ("z_var", "grad_var"):
        seeds = np.array(m.seed_values[field])
        assert not np.isnan(seeds).any(), field  # overflowed is +inf, never NaN
        steps = over[field]
        assert np.all(np.isinf(seeds[:, steps]) | (seeds[:, steps] > _F32_MAX))
        # the overflowed steps are exactly those where the float32 values did not fit:
        # the theory there is beyond float32's range too
        assert all(theory[t].z_var > _F32_MAX or theory[t].grad_var > _F32_MAX
                   for t in steps), field
    ag = agreement(theory, m)
    for t in ag.tests:
        if t.layer in over.get(t.field, []):
            assert t.status == "untestable", t  # left out of the test, not a disagreement


def test_underflowed_seeds_are_left_out_of_the_displayed_mean():
    """A synthetic step: two seeds resolved, one underflowed to 0, one below the floor;
    the displayed mean and interval are those of the two resolved seeds alone (scipy's t
    interval as the reference), and a step where no seed is resolved shows 0 with no
    interval, while an exact zero at every seed stays 0 +- 0."""
    floor = underflow_floor(np.float32)
    assert floor == pytest.approx((10 * np.finfo(np.float32).tiny) ** 2)
    rnn = SimpleRNN(4, 8)
    arr = np.ones((4, len(FIELDS), 3))
    g = FIELDS.index("grad_var")
    arr[:, g, 0] = [0.0, 1e-80, 2e-60, 4e-60]
    arr[:, g, 1] = [0.0, 1e-80, 3e-90, 0.0]
    arr[:, g, 2] = 0.0
    records, per_seed = step_records(arr, FIELDS, rnn, floor=floor)
    kept = np.array([2e-60, 4e-60])
    half = stats.t.ppf(0.975, 1) * kept.std(ddof=1) / math.sqrt(2)
    assert records[0].grad_var == pytest.approx(3e-60, rel=1e-12)
    assert records[0].grad_var_ci == pytest.approx(half, rel=1e-12)
    assert records[1].grad_var == 0.0 and math.isnan(records[1].grad_var_ci)
    assert records[2].grad_var == 0.0 and records[2].grad_var_ci == 0.0
    # the per-seed values (the test's input) as measured
    assert [seed[0] for seed in per_seed["grad_var"]] == [0.0, 1e-80, 2e-60, 4e-60]


def test_measure_rnn_leaves_underflow_out_of_the_seeds_mean():
    """The seeds' "random" RNN (N(0, 0.01^2) kernels, one-hot tokens): its float32
    gradient 50 steps back is ~1e-93 in theory, below the floor; before this rule the
    displayed mean averaged exact zeros with the other seeds' subnormal remains."""
    rnn = rnn_preset("random")
    m = measure_rnn(rnn, 50, batch=64, seeds=3, inputs="one_hot")
    seeds = np.array(m.seed_values["grad_var"])
    floor = m.meta["underflow_floor"]
    low = np.flatnonzero((seeds < floor).any(axis=0))
    assert 0 in low and low.tolist() == m.meta["underflow"]["grad_var"]
    for t in range(50):
        kept = seeds[:, t][seeds[:, t] >= floor]
        want = kept.mean() if kept.size else 0.0
        assert m[t].grad_var == pytest.approx(want, rel=1e-12), t
    # float64 resolves these gradients: nothing is left out there
    m64 = measure_rnn(rnn, 50, batch=64, seeds=3, inputs="one_hot", dtype=np.float64)
    assert m64.meta["underflow"] == {} and m64[0].grad_var > 0


def _report(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "varprop", "report", "--arch", "rnn", *args,
                           "-q", "--no-out"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env=subprocess_env())


def test_report_rnn_shows_overflow_not_inf_or_nan(tmp_path):
    args = ["-i", "ones", "zeros", "-a", "relu", "linear", "--depth", "30", "--width", "64",
            "--seeds", "3", "--batch", "16"]
    out = _report(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no RuntimeWarning (the zeros x relu ratio is 0/0)
    rows = [line for line in out.stdout.splitlines()
            if line.split()[:2] in (["ones", "relu"], ["linear"]) and "overflow" in line]
    assert len(rows) == 2, out.stdout
    for row in rows:  # the measured ratios of both ones rows overflowed
        assert row.count("overflow") == 2 and " inf " not in row and "nan" not in row
    data = json.loads(_report(tmp_path, *args, "--format", "json").stdout)
    for e in data["results"]:
        meta = e["measured"]["profile"]["meta"]
        if e["initializer"] == "ones":
            assert meta["overflow"]["z_var"] and meta["overflow"]["grad_var"]
            assert e["agree"]  # the overflowed steps are untestable, the others agree
        else:
            assert meta["overflow"] == {}


def _ones_relu_chain_reference(units: int, steps: int, n: int, seed: int
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo of the all-ones ReLU RNN in float64, an independent reference: every
    unit is the same, ``z_t = s_t + H relu(z_(t-1))`` with ``s_t ~ N(0, F)`` (F = H
    inputs of variance 1 summed by the ones kernel), and the gradient of a standard
    normal loss on h_(T-1) gives ``Var dL/dz_t = H^(2(T-1-t)-1) P(z_s > 0, s = t..T-1)``
    for t < T - 1 (the first hop back sums H independent reads, later hops coherent
    ones) and ``P(z_(T-1) > 0)`` at the last step. Returns (reference, relative standard
    error) per step."""
    rng = np.random.default_rng(seed)
    z = np.empty((steps, n))
    prev = np.zeros(n)
    for t in range(steps):
        z[t] = rng.standard_normal(n) * math.sqrt(units) + units * np.maximum(prev, 0.0)
        prev = z[t]
    alive = np.flip(np.cumprod(np.flip(z > 0, axis=0), axis=0), axis=0)  # positive t..T-1
    p = alive.mean(axis=1)
    scale = np.array([float(units) ** (2 * (steps - 1 - t) - 1) if t < steps - 1 else 1.0
                      for t in range(steps)])
    return scale * p, np.sqrt((1 - p) / (p * n))


_Z_1E5 = stats.norm.ppf(1 - 0.5e-5)  # two-sided false-alarm rate 1e-5 per step
_GRID = 1e-4  # the chain's grid error, docs/recurrent.md section 3


def test_ones_relu_theory_has_no_nan_and_matches_the_chain_at_every_step():
    """The identical-unit chain of an exploding all-ones ReLU RNN put far-tail centres
    beyond the next step's grid, whose empty kernel rows gave 0/0 = NaN at step 0 (the
    report's theory ratio read "nan"); later its grid, spread over the bulk at 48^t,
    could not hold the chains near 0 and P(z_t > 0) came out ~25% low from step 2 on
    (flagged coarse_chain). Now the chains near the kink are spread on a fine grid and
    the others carried as atoms (docs/recurrent.md, section 3): every step matches the
    Monte Carlo chain (per step, a two-sided false-alarm rate of 1e-5), nothing flagged."""
    prof = analyze_rnn(SimpleRNN(48, 48, "relu", "ones", "ones"), 12)
    th = prof.column("grad_var")
    assert np.all(np.isfinite(th))
    ref, se = _ones_relu_chain_reference(48, 12, 400_000, seed=0)
    for t in range(12):
        assert th[t] / ref[t] - 1 == pytest.approx(0.0, abs=_Z_1E5 * se[t] + _GRID), t
    assert prof.meta["approximations"] == []
