"""Text renderers (terminal table and Markdown) of ``varprop phase`` and ``varprop init``,
and the JSON document of ``varprop init`` (``varprop/schemas/init.schema.json``)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .._json import json_number
from .text import fmt

__all__ = ["phase_text", "init_summary", "init_text", "INIT_SCHEMA_VERSION"]

INIT_SCHEMA_VERSION = 1


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return lines


def _pick(n: int, k: int) -> list[int]:
    return sorted(set(int(round(i)) for i in np.linspace(0, n - 1, min(n, k))))


def phase_text(diagram: Any, markdown: bool = False) -> str:
    """The edge of chaos per sigma_b2, then the trainable depth 6 xi_c on a coarse
    sample of the grid (inf on the edge, "-" where the length map diverges)."""
    h = "## " if markdown else ""
    intro = ("Mean field of a deep fully connected network, weights of variance "
             "sigma_w2/fan_in, biases of variance sigma_b2.")
    edge = "### Edge of chaos (chi_1 = 1)" if markdown else "Edge of chaos (chi_1 = 1):"
    out = [f"{h}varprop phase {diagram.activation}", "", intro, "", edge, ""]
    rows = [[fmt(b), fmt(w) if math.isfinite(w) else "none", fmt(q)]
            for b, w, q in zip(diagram.edge_sigma_b2, diagram.edge_sigma_w2, diagram.edge_q_star)]
    out += _table(["sigma_b2", "sigma_w2 at chi_1 = 1", "q* there"], rows, markdown)
    out += [""] + [f"note: {n}" for n in diagram.notes]
    depth = diagram.trainable_depth
    ri = _pick(len(diagram.sigma_b2), 7)[::-1]
    ci = _pick(len(diagram.sigma_w2), 9)
    out += ["", "### Trainable depth 6 xi_c (rows sigma_b2, columns sigma_w2)" if markdown
            else "Trainable depth 6 xi_c (rows sigma_b2, columns sigma_w2):", ""]
    header = ["sigma_b2 \\ sigma_w2", *(fmt(diagram.sigma_w2[j]) for j in ci)]

    def cell(v: float) -> str:
        if math.isnan(v):
            return "-"
        return "inf" if math.isinf(v) else f"{v:.3g}" if v < 1e4 else fmt(v)

    rows = [[fmt(diagram.sigma_b2[i]), *(cell(depth[i, j]) for j in ci)] for i in ri]
    out += _table(header, rows, markdown)
    out += ["", "'-': the length map diverges (no fixed point q*), no depth scale."]
    return "\n".join(out) + "\n"


def init_summary(name: str, init: Any, shape: tuple[int, ...], seed: int, dtype: np.dtype,
                 moments: Any, w: np.ndarray, out: str | None, version: str) -> dict[str, Any]:
    """The JSON document of ``varprop init``: analytic and sample moments of one draw."""
    w64 = np.asarray(w, dtype=np.float64)
    n = w64.size
    mean, var = float(w64.mean()), float(w64.var())
    iid = moments.structure == "iid"
    se = math.sqrt(moments.var / n) if iid and n and moments.var > 0 else math.nan
    fans = None
    try:
        fans = list(init.fan_options.fans(shape))
    except Exception:  # noqa: BLE001 - a shape whose fans are undefined (rank 1 ...)
        fans = None
    return {
        "schema": "varprop-init",
        "schema_version": INIT_SCHEMA_VERSION,
        "varprop_version": version,
        "initializer": name,
        "config": init.get_config(),
        "repr": repr(init),
        "shape": list(shape),
        "seed": seed,
        "dtype": np.dtype(dtype).name,
        "fans": fans,
        "analytic": {"mean": moments.mean, "var": moments.var, "std": math.sqrt(moments.var),
                     "symmetric": bool(moments.symmetric), "structure": moments.structure},
        "sample": {"n": n, "mean": mean, "var": var, "std": math.sqrt(var),
                   "min": float(w64.min()), "max": float(w64.max()),
                   "mean_z": json_number((mean - moments.mean) / se),
                   "var_rel_error": (var - moments.var) / moments.var if moments.var > 0 else None},
        "out": out,
    }


def init_text(doc: dict[str, Any], markdown: bool = False) -> str:
    a, s = doc["analytic"], doc["sample"]
    shape = " x ".join(map(str, doc["shape"]))
    title = f"{doc['initializer']} = {doc['repr']}: shape {shape}, seed {doc['seed']}, {doc['dtype']}"
    h = "## " if markdown else ""
    rows = [["mean", fmt(a["mean"], 4), fmt(s["mean"], 4)],
            ["variance", fmt(a["var"], 4), fmt(s["var"], 4)],
            ["std", fmt(a["std"], 4), fmt(s["std"], 4)],
            ["min", "", fmt(s["min"], 4)], ["max", "", fmt(s["max"], 4)]]
    out = [f"{h}varprop init {title}", ""]
    out += _table(["", "analytic", "sample"], rows, markdown)
    extra = [f"structure: {a['structure']}" + (" (every unit identical)" if a["symmetric"] else "")]
    if doc["fans"]:
        extra.append(f"fans: in {doc['fans'][0]}, out {doc['fans'][1]}")
    if s["mean_z"] is not None:
        extra.append(f"sample mean is {s['mean_z']:+.2f} standard errors from the analytic mean")
    if s["var_rel_error"] is not None:
        extra.append(f"sample variance is {100 * s['var_rel_error']:+.2f}% off the analytic one")
    if doc["out"]:
        extra.append(f"saved to {doc['out']}")
    out += [""] + extra
    return "\n".join(out) + "\n"
