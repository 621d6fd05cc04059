"""The symmetry problem: with zero or constant initialization the hidden units of a
layer stay identical however long the network trains; random initialization breaks it.

Every unit of a layer that starts with the same incoming weights, bias and outgoing
weights computes the same function and receives the same gradient, so any optimizer
that acts elementwise (SGD, momentum, Adam) keeps them equal: the layer is in effect
one unit wide. The experiment trains the Iris network (4 -> 32 -> 16 -> 3 ReLU, Adam,
50 epochs) and reports, per hidden layer, the largest difference between two units'
parameters (incoming weight column, bias, outgoing weight row) and the number of
distinct units.

* ``zeros``: with ReLU every hidden gradient is exactly 0 (``relu'(0) = 0``); only the
  output bias learns. The spread stays exactly 0.
* ``constant(0.1)``: gradients are non-zero but identical across the units of a
  layer; the spread stays exactly 0 in float64. In float32 the BLAS kernels may take a
  different code path (a vectorized main block or a scalar edge, with or without FMA)
  for different output columns, so identical columns can differ in the last bit;
  the table shows that rounding-level spread next to the exact float64 result.
* random normal (std 0.1) and He normal: the units differ from the start and the
  spread is of the order of the weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..datasets import load_iris
from ..training import MLP, classifier, evaluate, fit
from ._common import (ExperimentResult, InitSpec, ProgressLike, format_table, normalize_inits,
                      prepare_split, reporter, require_pyplot)

__all__ = ["run_symmetry", "SymmetryResult", "unit_spread", "distinct_units",
           "SYMMETRY_INITIALIZERS"]

SYMMETRY_INITIALIZERS: tuple = (
    ("zeros", "zeros"),
    ("constant(0.1)", {"name": "constant", "value": 0.1}),
    ("random_normal(0.1)", {"name": "random_normal", "stddev": 0.1}),
    ("he_normal", "he_normal"),
)


def _unit_params(model: MLP, layer: int) -> np.ndarray:
    """One row per unit of hidden layer ``layer``: incoming column, bias, outgoing row."""
    w, b = model.weights[layer]
    w_next = model.weights[layer + 1][0]
    return np.concatenate([w.T, b[:, None], w_next], axis=1)


def unit_spread(model: MLP) -> np.ndarray:
    """Per hidden layer, ``max_j max |theta_j - theta_0|`` over the units' parameters
    (incoming weights, bias, outgoing weights): exactly 0 iff all units are identical."""
    out = []
    for l in range(model.n_layers - 1):
        p = _unit_params(model, l)
        out.append(float(np.max(np.abs(p - p[:1]))) if p.size else 0.0)
    return np.array(out)


def distinct_units(model: MLP) -> list[int]:
    """Per hidden layer, the number of distinct units (bitwise-equal parameter rows)."""
    return [int(np.unique(_unit_params(model, l), axis=0).shape[0])
            for l in range(model.n_layers - 1)]


@dataclass
class SymmetryResult(ExperimentResult):
    """Per initializer and dtype: spread and distinct units per hidden layer, before and
    after training, the gradient variances and the test accuracy.

    ``rows`` is a list of dicts with keys ``label``, ``dtype``, ``spread_before``,
    ``spread`` (arrays over hidden layers), ``distinct`` (list), ``widths``,
    ``grad_w_var`` (mean over epochs, per layer) and ``test_accuracy``.
    """

    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed: float = float("nan")
    name = "symmetry"

    def spread(self, label: str, dtype: str = "float64") -> np.ndarray:
        """The after-training spread per hidden layer of one run."""
        for r in self.rows:
            if r["label"] == label and r["dtype"] == dtype:
                return r["spread"]
        raise KeyError(f"no run {label!r} in {dtype}")

    def table(self) -> str:
        s = self.settings
        body = []
        for r in self.rows:
            hidden = r["widths"][1:-1]
            distinct = " / ".join(f"{d} of {n}" for d, n in zip(r["distinct"], hidden))
            body.append([r["label"], r["dtype"], float(r["spread_before"].max()),
                         float(r["spread"].max()), distinct,
                         "yes" if np.all(r["grad_w_var"][:-1] == 0) else "no",
                         r["test_accuracy"]])
        return format_table(
            ["initializer", "dtype", "spread at init", "spread trained", "distinct units",
             "hidden grads 0", "test acc"], body,
            title=(f"symmetry: Iris {'-'.join(map(str, s['widths']))} ReLU, Adam, {s['epochs']} "
                   f"epochs, seed {s['seed']}; spread = largest difference between two units' "
                   "parameters"),
            notes=["an exact 0.0 means every unit of each hidden layer is bitwise identical",
                   f"run time {self.elapsed:.1f} s"])

    def plot(self, path: Any) -> Any:
        """Bar chart of the trained spread per initializer (log scale, 0 drawn at the floor)."""
        plt = require_pyplot()
        fig, ax = plt.subplots(figsize=(9, 4.5))
        labels = [f"{r['label']}\n{r['dtype']}" for r in self.rows]
        values = [max(float(r["spread"].max()), 1e-20) for r in self.rows]
        ax.bar(range(len(values)), values, color=["C3" if v <= 1e-20 else "C0" for v in values])
        ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=30, ha="right")
        ax.set(ylabel="largest unit difference (0 shown as 1e-20)",
               title="symmetry: hidden units after training")
        return self._save(fig, path)


def run_symmetry(
    *,
    seed: int = 0,
    epochs: int = 50,
    batch_size: int = 32,
    widths: Sequence[int] = (4, 32, 16, 3),
    initializers: Sequence[InitSpec] = SYMMETRY_INITIALIZERS,
    dtypes: Sequence[Any] = ("float64", "float32"),
    progress: ProgressLike = None,
) -> SymmetryResult:
    """Train the Iris network from symmetric and random initializations.

    Args:
        seed: split, weights and shuffling.
        epochs, batch_size: Adam's schedule.
        widths: the network (``widths[0] == 4``, ``widths[-1] == 3``).
        initializers: names, configs, Initializers or ``(label, spec)`` pairs (biases
            are zeros).
        dtypes: the dtypes to run each initializer in (float64 shows the exact result).
        progress: as in :func:`~varprop.experiments.run_iris`.
    """
    start = time.perf_counter()
    say = reporter(progress)
    inits = normalize_inits(initializers)
    widths = tuple(int(n) for n in widths)
    if len(widths) < 3 or widths[0] != 4 or widths[-1] != 3:
        raise ValueError(f"widths must start with 4, end with 3 and have a hidden layer, got {widths}")
    xtr, xte, ytr, yte = prepare_split(load_iris(), seed)
    rows = []
    for label, spec in inits:
        for dt in dtypes:
            dt = np.dtype(dt)
            model = classifier(widths, "relu", kernel_initializer=spec, seed=seed, dtype=dt)
            before = unit_spread(model)
            hist = fit(model, xtr, ytr, epochs=epochs, batch_size=batch_size, optimizer="adam",
                       seed=seed)
            rows.append({
                "label": label, "dtype": dt.name, "spread_before": before,
                "spread": unit_spread(model), "distinct": distinct_units(model),
                "widths": widths, "grad_w_var": hist.grad_w_var.mean(axis=0),
                "test_accuracy": evaluate(model, xte, yte).accuracy,
            })
            say(f"symmetry {label} {dt.name}: spread {rows[-1]['spread'].max():.3g}")
    settings = {"widths": list(widths), "epochs": epochs, "batch_size": batch_size, "seed": seed}
    return SymmetryResult(rows, settings, time.perf_counter() - start)
