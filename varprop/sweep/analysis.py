"""Slopes of log scale against log width, and a verdict per layer and step.

For a series of cells that differ only in width and seed, each dense layer's scale at
step t (``z``: the RMS of its pre-activations; ``dz``: the RMS of their change since
step 0) is fitted per seed by least squares, ``log scale = slope * log width + c``; the
slope of the series is the mean over seeds (equal to the slope of the mean log scale:
least squares is linear in y). Its tolerance (docs/sweep.md, "Verdicts"):

    tol = max(t_{S-1, 1 - alpha/2} * sd(per-seed slopes) / sqrt(S),  SLOPE_FLOOR)

with ``alpha`` = :data:`FALSE_ALARM` (the chance that a layer whose slope is truly 0
is called non-stable from seed noise alone, for S >= 2 seeds), and the floor 1/4: the
abc analysis of Tensor Programs IV/V gives exponents in steps of 1/2, so 1/4 is the
midpoint between "stable" and the nearest power law; finite-width corrections
(O(width^-1/2) relative) move a fitted slope over 64..2048 by about 0.1, which the seed
spread does not see. ``|slope| <= tol`` is "stable"; otherwise "grows as width^q" or
"shrinks as width^-q", q the slope rounded to a quarter. The same fit against depth
(residual MLPs, per layer group) is in :mod:`varprop.sweep.depth`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .parameterization import expected_exponent, first_order_only

__all__ = ["fit_slope", "verdict", "tolerance", "analyze_results", "SLOPE_FLOOR",
           "FALSE_ALARM"]

#: The smallest tolerance on a slope (see the module docstring).
SLOPE_FLOOR = 0.25
#: The false-alarm rate of the seed-spread part of the tolerance (two-sided).
FALSE_ALARM = 0.01


def fit_slope(widths: Sequence[float], values: Sequence[Any]) -> float:
    """The least-squares slope of ``log(values)`` against ``log(widths)``; NaN when a
    value is missing, not positive or not finite, or fewer than two widths.

    Example:
        >>> round(fit_slope([64, 256, 1024], [1.0, 2.0, 4.0]), 12)
        0.5
    """
    if len(widths) != len(values) or len(widths) < 2:
        return math.nan
    if any(v is None or not math.isfinite(v) or v <= 0 for v in values):
        return math.nan
    x = np.log(np.asarray(widths, dtype=np.float64))
    y = np.log(np.asarray(values, dtype=np.float64))
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def tolerance(slopes: Sequence[float]) -> float:
    """The tolerance of the mean of per-seed ``slopes`` (module docstring)."""
    s = [v for v in slopes if math.isfinite(v)]
    if len(s) < 2:
        return SLOPE_FLOOR
    from scipy.stats import t as student_t

    sd = float(np.std(s, ddof=1))
    stat = float(student_t.ppf(1 - FALSE_ALARM / 2, len(s) - 1)) * sd / math.sqrt(len(s))
    return max(stat, SLOPE_FLOOR)


def verdict(slope: float, tol: float, *, axis: str = "width") -> str:
    """``"stable"``, ``"grows as width^0.5"``, ``"shrinks as width^-1"`` or
    ``"undefined"`` (a NaN slope); ``axis`` names the variable (``"depth"`` for the
    depth check)."""
    if not math.isfinite(slope):
        return "undefined"
    if abs(slope) <= tol:
        return "stable"
    q = round(slope * 4) / 4
    if q == 0:
        q = math.copysign(0.25, slope)
    return f"{'grows' if slope > 0 else 'shrinks'} as {axis}^{q:g}"


_SERIES_DROP = ("width", "seed")


def _series_key(config: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in config.items() if k not in _SERIES_DROP))


def analyze_results(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group cell results into series (all fields but width and seed alike) and give,
    per series, layer and step, the slopes, tolerances and verdicts; then, for residual
    MLPs, the depth series (all fields but depth and seed alike, at least two depths) of
    :func:`varprop.sweep.depth.depth_series`, after the width series.

    A width series (``axis: "width"``) needs at least two widths (a grid of one width
    gives depth series only). Its dict: ``config`` (the shared fields), ``widths``,
    ``seeds``, ``kinds``, ``theory`` (per width, per layer: step-0 RMS of z),
    ``measured`` (``z`` and ``dz``: per step, width, layer, the geometric mean over
    seeds), ``theory_slope`` (per layer), ``slopes`` (``z``/``dz``: per step, per layer,
    a dict of ``slope``, ``sd``, ``tol``, ``verdict``, ``expected``, ``note``).
    A series that misses a (width, seed) pair is a ValueError naming it.
    """
    from .depth import depth_series

    groups: dict[tuple, list[dict[str, Any]]] = {}
    by_depth: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(_series_key(r["config"]), []).append(r)
        if r["config"].get("arch") == "residual":
            key = tuple(sorted((k, v) for k, v in r["config"].items()
                               if k not in ("depth", "seed")))
            by_depth.setdefault(key, []).append(r)
    out = [_series(cells) for cells in groups.values()
           if len({c["config"]["width"] for c in cells}) >= 2]
    out += [depth_series(cells) for cells in by_depth.values()
            if len({c["config"]["depth"] for c in cells}) >= 2]
    return out


