"""One grid point of a sweep: build the MLP (plain or residual), train it a few steps,
record every layer's scale at each step (the coordinate check), and the mean-field
theory at step 0.

:func:`compute_cell` is a pure function of the :class:`Cell`: the same cell gives the
same bytes on any executor, process or thread count (every kernel runs on one thread,
BLAS is held to one thread, every random draw comes from a stream named by the cell's
seed and :data:`RNG_STREAM_VERSION`). That is what lets a sweep cache cells on disk
under :func:`cell_key` and run them anywhere (docs/sweep.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .. import __version__
from .._blas import single_threaded_blas
from .._json import json_clean
from .._validate import finite_real, non_negative_int, one_of, positive_int
from .parameterization import PARAMETERIZATIONS, depth_rule, layer_rules, optimizer_family

__all__ = ["Cell", "compute_cell", "cell_key", "RNG_STREAM_VERSION", "INITIALIZERS", "ARCHS"]

#: The version of the random streams a cell draws from (which draws, in which order, from
#: which seed sequence). It is part of every cell's cache key: change it whenever a
#: change to this module would give a cell different numbers, so that no cached result
#: of the old streams is reused (docs/sweep.md, "Cache").
RNG_STREAM_VERSION = 1

#: Initializers a cell takes: (variance numerator sigma^2, distribution) of
#: ``Var[W] = sigma^2 / fan_in`` (Keras's he/lecun are truncated normals; ``kaiming_normal``
#: is PyTorch's untruncated one). A parameterization rescales the variance per layer.
INITIALIZERS: dict[str, tuple[float, str]] = {
    "he_normal": (2.0, "truncated_normal"),
    "he_uniform": (2.0, "uniform"),
    "kaiming_normal": (2.0, "normal"),
    "lecun_normal": (1.0, "truncated_normal"),
    "lecun_uniform": (1.0, "uniform"),
}

_OPTIMIZERS = ("sgd", "momentum", "adam")
#: Architectures a cell builds: a plain MLP, or the residual MLP of depth-muP.
ARCHS = ("mlp", "residual")
_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Cell:
    """One configuration of a sweep (every field is JSON-serializable).

    Attributes:
        width: the hidden layers' width (the residual stream's, for ``arch="residual"``).
        depth: ``arch="mlp"``: dense layers (input, ``depth - 2`` hidden, output), at
            least 2; ``arch="residual"``: residual blocks L (at least 1), between an
            input layer and a readout.
        arch: ``"mlp"`` (a plain MLP, the default) or ``"residual"`` (the residual MLP
            of :mod:`varprop.training.resmlp`, where depth-muP's branch multiplier acts).
        initializer: a name of :data:`INITIALIZERS` (sigma^2 and distribution).
        activation: the hidden layers' activation (a varprop activation name).
        parameterization: ``sp``, ``ntk``, ``mup`` or ``depth_mup`` (parameterization.py).
        optimizer: ``sgd``, ``momentum`` or ``adam`` (Keras's defaults otherwise).
        learning_rate: the base learning rate (at ``base_width``; the parameterization
            scales it per layer).
        epsilon: Adam's epsilon at ``base_width`` (Keras's 1e-7 by default; muP and
            depth-muP scale it per layer like the gradients, docs/sweep.md section 2;
            unused by SGD and momentum).
        steps: training steps; scales are recorded at steps 0..steps.
        batch: rows per training step; the probe batch the scales are measured on has
            as many rows.
        seed: the seed of the data and the weights.
        dtype: ``float32`` or ``float64``.
        input_dim, n_classes: the Gaussian task's input dimension and class count.
        base_width: the width at which every parameterization equals SP.
        test_crash_marker: tests only: a path; if the file does not exist, the worker
            creates it and exits abruptly (``os._exit``) before computing, so the cell's
            first attempt dies and its retry succeeds. Not part of the key or result.
    """

    width: int
    depth: int = 4
    arch: str = "mlp"
    initializer: str = "he_normal"
    activation: str = "relu"
    parameterization: str = "sp"
    optimizer: str = "adam"
    learning_rate: float = 0.01
    epsilon: float = 1e-7
    steps: int = 3
    batch: int = 64
    seed: int = 0
    dtype: str = "float32"
    input_dim: int = 32
    n_classes: int = 10
    base_width: int = 64
    test_crash_marker: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "width", positive_int("width", self.width))
        s(self, "arch", one_of("arch", self.arch, ARCHS))
        depth = positive_int("depth", self.depth)
        if depth < 2 and self.arch == "mlp":
            raise ValueError(f"depth must be at least 2 (an input and an output layer), got {depth}")
        s(self, "depth", depth)
        s(self, "initializer", one_of("initializer", self.initializer, tuple(INITIALIZERS)))
        if not isinstance(self.activation, str):
            raise TypeError(f"activation must be an activation name, got "
                            f"{type(self.activation).__name__}")
        from ..activations import get_activation
        try:
            get_activation(self.activation)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"activation: {exc}") from None
        s(self, "parameterization", one_of("parameterization", self.parameterization,
                                           PARAMETERIZATIONS))
        s(self, "optimizer", one_of("optimizer", self.optimizer, _OPTIMIZERS))
        s(self, "learning_rate", finite_real("learning_rate", self.learning_rate, positive=True))
        s(self, "epsilon", finite_real("epsilon", self.epsilon, positive=True))
        s(self, "steps", non_negative_int("steps", self.steps))
        s(self, "batch", positive_int("batch", self.batch))
        s(self, "seed", non_negative_int("seed", self.seed))
        s(self, "dtype", one_of("dtype", str(np.dtype(self.dtype)) if _is_dtype(self.dtype)
                               else self.dtype, _DTYPES))
        s(self, "input_dim", positive_int("input_dim", self.input_dim))
        n_classes = positive_int("n_classes", self.n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        s(self, "n_classes", n_classes)
        s(self, "base_width", positive_int("base_width", self.base_width))
        if not isinstance(self.test_crash_marker, str):
            raise TypeError("test_crash_marker must be a path string ('' for none)")

    @property
    def widths(self) -> list[int]:
        """``[input_dim, width, ..., width, n_classes]``: the fans of the weighted layers
        (``depth`` dense layers, or for a residual MLP the input layer, ``depth`` blocks
        and the readout)."""
        hidden = self.depth - 1 if self.arch == "mlp" else self.depth + 1
        return [self.input_dim] + [self.width] * hidden + [self.n_classes]

    def config(self) -> dict[str, Any]:
        """The fields that define the result (everything but the test hook)."""
        d = asdict(self)
        d.pop("test_crash_marker")
        return d

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Cell":
        """The cell of :meth:`config` (unknown keys are a ValueError naming them)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"config: unknown cell field(s) {unknown}")
        return cls(**config)


