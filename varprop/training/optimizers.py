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
  ``eps_scales`` gives each parameter array its own ``eps`` (muP scales it with the
  gradient's size, docs/sweep.md section 2).

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
    """Base class: ``step(params, grads)`` updates ``params`` in place.

    ``lr_scales`` (keyword-only in every optimizer, default None): one positive factor per
    parameter array (``[W_0, b_0, W_1, b_1, ...]``) that multiplies ``learning_rate`` for
    that array -- the per-layer learning rates of muP (docs/sweep.md). None leaves every
    update exactly as without it.
    """

    name = "optimizer"

    def __init__(self, learning_rate: float, *, lr_scales: Sequence[float] | None = None) -> None:
        self.learning_rate = finite_real("learning_rate", learning_rate, positive=True)
        self.lr_scales = _lr_scales(lr_scales)
        self.iterations = 0
        self._state: list[list[np.ndarray]] | None = None

    def _lr(self, i: int) -> float:
        """The learning rate of parameter ``i``: ``learning_rate`` times its entry of
        ``lr_scales`` (per-layer rates of muP and its kin, docs/sweep.md)."""
        if self.lr_scales is None:
            return self.learning_rate
        return self.learning_rate * self.lr_scales[i]

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Apply one update to ``params`` (in place) from ``grads``.

        An optimizer with state (momentum, Adam) keeps it for the model it first stepped;
        stepping a model whose parameter count or shapes differ raises ValueError (call
        :meth:`reset` first to reuse the object: the state is not silently discarded).
        """
        if len(params) != len(grads):
            raise ValueError(f"grads must have one array per parameter ({len(params)}), got {len(grads)}")
        if self.lr_scales is not None and len(self.lr_scales) != len(params):
            raise ValueError(f"lr_scales has {len(self.lr_scales)} entries but the model has "
                             f"{len(params)} parameters: give one per parameter (W_0, b_0, ...)")
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
        config: dict[str, Any] = {"name": self.name, "learning_rate": self.learning_rate}
        if self.lr_scales is not None:
            config["lr_scales"] = list(self.lr_scales)
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain stochastic gradient descent ``w -= lr * g`` (Keras default lr 0.01)."""

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, *,
                 lr_scales: Sequence[float] | None = None) -> None:
        super().__init__(learning_rate, lr_scales=lr_scales)

    def _update(self, params, grads):
        for i, (p, g) in enumerate(zip(params, grads)):
            p -= p.dtype.type(self._lr(i)) * g


class Momentum(Optimizer):
    """SGD with (classical or Nesterov) momentum, Keras's form.

    Args:
        learning_rate: step size (default 0.01).
        momentum: mu in [0, 1) (default 0.9).
        nesterov: use Nesterov's look-ahead form.
    """

    name = "momentum"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.9,
                 nesterov: bool = False, *, lr_scales: Sequence[float] | None = None) -> None:
        super().__init__(learning_rate, lr_scales=lr_scales)
        self.momentum = real_in_range("momentum", momentum, 0.0, 1.0, closed_high=False)
        self.nesterov = boolean("nesterov", nesterov)

    def _init_state(self, params):
        return [[np.zeros_like(p) for p in params]]

    def _update(self, params, grads):
        (velocities,) = self._state
        for i, (p, g, v) in enumerate(zip(params, grads, velocities)):
            mu, lr = p.dtype.type(self.momentum), p.dtype.type(self._lr(i))
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
        eps_scales: None, or one positive factor per parameter array (``[W_0, b_0, W_1,
            b_1, ...]``) on ``epsilon`` for that array. Adam's update ``m / (sqrt(v) +
            eps)`` is invariant to the gradient's scale only while ``sqrt(v) >> eps``;
            when a parameterization shrinks a group's gradients with width (muP's hidden
            weights: ~ 1/fan_in), a fixed eps eventually dominates and the update
            shrinks with them. Scaling eps like the gradient keeps the ratio, hence the
            update, width-independent (docs/sweep.md section 2). None leaves every update
            exactly as without it.

    Example:
        >>> g = [np.array([1e-6, -1e-6])]   # sqrt(v) after one step: 3.2e-8 < eps
        >>> p = [np.zeros(2)]
        >>> Adam(0.1, epsilon=1e-7).step(p, g); p[0].round(3)        # a quarter step
        array([-0.024,  0.024])
        >>> q = [np.zeros(2)]
        >>> Adam(0.1, epsilon=1e-7, eps_scales=[1e-3]).step(q, g); q[0].round(3)
        array([-0.1,  0.1])
    """

    name = "adam"

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, *,
                 lr_scales: Sequence[float] | None = None,
                 eps_scales: Sequence[float] | None = None) -> None:
        super().__init__(learning_rate, lr_scales=lr_scales)
        self.beta_1 = real_in_range("beta_1", beta_1, 0.0, 1.0, closed_high=False)
        self.beta_2 = real_in_range("beta_2", beta_2, 0.0, 1.0, closed_high=False)
        self.epsilon = finite_real("epsilon", epsilon, positive=True)
        self.eps_scales = _lr_scales(eps_scales, "eps_scales")

    def _eps(self, i: int) -> float:
        """The epsilon of parameter ``i``: ``epsilon`` times its entry of ``eps_scales``."""
        if self.eps_scales is None:
            return self.epsilon
        return self.epsilon * self.eps_scales[i]

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        if self.eps_scales is not None and len(self.eps_scales) != len(params):
            raise ValueError(f"eps_scales has {len(self.eps_scales)} entries but the model has "
                             f"{len(params)} parameters: give one per parameter (W_0, b_0, ...)")
        super().step(params, grads)

    def _init_state(self, params):
        return [[np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]]

    def _update(self, params, grads):
        m_list, v_list = self._state
        t = self.iterations
        for i, (p, g, m, v) in enumerate(zip(params, grads, m_list, v_list)):
            # the same expression (and so the same rounding) as before lr_scales existed
            alpha = self._lr(i) * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
            typ = p.dtype.type
            m *= typ(self.beta_1)
            m += typ(1.0 - self.beta_1) * g
            v *= typ(self.beta_2)
            v += typ(1.0 - self.beta_2) * (g * g)
            denom = np.sqrt(v)
            denom += typ(self._eps(i))
            p -= typ(alpha) * m / denom

    def get_config(self):
        config = {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                  "epsilon": self.epsilon}
        if self.eps_scales is not None:
            config["eps_scales"] = list(self.eps_scales)
        return config


def _lr_scales(value: Any, name: str = "lr_scales") -> tuple[float, ...] | None:
    """A per-parameter list of positive factors (``lr_scales``, ``eps_scales``) or None."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of positive numbers or None, "
                        f"got {type(value).__name__}")
    return tuple(finite_real(f"{name}[{i}]", v, positive=True) for i, v in enumerate(value))


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
