"""The exact one-unit law of a recurrent network with identity recurrence (IRNN).

With ``W_h = g I`` each unit runs its own chain ``z_t = g phi(z_{t-1}) + u_t + b``
(docs/recurrent.md): the input terms ``u_t`` are fresh Gaussians
``N(mu, sigma^2)`` at each step (Gaussian inputs), and the bias ``b`` is fixed over
time, so the unit is a Markov chain, not a Gaussian. For ReLU and ``g = 1`` it is
Lindley's reflected random walk, ``h_t = max(0, h_{t-1} + u_t)``, whose second moment
grows linearly in time (Spitzer's identity gives
``E[h_t^2] = n sigma^2 / 2 + sigma^2 / (2 pi) sum_{j+k<=n} 1/sqrt(jk)``, n = t + 1,
for mu = b = 0: :func:`relu_walk_second_moment`, the tests' independent reference).

The chain's law is carried on a grid: the law of ``z_t`` is a mixture of Gaussians of
width sigma centred at ``g phi(z_{t-1}) + mu + b``; its density, smooth at the scale
sigma, is evaluated on a uniform grid of ``mean +- 9 sd`` whose spacing stays below
sigma / 3 up to a hundred steps. A Riemann sum of such a density against a smooth
function errs by about ``exp(-2 pi^2 sigma^2 / h^2)``; against a kinked one (ReLU's
``phi^2``, its step ``phi'^2``) by O(h^2), with the kink placed midway between two
points: measured against the exact ReLU walk (Spitzer's second moment, Sparre
Andersen's ``P(z_{T-1} > 0) = 1 - C(2T, T) / 4^T``), 1e-4 relative at 100 steps,
far below any measurement's error. The gradient runs the chain backwards:
``F_t(z) = phi'(z)^2 (r_t + g^2 E[F_{t+1}(z_{t+1}) | z_t = z])`` with ``r_t`` = 1 where
the loss reads ``h_t``, and ``Var dL/dz_t = E[F_t(z_t)]``. A random bias is integrated
with Gauss-Hermite nodes.

Rare paths. With the loss on the last state, ``Var dL/dz_t = E[P_t]`` for the product
``P_t`` of the factors ``g^2 phi'(z_s)^2`` along the chain from ``t`` on. That
expectation can be carried by paths no measurement samples: an all-ones tanh network
keeps ``|z|`` near 128, where ``phi'`` is ~1e-111, and its expected gradient comes from
chains that stay near 0 at every step, with a probability that falls geometrically. The
paths that carry it are the typical paths of the measure tilted by ``P_t``, and their
probability is about ``exp(-D_t)``, ``D_t`` the relative entropy of the tilted measure
to the chain's own: ``D_t = E[P_t log P_t] / E[P_t] - log E[P_t]``. Both expectations
come out of the same backward pass (``L_t = E[P_t log P_t | z_t]`` obeys
``L_t = c_t (log c_t E[F_{t+1} | z_t] + E[L_{t+1} | z_t])``, ``c_t`` the step's factor).
Where ``D_t`` passes ``log(1e6)`` a measured mean of any practical sample falls far
short of the expectation, and those steps are flagged (``rare_paths``). For ReLU with
``g = 1``, ``P_t`` is the indicator that the walk stays positive, so ``D_0 =
-log P(S_1 > 0, ..., S_T > 0) = -log(C(2T, T) / 4^T)`` (Sparre Andersen): a few nats,
not flagged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..profile import LayerRecord

__all__ = ["identity_profile", "chain_moments", "relu_walk_second_moment", "GRID_POINTS",
           "RARE_PATHS_NATS", "tilted_entropy"]

#: Points of the grid that carries the law of z_t.
GRID_POINTS = 601
#: Half-width of the grid in standard deviations of z_t.
_SPAN = 9.0
#: Input noise below this share of the spread of the chain is negligible (its effect on
#: the moments is of the order of its square).
_NEGLIGIBLE = 1e-3
#: Gauss-Hermite nodes for a random bias.
_BIAS_NODES = 16
#: Relative entropy (nats) of the gradient's tilted paths above which they are too rare
#: for a measurement to sample: probability about exp(-RARE_PATHS_NATS) = 1e-6 (module doc).
RARE_PATHS_NATS = math.log(1e6)


def relu_walk_second_moment(n: int, sigma2: float = 1.0) -> float:
    """``E[max(0, S_1, ..., S_n)^2]`` for a centred Gaussian random walk with step
    variance ``sigma2`` (Spitzer's identity; the law of ``h_{n-1}`` of a ReLU IRNN)."""
    j = np.arange(1, n + 1, dtype=float)
    # sum_{j + k <= n} (jk)^(-1/2) = sum_j j^(-1/2) * sum_{k <= n - j} k^(-1/2)
    inner = np.concatenate([[0.0], np.cumsum(1.0 / np.sqrt(j))])
    pairs = float(np.sum(inner[n - j.astype(int)] / np.sqrt(j)))
    return sigma2 * (n / 2.0 + pairs / (2.0 * math.pi))


def _next_law(points: np.ndarray, weights: np.ndarray, act: Any, gain: float, drift: float,
              sigma: float, n: int) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """``(grid, masses, smoothed, coarse)``: the law of the next pre-activation.

    Without input noise the points move deterministically (``smoothed`` False). So they
    do when the chain has spread so far that the grid cannot resolve the noise (spacing
    above sigma): an exploding chain, where the noise no longer matters (below
    ``_NEGLIGIBLE`` of the spread), or a very long IRNN, where it does (``coarse``
    True: the caller flags those steps)."""
    centres = gain * act.value(points) + drift
    mean = float(weights @ centres)
    spread2 = float(weights @ (centres - mean) ** 2)
    if sigma == 0.0:
        return centres, weights, False, False
    sd = math.sqrt(spread2 + sigma * sigma) if math.isfinite(spread2) else math.inf
    if not 2.0 * _SPAN * sd / (n - 1) <= sigma:
        # negligible for the spread, the noise still decides the side of a kink or bend
        # for the chains near it (an exploding all-ones ReLU chain came out ~25% low in
        # P(z > 0), tests/test_rnn_report.py): only a linear chain is exempt
        negligible = sigma <= _NEGLIGIBLE * sd and act.name == "linear"
        return centres, weights, False, not negligible
    grid = _grid(mean, sd, n, act)
    masses = weights @ _kernel(grid, centres, sigma)
    return grid, masses / masses.sum(), True, False


def _grid(mean: float, sd: float, n: int, act: Any) -> np.ndarray:
    """``n`` uniform points over ``mean +- 9 sd``, shifted (by under one spacing) so that
    a kink of the activation falls midway between two points: a Riemann sum of phi'^2,
    a step at the kink, then errs by O(h^2) instead of O(h)."""
    lo, h = mean - _SPAN * sd, 2.0 * _SPAN * sd / (n - 1)
    kinks = getattr(act, "kinks", ())
    if kinks and h > 0:
        offset = ((lo - kinks[0]) / h) % 1.0
        lo += (0.5 - offset) * h  # the kink midway between two points
    return lo + h * np.arange(n)


def _kernel(grid: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    """``K[i, k]`` = Gaussian density of grid point k around centre i (unnormalized)."""
    d = (grid[None, :] - centres[:, None]) / sigma
    return np.exp(-0.5 * d * d)


def chain_moments(act: Any, gain: float, drift: float, sigma: float, steps: int,
                  reads: np.ndarray, n: int = GRID_POINTS, fresh_share: float = 1.0
                  ) -> np.ndarray:
    """Per step ``[E z, E z^2, E phi, E phi^2, Var dL/dz, coarse, E[P log P]]`` (shape
    ``(steps, 7)``) of one unit's chain with a fixed drift (input mean plus bias);
    ``coarse`` is 1 where the grid could not resolve non-negligible input noise; the
    last column is the rare-path term of the module doc when the loss reads only the
    last step (else NaN): :func:`tilted_entropy` turns it into ``D_t``.

    ``fresh_share`` is what the first hop back keeps of a loss gradient read at a step:
    1 for identity recurrence (each unit passes its own gradient on), ``1 / H`` when every
    unit is identical (a constant ``W_h = m``: the ``H`` independent reads sum
    incoherently, ``H m^2``, and from then on coherently, ``(H m)^2 = g^2``)."""
    phi, dphi = act.value, act.derivative
    if sigma == 0.0:
        points, weights = np.array([drift]), np.array([1.0])
    else:
        points = _grid(drift, sigma, n, act)
        weights = np.exp(-0.5 * ((points - drift) / sigma) ** 2)
        weights /= weights.sum()
    laws = [(points, weights, sigma > 0.0, False)]
    for _ in range(1, steps):
        laws.append(_next_law(points, weights, act, gain, drift, sigma, n))
        points, weights = laws[-1][:2]
    out = np.empty((steps, 7))
    out[:, 5] = [law[3] for law in laws]  # 1: the grid could not resolve the noise
    # the rare-path term needs the gradient to be one product along the chain
    product = bool(reads[-1] == 1.0 and not np.any(reads[:-1]))
    f_next = read_next = l_next = None  # F_{t+1}, its part from the read at t+1, L_{t+1}
    for t in range(steps - 1, -1, -1):
        points, weights = laws[t][:2]
        a = phi(points)
        out[t, :4] = (weights @ points, weights @ points ** 2, weights @ a, weights @ (a * a))
        carried = carried_l = 0.0
        if f_next is not None:
            g_next = f_next - (1.0 - fresh_share) * read_next
            # the first hop back scales the product by fresh_share: so its P log P term
            h_next = l_next if t < steps - 2 or fresh_share == 1.0 else \
                fresh_share * (l_next + math.log(fresh_share) * f_next)
            if not laws[t + 1][2]:  # the points moved deterministically
                carried, carried_l = g_next, h_next
            else:
                k = _kernel(laws[t + 1][0], gain * a + drift, sigma)
                # a centre beyond the next grid (kernel row 0) carried no mass forward
                # (_next_law): it carries no gradient back either, not 0/0
                total = k.sum(axis=1)
                carried = np.divide(k @ g_next, total, out=np.zeros_like(total),
                                    where=total > 0)
                carried_l = np.divide(k @ h_next, total, out=np.zeros_like(total),
                                      where=total > 0) if product else 0.0
        slope2 = dphi(points) ** 2
        read_next = slope2 * reads[t]
        f_next = read_next + slope2 * (gain * gain * carried)
        out[t, 4] = weights @ f_next
        if product:  # L_t = c_t (log c_t * E[F_{t+1} | z_t] + E[L_{t+1} | z_t]), 0 log 0 = 0
            c = slope2 if t == steps - 1 else gain * gain * slope2
            log_c = np.log(c, out=np.zeros_like(c), where=c > 0)
            l_next = c * (log_c * (1.0 if t == steps - 1 else carried) + carried_l)
            out[t, 6] = weights @ l_next
        else:
            out[t, 6] = math.nan
    return out


def tilted_entropy(expected: np.ndarray, expected_log: np.ndarray) -> np.ndarray:
    """``D_t = E[P log P] / E[P] - log E[P]`` per step (module doc, "Rare paths") from
    ``E[P]`` (the gradient's variance) and ``E[P log P]``; NaN where either is not a
    finite number or ``E[P]`` is 0 (no gradient: nothing to sample)."""
    with np.errstate(all="ignore"):
        d = expected_log / expected - np.log(expected)
    ok = np.isfinite(expected) & np.isfinite(expected_log) & (expected > 0)
    return np.where(ok, d, math.nan)


def _variance(mean: float, second: float) -> float:
    """``second - mean^2``, clipped at 0; an overflowed chain's variance is inf."""
    if not math.isfinite(second):
        return math.inf if second == math.inf else math.nan
    return max(second - mean * mean, 0.0)


def identity_profile(rnn: Any, steps: int, u: Any, bias: tuple[float, float], loss: str,
                     identical: bool = False
                     ) -> tuple[list[LayerRecord], dict[str, list[int]]]:
    """Per-step records of an identity-recurrent ``rnn`` (see the module doc), and the
    steps whose theory is approximate, by cause. ``identical``: every unit is the same
    (constant kernels, no random bias): one chain with gain ``H m``, exact too."""
    n_units = rnn.units
    gain = rnn.recurrent_init.moments(rnn.recurrent_shape).mean * n_units
    b_mean, b_var = bias
    reads = np.zeros(steps)
    reads[-1] = 1.0
    if loss == "sequence":
        reads[:] = 1.0
    act = rnn.activation
    if b_var > 0:
        nodes, w = np.polynomial.hermite_e.hermegauss(_BIAS_NODES)
        drifts, node_w = u.mean + b_mean + math.sqrt(b_var) * nodes, w / w.sum()
    else:
        drifts, node_w = np.array([u.mean + b_mean]), np.array([1.0])
    sigma = math.sqrt(u.var)
    share = 1.0 / n_units if identical else 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding chain: inf, NaN
        m = sum(wj * chain_moments(act, gain, float(d), sigma, steps, reads,
                                   fresh_share=share) for d, wj in zip(drifts, node_w))
    records = []
    for t in range(steps):
        z_mean, z_second, a_mean, a_second, grad = m[t, :5]
        records.append(LayerRecord(t, rnn.input_size + n_units, n_units, z_mean=z_mean,
                                   z_var=_variance(z_mean, z_second), a_mean=a_mean,
                                   a_var=_variance(a_mean, a_second), grad_var=grad,
                                   symmetric=identical))
    flags: dict[str, list[int]] = {}
    coarse = [t for t in range(steps) if m[t, 5] > 0]
    if coarse:
        flags["coarse_chain"] = coarse
    rare = np.flatnonzero(tilted_entropy(m[:, 4], m[:, 6]) > RARE_PATHS_NATS).tolist()
    if rare:
        flags["rare_paths"] = rare
    if u.one_hot and u.var > 0:
        flags["identity_input"] = list(range(1, steps))
    return records, flags
