"""Dynamical isometry through time: the spread of the state Jacobian's singular values.

Orthogonal and Gaussian recurrent kernels of the same entry variance have the same
mean-field recursion: the mean squared singular value of the Jacobian
``J_t = d h_t / d h_{-1} = W_h D_0 W_h D_1 ... W_h D_t`` (``D_s = diag phi'(z_s)``) is
the product of the per-step factors ``chi_s = H v_h E[phi'(z_s)^2]`` either way. They
differ in how the squared singular values spread around that mean (Pennington,
Schoenholz and Ganguli 2017, arXiv 1711.04735; Chen, Pennington and Schoenholz 2018,
arXiv 1806.05394). With the squared singular values ``lambda`` normalized to mean 1,
free probability adds, step by step, the variance of each factor::

    Var[lambda_t] = sum_{s <= t} (mu2_s / mu1_s^2 - 1 - s1),   mu_k = E[phi'(z_s)^{2k}]

with ``s1 = -1`` for a Gaussian kernel (its ``W W^T`` is Marchenko-Pastur, variance 1)
and ``s1 = 0`` for an orthogonal one (docs/recurrent.md). A linear network with an
orthogonal kernel is exactly isometric (variance 0); a Gaussian one spreads linearly in
time. The prediction assumes the tied kernel and the diagonal factors are asymptotically
free, as the mean field does; :func:`measure_jacobian_spread` checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._validate import positive_int, seed_list
from .spec import SimpleRNN
from .theory import analyze_rnn, check_run

__all__ = ["JacobianSpread", "predict_jacobian_spread", "measure_jacobian_spread",
           "MAX_JACOBIAN_UNITS"]

#: The measurement multiplies H x H matrices at every step: at most this many units.
MAX_JACOBIAN_UNITS = 2048
_HERMITE = np.polynomial.hermite_e.hermegauss(64)


@dataclass
class JacobianSpread:
    """Per step: ``mean`` of the squared singular values of ``J_t`` and ``variance`` of
    them normalized to mean 1 (theory: ``kind="analytic"``; measured: means over the
    samples with 95% half-widths ``variance_ci``)."""

    kind: str
    mean: np.ndarray
    variance: np.ndarray
    variance_ci: np.ndarray | None = None
    structure: str = "iid"


def _derivative_moments(act: Any, mean: float, var: float) -> tuple[float, float]:
    """``E[phi'^2]`` and ``E[phi'^4]`` for N(mean, var) (64-point Gauss-Hermite; a kink
    at 0 costs O(1/64^2) here, below the measurement's spread)."""
    nodes, weights = _HERMITE
    d = act.derivative(mean + math.sqrt(var) * nodes) ** 2
    w = weights / weights.sum()
    return float(w @ d), float(w @ (d * d))


def predict_jacobian_spread(rnn: SimpleRNN, steps: int, *, inputs: str = "gaussian",
                            input_var: float = 1.0) -> JacobianSpread:
    """The free-probability prediction (module doc) for ``rnn`` over ``steps`` steps.
    Identity recurrence is not random (its spread comes from the D's alone: ``s1 = 0``);
    a kernel of another structure raises a ValueError."""
    profile = analyze_rnn(rnn, steps, inputs=inputs, input_var=input_var)
    w = rnn.recurrent_init.moments(rnn.recurrent_shape)
    if w.structure == "iid":
        s1, chi_w = -1.0, rnn.units * w.var
    elif w.structure in ("orthogonal", "identity"):
        s1 = 0.0
        chi_w = rnn.units * w.var if w.structure == "orthogonal" else \
            (w.mean * rnn.units) ** 2
    else:
        raise ValueError(f"predict_jacobian_spread: no prediction for a recurrent kernel of "
                         f"structure {w.structure!r}")
    mean, var = np.empty(steps), np.empty(steps)
    m, v = 1.0, 0.0
    for t, rec in enumerate(profile):
        mu1, mu2 = _derivative_moments(rnn.activation, rec.z_mean, rec.z_var)
        m *= chi_w * mu1
        v += (mu2 / (mu1 * mu1) - 1.0 - s1) if mu1 > 0 else math.inf
        mean[t], var[t] = m, v
    return JacobianSpread("analytic", mean, var, None, w.structure)


def measure_jacobian_spread(rnn: SimpleRNN, steps: int, *, samples: int = 4,
                            seeds: "int | Sequence[int]" = 3, inputs: str = "gaussian",
                            input_var: float = 1.0) -> JacobianSpread:
    """Squared singular values of ``J_t`` measured on ``samples`` input sequences for
    each seed's drawn weights (float64, plain numpy: ``J`` is multiplied out step by
    step, and its moments come from traces, no SVD)."""
    from .measure import _INPUT, draw_inputs, draw_parameters
    from .._empirical_run import stream
    steps, inputs, _ = check_run(steps, inputs, "last")
    samples = positive_int("samples", samples)
    if rnn.units > MAX_JACOBIAN_UNITS:
        raise ValueError(f"measure_jacobian_spread: at most {MAX_JACOBIAN_UNITS} units "
                         f"(it multiplies H x H matrices at every step); got {rnn.units}")
    act, n = rnn.activation, rnn.units
    means, variances = [], []
    for seed in seed_list("seeds", seeds, int_is_count=True, unique=True):
        w_x, w_h, b = (None if a is None else np.asarray(a, dtype=np.float64)
                       for a in draw_parameters(rnn, seed, np.float64))
        x = draw_inputs(rnn, steps, samples, inputs, input_var, stream(seed, _INPUT),
                        np.float64)
        for k in range(samples):
            h = np.zeros(n)
            jac = np.eye(n)
            m_row, v_row = np.empty(steps), np.empty(steps)
            for t in range(steps):
                z = x[t, k] @ w_x + h @ w_h + (0.0 if b is None else b)
                h = act.value(z)
                jac = (jac @ w_h) * act.derivative(z)[None, :]
                gram = jac @ jac.T
                m1 = np.trace(gram) / n
                m2 = np.sum(gram * gram) / n
                m_row[t], v_row[t] = m1, (m2 / (m1 * m1) - 1.0) if m1 > 0 else math.nan
            means.append(m_row)
            variances.append(v_row)
    mean_arr, var_arr = np.array(means), np.array(variances)
    from scipy import stats
    count = var_arr.shape[0]
    ci = (stats.t.ppf(0.975, count - 1) * var_arr.std(axis=0, ddof=1) / math.sqrt(count)
          if count > 1 else np.full(steps, np.nan))
    return JacobianSpread("empirical", mean_arr.mean(axis=0), var_arr.mean(axis=0), ci,
                          rnn.recurrent_init.moments(rnn.recurrent_shape).structure)
