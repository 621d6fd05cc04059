"""He et al. 2015 (arXiv 1502.01852), section 2.2/figure 3: a 30-layer ReLU network
trains from He (Kaiming) initialization and stalls from Xavier's.

A 64 -> 64 x 29 -> 10 ReLU MLP (30 dense layers, zero biases) is trained on the digits
with SGD and momentum 0.9 (lr 0.005, batch 64, 20 epochs). With ``n Var[W] = 2`` (He)
the variance of the back-propagated gradient dL/dz stays about constant through the
depth; with ``n Var[W] = 1`` (Xavier, square layers) each ReLU layer halves it, so the
first layer's gradient is ``2^-28 ~ 4e-9`` times the last hidden layer's and the
network does not move (its loss stays at log 10 = 2.303).

Next to the curves the result shows, per layer, the gradient variance measured at the
very first training step and the mean-field prediction of docs/theory.md section 3,
``Var[g^{l-1}] = n_l Var[W^l] E[phi'(z^{l-1})^2] Var[g^l]`` (``E[relu'^2] = 1/2``),
anchored at the measured gradient of the logits. At finite width the measured values
scatter around the prediction: the log of the ratio has a standard deviation of about
``sqrt(5 sum 1/n)`` over the hidden layers between (Hanin & Rolnick 2018, arXiv
1803.01719; docs/theory.md section 7), which :func:`finite_width_log_band` turns into a
band (a single network typically lies somewhat below the mean-field value: a product of
random gains of mean 1 has a log of negative mean).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..activations import get_activation
from ..datasets import load_digits
from ..initializers import Initializer, WeightMoments
from ..training import classifier, evaluate, fit
from ._common import (ExperimentResult, InitSpec, ProgressLike, check_seeds, format_table,
                      normalize_inits, prepare_split, reporter, require_pyplot)

__all__ = ["run_deep_relu", "DeepReluResult", "backward_variance",
           "finite_width_log_band", "DEEP_RELU_INITIALIZERS"]

#: He (PyTorch's plain-Gaussian Kaiming, as in the paper) against Xavier/Glorot.
DEEP_RELU_INITIALIZERS = ("kaiming_normal", "xavier_normal")


class _GivenVariance(Initializer):
    """Zero-mean weights of a given per-entry variance: what :func:`backward_variance` hands
    :func:`varprop.analyze` (moments only; it draws nothing)."""

    name = "given_variance"

    def __init__(self, var: float) -> None:
        super().__init__()
        self.var = float(var)

    def _params(self) -> dict[str, Any]:
        return {"var": self.var}

    def _moments(self, shape: tuple[int, ...], opts: Any) -> WeightMoments:
        return WeightMoments(0.0, self.var)


def backward_variance(widths: Sequence[int], weight_var: Any, activation: Any = "relu", *,
                      output_grad_var: float = 1.0, input_var: float = 1.0) -> np.ndarray:
    """Mean-field variance of the back-propagated gradient g^l = dL/dz^l per layer.

    The recursion of docs/theory.md section 3, ``Var[g^{l-1}] = n_l Var[W^l] E[phi'^2]
    Var[g^l]`` with ``n_l`` the fan-out of ``W^l`` (shape ``(n_{l-1}, n_l)``), started at
    the output layer with ``Var[g^{L-1}] = output_grad_var``: the backward pass of
    :func:`varprop.analyze` on this MLP (zero-mean weights of the given variances, no
    biases, a linear last layer), scaled by ``output_grad_var``. For ReLU-like
    activations ``E[phi'^2]`` does not depend on the pre-activation's variance (z is
    symmetric about 0), so ``input_var`` only matters for the others.

    Args:
        widths: ``[n_0, n_1, ..., n_L]`` of an L-layer MLP.
        weight_var: ``Var[W^l]`` per layer (length L) or one number for all.
        activation: the hidden activation (or one per hidden layer), any registry one.
        output_grad_var: ``Var[dL/dz]`` of the last (linear) layer.
        input_var: the variance of each (zero-mean) input feature.

    Returns:
        float64 array ``(L,)``: entry ``l`` is the predicted ``Var[dL/dz^l]``.
    """
    from ..analytic import analyze
    from ..network import mlp as network

    widths = [int(n) for n in widths]
    n_layers = len(widths) - 1
    wv = np.broadcast_to(np.asarray(weight_var, dtype=np.float64), (n_layers,))
    if isinstance(activation, (list, tuple)):
        acts = [get_activation(a) for a in activation]
    else:
        acts = [get_activation(activation)] * (n_layers - 1)
    if len(acts) != n_layers - 1:
        raise ValueError(f"activation must be one or a list of {n_layers - 1} (hidden layers)")
    net = network(widths, acts + ["linear"], [_GivenVariance(v) for v in wv], None,
                  final_activation=False)
    grad = analyze(net, input_var=input_var).column("grad_var")
    return output_grad_var * np.asarray(grad, dtype=np.float64)


def finite_width_log_band(widths: Sequence[int], batch: int, *, k: float = 4.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(lower, upper)`` of ``log(measured / predicted)`` per layer.

    The gradient of layer l has passed back through the hidden layers ``l .. L-2``;
    each multiplies its squared norm by a random gain of mean 1 (the mean-field value)
    whose log has variance about ``5 / n`` at width n (Hanin & Rolnick 2018, the forward
    number, which the backward product of the same ``W^T D`` matrices shares). So
    ``sigma_l^2 = 5 sum_{m=l}^{L-2} 1/n_m``, and since a product of mean-1 gains is about
    log-normal its log has mean ``-sigma_l^2 / 2``: one network typically lies *below*
    the mean-field value (averaging over a batch of inputs pulls it back towards it).
    The batch estimate of a variance from ``B n_l`` entries adds a relative error of about
    ``sqrt(2 / (B n_l))``. The band is therefore
    ``[-sigma^2/2 - k s, k s]`` with ``s = sqrt(sigma^2 + 2 / (B n_l))``; it has zero width at
    the anchor (the output layer), and ``k = 4`` makes a miss a 4-sigma event.
    """
    hidden = np.asarray([int(n) for n in widths[1:]], dtype=np.float64)  # n_1 .. n_L
    n_layers = hidden.size
    lower, upper = np.zeros(n_layers), np.zeros(n_layers)
    for l in range(n_layers - 1):
        sigma2 = 5.0 * float(np.sum(1.0 / hidden[l:n_layers - 1]))
        spread = k * math.sqrt(sigma2 + 2.0 / (batch * hidden[l]))
        lower[l], upper[l] = -sigma2 / 2.0 - spread, spread
    return lower, upper


@dataclass
class DeepReluResult(ExperimentResult):
    """Curves and step-0 per-layer gradient variances, measured and predicted.

    Attributes:
        labels, seeds: initializers and seeds run.
        initial_loss: ``{label: (n_seeds,)}`` training loss before any update.
        loss_curves: ``{label: (n_seeds, epochs)}``; test_accuracy ``{label: (n_seeds,)}``.
        measured_grad_z_var, predicted_grad_z_var: ``{label: (n_seeds, n_layers)}``
            Var[dL/dz^l] at the first step, measured and from :func:`backward_variance`.
        measured_grad_w_var: ``{label: (n_seeds, n_layers)}`` Var[dL/dW^l] at the first step.
        log_band: ``(lower, upper)`` arrays ``(n_layers,)`` from
            :func:`finite_width_log_band`.
    """

    labels: list[str]
    seeds: tuple[int, ...]
    initial_loss: dict[str, np.ndarray]
    loss_curves: dict[str, np.ndarray]
    test_accuracy: dict[str, np.ndarray]
    measured_grad_z_var: dict[str, np.ndarray]
    predicted_grad_z_var: dict[str, np.ndarray]
    measured_grad_w_var: dict[str, np.ndarray]
    log_band: tuple[np.ndarray, np.ndarray]
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed: float = float("nan")
    name = "deep-relu"

    def loss_drop(self, label: str) -> float:
        """Mean over seeds of (initial loss - final training loss)."""
        return float(np.mean(self.initial_loss[label] - self.loss_curves[label][:, -1]))

    def log_ratio(self, label: str) -> np.ndarray:
        """``log(measured / predicted)`` of Var[dL/dz], ``(n_seeds, n_layers)``."""
        return np.log(self.measured_grad_z_var[label] / self.predicted_grad_z_var[label])

    def within_band(self, label: str) -> bool:
        """Whether every layer's measured/predicted ratio lies in the finite-width band."""
        r = self.log_ratio(label)
        lower, upper = self.log_band
        return bool(np.all((r >= lower - 1e-9) & (r <= upper + 1e-9)))

    def table(self) -> str:
        s = self.settings
        rows = [[lbl, float(self.initial_loss[lbl].mean()), float(self.loss_curves[lbl][:, 0].mean()),
                 float(self.loss_curves[lbl][:, -1].mean()), float(self.test_accuracy[lbl].mean()),
                 "yes" if self.within_band(lbl) else "NO"] for lbl in self.labels]
        first = format_table(
            ["initializer", "loss step 0", "loss ep 1", f"loss ep {s['epochs']}", "test acc",
             "analytic ok"], rows,
            title=(f"deep-relu: {s['depth']}-layer ReLU MLP, width {s['width']}, digits, "
                   f"SGD momentum {s['momentum']:g} lr {s['learning_rate']:g}, batch "
                   f"{s['batch_size']}, {s['epochs']} epochs, seeds {list(self.seeds)}"))
        headers = ["layer"]
        for lbl in self.labels:
            headers += [f"{lbl} measured", f"{lbl} analytic"]
        headers.append("allowed ratio")
        layer_rows = []
        lower, upper = self.log_band
        for l in range(lower.size):
            row: list[Any] = [str(l)]
            for lbl in self.labels:
                row += [float(self.measured_grad_z_var[lbl][0, l]),
                        float(self.predicted_grad_z_var[lbl][0, l])]
            row.append(f"{math.exp(lower[l]):.2g} .. {math.exp(upper[l]):.3g}")
            layer_rows.append(row)
        second = format_table(
            headers, layer_rows,
            title=f"Var[dL/dz] per layer at step 0 (seed {self.seeds[0]}; analytic = mean-field "
                  "recursion anchored at the logits' gradient)",
            notes=["allowed ratio: the band of measured/analytic at this width and depth "
                   "(4 sigma of the finite-width scatter, Hanin & Rolnick 2018; see "
                   "finite_width_log_band)",
                   f"run time {self.elapsed:.1f} s"])
        return first + "\n\n" + second

    def plot(self, path: Any) -> Any:
        """Left: training loss per epoch; right: Var[dL/dz] per layer at step 0,
        measured (markers) and analytic (lines) on a log scale."""
        plt = require_pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for lbl in self.labels:
            curves = np.concatenate([self.initial_loss[lbl][:, None], self.loss_curves[lbl]], axis=1)
            (line,) = axes[0].plot(np.arange(curves.shape[1]), curves.mean(axis=0), label=lbl)
            layers = np.arange(self.log_band[0].size)
            axes[1].semilogy(layers, self.predicted_grad_z_var[lbl][0], color=line.get_color(),
                             label=f"{lbl} analytic")
            axes[1].semilogy(layers, self.measured_grad_z_var[lbl][0], "o", ms=4,
                             color=line.get_color(), label=f"{lbl} measured")
        axes[0].set(xlabel="epoch", ylabel="training loss", title="30-layer ReLU: training loss")
        axes[1].set(xlabel="layer", ylabel="Var[dL/dz] at step 0", title="gradient variance")
        axes[0].legend()
        axes[1].legend(fontsize=8)
        return self._save(fig, path)


def run_deep_relu(
    *,
    seeds: Sequence[int] = (0, 1),
    epochs: int = 20,
    depth: int = 30,
    width: int = 64,
    batch_size: int = 64,
    learning_rate: float = 0.005,
    momentum: float = 0.9,
    initializers: Sequence[InitSpec] = DEEP_RELU_INITIALIZERS,
    dtype: Any = np.float32,
    progress: ProgressLike = None,
) -> DeepReluResult:
    """Train a deep ReLU MLP from He and from Xavier initialization on the digits.

    Args:
        seeds: one run per seed and initializer (split, weights, shuffling).
        epochs, batch_size, learning_rate, momentum: the SGD-with-momentum schedule.
        depth: number of dense layers (``depth - 1`` hidden ReLU layers of ``width``).
        width: hidden width.
        initializers: names, configs, Initializers or ``(label, spec)`` pairs; each
            must state zero-mean moments (``init.moments(shape)``) for the prediction.
        dtype, progress: as in :func:`run_iris`.
    """
    from ..initializers import get

    start = time.perf_counter()
    say = reporter(progress)
    seeds = check_seeds(seeds)
    inits = normalize_inits(initializers)
    if depth < 2:
        raise ValueError(f"depth must be at least 2, got {depth}")
    widths = [64] + [int(width)] * (depth - 1) + [10]
    data = load_digits()
    splits = {s: prepare_split(data, s, 0.2) for s in seeds}
    keys = ("init", "curves", "acc", "mz", "pz", "mw")
    store: dict[str, dict[str, list]] = {k: {} for k in keys}
    for label, spec in inits:
        init = get(spec)
        wvar = [init.moments((widths[l], widths[l + 1])).var for l in range(depth)]
        for k in keys:
            store[k][label] = []
        for s in seeds:
            xtr, xte, ytr, yte = splits[s]
            model = classifier(widths, "relu", kernel_initializer=spec, seed=s, dtype=dtype)
            initial = evaluate(model, xtr, ytr).loss
            hist = fit(model, xtr, ytr, epochs=epochs, batch_size=batch_size,
                       optimizer={"name": "momentum", "momentum": momentum},
                       learning_rate=learning_rate, seed=s)
            measured = hist.initial_grad_z_var
            predicted = backward_variance(widths, wvar, "relu", output_grad_var=measured[-1])
            values = (initial, hist.loss, evaluate(model, xte, yte).accuracy, measured,
                      predicted, hist.initial_grad_w_var)
            for k, v in zip(keys, values):
                store[k][label].append(v)
            say(f"deep-relu {label} seed {s}: loss {initial:.3f} -> {hist.loss[-1]:.3f}")
    arr = {k: {lbl: np.array(v) for lbl, v in d.items()} for k, d in store.items()}
    settings = {"depth": depth, "width": width, "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "momentum": momentum,
                "dtype": np.dtype(dtype).name, "widths": widths}
    return DeepReluResult([lbl for lbl, _ in inits], seeds, arr["init"], arr["curves"], arr["acc"],
                          arr["mz"], arr["pz"], arr["mw"],
                          finite_width_log_band(widths, batch_size), settings,
                          time.perf_counter() - start)
