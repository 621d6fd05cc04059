"""A small trainer for a :class:`~varprop.recurrent.SimpleRNN` read out on its last state.

The model is the recurrent layer of the spec followed by a dense readout of the last
state, ``logits = h_{T-1} W_o + b_o`` (docs/recurrent.md). Its recurrent weights are
drawn by :func:`varprop.recurrent.measure.draw_parameters` with the run's seed, so the
network at step 0 is exactly one of the networks :func:`~varprop.recurrent.measure_rnn`
measures; ``W_o`` is drawn from its own stream (glorot_uniform by default) and ``b_o``
is zero.

Losses (means over the batch): ``"cross_entropy"`` (softmax over the outputs, integer
class labels) and ``"mse"`` (one output, real targets; ``(y_hat - y)^2``). The backward
pass runs through time on :func:`varprop.rnn_kernels.rnn_backward` with ``dL/dh_t = 0``
for ``t < T-1`` and ``dL/dh_{T-1} = (dL/dlogits) W_o^T``. An optional global-norm clip
(``clipnorm``: all gradients scaled by ``clipnorm / ||g||`` when ``||g|| > clipnorm``,
as PyTorch's ``clip_grad_norm_`` and Keras's ``global_clipnorm``) precedes the Adam or
SGD step of :mod:`varprop.training.optimizers`.

:func:`fit_rnn` records, per evaluation interval, the mean training loss, the validation
loss (and accuracy) and the mean gradient norm before clipping, and at step 0, on the
first batch, the "gradient through time" training really starts from:
``E[(dL_i/dz_t)^2]`` per step ``t``, pooled over the batch and the units, of each
sequence's own loss ``L_i`` (``B`` times the batch-mean loss's gradient, so that it does
not depend on the batch size). That is what the profiles call ``grad_var``; only its
shape through time compares with theory, since its scale is set by the loss.

The kernels are bitwise deterministic for any thread count and the shuffling is seeded,
so a model, data and seed give the same history and weights bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .._empirical_run import stream
from .._validate import finite_real, float_dtype, non_negative_int, one_of, positive_int
from .measure import draw_parameters
from .spec import SimpleRNN

__all__ = ["RNNClassifier", "RNNHistory", "RNNStep", "fit_rnn", "evaluate_rnn",
           "loss_and_gradients", "RNN_LOSSES"]

#: The trainer's losses.
RNN_LOSSES = ("cross_entropy", "mse")
#: Stream key of the readout (draw_parameters uses keys 0-3 of the same seed).
_READOUT = 16
#: Sequences per forward pass when evaluating (bounds the (T, B, H) buffers).
_EVAL_BATCH = 2048


@dataclass
class RNNClassifier:
    """A recurrent layer and a dense readout on its last state (see the module doc).

    Attributes:
        rnn: the spec.
        w_x, w_h, b: the recurrent layer's parameters (``b`` None without a bias).
        w_o, b_o: the readout ``(units, outputs)`` and ``(outputs,)``.

    Build it with :meth:`init`.
    """

    rnn: SimpleRNN
    w_x: np.ndarray
    w_h: np.ndarray
    b: np.ndarray | None
    w_o: np.ndarray
    b_o: np.ndarray

    @classmethod
    def init(cls, rnn: SimpleRNN, outputs: int, *, seed: int = 0,
             readout_init: Any = "glorot_uniform", dtype: Any = np.float32
             ) -> "RNNClassifier":
        """Draw the parameters: the recurrent layer's with
        :func:`~varprop.recurrent.measure.draw_parameters` (``seed``), the readout's
        from ``readout_init`` (a name, config or Initializer) on its own stream."""
        from ..initializers import get as get_initializer

        if not isinstance(rnn, SimpleRNN):
            raise TypeError(f"rnn must be a varprop.recurrent.SimpleRNN, got "
                            f"{type(rnn).__name__}")
        outputs = positive_int("outputs", outputs)
        seed = non_negative_int("seed", seed)
        dt = float_dtype("dtype", dtype, kernels=True)
        try:
            init = get_initializer(readout_init)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"readout_init: {exc}") from None
        w_x, w_h, b = draw_parameters(rnn, seed, dt)
        w_o = init((rnn.units, outputs), seed=stream(seed, _READOUT), dtype=dt)
        return cls(rnn, w_x, w_h, b, np.ascontiguousarray(w_o, dtype=dt),
                   np.zeros(outputs, dt))

    @property
    def dtype(self) -> np.dtype:
        return self.w_h.dtype

    @property
    def outputs(self) -> int:
        return self.w_o.shape[1]

    @property
    def names(self) -> list[str]:
        """Names of :attr:`params`, in order."""
        return ["w_x", "w_h"] + (["b"] if self.b is not None else []) + ["w_o", "b_o"]

    @property
    def params(self) -> list[np.ndarray]:
        """The trainable arrays (the optimizer updates them in place)."""
        return [getattr(self, n) for n in self.names]

    def check_inputs(self, x: Any, name: str = "x") -> np.ndarray:
        """``x`` as a C-contiguous ``(T, B, input_size)`` array of the model's dtype."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
        if arr.ndim != 3 or min(arr.shape) < 1:
            raise ValueError(f"{name} must be 3-D (T, B, features), time-major, with every "
                             f"dimension >= 1; got shape {arr.shape}")
        if arr.shape[2] != self.rnn.input_size:
            raise ValueError(f"{name} has {arr.shape[2]} features per step (shape "
                             f"{arr.shape}) but the network takes {self.rnn.input_size}")
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def check_targets(self, y: Any, loss: str, batch: int, name: str = "y") -> np.ndarray:
        """Integer labels ``(B,)`` (cross-entropy) or real targets ``(B, 1)`` (mse)."""
        if loss == "cross_entropy":
            from ..training._checks import check_labels
            return check_labels(y, name, batch, self.outputs)
        arr = np.asarray(y)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real regression targets, got dtype {arr.dtype}")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or arr.shape[0] != batch:
            raise ValueError(f"{name} must have shape ({batch},) or ({batch}, 1) (one target "
                             f"per sequence), got {arr.shape}")
        if self.outputs != 1:
            raise ValueError(f"loss 'mse' needs a model with one output, got {self.outputs}")
        return np.ascontiguousarray(arr.reshape(-1, 1), dtype=self.dtype)

    def forward(self, x: np.ndarray, n_threads: int | None = None) -> tuple[Any, np.ndarray]:
        """``(RNNForward, logits)`` of a checked input batch."""
        from ..rnn_kernels import rnn_forward
        fwd = rnn_forward(x, self.w_x, self.w_h, self.b, activation=self.rnn.activation,
                          n_threads=n_threads)
        return fwd, fwd.h[-1] @ self.w_o + self.b_o

    def predict(self, x: Any, n_threads: int | None = None) -> np.ndarray:
        """The outputs (logits, or the regression value) ``(B, outputs)``."""
        x = self.check_inputs(x)
        parts = [self.forward(np.ascontiguousarray(x[:, i:i + _EVAL_BATCH]), n_threads)[1]
                 for i in range(0, x.shape[1], _EVAL_BATCH)]
        return np.concatenate(parts, axis=0)


