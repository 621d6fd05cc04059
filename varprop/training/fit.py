"""Training loop, history, evaluation and prediction of the trainer.

:func:`fit` trains an :class:`~varprop.training.model.MLP` with mini-batches: each epoch
shuffles the training rows with a Generator seeded once per call (``seed``), runs the
forward pass, the stable softmax cross-entropy (mean over the batch), the backward pass
and one optimizer step per batch, and records in a :class:`History`:

* ``loss``/``accuracy``: the mean over the epoch's batches (weighted by batch size) of
  the training loss and accuracy measured *before* each batch's update, as Keras reports
  them;
* ``val_loss``/``val_accuracy``: the model at the end of the epoch on the validation data;
* ``grad_w_var[e, l]``: the variance of the entries of dL/dW_l, and ``grad_z_var[e, l]``
  the variance of the entries of dL/dz_l over the batch, each averaged over the steps of
  epoch ``e`` (float64). ``initial_grad_w_var``/``initial_grad_z_var`` are the values at
  the very first step, before any update.

The kernels are bitwise deterministic for any thread count and the shuffling is seeded,
so the same model, data and seed give the same history and weights bit for bit.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from .._blas import single_threaded_blas
from .._validate import as_generator, boolean, positive_int, real_in_range
from ._checks import check_features, check_labels
from .model import MLP, Trainable, softmax_cross_entropy
from .optimizers import Optimizer, get_optimizer

__all__ = ["History", "fit", "evaluate", "predict", "predict_proba", "Evaluation",
           "GradientVariances", "gradient_variances"]

Callback = Callable[[int, dict], Any]


class Evaluation(NamedTuple):
    """Mean softmax cross-entropy and accuracy of a model on a data set."""

    loss: float
    accuracy: float


class History:
    """Per-epoch record of one :func:`fit` call (see the module docstring).

    Attributes:
        loss, accuracy, val_loss, val_accuracy: lists of floats, one per epoch (the
            ``val_*`` lists are empty without validation data).
        grad_w_var, grad_z_var: float64 arrays ``(n_epochs, n_layers)``.
        initial_grad_w_var, initial_grad_z_var: ``(n_layers,)`` at the first step.
        epoch_time: seconds per epoch.
        params: the settings of the run (epochs, batch_size, optimizer, seed, ...).
    """

    def __init__(self, n_layers: int, params: dict[str, Any]) -> None:
        self.n_layers = n_layers
        self.params = params
        self.loss: list[float] = []
        self.accuracy: list[float] = []
        self.val_loss: list[float] = []
        self.val_accuracy: list[float] = []
        self.epoch_time: list[float] = []
        self._gw: list[np.ndarray] = []
        self._gz: list[np.ndarray] = []
        self.initial_grad_w_var: np.ndarray | None = None
        self.initial_grad_z_var: np.ndarray | None = None

    @property
    def epochs(self) -> int:
        """Number of epochs recorded."""
        return len(self.loss)

    @property
    def grad_w_var(self) -> np.ndarray:
        return np.array(self._gw, dtype=np.float64).reshape(len(self._gw), self.n_layers)

    @property
    def grad_z_var(self) -> np.ndarray:
        return np.array(self._gz, dtype=np.float64).reshape(len(self._gz), self.n_layers)

    def as_dict(self) -> dict[str, Any]:
        """Keras-like ``{"loss": [...], "accuracy": [...], ...}`` plus the gradient
        variances as nested lists (JSON-serializable)."""
        out: dict[str, Any] = {"loss": list(self.loss), "accuracy": list(self.accuracy)}
        if self.val_loss:
            out["val_loss"] = list(self.val_loss)
            out["val_accuracy"] = list(self.val_accuracy)
        out["grad_w_var"] = self.grad_w_var.tolist()
        out["grad_z_var"] = self.grad_z_var.tolist()
        return out

    def table(self) -> str:
        """One line per epoch: loss, accuracy (and validation), time."""
        head = f"{'epoch':>5} {'loss':>9} {'acc':>7}"
        if self.val_loss:
            head += f" {'val_loss':>9} {'val_acc':>7}"
        lines = [head + f" {'time s':>7}"]
        for e in range(self.epochs):
            line = f"{e + 1:>5} {self.loss[e]:>9.4f} {self.accuracy[e]:>7.4f}"
            if self.val_loss:
                line += f" {self.val_loss[e]:>9.4f} {self.val_accuracy[e]:>7.4f}"
            lines.append(line + f" {self.epoch_time[e]:>7.3f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        last = f", loss={self.loss[-1]:.4g}" if self.loss else ""
        return f"History(epochs={self.epochs}{last})"


def _as_model(model: Any) -> MLP:
    if not isinstance(model, Trainable):
        raise TypeError(f"model must be a varprop MLP (see varprop.train.classifier) or "
                        f"ConvNet (varprop.train.ConvNet.from_network), got "
                        f"{type(model).__name__}")
    return model


def variance(a: np.ndarray) -> float:
    """Population variance of all entries of ``a``, two-pass in float64 (several times
    faster than ``np.var(a, dtype=np.float64)`` on the small arrays of a training step)."""
    f = a.astype(np.float64).ravel()
    if f.size == 0:
        return math.nan
    f -= f.sum() / f.size
    return float(np.dot(f, f)) / f.size


def _step(model: MLP, xb: np.ndarray, yb: np.ndarray, optimizer: Optimizer,
          n_threads: int | None, track: bool):
    cache = model.forward(xb, n_threads=n_threads)
    loss, g, correct = softmax_cross_entropy(cache.logits, yb)
    grads, gzs = model.backward(cache, g, n_threads=n_threads, grad_z=track)
    optimizer.step(model.params(), [a for pair in grads for a in pair])
    if not track:
        return loss, correct, None, None
    gw = np.array([variance(gw_) for gw_, _ in grads])
    gz = np.array([variance(gz_) for gz_ in gzs])
    return loss, correct, gw, gz


def fit(
    model: MLP,
    x: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: "str | dict | Optimizer" = "adam",
    learning_rate: float | None = None,
    validation_split: float = 0.0,
    validation_data: tuple[Any, Any] | None = None,
    shuffle: bool = True,
    seed: Any = None,
    callback: Callback | None = None,
    progress: bool = False,
    track_gradients: bool = True,
    n_threads: int | None = None,
) -> History:
    """Train ``model`` in place on ``(x, y)`` with mini-batches; return its :class:`History`.

    Args:
        model: an :class:`MLP` (its arrays are updated in place).
        x: ``(n_samples, n_features)`` real array (converted to the model's dtype).
        y: ``(n_samples,)`` integer labels in ``0 .. n_classes - 1``.
        epochs: passes over the training data (>= 1).
        batch_size: rows per step (>= 1; the last batch of an epoch may be smaller).
        optimizer: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` (Keras
            defaults), a config dict or an :class:`Optimizer` (its state is kept, so
            passing the same object again continues the run).
        learning_rate: overrides the named optimizer's default learning rate.
        validation_split: fraction in [0, 1) of the rows held out for validation: the
            *last* rows, before shuffling, as Keras does (shuffle first if the data are
            ordered). Not combined with ``validation_data``.
        validation_data: ``(x_val, y_val)`` evaluated at the end of every epoch.
        shuffle: reshuffle the training rows every epoch.
        seed: None, int, SeedSequence or Generator for the shuffling.
        callback: ``callback(epoch, logs)`` after each epoch (``epoch`` counts from 0,
            ``logs`` holds loss, accuracy, val_loss, val_accuracy, grad_w_var,
            grad_z_var, time); returning True stops training.
        progress: print one line per epoch to stderr.
        track_gradients: record the per-layer gradient variances (costs one pass over
            the gradients per step; switch off for timing).
        n_threads: kernel threads; None lets small layers run on one thread and large
            ones on the package default (results do not depend on it).

    Raises:
        TypeError, ValueError: naming the bad argument (labels out of range, lengths
        that differ, non-positive epochs/batch size/learning rate, unknown optimizer).
    """
    model = _as_model(model)
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    # flags are True or False: 'no', 'yes' and None are truthy or falsy by accident
    shuffle = boolean("shuffle", shuffle)
    progress = boolean("progress", progress)
    track_gradients = boolean("track_gradients", track_gradients)
    rng = as_generator(seed)  # checked before any work: a bad seed names ``seed``
    xa = check_features(x, "x", model.n_features, model.dtype)
    ya = check_labels(y, "y", xa.shape[0], model.n_classes)
    if learning_rate is not None:
        if isinstance(optimizer, Optimizer):
            raise TypeError("learning_rate cannot be combined with an Optimizer object; "
                            "set it on the object")
        opt = get_optimizer(optimizer, learning_rate=learning_rate)
    else:
        opt = get_optimizer(optimizer)
    validation_split = real_in_range("validation_split", validation_split, 0.0, 1.0,
                                     closed_high=False)
    if validation_data is not None and validation_split > 0:
        raise ValueError("give validation_split or validation_data, not both")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        xv = check_features(validation_data[0], "validation_data[0] (x_val)", model.n_features,
                            model.dtype)
        yv = check_labels(validation_data[1], "validation_data[1] (y_val)", xv.shape[0],
                          model.n_classes)
    elif validation_split > 0:
        n_val = int(math.floor(xa.shape[0] * validation_split))
        if n_val < 1 or n_val >= xa.shape[0]:
            raise ValueError(f"validation_split={validation_split} of {xa.shape[0]} samples leaves "
                             f"{n_val} for validation and {xa.shape[0] - n_val} for training; "
                             "both must be at least 1")
        xa, xv = xa[:-n_val], xa[-n_val:]
        ya, yv = ya[:-n_val], ya[-n_val:]
    else:
        xv = yv = None
    if xa.shape[0] == 0:
        raise ValueError("x must hold at least one training sample, got 0 rows")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")

    n = xa.shape[0]
    history = History(model.n_layers, {
        "epochs": epochs, "batch_size": batch_size, "optimizer": opt.get_config(),
        "n_train": n, "n_val": 0 if xv is None else xv.shape[0], "shuffle": bool(shuffle),
        "seed": seed if isinstance(seed, (int, type(None))) else repr(seed),
    })
    warned = False
    with single_threaded_blas():
        for epoch in range(epochs):
            start = time.perf_counter()
            order = rng.permutation(n) if shuffle else np.arange(n)
            loss_sum = 0.0
            correct = 0
            gw_sum = np.zeros(model.n_layers)
            gz_sum = np.zeros(model.n_layers)
            n_steps = 0
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                loss, hits, gw, gz = _step(model, xa[idx], ya[idx], opt, n_threads,
                                           track_gradients)
                loss_sum += loss * len(idx)
                correct += hits
                n_steps += 1
                if track_gradients:
                    if history.initial_grad_w_var is None:
                        history.initial_grad_w_var, history.initial_grad_z_var = gw, gz
                    gw_sum += gw
                    gz_sum += gz
            history.loss.append(loss_sum / n)
            history.accuracy.append(correct / n)
            history._gw.append(gw_sum / n_steps if track_gradients else np.full(model.n_layers, np.nan))
            history._gz.append(gz_sum / n_steps if track_gradients else np.full(model.n_layers, np.nan))
            if xv is not None:
                ev = _evaluate(model, xv, yv, n_threads)
                history.val_loss.append(ev.loss)
                history.val_accuracy.append(ev.accuracy)
            history.epoch_time.append(time.perf_counter() - start)
            if not warned and not math.isfinite(history.loss[-1]):
                warnings.warn(f"fit: the training loss is {history.loss[-1]} at epoch {epoch + 1} "
                              "(NaN/inf in the data, or diverging updates)", RuntimeWarning,
                              stacklevel=2)
                warned = True
            logs = _logs(history)
            if progress:
                _print_progress(epoch, epochs, logs)
            if callback is not None and callback(epoch, logs) is True:
                break
    return history


def _logs(history: History) -> dict[str, Any]:
    logs: dict[str, Any] = {"loss": history.loss[-1], "accuracy": history.accuracy[-1]}
    if history.val_loss:
        logs["val_loss"] = history.val_loss[-1]
        logs["val_accuracy"] = history.val_accuracy[-1]
    logs["grad_w_var"] = history._gw[-1]
    logs["grad_z_var"] = history._gz[-1]
    logs["time"] = history.epoch_time[-1]
    return logs


def _print_progress(epoch: int, epochs: int, logs: dict[str, Any]) -> None:
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {logs['loss']:.4f}", f"accuracy {logs['accuracy']:.4f}"]
    if "val_loss" in logs:
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_accuracy {logs['val_accuracy']:.4f}"]
    parts.append(f"{logs['time']:.2f} s")
    print(" - ".join(parts), file=sys.stderr, flush=True)


def _evaluate(model: MLP, x: np.ndarray, y: np.ndarray, n_threads: int | None,
              batch_size: int | None = None) -> Evaluation:
    n = x.shape[0]
    if n == 0:
        return Evaluation(math.nan, math.nan)
    step = n if batch_size is None else batch_size
    loss_sum, hits = 0.0, 0
    for i in range(0, n, step):
        logits = model.forward(x[i:i + step], n_threads=n_threads).logits
        loss, _, h = softmax_cross_entropy(logits, y[i:i + step], grad=False)
        loss_sum += loss * logits.shape[0]
        hits += h
    return Evaluation(loss_sum / n, hits / n)


def evaluate(model: MLP, x: Any, y: Any, *, batch_size: int | None = None,
             n_threads: int | None = None) -> Evaluation:
    """Mean softmax cross-entropy and accuracy of ``model`` on ``(x, y)``.

    Args:
        batch_size: evaluate in chunks of this many rows (None: all at once); the result
            is the same up to rounding.
    """
    model = _as_model(model)
    xa = check_features(x, "x", model.n_features, model.dtype)
    ya = check_labels(y, "y", xa.shape[0], model.n_classes)
    batch_size = positive_int("batch_size", batch_size, or_none=True)
    return _evaluate(model, xa, ya, n_threads, batch_size)


def predict_proba(model: MLP, x: Any, *, batch_size: int | None = None) -> np.ndarray:
    """Class probabilities ``softmax(logits)``, ``(n_samples, n_classes)``."""
    logits = _as_model(model).logits(x, batch_size=batch_size)
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def predict(model: MLP, x: Any, *, batch_size: int | None = None) -> np.ndarray:
    """Predicted class indices ``argmax(logits)``, int64 ``(n_samples,)``."""
    logits = _as_model(model).logits(x, batch_size=batch_size)
    return np.argmax(logits, axis=1).astype(np.int64)


@dataclass(frozen=True)
class GradientVariances:
    """Per-layer statistics of one forward/backward pass (no update).

    Attributes:
        grad_w_var: variance of the entries of dL/dW_l, ``(n_layers,)``.
        grad_z_var: variance of the entries of dL/dz_l (over batch and units).
        z_var: variance of the entries of the pre-activation z_l.
        input_second_moment: E[x_l^2] of each layer's input (float64).
        loss: the mean softmax cross-entropy of the batch.
    """

    grad_w_var: np.ndarray
    grad_z_var: np.ndarray
    z_var: np.ndarray
    input_second_moment: np.ndarray
    loss: float


def gradient_variances(model: MLP, x: Any, y: Any, *, n_threads: int | None = None) -> GradientVariances:
    """Measure the per-layer gradient variances of ``model`` on the batch ``(x, y)``
    (mean softmax cross-entropy, as in :func:`fit`) without changing the model."""
    model = _as_model(model)
    xa = check_features(x, "x", model.n_features, model.dtype)
    ya = check_labels(y, "y", xa.shape[0], model.n_classes)
    if xa.shape[0] == 0:
        raise ValueError("x must hold at least one sample, got 0 rows")
    cache = model.forward(xa, stats=True, n_threads=n_threads)
    loss, g, _ = softmax_cross_entropy(cache.logits, ya)
    grads, gzs = model.backward(cache, g, n_threads=n_threads, grad_z=True)
    return GradientVariances(
        grad_w_var=np.array([variance(gw) for gw, _ in grads]),
        grad_z_var=np.array([variance(gz) for gz in gzs]),
        z_var=np.array([s.z_pooled_var for s in cache.stats]),
        input_second_moment=np.array([np.mean(np.square(h, dtype=np.float64)) for h in cache.inputs]),
        loss=loss,
    )
