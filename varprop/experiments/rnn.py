"""Recurrent networks: the gradient through time at step 0, and the adding problem.

Two parts (docs/recurrent.md):

(a) The seeds' recurrent network (:func:`varprop.recurrent.rnn_preset`: one-hot tokens
    of a 10-word vocabulary into 128 tanh units, a two-class softmax on the last state)
    under zeros, random normal (0.01), Xavier (glorot_uniform) and He (he_normal)
    initialization. For each, the gradient through time at step 0, ``Var dL/dz_t`` from
    the last step back to the first: the mean-field theory
    (:func:`~varprop.recurrent.analyze_rnn`) next to the measurement
    (:func:`~varprop.recurrent.compare.compare_rnn`, standard normal loss gradients) and
    next to what the trainer sees on its first batch (softmax cross-entropy on random
    tokens with **random labels**: there is nothing to learn, so no accuracy is
    reported; only the step-0 gradient matters here), as the ratio
    ``Var dL/dz_0 / Var dL/dz_{T-1}`` and the factor per step.

(b) The adding problem (Hochreiter and Schmidhuber 1997; Le, Jaitly and Hinton 2015,
    arXiv 1504.00941): each step carries a value drawn from U(0, 1) and a marker that is
    1 at exactly two steps, one in each half of the sequence; the target is the sum of
    the two marked values. Predicting 1 (the mean) whatever the input gives MSE
    ``Var(u1 + u2) = 1/6 = 0.167``: the baseline. A 100-unit RNN with a linear readout of
    its last state is trained under each initialization with one optimizer setting for
    all (Adam, lr 1e-3, global gradient norm clipped to 1, batch 32): IRNN (ReLU,
    identity recurrence, input kernel N(0, 0.001^2), zero bias, as Le et al.),
    orthogonal recurrence (Keras's SimpleRNN default) with tanh and with ReLU, small
    random N(0, 0.001^2) ReLU weights, and glorot_uniform tanh. A run "gets below the
    baseline" when its test MSE is below 1/6 by more than three standard errors of a
    constant predictor's test MSE (``3 sqrt(7 / (180 n_test))``: no predictor that
    ignores the input gets there but about once in 700 test sets).

The step-0 network of each training run is exactly one of those the measurement draws
(:func:`varprop.recurrent.measure.draw_parameters` with the run's seed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._empirical_run import stream
from .._validate import finite_real, integer, positive_int
from ._common import ExperimentResult, ProgressLike, check_seeds, format_table, reporter, \
    require_pyplot

__all__ = ["run_rnn", "RnnResult", "adding_problem", "RNN_PRESET_INITS", "ADDING_INITS",
           "ADDING_BASELINE", "below_threshold"]

#: Part (a): the seeds' four initializations (:data:`varprop.recurrent.RNN_PRESETS`).
RNN_PRESET_INITS = ("zeros", "random", "xavier", "he")
_SMALL = {"name": "random_normal", "stddev": 0.001}
#: Part (b): label -> SimpleRNN fields (input kernel, recurrent kernel, activation).
ADDING_INITS: dict[str, dict[str, Any]] = {
    "irnn (relu, identity)": {"activation": "relu", "kernel_init": _SMALL,
                              "recurrent_init": "identity"},
    "orthogonal tanh": {"activation": "tanh", "kernel_init": "glorot_uniform",
                        "recurrent_init": "orthogonal"},
    "orthogonal relu": {"activation": "relu", "kernel_init": "glorot_uniform",
                        "recurrent_init": "orthogonal"},
    "N(0,0.001) relu": {"activation": "relu", "kernel_init": _SMALL, "recurrent_init": _SMALL},
    "glorot_uniform tanh": {"activation": "tanh", "kernel_init": "glorot_uniform",
                            "recurrent_init": "glorot_uniform"},
}
#: MSE of predicting 1 on the adding problem: Var(u1 + u2) = 2 / 12.
ADDING_BASELINE = 1.0 / 6.0
#: Variance of (y - 1)^2 for y = u1 + u2 (y - 1 is triangular on [-1, 1]): 1/15 - 1/36.
_BASELINE_SQ_VAR = 7.0 / 180.0

_FULL = {"steps": 50, "units": 100, "n_train": 10_000, "n_test": 2000, "epochs": 12,
         "variance_batch": 256, "variance_seeds": 5}
_QUICK = {"steps": 12, "units": 16, "n_train": 256, "n_test": 256, "epochs": 2,
          "variance_batch": 32, "variance_seeds": 2}


def adding_problem(n: int, steps: int, seed: Any = 0, dtype: Any = np.float32
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` adding-problem sequences of length ``steps`` (see the module doc).

    Returns:
        ``(x, y)``: ``x`` ``(steps, n, 2)`` time-major (feature 0 the U(0, 1) value,
        feature 1 the marker), ``y`` ``(n,)`` the sum of the two marked values.
    """
    n = positive_int("n", n)
    steps = integer("steps", steps, minimum=2)  # a marker in each half needs two steps
    rng = np.random.default_rng(seed)
    values = rng.random((steps, n))
    half = steps // 2
    rows = np.arange(n)
    first, second = rng.integers(0, half, n), rng.integers(half, steps, n)
    marks = np.zeros((steps, n))
    marks[first, rows] = 1.0
    marks[second, rows] = 1.0
    y = values[first, rows] + values[second, rows]
    return np.stack([values, marks], axis=-1).astype(dtype), y.astype(dtype)