def _series(cells: list[dict[str, Any]]) -> dict[str, Any]:
    config = {k: v for k, v in cells[0]["config"].items() if k not in _SERIES_DROP}
    widths = sorted({c["config"]["width"] for c in cells})
    seeds = sorted({c["config"]["seed"] for c in cells})
    by = {(c["config"]["width"], c["config"]["seed"]): c for c in cells}
    missing = [(w, s) for w in widths for s in seeds if (w, s) not in by]
    if missing:
        raise ValueError(f"results: series {config} misses (width, seed) {missing[:3]}")
    first = by[(widths[0], seeds[0])]
    kinds = first["kinds"]
    n_layers, n_steps = len(kinds), config["steps"] + 1
    theory = [by[(w, seeds[0])]["theory"]["z_rms"] for w in widths]
    theory_slope = [fit_slope(widths, [t[l] for t in theory]) for l in range(n_layers)]
    # [seed][step][width][layer] per quantity
    arrs = {q: [[[by[(w, s)]["measured"][field][t] for w in widths] for t in range(n_steps)]
                for s in seeds] for q, field in QUANTITIES}
    measured, slopes = fit_table(
        widths, arrs, lambda per_seed, l, q, t: _slope_entry(per_seed, config, kinds[l], q, t))
    return {"axis": "width", "config": config, "widths": widths, "seeds": seeds,
            "kinds": kinds,
            "theory": theory, "theory_slope": theory_slope, "measured": measured,
            "slopes": slopes}


#: The two quantities of a series and the cell field each is read from: the scale of the
#: pre-activations and of their change since step 0.
QUANTITIES = (("z", "z_rms"), ("dz", "dz_rms"))


def geo_mean(values: Sequence[Any]) -> "float | None":
    """The geometric mean, or None if any value is missing, non-finite or <= 0."""
    if any(v is None or not math.isfinite(v) or v <= 0 for v in values):
        return None
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def fit_table(xs: Sequence[float], arrs: dict[str, list], entry: Any
              ) -> tuple[dict[str, list], dict[str, list]]:
    """The measured scales and fitted slopes of one series (widths or depths).

    ``arrs[q][seed][step][x][col]`` holds each cell's value of quantity ``q`` for column
    ``col`` (a layer or a layer group); returns ``measured[q][step][x][col]`` (geometric
    mean over seeds) and ``slopes[q][step][col]`` = ``entry(per_seed, col, q, step)``,
    where ``per_seed`` are the seeds' slopes of log value against log x (None for the
    change at step 0: nothing to fit)."""
    measured: dict[str, list] = {}
    slopes: dict[str, list] = {}
    for q, arr in arrs.items():
        n_seeds, n_steps, n_cols = len(arr), len(arr[0]), len(arr[0][0][0])
        measured[q] = [[[geo_mean([arr[i][t][j][c] for i in range(n_seeds)])
                         for c in range(n_cols)] for j in range(len(xs))]
                       for t in range(n_steps)]
        slopes[q] = [[None if q == "dz" and t == 0 else
                      entry([fit_slope(xs, [arr[i][t][j][c] for j in range(len(xs))])
                             for i in range(n_seeds)], c, q, t)
                      for c in range(n_cols)] for t in range(n_steps)]
    return measured, slopes


def slope_stats(per_seed: list[float], axis: str) -> dict[str, Any]:
    """The seeds' mean slope (NaN unless every seed's is finite), their spread, the
    tolerance and the verdict along ``axis``."""
    finite = [v for v in per_seed if math.isfinite(v)]
    slope = float(np.mean(finite)) if len(finite) == len(per_seed) and finite else math.nan
    sd = float(np.std(finite, ddof=1)) if len(finite) >= 2 else math.nan
    tol = tolerance(finite)
    return {"slope": slope, "per_seed": per_seed, "sd": sd, "tol": tol,
            "verdict": verdict(slope, tol, axis=axis)}


def _slope_entry(per_seed: list[float], config: dict[str, Any], kind: str, q: str,
                 step: int) -> dict[str, Any]:
    stats = slope_stats(per_seed, "width")
    v = stats["verdict"]
    # z after training is dominated by its update where that grows: judge z at step 0
    # and dz at later steps against the table (parameterization.py)
    quantity = "z" if step == 0 else "dz"
    expected = expected_exponent(config["parameterization"], config["optimizer"], kind,
                                 quantity)
    # SP and NTK-with-Adam updates grow with width at a fixed lr: the table gives the
    # first order in lr, and the higher orders take over at large lr * width
    # (docs/sweep.md section 3); flag it wherever the update is judged
    first = q == quantity == "dz" and first_order_only(config["parameterization"],
                                                       config["optimizer"])
    note = ""
    if q == quantity and expected != 0:
        note = (f"expected: {kind} {'init' if quantity == 'z' else 'update'} "
                f"~ width^{expected:g} under {config['parameterization']} with "
                f"{config['optimizer']}")
    elif q == quantity and v not in ("stable", "undefined"):
        note = "unexpected: the theory of this parameterization says stable"
    if first:
        note = (note + "; " if note else "") + ("first order in lr: higher orders grow "
                                                "faster at large lr * width")
    return {**stats, "expected": expected if q == quantity else None,
            "first_order_only": first, "note": note}
