"""The Keras model itself, measured: :func:`profile`.

:func:`varprop.measure` measures a varprop network on varprop's kernels; :func:`profile`
measures the Keras model, running its own layers, and returns the same
:class:`~varprop.profile.Profile` as :func:`varprop.torch.profile`: one record per
weighted layer in the order of ``varprop.analyze(trace(model, x).network)``, so that
:func:`varprop.compare` can line the two up. For each seed:

1. every Dense/Conv kernel and bias is re-drawn: with ``init_(model, init)`` when a
   scheme is named; else from the law :func:`~varprop.keras.trace` read for it, from
   the random streams :func:`varprop.measure` uses for that layer
   (``SeedSequence(seed, spawn_key=(3, i, k))``), so one seed gives the same weights
   here as in ``varprop.measure`` of the traced network (Keras's kernel layout is
   varprop's), and every run is reproducible;
2. a standard-normal batch of the example's per-sample shape runs through the model's
   graph (:class:`varprop.keras.trace.Graph`, nested models inlined) layer by layer:
   Dropout off (``training=False``), BatchNormalization with batch statistics
   (``training=True``, as the theory assumes, Ioffe and Szegedy 2015), every other
   layer as Keras calls it; a Dense/Conv runs with its activation switched off so that
   its pre-activation ``z`` is seen, and the activation is then applied to ``z``;
3. a standard-normal gradient ``G`` at the output (the logits where the trace left a
   softmax head out) is back-propagated, ``L = sum(G * output)`` as in
   ``varprop.measure``, through the backend's autograd: ``dL/dz`` per record and
   ``dL/dW`` per kernel.

The activation ``a`` of a record is the activation the traced network fuses after
``z`` (the layer's own ``activation=``, or an activation layer that reads ``z`` through
dropout), else ``z``, as in ``analyze``. The statistics are ``varprop.measure``'s
(:mod:`varprop.adapters.measure`). The model's variables (kernels, biases,
BatchNormalization's moving statistics) are restored afterwards.

Backends: the gradients need the backend's autograd, and the torch backend is the one
supported (``KERAS_BACKEND=torch``); another raises a ``NotImplementedError`` that says
so (``compare(..., measure="traced")`` measures the traced network on any backend).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .._empirical_run import FIELDS, GRAD_KEY, INPUT_KEY, LAYER_KEY, stream
from ..adapters import measure as am
from ..empirical import _summarize
from .init import _DRAWN, _keras, init_, layer_kind, to_numpy
from .trace import TraceResult, trace

__all__ = ["profile", "profile_traced", "MODES", "BACKENDS", "check_backend"]

#: How the model runs while it is measured (also in ``Profile.meta["modes"]``).
MODES = ("Dropout off (training=False); BatchNormalization in training mode (batch "
         "statistics, as the theory assumes)")
#: The Keras backends whose autograd :func:`profile` drives.
BACKENDS = ("torch",)


def check_backend(owner: str = "profile") -> str:
    """The Keras backend's name, if :func:`profile` supports it.

    Raises:
        NotImplementedError: another backend, naming it and what to do instead.
    """
    backend = _keras().backend.backend()
    if backend not in BACKENDS:
        raise NotImplementedError(
            f"{owner}: measuring the Keras model itself needs the torch backend "
            f"(KERAS_BACKEND=torch, set before keras is imported); this Keras runs on "
            f"{backend!r}. varprop.keras.compare(..., measure='traced') measures the traced "
            "network on varprop's kernels with any backend")
    return backend


def profile(model: Any, example_input: Any, *, seeds: "int | Sequence[int]" = 3,
            init: Any = None, batch: "int | None" = None, law: str = "init",
            progress: "bool | Callable[[int, int], Any] | None" = None) -> Any:
    """Measure the Keras model itself, seed by seed (module doc; docs/keras.md).

    Args:
        model: a Sequential or functional ``keras.Model`` that
            :func:`~varprop.keras.trace` reads.
        example_input: fixes each sample's shape, channels last (``(batch, features)``,
            ``(batch, L, C)``, ``(batch, H, W, C)``); the measured batches are standard
            normal of that shape.
        seeds: the number of seeds (``0 .. seeds-1``) or a sequence of distinct
            non-negative ints; >= 2 for confidence intervals.
        init: None re-draws each kernel and bias from the law ``trace`` found for it; a
            scheme (name, config or initializer) re-draws the kernels with
            :func:`~varprop.keras.init_` (biases zero).
        batch: rows of each measured batch (>= 2); None: the example's own batch.
        law: how ``trace`` reads the laws when ``init`` is None ("init" or "weights").
        progress: None/False silent; True a progress line on stderr when it is a
            terminal; a callable gets ``(done, total)`` after each layer's forward and
            backward.

    Returns:
        ``Profile(kind="empirical")`` whose records line up one-to-one with
        ``varprop.analyze(trace(model, example_input, init=init).network)``'s (its
        ``meta["layers"]`` names their layers).

    Raises:
        NotImplementedError: a backend other than torch (:func:`check_backend`).
        TypeError, ValueError: as :func:`~varprop.keras.trace`; bad ``seeds`` or
            ``batch``; ``example_input`` None.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
        'torch'
        >>> import numpy as np, keras, varprop.keras
        >>> model = keras.Sequential([keras.Input((256,)),
        ...     keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256)])
        >>> x = np.zeros((128, 256), "float32")
        >>> p = varprop.keras.profile(model, x, init="he_normal")
        >>> len(p), round(p[1].z_var, 1)     # He after ReLU: Var[z] = 2 E[relu(z)^2] = 2
        (2, 2.0)
    """
    check_backend()
    if example_input is None:
        raise ValueError("profile: example_input is required (it fixes each sample's shape)")
    result = trace(model, example_input, init=init, law=law)
    shape = tuple(int(d) for d in getattr(example_input, "shape", np.shape(example_input)))
    return profile_traced(model, result, shape, seeds=seeds, init=init, batch=batch,
                          progress=progress)


def profile_traced(model: Any, result: TraceResult, example_shape: tuple[int, ...], *,
                   seeds: "int | Sequence[int]" = 3, init: Any = None,
                   batch: "int | None" = None, progress: Any = None) -> Any:
    """:func:`profile` with the trace already made (``result = trace(model, x,
    init=init)``; ``example_shape`` is ``x.shape``)."""
    check_backend()
    t0 = time.perf_counter()
    bases, rows = am.seeds_and_rows(seeds, batch, example_shape)
    from ._torch_run import TorchRun  # the torch backend: torch is Keras's own here
    plan = _Plan(model, result)
    values = np.full((len(bases), len(FIELDS), len(plan.steps)), np.nan)
    extra = np.full((len(bases), len(am.MEASURED_FIELDS), len(result.measured)), np.nan)
    seed_maps: list[dict] = []
    tick = am.reporter(progress, len(bases) * len(plan.steps) * 2, "varprop.keras.profile")
    saved = _Saved(model)
    try:
        runner = TorchRun(plan)
        for s, base in enumerate(bases):
            maps: dict[int, dict[str, np.ndarray]] = {}
            plan.redraw(base, init)
            x = np.random.default_rng(stream(base, INPUT_KEY)).standard_normal(
                (rows, *result.network.input_shape))
            grad = np.random.default_rng(stream(base, GRAD_KEY))
            runner.run(x, grad, values[s], maps, tick, extra[s])
            seed_maps.append(maps)
    finally:
        saved.restore()
        if tick is not None:
            tick(None)
    label = "the laws trace read for each kernel and bias" if init is None else \
        f"init_(model, {init!r}) (biases zero)"
    meta = {
        "measured": "the Keras model itself: its layers run one by one on the "
                    f"{_keras().backend.backend()} backend (z before each Dense/Conv's "
                    "activation, and the activation the trace fuses), gradients by autograd",
        "modes": MODES, "layers": list(result.names), "batch": rows,
        "dtype": plan.dtype, "init": label, "inputs": "standard normal",
        "output_gradient": "standard normal",
        "weight_grad_var": "Var[dL/dW entry] / batch (per-sample convention)",
        "notes": list(plan.notes), "time_s": time.perf_counter() - t0,
        "measured_only": _measured_rows(result, extra),
    }
    return am.assemble(result.network, bases, values, seed_maps, meta)


def _measured_rows(result: TraceResult, extra: np.ndarray) -> list[dict[str, Any]]:
    """Per measured-only layer: the op, the record it precedes, and the means over seeds
    (with 95% half-widths) of what was measured there."""
    mean, ci = _summarize(extra)
    return [{"op": m.name, "after": m.after,
             **{f: float(mean[j, k]) for j, f in enumerate(am.MEASURED_FIELDS)},
             **{f"{f}_ci": float(ci[j, k]) for j, f in enumerate(am.MEASURED_FIELDS)}}
            for k, m in enumerate(result.measured)]


class _Plan:
    """Which graph node is which record, what activation ``a`` is, and the weights."""

    def __init__(self, model: Any, result: TraceResult) -> None:
        keras = _keras()
        self.model, self.result, self.notes = model, result, []
        self.graph = result._graph
        self.steps = am.weighted_steps(result.network)
        self.nodes = [result._nodes[id(s.layer)] for s in self.steps]
        self.record_of = {id(node): i for i, node in enumerate(self.nodes)}
        self.measured_of = {id(m.node): k for k, m in enumerate(result.measured)}
        self.measured_end = {id(m.end): k for k, m in enumerate(result.measured)}
        self.act_node: dict[int, int] = {}  # id(activation node) -> record
        self.own_act: dict[int, bool] = {}  # record -> the layer's activation= is a
        for i, (step, node) in enumerate(zip(self.steps, self.nodes)):
            own = keras.activations.serialize(node.op.activation) not in ("linear", None) \
                if getattr(node.op, "activation", None) is not None else False
            self.own_act[i] = own and node is not result._head
            if step.act is not None and not self.own_act[i]:
                user = self.graph.follow(node.out)
                if user is None or layer_kind(user.op)[0] != "act":
                    raise ValueError(f"profile: no activation layer found after {node.label}, "
                                     "where the trace fused one")
                self.act_node[id(user)] = i
        ops = [n.op for n in self.nodes]
        if len(set(map(id, ops))) < len(ops):
            self.notes.append("a layer is called more than once: its weight gradient "
                              "(weight_grad_var) sums over its calls, and with init=None "
                              "its last record's draw is the one used")
        kernel = ops[0].kernel
        self.dtype = keras.backend.standardize_dtype(kernel.dtype)
        self.compute_dtype = ops[0].compute_dtype
        # the tensors the output depends on: the nodes to run
        needed, todo = set(), [result._output]
        while todo:
            key = todo.pop()
            node = self.graph.producer.get(key)
            if node is not None and id(node) not in needed:
                needed.add(id(node))
                todo.extend(node.inputs)
        self.run_nodes = [n for n in self.graph.nodes if id(n) in needed]

    def redraw(self, base: int, init: Any) -> None:
        """This seed's weights: ``init_`` with the scheme, else each record's law drawn
        from ``varprop.measure``'s stream for that layer (in float64 for a float64
        model, float32 otherwise, as ``varprop.measure``'s default)."""
        if init is not None:
            init_(self.model, init, seed=stream(base, LAYER_KEY))
            return
        run = am.Streams(base, np.dtype(np.float64 if self.dtype == "float64" else np.float32))
        for i, (step, node) in enumerate(zip(self.steps, self.nodes)):
            w, b = step.layer.draw(run, i)
            node.op.kernel.assign(w)
            if getattr(node.op, "use_bias", False) and b is not None:
                node.op.bias.assign(b)

    def is_norm(self, node: Any) -> bool:
        return layer_kind(node.op)[0] == "norm"

    def is_dropout(self, node: Any) -> bool:
        return layer_kind(node.op)[0] == "none"

    def activation(self, node: Any) -> Any:
        """The activation a record's Keras layer applies after ``z`` (None: none)."""
        i = self.record_of[id(node)]
        return node.op.activation if self.own_act[i] else None


class _Saved:
    """The model's variables (and what :func:`init_` recorded drawing), to put back."""

    def __init__(self, model: Any) -> None:
        self.values = [(v, np.array(to_numpy(v))) for v in model.variables]
        self.drawn = {layer: dict(d) for layer, d in _DRAWN.items()}

    def restore(self) -> None:
        for v, value in self.values:
            v.assign(value)
        for layer in list(_DRAWN.keys()):
            if layer not in self.drawn:
                del _DRAWN[layer]
        for layer, d in self.drawn.items():
            _DRAWN[layer] = d