@dataclass
class RNNStep:
    """One forward and backward pass: the mean loss, the gradients (in the order of
    :attr:`RNNClassifier.params`), ``dL/dz_t`` ``(T, B, H)`` and the hit count."""

    loss: float
    grads: list[np.ndarray]
    grad_z: np.ndarray
    n_correct: int


def _loss(outputs: np.ndarray, y: np.ndarray, loss: str, grad: bool = True
          ) -> tuple[float, np.ndarray | None, int]:
    """Mean loss over the batch, its gradient with respect to the outputs, hits."""
    if loss == "cross_entropy":
        from ..training.model import softmax_cross_entropy
        return softmax_cross_entropy(outputs, y, grad=grad)
    diff = outputs - y
    batch = outputs.shape[0]
    value = float(np.mean(np.square(diff, dtype=np.float64)))
    return value, (diff * diff.dtype.type(2.0 / batch)) if grad else None, 0


def loss_and_gradients(model: RNNClassifier, x: np.ndarray, y: np.ndarray, loss: str,
                       n_threads: int | None = None) -> RNNStep:
    """Loss and gradients of ``model`` on a checked batch (``x`` from
    :meth:`~RNNClassifier.check_inputs`, ``y`` from :meth:`~RNNClassifier.check_targets`)."""
    from ..rnn_kernels import rnn_backward
    fwd, out = model.forward(x, n_threads)
    value, d_out, hits = _loss(out, y, loss)
    grad_h = np.zeros_like(fwd.h)
    grad_h[-1] = d_out @ model.w_o.T  # the loss reads the last state only
    g = rnn_backward(x, model.w_x, model.w_h, fwd.z, fwd.h, grad_h,
                     activation=model.rnn.activation, n_threads=n_threads)
    grads = [g.grad_w_x, g.grad_w_h] + ([g.grad_b] if model.b is not None else [])
    grads += [np.ascontiguousarray(fwd.h[-1].T @ d_out), d_out.sum(axis=0)]
    return RNNStep(value, grads, g.grad_z, hits)


