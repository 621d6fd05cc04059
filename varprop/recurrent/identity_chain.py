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
far below any measurement's error. Where the chain spreads so far that no uniform grid
resolves the noise (an exploding chain, a very long IRNN), a piecewise-linear activation
splits the law: the chains within 9 sd of the kink onto a fine grid, refined there by the
map's stretch, and the others into atoms that their linear piece carries exactly
(:func:`_next_law`; docs/recurrent.md, section 6). The gradient runs the chain backwards:
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
A measurement averages ``(G P_t)`` over ``N`` chains (``G`` the standard normal read of
the loss, ``E[G^4] = 3``): its mean falls short where ``D_t > log N``, and its relative
standard error is ``sqrt((3 E[P_t^2] / E[P_t]^2 - 1) / N)``, which the same pass gives
(``S_t = E[P_t^2 | z_t] = c_t^2 E[S_{t+1} | z_t]``). Steps where either says that ``N``
chains cannot pin the expectation (the shortfall, or a relative standard error above
1) are flagged (``rare_paths``); ``N`` is the measurement's when the caller knows it,
else :data:`RARE_PATHS_CHAINS`. For ReLU with ``g = 1``, ``P_t`` is the indicator that
the walk stays positive, so ``D_0 = -log P(S_1 > 0, ..., S_T > 0) = -log(C(2T, T) /
4^T)`` (Sparre Andersen) and ``E[P^2] = E[P]``: a few nats, not flagged.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..profile import LayerRecord

__all__ = ["identity_profile", "chain_moments", "relu_walk_second_moment", "GRID_POINTS",
           "RARE_PATHS_CHAINS", "RARE_PATHS_NATS", "tilted_entropy", "rare_steps"]

#: Points of the grid that carries the law of z_t.
GRID_POINTS = 601
#: Half-width of the grid in standard deviations of z_t.
_SPAN = 9.0
#: Input noise below this share of the spread of the chain is negligible (its effect on
#: the moments is of the order of its square).
_NEGLIGIBLE = 1e-3
#: Most points of the fine grid, and most atoms, of a "split" law (:func:`_next_law`);
#: beyond them the chain moves deterministically and the steps are flagged coarse.
_MAX_FINE = 4 * GRID_POINTS
_MAX_ATOMS = 20_000
#: Spacing of a split law's fine grid, in units of the narrowest Gaussian spread on it.
_FINE_SPACING = 1.0 / 3.0
#: Gauss-Hermite nodes for a random bias.
_BIAS_NODES = 16
#: Chains a measurement is taken to average when the caller does not say (module doc,
#: "Rare paths"): more than any practical measurement of one network.
RARE_PATHS_CHAINS = 1e6
#: Relative entropy (nats) of the gradient's tilted paths above which they are too rare
#: for RARE_PATHS_CHAINS chains to sample: probability below about 1e-6.
RARE_PATHS_NATS = math.log(RARE_PATHS_CHAINS)


def relu_walk_second_moment(n: int, sigma2: float = 1.0) -> float:
    """``E[max(0, S_1, ..., S_n)^2]`` for a centred Gaussian random walk with step
    variance ``sigma2`` (Spitzer's identity; the law of ``h_{n-1}`` of a ReLU IRNN)."""
    j = np.arange(1, n + 1, dtype=float)
    # sum_{j + k <= n} (jk)^(-1/2) = sum_j j^(-1/2) * sum_{k <= n - j} k^(-1/2)
    inner = np.concatenate([[0.0], np.cumsum(1.0 / np.sqrt(j))])
    pairs = float(np.sum(inner[n - j.astype(int)] / np.sqrt(j)))
    return sigma2 * (n / 2.0 + pairs / (2.0 * math.pi))


