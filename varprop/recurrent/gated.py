"""Gated recurrent cells, LSTM and GRU: their specs, framework defaults and chrono biases.

A spec holds no weights, as :class:`~varprop.recurrent.SimpleRNN` does: the analytic
side (:func:`analyze_gated`, :mod:`varprop.recurrent.gated_theory`) reads the
initializers' moments, the measurement (:func:`measure_gated`,
:mod:`varprop.recurrent.gated_measure`) draws them, seeded, and runs the plain-numpy
forward and backward passes of :mod:`varprop.recurrent.gated_arrays`. docs/gated.md
gives the equations, the theory and what the measurement showed.

Each cell stores its weights in one of two layouts, each framework's own (``layout``):

============  ======================================  =====================================
cell          ``"keras"``                             ``"torch"``
============  ======================================  =====================================
LSTM          gates i, f, c, o; ``kernel (F, 4H)``,   gates i, f, g, o; ``weight_ih (4H, F)``,
              ``recurrent_kernel (H, 4H)``,           ``weight_hh (4H, H)``, ``bias_ih (4H,)``,
              ``bias (4H,)``                          ``bias_hh (4H,)``
GRU           gates z, r, h (``reset_after=True``);   gates r, z, n; ``weight_ih (3H, F)``,
              ``kernel (F, 3H)``, ``recurrent_kernel  ``weight_hh (3H, H)``, ``bias_ih (3H,)``,
              (H, 3H)``, ``bias (2, 3H)``             ``bias_hh (3H,)``
============  ======================================  =====================================

The two layouts compute the same functions (the gate order and the transposes differ)::

    LSTM:  i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o),  g = tanh(a_g)
           c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
    GRU:   z, r = sigmoid(a_z), sigmoid(a_r)
           n = tanh(x W_xn + b_xn + r (h_{t-1} W_hn + b_hn))
           h_t = z h_{t-1} + (1 - z) n

with ``a_k = x_t W_xk + h_{t-1} W_hk + b_k`` and ``h_{-1} = c_{-1} = 0``. The initializers
are called on each layout's own shapes, as the framework calls them: Keras's
``glorot_uniform`` sees the fans of ``(F, 4H)`` and its ``orthogonal`` draws one
``(H, 4H)`` matrix with orthonormal rows, so each gate's recurrent block has entries of
second moment ``1 / (4H)`` (docs/gated.md, section 1).

Example:
    >>> cell = keras_lstm(32, 128)
    >>> cell.describe()
    'lstm 32->128 keras, glorot_uniform/orthogonal, forget bias 1'
    >>> torch_gru(32, 128).array_shapes["weight_hh"]
    (384, 128)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields as _dc_fields
from typing import Any

import numpy as np

from .._validate import boolean, finite_real, one_of, positive_int
from ..initializers import Initializer, initializer_argument

__all__ = ["LSTM", "GRU", "GatedCell", "LAYOUTS", "GATES", "GATED_REASONS", "keras_lstm",
           "torch_lstm", "keras_gru", "torch_gru", "chrono_bias", "chrono_cdf", "chrono_nodes",
           "analyze_gated", "measure_gated", "gated_forward", "gated_backward",
           "draw_gated_parameters"]

#: The weight layouts: each framework's gate order and array shapes (module doc).
LAYOUTS = ("keras", "torch")
#: Gate names in each layout's order, per cell kind.
GATES = {"lstm": {"keras": ("i", "f", "c", "o"), "torch": ("i", "f", "g", "o")},
         "gru": {"keras": ("z", "r", "h"), "torch": ("r", "z", "n")}}

#: Why the gated theory is approximate (``meta["approximations"]``, detail ``"gated"``);
#: docs/gated.md, section 3, gives the measured size of each part.
GATED_REASONS = {
    "gated": "gated cells: the mean field treats the gates of a step, its candidate and "
             "the unit's previous state as independent, as if the weights were drawn "
             "afresh at every step (the network's weights are tied over time, which "
             "correlates a unit's gate pre-activations from step to step: measured, the "
             "LSTM's cell-state variance ~3% above the theory and the GRU's gradient "
             "far back in time up to ~1.6x, at every width), the LSTM's cell state as "
             "Gaussian inside tanh, and the backward pass under gradient independence "
             "(the state's gradient independent of its own step's gates); PyTorch's "
             "random biases are fixed per unit, which the theory treats as fresh noise "
             "(an effect that grows with the sequence length and shrinks as 1/width)",
}


def _label(init: Initializer | None) -> str:
    return "no bias" if init is None else getattr(init, "name", type(init).__name__)


class GatedCell:
    """What :class:`LSTM` and :class:`GRU` share: shapes, layout and labels."""

    kind: str = ""
    input_size: int
    units: int
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer | None
    layout: str
    chrono: float | None
    name: str

    def _validate_common(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "input_size",
                           positive_int("input_size", self.input_size, owner=owner))
        object.__setattr__(self, "units", positive_int("units", self.units, owner=owner))
        object.__setattr__(self, "layout", one_of("layout", self.layout, LAYOUTS, owner=owner))
        object.__setattr__(self, "kernel_init",
                           initializer_argument(owner, "kernel_init", self.kernel_init))
        object.__setattr__(self, "recurrent_init",
                           initializer_argument(owner, "recurrent_init", self.recurrent_init))
        object.__setattr__(self, "bias_init",
                           initializer_argument(owner, "bias_init", self.bias_init, True))
        if self.chrono is not None:
            t_max = finite_real("chrono", self.chrono, owner=owner)
            if not t_max > 2.0:  # U(1, T_max - 1) needs T_max - 1 > 1
                raise ValueError(f"{owner}: chrono must be > 2 (the longest memory T_max, "
                                 f"in steps); got {self.chrono!r}")
            if self.bias_init is None:
                raise ValueError(f"{owner}: chrono sets gate biases; it needs a bias "
                                 "(bias_init is None)")
            object.__setattr__(self, "chrono", t_max)
        if not isinstance(self.name, str):
            raise TypeError(f"{owner}: name must be a str, got {type(self.name).__name__}")

    @property
    def n_gates(self) -> int:
        return 4 if self.kind == "lstm" else 3

    @property
    def gates(self) -> tuple[str, ...]:
        """The gate names in this layout's order."""
        return GATES[self.kind][self.layout]

    @property
    def array_shapes(self) -> dict[str, tuple[int, ...]]:
        """The layout's arrays and their shapes, named as the framework names them."""
        f, h, g = self.input_size, self.units, self.n_gates
        if self.layout == "keras":
            shapes: dict[str, tuple[int, ...]] = {"kernel": (f, g * h),
                                                  "recurrent_kernel": (h, g * h)}
            if self.bias_init is not None:
                shapes["bias"] = (g * h,) if self.kind == "lstm" else (2, g * h)
            return shapes
        shapes = {"weight_ih": (g * h, f), "weight_hh": (g * h, h)}
        if self.bias_init is not None:
            shapes.update(bias_ih=(g * h,), bias_hh=(g * h,))
        return shapes

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return self.array_shapes["kernel" if self.layout == "keras" else "weight_ih"]

    @property
    def recurrent_shape(self) -> tuple[int, ...]:
        return self.array_shapes["recurrent_kernel" if self.layout == "keras" else "weight_hh"]

    def describe(self) -> str:
        if self.name:
            return self.name
        text = (f"{self.kind} {self.input_size}->{self.units} {self.layout}, "
                f"{_label(self.kernel_init)}/{_label(self.recurrent_init)}")
        if getattr(self, "unit_forget_bias", False):
            text += ", forget bias 1"
        if self.chrono is not None:
            text += f", chrono {self.chrono:g}"
        return text

    def with_changes(self, **changes: Any) -> Any:
        """A copy with some fields changed (validated again); the label is rebuilt
        unless ``name`` is given."""
        names = {f.name for f in _dc_fields(self)}  # type: ignore[arg-type]
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"with_changes: unknown field(s) {', '.join(sorted(unknown))}")
        values = {n: getattr(self, n) for n in names}
        values["name"] = ""
        values.update(changes)
        return type(self)(**values)


