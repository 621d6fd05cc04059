"""The layer protocol, and the one walker every part of varprop runs over a network.

A layer type is one class (a *bundle*, as neural-tangents pairs each layer's array
function with its kernel function): its validation, its parameter draw, its array forward
and backward on the kernels, and its analytic (mean-field) rule sit side by side.
:func:`walk` turns a layer sequence into :class:`Step` s once; :func:`varprop.analyze`,
:func:`varprop.measure`, :func:`varprop.compare`, the report and the finite-width theory
all run over those steps and ask each step's layer what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..activations import Activation

__all__ = ["Layer", "Step", "walk", "plain_chain", "iter_steps", "weighted_forward",
           "weighted_backward"]


class Layer:
    """Base of every layer type. To add one (a convolution, a pooling, a recurrent cell),
    write one frozen dataclass deriving from this and give it:

    * ``__post_init__``: validate every field at construction, with a ``ValueError`` or
      ``TypeError`` that names the argument (``"Dense: n_in must be ..."``);
    * :meth:`output_width`: the feature shape it hands on (an int width for flat
      ``(batch, width)`` arrays, ``(*spatial, channels)`` for channels-last spatial
      ones), or a ``ValueError`` naming the layer position when the incoming shape does
      not fit;
    * :meth:`analytic`: the mean-field rule. It receives the incoming
      :class:`~varprop._analytic_signal._Signal`, returns the outgoing one, and appends to
      ``ops`` a ``(backward, state)`` pair: ``backward(analyzer, state, g)`` maps the
      variance of dL/d(output) to that of dL/d(input) (a
      :class:`~varprop._analytic_parts._Gradient`). Layers with weights append a
      :class:`~varprop.profile.LayerRecord` to ``analyzer.records``;
    * :meth:`forward` and :meth:`backward`: the array computation of one seed on the
      kernels. ``run`` is the :class:`~varprop._empirical_run.SeedRun`: it draws
      nothing itself, but a weighted layer draws its parameters from
      ``run.stream(index, k)`` and records its statistics with ``run.record``;
    * :meth:`cache_bytes`: what its backward cache holds, for the checkpoint plan.

    A layer with weights sets ``weighted = True`` and gets a dense index (forward order,
    branches included) from :func:`walk`; its row of every profile is one
    :class:`~varprop.profile.LayerRecord`. An :class:`~varprop.layers.Act` directly after
    a weighted layer is fused into its step (``Step.act``): the kernels apply it in the
    same pass, and the record carries the post-activation moments.

    Spatial layers (:class:`~varprop.layers.Conv`, the pools) receive and return the
    per-pixel signal :class:`~varprop.theory.spatial.SpatialMoments` and, backward, a
    :class:`~varprop.layers._spatial.SpatialGradient` (a variance per pixel); a weighted
    spatial layer also records its per-pixel maps (``analyzer.add_map``,
    ``run.record_maps``).
    """

    #: True for layers with weights: they get a dense index and a profile row.
    weighted = False
    #: True for layers that hold a branch of layers (``self.branch``).
    has_branch = False
    #: False for a weighted layer with an activation of its own (a recurrent cell): an
    #: Act after it is then a step of its own, not fused into it.
    fuses_activation = True
    #: True for ``z = x @ W + b`` over the whole input (Dense): chains of these take the
    #: analyzer's fast path and have the finite-width theory.
    fully_connected = False

    def output_width(self, width: int, position: str) -> int:
        return width

    def analytic(self, step: "Step", analyzer: Any, x: Any, ops: list) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no analytic rule")

    def forward(self, step: "Step", run: Any, x: Any, x2: Any, keep: bool,
                record: bool) -> tuple[Any, Any, Any]:
        raise NotImplementedError(f"{type(self).__name__} has no array forward")

    def backward(self, step: "Step", run: Any, cache: Any, grad: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no array backward")

    def cache_bytes(self, step: "Step", width: int, batch: int, itemsize: int
                    ) -> tuple[int, int]:
        """(bytes of its backward cache, output width); default: one activation."""
        from ._spatial import numel
        return batch * numel(width) * itemsize, width

    def analytic_key(self, once: Callable[[Any, Any, Callable[[], Any]], Any]) -> Any:
        """What :func:`varprop.analyze` reads of this layer (the report shares one
        analysis between networks with equal keys); ``once`` caches per object."""
        return once(self, type(self), lambda: repr(self))


class Step(NamedTuple):
    """One unit of the walk: a layer, the activation fused after it (weighted layers
    only; None: linear), its dense index (-1: not weighted) and, for a layer with a
    branch, the branch's steps. (A tuple: a deep network makes one per layer.)"""

    layer: Layer
    act: "Activation | None" = None
    index: int = -1
    branch: tuple["Step", ...] = ()


