"""Mean-field theory of gated cells (LSTM, GRU) through time (docs/gated.md).

In the spirit of Gilboa et al. 2019 (arXiv 1901.08987), at every step each gate's
pre-activation is a Gaussian over the units,

    a_k ~ N(mu_k, q_k),   mu_k = E[b_k] (+ H m_h E[h_{t-1}]),
                          q_k  = v_in + H v_h E[h_{t-1}^2] + Var b_k

with ``v_in`` the input term (``F (v_x + m_x^2) Var[x]`` for Gaussian inputs, ``v_x`` for
one-hot tokens), ``v_h`` the second moment of a recurrent entry, and the gates of one step
independent of each other (different columns of the weights) and of the unit's previous
state (the recurrent weights as if drawn afresh at each step, as for the simple RNN,
docs/recurrent.md section 2). Then, per unit (LSTM)::

    E[c_t]   = E[f] E[c_{t-1}] + E[i] E[g]
    E[c_t^2] = E[f^2] E[c_{t-1}^2] + 2 E[f] E[c_{t-1}] E[i] E[g] + E[i^2] E[g^2]
    E[h_t^2] = E[o^2] E[tanh(c_t)^2],     c_t ~ N(E[c_t], Var c_t) inside tanh

and (GRU, ``n = tanh(u + r s)`` with ``u = x W_xn + b_xn`` and ``s = h W_hn + b_hn``
independent Gaussians)::

    E[h_t^2] = E[(1-z)^2] E[n^2] + 2 E[(1-z) z] E[n] E[h_{t-1}] + E[z^2] E[h_{t-1}^2]

where the candidate's moments are integrated exactly over ``r`` and ``s`` (Gauss-Hermite)
and ``u`` (:func:`varprop.theory.gaussian.gaussian_moments`): given ``r`` and ``s`` the
candidate pre-activation is ``N(E u + r s, Var u)``.

Backward, under gradient independence (the transposed recurrent matrix independent of
the forward one; the state's gradient independent of the forward quantities of its own
step), with ``G_t = E[(dL/dh_t)^2]`` and ``C_t = E[(dL/dc_t)^2]`` (LSTM), if the transposed
matrix were drawn afresh at every step (``backward="fresh"``)::

    C_t     = G_t E[o^2] E[tanh'(c_t)^2] + E[f_{t+1}^2] C_{t+1}              (cell path)
    G_{t-1} = r_{t-1} + H v_h ( G_t E[tanh(c_t)^2] E[s'(a_o)^2]
                               + C_t ( E[c_{t-1}^2] E[s'(a_f)^2] + E[g^2] E[s'(a_i)^2]
                                       + E[i^2] E[tanh'(a_g)^2] ) )

and (GRU, with the direct path ``z``, per unit)::

    G_{t-1} = r_{t-1} + E[z_t^2] G_t + H v_h G_t ( E[s'(a_z)^2] E[(h_{t-1} - n)^2]
              + E[(1-z)^2] ( E[tanh'(a_n)^2 r^2] + E[tanh'(a_n)^2 s^2 s'(a_r)^2] ) )

The network's transposed matrix is one matrix for every step, and the direct path keeps
a unit's gradient correlated over steps, so the mixed parts of ``dL/dh`` at different
steps are correlated too: ``backward="tied"`` (the default) carries these two-time
kernels (:mod:`varprop.recurrent.gated_backprop`; without them the gradient 49 steps back
is off by a factor of 10^3 to 10^5, docs/gated.md section 3).

``r_t`` is 1 where the loss reads ``h_t`` (the last step, or every step with
``loss="sequence"``), ``s' = sigmoid'``. A unit's fixed chrono bias (Tallec and Ollivier
2018, arXiv 1804.11188), or a random bias of the keep gate (``f``, ``z``: PyTorch's
default), is integrated over its law, each node a class of units running its own cell
recursion against the common recurrent term (:func:`gate_biases`); the other gates'
random biases enter ``q_k`` as variance.

Every profile is flagged ``recurrent`` / ``gated`` in ``meta["approximations"]``: these are
approximations whose measured size docs/gated.md gives (section 3).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._approximations import layer_ranges
from .._validate import finite_real, one_of
from ..initializers import RandomUniform, TorchDefaultBias
from ..profile import LayerRecord, Profile
from ..theory.gaussian import gaussian_expectation, gaussian_moments
from .gated import GATED_REASONS, GatedCell, chrono_nodes
from .gated_backprop import band, gru_backward, lstm_backward
from .gated_measure import GRAD_MEANING, Z_MEANING
from .theory import RECURRENT_REASONS, check_run, loss_reads

__all__ = ["analyze_gated", "gated_approximations", "gate_biases", "GateBias",
           "BACKWARD_RULES"]

#: How the backward pass treats the transposed recurrent matrix: one matrix for every
#: step (``"tied"``, the network's own; two-time kernels, :mod:`.gated_backprop`) or a
#: fresh one at every step (``"fresh"``: the one-time recursion of the module doc).
BACKWARD_RULES = ("tied", "fresh")

#: Gauss-Hermite nodes per axis of the GRU candidate's (r, s) integral (probabilists',
#: weights summing to 1), and a finer rule for the sigmoid's E[s^2 (1 - s)].
_HZ, _HW = np.polynomial.hermite_e.hermegauss(40)
_HW = _HW / _HW.sum()
_HZ64, _HW64 = np.polynomial.hermite_e.hermegauss(64)
_HW64 = _HW64 / _HW64.sum()
#: Gauss-Legendre nodes of the chrono bias law; per law of a random keep-gate bias
#: (one bias array, two summed: 24 or 12 x 12 unit classes).
_CHRONO_NODES = 24
_BIAS_NODES = {1: 24, 2: 12}


class GateBias:
    """The bias of one canonical gate: the input side's and the state side's mean and
    variance (treated as fresh Gaussian noise), and ``coef``: where the gate's bias is a
    unit's own fixed value, ``coef`` times the unit-class node (chrono: +-1, the input
    gate being minus the forget gate; a random keep-gate bias: 1, mean and variance 0)."""

    def __init__(self, x_mean: float = 0.0, x_var: float = 0.0, h_mean: float = 0.0,
                 h_var: float = 0.0, coef: float = 0.0) -> None:
        self.x_mean, self.x_var, self.h_mean, self.h_var = x_mean, x_var, h_mean, h_var
        self.coef = coef

    @property
    def mean(self) -> float:
        return self.x_mean + self.h_mean

    @property
    def var(self) -> float:
        return self.x_var + self.h_var

    def at(self, nodes: np.ndarray) -> np.ndarray:
        """The gate's fixed bias mean per unit-class node."""
        return self.mean + self.coef * nodes


