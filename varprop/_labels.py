"""Direct labels of the report's line figures (varprop/plots.py): the short tags of
curves that end together, written at their ends, rows kept from overlapping."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["bundles", "label_bundles", "declutter"]


def bundles(ends: Sequence[tuple[float, str]], tol: float) -> list[list[str]]:
    """Groups of initializers whose curves end within ``tol`` (log10 units) of each other,
    two or more each, ordered from the top."""
    groups: list[list[tuple[float, str]]] = []
    for v, name in sorted(ends, reverse=True):
        if groups and groups[-1][-1][0] - v <= tol:
            groups[-1].append((v, name))
        else:
            groups.append([(v, name)])
    return [[n for _, n in g] for g in groups if len(g) > 1]


def label_bundles(ax: Any, ends: Sequence[tuple[float, str]], x: float,
                  styles: Mapping[str, Mapping[str, str]], pt: float) -> None:
    """Direct labels where curves bundle: at the end ``x`` (the last layer, or the first
    for gradients) of each group of coinciding curves, their tags (see the legend) side by
    side, each in its initializer's colour on a white ground (a line behind does not cross
    it), just above the bundle (below it near the top). Rows that would overlap are
    pushed apart vertically (:func:`declutter`). Call once the axes have their place."""
    lo, hi = (math.log10(v) for v in ax.get_ylim())
    groups = bundles([(v, n) for v, n in ends if lo <= v <= hi], 0.03 * (hi - lo))
    if not groups:
        return
    row = 1.45 * pt  # a row's height with its white ground, in points
    fig = ax.get_figure()
    height = ax.get_position().height * fig.get_figheight() * 72  # the panel, in points
    wanted = []
    for group in groups:
        y = (sum(ev for ev, n in ends if n in group) / len(group) - lo) / (hi - lo) * height
        wanted.append(y + 2 if y < height - 2 - 2 * row else y - 2 - row)
    right = x > 1
    for group, y in zip(groups, declutter(wanted, row, height)):
        dx = 2.0  # one text per tag, laid out inwards from the end: the row stays inside
        for name in (reversed(group) if right else group):
            st = styles[name]
            ax.annotate(st["tag"], (x, y / height), xycoords=ax.get_xaxis_transform(),
                        xytext=(-dx if right else dx, 0.2 * pt), textcoords="offset points",
                        ha="right" if right else "left", va="bottom", fontsize=pt,
                        fontweight="bold", color=st["color"], annotation_clip=False,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                              "alpha": 0.8})
            dx += 0.85 * pt * len(st["tag"]) + 3


def declutter(wanted: Sequence[float], gap: float, top: float) -> list[float]:
    """Bottoms of label rows ``gap`` high as near their ``wanted`` heights as they can be
    without overlapping, inside ``[0, top]`` where there is room (in the input's order)."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    ys = [min(max(wanted[i], 0.0), top - gap) for i in order]
    for k in range(1, len(ys)):  # push up past the row below ...
        ys[k] = max(ys[k], ys[k - 1] + gap)
    for k in range(len(ys) - 1, -1, -1):  # ... then down from the top, and off the floor
        ys[k] = min(ys[k], top - gap if k == len(ys) - 1 else ys[k + 1] - gap)
    shift = max(0.0, -ys[0]) if ys else 0.0
    out = [0.0] * len(ys)
    for k, i in enumerate(order):
        out[i] = ys[k] + shift
    return out
