"""The PyTorch model itself, measured: :func:`profile`.

:func:`varprop.measure` measures a varprop network on varprop's kernels; :func:`profile`
measures the ``nn.Module`` you wrote, with its own forward and backward, and returns the
same :class:`~varprop.profile.Profile`, one record per weighted layer in the order of
``varprop.analyze(trace(model, x).network)``, so :func:`varprop.compare` can line the
two up. For each seed:

1. every Linear/Conv is re-drawn: with ``init_(model, init)`` when a scheme is named;
   else from the law :func:`~varprop.torch.trace` read for it, from the random streams
   :func:`varprop.measure` uses for that layer (``SeedSequence(seed, spawn_key=(3, i,
   k))``), so one seed gives the same weights here as in ``varprop.measure`` of the
   traced network, and every run is reproducible;
2. a standard-normal batch of the example's per-sample shape runs forward, with
   Dropout off (``model.eval()``) and BatchNorm in training mode (batch statistics, as
   the theory assumes, Ioffe and Szegedy 2015), and a standard-normal gradient ``G`` at
   the output is back-propagated (``L = sum(G * output)``, as ``varprop.measure``);
3. a forward hook on each Linear/Conv reads its output ``z`` (at once, before an
   in-place activation overwrites it) and applies the activation that directly follows
   it in the traced network to a copy (``a``; ``a = z`` when none does, as in
   ``analyze``), and a tensor hook on ``z`` reads ``dL/dz``. Residual branches are
   ordinary paths of the model: their layers are hooked like any other.

The statistics are ``varprop.measure``'s (docs/comparison.md; the module doc of
:mod:`varprop.empirical`): pooled mean and variance over the batch and all units (and
pixels) in float64, ``weight_grad_var = Var[dL/dW entry] / batch`` (dL/dW sums ``batch``
per-sample terms), per-pixel maps of convolutions, means over seeds and 95% t
half-widths (:func:`varprop.empirical._summarize`). The model's parameters, buffers
(BatchNorm's running statistics), gradients, ``requires_grad`` flags and train/eval
modes are restored afterwards.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from .. import layers as vl
from .._empirical_run import FIELDS, GRAD_KEY, INPUT_KEY, LAYER_KEY, stream
from ..adapters import measure as am
from ..empirical import _summarize
from ..profile import Profile
from ._ops import classify, torch_shape
from ._profile_parts import Saved, channels_last, grad_stats, keep_modes
from ._runner import GraphRunner
from .init import init_
from .trace import TraceResult, trace

__all__ = ["profile", "profile_traced", "keep_modes", "MODES"]

#: How the model runs while it is measured (also in ``Profile.meta["modes"]``).
MODES = ("Dropout off (model.eval()); BatchNorm in training mode (batch statistics, as "
         "the theory assumes)")


def profile(model: nn.Module, example_input: torch.Tensor, *, seeds: "int | Sequence[int]" = 3,
            init: Any = None, batch: "int | None" = None,
            progress: "bool | Callable[[int, int], Any] | None" = None,
            input_kind: str = "auto") -> Profile:
    """Measure ``model`` itself, seed by seed (module doc; docs/torch.md).

    Args:
        model: an ``nn.Module`` that :func:`~varprop.torch.trace` reads.
        example_input: fixes each sample's shape (``(batch, features)`` or
            channels-first images); the measured batches are standard normal of that
            shape.
        seeds: the number of seeds (``0 .. seeds-1``) or a sequence of distinct
            non-negative ints; >= 2 for confidence intervals.
        init: None re-draws each Linear/Conv from the law ``trace`` read off its
            entries; a scheme (name, config or initializer) re-draws it with
            :func:`~varprop.torch.init_` (biases zero).
        batch: rows of each measured batch (>= 2); None: the example's own batch.
        progress: None/False silent; True a progress line on stderr when it is a
            terminal; a callable gets ``(done, total)`` after every layer's forward
            and backward.
        input_kind: what a rank-3 input is, as for :func:`~varprop.torch.trace`.

    Returns:
        ``Profile(kind="empirical")`` whose records line up one-to-one with
        ``varprop.analyze(trace(model, example_input, init=init).network)``'s (its
        ``meta["layers"]`` names their modules).

    Raises:
        TypeError, ValueError: as :func:`~varprop.torch.trace`; bad ``seeds`` or
            ``batch``; a model whose forward calls its layers other than its graph.

    Example:
        >>> import torch, varprop, varprop.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(),
        ...                             torch.nn.Linear(256, 256))
        >>> p = varprop.torch.profile(model, torch.randn(128, 256), init="he_normal")
        >>> len(p), round(p[1].z_var, 1)     # He after ReLU: Var[z] = 2 E[relu(z)^2] = 2
        (2, 2.0)
    """
    with keep_modes(model):
        result = trace(model, example_input, init=init, anchor=False, input_kind=input_kind)
        return profile_traced(model, result, tuple(example_input.shape), seeds=seeds,
                              init=init, batch=batch, progress=progress)


def profile_traced(model: nn.Module, result: TraceResult, example_shape: tuple[int, ...], *,
                   seeds: "int | Sequence[int]" = 3, init: Any = None,
                   batch: "int | None" = None, progress: Any = None) -> Profile:
    """:func:`profile` with the trace already made (``result = trace(model, x,
    init=init)``; ``example_shape`` is ``x.shape``)."""
    t0 = time.perf_counter()
    bases, rows = am.seeds_and_rows(seeds, batch, example_shape)
    plan = _Plan(model, result, example_shape)
    n = len(plan.steps)
    values = np.full((len(bases), len(FIELDS), n), np.nan)
    measured = np.full((len(bases), len(am.MEASURED_FIELDS), len(result.measured)), np.nan)
    seed_maps: list[dict[int, dict[str, np.ndarray]]] = []
    report = am.reporter(progress, len(bases) * n * 2, "varprop.torch.profile")
    saved = Saved(model)
    try:
        _set_modes(model, plan)
        for s, base in enumerate(bases):
            maps: dict[int, dict[str, np.ndarray]] = {}
            plan.redraw(base, init)
            plan.run(base, rows, values[s], maps, report, measured[s])
            seed_maps.append(maps)
    finally:
        plan.remove_hooks()
        saved.restore()
        if report is not None:
            report(None)
    prof = _assemble(result, plan, bases, rows, values, seed_maps, init,
                     time.perf_counter() - t0)
    prof.meta["measured_only"] = measured_rows(result, measured)
    return prof


def _assemble(result: TraceResult, plan: "_Plan", bases: list[int], rows: int,
              values: np.ndarray, seed_maps: list, init: Any, seconds: float) -> Profile:
    label = "the laws trace read from the model's weights" if init is None else \
        f"init_(model, {init!r}) (biases zero)"
    meta = {
        "measured": "the PyTorch model itself: forward hooks on its Linear/Conv layers "
                    "(z, and the activation that directly follows), tensor hooks (dL/dz)",
        "modes": MODES,
        "layers": list(result.names),
        "batch": rows,
        "seeds": list(bases),
        "n_seeds": len(bases),
        "dtype": str(plan.dtype).replace("torch.", ""),
        "init": label,
        "inputs": "standard normal" if not result.tokens else
                  f"token indices drawn uniformly from {result.tokens}",
        "output_gradient": "standard normal",
        "weight_grad_var": "Var[dL/dW entry] / batch (per-sample convention)",
        "notes": list(plan.notes),
        "time_s": seconds,
    }
    in_mean, in_var = result.input_moments
    return am.assemble(result.network, bases, values, seed_maps, meta, in_mean, in_var)


def measured_rows(result: TraceResult, measured: np.ndarray) -> list[dict[str, Any]]:
    """Per measured-only op, what was measured (mean over seeds, 95% half-widths), and
    the recurrent theory beside a recurrent layer (docs/torch.md)."""
    from ._measured import recurrent_beside
    mean, ci = _summarize(measured)
    rows = []
    for k, op in enumerate(result.measured):
        row: dict[str, Any] = {"op": op.name, "reasons": list(op.reasons), "after": op.after}
        for j, name in enumerate(am.MEASURED_FIELDS):
            row[name], row[name + "_ci"] = float(mean[j, k]), float(ci[j, k])
        row["recurrent_theory"] = recurrent_beside(op, row["in_var"])
        rows.append(row)
    return rows


class _Plan:
    """Which module call is which record, what follows it, and the hooks."""

    def __init__(self, model: nn.Module, result: TraceResult,
                 example_shape: tuple[int, ...] = ()) -> None:
        self.model, self.result, self.notes = model, result, []
        self.example_shape = example_shape
        net = result.network
        self.steps = am.weighted_steps(net)
        gm: fx.GraphModule = result.graph
        nodes = list(gm.graph.nodes)
        used = _ancestors(nodes[-1])
        convs = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)
        inside = {name for op in result.measured for name in op.nodes}
        self.sequence = result.sequence
        # every call of a Linear/Conv in graph (= execution) order, per module object:
        # the k-th time its forward hook fires is its k-th node
        self.calls: dict[int, list[fx.Node]] = {}
        weighted = []
        for node in nodes:
            if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), convs):
                self.calls.setdefault(id(gm.get_submodule(str(node.target))), []).append(node)
                if node in used and node.name not in inside:
                    weighted.append(node)
        if [str(w.target) for w in weighted] != list(result.names):
            raise ValueError("profile: the model's graph calls its layers in another order "
                             f"({[str(w.target) for w in weighted]}) than the trace's records "
                             f"({result.names})")
        self.record_of = {node: i for i, node in enumerate(weighted)}
        self.modules = [model.get_submodule(name) for name in result.names]
        self.acts = [_fused_act(node, gm, used) if step.act is not None else None
                     for node, step in zip(weighted, self.steps)]
        if len(set(map(id, self.modules))) < len(self.modules):
            self.notes.append("a module is called more than once: its weight gradient "
                              "(weight_grad_var) sums over its calls, and with init=None "
                              "its last record's draw is the one used")
        self.flat = _flatten_shapes(net.layers, result)
        first = next((p for p in model.parameters() if p.is_floating_point()), None)
        self.dtype = torch.float32 if first is None else first.dtype
        self.device = torch.device("cpu") if first is None else first.device
        self.handles: list[Any] = []

    # ------------------------------------------------------------------ weights
    def redraw(self, base: int, init: Any) -> None:
        """This seed's weights: ``init_`` with the scheme, else each record's law drawn
        from ``varprop.measure``'s stream for that layer."""
        if init is not None:
            init_(self.model, init, seed=stream(base, LAYER_KEY))
        # float64 models draw in float64; others in float32, as varprop.measure's default
        run = am.Streams(base, np.dtype(np.float64 if self.dtype == torch.float64 else np.float32))
        with torch.no_grad():
            for i, (step, module) in enumerate(zip(self.steps, self.modules)):
                if init is not None and not isinstance(module, nn.Embedding):
                    continue  # init_ drew it; an Embedding keeps the law read off it
                w, b = step.layer.draw(run, i)
                if not isinstance(module, nn.Embedding):  # (V, D) as varprop's (n_in, n_out)
                    w = _to_torch(step.layer, w, self.flat[i])
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                if getattr(module, "bias", None) is not None and b is not None:
                    module.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))

    # ------------------------------------------------------------------ one seed
    def run(self, base: int, rows: int, out: np.ndarray, maps: dict, tick: Any,
            measured: "np.ndarray | None" = None) -> None:
        net = self.result.network
        counts: dict[int, int] = {}

        def forward_hook(module: nn.Module, inputs: Any, z: torch.Tensor) -> None:
            k = counts.get(id(module), 0)
            counts[id(module)] = k + 1
            calls = self.calls.get(id(module), [])
            i = self.record_of.get(calls[k]) if k < len(calls) else None
            if i is None:
                return
            with torch.no_grad():  # now: an in-place activation will overwrite z
                zd = z.detach()
                a = zd if self.acts[i] is None else self.acts[i](zd.clone())
                if self.sequence:  # tokens are rows
                    zd, a = zd.reshape(-1, zd.shape[-1]), a.reshape(-1, a.shape[-1])
                am.forward_stats(out[:, i], channels_last(zd), channels_last(a), maps, i)
            z.register_hook(lambda g, i=i: grad_stats(
                out[:, i], g.reshape(-1, g.shape[-1]) if self.sequence else g, maps, i, tick))
            if tick is not None:
                tick(1)

        self.remove_hooks()
        self.handles = [m.register_forward_hook(forward_hook)
                        for m in {id(m): m for m in self.modules}.values()]
        rng = np.random.default_rng(stream(base, INPUT_KEY))
        sample = tuple(self.example_shape[1:])
        if self.result.tokens:  # token indices drawn uniformly from the vocabulary
            x_t = torch.from_numpy(rng.integers(0, self.result.tokens, (rows, *sample)))
            x_t = x_t.to(self.device)
        elif self.sequence:
            x_t = self._tensor(rng.standard_normal((rows, *sample)), moved=False)
        else:
            x_t = self._tensor(rng.standard_normal((rows, *net.input_shape)))
        for p in self.model.parameters():
            p.grad = None
        with torch.enable_grad():
            if self.result.measured:  # the graph, node by node: measured-only ops read
                if x_t.is_floating_point():
                    x_t.requires_grad_(True)  # the gradient into an op at the input
                y = GraphRunner(self.result.graph, self.result.measured, self.sequence,
                                measured).run(x_t)
            else:
                y = self.model(x_t)
            if not isinstance(y, torch.Tensor):
                raise TypeError(f"profile: the model returned {type(y).__name__}, not a tensor")
            shape = tuple(y.shape) if self.sequence else _varprop_shape(tuple(y.shape))
            g = np.random.default_rng(stream(base, GRAD_KEY)).standard_normal(shape)
            (y * self._tensor(g, moved=not self.sequence)).sum().backward()
        for module in self.modules:
            if counts.get(id(module), 0) != len(self.calls[id(module)]):
                raise ValueError(f"profile: the model's forward called {module!r} "
                                 f"{counts.get(id(module), 0)} time(s), its torch.fx graph "
                                 f"{len(self.calls[id(module)])}: control flow that fx did "
                                 "not record")
        # dL/dW sums one term per sample: per token of a sequence
        samples = rows * (self.example_shape[1] if self.sequence else 1)
        for i, module in enumerate(self.modules):
            grad = module.weight.grad
            am.weight_grad_stat(out[:, i], None if grad is None else channels_last(grad),
                                samples)

    def _tensor(self, arr: np.ndarray, moved: bool = True) -> torch.Tensor:
        """A varprop-layout array (channels last) as the model's input or gradient
        (``moved=False``: already in the model's layout)."""
        if arr.ndim > 2 and moved:
            arr = np.moveaxis(arr, -1, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, self.dtype)

    def remove_hooks(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


# ----------------------------------------------------------------------------- helpers
def _ancestors(output: fx.Node) -> set[fx.Node]:
    """``output`` and every node it depends on (the path the trace reads)."""
    seen, todo = {output}, [output]
    while todo:
        for parent in todo.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _fused_act(z: fx.Node, gm: fx.GraphModule, used: set) -> Callable[[torch.Tensor], Any]:
    """The model's own activation that reads ``z`` through identities (dropout,
    ``nn.Identity``, a same-shape reshape): what the trace fused into ``z``'s record."""
    cur = z
    while True:
        nxt = None
        for user in (u for u in cur.users if u in used):
            op = classify(user, gm)
            if op.input is not cur:
                continue
            if op.kind == "act":
                return _callable(user, gm)
            same = op.kind == "reshape" and torch_shape(user) == torch_shape(cur)
            if op.kind == "none" or same:
                nxt = user
        if nxt is None:
            raise ValueError(f"profile: no activation found after {z.name!r}, where the trace "
                             "fused one")
        cur = nxt


def _callable(node: fx.Node, gm: fx.GraphModule) -> Callable[[torch.Tensor], Any]:
    """``node``'s op applied to another tensor in place of its input."""
    if any(isinstance(a, fx.Node) for a in (*node.args[1:], *node.kwargs.values())):
        raise ValueError(f"profile: the activation {node.name!r} reads another tensor")
    rest, kwargs = node.args[1:], dict(node.kwargs)
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return lambda t: module(t)
    if node.op == "call_method":
        return lambda t: getattr(t, str(node.target))(*rest, **kwargs)
    return lambda t: node.target(t, *rest, **kwargs)  # type: ignore[operator]


def _flatten_shapes(layers: Any, result: TraceResult) -> list:
    """Per weighted layer, the ``(C, *spatial)`` of images flattened right before it (a
    Linear whose rows PyTorch orders channels first), else None."""
    out: list = []

    def walk(items: Any, pending: Any) -> Any:
        for layer in items:
            if isinstance(layer, vl.Residual):
                walk(layer.branch, None)
                pending = None
            elif isinstance(layer, vl.Flatten):
                pending = result._modules[id(layer)][1]
            elif layer.weighted:
                out.append(None if isinstance(layer, vl.Conv) else pending)
                pending = None
        return pending

    walk(layers, None)
    return out


def _to_torch(layer: Any, w: np.ndarray, flat: Any) -> np.ndarray:
    """A weight in varprop's layout as PyTorch holds it (the inverse of
    :meth:`TraceResult.weights`)."""
    if isinstance(layer, vl.Conv):  # (*k, in, out) -> (out, in, *k)
        return np.ascontiguousarray(np.moveaxis(w, (-1, -2), (0, 1)))
    if flat is not None:  # rows channels last -> PyTorch's channels-first flattening
        c, rest = flat[0], math.prod(flat[1:])
        return np.ascontiguousarray(w.reshape(rest, c, -1).transpose(2, 1, 0).reshape(-1, c * rest))
    return np.ascontiguousarray(w.T)


def _varprop_shape(torch_shape_: tuple[int, ...]) -> tuple[int, ...]:
    if len(torch_shape_) > 2:
        return (torch_shape_[0], *torch_shape_[2:], torch_shape_[1])
    return torch_shape_


def _set_modes(model: nn.Module, plan: _Plan) -> None:
    """Dropout (and whatever else a module switches off in eval) off; BatchNorm with
    batch statistics; the weighted layers' weights differentiable."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    for m in plan.modules:
        m.weight.requires_grad_(True)
