"""The seed's comparison of twelve Keras initializers, on the 8 x 8 digits.

The seed trained one network on MNIST under each of twelve Keras initializers for 20
epochs with Adam and compared the final accuracies and loss curves. varprop runs the
same comparison on the digits data that ship with it (1797 images of 8 x 8 pixels,
ten classes): a 64 -> 128 -> 64 -> 10 ReLU network, Adam (lr 1e-3), batch 32, 20 epochs,
a seeded 20 % stratified test split, features standardized (or divided by 16).

What to expect: zeros never leave chance (0.1: no hidden unit gets a gradient); ones
start with huge logits (every unit the same large sum) and stay near chance because all
units of a layer remain identical; the random schemes, orthogonal and identity all
reach about 0.96-0.97, the variance-scaled ones a little faster at the start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..datasets import load_digits
from ..training import classifier, evaluate, fit
from ._common import (ExperimentResult, InitSpec, ProgressLike, check_seeds, format_table,
                      normalize_inits, prepare_split, reporter, require_pyplot)

__all__ = ["run_digits", "DigitsResult", "DIGITS_INITIALIZERS", "DIGITS_WIDTHS"]

#: The network (the seed's MNIST network scaled to 64 inputs).
DIGITS_WIDTHS = (64, 128, 64, 10)
#: The seed's twelve Keras initializers (Keras defaults: random_normal std 0.05,
#: random_uniform on [-0.05, 0.05]).
DIGITS_INITIALIZERS = (
    "zeros", "ones", "orthogonal", "identity", "random_normal", "random_uniform",
    "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
    "lecun_uniform",
)


@dataclass
class DigitsResult(ExperimentResult):
    """Final accuracies and loss curves per initializer.

    Attributes:
        labels: initializer labels, in order; seeds: the seeds run.
        test_accuracy, test_loss, train_accuracy: ``{label: array (n_seeds,)}``.
        loss_curves, val_loss_curves, val_accuracy_curves: ``{label: (n_seeds, epochs)}``.
        grad_w_var: ``{label: (n_seeds, epochs, n_layers)}`` per-layer Var[dL/dW].
        settings, elapsed: the run's parameters and wall time (s).
    """

    labels: list[str]
    seeds: tuple[int, ...]
    test_accuracy: dict[str, np.ndarray]
    test_loss: dict[str, np.ndarray]
    train_accuracy: dict[str, np.ndarray]
    loss_curves: dict[str, np.ndarray]
    val_loss_curves: dict[str, np.ndarray]
    val_accuracy_curves: dict[str, np.ndarray]
    grad_w_var: dict[str, np.ndarray]
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed: float = float("nan")
    name = "digits"

    def ranking(self) -> list[str]:
        """Labels sorted by mean test accuracy, best first (stable for ties)."""
        return sorted(self.labels, key=lambda k: -self.mean_accuracy(k))

    def table(self) -> str:
        s = self.settings
        rows = []
        for label in self.labels:
            acc = self.test_accuracy[label]
            curve = self.loss_curves[label].mean(axis=0)
            rows.append([label, float(acc.mean()), float(acc.std()) if acc.size > 1 else "-",
                         float(self.train_accuracy[label].mean()),
                         float(self.test_loss[label].mean()), float(curve[0]),
                         float(curve[-1])])
        title = (f"digits {'-'.join(map(str, s['widths']))} ReLU, Adam lr {s['learning_rate']:g}, "
                 f"{s['epochs']} epochs, batch {s['batch_size']}, {s['test_size']:.0%} test split "
                 f"({s['scale']}), seeds {list(self.seeds)}")
        return format_table(
            ["initializer", "test acc", "std", "train acc", "test loss", "loss ep 1",
             f"loss ep {s['epochs']}"], rows, title=title,
            notes=[f"chance = 0.1; run time {self.elapsed:.1f} s"])

    def plot(self, path: Any) -> Any:
        """Training loss (log scale) and test accuracy per epoch, mean over seeds."""
        plt = require_pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for i, label in enumerate(self.labels):
            loss = self.loss_curves[label].mean(axis=0)
            acc = self.val_accuracy_curves[label].mean(axis=0)
            epochs = np.arange(1, loss.size + 1)
            style = {"color": f"C{i % 10}", "linestyle": "-" if i < 10 else "--"}
            axes[0].plot(epochs, loss, label=label, **style)
            axes[1].plot(epochs, acc, label=label, **style)
        axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log",
                    title="digits: training loss")
        axes[1].set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.02),
                    title="digits: test accuracy")
        axes[1].legend(fontsize=7, ncol=2)
        return self._save(fig, path)


def run_digits(
    *,
    seeds: Sequence[int] = (0,),
    epochs: int = 20,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    initializers: Sequence[InitSpec] = DIGITS_INITIALIZERS,
    widths: Sequence[int] = DIGITS_WIDTHS,
    scale: str = "standardize",
    test_size: float = 0.2,
    dtype: Any = np.float32,
    progress: ProgressLike = None,
) -> DigitsResult:
    """Train the digits network under each of the twelve initializers.

    Args:
        seeds: one run per seed and initializer (the seed fixes split, weights, shuffling).
        epochs, batch_size, learning_rate: the Adam schedule (20, 32, 1e-3).
        initializers: names, configs, Initializers or ``(label, spec)`` pairs.
        widths: the network, ``widths[0]`` must be 64 and ``widths[-1]`` 10.
        scale: ``"standardize"`` (default) or ``"divide"`` (pixels / 16).
        test_size, dtype, progress: as in :func:`run_iris`.
    """
    start = time.perf_counter()
    say = reporter(progress)
    seeds = check_seeds(seeds)
    inits = normalize_inits(initializers)
    widths = tuple(widths)
    if len(widths) < 2 or widths[0] != 64 or widths[-1] != 10:
        raise ValueError(f"widths must start with 64 (pixels) and end with 10 (classes), got {widths}")
    data = load_digits()
    splits = {s: prepare_split(data, s, test_size, scale) for s in seeds}
    fields: dict[str, dict[str, list]] = {k: {} for k in (
        "acc", "loss", "tracc", "curves", "vloss", "vacc", "gvar")}
    for label, spec in inits:
        for k in fields:
            fields[k][label] = []
        for s in seeds:
            xtr, xte, ytr, yte = splits[s]
            model = classifier(widths, "relu", kernel_initializer=spec, seed=s, dtype=dtype)
            hist = fit(model, xtr, ytr, epochs=epochs, batch_size=batch_size, optimizer="adam",
                       learning_rate=learning_rate, validation_data=(xte, yte), seed=s)
            ev = evaluate(model, xte, yte)
            values = (ev.accuracy, ev.loss, evaluate(model, xtr, ytr).accuracy, hist.loss,
                      hist.val_loss, hist.val_accuracy, hist.grad_w_var)
            for k, v in zip(fields, values):
                fields[k][label].append(v)
            say(f"digits {label} seed {s}: test accuracy {ev.accuracy:.3f} "
                f"({sum(hist.epoch_time):.1f} s)")
    arrays = {k: {label: np.array(v) for label, v in d.items()} for k, d in fields.items()}
    settings = {"widths": list(widths), "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "scale": scale, "test_size": test_size,
                "dtype": np.dtype(dtype).name}
    return DigitsResult([lbl for lbl, _ in inits], seeds, arrays["acc"], arrays["loss"],
                        arrays["tracc"], arrays["curves"], arrays["vloss"], arrays["vacc"],
                        arrays["gvar"], settings, time.perf_counter() - start)