class _Law(NamedTuple):
    """The law of ``z_t``: ``points`` with ``weights``, each point a Gaussian of its own
    variance ``extra`` around it (0: a grid point of a smooth density; > 0: an *atom*,
    a chain far from every kink of a piecewise-linear activation, whose law a linear
    piece carries exactly). ``mode`` says how it came from the law before: "start",
    "det" (each point moved as it was), "grid" (spread onto a uniform grid) or "split"
    (the centres near a kink spread onto a fine grid, the first ``fine`` points, the
    others kept as atoms, in order: ``near`` marks the former among the parents)."""

    points: np.ndarray
    weights: np.ndarray
    extra: np.ndarray
    mode: str
    coarse: bool = False
    fine: int = 0
    near: "np.ndarray | None" = None
    widths: "np.ndarray | None" = None  # the fine grid's cell widths ("split")


def _centres(law: _Law, act: Any, gain: float, drift: float, sigma: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Each point's next centre and the variance around it: the input noise, plus an
    atom's own variance through its linear piece."""
    p = law.points
    var = sigma * sigma + gain * gain * act.derivative(p) ** 2 * law.extra \
        if law.extra.any() else np.full(p.shape, sigma * sigma)
    return gain * act.value(p) + drift, var


def _next_law(law: _Law, act: Any, gain: float, drift: float, sigma: float, n: int
              ) -> _Law:
    """The law of the next pre-activation.

    Where the uniform grid over ``mean +- 9 sd`` resolves the input noise, the centres'
    Gaussians are spread onto it ("grid"). Without input noise the points move as they
    are ("det"). When the chain has spread so far that the grid cannot resolve the
    noise (an exploding chain, a very long IRNN), a piecewise-linear activation keeps
    the law exact ("split"): the noise matters only for the chains within 9 sd of the
    kink, which are spread onto a fine grid there, and every other chain becomes an atom
    that its linear piece carries with its mean and variance (an exploding all-ones
    ReLU chain came out ~25% low in P(z > 0) before, tests/test_rnn_report.py). Other
    activations, or a split past :data:`_MAX_FINE` or :data:`_MAX_ATOMS` points, move
    deterministically and drop the noise (``coarse``: the caller flags those steps),
    unless the noise is negligible for a linear chain."""
    centres, var = _centres(law, act, gain, drift, sigma)
    w = law.weights
    mean = float(w @ centres)
    spread2 = float(w @ ((centres - mean) ** 2 + var))
    if sigma == 0.0:
        return _Law(centres, w, np.zeros_like(w), "det")
    sd = math.sqrt(spread2) if math.isfinite(spread2) else math.inf
    # a law with atoms stays split: its atoms are exact, and they have their own widths
    if not law.extra.any() and _resolves(2.0 * _SPAN * sd / (n - 1), act, gain, sigma):
        grid = _grid(mean, sd, n, act)
        masses = w @ _kernel(grid, centres, sigma)
        return _Law(grid, masses / masses.sum(), np.zeros(n), "grid")
    split = _split(law, act, gain, sigma, centres, var) if act.piecewise_linear else None
    if split is not None:
        return split
    negligible = sigma <= _NEGLIGIBLE * sd and act.name == "linear"
    return _Law(centres, w, var - sigma * sigma, "det", coarse=not negligible)


def _resolves(h: float, act: Any, gain: float, sigma: float) -> bool:
    """Whether a uniform grid of spacing ``h`` carries the law: it resolves the input
    noise and, for a piecewise-linear activation (which has the split law to fall back
    on), so do its images ``gain * phi(point)`` at the next step: a grid stretched by
    the map past the noise's width carries the chains near the kink too coarsely."""
    if not h <= sigma:
        return False
    if not act.piecewise_linear:
        return True
    return h * _stretch(act, gain) <= sigma


def _split(law: _Law, act: Any, gain: float, sigma: float, centres: np.ndarray,
           var: np.ndarray) -> "_Law | None":
    """The "split" law of :func:`_next_law`, or None past the size limits."""
    sd = np.sqrt(var)
    near = np.zeros(centres.shape, bool)
    for kink in act.kinks:  # beyond 9 sd a chain crosses the kink with probability 2e-19
        near |= np.abs(centres - kink) < _SPAN * sd
    far = ~near
    if int(far.sum()) > _MAX_ATOMS:
        return None
    w = law.weights
    if near.any():
        h = float(sd[near].min()) * _FINE_SPACING
        lo = float((centres - _SPAN * sd)[near].min())
        hi = float((centres + _SPAN * sd)[near].max())
        fine, widths = _fine_grid(lo - h, hi + h, h, act, gain, sigma)
        if fine.size > _MAX_FINE:
            return None
        c, v = centres[near], var[near]
        k = _kernel(fine, c, var=v) * widths
        total = k.sum(axis=1)
        masses = np.divide(w[near], total, out=np.zeros_like(total), where=total > 0) @ k
    else:
        fine, widths, masses = np.empty(0), np.empty(0), np.empty(0)
    return _Law(np.concatenate([fine, centres[far]]), np.concatenate([masses, w[far]]),
                np.concatenate([np.zeros(fine.size), var[far]]), "split",
                fine=fine.size, near=near, widths=widths)


def _stretch(act: Any, gain: float) -> float:
    """How far the next step pulls two nearby chains apart, at most (piecewise linear)."""
    return abs(gain) * max(abs(x) for x in act.slopes)


def _fine_grid(lo: float, hi: float, h: float, act: Any, gain: float, sigma: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and widths of cells covering ``[lo, hi]``: width ``h``, and, where the
    next step stretches the chains by ``s = |gain| * max slope > 1``, width
    ``sigma / (3 s)`` (their images a third of the noise apart) within ``9 sigma / s +
    h`` of the kink (the chains the next step puts within 9 sigma of it). The chain's
    gradient varies there on the scale the map shrinks the noise to (``F(z)`` of a ReLU
    chain rises from 1/2 to 1 within ``sigma / gain`` of 0+): cells of width ``h`` left
    the gradient of an all-ones ReLU chain 3e-3 high (tests/test_rnn_report.py). The
    kink is a cell boundary (midpoints straddle it), as in :func:`_grid`."""
    stretch = _stretch(act, gain)
    kink = act.kinks[0] if act.kinks else None
    if kink is None or not lo < kink < hi:
        edges = lo + h * np.arange(int(math.ceil((hi - lo) / h)) + 1)
    elif stretch <= 1.0:
        edges = kink + h * np.arange(-int(math.ceil((kink - lo) / h)),
                                     int(math.ceil((hi - kink) / h)) + 1)
    else:
        small = min(h, sigma * _FINE_SPACING / stretch)
        reach = min(_SPAN * sigma / stretch + h, kink - lo, hi - kink)
        m = int(math.ceil(reach / small))
        inner = kink + small * np.arange(-m, m + 1)
        left = inner[0] - h * np.arange(int(math.ceil((inner[0] - lo) / h)), 0, -1)
        right = inner[-1] + h * np.arange(1, int(math.ceil((hi - inner[-1]) / h)) + 1)
        edges = np.concatenate([left, inner, right])
    return 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)


def _carry(law: _Law, before: _Law, act: Any, gain: float, drift: float, sigma: float,
           values: np.ndarray) -> np.ndarray:
    """``E[values(z_{t+1}) | z_t]`` at each point of ``before`` (the law of ``z_t``), for
    ``values`` given at the points of ``law`` (the law of ``z_{t+1}``), one column per
    function (``(points, k)``): the transition of :func:`_next_law` run backwards. A
    centre beyond the next grid (a kernel row of zeros) carried no mass forward, and
    carries nothing back either, not 0/0."""
    if law.mode == "det":
        return values
    centres, var = _centres(before, act, gain, drift, sigma)
    if law.mode == "grid":  # from a law without atoms: every centre has the noise's width
        return _average(_kernel(law.points, centres, sigma), values)
    out = np.empty((centres.size, values.shape[1]))
    out[~law.near] = values[law.fine:]
    if law.fine:
        fine = law.points[:law.fine]
        k = _kernel(fine, centres[law.near], var=var[law.near]) * law.widths
        out[law.near] = _average(k, values[:law.fine])
    return out


def _average(k: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row of the kernel ``k`` as weights over the rows of ``values`` (0 for an
    empty row)."""
    total = k.sum(axis=1)[:, None]
    return np.divide(k @ values, total, out=np.zeros((k.shape[0], values.shape[1])),
                     where=total > 0)


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


def _kernel(grid: np.ndarray, centres: np.ndarray, sigma: float = 0.0,
            var: "np.ndarray | None" = None) -> np.ndarray:
    """``K[i, k]`` = Gaussian density of grid point k around centre i (unnormalized), of
    standard deviation ``sigma``, or per centre ``sqrt(var[i])``."""
    scale = sigma if var is None else np.sqrt(var)[:, None]
    d = grid[None, :] - centres[:, None]
    d /= scale  # in place: this is the chain's inner loop
    d *= d
    d *= -0.5
    return np.exp(d, out=d)


def chain_moments(act: Any, gain: float, drift: float, sigma: float, steps: int,
                  reads: np.ndarray, n: int = GRID_POINTS, fresh_share: float = 1.0
                  ) -> np.ndarray:
    """Per step ``[E z, E z^2, E phi, E phi^2, Var dL/dz, coarse, E[P log P], E[P^2]]``
    (shape ``(steps, 8)``) of one unit's chain with a fixed drift (input mean plus bias);
    ``coarse`` is 1 where the grid could not resolve non-negligible input noise; the
    last two columns are the rare-path terms of the module doc when the loss reads only
    the last step (else NaN): :func:`rare_steps` reads them.

    ``fresh_share`` is what the first hop back keeps of a loss gradient read at a step:
    1 for identity recurrence (each unit passes its own gradient on), ``1 / H`` when every
    unit is identical (a constant ``W_h = m``: the ``H`` independent reads sum
    incoherently, ``H m^2``, and from then on coherently, ``(H m)^2 = g^2``)."""
    phi, dphi = act.value, act.derivative
    if sigma == 0.0:
        points, weights = np.array([drift]), np.array([1.0])
    elif act.piecewise_linear and _stretch(act, gain) > 1.0:
        # an expanding chain: cells refined near the kink (_fine_grid)
        h = 2.0 * _SPAN * sigma / (n - 1)
        points, widths = _fine_grid(drift - _SPAN * sigma, drift + _SPAN * sigma, h, act,
                                    gain, sigma)
        weights = np.exp(-0.5 * ((points - drift) / sigma) ** 2) * widths
        weights /= weights.sum()
    else:
        points = _grid(drift, sigma, n, act)
        weights = np.exp(-0.5 * ((points - drift) / sigma) ** 2)
        weights /= weights.sum()
    laws = [_Law(points, weights, np.zeros(points.size), "start")]
    for _ in range(1, steps):
        laws.append(_next_law(laws[-1], act, gain, drift, sigma, n))
    out = np.empty((steps, 8))
    out[:, 5] = [law.coarse for law in laws]  # 1: the grid could not resolve the noise
    # the rare-path term needs the gradient to be one product along the chain
    product = bool(reads[-1] == 1.0 and not np.any(reads[:-1]))
    # F_{t+1}, its part from the read at t+1, L_{t+1} = E[P log P | z], S_{t+1} = E[P^2 | z]
    f_next = read_next = l_next = s_next = None
    for t in range(steps - 1, -1, -1):
        points, weights, extra = laws[t][:3]
        a, slope2 = phi(points), dphi(points) ** 2
        # an atom's own variance: exact through its linear piece (_Law)
        out[t, :4] = (weights @ points, weights @ (points ** 2 + extra), weights @ a,
                      weights @ (a * a + slope2 * extra))
        carried = carried_l = carried_s = 0.0
        if f_next is not None:
            g_next = f_next - (1.0 - fresh_share) * read_next
            columns = [g_next]
            if product:  # its rare-path terms: the first hop back scales the product by
                # fresh_share, so its P log P and P^2 terms (only the last step is read)
                first = t == steps - 2 and fresh_share != 1.0
                columns.append(fresh_share * (l_next + math.log(fresh_share) * f_next)
                               if first else l_next)
                columns.append(fresh_share ** 2 * s_next if first else s_next)
            # one kernel for the gradient and, where it is one product, its rare-path terms
            both = _carry(laws[t + 1], laws[t], act, gain, drift, sigma,
                          np.stack(columns, axis=1))
            carried = both[:, 0]
            if product:
                carried_l, carried_s = both[:, 1], both[:, 2]
        read_next = slope2 * reads[t]
        f_next = read_next + slope2 * (gain * gain * carried)
        out[t, 4] = weights @ f_next
        if product:  # L_t = c_t (log c_t * E[F_{t+1} | z_t] + E[L_{t+1} | z_t]), 0 log 0 = 0
            c = slope2 if t == steps - 1 else gain * gain * slope2
            log_c = np.log(c, out=np.zeros_like(c), where=c > 0)
            l_next = c * (log_c * (1.0 if t == steps - 1 else carried) + carried_l)
            s_next = c * c * (1.0 if t == steps - 1 else carried_s)
            out[t, 6], out[t, 7] = weights @ l_next, weights @ s_next
        else:
            out[t, 6:8] = math.nan
    return out


def tilted_entropy(expected: np.ndarray, expected_log: np.ndarray) -> np.ndarray:
    """``D_t = E[P log P] / E[P] - log E[P]`` per step (module doc, "Rare paths") from
    ``E[P]`` (the gradient's variance) and ``E[P log P]``; NaN where either is not a
    finite number or ``E[P]`` is 0 (no gradient: nothing to sample)."""
    with np.errstate(all="ignore"):
        d = expected_log / expected - np.log(expected)
    ok = np.isfinite(expected) & np.isfinite(expected_log) & (expected > 0)
    return np.where(ok, d, math.nan)


def rare_steps(moments: np.ndarray, chains: float = RARE_PATHS_CHAINS) -> list[int]:
    """The steps whose expected gradient ``chains`` chains cannot pin (module doc, "Rare
    paths"), from :func:`chain_moments`' columns: the tilted paths rarer than one in
    ``chains`` (``D_t > log chains``), or a measured mean's relative standard error
    ``sqrt((3 E[P^2] / E[P]^2 - 1) / chains)`` above 1."""
    expected = moments[:, 4]
    d = tilted_entropy(expected, moments[:, 6])
    with np.errstate(all="ignore"):
        spread = (3.0 * moments[:, 7] / (expected * expected) - 1.0) / chains
    ok = np.isfinite(expected) & (expected > 0)
    return np.flatnonzero(ok & ((d > math.log(chains)) | (spread > 1.0))).tolist()


def _variance(mean: float, second: float) -> float:
    """``second - mean^2``, clipped at 0; an overflowed chain's variance is inf."""
    if not math.isfinite(second):
        return math.inf if second == math.inf else math.nan
    return max(second - mean * mean, 0.0)


def identity_profile(rnn: Any, steps: int, u: Any, bias: tuple[float, float],
                     reads: np.ndarray, identical: bool = False,
                     samples: "int | None" = None
                     ) -> tuple[list[LayerRecord], dict[str, list[int]]]:
    """Per-step records of an identity-recurrent ``rnn`` (see the module doc), and the
    steps whose theory is approximate, by cause. ``identical``: every unit is the same
    (constant kernels, no random bias): one chain with gain ``H m``, exact too.
    ``samples``: the sequences a measurement averages (batch x seeds), for the rare-path
    check: ``samples`` chains when the units are identical, ``samples * H`` otherwise
    (None: :data:`RARE_PATHS_CHAINS`). ``reads[t]``: Var dL/dh_t from outside the
    recurrence (:func:`varprop.recurrent.theory.loss_reads`)."""
    n_units = rnn.units
    gain = rnn.recurrent_init.moments(rnn.recurrent_shape).mean * n_units
    b_mean, b_var = bias
    reads = np.asarray(reads, dtype=float)
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
    chains = RARE_PATHS_CHAINS if samples is None else \
        float(samples) * (1 if identical else n_units)
    rare = rare_steps(m, chains)
    if rare:
        flags["rare_paths"] = rare
    if u.one_hot and u.var > 0:
        flags["identity_input"] = list(range(1, steps))
    return records, flags