@dataclass(frozen=True)
class LSTM(GatedCell):
    """A long short-term memory layer (Hochreiter and Schmidhuber 1997, with the forget
    gate of Gers et al. 2000), time-major, ``h_{-1} = c_{-1} = 0``.

    Args:
        input_size: features per step ``F``.
        units: state width ``H``.
        kernel_init, recurrent_init: initializers of the input and recurrent kernels,
            called on the layout's shapes (module doc). Keras's defaults:
            glorot_uniform and orthogonal.
        bias_init: initializer of the bias (each of PyTorch's two biases), or None for
            none.
        layout: ``"keras"`` or ``"torch"`` (module doc).
        unit_forget_bias: the forget gate's total bias set to 1 at initialization
            (Keras's ``unit_forget_bias``; its docs say "add 1" and force zeros, its code
            sets the forget slice to ones, which is what this does; in the torch layout
            ``bias_ih``'s slice becomes 1 and ``bias_hh``'s 0). None: the layout's
            default, True for keras, False for torch (and False with ``chrono``).
        chrono: ``T_max`` of the chrono initialization (Tallec and Ollivier 2018, arXiv
            1804.11188): ``b_f = log U(1, T_max - 1)`` per unit and ``b_i = -b_f``,
            replacing those two gates' biases (PyTorch's ``bias_hh`` slices become 0).
        name: a label for reports.

    Example:
        >>> LSTM(16, 64, layout="torch").unit_forget_bias
        False
        >>> LSTM(16, 64, chrono=50).describe()
        'lstm 16->64 keras, glorot_uniform/orthogonal, chrono 50'
    """

    input_size: int
    units: int
    kernel_init: Any = "glorot_uniform"
    recurrent_init: Any = "orthogonal"
    bias_init: Any = "zeros"
    layout: str = "keras"
    unit_forget_bias: bool | None = None
    chrono: float | None = None
    name: str = ""
    kind = "lstm"

    def __post_init__(self) -> None:
        self._validate_common()
        ufb = boolean("unit_forget_bias", self.unit_forget_bias, or_none=True, owner="LSTM")
        if ufb is None:
            ufb = self.layout == "keras" and self.chrono is None and self.bias_init is not None
        if ufb and self.chrono is not None:
            raise ValueError("LSTM: unit_forget_bias and chrono both set the forget gate's "
                             "bias; pass unit_forget_bias=False with chrono")
        if ufb and self.bias_init is None:
            raise ValueError("LSTM: unit_forget_bias needs a bias (bias_init is None)")
        object.__setattr__(self, "unit_forget_bias", ufb)


