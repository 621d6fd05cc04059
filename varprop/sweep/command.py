"""``varprop sweep``: the coordinate check across widths (and depths, architectures,
initializers, activations, parameterizations, optimizers, seeds), locally or on a Dask
cluster; with ``--arch residual`` and several ``--depths``, also against depth.

The defaults give the coordinate check of a 4-layer ReLU MLP under SP and muP for
widths 64..2048, 3 Adam steps, 5 seeds, theory and measurement side by side (a few tens
of seconds on 2 cores). docs/sweep.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

__all__ = ["add_sweep_parser", "run_sweep"]


def add_sweep_parser(sub: "argparse._SubParsersAction") -> None:
    """Register ``varprop sweep`` on the CLI's subparsers."""
    from . import DEFAULT_WIDTHS, Grid
    from .cell import ARCHS, INITIALIZERS
    from .parameterization import PARAMETERIZATIONS

    d = Grid()
    p = sub.add_parser(
        "sweep", help="coordinate check across widths: SP vs muP, theory and measurement",
        description="Train an MLP a few steps at each width (and depth, initializer, ...),\n"
                    "record every layer's scale, and fit the slope of log scale against log\n"
                    "width per layer and step: 'stable' or 'grows as width^0.5' (docs/sweep.md).",
        epilog="examples:\n  varprop sweep\n  varprop sweep --parameterizations sp ntk mup "
               "--optimizers sgd adam --out sweep.html\n"
               "  varprop sweep --parameterizations sp depth_mup --arch residual "
               "--depths 4 8 16 32 --widths 128\n"
               "  varprop sweep --scheduler tcp://10.0.0.5:8786 --cache-dir ~/.cache/vp",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("the grid")
    g.add_argument("--widths", type=int, nargs="+", default=list(DEFAULT_WIDTHS),
                   metavar="N", help=f"hidden widths (default: {' '.join(map(str, DEFAULT_WIDTHS))})")
    g.add_argument("--depths", type=int, nargs="+", default=list(d.depths), metavar="L",
                   help=f"dense layers, or residual blocks with --arch residual (default: "
                        f"{d.depths[0]}); two or more with --arch residual add the "
                        "coordinate check against depth")
    g.add_argument("--arch", "--archs", dest="archs", nargs="+", default=list(d.archs),
                   choices=ARCHS, metavar="ARCH",
                   help="mlp (plain, the default) or residual (input layer, L blocks "
                        "h + a W phi(h), readout: where depth_mup's a = 1/sqrt(L) acts)")
    g.add_argument("--initializers", nargs="+", default=list(d.initializers), metavar="NAME",
                   help=f"one of {', '.join(INITIALIZERS)} (default: he_normal)")
    g.add_argument("--activations", nargs="+", default=list(d.activations), metavar="NAME",
                   help="hidden activations (default: relu)")
    g.add_argument("--parameterizations", nargs="+", default=list(d.parameterizations),
                   metavar="NAME", help=f"of {', '.join(PARAMETERIZATIONS)} (default: sp mup)")
    g.add_argument("--optimizers", nargs="+", default=list(d.optimizers), metavar="NAME",
                   help="sgd, momentum, adam (default: adam)")
    g.add_argument("--lr", type=float, nargs="+", default=list(d.learning_rates),
                   metavar="LR", help=f"base learning rates (default: {d.learning_rates[0]:g})")
    g.add_argument("--seeds", type=int, default=5,
                   help="seeds per point: 0..N-1 (default: 5; the slope tolerance comes "
                        "from their spread)")
    g.add_argument("--adam-eps", type=float, default=d.epsilon, metavar="EPS",
                   help=f"Adam's epsilon at the base width (default: {d.epsilon:g}; muP "
                        "scales it per layer like the gradients)")
    g.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default: {d.steps})")
    g.add_argument("--batch", type=int, default=d.batch, help=f"rows per step (default: {d.batch})")
    g.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype,
                   help=f"the networks' dtype (default: {d.dtype})")
    g = p.add_argument_group("where it runs")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="run on this Dask scheduler (pip install 'varprop[dask]')")
    g.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: all cores)")
    g.add_argument("--serial", action="store_true", help="run in this process, no workers")
    g.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="keep finished cells here; a rerun resumes from them")
    g.add_argument("--retries", type=int, default=3,
                   help="retries of a crashed worker's cells (default: 3)")
    g = p.add_argument_group("output")
    g.add_argument("--format", choices=("table", "json", "html"), default="table",
                   help="what is printed on stdout (default: table)")
    g.add_argument("--out", metavar="FILE", default=None,
                   help="also write FILE: .html (with the plots), .json or .txt")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    """Run the sweep the arguments describe; print and write the results."""
    from ..reporting.output import OutputPath, Progress, UsageError
    from . import Grid, run

    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    out = None
    if args.out is not None:
        out = OutputPath(args.out, allowed=("html", "json", "table"))
    if args.serial and args.scheduler:
        raise UsageError("--serial and --scheduler exclude each other")
    try:
        grid = Grid(widths=args.widths, depths=args.depths, archs=args.archs,
                    initializers=args.initializers,
                    activations=args.activations, parameterizations=args.parameterizations,
                    optimizers=args.optimizers, learning_rates=args.lr,
                    seeds=tuple(range(args.seeds)), steps=args.steps, batch=args.batch,
                    dtype=args.dtype, epsilon=args.adam_eps)
        cells = grid.cells()
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    executor = "dask" if args.scheduler else ("serial" if args.serial else "local")
    bar = Progress(len(cells), "sweep", enabled=None if not args.quiet else False)

    def on_done(cell: Any, cached: bool) -> None:
        bar.advance(1, f"{cell.parameterization} width {cell.width} depth {cell.depth} "
                       f"seed {cell.seed}"
                       + (" (cached)" if cached else ""))

    try:
        result = run(cells, executor=executor, cache_dir=args.cache_dir, workers=args.workers,
                     scheduler=args.scheduler, retries=args.retries, on_done=on_done)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    command = "varprop " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    texts = {"table": result.text, "json": result.to_json,
             "html": lambda: result.html(command)}
    sys.stdout.write(texts[args.format]())
    if out is not None:
        out.write(texts[out.format]())
        if not args.quiet:
            sys.stderr.write(f"wrote {out}\n")
    return 0