def walk(layers: Sequence[Layer], input_width: "int | tuple[int, ...]",
         counter: list[int] | None = None, where: str = "layer"
         ) -> tuple[tuple[Step, ...], "int | tuple[int, ...]"]:
    """``(steps, output feature shape)`` of a layer sequence; checks every layer's type
    and the feature shapes (an int width for dense layers, ``(*spatial, channels)`` for
    convolutions), fuses each Act that directly follows a weighted layer, and numbers the
    weighted layers in forward order (branches included)."""
    from .elementwise import Act
    counter = [0] if counter is None else counter
    steps: list[Step] = []
    width = input_width
    i, n = 0, len(layers)
    while i < n:
        layer = layers[i]
        position = f"{where} {i}"
        if not isinstance(layer, Layer):
            raise TypeError(f"{position}: expected a varprop layer (Dense, Conv, Act, "
                            f"BatchNorm, LayerNorm, GroupNorm, Residual, MaxPool, AvgPool, "
                            f"GlobalAvgPool, Flatten, Recurrent), got {type(layer).__name__} {layer!r}")
        width_in = width
        width = layer.output_width(width, position)
        if layer.weighted:
            nxt = layers[i + 1] if i + 1 < n else None
            act = nxt.activation if isinstance(nxt, Act) and layer.fuses_activation \
                else None
            steps.append(Step(layer, act, counter[0]))
            counter[0] += 1
            i += 2 if act is not None else 1
            continue
        if layer.has_branch:
            branch, out = walk(layer.branch, width_in, counter, f"{position} branch layer")
            if out != width_in:
                raise ValueError(f"{position}: a Residual branch must keep the width "
                                 f"({width_in}), it ends at {out}")
            steps.append(Step(layer, None, -1, branch))
        else:
            steps.append(Step(layer))
        i += 1
    return tuple(steps), width


def iter_steps(steps: Sequence[Step]) -> Iterator[Step]:
    """Every step in forward order, branches' steps included (after their block's)."""
    for step in steps:
        yield step
        if step.branch:
            yield from iter_steps(step.branch)


def plain_chain(steps: Sequence[Step]) -> list[tuple[Any, "Activation | None"]] | None:
    """``[(layer, the activation after it or None), ...]`` when the steps are a plain
    chain of fully connected layers, each with its optional activation (every ``mlp``),
    else None."""
    pairs = []
    for step in steps:
        if not step.layer.fully_connected:
            return None
        pairs.append((step.layer, step.act))
    return pairs


def weighted_forward(step: Step, run: Any, x: Any, x2: Any, keep: bool, record: bool,
                     kernel: Callable[..., Any]) -> tuple[Any, Any, Any, Any]:
    """The array forward every weighted layer shares: its parameters from ``run``, the
    fused kernel ``kernel(x, w, b, act, stats)`` (GEMM or convolution, bias, the fused
    activation or none, statistics), the correlated second batch, and the records.
    Returns ``(y, y2, cache for backward or None, the kernel's result)``."""
    w, b = run.parameters(step.layer, step.index)
    act = step.act if step.act is not None else run.linear
    r = kernel(x, w, b, act, record)
    y = r.a if step.act is not None else r.z
    y2 = None
    if x2 is not None:
        r2 = kernel(x2, w, b, act, False)
        y2 = r2.a if step.act is not None else r2.z
        if record:
            run.record_corr(step.index, r.z, r2.z)
        del r2
    if record:
        run.record_forward(step.index, r.stats)
    return y, y2, ((x, w, r.z) if keep else None), r


def weighted_backward(step: Step, run: Any, cache: Any, grad: Any,
                      kernel: Callable[..., Any]) -> Any:
    """The array backward every weighted layer shares: ``kernel(x, w, z, grad, act)``
    and the records of its gradients; returns the kernel's result."""
    x, w, z = cache
    act = step.act if step.act is not None else run.linear
    g = kernel(x, w, z, grad, act)
    run.record_backward(step.index, g.grad_z, g.grad_w, x.shape[0])
    run.gradients(step.index, g.grad_w, g.grad_b)
    return g
