"""Data-driven initialization: LSUV (Mishkin & Matas 2015) and Fixup scaling (Zhang,
Dauphin & Ma 2019). Re-exported as ``varprop.initializers.lsuv`` and
``varprop.initializers.fixup_scaling``.

LSUV, "All you need is a good init" (arXiv 1511.06422)
------------------------------------------------------
Layer-sequential unit-variance initialization: draw every weight matrix orthonormal
(Saxe et al. 2013), then, from the first layer to the last, push a batch of data through
the network and rescale the layer's weights until the variance of its output (the
pre-activation ``z = x @ W + b``, before the nonlinearity) is within ``tol`` of
``target_var``. :func:`lsuv` measures each layer with the fused kernel
(:func:`varprop.kernels.dense_forward` with ``stats=True``) and returns the rescaled
weights with a per-layer record (iterations, variance before and after, scale applied).

How it differs from the reference implementations:

* The paper's Caffe script (``ducha-aiki/LSUVinit``, ``tools/extra/lsuv_init.py``) tests
  ``|Var - 1| > 0.02`` for at most 20 iterations and divides W by ``sqrt(Var)`` (so its
  target is 1 whatever ``needed_variance`` says); it never touches the biases.
* The PyTorch port (``ducha-aiki/LSUV-pytorch``, ``LSUV.py``) tests the *standard
  deviation*, ``|std - needed_std| > std_tol`` with ``std_tol = 0.1`` -- at a target of 1
  that accepts variances anywhere in [0.81, 1.21] -- for at most 10 attempts and scales by
  ``needed_std / (std + 1e-8)``. Its early versions never correct the mean; the later
  ones add one layer-wide scalar to every bias.
* varprop tests the *variance*, ``|Var[z] - target_var| <= tol`` (absolute, default
  0.01), scales by ``sqrt(target_var / Var[z])`` (any target), and by default leaves the
  biases and the mean alone, as the paper does. ``center=True`` also zeroes each unit's
  own batch mean through its bias (per unit, not one layer-wide shift), which makes the
  pooled variance exactly quadratic in the scale, so one iteration converges.
* Var[z] is the population variance (``ddof=0``) of all entries of z over the batch
  and the units; the orthonormal pre-initialization is varprop's ``orthogonal``
  initializer (Haar, via QR) where the references take a factor of the SVD of a
  Gaussian matrix (also Haar distributed; different draws).

With zero biases and no centering z is linear in W, so the first rescaling lands on
the target up to rounding; more iterations are needed only with non-zero biases. When
the biases alone spread the units' outputs by more than ``target_var`` no scale of W
can reach it: :func:`lsuv` then stops that layer at once (``converged=False``) instead
of shrinking W towards 0 for ``max_iter`` rounds; ``center=True`` avoids the case.

Fixup, "Fixup initialization: residual learning without normalization" (arXiv 1901.09321)
-----------------------------------------------------------------------------------------
For a residual network of L branches with m layers each (``x_{l+1} = x_l + f_l(x_l)``),
initialize the classifier and the last layer of every branch to zero, initialize the
other branch layers with a standard scheme (He) and multiply them by
``L^(-1/(2m-2))`` (:func:`fixup_scaling`); :func:`apply_fixup` does this to lists of
branch weights. The scalar multipliers and biases Fixup also inserts are parameters of
the architecture and are not represented here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from ._blas import single_threaded_blas
from ._validate import as_generator, boolean, finite_real, integer, positive_int
from .activations import Activation, get_activation
from .kernels import dense_forward

__all__ = ["lsuv", "LSUVResult", "LSUVLayerRecord", "fixup_scaling", "apply_fixup"]

WeightsLike = Union["Any", Sequence[Any]]


@dataclass(frozen=True)
class LSUVLayerRecord:
    """What LSUV did to one layer.

    Attributes:
        layer: index of the layer.
        iterations: rescalings applied (0 if the layer was already within tolerance).
        initial_var: Var[z] after the orthonormal pre-initialization (or as given).
        final_var: Var[z] when the loop stopped.
        final_mean: the mean of z when the loop stopped.
        scale: the product of the factors W was multiplied by.
        converged: ``|final_var - target_var| <= tol``.
    """

    layer: int
    iterations: int
    initial_var: float
    final_var: float
    final_mean: float
    scale: float
    converged: bool


@dataclass
class LSUVResult:
    """The rescaled weights, one :class:`LSUVLayerRecord` per layer, and (when an MLP was
    given) a new MLP built from the weights.

    ``iter(result)`` gives ``(weights, records)``.
    """

    weights: list[tuple[np.ndarray, np.ndarray]]
    records: list[LSUVLayerRecord]
    model: Any = None

    def __iter__(self):
        return iter((self.weights, self.records))

    @property
    def converged(self) -> bool:
        """True when every layer reached the target within tol."""
        return all(r.converged for r in self.records)

    def table(self) -> str:
        lines = [f"{'layer':>5} {'iters':>5} {'Var before':>12} {'Var after':>12} "
                 f"{'mean after':>11} {'scale':>10} converged"]
        for r in self.records:
            lines.append(f"{r.layer:>5} {r.iterations:>5} {r.initial_var:>12.5g} "
                         f"{r.final_var:>12.5g} {r.final_mean:>11.4g} {r.scale:>10.4g} "
                         f"{'yes' if r.converged else 'NO'}")
        return "\n".join(lines)


def _unpack(model_or_weights: Any, activation: Any) -> tuple[list, list[Activation], Any]:
    """``(pairs, activations, model_class_or_None)`` with the arrays copied."""
    from .training import MLP  # the trainer's model; a plain list of pairs works too

    if isinstance(model_or_weights, MLP):
        pairs = [(w.copy(), b.copy()) for w, b in model_or_weights.weights]
        return pairs, list(model_or_weights.activations), MLP
    if isinstance(model_or_weights, np.ndarray) or not isinstance(model_or_weights, (list, tuple)):
        raise TypeError("model_or_weights must be a varprop MLP or a list of weight matrices "
                        f"or (W, b) pairs, got {type(model_or_weights).__name__}")
    if not model_or_weights:
        raise ValueError("model_or_weights must hold at least one layer")
    pairs = []
    for l, item in enumerate(model_or_weights):
        if isinstance(item, np.ndarray):
            w, b = item, None
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            w, b = item
        else:
            raise TypeError(f"model_or_weights[{l}] must be a matrix W or a pair (W, b)")
        if not isinstance(w, np.ndarray) or w.ndim != 2 or w.dtype not in (np.float32, np.float64):
            raise TypeError(f"model_or_weights[{l}]: W must be a 2-D float32/float64 array (n_in, n_out)")
        b = np.zeros(w.shape[1], w.dtype) if b is None else np.asarray(b)
        if b.shape != (w.shape[1],) or b.dtype != w.dtype:
            raise ValueError(f"model_or_weights[{l}]: b must have shape ({w.shape[1]},) and dtype "
                             f"{w.dtype}, got {b.shape} {b.dtype}")
        if l and w.shape[0] != pairs[-1][0].shape[1]:
            raise ValueError(f"model_or_weights[{l}] takes {w.shape[0]} inputs but layer {l - 1} "
                             f"gives {pairs[-1][0].shape[1]}")
        if l and w.dtype != pairs[0][0].dtype:
            raise TypeError(f"model_or_weights[{l}] has dtype {w.dtype}, layer 0 {pairs[0][0].dtype}")
        pairs.append((np.array(w, order="C"), np.array(b, order="C")))
    n = len(pairs)
    if isinstance(activation, (list, tuple)):
        acts = [get_activation(a) for a in activation]
        if len(acts) != n:
            raise ValueError(f"activation must be one activation or a list of {n} (one per layer), "
                             f"got {len(acts)}")
    else:
        acts = [get_activation(activation)] * (n - 1) + [get_activation("linear")]
    return pairs, acts, None


def _lowest_reachable(stats: Any, b: np.ndarray) -> float:
    """The smallest pooled Var[z] any scale s >= 0 of W reaches with the biases fixed.

    With ``z = s u + b`` (u the current ``x @ W``) the pooled variance is the quadratic
    ``V(s) = a s^2 + 2 c s + d`` with ``a = mean_j Var[u_j] + var_j(E[u_j])``,
    ``c = cov_j(E[u_j], b_j)`` and ``d = var_j(b_j)``; its minimum over ``s >= 0`` is
    ``d - c^2 / a`` when ``c < 0``, else ``d`` (at s = 0).
    """
    bias = b.astype(np.float64)
    u_mean = stats.z_mean - bias
    a = float(np.mean(stats.z_var) + np.var(u_mean))
    c = float(np.mean((u_mean - u_mean.mean()) * (bias - bias.mean())))
    d = float(np.var(bias))
    if c < 0 and a > 0:
        return d - c * c / a
    return d


def lsuv(
    model_or_weights: WeightsLike,
    data: Any,
    *,
    target_var: float = 1.0,
    tol: float = 0.01,
    max_iter: int = 10,
    center: bool = False,
    orthogonal: bool = True,
    activation: Any = "relu",
    seed: Any = None,
    n_threads: int | None = None,
) -> LSUVResult:
    """Layer-sequential unit-variance initialization (see the module docstring).

    Args:
        model_or_weights: a :class:`varprop.train.MLP` (its activations are used; the
            model itself is not modified) or a list of weight matrices ``(n_in, n_out)``
            or ``(W, b)`` pairs (copied; missing biases are zeros).
        data: a batch ``(batch, n_in)`` of real inputs (converted to the weights' dtype);
            at least 2 rows. Larger batches give steadier estimates.
        target_var: the wanted variance of every layer's pre-activation (> 0).
        tol: stop a layer when ``|Var[z] - target_var| <= tol`` (absolute, >= 0).
        max_iter: at most this many rescalings per layer (>= 1).
        center: also set each unit's batch mean of z to 0 through its bias.
        orthogonal: first redraw every W orthonormal (gain 1) and zero the biases, as the
            paper does; False keeps the given weights and rescales them.
        activation: for a list of weights, the hidden activation (the last layer is
            linear) or one per layer; ignored for an MLP.
        seed: None, int, SeedSequence or Generator for the orthonormal draws.
        n_threads: kernel threads (results do not depend on it).

    Returns:
        :class:`LSUVResult` with ``weights`` (list of ``(W, b)``), ``records`` and
        ``model`` (a new MLP when an MLP was given, else None).

    Raises:
        TypeError, ValueError: naming the bad argument.
    """
    pairs, acts, model_cls = _unpack(model_or_weights, activation)
    target_var = finite_real("target_var", target_var, positive=True)
    tol = finite_real("tol", tol, non_negative=True)
    max_iter = positive_int("max_iter", max_iter)
    center = boolean("center", center)
    orthogonal = boolean("orthogonal", orthogonal)
    dtype = pairs[0][0].dtype
    x = np.asarray(data)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"data must be a real numeric array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != pairs[0][0].shape[0]:
        raise ValueError(f"data must have shape (batch, {pairs[0][0].shape[0]}), got {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"data must hold at least 2 samples to measure a variance, got {x.shape[0]}")
    h = np.ascontiguousarray(x, dtype=dtype)

    if orthogonal:
        from .initializers import get

        rng = as_generator(seed)
        ortho = get("orthogonal")
        pairs = [(ortho(w.shape, seed=rng, dtype=dtype), np.zeros_like(b)) for w, b in pairs]

    records = []
    with single_threaded_blas():
        for l, ((w, b), act) in enumerate(zip(pairs, acts)):
            out = dense_forward(h, w, b, act, stats=True, n_threads=n_threads)
            initial = out.stats.z_pooled_var
            scale, iterations = 1.0, 0
            if center:  # zero each unit's mean first; the loop keeps it at zero
                b -= out.stats.z_mean.astype(b.dtype)
                out = dense_forward(h, w, b, act, stats=True, n_threads=n_threads)
            while True:
                var = out.stats.z_pooled_var
                if abs(var - target_var) <= tol or iterations >= max_iter:
                    break
                unit_var = float(np.mean(out.stats.z_var)) if center else var
                if not (math.isfinite(unit_var) and unit_var > 0):
                    break  # a dead or constant layer: no scale can reach the target
                if not center and _lowest_reachable(out.stats, b) > target_var + tol:
                    break  # the biases alone spread z by more than the target
                factor = math.sqrt(target_var / unit_var)
                w *= w.dtype.type(factor)
                if center:
                    # z' = factor (z - b) + b'; choose b' so each unit's mean is 0
                    b[:] = (-(factor * (out.stats.z_mean - b.astype(np.float64)))).astype(b.dtype)
                scale *= factor
                iterations += 1
                out = dense_forward(h, w, b, act, stats=True, n_threads=n_threads)
            final = out.stats.z_pooled_var
            records.append(LSUVLayerRecord(l, iterations, float(initial), float(final),
                                           float(out.stats.z_pooled_mean), scale,
                                           bool(abs(final - target_var) <= tol)))
            h = out.a
    model = model_cls(pairs, acts) if model_cls is not None else None
    return LSUVResult(pairs, records, model)


def fixup_scaling(n_branches: int, layers_per_branch: int) -> float:
    """Fixup's factor ``L^(-1/(2m-2))`` for L residual branches of m layers each.

    Zhang, Dauphin & Ma 2019 (arXiv 1901.09321), section 3: with the last layer of every
    branch at zero, scaling the other ``m - 1`` (He-initialized) layers of each branch by
    this factor keeps the update of the network's output ``O(1)`` per SGD step
    whatever the depth. Multiply the weights (not their variance) by it.

    Args:
        n_branches: L >= 1.
        layers_per_branch: m >= 2 (with m = 1 the only layer is zeroed: nothing to scale).

    Example:
        >>> fixup_scaling(16, 2)     # 16 branches of 2 layers: 16 ** -0.5
        0.25
    """
    n_branches = positive_int("n_branches", n_branches)
    layers_per_branch = integer("layers_per_branch", layers_per_branch, minimum=2,
                                note="a one-layer branch is only zeroed: Fixup's exponent "
                                     "-1/(2m-2) is undefined at m = 1")
    return float(n_branches) ** (-1.0 / (2 * layers_per_branch - 2))


def apply_fixup(branches: Sequence[Sequence[Any]], *, classifier: Any = None,
                ) -> tuple[list[list[Any]], Any]:
    """Apply Fixup to residual branch weights (arXiv 1901.09321, section 3).

    Every branch's last layer becomes zeros; the other layers of a branch with m layers
    are multiplied by :func:`fixup_scaling` ``(L, m)``, L being the number of branches;
    the classifier, if given, becomes zeros. Initialize the inputs with a standard scheme
    (He) first. Nothing is modified in place.

    Args:
        branches: a list of L branches, each a list of weight arrays or ``(W, b)``
            pairs (biases are kept, except the zeroed layers' which become zeros).
        classifier: the final layer's weights (array or ``(W, b)``), or None.

    Returns:
        ``(new_branches, new_classifier)`` (the classifier None if not given).
    """
    if isinstance(branches, np.ndarray) or not isinstance(branches, (list, tuple)) or not branches:
        raise TypeError("branches must be a non-empty list of branches (lists of weight arrays)")
    n = len(branches)

    def scaled(item, factor):
        if isinstance(item, np.ndarray):
            return np.zeros_like(item) if factor == 0.0 else item * item.dtype.type(factor)
        if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], np.ndarray):
            w, b = item
            if factor == 0.0:
                return (np.zeros_like(w), np.zeros_like(np.asarray(b)))
            return (w * w.dtype.type(factor), np.array(b, copy=True))
        raise TypeError(f"each layer must be a weight array or a (W, b) pair, got {type(item).__name__}")

    out = []
    for i, branch in enumerate(branches):
        if isinstance(branch, np.ndarray) or not isinstance(branch, (list, tuple)) or not branch:
            raise TypeError(f"branches[{i}] must be a non-empty list of layers")
        m = len(branch)
        factor = fixup_scaling(n, m) if m >= 2 else 1.0
        out.append([scaled(layer, factor) for layer in branch[:-1]] + [scaled(branch[-1], 0.0)])
    new_classifier = None if classifier is None else scaled(classifier, 0.0)
    return out, new_classifier
