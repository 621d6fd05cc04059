"""The seeds' CNN under zero, random normal (0.01), Glorot and He initialization.

The seeds trained a small convolutional network (3 x 3 convolutions with 16 and 32
channels, ReLU, 2 x 2 max pooling, a dense classifier) on MNIST under four
initializers. varprop runs it on the 8 x 8 digits that ship with it (``--data DIR``: on
MNIST from the IDX files in DIR, 28 x 28), with Adam (lr 1e-3), batch 32, a seeded 20 %
stratified test split and pixels scaled to [0, 1], over several seeds; and, for every
initializer, each weighted layer's variance at step 0 from the per-pixel theory
(:func:`varprop.analyze` with the training images' own statistics) next to the
measurement (:func:`varprop.measure` on a batch of training images).

What to expect: zero weights leave every unit at 0 and every gradient but the last
bias's at 0, so the network stays at chance (0.1, or the most frequent class); random
normal with std 0.01 starts with vanishing signals (each layer multiplies the variance
by about 9 C 1e-4) but Adam rescales the steps and it still learns; Glorot and He train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..datasets import Dataset, load_digits
from ._common import (ExperimentResult, InitSpec, ProgressLike, check_seeds, format_table,
                      normalize_inits, prepare_split, reporter, require_pyplot)

__all__ = ["run_cnn", "CnnResult", "CNN_INITIALIZERS"]

#: The seeds' four initializers (random normal as the seeds drew it: std 0.01).
CNN_INITIALIZERS = (
    "zeros",
    ("random_normal(0.01)", {"name": "random_normal", "stddev": 0.01}),
    "glorot_uniform",
    "he_normal",
)

#: Weighted layers' statistics compared at step 0.
_FIELDS = ("z_var", "grad_var")


@dataclass
class CnnResult(ExperimentResult):
    """Accuracies, loss curves and step-0 variances per initializer.

    Attributes:
        labels, seeds: the initializers' labels and the seeds run.
        test_accuracy, train_accuracy: ``{label: (n_seeds,)}``.
        loss_curves, val_accuracy_curves: ``{label: (n_seeds, epochs)}``.
        theory, measured: ``{label: {field: (n_layers,)}}`` at step 0 (fields ``z_var``
            and ``grad_var``; measured: mean over the seeds' draws), with
            ``measured_ci`` the 95 % half-widths.
        approximate: ``{label: [layers]}`` where the theory is flagged approximate.
        settings, elapsed: the run's parameters and wall time (s).
    """

    labels: list[str]
    seeds: tuple[int, ...]
    test_accuracy: dict[str, np.ndarray]
    train_accuracy: dict[str, np.ndarray]
    loss_curves: dict[str, np.ndarray]
    val_accuracy_curves: dict[str, np.ndarray]
    theory: dict[str, dict[str, np.ndarray]]
    measured: dict[str, dict[str, np.ndarray]]
    measured_ci: dict[str, dict[str, np.ndarray]]
    approximate: dict[str, list[int]]
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed: float = float("nan")
    name = "cnn"

    def table(self) -> str:
        s = self.settings
        rows = []
        for label in self.labels:
            acc = self.test_accuracy[label]
            curve = self.loss_curves[label].mean(axis=0)
            rows.append([label, float(acc.mean()), float(acc.std()) if acc.size > 1 else "-",
                         float(self.train_accuracy[label].mean()), float(curve[0]),
                         float(curve[-1])])
        title = (f"{s['data']} CNN {s['network']}, Adam lr {s['learning_rate']:g}, "
                 f"{s['epochs']} epochs, batch {s['batch_size']}, seeds {list(self.seeds)}")
        out = [format_table(["initializer", "test acc", "std", "train acc", "loss ep 1",
                             f"loss ep {s['epochs']}"], rows, title=title,
                            notes=[f"chance = {s['chance']:.3f} (most frequent class); "
                                   f"run time {self.elapsed:.1f} s"])]
        vrows = []
        for label in self.labels:
            th, me, ci = self.theory[label], self.measured[label], self.measured_ci[label]
            for i in range(th["z_var"].size):
                vrows.append([f"{label} layer {i}"] + [
                    v for f in _FIELDS for v in (float(th[f][i]), float(me[f][i]),
                                                 float(ci[f][i]))]
                    + ["approx." if i in self.approximate[label] else ""])
        out.append(format_table(
            ["step 0", "Var[z] theory", "measured", "±95%", "Var[dL/dz] theory", "measured",
             "±95%", ""], vrows,
            title=f"per-layer variance at initialization (pooled over pixels and channels; "
                  f"inputs: {s['variance_batch']} training images, "
                  f"{s['variance_seeds']} weight draws)",
            notes=["approx.: the per-pixel theory is approximate from this layer on (max "
                   "pooling by quadrature, pixel pairs not carried past it)"]))
        return "\n\n".join(out)

    def plot(self, path: Any) -> Any:
        """Training loss and test accuracy per epoch, mean over seeds."""
        plt = require_pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for i, label in enumerate(self.labels):
            loss = self.loss_curves[label].mean(axis=0)
            acc = self.val_accuracy_curves[label].mean(axis=0)
            epochs = np.arange(1, loss.size + 1)
            axes[0].plot(epochs, loss, label=label, color=f"C{i}", marker="os^D"[i % 4])
            axes[1].plot(epochs, acc, label=label, color=f"C{i}", marker="os^D"[i % 4])
        axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log",
                    title="CNN: training loss")
        axes[1].set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.02),
                    title="CNN: test accuracy")
        axes[1].legend(fontsize=9)
        return self._save(fig, path)


def _load(data: Any) -> tuple[Dataset, tuple[int, int, int], str]:
    if data is None:
        return load_digits(), (8, 8, 1), "digits 8x8"
    from ..datasets import load_mnist
    mnist = load_mnist(data)
    return mnist, (28, 28, 1), "MNIST 28x28"


def run_cnn(
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    initializers: Sequence[InitSpec] = CNN_INITIALIZERS,
    data: Any = None,
    max_train: int | None = None,
    variance_batch: int = 256,
    dtype: Any = np.float32,
    progress: ProgressLike = None,
) -> CnnResult:
    """Train the seeds' CNN under each initializer and compare its step-0 variances.

    Args:
        seeds: one run per seed and initializer (the seed fixes split, weights, shuffling).
        epochs, batch_size, learning_rate: the Adam schedule.
        initializers: names, configs, Initializers or ``(label, spec)`` pairs.
        data: None for the shipped digits, or a directory with MNIST's IDX files.
        max_train: use at most this many training images (MNIST's 60,000 take long).
        variance_batch: training images pushed through at step 0 for the measurement.
        dtype, progress: as in the other experiments.
    """
    from ..analytic import analyze
    from ..empirical import measure
    from ..network_cnn import cnn_preset
    from ..training import evaluate, fit
    from ..training.convnet import ConvNet
    from .._validate import positive_int

    start = time.perf_counter()
    say = reporter(progress)
    seeds = check_seeds(seeds)
    inits = normalize_inits(initializers)
    epochs = positive_int("epochs", epochs)
    variance_batch = positive_int("variance_batch", variance_batch)
    dataset, shape, data_name = _load(data)
    preset = "seeds_cnn" if shape[0] == 8 else "seeds_cnn_mnist"
    splits = {s: prepare_split(dataset, s, 0.2, "divide") for s in seeds}
    if max_train is not None:
        max_train = positive_int("max_train", max_train)
        splits = {s: (a[:max_train], b, c[:max_train], d) for s, (a, b, c, d) in splits.items()}
    out: dict[str, dict[str, list]] = {k: {} for k in ("acc", "tracc", "loss", "vacc")}
    theory, measured, measured_ci, approx = {}, {}, {}, {}
    x0 = splits[seeds[0]][0]
    images = x0.reshape(-1, *shape)
    batch = images[:min(variance_batch, len(images))]
    for label, spec in inits:
        net = cnn_preset(preset, init=spec)
        p_th = analyze(net, inputs=images)
        p_me = measure(net, inputs=np.ascontiguousarray(batch, np.float32), seeds=len(seeds))
        theory[label] = {f: p_th.column(f) for f in _FIELDS}
        measured[label] = {f: p_me.column(f) for f in _FIELDS}
        measured_ci[label] = {f: p_me.column(f + "_ci") for f in _FIELDS}
        approx[label] = sorted({i for a in p_th.meta["approximations"]
                                for lo, hi in a["layers"] for i in range(lo, hi + 1)})
        for k in out:
            out[k][label] = []
        for s in seeds:
            xtr, xte, ytr, yte = splits[s]
            model = ConvNet.from_network(net, seed=s, dtype=dtype)
            hist = fit(model, xtr, ytr, epochs=epochs, batch_size=batch_size,
                       optimizer="adam", learning_rate=learning_rate,
                       validation_data=(xte, yte), seed=s)
            ev = evaluate(model, xte, yte)
            for k, v in zip(out, (ev.accuracy, evaluate(model, xtr, ytr).accuracy,
                                  hist.loss, hist.val_accuracy)):
                out[k][label].append(v)
            say(f"cnn {label} seed {s}: test accuracy {ev.accuracy:.3f} "
                f"({sum(hist.epoch_time):.1f} s)")
    arrays = {k: {label: np.array(v) for label, v in d.items()} for k, d in out.items()}
    counts = np.bincount(splits[seeds[0]][3])
    settings = {"data": data_name, "network": net.name.split(",")[0], "epochs": epochs,
                "batch_size": batch_size, "learning_rate": learning_rate,
                "chance": float(counts.max() / counts.sum()),
                "variance_batch": int(batch.shape[0]), "variance_seeds": len(seeds),
                "dtype": np.dtype(dtype).name}
    return CnnResult([lbl for lbl, _ in inits], seeds, arrays["acc"], arrays["tracc"],
                     arrays["loss"], arrays["vacc"], theory, measured, measured_ci, approx,
                     settings, time.perf_counter() - start)