def below_threshold(n_test: int) -> float:
    """Test MSE under which a run counts as below the baseline (module doc)."""
    return ADDING_BASELINE - 3.0 * math.sqrt(_BASELINE_SQ_VAR / n_test)


def _ratio(grad: np.ndarray) -> tuple[float, float]:
    """``(Var dL/dz_0 / Var dL/dz_{T-1}, its (T-1)-th root)``."""
    last, first = float(grad[-1]), float(grad[0])
    if not last > 0 or not math.isfinite(first):
        return math.nan, math.nan
    r = first / last
    return r, r ** (1.0 / (len(grad) - 1))


@dataclass
class RnnResult(ExperimentResult):
    """Both parts' numbers (module doc).

    Attributes:
        labels: part (a)'s initializations; ``theory``, ``measured``, ``measured_ci``,
            ``training``: ``{label: (T,)}`` step-0 ``Var dL/dz_t`` (theory, measurement
            with its 95 % half-widths, trainer's first batch under cross-entropy on
            random labels); ``seed_ratios``: ``{label: (variance_seeds,)}`` each measured
            network's ratio; ``verdicts``: ``{label: (theory, measured, test)}``
            sentences; ``approximate``: ``{label: [cause, ...]}``.
        adding_labels, seeds: part (b)'s initializations and the training seeds;
            ``record_steps``: optimizer steps of the curves; ``train_curves``,
            ``test_curves``: ``{label: (n_seeds, records)}``; ``train_mse``,
            ``test_mse``, ``clipped``: ``{label: (n_seeds,)}``; ``initial_grad``:
            ``{label: (n_seeds, T)}`` each run's step-0 ``Var dL/dz_t``;
            ``constant_mse``: ``(n_seeds,)`` MSE of predicting 1 on each test set.
        settings, elapsed: the run's parameters and wall time (s).
    """

    labels: list[str]
    theory: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    measured_ci: dict[str, np.ndarray]
    training: dict[str, np.ndarray]
    seed_ratios: dict[str, np.ndarray]
    verdicts: dict[str, tuple[str, str, str]]
    approximate: dict[str, list[str]]
    adding_labels: list[str]
    seeds: tuple[int, ...]
    record_steps: np.ndarray
    train_curves: dict[str, np.ndarray]
    test_curves: dict[str, np.ndarray]
    train_mse: dict[str, np.ndarray]
    test_mse: dict[str, np.ndarray]
    clipped: dict[str, np.ndarray]
    initial_grad: dict[str, np.ndarray]
    constant_mse: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed: float = float("nan")
    name = "rnn"

    def below(self, label: str) -> np.ndarray:
        """Per seed: did the run's final test MSE get below the baseline (module doc)?"""
        return self.test_mse[label] < self.settings["below"]

    def first_below(self, label: str) -> list[int | None]:
        """Per seed: the first recorded step whose test MSE is below the threshold."""
        out = []
        for curve in self.test_curves[label]:
            hit = np.flatnonzero(curve < self.settings["below"])
            out.append(int(self.record_steps[hit[0]]) if hit.size else None)
        return out

    def _gradient_table(self) -> str:
        s = self.settings
        rows, notes = [], []
        for label in self.labels:
            cells = [label]
            for grad in (self.theory[label], self.measured[label], self.training[label]):
                cells += list(_ratio(grad))
            sr = self.seed_ratios[label]
            cells.append(f"{np.nanmin(sr):.3g} .. {np.nanmax(sr):.3g}" if np.isfinite(sr).any()
                         else "nan")
            rows.append(cells)
            th, me, test = self.verdicts[label]
            notes += [f"{label}: theory:   {th}", f"{' ' * len(label)}  measured: {me}",
                      f"{' ' * len(label)}  test:     {test}"]
            if self.approximate[label]:
                notes.append(f"{' ' * len(label)}  theory approximate: "
                             f"{', '.join(self.approximate[label])}")
        T = s["steps"]
        title = (f"(a) gradient through time at step 0: the seeds' RNN (one-hot vocabulary "
                 f"{s['vocabulary']} -> {s['preset_units']} tanh units -> 2-class softmax on "
                 f"h_{T - 1}), T = {T}; ratio = Var dL/dz_0 / Var dL/dz_{T - 1}, factor = "
                 f"ratio^(1/{T - 1}) per step")
        return format_table(
            ["init", "theory ratio", "factor", "measured ratio", "factor", "training ratio",
             "factor", "measured, per seed"], rows, title=title,
            notes=[f"measured: {s['variance_seeds']} weight draws x {s['variance_batch']} "
                   "sequences, standard normal gradient on the last state; training: the "
                   "trainer's first batch, softmax cross-entropy on RANDOM labels (random "
                   "tokens, random classes: there is nothing to learn, so no accuracy is "
                   "reported; only the step-0 gradient is meaningful here)",
                   f"a ratio of 0 where the theory's is positive: the {s['dtype']} gradient "
                   "underflowed to exactly 0 before step 0 (entries below ~1e-45 in "
                   "float32), which is what training in that dtype then gets"] + notes)

    def _adding_table(self) -> str:
        s = self.settings
        rows = []
        for label in self.adding_labels:
            test, below = self.test_mse[label], self.below(label)
            first = [f for f in self.first_below(label) if f is not None]
            ratio = np.array([_ratio(g)[0] for g in self.initial_grad[label]])
            rows.append([label, float(np.mean(ratio)), float(self.train_mse[label].mean()),
                         float(test.mean()),
                         float(test.std()) if test.size > 1 else "-",
                         float(test.mean() / ADDING_BASELINE),
                         f"{int(below.sum())}/{below.size}",
                         "-" if not first else (str(first[0]) if len(first) == 1 else
                                                f"{min(first)}..{max(first)}"),
                         f"{100 * self.clipped[label].mean() / s['total_steps']:.0f}%"])
        title = (f"(b) adding problem, T = {s['steps']}: {s['units']}-unit RNN + linear "
                 f"readout, Adam lr {s['learning_rate']:g}, clipnorm {s['clipnorm']:g}, "
                 f"batch {s['batch_size']}, {s['epochs']} epochs of {s['n_train']} "
                 f"sequences ({s['total_steps']} steps), test {s['n_test']} sequences, "
                 f"seeds {list(self.seeds)}")
        return format_table(
            ["init", "step-0 ratio", "train MSE", "test MSE", "std", "/ baseline",
             "below", "first step below", "clipped"], rows, title=title,
            notes=[f"baseline: predicting 1 gives MSE 1/6 = {ADDING_BASELINE:.4f} (on these "
                   f"test sets: {', '.join(f'{v:.4f}' for v in self.constant_mse)}); "
                   f"'below' = test MSE < {s['below']:.4f} (1/6 minus 3 standard errors of "
                   f"a constant predictor's test MSE)",
                   "step-0 ratio: Var dL/dz_0 / Var dL/dz_{T-1} on the first training batch "
                   f"(MSE loss, mean over the seeds; 0: underflowed in {s['dtype']}); "
                   "clipped: share of the steps whose gradient norm was clipped",
                   f"run time {self.elapsed:.1f} s"])

    def table(self) -> str:
        return self._gradient_table() + "\n\n" + self._adding_table()

    def figure(self) -> Any:
        """A matplotlib Figure: (a) theory vs measured gradient through time, (b) each
        adding-problem run's step-0 gradient through time, (c) test MSE curves."""
        plt = require_pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
        t = np.arange(self.settings["steps"])
        for i, label in enumerate(self.labels):
            color = f"C{i}"
            th, me = self.theory[label], self.measured[label]
            only_last = not np.any(th[:-1] > 0)  # zeros: a single point, drawn as one
            axes[0].plot(t[th > 0], th[th > 0], "_" if only_last else "-", ms=12,
                         color=color, label=f"{label} theory"
                         + (" (0 before the last step)" if only_last else ""))
            axes[0].plot(t[me > 0], me[me > 0], "o", ms=3, color=color,
                         label=f"{label} measured")
        axes[0].set(xlabel="time step t", ylabel="Var dL/dz_t at step 0", yscale="log",
                    title="(a) seeds' RNN: gradient through time")
        axes[0].legend(fontsize=7, ncol=2)
        for i, label in enumerate(self.adding_labels):
            g = self.initial_grad[label].mean(axis=0)
            axes[1].plot(t[g > 0], g[g > 0], color=f"C{i}", label=label)
            curves = self.test_curves[label]
            axes[2].plot(self.record_steps, np.nanmean(curves, axis=0), color=f"C{i}",
                         label=label)
        axes[1].set(xlabel="time step t", ylabel="Var dL/dz_t, first batch", yscale="log",
                    title="(b) adding problem: step-0 gradient")
        axes[2].axhline(ADDING_BASELINE, color="k", ls="--", lw=1, label="predict 1 (1/6)")
        axes[2].set(xlabel="optimizer step", ylabel="test MSE", yscale="log",
                    title="(b) adding problem: test MSE")
        for ax in axes[1:]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def plot(self, path: Any) -> Any:
        """Write :meth:`figure` to ``path`` (PNG, PDF or SVG by the suffix)."""
        return self._save(self.figure(), path)


