"""Optimizers of the trainer: SGD, momentum (classical or Nesterov) and Adam.

Each updates a list of parameter arrays in place from a list of gradients of the same
shapes and dtype. The update rules and defaults are Keras 3's, so that the seed
experiments (written in Keras) are reproduced as they were run:

* :class:`SGD` ``w -= lr * g`` (Keras ``SGD(learning_rate=0.01)``).
* :class:`Momentum` ``v = mu * v - lr * g; w += v``, or with ``nesterov=True``
  ``w += mu * v - lr * g`` (Keras ``SGD(momentum=0.9, nesterov=...)``; for a constant
  learning rate this equals PyTorch's ``v = mu v + g; w -= lr v``).
* :class:`Adam` (Kingma & Ba 2014, arXiv 1412.6980) in Keras's form
  ``m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`` with the defaults
  ``lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-7`` (PyTorch puts eps inside the bias
  correction and defaults it to 1e-8; the two differ only when sqrt(v) ~ eps).

The state (velocities, moments, step count) is created at the first step and kept in
the optimizer, so one optimizer object belongs to one model. Updates run in the
parameters' dtype.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .._validate import boolean, finite_real, one_of, real_in_range

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "get_optimizer", "OPTIMIZER_NAMES"]


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place."""

    name = "optimizer"

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = finite_real("learning_rate", learning_rate, positive=True)
        self.iterations = 0
        self._state: list[list[np.ndarray]] | None = None

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Apply one update to ``params`` (in place) from ``grads``.

        An optimizer with state (momentum, Adam) keeps it for the model it first stepped;
        stepping a model whose parameter count or shapes differ raises ValueError (call
        :meth:`reset` first to reuse the object: the state is not silently discarded).
        """
        if len(params) != len(grads):
            raise ValueError(f"grads must have one array per parameter ({len(params)}), got {len(grads)}")
        if self._state is None:
            self._state = self._init_state(params)
        elif self._state and (len(self._state[0]) != len(params) or any(
                s.shape != p.shape for s, p in zip(self._state[0], params))):
            had = [tuple(s.shape) for s in self._state[0]]
            got = [tuple(np.shape(p)) for p in params]
            raise ValueError("this optimizer's state (momenta) belongs to a model with parameter "
                             f"shapes {had}, got {got}: call optimizer.reset() to reuse it "
                             "on another model, or use a new optimizer")
        self.iterations += 1
        self._update(params, grads)

    def reset(self) -> None:
        """Forget the state (velocities, moments, step count)."""
        self._state = None
        self.iterations = 0

    def _init_state(self, params: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        return []

    def _update(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain stochastic gradient descent ``w -= lr * g`` (Keras default lr 0.01)."""

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01) -> None:
        super().__init__(learning_rate)

    def _update(self, params, grads):
        lr = self.learning_rate
        for p, g in zip(params, grads):
            p -= p.dtype.type(lr) * g


class Momentum(Optimizer):
    """SGD with (classical or Nesterov) momentum, Keras's form.

    Args:
        learning_rate: step size (default 0.01).
        momentum: mu in [0, 1) (default 0.9).
        nesterov: use Nesterov's look-ahead form.
    """

    name = "momentum"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.9,
                 nesterov: bool = False) -> None:
        super().__init__(learning_rate)
        self.momentum = real_in_range("momentum", momentum, 0.0, 1.0, closed_high=False)
        self.nesterov = boolean("nesterov", nesterov)

    def _init_state(self, params):
        return [[np.zeros_like(p) for p in params]]

    def _update(self, params, grads):
        (velocities,) = self._state
        for p, g, v in zip(params, grads, velocities):
            mu, lr = p.dtype.type(self.momentum), p.dtype.type(self.learning_rate)
            v *= mu
            v -= lr * g
            if self.nesterov:
                p += mu * v - lr * g
            else:
                p += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras's defaults and update form (see the module docstring).

    Args:
        learning_rate: 1e-3.
        beta_1: 0.9 (first-moment decay, in [0, 1)).
        beta_2: 0.999 (second-moment decay, in [0, 1)).
        epsilon: 1e-7 (added to sqrt(v)).
    """

    name = "adam"

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta_1 = real_in_range("beta_1", beta_1, 0.0, 1.0, closed_high=False)
        self.beta_2 = real_in_range("beta_2", beta_2, 0.0, 1.0, closed_high=False)
        self.epsilon = finite_real("epsilon", epsilon, positive=True)

    def _init_state(self, params):
        return [[np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]]

    def _update(self, params, grads):
        m_list, v_list = self._state
        t = self.iterations
        alpha = self.learning_rate * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        for p, g, m, v in zip(params, grads, m_list, v_list):
            typ = p.dtype.type
            m *= typ(self.beta_1)
            m += typ(1.0 - self.beta_1) * g
            v *= typ(self.beta_2)
            v += typ(1.0 - self.beta_2) * (g * g)
            denom = np.sqrt(v)
            denom += typ(self.epsilon)
            p -= typ(alpha) * m / denom

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


_CLASSES = {"sgd": SGD, "momentum": Momentum, "nesterov": Momentum, "adam": Adam}
#: Names :func:`get_optimizer` accepts.
OPTIMIZER_NAMES = tuple(_CLASSES)


def get_optimizer(optimizer: "str | Mapping[str, Any] | Optimizer" = "adam", **kwargs: Any) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``)
    with keyword parameters, a config dict (``{"name": "adam", "learning_rate": 0.01}``)
    or an :class:`Optimizer` object (returned as is; no keywords allowed).

    ``lr`` is accepted as an alias of ``learning_rate``.

    Raises:
        ValueError: unknown name or bad parameter value (named).
        TypeError: unknown parameter, wrong type.
    """
    if isinstance(optimizer, Optimizer):
        if kwargs:
            raise TypeError(f"optimizer: parameters {sorted(kwargs)} cannot be applied to the "
                            f"optimizer object {optimizer!r}; build a new one instead")
        return optimizer
    if isinstance(optimizer, Mapping):
        config = dict(optimizer)
        if "name" not in config:
            raise ValueError("optimizer: a config dict needs a 'name' key")
        name = config.pop("name")
        config.update(kwargs)
        return get_optimizer(name, **config)
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name, a config dict or an Optimizer, "
                        f"got {type(optimizer).__name__}")
    key = one_of("optimizer", optimizer.lower(), OPTIMIZER_NAMES)
    if "lr" in kwargs:
        if "learning_rate" in kwargs:
            raise TypeError("optimizer: give learning_rate or lr, not both")
        kwargs["learning_rate"] = kwargs.pop("lr")
    if key == "nesterov":
        kwargs.setdefault("nesterov", True)
    cls = _CLASSES[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"optimizer {key!r}: unexpected parameter(s) "
                            f"{sorted(kwargs)}; see {cls.__name__}'s docstring") from exc
        raise
