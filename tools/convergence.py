"""Does the measurement converge to the theory as the network widens?

For every initializer x activation of the default report (or those given), measure the
report's network (depth 30, inputs N(0, 1)) at growing widths and print, per width, the
bias-corrected log of measured over theory at the last layer (forward: z_var) and the
first layer (backward: grad_var), with the comparison's verdict (docs/comparison.md).
A theory that is right has |log ratio| shrinking toward 0 as the width grows (finite-width
effects are O(depth / width)); one that stays put is wrong there.

    python tools/convergence.py                      # 91 networks, widths 512 1024 2048
    python tools/convergence.py -i he_normal -a gelu --widths 256 512 1024 2048 4096

Takes about 20 minutes for the default grid on two cores; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

import varprop
from varprop.agreement import agreement
from varprop.network import dense_stack
from varprop.reporting.results import DEFAULT_ACTIVATIONS, DEFAULT_INITIALIZERS


def _log_ratio(test) -> float:
    return test.log_ratio if test is not None else math.nan


def study(init: str, act: str, widths: list[int], depth: int, batch: int,
          seeds: int) -> list[dict]:
    rows = []
    for width in widths:
        net = dense_stack(width, depth, act, init)
        theory = varprop.analyze(net, batch=batch)
        measured = varprop.measure(net, batch=batch, seeds=seeds)
        agree = agreement(theory, measured)
        tests = {(t.field, t.layer): t for t in agree.tests}
        fwd, bwd = tests.get(("z_var", depth - 1)), tests.get(("grad_var", 0))
        rows.append({"initializer": init, "activation": act, "width": width,
                     "status": agree.status, "z_log_ratio": _log_ratio(fwd),
                     "z_se": fwd.se if fwd else math.nan,
                     "grad_log_ratio": _log_ratio(bwd), "grad_se": bwd.se if bwd else math.nan,
                     "approximations": [a["kind"] for a in
                                        theory.meta.get("approximations", [])]})
    return rows


def _fmt(x: float) -> str:
    return "   n/a" if not math.isfinite(x) else f"{x:+6.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--initializers", nargs="+", default=list(DEFAULT_INITIALIZERS))
    ap.add_argument("-a", "--activations", nargs="+", default=list(DEFAULT_ACTIVATIONS))
    ap.add_argument("--widths", nargs="+", type=int, default=[512, 1024, 2048])
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--batch", type=int, default=192)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", help="write every row to this JSON file")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    head = "".join(f"  w={w:<5d}z    grad" for w in args.widths)
    print(f"{'initializer':16s}{'activation':12s}{head}  (log measured/theory; status)")
    t0 = time.perf_counter()
    for init in args.initializers:
        for act in args.activations:
            with np.errstate(all="ignore"):
                got = study(init, act, args.widths, args.depth, args.batch, args.seeds)
            rows += got
            cells = "".join(f"  {_fmt(r['z_log_ratio'])} {_fmt(r['grad_log_ratio'])}"
                            for r in got)
            status = ",".join(r["status"][:4] for r in got)
            approx = ",".join(sorted({k for r in got for k in r["approximations"]}))
            print(f"{init:16s}{act:12s}{cells}  {status} {approx}", flush=True)
    print(f"took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