@dataclass(frozen=True)
class GRU(GatedCell):
    """A gated recurrent unit (Cho et al. 2014) in the form Keras (``reset_after=True``)
    and PyTorch share: the reset gate multiplies ``h_{t-1} W_hn + b_hn``.

    Args:
        input_size, units, kernel_init, recurrent_init, bias_init, layout, name: as
            :class:`LSTM`.
        chrono: ``T_max`` of the chrono initialization for the update gate. Tallec and
            Ollivier write the gated update as ``h_t = a tanh(..) + (1 - a) h_{t-1}``, with
            the chrono law on the gate that keeps the old state: here ``z`` keeps it
            (``h_t = z h_{t-1} + (1 - z) n``), so ``b_z = log U(1, T_max - 1)``, the
            forget gate's law, giving memory times ``1 + exp(b_z)`` spread over
            ``[2, T_max]``; the reset gate keeps ``bias_init`` (docs/gated.md, section 1).

    Example:
        >>> GRU(16, 64).gates
        ('z', 'r', 'h')
    """

    input_size: int
    units: int
    kernel_init: Any = "glorot_uniform"
    recurrent_init: Any = "orthogonal"
    bias_init: Any = "zeros"
    layout: str = "keras"
    chrono: float | None = None
    name: str = ""
    kind = "gru"

    def __post_init__(self) -> None:
        self._validate_common()