def _is_dtype(value: Any) -> bool:
    return isinstance(value, (np.dtype, type)) and value in (np.float32, np.float64)


def cell_key(cell: Cell) -> str:
    """The cache key of ``cell``: sha256 of its configuration, the varprop version and
    :data:`RNG_STREAM_VERSION` (hex, 64 characters)."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a varprop.sweep.Cell, got {type(cell).__name__}")
    blob = json.dumps({"cell": cell.config(), "varprop": __version__,
                       "rng_stream": RNG_STREAM_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _task(cell: Cell) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The seeded Gaussian task: ``steps`` training batches and one probe batch of
    ``x ~ N(0, I_d)``, labels from a random linear teacher. Drawn from the data stream
    ``(RNG_STREAM_VERSION, seed, 0)`` alone, so every width sees the same data."""
    rng = np.random.default_rng([RNG_STREAM_VERSION, cell.seed, 0])
    teacher = rng.standard_normal((cell.input_dim, cell.n_classes))
    x_train = rng.standard_normal((cell.steps * cell.batch, cell.input_dim))
    x_probe = rng.standard_normal((cell.batch, cell.input_dim))
    # float64 matmul of small matrices, one thread (the caller holds BLAS to one)
    y_train = np.argmax(x_train @ teacher, axis=1)
    dt = np.dtype(cell.dtype)
    return (np.ascontiguousarray(x_train, dt), y_train,
            np.ascontiguousarray(x_probe, dt), np.argmax(x_probe @ teacher, axis=1))


def _rms(a: np.ndarray) -> float:
    a = a.astype(np.float64, copy=False)
    return float(math.sqrt(float(np.mean(a * a)))) if a.size else math.nan


