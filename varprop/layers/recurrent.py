"""A recurrent layer inside a :class:`~varprop.network.Network` (an Elman cell, an LSTM
or a GRU): validation, parameter draw, array forward and backward through time on the
recurrent kernels, and the mean-field rule through time, side by side.

The layer reads a sequence ``(batch, T, F)`` (a 1-D "spatial" input whose axis is
time, channels last, as Keras lays out ``SimpleRNN``'s input) and hands on the last
state ``(batch, H)`` or every state ``(batch, T, H)`` (``return_sequences``). Its cell
is a :class:`~varprop.recurrent.SimpleRNN`, :class:`~varprop.recurrent.gated.LSTM` or
:class:`~varprop.recurrent.gated.GRU`, the same specs that
:func:`~varprop.recurrent.analyze_rnn` and :func:`~varprop.recurrent.analyze_gated` take,
so one spec holds the cell's facts wherever it is used.

Mean-field rule (docs/recurrent.md): the layer below hands a per-step second moment
``E[x_t^2]``; each step's input term is ``F (v_x + m_x^2) E[x_t^2]`` and the recursion
through time is :func:`~varprop.recurrent.theory.through_time`'s, the identity chain's
exact law included. Backward, the layers above hand ``Var dL/dh_t`` (at the last step
only, or per step), which is the recursion's "reads"; ``Var dL/dx_t = H (v_x + m_x^2)
Var dL/dz_t``. A gated cell's rule is :func:`~varprop.recurrent.gated_theory.
gated_forward_law` (docs/gated.md), with ``Var dL/dx_t = H (v_x + m_x^2) sum_k
E[delta_k^2]`` from its gate deltas. The profile row of the layer pools every step, as
the measurement pools ``(batch, T, H)``; ``profile.maps[layer]`` holds the per-step
values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import boolean
from ..profile import LayerRecord
from ._recurrent_rules import (correlated_fresh, independent_reads, input_state_pairs,
                               keep_flags, pooled_over_steps, reads_from, scaled,
                               step_stats)
from ._spatial import SpatialGradient, numel, spatial_of
from .base import Layer, Step

__all__ = ["Recurrent"]

#: The longest sequence whose gradient pairs of steps the analyzer carries back to an
#: identity-recurrent layer (a (T, T) matrix per layer above it), as for pixels.
_MAX_PAIR_STEPS = 1024


@dataclass(frozen=True)
class Recurrent(Layer):
    """A recurrent layer over a sequence: an Elman cell ``h_t = phi(x_t W_x + h_{t-1} W_h
    + b)``, an LSTM or a GRU.

    Args:
        cell: a :class:`~varprop.recurrent.SimpleRNN` (sizes, activation and the three
            initializers), or a gated cell: :class:`~varprop.recurrent.gated.LSTM`,
            :class:`~varprop.recurrent.gated.GRU` (``keras_lstm(F, H)``,
            ``torch_gru(F, H)``, ... give each framework's defaults).
        return_sequences: hand on every state ``(T, H)`` (True) or the last one, a flat
            width ``H`` (False, the default, as Keras).

    Its input is a sequence: a ``(T, F)`` feature shape with ``F == cell.input_size``
    (``Network(input_width=(T, F), ...)``, or a 1-D convolution's output). An Elman
    cell's parameters are drawn from the weighted layer's streams ``(3, i, 0)``
    (``W_x``), ``(3, i, 1)`` (``b``) and ``(3, i, 2)`` (``W_h``); a gated cell's arrays
    from ``(3, i, key)`` with the keys of
    :data:`~varprop.recurrent.gated_arrays.PARAM_KEYS`. The profile's
    ``weight_grad_var`` is the input kernel's (measured; the theory leaves it NaN: its
    terms across steps do not vanish with few input features). For a gated cell the
    row's ``z_*`` is the LSTM's cell state ``c_t`` or the GRU's candidate
    pre-activation, and ``grad_var`` is ``Var dL/dh_t``, as
    :func:`~varprop.recurrent.analyze_gated` gives them.

    Example:
        >>> from varprop import Network, Dense, analyze
        >>> from varprop.recurrent import SimpleRNN
        >>> net = Network((20, 8), [Recurrent(SimpleRNN(8, 64, "tanh")), Dense(64, 2, "glorot_normal")])
        >>> p = analyze(net)
        >>> len(p), p.maps[0]["z_var"].shape
        (2, (20,))
    """

    cell: Any
    return_sequences: bool = False

    weighted = True
    #: its activation is the cell's own: an Act after it is a layer of its own
    fuses_activation = False

    def __post_init__(self) -> None:
        from ..recurrent.gated import GatedCell
        from ..recurrent.spec import SimpleRNN
        if not isinstance(self.cell, (SimpleRNN, GatedCell)):
            raise TypeError(f"Recurrent: cell must be a varprop.recurrent.SimpleRNN, LSTM "
                            f"or GRU, got {type(self.cell).__name__} {self.cell!r}")
        object.__setattr__(self, "return_sequences",
                           boolean("return_sequences", self.return_sequences,
                                   owner="Recurrent"))

    # ------------------------------------------------------------------ shapes
    @property
    def n_in(self) -> int:
        return self.cell.input_size

    @property
    def n_out(self) -> int:
        return self.cell.units

    @property
    def gated(self) -> bool:
        """True for an LSTM or GRU cell."""
        return hasattr(self.cell, "kind")

    @property
    def needs_input_pairs(self) -> bool:
        """True when its rule must know whether its inputs are correlated across steps
        (a gated cell, an identity chain: both accumulate them per unit), so the
        analyzer carries the pairs of steps up to it."""
        from ..recurrent.theory import is_chain
        return self.gated or is_chain(self.cell)

    def output_width(self, width: Any, position: str) -> Any:
        from ..recurrent.theory import MAX_STEPS
        spatial, features = spatial_of(width, "Recurrent", position, 1)
        if features != self.cell.input_size:
            raise ValueError(f"{position}: Recurrent expects {self.cell.input_size} input "
                             f"features per step but receives {features} (input shape "
                             f"{width!r})")
        if spatial[0] > MAX_STEPS:
            raise ValueError(f"{position}: Recurrent takes at most {MAX_STEPS} steps, "
                             f"got {spatial[0]}")
        units = self.cell.units
        return (spatial[0], units) if self.return_sequences else units

    def cache_bytes(self, step: Step, width: Any, batch: int, itemsize: int
                    ) -> tuple[int, Any]:
        out = self.output_width(width, "cache")
        steps, units = width[0], self.cell.units
        gates = len(self.cell.gates) if self.gated else 1
        # per step: z and h (Elman); the gates, h, c and the GRU's s (gated)
        per_step = 2 if not self.gated else gates + 3
        weights = (self.cell.input_size + units) * units * gates
        return (batch * (numel(width) + per_step * steps * units) + weights) * itemsize, out

    # ------------------------------------------------------------------ parameters
    def draw(self, run: Any, index: int) -> tuple[Any, Any]:
        """``((W_x, W_h), b)`` of weighted layer ``index`` from its own streams; for a
        gated cell ``(arrays by name, None)``."""
        cell = self.cell
        if self.gated:
            from ..recurrent.gated_arrays import draw_gated_arrays
            return draw_gated_arrays(cell, lambda key: run.stream(index, key),
                                     run.dtype), None
        w_x = cell.kernel_init(cell.kernel_shape, seed=run.stream(index, 0), dtype=run.dtype)
        w_h = cell.recurrent_init(cell.recurrent_shape, seed=run.stream(index, 2),
                                  dtype=run.dtype)
        b = None if cell.bias_init is None else \
            cell.bias_init((cell.units,), seed=run.stream(index, 1), dtype=run.dtype)
        return (w_x, w_h), b

    def moments_as_drawn(self) -> Any:
        """The recurrent kernel's moments (its ``symmetric`` flag marks the profile row:
        with symmetric input and recurrent kernels and no random bias every unit is
        the same)."""
        cell = self.cell
        w = cell.recurrent_init.moments(cell.recurrent_shape)
        if not cell.kernel_init.moments(cell.kernel_shape).symmetric:  # either decides
            return cell.kernel_init.moments(cell.kernel_shape)
        return w

    # ------------------------------------------------------------------ arrays
    def _run(self, run: Any, x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray, b: Any
             ) -> tuple[np.ndarray, Any]:
        from ..rnn_kernels import rnn_forward
        xt = np.ascontiguousarray(np.swapaxes(x, 0, 1))  # (T, B, F): the kernels' layout
        return xt, rnn_forward(xt, w_x, w_h, b, activation=self.cell.activation,
                               n_threads=run.n_threads)

    def _output(self, h: np.ndarray) -> np.ndarray:
        if self.return_sequences:
            return np.ascontiguousarray(np.swapaxes(h, 0, 1))
        return np.ascontiguousarray(h[-1])

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        weights, b = run.parameters(self, step.index)
        if self.gated:
            return self._gated_forward(step, run, x, x2, keep, record, weights)
        w_x, w_h = weights
        xt, r = self._run(run, x, w_x, w_h, b)
        y2 = None
        if x2 is not None:
            r2 = self._run(run, x2, w_x, w_h, b)[1]
            y2 = self._output(r2.h)
            if record:
                run.record_corr(step.index, r.z, r2.z)
        if record:
            run.record_forward(step.index, step_stats(r.z, r.h))
            run.record_maps(step.index, z=np.swapaxes(r.z, 0, 1), a=np.swapaxes(r.h, 0, 1))
        return self._output(r.h), y2, ((xt, w_x, w_h, r.z, r.h) if keep else None)

    def _gated_forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                       keep: bool, record: bool, params: dict[str, np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray | None, Any]:
        from ..gated_kernels import cell_forward
        cell = self.cell

        def one(xs: np.ndarray) -> tuple[np.ndarray, Any]:
            xt = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
            return xt, cell_forward(cell, xt, params, n_threads=run.n_threads)

        xt, f = one(x)
        # what the gated profiles call z: the LSTM's cell state, the GRU's candidate
        z = f.c if f.c is not None else f.cand_pre
        y2 = None
        if x2 is not None:
            f2 = one(x2)[1]
            y2 = self._output(f2.h)
            if record:
                run.record_corr(step.index, z, f2.c if f2.c is not None else f2.cand_pre)
        if record:
            run.record_forward(step.index, step_stats(z, f.h))
            run.record_maps(step.index, z=np.swapaxes(z, 0, 1), a=np.swapaxes(f.h, 0, 1))
        return self._output(f.h), y2, ((xt, params, f) if keep else None)

    def _grad_h(self, grad: np.ndarray, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """dL/dh_t from the layers above, time-major (zeros before the last step when
        only the last state is handed on)."""
        if self.return_sequences:
            return np.ascontiguousarray(np.swapaxes(grad, 0, 1))
        grad_h = np.zeros(shape, dtype)
        grad_h[-1] = grad
        return grad_h

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        if self.gated:
            from ..gated_kernels import cell_backward
            xt, params, f = cache
            g = cell_backward(self.cell, xt, params, f, self._grad_h(grad, f.h.shape,
                                                                      f.h.dtype),
                              n_threads=run.n_threads)
            kernel = "kernel" if self.cell.layout == "keras" else "weight_ih"
            run.record_backward(step.index, g.grad_h, g.params[kernel], xt.shape[1])
            run.record_maps(step.index, grad=np.swapaxes(g.grad_h, 0, 1))
            run.gradients(step.index, g.params, None)
            return np.ascontiguousarray(np.swapaxes(g.grad_x, 0, 1))
        from ..rnn_kernels import rnn_backward
        xt, w_x, w_h, z, h = cache
        g = rnn_backward(xt, w_x, w_h, z, h, self._grad_h(grad, h.shape, h.dtype),
                         activation=self.cell.activation, n_threads=run.n_threads)
        run.record_backward(step.index, g.grad_z, g.grad_w_x, xt.shape[1])
        run.record_maps(step.index, grad=np.swapaxes(g.grad_z, 0, 1))
        run.gradients(step.index, (g.grad_w_x, g.grad_w_h), g.grad_b)
        return np.ascontiguousarray(np.swapaxes(g.grad_x, 0, 1))

    # ------------------------------------------------------------------ theory
    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        from ._spatial_rules import check_spatial
        s = check_spatial(x, self, analyzer)
        if self.gated:
            return self._gated_analytic(analyzer, s, ops)
        return self._elman_analytic(analyzer, s, ops)

    def _elman_analytic(self, analyzer: Any, s: Any, ops: list) -> Any:
        """The Elman cell's rule (:func:`~varprop.recurrent.theory.through_time`): the mean
        field, or the one-unit chain of identity recurrence (module doc)."""
        from ..recurrent.theory import input_term, is_chain, loss_reads, through_time
        from ..theory.spatial import SpatialMoments
        from ._spatial_rules import mark_approximate
        cell = self.cell
        steps = int(np.size(s.mean))
        # per unit, step t's input term is F (v_x + m_x^2) E[x_t^2]: the term for
        # E[x^2] = 1, scaled per step
        u = input_term(cell, "gaussian", 1.0)
        scale = np.asarray(s.second, dtype=np.float64).reshape(steps)
        kernel = cell.kernel_init.moments(cell.kernel_shape)
        index = len(analyzer.records)
        if kernel.mean != 0.0 and np.any(np.asarray(s.mean) != 0.0):
            # a non-centred kernel on inputs with a mean gives every unit a shared
            # input mean, which the input term (mean 0) leaves out
            mark_approximate(analyzer, index)
        persistent, correlated = 0.0, False
        if is_chain(cell):
            # the chain accumulates each unit's input terms over time: a constant input
            # mean is a random bias fixed per unit (integrated exactly); anything else
            # correlated across steps is not in its law
            mu = np.asarray(s.mean, np.float64).reshape(steps)
            persistent = u.var * float(np.mean(mu * mu))
            scale = np.maximum(scale - mu * mu, 0.0)  # the fresh part per step
            correlated = bool(np.ptp(mu) > 0) or correlated_fresh(s, steps)
        # two correlated inputs (the correlation map): the mean field carries their pairs
        icross = None if is_chain(cell) or s.icross is None else \
            np.asarray(s.icross, np.float64)
        records, flags, rule, regime = through_time(
            cell, steps, u, loss_reads("last", steps), input_scale=scale,
            persistent=persistent, input_correlation=None if icross is None
            else np.diag(icross).copy())
        if correlated:
            flags["correlated_input"] = list(range(steps))
        field = {name: np.array([getattr(r, name) for r in records])
                 for name in ("z_mean", "z_var", "a_mean", "a_var", "grad_var")}
        identical = rule == "identical units"
        rec = LayerRecord(index, cell.input_size, cell.units, symmetric=identical)
        rec.z_mean, rec.z_var = pooled_over_steps(field["z_mean"], field["z_var"])
        rec.a_mean, rec.a_var = pooled_over_steps(field["a_mean"], field["a_var"])
        h_pairs = None
        if icross is not None:
            z_second = field["z_var"] + field["z_mean"] ** 2
            z_pair = np.array([r.z_corr for r in records]) * z_second
            total = float(np.sum(z_second))
            rec.z_corr = float(np.sum(z_pair)) / total if 0 < total < math.inf else math.nan
            h_pairs = input_state_pairs(cell.activation, field, z_pair)
        analyzer.records.append(rec)
        analyzer.add_map(index, "z_var", field["z_var"])
        analyzer.add_map(index, "a_var", field["a_var"])
        chain = rule != "mean field"
        if chain and self.return_sequences and steps <= _MAX_PAIR_STEPS:
            # the exact chain sums what each step reads as independent: have the layers
            # above send back the reads' pairs of steps, to check it (_backward_rule)
            analyzer.grad_pairs = True
        state = (rec, u, scale, field["grad_var"], flags, regime,
                 kernel.var + kernel.mean ** 2, chain)
        ops.append((self._backward_rule, state))
        if not self.return_sequences:
            from .._analytic_signal import _Signal
            return _Signal(float(field["a_mean"][-1]), float(field["a_var"][-1]), identical,
                           math.nan if h_pairs is None else float(h_pairs[-1]),
                           gaussian=False)
        second = field["a_var"] + field["a_mean"] ** 2
        from ..recurrent.theory import state_pairs
        pairs = other = None
        if analyzer.track_cross and not chain and s.cross is not None:
            # a pooling over time reads the states' pairs of steps
            pairs = state_pairs(cell, records, u, scale, np.asarray(s.cross, np.float64))
        if h_pairs is not None:  # and the two inputs' pairs of steps, for the layers above
            other = state_pairs(cell, records, u, scale, icross, diagonal=h_pairs)
        return SpatialMoments(field["a_mean"].copy(), second, cross=pairs, gaussian=False,
                              exact=bool(s.exact), icross=other)

    def _gated_analytic(self, analyzer: Any, s: Any, ops: list) -> Any:
        """The gated cell's rule (:func:`~varprop.recurrent.gated_theory.
        gated_forward_law`, run once: the backward rule and the pairs of steps read it):
        flagged approximate at every step, as the gated theory is (docs/gated.md,
        section 3)."""
        from ..recurrent.gated_theory import gated_backward_law, gated_forward_law
        from ..recurrent.theory import loss_reads
        from ..theory.spatial import SpatialMoments
        from ._spatial_rules import mark_approximate
        cell = self.cell
        steps = int(np.size(s.mean))
        kernel = cell.kernel_init.moments(cell.kernel_shape)
        w_second = kernel.var + kernel.mean ** 2
        index = len(analyzer.records)
        if kernel.mean != 0.0 and np.any(np.asarray(s.mean) != 0.0):
            mark_approximate(analyzer, index)  # a shared input mean, left out
        in_var = cell.input_size * w_second * np.asarray(s.second, np.float64).reshape(steps)
        law = gated_forward_law(cell, steps, 0.0, in_var)
        fields = law.fields
        grad_last, deltas, _ = gated_backward_law(law, loss_reads("last", steps))
        w = cell.recurrent_init.moments(cell.recurrent_shape)
        rec = LayerRecord(index, cell.input_size, cell.units,
                          symmetric=bool(kernel.symmetric and w.symmetric))
        rec.z_mean, rec.z_var = pooled_over_steps(fields["z_mean"], fields["z_var"])
        rec.a_mean, rec.a_var = pooled_over_steps(fields["a_mean"], fields["a_var"])
        analyzer.records.append(rec)
        analyzer.add_map(index, "z_var", fields["z_var"])
        analyzer.add_map(index, "a_var", fields["a_var"])
        flags = {"gated": list(range(steps))}
        if np.any(np.asarray(s.mean) != 0.0) or correlated_fresh(s, steps):
            # the cell's memory accumulates input terms that are not fresh per step
            flags["correlated_input"] = list(range(steps))
        if w.mean != 0.0 and not w.symmetric:
            flags["non_centred"] = list(range(steps))
        if self.return_sequences and steps <= _MAX_PAIR_STEPS:
            analyzer.grad_pairs = True  # to check that the reads are independent
        ops.append((self._gated_backward_rule,
                    (rec, law, grad_last, deltas, flags, w_second)))
        if not self.return_sequences:
            from .._analytic_signal import _Signal
            return _Signal(float(fields["a_mean"][-1]), float(fields["a_var"][-1]),
                           gaussian=False)
        pairs = None
        if analyzer.track_cross:  # a pooling over time reads the states' pairs of steps
            from ..recurrent.gated_theory import gated_state_pairs
            pairs = gated_state_pairs(law)
        return SpatialMoments(fields["a_mean"].copy(),
                              fields["a_var"] + fields["a_mean"] ** 2, cross=pairs,
                              gaussian=False, exact=False)

    def _gated_backward_rule(self, analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
        from ..recurrent.gated_theory import gated_backward_law
        rec, law, grad_last, deltas_last, flags, w_second = state
        steps = len(grad_last)
        reads = reads_from(g, steps)
        if np.all(reads[:-1] == 0.0):  # linear in what it reads (module doc)
            grad, deltas = scaled(reads[-1], grad_last), scaled(reads[-1], deltas_last)
        else:
            grad, deltas, _ = gated_backward_law(law, reads)
            if not independent_reads(g):
                # the two-time kernels take the reads as uncorrelated across steps
                flags = {**flags, "correlated_reads": list(range(steps))}
        rec.grad_var = float(np.mean(grad))
        analyzer.add_map(rec.index, "grad_var", grad)
        keep_flags(analyzer, rec.index, flags, None)
        return SpatialGradient(scaled(self.cell.units * w_second, deltas))

    def _backward_rule(self, analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
        from ..recurrent.theory import through_time
        rec, u, scale, grad_last, flags, regime, w_second, chain = state
        steps = len(scale)
        reads = reads_from(g, steps)
        if np.all(reads[:-1] == 0.0):
            # the forward pass's own recursion read the last state with variance 1:
            # the backward one is linear in what it reads
            grad = scaled(reads[-1], grad_last)
        else:
            records, flags, _, regime = through_time(self.cell, steps, u, reads,
                                                     input_scale=scale)
            grad = np.array([r.grad_var for r in records])
            if chain and not independent_reads(g):
                # the exact chain adds the reads' variances: right for independent
                # reads (a loss on every state, a dense layer over them), not for
                # reads that share a term (a pooling over time, a layer above)
                flags["correlated_reads"] = list(range(steps))
        rec.grad_var = float(np.mean(grad))
        analyzer.add_map(rec.index, "grad_var", grad)
        keep_flags(analyzer, rec.index, flags, regime)
        return SpatialGradient(scaled(self.cell.units * w_second, grad))