def _torch_uniform(units: int) -> dict[str, Any]:
    """PyTorch's default for every weight and bias of nn.LSTM / nn.GRU:
    U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(units)
    return {"name": "random_uniform", "minval": -bound, "maxval": bound}


def keras_lstm(input_size: int, units: int, *, chrono: float | None = None) -> LSTM:
    """Keras's ``LSTM(units)`` with its defaults: glorot_uniform kernel, orthogonal
    recurrent kernel, zeros bias with ``unit_forget_bias=True`` (False with ``chrono``).

    Example:
        >>> keras_lstm(8, 32).array_shapes["recurrent_kernel"]
        (32, 128)
    """
    return LSTM(input_size, units, "glorot_uniform", "orthogonal", "zeros", "keras",
                unit_forget_bias=chrono is None, chrono=chrono)


def torch_lstm(input_size: int, units: int, *, chrono: float | None = None) -> LSTM:
    """PyTorch's ``nn.LSTM(input_size, units)`` with its default: U(-1/sqrt(H), 1/sqrt(H))
    for every weight and both biases.

    Example:
        >>> round(torch_lstm(8, 100).recurrent_init.moments((400, 100)).var, 12)  # 0.2^2/12
        0.003333333333
    """
    u = _torch_uniform(units)
    return LSTM(input_size, units, u, u, u, "torch", unit_forget_bias=False, chrono=chrono)


def keras_gru(input_size: int, units: int, *, chrono: float | None = None) -> GRU:
    """Keras's ``GRU(units)`` (``reset_after=True``) with its defaults: glorot_uniform
    kernel, orthogonal recurrent kernel, zeros bias of shape ``(2, 3H)``."""
    return GRU(input_size, units, "glorot_uniform", "orthogonal", "zeros", "keras",
               chrono=chrono)


def torch_gru(input_size: int, units: int, *, chrono: float | None = None) -> GRU:
    """PyTorch's ``nn.GRU(input_size, units)`` with its default: U(-1/sqrt(H), 1/sqrt(H))
    for every weight and both biases."""
    u = _torch_uniform(units)
    return GRU(input_size, units, u, u, u, "torch", chrono=chrono)


# ----------------------------------------------------------------------------- chrono
def chrono_bias(t_max: float, units: int, seed: Any = None, dtype: Any = np.float64
                ) -> np.ndarray:
    """``units`` draws of the chrono forget-gate bias ``log U(1, T_max - 1)`` (Tallec and
    Ollivier 2018, arXiv 1804.11188); the input gate's is its negative.

    Example:
        >>> b = chrono_bias(50, 1000, seed=0)
        >>> bool(b.min() >= 0.0 and b.max() <= np.log(49))
        True
    """
    from .._validate import as_generator
    t_max = finite_real("t_max", t_max)
    if not t_max > 2.0:
        raise ValueError(f"t_max must be > 2; got {t_max!r}")
    units = positive_int("units", units)
    u = as_generator(seed).uniform(1.0, t_max - 1.0, size=units)
    return np.log(u).astype(dtype)


def chrono_cdf(b: Any, t_max: float) -> np.ndarray:
    """The law of the chrono bias: ``P(log U(1, T_max - 1) <= b) = (e^b - 1) / (T_max - 2)``
    on ``[0, log(T_max - 1)]``."""
    b = np.asarray(b, dtype=float)
    return np.clip((np.exp(np.clip(b, 0.0, math.log(t_max - 1.0))) - 1.0) / (t_max - 2.0),
                   0.0, 1.0)


def chrono_nodes(t_max: float, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes of the chrono law ``b = log U(1, T_max - 1)``: ``(bias values,
    weights summing to 1)``. Gauss-Legendre in ``b`` itself, whose density
    ``e^b / (T_max - 2)`` on ``[0, log(T_max - 1)]`` is entire, so 24 nodes integrate
    the theory's smooth functions of the bias to float precision.

    Example:
        >>> b, w = chrono_nodes(50)
        >>> round(float(w @ np.exp(b)), 10)             # E[U(1, 49)]
        25.0
    """
    z, w = np.polynomial.legendre.leggauss(n)
    top = math.log(t_max - 1.0)
    b = top * (z + 1.0) / 2.0
    w = w * np.exp(b)
    return b, w / w.sum()


_LAZY = {"analyze_gated": "gated_theory", "measure_gated": "gated_measure",
         "gated_forward": "gated_arrays", "gated_backward": "gated_arrays",
         "draw_gated_parameters": "gated_arrays"}


def __getattr__(name: str) -> Any:
    """The theory, the measurement and the arrays, importable from here
    (``from varprop.recurrent.gated import analyze_gated``) without an import cycle."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__package__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