def compute_cell(cell: Cell) -> dict[str, Any]:
    """Train ``cell``'s MLP for ``cell.steps`` steps and record its coordinate check.

    Returns:
        A JSON-serializable dict: ``key``, ``config``, ``varprop``, ``rng_stream``,
        ``widths``, ``kinds`` (input/hidden/output per dense layer), ``rules`` (each
        layer's init factor, multiplier and learning-rate factors), ``theory`` (step 0:
        the mean-field RMS of each layer's pre-activations ``z``, from
        :func:`varprop.analyze` of the network with the parameterization's effective
        init variances), ``measured`` (per step 0..steps and dense layer: ``z_rms``, the
        RMS of ``z`` over the probe batch and units; ``dz_rms``, the RMS of
        ``z_t - z_0``; ``a_rms`` of the activations) and ``loss`` (the training batch's
        cross-entropy before each step, then the probe's after the last);
        ``branch_multiplier``, ``block_lr`` and ``block_eps`` (a residual MLP's depth
        rule, else None).
        For ``arch="residual"`` a layer's ``z`` is the residual stream after it (the
        input layer's output ``h_0``, then ``h_l`` after block l) and the readout's
        logits; ``a`` is ``phi`` of the stream (docs/sweep.md section 7).
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a varprop.sweep.Cell, got {type(cell).__name__}")
    if cell.test_crash_marker and not os.path.exists(cell.test_crash_marker):
        with open(cell.test_crash_marker, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(3)  # a worker dying mid-sweep (tests only)
    from ..analytic import analyze
    from ..initializers import VarianceScaling
    from ..network import mlp
    from ..training.model import MLP, softmax_cross_entropy
    from ..training.optimizers import get_optimizer
    from ..training.resmlp import ResidualMLP
    from .depth import residual_theory

    widths = cell.widths
    rules = layer_rules(cell.parameterization, widths, cell.base_width, cell.optimizer)
    sigma2, dist = INITIALIZERS[cell.initializer]
    n = len(rules)
    acts = [cell.activation] * (n - 1) + ["linear"]
    dt = np.dtype(cell.dtype)
    drule = (depth_rule(cell.parameterization, cell.depth, cell.optimizer)
             if cell.arch == "residual" else None)
    with single_threaded_blas():
        # theory at step 0: the analyzer's recursion with the effective weights m W
        eff = [VarianceScaling(sigma2 * r.effective_factor, "fan_in", dist) for r in rules]
        if drule is None:
            profile = analyze(mlp(widths, acts, eff, "zeros", final_activation=False))
            theory = [math.sqrt(r.z_var + r.z_mean * r.z_mean) for r in profile.records]
        else:
            theory = residual_theory(widths, cell.activation, eff, drule.branch_multiplier)
        # the network as trained: W drawn with the init factor, then the multipliers
        # (the same stream and order for both archs: layer by layer, input layer first)
        wrng = np.random.default_rng([RNG_STREAM_VERSION, cell.seed, 1])
        weights = []
        for l, r in enumerate(rules):
            init = VarianceScaling(sigma2 * r.init_factor, "fan_in", dist)
            w = init((widths[l], widths[l + 1]), seed=wrng, dtype=dt)
            weights.append((np.ascontiguousarray(w, dt), np.zeros(widths[l + 1], dt)))
        mults = [r.multiplier for r in rules]
        mults_arg = None if all(m == 1.0 for m in mults) else mults
        lr_pairs = [[r.lr_weight, r.lr_bias] for r in rules]
        eps_pairs = [[r.eps_weight, r.eps_bias] for r in rules]
        if drule is None:
            model: Any = MLP(weights, acts, multipliers=mults_arg)
        else:
            model = ResidualMLP(weights, cell.activation, multipliers=mults_arg,
                                branch_multiplier=drule.branch_multiplier)
            for pair, eps in zip(lr_pairs[1:-1], eps_pairs[1:-1]):  # blocks (DEPTH_TABLE)
                pair[0] *= drule.block_lr
                pair[1] *= drule.block_lr
                eps[0] *= drule.block_eps
                eps[1] *= drule.block_eps
        scales = [s for pair in lr_pairs for s in pair]
        extra: dict[str, Any] = {}
        if optimizer_family(cell.optimizer) == "adam":
            extra = {"epsilon": cell.epsilon,
                     "eps_scales": [e for pair in eps_pairs for e in pair]}
        opt = get_optimizer(cell.optimizer, learning_rate=cell.learning_rate,
                            lr_scales=scales, **extra)
        x_train, y_train, x_probe, y_probe = _task(cell)
        z0: list[np.ndarray] = []
        z_rms, dz_rms, a_rms, loss = [], [], [], []

        def record() -> Any:
            cache = model.forward(x_probe, n_threads=1)
            if not z0:
                z0.extend(z.copy() for z in cache.z)
            z_rms.append([_rms(z) for z in cache.z])
            dz_rms.append([_rms(z - z_first) for z, z_first in zip(cache.z, z0)])
            # a of the hidden layers is the next layer's input; the output's a is z
            a_rms.append([_rms(a) for a in cache.inputs[1:]] + [_rms(cache.z[-1])])
            return cache

        record()
        for t in range(cell.steps):
            xb = x_train[t * cell.batch:(t + 1) * cell.batch]
            cache = model.forward(xb, n_threads=1)
            value, g, _ = softmax_cross_entropy(cache.logits, y_train[t * cell.batch:
                                                                       (t + 1) * cell.batch])
            loss.append(value)
            grads, _ = model.backward(cache, g, n_threads=1)
            opt.step(model.params(), [p for pair in grads for p in pair])
            probe = record()
        if cell.steps == 0:
            probe = model.forward(x_probe, n_threads=1)
        loss.append(softmax_cross_entropy(probe.logits, y_probe, grad=False)[0])
    # NaN/inf (a diverged cell) become null here, so the result equals its JSON round trip
    return json_clean({
        "key": cell_key(cell),
        "config": cell.config(),
        "varprop": __version__,
        "rng_stream": RNG_STREAM_VERSION,
        "optimizer_family": optimizer_family(cell.optimizer),
        "widths": widths,
        "kinds": [r.kind for r in rules],
        "rules": [{"init_factor": r.init_factor, "multiplier": r.multiplier,
                   "lr_weight": r.lr_weight, "lr_bias": r.lr_bias,
                   "eps_weight": r.eps_weight, "eps_bias": r.eps_bias} for r in rules],
        # a plain MLP has no residual branch: depth-muP's 1/sqrt(L) applies to none
        "branch_multiplier": None if drule is None else drule.branch_multiplier,
        "block_lr": None if drule is None else drule.block_lr,
        "block_eps": None if drule is None else drule.block_eps,
        "theory": {"z_rms": theory},
        "measured": {"z_rms": z_rms, "dz_rms": dz_rms, "a_rms": a_rms},
        "loss": loss,
    })
