"""The dense layer ``z = x @ W + b``: validation, parameter draw, array forward and
backward on the fused kernels, and the mean-field rule, side by side.

Mean-field rule (Poole et al. 2016; docs/theory.md, sections 2-4). With per-entry weight
mean ``m``, variance ``v``, bias mean ``m_b``, variance ``v_b``, fan in ``n`` and inputs
of mean ``mu``, variance ``s``::

    E[z]   = n m mu + m_b
    Var[z] = n v E[x^2] + n m^2 s + v_b          (independent units)
    Var[z] = n v E[x^2] + n^2 m^2 s + v_b        (identical units)

and backward, for a fan out ``n'`` and gradient independence, ``Var[dL/dx] = (n' v +
n' m^2) Var[dL/dz]`` (``n'^2 m^2`` when the gradients are identical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._analytic_parts import _Gradient, mul0
from .._analytic_signal import _Signal
from ..initializers import Initializer
from ..initializers import initializer_argument
from ..profile import LayerRecord
from .._validate import positive_int
from .base import Layer, Step, weighted_backward, weighted_forward
from .elementwise import act_analytic

__all__ = ["Dense", "forward_moments", "backward_factor"]


def forward_moments(n_var: float, n_mean: float, n_mean2: float, b_mean: float,
                    b_var: float, mean: float, var: float, second: float
                    ) -> tuple[float, float]:
    """``(E[z], Var[z])`` of a dense layer from its fan-scaled weight moments
    (``n v``, ``n m``, ``n m^2`` or ``n^2 m^2`` for identical units) and the input's
    mean, variance and second moment. A zero factor wins over an overflowed one
    (docs/theory.md, section 10)."""
    return (mul0(n_mean, mean) + b_mean,
            mul0(n_var, second) + mul0(n_mean2, var) + b_var)


def backward_factor(out_var: float, out_mean2: float, g: float) -> float:
    """``Var[dL/dx]`` from ``Var[dL/dz] = g`` and the fan-out-scaled weight moments
    (``n' v`` and ``n' m^2``, or ``n'^2 m^2`` for identical gradients)."""
    return mul0(out_var, g) + mul0(out_mean2, g)


@dataclass(frozen=True)
class Dense(Layer):
    """A dense layer ``z = x @ W + b`` with ``W`` of shape ``(n_in, n_out)``.

    ``init`` and ``bias_init`` take an initializer, its name or its config dict;
    ``bias_init=None`` means no bias.
    """

    n_in: int
    n_out: int
    init: Initializer
    bias_init: Initializer | None = None

    weighted = True
    fully_connected = True

    def __post_init__(self) -> None:
        for name in ("n_in", "n_out"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name), owner="Dense"))
        object.__setattr__(self, "init", initializer_argument("Dense", "init", self.init, False))
        object.__setattr__(self, "bias_init",
                           initializer_argument("Dense", "bias_init", self.bias_init, True))

    @property
    def width(self) -> int:
        return self.n_out

    def output_width(self, width: int, position: str) -> int:
        if not isinstance(width, int):
            raise ValueError(f"{position}: Dense expects a flat input of width {self.n_in} "
                             f"but receives shape {width!r}: put Flatten() or "
                             f"GlobalAvgPool() before it")
        if self.n_in != width:
            raise ValueError(f"{position}: Dense expects {self.n_in} inputs but receives "
                             f"width {width}")
        return self.n_out

    # ------------------------------------------------------------------ parameters
    def draw(self, run: Any, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(w, b) of dense layer ``index`` from its own random streams: the same every
        time (the measurement regenerates weights instead of storing them)."""
        shape = (self.n_in, self.n_out)
        w = self.init(shape, seed=run.stream(index, 0), dtype=run.dtype)
        if self.bias_init is None:
            return w, None
        try:
            b = self.bias_init((self.n_out,), seed=run.stream(index, 1), dtype=run.dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"measure: dense layer {index}: bias_init {self.bias_init!r} cannot draw "
                f"a bias of shape ({self.n_out},): {exc}") from exc
        return w, b

    def analytic_key(self, once: Callable[[Any, Any, Callable[[], Any]], Any]) -> Any:
        shape = (self.n_in, self.n_out)
        bias = None if self.bias_init is None else once(
            self.bias_init, (self.n_out,), lambda: self.bias_init.moments((self.n_out,)))
        return (shape, once(self.init, shape, lambda: self.init.moments(shape)), bias)

    # ------------------------------------------------------------------ arrays
    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        from ..kernels import dense_forward

        def kernel(xs: np.ndarray, w: np.ndarray, b: Any, act: Any, stats: bool) -> Any:
            return dense_forward(xs, w, b, act, stats=stats, n_threads=run.n_threads)

        return weighted_forward(step, run, x, x2, keep, record, kernel)[:3]

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        from ..kernels import dense_backward

        def kernel(x: np.ndarray, w: np.ndarray, z: np.ndarray, g: np.ndarray, act: Any) -> Any:
            return dense_backward(x, w, z, g, act, n_threads=run.n_threads)

        return weighted_backward(step, run, cache, grad, kernel).grad_x

    def cache_bytes(self, step: Step, width: int, batch: int, itemsize: int
                    ) -> tuple[int, int]:
        return (batch * (self.n_in + self.n_out) + self.n_in * self.n_out) * itemsize, \
            self.n_out

    # ------------------------------------------------------------------ theory
    def analytic(self, step: Step, analyzer: Any, x: _Signal, ops: list) -> _Signal:
        ctx = analyzer.ctx
        w = ctx.init_moments(self.init, (self.n_in, self.n_out))
        b_mean, b_var, b_symmetric = ctx.bias(self)
        if w.structure == "identity":
            z, info = self._identity_forward(x, w, b_mean, b_var)
        else:
            z, info = self._random_forward(x, w, b_mean, b_var, b_symmetric)
        rec = LayerRecord(len(analyzer.records), self.n_in, self.n_out,
                          z_mean=z.mean, z_var=z.var, a_mean=z.mean, a_var=z.var,
                          symmetric=info["symmetric"])
        if not math.isnan(z.cross):
            # uncentred, E[z1 z2] / E[z^2], as the measurement pools it (a constant bias
            # makes the centred and the uncentred correlation differ)
            rec.z_corr = (z.cross / z.second if 0 < z.second < math.inf else math.nan)
        analyzer.records.append(rec)
        ops.append((self._backward_rule, (rec, info, z)))
        if step.act is None:
            return z
        a = act_analytic(analyzer, step.act, z, ops)
        rec.a_mean, rec.a_var = a.mean, a.var
        return a

    def _random_forward(self, x: _Signal, w: Any, b_mean: float, b_var: float,
                        b_symmetric: bool) -> tuple[_Signal, dict[str, Any]]:
        n = self.n_in
        # Sum over inputs: with identical units the n terms of the mean part add coherently.
        coherent = n * n if x.identical else n
        mean, var = forward_moments(n * w.var, n * w.mean, coherent * (w.mean * w.mean),
                                    b_mean, b_var, x.mean, x.var, x.second)

        def pair(x_cross: float) -> float:
            """E[z1 z2] for inputs with E[x1 x2] = x_cross (NaN: not tracked)."""
            if math.isnan(x_cross):
                return math.nan
            cov = (n * w.var * x_cross
                   + coherent * (w.mean * w.mean) * (x_cross - x.mean * x.mean) + b_var)
            return cov + mean * mean

        cross, bcross = pair(x.cross), pair(x.bcross)
        identical = (w.var == 0.0 and b_symmetric) or \
            (x.identical and w.var == 0.0 and b_var == 0.0)
        if x.identical and w.var == 0.0 and b_var == 0.0:
            # every unit is n m x + b of the one (identical) input unit: its law, affinely
            out = _Signal(mean, var, identical, cross, gaussian=x.gaussian,
                          law=x.affine_law(n * w.mean, b_mean), bcross=bcross)
        else:  # a sum over many independent inputs (or a Gaussian bias): Gaussian
            out = _Signal(mean, var, identical, cross, bcross=bcross)
        info = {"moments": w, "x_second": x.second, "symmetric": bool(w.symmetric),
                "x_identical": x.identical}
        return out, info

    def _identity_forward(self, x: _Signal, w: Any, b_mean: float,
                          b_var: float) -> tuple[_Signal, dict[str, Any]]:
        """z_j = gain * x_j (j < min(n_in, n_out)) + b_j: each unit passes on its own
        input, so its mean stays a mean (the i.i.d. formula would turn E[x]^2 into
        variance)."""
        # gain of gain * eye(n_in, n_out), recovered from the mean over its entries
        gain = w.mean * self.n_in * self.n_out / min(self.n_in, self.n_out)
        keep = min(self.n_in, self.n_out) / self.n_out  # share of units fed by an input
        mean = mul0(keep * gain, x.mean) + b_mean
        second = mul0(keep * gain**2, x.second)
        if math.isfinite(second):  # else E[x^2] overflowed, and it dominates
            second = second + b_var + b_mean**2 + 2 * keep * gain * x.mean * b_mean

        def pair(x_cross: float) -> float:
            """E[z1 z2] for inputs with E[x1 x2] = x_cross (NaN: not tracked)."""
            if math.isnan(x_cross):
                return math.nan
            return (keep * gain**2 * x_cross + b_var + b_mean**2
                    + 2 * keep * gain * x.mean * b_mean)

        cross, bcross = pair(x.cross), pair(x.bcross)
        identical = x.identical and b_var == 0.0
        var = max(second - mean * mean, 0.0)
        if not math.isfinite(second):  # Var[I (g x) + b], I ~ Bernoulli(keep), directly
            var = (mul0(keep * gain**2, x.var) + b_var
                   + mul0(keep * (1.0 - keep), mul0(gain, x.mean) * mul0(gain, x.mean)))
        if keep == 1.0 and b_var == 0.0:  # z_j = gain x_j + b: the input's law, affinely
            out = _Signal(mean, var, identical, cross, gaussian=x.gaussian,
                          law=x.affine_law(gain, b_mean), bcross=bcross)
        elif keep == 1.0 and x.gaussian:  # plus an independent Gaussian bias: Gaussian
            out = _Signal(mean, var, identical, cross, bcross=bcross)
        else:  # a mixture (bias-only units) or a non-Gaussian unit plus noise: no exact law
            out = _Signal(mean, var, identical, cross, gaussian=False, bcross=bcross)
        return out, {"moments": w, "x_second": x.second, "symmetric": False, "gain": gain,
                     "x_identical": x.identical}

    def _backward_rule(self, analyzer: Any, state: tuple, g: _Gradient) -> _Gradient:
        rec, info, z = state
        total = g.total()
        analyzer.chain_member(rec.index, z, g)
        rec.grad_var = total
        rec.weight_grad_var = mul0(info["x_second"], total)
        w = info["moments"]
        if w.structure == "identity":  # each unit's gradient passes on, scaled
            return g.scaled(info["gain"] ** 2, g.identical)
        n = self.n_out
        if w.var == 0.0:
            # constant weights send the same sum back to every input unit, m times the
            # sum of the n gradients: coherent (n^2) when those are identical; a common
            # per-node factor stays a factor
            return g.scaled((n * n if g.identical else n) * (w.mean * w.mean), True)
        # random weights: a sum of many independent terms (gradient independence)
        coherent = n * n if g.identical else n
        return _Gradient(backward_factor(n * w.var, coherent * (w.mean * w.mean), total), False)
