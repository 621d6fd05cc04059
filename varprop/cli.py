"""The ``varprop`` command."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    """Push a standard-normal batch through a deep MLP with the fused kernels and print
    the per-layer variance of the activations under He and Xavier (fan-in) scaling."""
    from .kernels import dense_forward

    rng = np.random.default_rng(args.seed)
    x0 = rng.standard_normal((args.batch, args.width)).astype(np.float32)
    schemes = {"he (2/n)": 2.0, "lecun (1/n)": 1.0}
    print(f"ReLU MLP, depth {args.depth}, width {args.width}, batch {args.batch}: "
          "variance of the pre-activations per layer")
    print(f"{'layer':>5}  " + "  ".join(f"{name:>12}" for name in schemes))
    columns = {}
    for name, gain in schemes.items():
        x, layer_rng, out = x0, np.random.default_rng(args.seed + 1), []
        for _ in range(args.depth):
            w = (layer_rng.standard_normal((args.width, args.width))
                 * np.sqrt(gain / args.width)).astype(np.float32)
            r = dense_forward(x, w, None, "relu", stats=True)
            out.append(r.stats.z_pooled_var)
            x = r.a
        columns[name] = out
    for layer in range(args.depth):
        print(f"{layer + 1:>5}  " + "  ".join(f"{columns[n][layer]:>12.4g}" for n in schemes))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varprop",
        description="See and predict how variance travels through deep networks.")
    parser.add_argument("--version", action="version", version=f"varprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="per-layer variance of a deep ReLU net (kernels demo)",
                          description=_demo.__doc__)
    demo.add_argument("--depth", type=int, default=20)
    demo.add_argument("--width", type=int, default=512)
    demo.add_argument("--batch", type=int, default=512)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
