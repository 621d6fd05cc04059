"""Mean-field theory of a simple recurrent network through time (docs/recurrent.md).

Time is depth with one matrix at every step. At infinite width the forward recursion
holds as if the recurrent weights were drawn afresh at each step (Chen, Pennington and
Schoenholz 2018, arXiv 1806.05394), and so does the backward one under the gradient
independence assumption used for depth (Schoenholz et al. 2017)::

    q_t   = v_in + H (v_h + m_h^2) E[h_{t-1}^2] + v_b        (z_t's variance; h_{-1} = 0)
    g_t   = G_t E[phi'(z_t)^2]                               (Var dL/dz_t)
    G_t-1 = H v_h g_t (+ 1 when every state is read)         (Var dL/dh_{t-1})

with ``v_in`` the input term (``F (v_x + m_x^2) Var[x]`` for Gaussian inputs, ``v_x``
for one-hot tokens: each step adds one row of ``W_x``). Orthogonal and Gaussian
recurrent kernels have the same per-entry variance and so the same recursion: their
difference lives in the spread of the Jacobian's singular values through time
(:mod:`varprop.recurrent.isometry`). An identity recurrent kernel is not random at all:
:mod:`varprop.recurrent.identity_chain` gives its exact one-unit law.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as _stats

from .._validate import correlation, finite_real, one_of, positive_int
from ..profile import LayerRecord, Profile
from ..theory.gaussian import gaussian_cross_moments, gaussian_moments
from .spec import INPUT_KINDS, LOSSES, SimpleRNN

__all__ = ["analyze_rnn", "InputTerm", "input_term", "RECURRENT_REASONS", "MAX_STEPS",
           "through_time", "loss_reads", "state_pairs", "is_chain"]

#: Quadrature nodes over the units' input variances (:meth:`InputTerm.spread`).
_SPREAD_NODES = 16
#: Above this fan in the spread of the units' input variances is ignored (its effect
#: on a curved activation is below 1e-4 relative).
_NO_SPREAD_FAN_IN = 20_000

#: The longest sequence the analyzer and the measurement accept.
MAX_STEPS = 100_000

#: Why the recurrent theory is approximate, by cause (``meta["approximations"]``).
RECURRENT_REASONS = {
    "one_hot": "one-hot inputs: each step adds one row of W_x, whose entries follow the "
               "initializer's own law (uniform for glorot_uniform), and a token seen twice "
               "adds the same row again; the theory treats the input term as a fresh "
               "Gaussian of the same variance (exact for the variance of a linear or "
               "ReLU-like step fed by one-hot tokens, approximate through a curved "
               "activation such as tanh)",
    "non_centred": "non-centred recurrent weights (mean != 0) give every unit a shared "
                   "term; the theory adds its variance as if it were independent per unit",
    "tied_weights": "the same random recurrent kernel at every step: at this width its "
                    "leading eigenvalues stand out of the mean field's average, the state "
                    "and the gradient align with them, and one network strays from the "
                    "mean field (its average over fresh draws): near criticality by orders "
                    "of magnitude at every step, in a contracting network by about "
                    "0.1 k / sqrt(H) in log after k steps back (a rule calibrated on "
                    "measurements, docs/recurrent.md)",
    "coarse_chain": "the one-unit chain has spread so far (an identity-recurrent network "
                    "over many hundred steps) that its grid no longer resolves the input "
                    "noise of a step, which these steps drop",
    "rare_paths": "the expected gradient is carried by chains too rare for the "
                  "measurement to sample: the paths that carry it are rarer than one in "
                  "the chains it averages, or a few chains decide its mean (a relative "
                  "standard error above 1). An all-ones tanh network is an example: its "
                  "units stay near saturation, where the derivative is ~0, except along "
                  "chains that stay near 0 at every step. The expectation is exact; a "
                  "measured mean falls short of it or scatters (docs/recurrent.md)",
    "identity_input": "identity recurrence with correlated input terms (one-hot tokens "
                      "seen twice, or a random bias fixed over time) is a one-unit chain "
                      "whose steps are not independent; the exact chain assumes fresh "
                      "Gaussian input terms (the bias is integrated exactly)",
    "correlated_reads": "identity recurrence inside a network whose layers above read its "
                        "states at several steps with gradients that share a term (a "
                        "pooling over time, another recurrent layer): the exact chain adds "
                        "the reads' variances as if they were independent",
    "correlated_input": "a recurrent layer that accumulates its input terms per unit (a "
                        "gated cell's memory, an identity recurrence) is handed inputs "
                        "correlated across steps: a mean (for a gated cell; the identity "
                        "chain integrates a constant mean exactly, as a random bias fixed "
                        "per unit, unless it changes with time) or fluctuations "
                        "correlated across steps; the theory takes each step's input term "
                        "as fresh",
    "varying_input": "identity recurrence inside a network whose layer below hands it an "
                     "input variance that changes from step to step: the exact chain takes "
                     "one input variance for every step, and gets their average",
}


class InputTerm:
    """Mean and variance of ``x_t W_x`` per unit, and its second-moment cross term
    for two sequences whose inputs have correlation ``c``.

    A unit ``j`` reads the same column of ``W_x`` at every step, so its input variance
    is ``Var[x] |W_x[:, j]|^2``, not the average: with few inputs ``F`` the units differ,
    step after step. :meth:`spread` gives that spread as quadrature nodes: the column's
    squared norm is ``v chi^2_F`` for a Gaussian kernel, a Gamma law of shape ``F / 2``,
    which the theory uses for every i.i.d. kernel (a uniform kernel's spread is 0.8
    times the Gaussian's, a change of the second order in ``1 / F``); orthogonal and
    identity kernels have columns of equal norm (``fan_in`` 0: no spread).
    """

    def __init__(self, mean: float, var: float, per_corr: float, one_hot: bool,
                 fan_in: int) -> None:
        self.mean, self.var, self.per_corr, self.one_hot = mean, var, per_corr, one_hot
        self.fan_in = fan_in

    def spread(self, nodes: int = _SPREAD_NODES) -> tuple[np.ndarray, np.ndarray]:
        """``(input variance per node, weight)``: Gauss-Hermite nodes mapped through
        the Gamma quantile function (one node when the spread vanishes)."""
        if self.var == 0.0 or not 0 < self.fan_in <= _NO_SPREAD_FAN_IN:
            return np.array([self.var]), np.array([1.0])
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        shape = self.fan_in / 2.0
        values = _stats.gamma.ppf(_stats.norm.cdf(z), shape, scale=self.var / shape)
        values *= self.var / float(w @ values / w.sum())  # the mean exactly
        return values, w / w.sum()

    def cross(self, c: float) -> float:
        """Cov of the two sequences' input terms (inputs with correlation ``c``)."""
        return self.per_corr * c


def input_term(rnn: SimpleRNN, inputs: str, input_var: float) -> InputTerm:
    """The input term of every step (see the module doc)."""
    w = rnn.kernel_init.moments(rnn.kernel_shape)
    # orthogonal and identity kernels have columns of one norm: no spread (fan_in 0)
    fan_in = rnn.input_size if w.structure == "iid" else 0
    if inputs == "one_hot":  # one row of W_x: its entries' mean and variance
        return InputTerm(w.mean, w.var, w.var, True, fan_in)
    second = rnn.input_size * (w.var + w.mean * w.mean) * input_var
    return InputTerm(0.0, second, second, False, fan_in)


def _bias(rnn: SimpleRNN) -> tuple[float, float]:
    if rnn.bias_init is None:
        return 0.0, 0.0
    b = rnn.bias_init.moments((rnn.units,))
    return b.mean, b.var


def check_run(steps: Any, inputs: Any, loss: Any) -> tuple[int, str, str]:
    """Validated ``(steps, inputs, loss)`` shared by the analyzer and the measurement."""
    steps = positive_int("steps", steps)
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be <= {MAX_STEPS}; got {steps}")
    return steps, one_of("inputs", inputs, INPUT_KINDS), one_of("loss", loss, LOSSES)


def analyze_rnn(rnn: SimpleRNN, steps: int, *, inputs: str = "gaussian",
                input_var: float = 1.0, input_correlation: float | None = None,
                loss: str = "last", samples: int | None = None) -> Profile:
    """Per-step mean-field statistics of ``rnn`` over a sequence of ``steps`` inputs.

    Args:
        rnn: the :class:`~varprop.recurrent.SimpleRNN`.
        steps: the sequence length ``T``.
        inputs: ``"gaussian"`` (i.i.d. N(0, input_var) features) or ``"one_hot"``
            (uniform random tokens of the vocabulary ``input_size``).
        input_var: variance of a Gaussian input feature.
        input_correlation: correlation of two input sequences, step by step (Gaussian
            inputs only): fills each record's ``z_corr``.
        loss: ``"last"`` (a standard normal gradient on ``h_{T-1}``) or ``"sequence"``
            (an independent one on every state).
        samples: the input sequences a measurement to compare with averages (batch x
            seeds). Identity recurrence only: the steps whose expected gradient that many
            chains cannot pin are flagged ``rare_paths`` (docs/recurrent.md, section 3,
            "Rare paths"); None judges them against a million chains.

    Returns:
        A :class:`~varprop.profile.Profile` with one record per time step (``index`` =
        ``t``): ``z_*`` of ``z_t``, ``a_*`` of ``h_t``, ``grad_var`` = Var dL/dz_t;
        ``meta["axis"] == "time step"`` and ``meta["approximations"]`` as for
        :func:`varprop.analyze`.

    Example:
        >>> from varprop.recurrent import SimpleRNN
        >>> p = analyze_rnn(SimpleRNN(64, 256, "tanh", recurrent_init="orthogonal"), 50)
        >>> round(p[0].z_var, 4)        # glorot_uniform: 64 * 2 / (64 + 256)
        0.4
    """
    if not isinstance(rnn, SimpleRNN):
        raise TypeError(f"rnn must be a varprop.recurrent.SimpleRNN, got {type(rnn).__name__}")
    steps, inputs, loss = check_run(steps, inputs, loss)
    if samples is not None:
        samples = positive_int("samples", samples)
    input_var = finite_real("input_var", input_var, non_negative=True)
    if input_correlation is not None:
        input_correlation = correlation("input_correlation", input_correlation)
        if inputs == "one_hot":
            raise ValueError("input_correlation applies to Gaussian inputs; one-hot "
                             "sequences are not correlated by a number")
    u = input_term(rnn, inputs, input_var)
    records, flags, rule, regime = through_time(
        rnn, steps, u, loss_reads(loss, steps), input_correlation=input_correlation,
        samples=samples)
    if inputs == "one_hot" and rnn.activation.name not in ("identity", "relu") \
            and u.var > 0:
        flags.setdefault("one_hot", list(range(steps)))
    approx = recurrent_approximations(flags)
    if regime is not None and regime.layers:
        from .._approximations import approximations
        approx += approximations([], [], finite_width=regime)
    return Profile("analytic", records, rnn.describe(), input_var=input_var,
                   meta={"axis": "time step", "rule": rule, "inputs": inputs, "loss": loss,
                         "steps": steps, "units": rnn.units,
                         "input_correlation": input_correlation,
                         "finite_width_sigma": None if regime is None else regime.sigma,
                         "approximations": approx})


def loss_reads(loss: str, steps: int) -> np.ndarray:
    """Var dL/dh_t that the loss puts on each state: 1 at the last step (``"last"``) or
    at every step (``"sequence"``)."""
    reads = np.zeros(steps)
    reads[-1] = 1.0
    if loss == "sequence":
        reads[:] = 1.0
    return reads


def is_chain(rnn: SimpleRNN) -> bool:
    """True when :func:`through_time` takes the one-unit chain (identity recurrence, or
    every unit the same) rather than the mean field."""
    w = rnn.recurrent_init.moments(rnn.recurrent_shape)
    kernel = rnn.kernel_init.moments(rnn.kernel_shape)
    return bool(w.structure == "identity"
                or (w.symmetric and kernel.symmetric and _bias(rnn)[1] == 0.0))


def through_time(rnn: SimpleRNN, steps: int, u: InputTerm, reads: np.ndarray, *,
                 input_scale: np.ndarray | None = None,
                 input_correlation: "float | np.ndarray | None" = None,
                 samples: int | None = None, persistent: float = 0.0
                 ) -> tuple[list[LayerRecord], dict[str, list[int]], str, Any]:
    """The theory's per-step records and flags, for any per-step input and gradient.

    ``reads[t]`` is Var dL/dh_t coming from outside the recurrence (the loss, or the
    layers above a recurrent layer inside a network): the backward recursion is linear
    in it. ``input_scale[t]`` multiplies step t's input term ``u.var`` (a layer below
    whose output variance changes with time; None: 1). The identity chain takes one
    input variance for every step: with a varying one it gets their average and the
    steps are flagged ``"varying_input"``. ``persistent``: the variance of a part of each
    unit's input term that is fixed over time (the layer below hands inputs with a
    mean); the chain integrates it as a random bias, exactly (the mean field needs
    nothing: it is in each step's variance, and the units' mixing does not accumulate
    it). ``input_correlation``: the correlation of two input sequences (every step), or
    per step the two inputs' ``E[x_t x'_t]`` (in the units of ``input_scale``); the mean
    field then fills each record's ``z_corr`` (the chain does not).

    Returns ``(records, flags by cause, rule name, finite-width regime or None)``.
    """
    b_mean, b_var = _bias(rnn)
    w = rnn.recurrent_init.moments(rnn.recurrent_shape)
    flags: dict[str, list[int]] = {}
    regime = None
    kernel = rnn.kernel_init.moments(rnn.kernel_shape)
    identical = bool(w.symmetric and kernel.symmetric and b_var == 0.0 and persistent == 0)
    b_var += persistent
    scale = np.ones(steps) if input_scale is None else np.asarray(input_scale, float)
    if w.structure == "identity" or identical:
        # nothing mixes the units, or every unit is the same: a one-unit Markov chain
        from .identity_chain import identity_profile
        varying = bool(np.ptp(scale) > 1e-12 * max(float(np.max(scale)), 1e-300))
        chain_u = u
        if varying or scale[0] != 1.0:
            chain_u = InputTerm(u.mean, u.var * float(np.mean(scale)), u.per_corr,
                                u.one_hot, u.fan_in)
        records, flags = identity_profile(rnn, steps, chain_u, (b_mean, b_var), reads,
                                          identical, samples)
        if varying and u.var > 0:
            flags["varying_input"] = list(range(steps))
        rule = "identity chain" if w.structure == "identity" else "identical units"
    else:
        records, chi = _mean_field(rnn, steps, u, b_mean, b_var, w, reads,
                                   input_correlation, scale)
        rule = "mean field"
        last_only = bool(np.all(reads[:-1] == 0))
        if w.mean != 0.0 and not w.symmetric:
            flags["non_centred"] = list(range(steps))
        elif w.var > 0 and last_only and np.ptp(scale) == 0:
            regime = _finite_width(rnn, records, u.var * scale[0] + b_var)
        if w.var > 0:
            flags["tied_weights"] = _tied_steps(chi, rnn.units, steps, last_only)
    return records, flags, rule, regime


def state_pairs(rnn: SimpleRNN, records: list[LayerRecord], u: InputTerm,
                scale: np.ndarray, input_pairs: np.ndarray,
                diagonal: np.ndarray | None = None) -> np.ndarray:
    """``E[h_s h_t]`` of one unit for every pair of steps of one sequence, ``(T, T)``:
    what a pooling over time needs (docs/recurrent.md, section 2, "Pairs of steps").

    In the mean field ``z_s`` and ``z_t`` are jointly Gaussian with the per-step means
    and variances of ``records`` and the covariance

        Cov(z_s, z_t) = |w_x|^2 E[x_s x_t] + H v_h E[h_(s-1) h_(t-1)] + v_b

    (``h_-1 = 0``; the input features' ``E[x_s x_t]`` are ``input_pairs``, the unit's
    column norm ``|w_x|^2`` is integrated over :meth:`InputTerm.spread` as for the
    variances, ``scale`` the per-step ``E[x_t^2]`` that :func:`through_time` used), so
    the recursion runs along each diagonal of the matrix, all diagonals at once. Only
    for the mean-field rule: the identity chain has no Gaussian pair law.

    The same recursion gives two correlated input sequences' ``E[h_s h'_t]``: pass
    their ``E[x_s x'_t]`` as ``input_pairs`` and their per-step ``E[h_t h'_t]`` as
    ``diagonal`` (the recursion never reads the diagonal: ``(s - 1, t - 1)`` of an
    off-diagonal pair is off the diagonal too)."""
    from ..theory.hermite_pairs import hermite_coefficients, mehler_pairs
    from ..theory.spatial_gauss import pair_cross
    act = rnn.activation
    steps = len(records)
    mean = np.array([r.z_mean for r in records])
    var = np.array([r.z_var for r in records])
    shared = np.maximum(var - u.var * scale, 0.0)  # the recurrent and bias terms
    spread, node_w = u.spread()
    nodes = len(spread)
    # every (node, step) marginal: its variance, E[phi^2] and Mehler coefficients
    v = spread[:, None] * scale[None, :] + shared[None, :]
    m = np.broadcast_to(mean, v.shape)
    second = np.stack([_node_moments(act, v[:, t], mean[t])[1] for t in range(steps)], 1)
    # a piecewise-linear activation has the exact pair rule in closed form, and its
    # kink leaves the expansion unbounded: straight to the exact rule
    coef = None if act.piecewise_linear else hermite_coefficients(act, m, v, second)
    flat = np.arange(nodes * steps).reshape(nodes, steps)
    pairs = np.diag([r.a_var + r.a_mean ** 2 for r in records] if diagonal is None
                    else np.asarray(diagonal, float))
    w = rnn.recurrent_init.moments(rnn.recurrent_shape)
    f_var = rnn.units * w.var
    b_var = _bias(rnn)[1]
    for s in range(steps - 1):
        t = np.arange(s + 1, steps)
        before = pairs[s - 1, t - 1] if s > 0 else np.zeros(t.size)
        cov = spread[:, None] * input_pairs[s, t][None, :] \
            + (f_var * before + b_var)[None, :]
        v_s, v_t = np.broadcast_to(v[:, s:s + 1], cov.shape), v[:, t]
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = np.sqrt(v_s * v_t)
            corr = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
        if coef is None:
            e, ok = np.empty(cov.shape), np.zeros(cov.shape, bool)
        else:
            e, ok = mehler_pairs(coef.take(flat[:, s:s + 1]), coef.take(flat[:, t]), corr)
        if not np.all(ok):  # beyond the expansion's bound: the exact pair rule
            bad = ~ok
            e[bad] = pair_cross(act, np.full(np.count_nonzero(bad), mean[s]), m[:, t][bad],
                                v_s[bad], v_t[bad], cov[bad])
        pairs[s, t] = pairs[t, s] = node_w @ e
    return pairs


def _finite_width(rnn: SimpleRNN, records: list[LayerRecord], injected: float) -> Any:
    """The first-order finite-width spread of log(measured / mean field) per step
    (:mod:`varprop.theory.finite_width`, docs/theory.md section 11), with the step's
    input term in the role of a bias (it dilutes the recurrent fluctuations): a
    :class:`~varprop.theory.finite_width.Regime`, or None when a variance is undefined.
    The tied kernel makes the steps' fluctuations share a term that this chain of fresh
    layers does not have; docs/recurrent.md gives the measured size of what it misses."""
    from ..theory.finite_width import TARGET, THRESHOLD, Regime, spread
    q = np.array([r.z_var for r in records])
    if not np.all(np.isfinite(q)) or np.any(q <= 0):
        return None
    steps = len(records)
    widths = [rnn.input_size] + [rnn.units] * steps
    b = spread(widths, q, [rnn.activation] * steps, np.full(steps, injected))
    flagged = np.flatnonzero((b.forward > THRESHOLD) | (b.backward > THRESHOLD)).tolist()
    top = max(float(b.forward.max()), float(b.backward.max()))
    return Regime(b, flagged, rnn.units, (top / TARGET) ** 2)


def recurrent_approximations(flags: dict[str, list[int]]) -> list[dict[str, Any]]:
    """``meta["approximations"]`` entries (kind ``"recurrent"``) for the flagged steps."""
    from .._approximations import layer_ranges
    return [{"kind": "recurrent", "layers": layer_ranges(where),
             "reason": RECURRENT_REASONS[cause], "detail": cause}
            for cause, where in flags.items() if where]


def _mean_field(rnn: SimpleRNN, steps: int, u: InputTerm, b_mean: float, b_var: float,
                w: Any, reads: np.ndarray, c_in: "float | np.ndarray | None",
                scale: np.ndarray) -> tuple[list[LayerRecord], list[float]]:
    act, n = rnn.activation, rnn.units
    symmetric = bool(w.symmetric and rnn.kernel_init.moments(rnn.kernel_shape).symmetric)
    # per-unit recurrent factors: H v_h on the variance, H m_h on the mean (and, for
    # identical-looking units, H^2 m_h^2 on the squared mean: the shared term)
    f_var, f_mean = n * w.var, n * w.mean
    h_mean, h_second, h_cross = 0.0, 0.0, 0.0
    records, dphi2 = [], []
    spread, node_w = u.spread()
    for t in range(steps):
        mean = u.mean + f_mean * h_mean + b_mean
        shared = f_var * h_second + f_mean * f_mean * max(h_second - h_mean ** 2, 0.0) \
            / n + b_var
        var = u.var * scale[t] + shared
        phi, phi2, dphi2_nodes = _node_moments(act, spread * scale[t] + shared, mean)
        e_phi, e_phi2 = float(node_w @ phi), float(node_w @ phi2)
        rec = LayerRecord(t, rnn.input_size + n, n, z_mean=mean, z_var=var,
                          a_mean=e_phi, a_var=max(e_phi2 - e_phi * e_phi, 0.0),
                          symmetric=symmetric)
        if c_in is not None:
            # the input term's pair: a correlation c of the step's E[x^2], or (an array)
            # each step's E[x_t x'_t] itself
            pair_in = u.per_corr * c_in[t] if np.ndim(c_in) else u.cross(c_in) * scale[t]
            cov = pair_in + f_var * h_cross + b_var
            # uncentred, E[z1 z2] / E[z^2], as the measurement pools it
            second = var + mean * mean
            rec.z_corr = (cov + mean * mean) / second if second > 0 else math.nan
            cm = gaussian_cross_moments(act, var, var, q12=min(cov, var), mean=mean)
            h_cross = float(cm.e_phi_phi)
        records.append(rec)
        dphi2.append(float(node_w @ dphi2_nodes))
        h_mean, h_second = e_phi, e_phi2
    outer = 0.0  # Var dL/dh_t coming from the later steps
    for t in range(steps - 1, -1, -1):
        grad_h = float(reads[t]) + outer
        records[t].grad_var = grad_h * dphi2[t]
        outer = (f_var + f_mean * f_mean / n) * records[t].grad_var
    return records, [f_var * d for d in dphi2]


def _tied_steps(chi: list[float], units: int, steps: int, last_only: bool) -> list[int]:
    """The steps where the same random kernel at every step makes one network stray from
    the mean field (docs/recurrent.md, section 2).

    A finite ``H x H`` kernel's leading eigenvalues exceed the circular law's radius by
    a relative ``sqrt(log H / H)`` or so (Rider 2003); the state, and the gradient going
    back, align with them step after step, which the mean field (an average over fresh
    draws) does not see. Near or above criticality (``log chi`` within that excess of
    0) that dominates every step: at H = 256 and 50 steps, 20 draws of a He-ReLU network
    ended between 0.13 and 775 times the mean field's variance. In a contracting network
    it biases the gradient after many steps; measured, the bias of the mean gradient
    after k steps is about ``0.1 k / sqrt(H)`` in log (sigmoid, k = 29: x1.28 at
    H = 128, x1.15 at 512, x0.99 at 1536), so steps more than ``sqrt(H)`` from the
    loss (a 10 % bias) are flagged. This rule is calibrated on measurements, not
    derived."""
    excess = 2.0 * math.sqrt(math.log(units) / units) if units > 1 else 0.0
    top = max(chi)
    if top > 0 and math.log(top) + excess > 0:
        return list(range(steps))
    reach = math.sqrt(units)
    if not last_only:  # the loss reads earlier steps too: their own gradient is near
        return []
    return [t for t in range(steps) if steps - 1 - t > reach]


def _node_moments(act: Any, q: np.ndarray, mean: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``E[phi]``, ``E[phi^2]``, ``E[phi'^2]`` of N(mean, q) per node; a node of zero
    variance is the point ``mean`` itself, where the kernels evaluate ``phi'`` (not the
    limit q -> 0+, which averages the two sides of a kink: all-zero weights put every
    ReLU unit exactly on its kink, where the kernels' derivative is 0)."""
    q = np.atleast_1d(np.asarray(q, dtype=float))
    g = gaussian_moments(act, q, mean=mean)
    phi, phi2, dphi2 = (np.array(np.atleast_1d(v), dtype=float)
                        for v in (g.e_phi, g.e_phi2, g.e_dphi2))
    point = q == 0.0
    if point.any():
        m = np.array([mean])
        value, slope = float(act.value(m)[0]), float(act.derivative(m)[0])
        phi[point], phi2[point], dphi2[point] = value, value * value, slope * slope
    return phi, phi2, dphi2


def per_step_factor(profile: Profile, field: str = "grad_var") -> float:
    """Geometric-mean change of ``field`` per step over the profile (gradients: from the
    last step back to the first)."""
    values = np.array([getattr(r, field) for r in profile], dtype=float)
    if len(values) < 2 or not (values[0] > 0 and values[-1] > 0):
        return math.nan
    first, last = (values[-1], values[0]) if field == "grad_var" else (values[0], values[-1])
    return float((last / first) ** (1.0 / (len(values) - 1)))
