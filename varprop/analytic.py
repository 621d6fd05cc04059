"""The analytic (mean-field) half of the analyzer: per-layer moments from the initializers'
own weight moments, propagated layer by layer.

Assumptions (Poole et al. 2016; Schoenholz et al. 2017; docs/theory.md sections 2-4, 6):

* infinite width: a pre-activation unit of a layer of random weights is Gaussian,
  ``z ~ N(mean, var)``. Identity weights and constant weights over identical units pass
  one unit on instead, so their pre-activations are not Gaussian (relu(relu(x)) = relu(x));
  along such chains the exact law of the unit, a function of one Gaussian, is kept and
  integrated (:class:`~varprop.theory.unit_law.UnitLaw`), derivative factors included;
* the units of a layer are independent and alike, except after a symmetric layer
  (zeros, ones, constant weights and bias), where every unit is the same function of the
  input. That case is propagated exactly (``units_identical``) and flagged;
* the weights and inputs of a layer are independent; for the backward pass, the
  gradient-independence assumption (fresh weights for the backward pass);
* the output gradient dL/d(output) is standard normal, independent across units.

Each layer type holds its own rule beside its array code (:mod:`varprop.layers`; the
dense rule in :mod:`varprop.layers.dense`); the analyzer here walks the network's steps
forward, then replays their backward rules in reverse.

Means matter: ReLU-like activations and non-centred inits give E[a] != 0, and the next
layer sees E[a^2] = Var[a] + E[a]^2.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ._approximations import approximations, has_batch_norm
from ._law_check import unresolved as unresolved_law
from ._analytic_chain import analyze_chain, chain_plan
from ._analytic_parts import _Context, _Gradient
from ._analytic_signal import _Signal
from .activations import Activation
from .layers import Step
from .network import Network
from .profile import LayerRecord, Profile
from .theory.finite_width import regime as finite_width_regime
from ._validate import correlation, finite_real, variance_batch

__all__ = ["analyze"]

class _Analyzer:
    def __init__(self, ctx: _Context, batch: int | None = None) -> None:
        self.ctx = ctx
        self.batch = batch  # None: the infinite-batch limit of BatchNorm's statistics
        self.records: list[LayerRecord] = []
        # dense layers whose activation met a unit that is known not to be Gaussian and
        # has no exact law here (an identity layer with random biases, a widening one):
        # there the result is the Gaussian approximation, and the profile says so
        self.approximate: list[int] = []
        # dense layers whose gradient along an identity or constant chain is an
        # expectation the quadrature does not resolve (varprop._law_check)
        self.unresolved: set[int] = set()
        # the exact chain the backward pass is in: (its top activation's input signal,
        # that activation, [(dense layer index, its output signal), ...])
        self._chain: tuple | None = None
        # spatial networks: carry the pixel-pair moments (a later pooling needs them),
        # the per-pixel maps of each weighted layer, and the weighted layers from which
        # the per-pixel theory is approximate (varprop.layers._spatial_rules)
        self.track_cross = False
        self.maps: dict[int, dict[str, Any]] = {}
        self.spatial_approximate: set[int] = set()
        self.fan_in_approximate: set[int] = set()

    def add_map(self, index: int, name: str, values: Any) -> None:
        """A per-pixel map of weighted layer ``index`` (a spatial layer's rule)."""
        self.maps.setdefault(index, {})[name] = np.array(values, dtype=np.float64)

    def _close_chain(self) -> None:
        """Check the rule of the chain just left, once, at its deepest layer (whose
        gradient multiplies the most derivative factors): a linear-cost replay."""
        chain, self._chain = self._chain, None
        if chain is None or not chain[2]:
            return
        z_top, act, members = chain
        top = z_top.law()
        bottom = members[-1][1].law()
        if top is None or bottom is None or top.rule is None:
            return
        full = top.map(act)
        if bottom.rule is not None and not bottom.same_source(full):
            return
        if unresolved_law(full, bottom.length):
            self.unresolved.update(i for i, _ in members)

    def open_chain(self, z_top: _Signal, act: Activation) -> None:
        """An activation's backward rule started per-node factors: a new exact chain."""
        self._close_chain()
        self._chain = (z_top, act, [])

    def chain_member(self, index: int, z: _Signal, g: _Gradient) -> None:
        """A weighted layer's backward rule met ``g``: a member of the open chain if
        ``g`` carries its factors."""
        if g.factor is not None and self._chain is not None:
            self._chain[2].append((index, z))

    def forward(self, steps: Sequence[Step], x: _Signal) -> tuple[_Signal, list]:
        """Propagate the signal through the steps; return the output and the
        ``(backward rule, state)`` pairs the backward pass replays."""
        ops: list = []
        for step in steps:
            x = step.layer.analytic(step, self, x, ops)
        return x, ops

    def backward(self, ops: list, g: _Gradient) -> _Gradient:
        for rule, state in reversed(ops):
            g = rule(self, state, g)
            if g.factor is None:
                self._close_chain()
        self._close_chain()
        return g


def analyze(
    net: Network,
    *,
    input_mean: float = 0.0,
    input_var: float = 1.0,
    input_correlation: float | None = None,
    batch: int | None = None,
    inputs: Any = None,
) -> Profile:
    """Mean-field per-layer statistics of ``net`` at initialization.

    Args:
        net: a :class:`~varprop.network.Network` (``varprop.mlp(...)``).
        input_mean, input_var: moments of each input feature (independent features).
        input_correlation: if given, also propagate the correlation ``c`` of two inputs
            and report each layer's ``z_corr`` (the c-map of Schoenholz et al. 2017;
            uncentred, ``E[z z'] / E[z^2]``, as the measurement pools it). Convolutional
            networks carry the two inputs' pixel pairs (images of at most 1024 pixels,
            white-noise inputs; docs/theory.md, section 8, "The correlation map").
        batch: the batch size that BatchNorm layers normalize over; None (the default)
            is the infinite-batch limit. A finite batch adds the ``O(1/batch)`` terms of
            BatchNorm's gradient (about 1 + 1/batch per BatchNorm; docs/theory.md).
            Networks without BatchNorm do not depend on it.
        inputs: convolutional networks only: a dataset ``(N, *spatial, channels)``
            (``(N, channels, *spatial)`` for a ``layout="torch"`` network) whose
            per-pixel means and pixel-pair second moments replace the white-noise input
            of ``input_mean``/``input_var`` (images are far from white noise).

    Convolutional networks (``Network(input_width=(*spatial, C), ...)``, ``varprop.cnn``)
    get the per-pixel theory: each record holds the values pooled over pixels (as a
    measurement pools them) and ``profile.maps[layer]`` the per-pixel ``z_var``,
    ``a_var`` and ``grad_var`` maps; ``meta["approximations"]`` names the layers from
    which it is approximate (kind ``spatial``: max pooling by quadrature, pixel
    covariances not tracked).

    Returns:
        A :class:`~varprop.profile.Profile` of kind "analytic": per dense layer
        ``z_mean``, ``z_var``, ``a_mean``, ``a_var``, ``grad_var`` (dL/dz for a standard
        normal output gradient), ``weight_grad_var`` (per sample), ``z_corr`` and the
        ``symmetric`` flag for zeros/constant initializers. ``meta["gaussian_approximation"]``
        lists the dense layers from which the result is only the Gaussian approximation:
        a unit known not to be Gaussian, with no exact law here (an identity layer with
        random biases or more outputs than inputs, a residual sum of such units). Plain
        MLPs of random layers, and identity or constant layers with constant biases, have
        none. ``meta["approximations"]`` lists every known approximation as
        ``{"kind", "layers" (inclusive [first, last] ranges), "reason", "detail"}``:
        ``gaussian`` (the above), ``unresolved`` (an identity or constant chain whose
        gradient the quadrature does not resolve) and ``finite_width`` (a plain chain
        whose predicted spread of log(measured / theory) at its own widths passes 1;
        ``meta["finite_width_sigma"]`` holds the predicted spreads). docs/theory.md,
        sections 2, 6 and 11.

    Cost: a few microseconds per layer (1000 layers of any registry activation take a
    few milliseconds, bench/bench_analyzer.py): the Gaussian moments of each layer come
    from :class:`varprop.theory.fast.ScalarMoments` (closed forms, small- and
    large-variance series, or the quadrature rule of
    :func:`~varprop.theory.gaussian_moments` without its per-call overhead; within 1e-12
    of it), the initializers' moments are computed once per distinct (initializer,
    shape), and plain ``Dense``/``Act`` chains skip the per-layer bookkeeping. A
    non-zero pre-activation mean outside the closed forms (constant biases,
    non-centred weights) takes the general path of ``gaussian_moments``, ~0.3 ms a
    layer.

    Example:
        >>> p = analyze(mlp([512] * 31, "relu", "he_normal"))
        >>> round(p[-1].z_var, 6)   # He keeps q = 2 E[x^2] layer after layer
        2.0
    """
    return _analyze(net, input_mean=input_mean, input_var=input_var,
                    input_correlation=input_correlation, batch=batch, inputs=inputs)


def _analyze(net: Network, *, input_mean: float = 0.0, input_var: float = 1.0,
             input_correlation: float | None = None, batch: int | None = None,
             fast: bool = True, chain: bool = True, inputs: Any = None) -> Profile:
    """:func:`analyze`; ``fast=False`` evaluates every activation's moments with
    :func:`~varprop.theory.gaussian_moments` itself and ``chain=False`` always takes the
    general path (both for tests: the slow twins of the fast paths)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a varprop Network (varprop.mlp(...)), got {type(net).__name__}")
    input_mean = finite_real("input_mean", input_mean)
    input_var = finite_real("input_var", input_var, positive=True)
    cross = math.nan
    if input_correlation is not None:
        c = correlation("input_correlation", input_correlation)
        cross = c * input_var + input_mean * input_mean
    batch = variance_batch("batch", batch, or_none=True)
    if net.spatial:
        from ._analytic_spatial import analyze_spatial
        return analyze_spatial(net, _Analyzer(_Context(fast), batch), input_mean=input_mean,
                               input_var=input_var, inputs=inputs,
                               correlation=input_correlation)
    if inputs is not None:
        raise ValueError("inputs: a dataset's per-pixel statistics apply to convolutional "
                         "networks (Network(input_width=(*spatial, channels), ...)); for "
                         "an MLP give input_mean and input_var")
    # two independent samples of a batch: their inputs are uncorrelated, E = mean^2;
    # tracked only where a BatchNorm needs it (it costs a cross moment per activation)
    bcross = input_mean * input_mean if has_batch_norm(net.steps) else math.nan
    ctx = _Context(fast)
    plan = chain_plan(net.steps, ctx) if chain and input_correlation is None else None
    approximate: list[int] = []
    unresolved: list[int] = []
    if plan is not None:
        records = analyze_chain(plan, input_mean, input_var)
    else:
        analyzer = _Analyzer(ctx, batch)
        out, ops = analyzer.forward(net.steps, _Signal(input_mean, input_var, False, cross,
                                                        bcross=bcross))
        analyzer.backward(ops, _Gradient(1.0, False))
        records, approximate = analyzer.records, analyzer.approximate
        unresolved = analyzer.unresolved
    # plain chains: the spread of log(measured / mean field) at their widths (section 11)
    fw = finite_width_regime(net, [r.z_var for r in records], ctx, plan=plan)
    meta = {"assumptions": "mean field: infinite width, Gaussian pre-activations, "
                           "gradient independence",
            # dense layers (indices) whose activations saw a non-Gaussian unit treated as
            # Gaussian for want of its exact law: the theory is approximate from there on
            "gaussian_approximation": approximate,
            # every known approximation, with its reason, for the reports to name
            "approximations": approximations(approximate, sorted(unresolved), fw),
            # predicted sigma of log(measured / mean field), z_var last layer, grad_var
            # first layer, max (docs/theory.md, section 11); None: not a plain chain
            "finite_width_sigma": None if fw is None else fw.sigma}
    return Profile("analytic", records, net.describe(), input_var, input_mean, meta)