def evaluate_rnn(model: RNNClassifier, x: Any, y: Any, loss: str = "cross_entropy",
                 n_threads: int | None = None) -> tuple[float, float]:
    """``(mean loss, accuracy)`` on a data set (accuracy NaN for ``"mse"``)."""
    loss = one_of("loss", loss, RNN_LOSSES)
    x = model.check_inputs(x)
    y = model.check_targets(y, loss, x.shape[1])
    out = model.predict(x, n_threads)
    value, _, hits = _loss(out, y, loss, grad=False)
    return value, (hits / x.shape[1] if loss == "cross_entropy" else math.nan)


@dataclass
class RNNHistory:
    """What :func:`fit_rnn` recorded (float64 arrays, one entry per evaluation).

    Attributes:
        step: optimizer steps done at each record; record 0 is step 0.
        loss: mean training loss of the batches since the previous record, each before
            its update (record 0: the first batch's loss).
        val_loss, val_accuracy: on the validation data at each record (NaN without it;
            accuracy NaN for ``"mse"``).
        grad_norm: mean global gradient norm before clipping since the previous record.
        initial_grad_var: ``(T,)`` ``E[(dL_i/dz_t)^2]`` on the first batch at step 0
            (see the module doc).
        clipped: steps whose gradient was clipped.
        diverged_at: the step whose loss was not finite (training stopped there and the
            later records are NaN), or None.
        time_s: wall time of the run.
        params: the settings of the run.
    """

    step: np.ndarray
    loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    grad_norm: np.ndarray
    initial_grad_var: np.ndarray
    clipped: int = 0
    diverged_at: int | None = None
    time_s: float = math.nan
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (NaN as None)."""
        def clean(a: np.ndarray) -> list[Any]:
            return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, float)]
        return {"step": [int(s) for s in self.step], "loss": clean(self.loss),
                "val_loss": clean(self.val_loss), "val_accuracy": clean(self.val_accuracy),
                "grad_norm": clean(self.grad_norm),
                "initial_grad_var": clean(self.initial_grad_var), "clipped": self.clipped,
                "diverged_at": self.diverged_at, "time_s": self.time_s,
                "params": dict(self.params)}


def _clip(grads: list[np.ndarray], clipnorm: float | None) -> tuple[float, bool]:
    """Global norm of ``grads`` (float64); scale them in place to ``clipnorm`` if over."""
    norm = math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64),
                                      g.ravel().astype(np.float64))) for g in grads))
    if clipnorm is None or not norm > clipnorm:
        return norm, False
    scale = clipnorm / norm
    for g in grads:
        g *= g.dtype.type(scale)
    return norm, True


def fit_rnn(model: RNNClassifier, x: Any, y: Any, *, loss: str = "cross_entropy",
            epochs: int = 1, batch_size: int = 32, optimizer: Any = "adam",
            learning_rate: float = 1e-3, clipnorm: float | None = None,
            validation_data: tuple[Any, Any] | None = None, eval_every: int | None = None,
            seed: int = 0, n_threads: int | None = None) -> RNNHistory:
    """Train ``model`` on ``x`` ``(T, N, F)`` (time-major) and ``y`` ``(N,)`` in place.

    Args:
        model: an :class:`RNNClassifier`.
        x, y: training sequences and their labels (``"cross_entropy"``) or real targets
            (``"mse"``).
        loss: ``"cross_entropy"`` or ``"mse"``.
        epochs, batch_size: passes over the data and sequences per step (the rows are
            shuffled each epoch by a Generator seeded with ``seed``; the last batch of an
            epoch may be smaller).
        optimizer: ``"adam"`` (Keras's defaults), ``"sgd"``, any name, config or object
            :func:`varprop.training.get_optimizer` takes.
        learning_rate: the optimizer's step size (ignored for an optimizer object or a
            config that sets its own).
        clipnorm: clip the global gradient norm to this value (None: no clipping).
        validation_data: ``(x_val, y_val)`` evaluated at every record, or None.
        eval_every: optimizer steps between records (None: once per epoch).
        seed: the shuffling's seed.
        n_threads: kernel threads (results do not depend on it).

    Returns:
        :class:`RNNHistory`.

    Raises:
        TypeError, ValueError: a bad argument, named.
    """
    from ..training.optimizers import Optimizer, get_optimizer

    if not isinstance(model, RNNClassifier):
        raise TypeError(f"model must be a varprop.recurrent.train.RNNClassifier, got "
                        f"{type(model).__name__}")
    loss = one_of("loss", loss, RNN_LOSSES)
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    eval_every = positive_int("eval_every", eval_every, or_none=True)
    seed = non_negative_int("seed", seed)
    if clipnorm is not None:
        clipnorm = finite_real("clipnorm", clipnorm, positive=True)
    if isinstance(optimizer, Optimizer):
        opt = optimizer
    elif isinstance(optimizer, Mapping) and ("learning_rate" in optimizer or "lr" in optimizer):
        opt = get_optimizer(optimizer)  # the config's own step size wins
    else:
        opt = get_optimizer(optimizer, learning_rate=learning_rate)
    x = model.check_inputs(x)
    n = x.shape[1]
    y = model.check_targets(y, loss, n)
    val = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        xv = model.check_inputs(validation_data[0], "validation_data[0]")
        val = (xv, model.check_targets(validation_data[1], loss, xv.shape[1],
                                       "validation_data[1]"))
    per_epoch = -(-n // batch_size)
    total = epochs * per_epoch
    every = eval_every or per_epoch
    marks = sorted(set(range(every, total + 1, every)) | {total})
    rows = len(marks) + 1
    rec = {k: np.full(rows, np.nan) for k in ("loss", "val_loss", "val_accuracy", "grad_norm")}
    steps = np.array([0] + marks, dtype=np.int64)

    def evaluate(i: int) -> None:
        if val is not None:
            rec["val_loss"][i], rec["val_accuracy"][i] = evaluate_rnn(model, val[0], val[1],
                                                                      loss, n_threads)

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    evaluate(0)
    initial = None
    done, clipped, diverged, row = 0, 0, None, 1
    acc_loss, acc_norm, count = 0.0, 0.0, 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            xb = np.ascontiguousarray(x[:, idx])
            res = loss_and_gradients(model, xb, y[idx], loss, n_threads)
            if initial is None:
                gz = res.grad_z.astype(np.float64) * len(idx)  # each sequence's own loss
                initial = np.mean(gz.reshape(gz.shape[0], -1) ** 2, axis=1)
                rec["loss"][0] = res.loss
            if not math.isfinite(res.loss):
                diverged = done
                break
            norm, was = _clip(res.grads, clipnorm)
            clipped += was
            opt.step(model.params, res.grads)
            done += 1
            acc_loss, acc_norm, count = acc_loss + res.loss, acc_norm + norm, count + 1
            if done == marks[row - 1]:
                rec["loss"][row], rec["grad_norm"][row] = acc_loss / count, acc_norm / count
                evaluate(row)
                acc_loss, acc_norm, count, row = 0.0, 0.0, 0, row + 1
        if diverged is not None:
            break
    params = {"loss": loss, "epochs": epochs, "batch_size": batch_size,
              "optimizer": opt.get_config(), "clipnorm": clipnorm, "eval_every": every,
              "seed": seed, "dtype": model.dtype.name, "n_train": n}
    return RNNHistory(steps, rec["loss"], rec["val_loss"], rec["val_accuracy"],
                      rec["grad_norm"], initial, clipped, diverged,
                      time.perf_counter() - start, params)
