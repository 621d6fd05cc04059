"""The coordinate check against depth: a residual MLP's step-0 theory from the analyzer,
and the slopes of log scale against log depth per layer group (docs/sweep.md section 7).

A depth series is a set of ``arch="residual"`` cells that differ only in depth (the
number of residual blocks L) and seed. The layers of networks of different depths do
not pair up one to one, so the series compares three *layer groups* that every depth
has (:data:`~varprop.sweep.parameterization.DEPTH_GROUPS`): the input layer's output
(the stream's start ``h_0``), the stream after the last block (``h_L``) and the readout's
logits. Their slopes, tolerances and verdicts follow the width analysis
(:mod:`varprop.sweep.analysis`) with depth in place of width.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .analysis import QUANTITIES, fit_slope, fit_table, slope_stats
from .parameterization import DEPTH_GROUPS, expected_depth_exponent

__all__ = ["residual_theory", "residual_network", "depth_series", "group_layers"]


def residual_network(widths: Sequence[int], activation: str, inits: Sequence[Any],
                     branch_multiplier: float) -> Any:
    """The analyzer's spec of the residual MLP ``widths`` (``[n_in, n, ..., n,
    n_classes]``, one ``n`` per block plus one): ``Dense`` (the input layer), one
    ``Residual((Act, Dense), alpha=branch_multiplier)`` per block, ``Act`` and the
    readout ``Dense``; ``inits`` are the effective weight initializers of the weighted
    layers in order, biases zero (:class:`varprop.training.ResidualMLP`'s network)."""
    from ..network import Act, Dense, Network, Residual

    n_layers = len(widths) - 1
    if n_layers < 2 or len(inits) != n_layers:
        raise ValueError(f"widths needs an input layer and a readout and inits one "
                         f"initializer per weighted layer, got widths {list(widths)} and "
                         f"{len(inits)} inits")
    n = widths[1]
    layers: list[Any] = [Dense(widths[0], n, inits[0], "zeros")]
    for l in range(1, n_layers - 1):
        layers.append(Residual((Act(activation), Dense(n, n, inits[l], "zeros")),
                               alpha=branch_multiplier))
    layers += [Act(activation), Dense(n, widths[-1], inits[-1], "zeros")]
    return Network(widths[0], tuple(layers),
                   name=f"residual mlp, {n_layers - 2} blocks, width {n}")


def residual_theory(widths: Sequence[int], activation: str, inits: Sequence[Any],
                    branch_multiplier: float) -> list[float]:
    """The mean-field RMS ``sqrt(E[z^2])`` of each weighted layer's ``z`` at init for a
    unit-variance input: the stream ``h_0, ..., h_L`` and the logits.

    :func:`varprop.analyze` of :func:`residual_network` gives one record per weighted
    layer: ``h_0``, each block's branch output ``v_l`` and the logits. The stream is
    accumulated from them with the analyzer's own residual rule (varprop/layers/
    residual.py; docs/theory.md section 6): ``h_l = h_{l-1} + a v_l`` with ``v_l``
    uncorrelated with ``h_{l-1}`` (the branch ends in zero-mean weights), so means add
    as ``a`` and variances as ``a^2``.

    Example:
        >>> from varprop.initializers import VarianceScaling
        >>> he = VarianceScaling(2.0, "fan_in", "normal")
        >>> th = residual_theory([8, 64, 64, 64, 3], "relu", [he] * 4, 1.0)
        >>> [round(t * t, 6) for t in th]     # ReLU + He: each block doubles Var[h]
        [2.0, 4.0, 8.0, 8.0]
    """
    from ..analytic import analyze

    a = float(branch_multiplier)
    records = analyze(residual_network(widths, activation, inits, a)).records
    mean, var = records[0].z_mean, records[0].z_var
    out = [math.sqrt(var + mean * mean)]
    for r in records[1:-1]:
        mean, var = mean + a * r.z_mean, var + a * a * r.z_var
        out.append(math.sqrt(var + mean * mean))
    last = records[-1]
    out.append(math.sqrt(last.z_var + last.z_mean * last.z_mean))
    return out


def group_layers(depth: int) -> list[int]:
    """The weighted-layer index of each group of :data:`DEPTH_GROUPS` in a residual MLP
    of ``depth`` blocks: input layer 0, the last block ``depth``, the readout
    ``depth + 1``."""
    return [0, depth, depth + 1]


def depth_series(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Slopes against depth for one series of residual cells (same config but depth and
    seed). A series that misses a (depth, seed) pair is a ValueError naming it.

    Returns a dict like a width series of :func:`~varprop.sweep.analysis.analyze_results`
    with ``axis: "depth"``, ``depths`` in place of ``widths``, the groups of
    :data:`DEPTH_GROUPS` as ``kinds``, ``layers`` (per depth, the layer index of each
    group) and verdicts "stable" / "grows as depth^q".
    """
    config = {k: v for k, v in cells[0]["config"].items() if k not in ("depth", "seed")}
    depths = sorted({c["config"]["depth"] for c in cells})
    seeds = sorted({c["config"]["seed"] for c in cells})
    by = {(c["config"]["depth"], c["config"]["seed"]): c for c in cells}
    missing = [(d, s) for d in depths for s in seeds if (d, s) not in by]
    if missing:
        raise ValueError(f"results: depth series {config} misses (depth, seed) {missing[:3]}")
    layers = [group_layers(d) for d in depths]
    n_groups, n_steps = len(DEPTH_GROUPS), config["steps"] + 1
    theory = [[by[(d, seeds[0])]["theory"]["z_rms"][l] for l in idx]
              for d, idx in zip(depths, layers)]
    theory_slope = [fit_slope(depths, [t[g] for t in theory]) for g in range(n_groups)]
    # [seed][step][depth][group] per quantity
    arrs = {q: [[[[by[(d, s)]["measured"][field][t][l] for l in idx]
                  for d, idx in zip(depths, layers)] for t in range(n_steps)] for s in seeds]
            for q, field in QUANTITIES}
    measured, slopes = fit_table(
        depths, arrs, lambda per_seed, g, q, t: _entry(per_seed, config, DEPTH_GROUPS[g], q, t))
    return {"axis": "depth", "config": config, "depths": depths, "seeds": seeds,
            "kinds": list(DEPTH_GROUPS), "layers": layers, "theory": theory,
            "theory_slope": theory_slope, "measured": measured, "slopes": slopes}


def _entry(per_seed: list[float], config: dict[str, Any], group: str, q: str,
           step: int) -> dict[str, Any]:
    stats = slope_stats(per_seed, "depth")
    v = stats["verdict"]
    quantity = "z" if step == 0 else "dz"  # as in the width analysis
    expected = expected_depth_exponent(config["parameterization"], config["optimizer"],
                                       group, quantity)
    note = ""
    what = "init" if quantity == "z" else "update"
    if q == quantity and expected is None:
        note = (f"expected: {group} {what} grows with depth under "
                f"{config['parameterization']} (branch multiplier 1)")
        if v == "stable":
            note = f"unexpected: {note[len('expected: '):]}, measured flat"
    elif q == quantity and v not in ("stable", "undefined"):
        note = "unexpected: the theory of this parameterization says flat in depth"
    return {**stats, "expected": (expected if expected is not None else "grows")
            if q == quantity else None, "note": note}