def _gradient_part(inits: Sequence[str], steps: int, batch: int, n_seeds: int,
                   dtype: Any, n_threads: int | None, say: Any) -> dict[str, dict]:
    """Part (a): theory, measurement, verdicts and the trainer's first batch."""
    from ..recurrent import rnn_preset
    from ..recurrent.compare import compare_rnn
    from ..recurrent.measure import draw_inputs
    from ..recurrent.train import RNNClassifier, loss_and_gradients

    out: dict[str, dict] = {k: {} for k in ("theory", "measured", "ci", "training", "seed",
                                            "verdicts", "approx")}
    for label in inits:
        rnn = rnn_preset(label)
        cmp = compare_rnn(rnn, steps, batch=batch, seeds=n_seeds, inputs="one_hot",
                          dtype=dtype, n_threads=n_threads)
        out["theory"][label] = cmp.analytic.column("grad_var")
        out["measured"][label] = cmp.empirical.column("grad_var")
        out["ci"][label] = cmp.empirical.column("grad_var_ci")
        per_seed = np.asarray(cmp.empirical.seed_values["grad_var"], dtype=float)
        out["seed"][label] = np.array([_ratio(row)[0] for row in per_seed])
        test = cmp.agreement.summary() if cmp.agreement is not None else "no test"
        out["verdicts"][label] = (cmp.analytic_verdict.message,
                                  cmp.empirical_verdict.message, test)
        out["approx"][label] = sorted({a["detail"] if a["kind"] == "recurrent" else
                                       f"{a['kind']} ({a['detail']})" for a in
                                       cmp.analytic.meta.get("approximations", [])})
        grads = []
        for s in range(n_seeds):  # random tokens, random labels: only step 0 matters
            model = RNNClassifier.init(rnn, 2, seed=s, dtype=dtype)
            x = draw_inputs(rnn, steps, batch, "one_hot", 1.0, stream(s, 32), model.dtype)
            y = np.random.default_rng(stream(s, 33)).integers(0, 2, batch)
            gz = loss_and_gradients(model, x, y, "cross_entropy", n_threads).grad_z
            gz = gz.astype(np.float64) * batch  # each sequence's own loss
            grads.append(np.mean(gz.reshape(steps, -1) ** 2, axis=1))
        out["training"][label] = np.mean(grads, axis=0)
        say(f"rnn (a) {label}: theory ratio {_ratio(out['theory'][label])[0]:.3g}, "
            f"measured {_ratio(out['measured'][label])[0]:.3g}")
    return out