def _law(init: Any, shape: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature of one bias entry's law: uniform initializers (PyTorch's default) by
    Gauss-Legendre on their interval, the others by Gauss-Hermite on a Gaussian of their
    mean and variance (exact for random_normal), a constant by one node."""
    m = init.moments(shape)
    if m.var == 0.0:
        return np.array([m.mean]), np.ones(1)
    bounds = None
    if isinstance(init, RandomUniform):
        bounds = (init.minval, init.maxval)
    elif isinstance(init, TorchDefaultBias):
        bounds = (-init.bound, init.bound)
    if bounds is not None:
        z, w = np.polynomial.legendre.leggauss(n)
        return bounds[0] + (bounds[1] - bounds[0]) * (z + 1.0) / 2.0, w / w.sum()
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return m.mean + math.sqrt(m.var) * z, w / w.sum()


def gate_biases(cell: GatedCell) -> tuple[list[GateBias], np.ndarray, np.ndarray]:
    """One :class:`GateBias` per canonical gate (i, f, g, o / z, r, n), as
    :func:`~varprop.recurrent.gated_arrays.draw_gated_parameters` draws them, and the
    unit classes ``(nodes, weights)``.

    A unit keeps its biases for the whole sequence. For most gates that is a small
    effect and their random bias enters the pre-activation's variance, but the keep gate
    (the LSTM's ``f``, the GRU's ``z``) multiplies the gradient at every step, so a unit
    with a larger keep bias keeps its gradient exponentially longer: that gate's bias is
    integrated over its law, each node a class of units (PyTorch's default
    ``U(-1/sqrt(H), 1/sqrt(H))`` twice, Keras's chrono law)."""
    n_g = cell.n_gates
    none = np.zeros(1), np.ones(1)
    if cell.bias_init is None:
        return [GateBias() for _ in range(n_g)], *none
    shapes = cell.array_shapes
    if cell.layout == "keras":
        rows = [shapes["bias"]] * (2 if cell.kind == "gru" else 1)  # GRU: input, recurrent
    else:
        rows = [shapes["bias_ih"], shapes["bias_hh"]]
    m = [cell.bias_init.moments(shape) for shape in rows]
    out = [GateBias(m[0].mean, m[0].var, *((m[1].mean, m[1].var) if len(m) > 1 else ()))
           for _ in range(n_g)]
    if getattr(cell, "unit_forget_bias", False):
        out[1] = GateBias(1.0)
    keep = 1 if cell.kind == "lstm" else 0
    if cell.chrono is not None:
        out[keep] = GateBias(coef=1.0)
        if cell.kind == "lstm":
            out[0] = GateBias(coef=-1.0)
        return out, *chrono_nodes(cell.chrono, _CHRONO_NODES)
    if out[keep].var == 0.0:
        return out, *none
    nodes, weights = np.zeros(1), np.ones(1)
    for shape in rows:  # the keep gate's total bias: a sum of independent entries
        v, w = _law(cell.bias_init, shape, _BIAS_NODES[len(rows)])
        nodes = (nodes[:, None] + v[None, :]).ravel()
        weights = (weights[:, None] * w[None, :]).ravel()
    out[keep] = GateBias(coef=1.0)
    return out, nodes, weights


def gated_approximations(flags: dict[str, list[int]]) -> list[dict[str, Any]]:
    """``meta["approximations"]`` entries (kind ``"recurrent"``) for the flagged steps,
    in the format of :func:`varprop.recurrent.theory.recurrent_approximations`."""
    reasons = {**RECURRENT_REASONS, **GATED_REASONS}
    return [{"kind": "recurrent", "layers": layer_ranges(where), "reason": reasons[cause],
             "detail": cause} for cause, where in flags.items() if where]


def analyze_gated(cell: GatedCell, steps: int, *, inputs: str = "gaussian",
                  input_var: float = 1.0, loss: str = "last", backward: str = "tied"
                  ) -> Profile:
    """Per-step mean-field statistics of a gated ``cell`` (module doc, docs/gated.md).

    Args:
        cell: an :class:`~varprop.recurrent.gated.LSTM` or
            :class:`~varprop.recurrent.gated.GRU`.
        steps: the sequence length ``T``.
        inputs: ``"gaussian"`` (i.i.d. N(0, input_var) features) or ``"one_hot"``.
        input_var: variance of a Gaussian input feature.
        loss: ``"last"`` or ``"sequence"``, as :func:`~varprop.recurrent.analyze_rnn`.
        backward: ``"tied"`` (one transposed recurrent matrix for every step, as the
            network has: two-time kernels) or ``"fresh"`` (the one-time recursion of a
            matrix drawn afresh at each step; module doc).

    Returns:
        A :class:`~varprop.profile.Profile` (kind ``"analytic"``), one record per step:
        ``a_*`` of ``h_t``; ``z_*`` of the LSTM's cell state ``c_t`` or the GRU's
        candidate pre-activation; ``grad_var`` = ``E[(dL/dh_t)^2]``, the state's total
        gradient (``meta["grad"]``). ``meta["approximations"]`` flags every step
        (``recurrent`` / ``gated``).

    Example:
        >>> from varprop.recurrent.gated import keras_lstm
        >>> p = analyze_gated(keras_lstm(64, 64), 30)
        >>> p.meta["approximations"][0]["detail"], p.meta["axis"]
        ('gated', 'time step')
        >>> p.gradient_ratio() < 1e-6           # the state's gradient vanishes back in time
        True
    """
    if not isinstance(cell, GatedCell):
        raise TypeError(f"cell must be a varprop.recurrent.gated.LSTM or GRU, got "
                        f"{type(cell).__name__}")
    steps, inputs, loss = check_run(steps, inputs, loss)
    input_var = finite_real("input_var", input_var, non_negative=True)
    backward = one_of("backward", backward, BACKWARD_RULES)
    kx = cell.kernel_init.moments(cell.kernel_shape)
    w = cell.recurrent_init.moments(cell.recurrent_shape)
    if inputs == "one_hot":  # one row of W_x per step
        in_mean, in_var = kx.mean, kx.var
    else:
        in_mean, in_var = 0.0, cell.input_size * (kx.var + kx.mean ** 2) * input_var
    law = gated_forward_law(cell, steps, in_mean, np.full(steps, in_var))
    fields = dict(law.fields)
    fields["grad_var"], _, band_width = gated_backward_law(law, loss_reads(loss, steps),
                                                           backward)
    n = cell.units
    symmetric = bool(kx.symmetric and w.symmetric)
    records = [LayerRecord(t, cell.input_size + n, n, symmetric=symmetric,
                           **{k: float(v[t]) for k, v in fields.items()})
               for t in range(steps)]
    flags = {"gated": list(range(steps))}
    if inputs == "one_hot" and in_var > 0:
        flags["one_hot"] = list(range(steps))
    if w.mean != 0.0 and not w.symmetric:
        flags["non_centred"] = list(range(steps))
    return Profile("analytic", records, cell.describe(), input_var=input_var,
                   meta={"axis": "time step", "rule": "gated mean field", "cell": cell.kind,
                         "layout": cell.layout, "grad": GRAD_MEANING,
                         "z": Z_MEANING[cell.kind], "inputs": inputs, "loss": loss,
                         "steps": steps, "units": n, "chrono": cell.chrono,
                         "backward": backward, "band": band_width,
                         "approximations": gated_approximations(flags)})


class GatedLaw(NamedTuple):
    """One forward pass of the gated mean field (:func:`gated_forward_law`): the
    profile's per-step fields, the per-step, per-unit-class moments the backward pass
    and the pairs of steps read, the classes' weights, ``H (v_h + m_h^2)`` and the cell
    kind."""

    fields: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    weights: np.ndarray
    factor: float
    lstm: bool


def gated_forward_law(cell: GatedCell, steps: int, in_mean: float, in_var: np.ndarray
                      ) -> GatedLaw:
    """The forward recursion of :func:`analyze_gated` for any per-step input term (mean
    ``in_mean``, variance ``in_var[t]``: the kernel's ``F (v_x + m_x^2) E[x_t^2]``)."""
    w = cell.recurrent_init.moments(cell.recurrent_shape)
    n = cell.units
    # H v_h and H m_h^2 on the variance, H m_h on the mean, H (v_h + m_h^2) backward
    rec = (n * w.var, n * w.mean ** 2, n * w.mean, n * (w.var + w.mean ** 2))
    biases, nodes, weights = gate_biases(cell)
    lstm = cell.kind == "lstm"
    with np.errstate(over="ignore", invalid="ignore"):
        fields, stats = (_lstm if lstm else _gru)(steps, in_mean, np.asarray(in_var, float),
                                                  rec, biases, nodes, weights)
    return GatedLaw(fields, stats, weights, rec[3], lstm)


def gated_backward_law(law: GatedLaw, reads: np.ndarray, backward: str = "tied"
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(Var dL/dh_t, the gate deltas' sum_k E[delta_(k,t)^2], band)`` per step of a
    forward ``law`` for any per-step reads (``Var dL/dh_t`` from outside the
    recurrence). ``H (v_x + m_x^2)`` times the deltas is ``Var dL/dx_t`` (docs/gated.md,
    section 2.3); the band of two-time kernels carried is 0 for ``backward="fresh"``."""
    steps = len(law.fields["a_var"])
    chain = law.stats["fm" if law.lstm else "zm"]
    width = 1 if backward == "fresh" else band(chain, steps) + 1
    with np.errstate(over="ignore", invalid="ignore"):
        grad, deltas = (lstm_backward if law.lstm else gru_backward)(
            law.stats, law.weights, np.asarray(reads, float), law.factor, width)
    return grad, deltas, width - 1


def gated_state_pairs(law: GatedLaw) -> np.ndarray:
    """``E[h_s h_t]`` of one unit for every pair of steps of one sequence, ``(T, T)``,
    from a forward ``law``: what a pooling over time after a gated layer reads
    (docs/gated.md, section 2.3).

    The states' two-time kernels follow the forward recursions, as the backward pass's
    do (:func:`~varprop.recurrent.gated_backprop._forward_kernel`; the gates of
    different steps independent): the LSTM's cell state ``E[c_s c_t] = E[f_t]
    E[c_s c_(t-1)] + E[i_t g_t] E[c_s]``, and ``E[h_s h_t] = E[o_s] E[o_t] E[tanh c_s
    tanh c_t]``, the last to first order in the covariance (Price's theorem); the GRU's
    state ``E[h_s h_t] = E[z_t] E[h_s h_(t-1)] + E[1 - z_t] E[n_t] E[h_s]``. Per unit
    class (the keep gate's bias nodes), then averaged; the diagonal is the profile's
    ``E[h_t^2]``."""
    from .gated_backprop import _forward_kernel
    st, fields = law.stats, law.fields
    steps = len(fields["a_var"])
    with np.errstate(over="ignore", invalid="ignore"):
        pairs = np.diag(fields["a_var"] + fields["a_mean"] ** 2)
        for s in range(steps - 1):
            width, t = steps - s, slice(s, steps)
            if law.lstm:
                kc = _forward_kernel(s, width, st["c2"], st["cm"], st["fm"],
                                     st["im"] * st["gm"])
                row = st["om"][s] * st["om"][t] * (
                    st["th"][s] * st["th"][t]
                    + st["dth"][s] * st["dth"][t] * (kc - st["cm"][s] * st["cm"][t]))
            else:
                row = _forward_kernel(s, width, st["h2"], st["hm"], st["zm"],
                                      (1.0 - st["zm"]) * st["en"])
            pairs[s, s + 1:] = pairs[s + 1:, s] = (row @ law.weights)[1:]
    return pairs


def _recurrent(rec: tuple[float, float, float, float], weights: np.ndarray,
               h_mean: np.ndarray, h_second: np.ndarray) -> tuple[float, float]:
    """The recurrent term's (mean, variance) from the states' moments over the nodes:
    ``H m_h E[h]`` and ``H v_h E[h^2] + H m_h^2 Var[h]`` (a non-centred kernel's shared
    term, added as if independent per unit, as docs/recurrent.md section 2 does)."""
    hm, h2 = float(weights @ h_mean), float(weights @ h_second)
    return rec[2] * hm, rec[0] * h2 + rec[1] * max(h2 - hm * hm, 0.0)


def _sigmoid_gate(q: float, mean: np.ndarray) -> dict[str, np.ndarray]:
    """A sigmoid gate over N(mean, q) per node: ``E[s]``, ``E[s^2]``, ``E[s']``,
    ``E[s'^2]`` and ``E[s s']`` (the last for the chain's own gate, docs/gated.md
    section 2.3)."""
    g = gaussian_moments("sigmoid", q, mean=mean)
    d1 = gaussian_expectation("sigmoid", q, "dphi", mean=mean)
    # E[s^2 (1 - s)] by Gauss-Hermite: smooth, and only the tied backward's correction
    a = np.asarray(mean)[..., None] + math.sqrt(max(q, 0.0)) * _HZ64
    sig = 0.5 * (1.0 + np.tanh(0.5 * a))
    ssd = (sig * sig * (1.0 - sig)) @ _HW64
    return {k: np.broadcast_to(np.asarray(v, dtype=float), np.shape(mean)).copy()
            for k, v in (("m", g.e_phi), ("m2", g.e_phi2), ("d", d1), ("d2", g.e_dphi2),
                         ("sd", ssd))}


def _tanh_moments(q: Any, mean: Any) -> dict[str, np.ndarray]:
    """``E[tanh]``, ``E[tanh^2]``, ``E[tanh']``, ``E[tanh'^2]`` over N(mean, q)."""
    q = np.maximum(q, 0.0)
    g = gaussian_moments("tanh", q, mean=mean)
    d1 = gaussian_expectation("tanh", q, "dphi", mean=mean)
    shape = np.broadcast_shapes(np.shape(q), np.shape(mean))
    return {k: np.broadcast_to(np.asarray(v, dtype=float), shape).copy()
            for k, v in (("m", g.e_phi), ("m2", g.e_phi2), ("d", d1), ("d2", g.e_dphi2))}


def _lstm(steps: int, in_mean: float, in_var: np.ndarray, rec: tuple[float, float, float, float],
          biases: list[GateBias], nodes: np.ndarray, weights: np.ndarray
          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The LSTM's forward recursion: the records' fields and, per step and node, the
    moments the backward pass reads (docs/gated.md, section 2.1)."""
    k = len(nodes)
    c_mean, c_second = np.zeros(k), np.zeros(k)
    h_mean, h_second = np.zeros(k), np.zeros(k)
    stats: dict[str, np.ndarray] = {}
    out = {key: np.empty(steps) for key in ("z_mean", "z_var", "a_mean", "a_var")}

    def keep(t: int, name: str, value: Any) -> None:
        stats.setdefault(name, np.zeros((steps, k)))[t] = value

    for t in range(steps):
        m_rec, q_rec = _recurrent(rec, weights, h_mean, h_second)
        gate = [_tanh_moments(in_var[t] + q_rec + b.var, in_mean + m_rec + b.at(nodes))
                if j == 2 else
                _sigmoid_gate(in_var[t] + q_rec + b.var, in_mean + m_rec + b.at(nodes))
                for j, b in enumerate(biases)]
        for name, g in zip("ifgo", gate):
            for key, v in g.items():
                keep(t, name + key, v)
        i, f, g, o = gate
        keep(t, "c2_prev", c_second)
        c_second = f["m2"] * c_second + 2.0 * f["m"] * c_mean * i["m"] * g["m"] \
            + i["m2"] * g["m2"]
        c_mean = f["m"] * c_mean + i["m"] * g["m"]
        tc = _tanh_moments(c_second - c_mean ** 2, c_mean)  # c treated as Gaussian
        h_mean, h_second = o["m"] * tc["m"], o["m2"] * tc["m2"]
        for key, v in (("cm", c_mean), ("c2", c_second), ("th", tc["m"]), ("th2", tc["m2"]),
                       ("dth", tc["d"]), ("dth2", tc["d2"])):
            keep(t, key, v)
        cm, hm = float(weights @ c_mean), float(weights @ h_mean)
        out["z_mean"][t], out["z_var"][t] = cm, max(float(weights @ c_second) - cm * cm, 0.0)
        out["a_mean"][t], out["a_var"][t] = hm, max(float(weights @ h_second) - hm * hm, 0.0)
    return out, stats


def _candidate(u_mean: float, u_var: float, s_mean: float, s_var: float, r_mean: float,
               r_var: float) -> dict[str, float]:
    """The GRU candidate ``n = tanh(u + r s)``, ``r = sigmoid(a_r)``, with ``u``, ``s``,
    ``a_r`` independent Gaussians: Gauss-Hermite over ``a_r`` and ``s``, and exactly over
    ``u`` (given ``r`` and ``s`` the pre-activation is N(E u + r s, Var u))."""
    a_r = r_mean + math.sqrt(max(r_var, 0.0)) * _HZ
    r = 0.5 * (1.0 + np.tanh(0.5 * a_r))
    s = s_mean + math.sqrt(max(s_var, 0.0)) * _HZ
    ww = np.outer(_HW, _HW)
    rr, ss = np.meshgrid(r, s, indexing="ij")
    g = _tanh_moments(u_var, u_mean + rr * ss)
    dsig = rr * (1.0 - rr)
    er, er2 = float(_HW @ r), float(_HW @ (r * r))
    a_mean = u_mean + er * s_mean
    a_second = u_var + u_mean ** 2 + 2.0 * u_mean * er * s_mean + er2 * (s_var + s_mean ** 2)
    return {"en": float(np.sum(ww * g["m"])), "en2": float(np.sum(ww * g["m2"])),
            "dn2": float(np.sum(ww * g["d2"])),
            "dn_r2": float(np.sum(ww * g["d2"] * rr * rr)),
            "dn_s2": float(np.sum(ww * g["d2"] * ss * ss * dsig * dsig)),
            "tr": float(np.sum(ww * g["d"] * rr)), "ts": float(np.sum(ww * g["d"] * ss * dsig)),
            "a_mean": a_mean, "a_var": max(a_second - a_mean ** 2, 0.0)}


def _gru(steps: int, in_mean: float, in_var: np.ndarray, rec: tuple[float, float, float, float],
         biases: list[GateBias], nodes: np.ndarray, weights: np.ndarray
         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The GRU's forward recursion (docs/gated.md, section 2.2)."""
    k = len(nodes)
    h_mean, h_second = np.zeros(k), np.zeros(k)
    z_gate, r_gate, cand = biases
    stats: dict[str, np.ndarray] = {}
    out = {key: np.empty(steps) for key in ("z_mean", "z_var", "a_mean", "a_var")}

    def keep(t: int, name: str, value: Any) -> None:
        stats.setdefault(name, np.zeros((steps, k)))[t] = value

    for t in range(steps):
        m_rec, q_rec = _recurrent(rec, weights, h_mean, h_second)
        z = _sigmoid_gate(in_var[t] + q_rec + z_gate.var, in_mean + m_rec + z_gate.at(nodes))
        c = _candidate(in_mean + cand.x_mean, in_var[t] + cand.x_var, m_rec + cand.h_mean,
                       q_rec + cand.h_var, in_mean + m_rec + r_gate.mean,
                       in_var[t] + q_rec + r_gate.var)
        for key, v in z.items():
            keep(t, "z" + key, v)
        for key in ("en", "en2", "dn2", "dn_r2", "dn_s2", "tr", "ts"):
            keep(t, key, c[key])
        keep(t, "hm_prev", h_mean)
        keep(t, "hn2", h_second - 2.0 * h_mean * c["en"] + c["en2"])  # E[(h_{t-1} - n)^2]
        h_second = (1.0 - 2.0 * z["m"] + z["m2"]) * c["en2"] \
            + 2.0 * (z["m"] - z["m2"]) * c["en"] * h_mean + z["m2"] * h_second
        h_mean = (1.0 - z["m"]) * c["en"] + z["m"] * h_mean
        keep(t, "hm", h_mean)
        keep(t, "h2", h_second)
        out["z_mean"][t], out["z_var"][t] = c["a_mean"], c["a_var"]
        hm = float(weights @ h_mean)
        out["a_mean"][t], out["a_var"][t] = hm, max(float(weights @ h_second) - hm * hm, 0.0)
    return out, stats
