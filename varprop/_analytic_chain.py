"""The analyzer's fast path for plain chains ``(Dense [Act])*`` of random layers.

On such a chain (every ``mlp`` but the symmetric and identity ones) no unit is ever
identical to another and every pre-activation is Gaussian, so :func:`varprop.analyze`'s
general recursion reduces to a few float operations per layer, run here without its
per-layer objects (bitwise equal to the general path: tests/test_analyze_paths.py).
``ctx`` is the analyzer's per-call cache of initializer and activation moments.
"""

from __future__ import annotations

from typing import Any, Sequence

from .activations import Activation
from .layers import Dense, Step, plain_chain
from .layers.dense import backward_factor, forward_moments
from .profile import LayerRecord

__all__ = ["chain_plan", "analyze_chain"]


def chain_plan(steps: Sequence[Step], ctx: Any) -> list[tuple] | None:
    """One entry per dense layer when ``layers`` is a plain chain ``(Dense [Act])*`` of
    random (Var[W] > 0), non-identity weights, which is every ``mlp`` but the symmetric
    and identity ones; else None.

    On such a chain no unit is ever identical to another, so the general recursion
    reduces to a few float operations per layer: :func:`analyze_chain` runs them in the
    same order as the general recursion of :mod:`varprop.analytic` (the results are
    bitwise equal, tested), without its per-layer objects. A layer configured like the
    one before it (same fans, equal initializers and activation) shares its entry.
    """
    pairs = plain_chain(steps)
    if pairs is None:
        return None
    plan: list[tuple] = []
    entry: tuple | None = None
    prev: Dense | None = None
    prev_act: Activation | None = None
    for layer, act in pairs:
        if prev is None or not (_same_config(layer, prev) and _same(act, prev_act)):
            entry = _chain_entry(layer, act, ctx)
            if entry is None:
                return None
        prev, prev_act = layer, act
        plan.append(entry)
    return plan


def _same_config(a: Dense, b: Dense) -> bool:
    """Same fans and equal initializers (plain configuration objects: equal class and
    attributes means equal moments)."""
    return (a.n_in == b.n_in and a.n_out == b.n_out and _same(a.init, b.init)
            and _same(a.bias_init, b.bias_init))


def _same(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if x is None or y is None or type(x) is not type(y):
        return False
    if isinstance(x, Activation):
        return x == y
    return vars(x) == vars(y)


def _chain_entry(layer: Dense, act: Activation | None, ctx: Any) -> tuple | None:
    w = ctx.init_moments(layer.init, (layer.n_in, layer.n_out))
    if w.structure == "identity" or not w.var > 0.0:
        return None
    b_mean, b_var, _ = ctx.bias(layer)
    fn = None if act is None else ctx.moments(act)
    n, m = layer.n_in, layer.n_out
    # the products the general path forms first (n * w.var * x = (n * w.var) * x)
    return (n, m, n * w.var, n * w.mean, n * (w.mean * w.mean), b_mean, b_var, fn,
            m * w.var, m * (w.mean * w.mean), bool(w.symmetric))


def analyze_chain(plan: list[tuple], mean: float, var: float) -> list[LayerRecord]:
    """The general recursion of :mod:`varprop.analytic` on a plain chain (see
    :func:`chain_plan`). Products with a zero factor are 0 even when the other one has
    overflowed to inf (``mul0`` of the general path, docs/theory.md, section 10)."""
    second = var + mean * mean
    # flat lists of floats: no per-layer container for the garbage collector to track
    zm, zv, am, av, xs, ed = [], [], [], [], [], []
    for entry in plan:
        _, _, fv, fm, fm2, b_mean, b_var, fn, _, _, _ = entry
        z_mean, z_var = forward_moments(fv, fm, fm2, b_mean, b_var, mean, var, second)
        xs.append(second)
        if fn is None:
            mean, var = z_mean, z_var
            second = var + mean * mean
            e_dphi2 = None
        else:
            mean, second, e_dphi2, var = fn(z_mean, z_var)
        zm.append(z_mean)
        zv.append(z_var)
        am.append(mean)
        av.append(var)
        ed.append(e_dphi2)
    records: list = [None] * len(plan)
    g = 1.0
    for i in range(len(plan) - 1, -1, -1):
        n_in, n_out, _, _, _, _, _, _, bv, bm2, symmetric = plan[i]
        e_dphi2 = ed[i]
        if e_dphi2 is not None:
            g = g * e_dphi2 if e_dphi2 and g else 0.0
        records[i] = LayerRecord(i, n_in, n_out, z_mean=zm[i], z_var=zv[i], a_mean=am[i],
                                 a_var=av[i], grad_var=g,
                                 weight_grad_var=xs[i] * g if xs[i] and g else 0.0,
                                 symmetric=symmetric)
        g = backward_factor(bv, bm2, g)
    return records