def run_rnn(
    *,
    seeds: Sequence[int] = (0, 1),
    steps: int | None = None,
    units: int | None = None,
    epochs: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    clipnorm: float | None = 1.0,
    n_train: int | None = None,
    n_test: int | None = None,
    eval_every: int | None = None,
    inits: Sequence[str] = RNN_PRESET_INITS,
    adding_inits: dict[str, dict[str, Any]] | None = None,
    variance_batch: int | None = None,
    variance_seeds: int | None = None,
    quick: bool = False,
    dtype: Any = np.float32,
    n_threads: int | None = None,
    progress: ProgressLike = None,
) -> RnnResult:
    """Run both parts (module doc). Sizes left at None take the full defaults (T 50,
    100 units, 12 epochs of 10,000 sequences, 2,000 test sequences, 5 x 256 measured
    sequences; about 1-2 minutes on 2 cores) or, with ``quick=True``, tiny ones for a
    smoke test (T 12, 16 units, 2 epochs of 256 sequences: seconds, and the adding
    problem is then not learned).

    Args:
        seeds: one adding-problem run per seed and initialization (the seed fixes the
            data, the weights and the shuffling).
        steps: sequence length T of both parts.
        units: state units of the adding-problem RNN (part (a) is the seeds' 128).
        epochs, batch_size, learning_rate, clipnorm: the Adam schedule, one for all.
        n_train, n_test: adding-problem training and test sequences.
        eval_every: optimizer steps between points of the curves (None: 8 per epoch).
        inits: part (a)'s :data:`~varprop.recurrent.RNN_PRESETS` names.
        adding_inits: part (b)'s ``{label: SimpleRNN fields}`` (default
            :data:`ADDING_INITS`).
        variance_batch, variance_seeds: part (a)'s measured sequences and draws.
        quick: the small sizes above.
        dtype, n_threads, progress: as in the other experiments.
    """
    from ..recurrent import SimpleRNN
    from ..recurrent.train import RNNClassifier, evaluate_rnn, fit_rnn

    start = time.perf_counter()
    say = reporter(progress)
    seeds = check_seeds(seeds)
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {type(quick).__name__}")
    base = _QUICK if quick else _FULL
    size = {k: base[k] if v is None else v for k, v in
            (("steps", steps), ("units", units), ("n_train", n_train), ("n_test", n_test),
             ("epochs", epochs), ("variance_batch", variance_batch),
             ("variance_seeds", variance_seeds))}
    steps = integer("steps", size["steps"], minimum=2)
    units, epochs = positive_int("units", size["units"]), positive_int("epochs", size["epochs"])
    n_train, n_test = positive_int("n_train", size["n_train"]), positive_int("n_test", size["n_test"])
    variance_batch = integer("variance_batch", size["variance_batch"], minimum=2)
    variance_seeds = positive_int("variance_seeds", size["variance_seeds"])
    batch_size = positive_int("batch_size", batch_size)
    learning_rate = finite_real("learning_rate", learning_rate, positive=True)
    if clipnorm is not None:
        clipnorm = finite_real("clipnorm", clipnorm, positive=True)
    if isinstance(inits, str):
        inits = (inits,)
    from ..recurrent.spec import RNN_PRESETS, SEEDS_UNITS, SEEDS_VOCAB
    for label in inits:
        if label not in RNN_PRESETS:
            raise ValueError(f"inits: unknown preset {label!r}; valid: {', '.join(RNN_PRESETS)}")
    if not inits:
        raise ValueError("inits must name at least one preset")
    adding_inits = dict(ADDING_INITS if adding_inits is None else adding_inits)
    if not adding_inits:
        raise ValueError("adding_inits must hold at least one initialization")
    nets = {}
    for label, fields in adding_inits.items():
        if not isinstance(fields, dict):
            raise TypeError(f"adding_inits[{label!r}] must be a dict of SimpleRNN fields, "
                            f"got {type(fields).__name__}")
        try:
            nets[label] = SimpleRNN(2, units, **fields)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"adding_inits[{label!r}]: {exc}") from None
    per_epoch = -(-n_train // batch_size)
    eval_every = positive_int("eval_every", eval_every or max(1, per_epoch // 8))

    grad = _gradient_part(inits, steps, variance_batch, variance_seeds, dtype, n_threads, say)

    data = {s: (adding_problem(n_train, steps, stream(s, 40), dtype),
                adding_problem(n_test, steps, stream(s, 41), dtype)) for s in seeds}
    constant = np.array([float(np.mean((1.0 - data[s][1][1].astype(np.float64)) ** 2))
                         for s in seeds])
    res: dict[str, dict[str, list]] = {k: {} for k in ("train", "test", "trmse", "temse",
                                                       "clip", "g0")}
    record_steps = None
    for label, rnn in nets.items():
        for k in res:
            res[k][label] = []
        for s in seeds:
            (xtr, ytr), (xte, yte) = data[s]
            model = RNNClassifier.init(rnn, 1, seed=s, dtype=dtype)
            hist = fit_rnn(model, xtr, ytr, loss="mse", epochs=epochs, batch_size=batch_size,
                           optimizer="adam", learning_rate=learning_rate, clipnorm=clipnorm,
                           validation_data=(xte, yte), eval_every=eval_every, seed=s,
                           n_threads=n_threads)
            record_steps = hist.step
            tr = evaluate_rnn(model, xtr, ytr, "mse", n_threads)[0]
            for k, v in zip(res, (hist.loss, hist.val_loss, tr, hist.val_loss[-1],
                                  hist.clipped, hist.initial_grad_var)):
                res[k][label].append(v)
            say(f"rnn (b) {label} seed {s}: test MSE {hist.val_loss[-1]:.4f} "
                f"({hist.time_s:.1f} s{', diverged' if hist.diverged_at is not None else ''})")
    arr = {k: {label: np.array(v, dtype=float) for label, v in d.items()}
           for k, d in res.items()}
    settings = {"steps": steps, "units": units, "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "clipnorm": clipnorm or math.inf,
                "n_train": n_train, "n_test": n_test, "eval_every": eval_every,
                "total_steps": epochs * per_epoch, "below": below_threshold(n_test),
                "variance_batch": variance_batch, "variance_seeds": variance_seeds,
                "vocabulary": SEEDS_VOCAB, "preset_units": SEEDS_UNITS, "quick": quick,
                "dtype": np.dtype(dtype).name}
    return RnnResult(list(inits), grad["theory"], grad["measured"], grad["ci"],
                     grad["training"], grad["seed"], grad["verdicts"], grad["approx"],
                     list(nets), seeds, np.asarray(record_steps), arr["train"], arr["test"],
                     arr["trmse"], arr["temse"], arr["clip"], arr["g0"], constant, settings,
                     time.perf_counter() - start)
