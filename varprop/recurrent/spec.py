"""The simple (Elman) recurrent network varprop analyzes: its spec and the named presets.

``h_t = phi(x_t W_x + h_{t-1} W_h + b)``, ``h_{-1} = 0``, for ``t = 0 .. T-1``; weights
``W_x (input_size, units)`` and ``W_h (units, units)`` (Keras's layout: ``z = x @ W``),
each with its own initializer, as Keras's ``SimpleRNN`` and PyTorch's ``nn.RNN`` have
(PyTorch stores the transposes). Time plays the role of depth, with one matrix at every
step (docs/recurrent.md).

A spec holds no weights: the analytic side reads the initializers' moments, the
measurement draws them (seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .._validate import one_of, positive_int
from ..activations import Activation, get_activation
from ..initializers import Initializer, initializer_argument

__all__ = ["SimpleRNN", "INPUT_KINDS", "LOSSES", "RNN_PRESETS", "rnn_preset"]

#: What the analyzer feeds the network: standard normal vectors at every step, or one-hot
#: tokens drawn uniformly from the vocabulary (``input_size`` tokens).
INPUT_KINDS = ("gaussian", "one_hot")
#: Where the loss reads the network: its last state only (a classifier on ``h_{T-1}``) or
#: every state (a sequence model); each reading gets a standard normal gradient.
LOSSES = ("last", "sequence")


@dataclass(frozen=True)
class SimpleRNN:
    """An Elman recurrent layer ``h_t = phi(x_t W_x + h_{t-1} W_h + b)``.

    Args:
        input_size: features per step ``F`` (the vocabulary size for one-hot inputs).
        units: state width ``H``.
        activation: a registry name or :class:`~varprop.activations.Activation`
            (default tanh).
        kernel_init: initializer of the input kernel ``W_x (F, H)`` (Keras's default:
            glorot_uniform).
        recurrent_init: initializer of the recurrent kernel ``W_h (H, H)`` (Keras's
            default: orthogonal; ``identity`` is the IRNN of Le, Jaitly and Hinton 2015).
        bias_init: initializer of ``b (H,)``, or None for no bias (default zeros).
        name: a label for reports (default: built from the fields).

    Example:
        >>> rnn = SimpleRNN(10, 128, "tanh", recurrent_init="orthogonal")
        >>> rnn.describe()
        'rnn 10->128, tanh, glorot_uniform/orthogonal'
    """

    input_size: int
    units: int
    activation: "str | Activation" = "tanh"
    kernel_init: Any = "glorot_uniform"
    recurrent_init: Any = "orthogonal"
    bias_init: Any = "zeros"
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size",
                           positive_int("input_size", self.input_size, owner="SimpleRNN"))
        object.__setattr__(self, "units", positive_int("units", self.units, owner="SimpleRNN"))
        act = self.activation
        if not isinstance(act, (str, Activation)):
            raise TypeError(f"SimpleRNN: activation must be a name or an Activation, got "
                            f"{type(act).__name__} {act!r}")
        try:
            act = get_activation(act)
        except (TypeError, ValueError) as exc:
            text = str(exc).removeprefix("activation: ")
            raise type(exc)(f"SimpleRNN: activation: {text}") from None
        object.__setattr__(self, "activation", act)
        object.__setattr__(self, "kernel_init", initializer_argument("SimpleRNN", "kernel_init", self.kernel_init))
        object.__setattr__(self, "recurrent_init",
                           initializer_argument("SimpleRNN", "recurrent_init", self.recurrent_init))
        object.__setattr__(self, "bias_init", initializer_argument("SimpleRNN", "bias_init", self.bias_init, True))
        if not isinstance(self.name, str):
            raise TypeError(f"SimpleRNN: name must be a str, got {type(self.name).__name__}")

    @property
    def kernel_shape(self) -> tuple[int, int]:
        return (self.input_size, self.units)

    @property
    def recurrent_shape(self) -> tuple[int, int]:
        return (self.units, self.units)

    def describe(self) -> str:
        if self.name:
            return self.name
        return (f"rnn {self.input_size}->{self.units}, {self.activation.name}, "
                f"{_label(self.kernel_init)}/{_label(self.recurrent_init)}")

    def with_inits(self, **changes: Any) -> "SimpleRNN":
        """A copy with some fields changed (``rnn.with_inits(recurrent_init="identity")``)."""
        fields = {"input_size": self.input_size, "units": self.units,
                  "activation": self.activation, "kernel_init": self.kernel_init,
                  "recurrent_init": self.recurrent_init, "bias_init": self.bias_init,
                  "name": ""}
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"with_inits: unknown field(s) {', '.join(sorted(unknown))}")
        fields.update(changes)
        return SimpleRNN(**fields)


def _label(init: Initializer) -> str:
    return getattr(init, "name", type(init).__name__)


#: The seeds' recurrent network and its four initializations (issue 15): a one-hot
#: vocabulary of 10 tokens into 128 tanh units, read at the last step by a two-class
#: softmax. "random" is N(0, 0.01^2) as in the seeds; "xavier" Keras's glorot_uniform
#: for both kernels; "he" he_normal for both.
RNN_PRESETS: dict[str, dict[str, Any]] = {
    "zeros": {"kernel_init": "zeros", "recurrent_init": "zeros"},
    "random": {"kernel_init": {"name": "random_normal", "stddev": 0.01},
               "recurrent_init": {"name": "random_normal", "stddev": 0.01}},
    "xavier": {"kernel_init": "glorot_uniform", "recurrent_init": "glorot_uniform"},
    "he": {"kernel_init": "he_normal", "recurrent_init": "he_normal"},
}
SEEDS_VOCAB = 10
SEEDS_UNITS = 128


def rnn_preset(init: str, *, input_size: int = SEEDS_VOCAB, units: int = SEEDS_UNITS,
               activation: Any = "tanh") -> SimpleRNN:
    """The seeds' RNN with one of :data:`RNN_PRESETS`' initializations, or any registry
    initializer name used for both kernels (``"orthogonal"``, ``"identity"`` for the
    recurrent kernel with a glorot_uniform input kernel, ``"torch"`` for PyTorch's
    U(-1/sqrt(H), 1/sqrt(H)) on every weight and bias)."""
    init = one_of("init", init, tuple(RNN_PRESETS) + ("orthogonal", "identity", "torch"))
    units = positive_int("units", units)
    if init in RNN_PRESETS:
        kw = dict(RNN_PRESETS[init])
    elif init == "torch":
        bound = 1.0 / math.sqrt(units)
        uniform = {"name": "random_uniform", "minval": -bound, "maxval": bound}
        kw = {"kernel_init": uniform, "recurrent_init": uniform, "bias_init": uniform}
    else:
        kw = {"kernel_init": "glorot_uniform", "recurrent_init": init}
    rnn = SimpleRNN(input_size, units, activation, **kw)
    return replace(rnn, name=f"{rnn.describe()} ({init})")
