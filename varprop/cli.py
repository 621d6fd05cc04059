"""The ``varprop`` command: ``report`` (the main job), ``phase``, ``init`` and ``demo``.

Output conventions, the same for every subcommand: results go to stdout in the chosen
``--format``; ``--out FILE`` also writes a file whose format follows its suffix (written
to a temporary file and renamed, so never half-written); a progress bar appears on stderr
only when stderr is a terminal and the run lasts more than a second (``--quiet`` turns it
and the "wrote FILE" note off). A mistake on the command line (sizes whose memory estimate exceeds the machine's
included) or an output file that cannot be written prints one line on stderr and exits
with status 2, before anything is computed or written; another OSError (stdout on a full
disk) is one line and status 1. Ctrl-C (130) and SIGTERM (143) remove the temporary
output file before exiting.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import numpy as np

from . import __version__
from ._validate import as_generator, checked, non_negative_int
from .reporting.output import UsageError, check_positive


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _demo(args: argparse.Namespace) -> int:
    """Push a standard-normal batch through a deep MLP with the fused kernels and print
    the per-layer variance of the activations under He and Xavier (fan-in) scaling."""
    from .kernels import dense_forward

    from .reporting.commands import _check_memory

    for name in ("depth", "width", "batch"):
        check_positive(f"--{name}", getattr(args, name))
    checked(non_negative_int, UsageError, "--seed", args.seed)
    width, batch, depth = float(args.width), float(args.batch), float(args.depth)
    # the float64 draw of the input and of a weight matrix, their float32 copies, the
    # layer's outputs (pre- and post-activation), and per layer two recorded variances
    need = 12.0 * (batch * width + width * width) + 16.0 * batch * width + 2 * 64.0 * depth
    _check_memory(need, f"--width {args.width} with --batch {args.batch} and --depth {args.depth}",
                  "use a smaller width, batch or depth")
    rng = as_generator(args.seed)
    x0 = rng.standard_normal((args.batch, args.width)).astype(np.float32)
    schemes = {"he (2/n)": 2.0, "lecun (1/n)": 1.0}
    print(f"ReLU MLP, depth {args.depth}, width {args.width}, batch {args.batch}: "
          "variance of the pre-activations per layer")
    print(f"{'layer':>5}  " + "  ".join(f"{name:>12}" for name in schemes))
    columns = {}
    for name, gain in schemes.items():
        x, layer_rng, out = x0, as_generator(args.seed + 1), []
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


def _report(args: argparse.Namespace) -> int:
    from .reporting.commands import run_report

    return run_report(args)


def _phase(args: argparse.Namespace) -> int:
    from .reporting.commands import run_phase

    return run_phase(args)


def _experiment(args: argparse.Namespace) -> int:
    from .reporting.commands import run_experiment

    return run_experiment(args)


def _init(args: argparse.Namespace) -> int:
    from .reporting.commands import run_init

    return run_init(args)


_FORMATS = ("table", "markdown", "json", "html")


def _output_options(p: argparse.ArgumentParser, default_out: str) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--format", choices=_FORMATS, default="table",
                   help="what is printed on stdout (default: table)")
    g.add_argument("--out", metavar="FILE", default=None,
                   help=f"also write FILE, format from its suffix: .html, .json, .md, .txt, or "
                        f".png/.svg for the key figure (default: {default_out})")
    g.add_argument("--no-out", action="store_true", help="write no file, only print")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no 'wrote FILE' note on stderr")


def _report_parser(sub: argparse._SubParsersAction) -> None:
    from .reporting.results import (CNN_DEFAULTS, DEFAULT_ACTIVATIONS, DEFAULT_INITIALIZERS,
                                    GATED_DEFAULTS, GATED_INITIALIZERS, GATED_LAYOUTS,
                                    RNN_DEFAULTS, ReportSettings)

    d = ReportSettings()
    p = sub.add_parser(
        "report", help="which initializers keep signal and gradient alive (the main job)",
        description="Analyze (mean-field theory) and measure (drawn networks) how the\n"
                    "variance of the signal and of the gradient travels through a deep MLP\n"
                    "(or a CNN, an Elman RNN, an LSTM or a GRU: --arch) for every initializer x\n"
                    "activation; print a table and write a self-contained HTML report with\n"
                    "figures. For --arch lstm and gru the columns are the frameworks' weight\n"
                    "layouts (keras, torch) instead of activations, and the rows may name the\n"
                    "layout's defaults ('default') and chrono gate biases ('chrono').",
        epilog="examples:\n  varprop report\n  varprop report --analytic-only --depth 100\n"
               "  varprop report --arch lstm\n"
               "  varprop report --arch gru -i default chrono orthogonal -a torch --depth 50\n"
               "  varprop report --initializers he_normal orthogonal --activations relu tanh "
               "--format markdown --no-out\n  varprop report --format json --out report.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to analyze")
    g.add_argument("--initializers", "-i", nargs="+", metavar="NAME",
                   help=f"initializer names (default: {' '.join(DEFAULT_INITIALIZERS)}); with "
                        f"--arch lstm/gru also 'default' (the layout's framework defaults: "
                        f"Keras glorot_uniform/orthogonal/zeros, unit_forget_bias for the "
                        f"LSTM; PyTorch U(-1/sqrt(H), 1/sqrt(H))) and 'chrono' (those "
                        f"defaults with chrono gate biases, T_max = --depth) (default there: "
                        f"{' '.join(GATED_INITIALIZERS)})")
    g.add_argument("--activations", "-a", nargs="+", metavar="NAME",
                   help=f"activation names (default: {' '.join(DEFAULT_ACTIVATIONS)}); with "
                        f"--arch lstm/gru the weight layouts instead (default there: "
                        f"{' '.join(GATED_LAYOUTS)})")
    g.add_argument("--arch", choices=("mlp", "cnn", "seeds_cnn", "rnn", "lstm", "gru"),
                   default="mlp",
                   help="the network: a square MLP (default); cnn, a stack of 3x3 'same' "
                        "convolutions on --image x --image x 1 inputs; seeds_cnn, the seeds' "
                        "CNN (8x8x1, 16 and 32 channels, 2x2 max pooling, dense classifier); "
                        "rnn, an Elman RNN through --depth time steps (the initializer "
                        "draws its input and recurrent kernels); lstm and gru, the gated "
                        "cells through --depth time steps (docs/gated.md), the loss on "
                        "the last state")
    g.add_argument("--depth", type=int, default=None,
                   help=f"dense layers, convolutions with --arch cnn, time steps with "
                        f"--arch rnn/lstm/gru (default: {d.depth}; cnn: "
                        f"{CNN_DEFAULTS['depth']}; rnn: {RNN_DEFAULTS['depth']}; lstm, gru: "
                        f"{GATED_DEFAULTS['depth']})")
    g.add_argument("--width", type=int, default=None,
                   help=f"units per layer, channels with --arch cnn, state units (and "
                        f"input features) with --arch rnn/lstm/gru (default: {d.width}; "
                        f"cnn: {CNN_DEFAULTS['width']}; rnn: {RNN_DEFAULTS['width']}; "
                        f"lstm, gru: {GATED_DEFAULTS['width']})")
    g.add_argument("--image", type=int, default=None,
                   help=f"--arch cnn: side of the square input image (default: {d.image})")
    g.add_argument("--bias-var", type=float, default=d.bias_var, metavar="VAR",
                   help="variance of the N(0, VAR) biases; 0 = zero biases (default: 0); "
                        "with --arch lstm/gru, of the rows that name an initializer (the "
                        "'default' and 'chrono' rows keep their framework's biases)")
    g = p.add_argument_group("measurement")
    g.add_argument("--analytic-only", action="store_true",
                   help="mean-field theory only, no drawn networks (a second or two)")
    g.add_argument("--batch", type=int, default=None,
                   help=f"input rows per measured network (default: {d.batch}; each layer's "
                        "variance pools batch x width entries, the 95%% intervals come from "
                        "the seeds)")
    g.add_argument("--seeds", type=int, default=None,
                   help=f"independent draws per network, for the 95%% intervals (default: {d.seeds})")
    g.add_argument("--threads", type=int, default=None,
                   help="threads to measure with (default: all cores): networks are measured "
                        "side by side, one kernel thread each; results do not depend on it")
    _output_options(p, "varprop-report.html")
    p.set_defaults(func=_report)


def _phase_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phase", help="mean-field phase diagram (edge of chaos, trainable depth)",
        description="The mean-field phase diagram of ACTIVATION over the weight variance\n"
                    "sigma_w2 (= fan-in x Var[W]) and the bias variance sigma_b2: the edge\n"
                    "of chaos chi_1 = 1 and the trainable depth 6 xi_c as a heat map\n"
                    "(Schoenholz et al. 2017, arXiv 1611.01232).",
        epilog="examples:\n  varprop phase tanh\n  varprop phase relu --sigma-w2 0 4 --no-out\n"
               "  varprop phase selu --out selu.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("activation", metavar="ACTIVATION",
                   help="an activation name, e.g. tanh (aliases such as swish accepted)")
    p.add_argument("--sigma-w2", nargs=2, type=float, metavar=("LOW", "HIGH"), default=None,
                   help="weight-variance range (default: 0 to max(4, twice the edge of chaos))")
    p.add_argument("--sigma-b2", nargs=2, type=float, metavar=("LOW", "HIGH"), default=[0.0, 1.0],
                   help="bias-variance range (default: 0 1)")
    p.add_argument("--resolution", nargs="+", type=int, metavar="N", default=[61, 41],
                   help="grid points along sigma_w2 [and sigma_b2], each 3 to 1000 "
                        "(default: 61 41)")
    _output_options(p, "varprop-phase-ACTIVATION.html")
    p.set_defaults(func=_phase)


def _init_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init", help="draw an initializer and compare its sample and analytic moments",
        description="Draw one array from initializer NAME and print its analytic and\n"
                    "sample mean and variance; --out saves the array as .npy.",
        epilog="examples:\n  varprop init he_normal --shape 256 128 --seed 0 --out w.npy\n"
               "  varprop init random_normal --param stddev=0.1 --shape 1000\n"
               "  varprop init kaiming_uniform --param layout=torch --shape 64 3 3 3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="an initializer name, e.g. he_normal")
    p.add_argument("--shape", nargs="+", type=int, required=True, metavar="N",
                   help="the weight shape, Keras layout (..., in, out) unless --param layout=torch")
    p.add_argument("--seed", type=int, default=0, help="the seed (default: 0)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="an initializer parameter, e.g. stddev=0.1 (repeatable)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="dtype of the drawn array (default: float32)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                   help="what is printed on stdout (default: table)")
    p.add_argument("--out", metavar="FILE.npy", default=None, help="save the array (numpy .npy)")
    p.add_argument("-q", "--quiet", action="store_true", help="no 'wrote FILE' note on stderr")
    p.set_defaults(func=_init)


def _experiment_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment", help="run one of the seed experiments (training runs)",
        description="Run a seed experiment and print its table: iris (zero init stays at\n"
                    "chance), digits (twelve initializers compared), deep-relu (He trains a\n"
                    "30-layer ReLU MLP, Xavier stalls), symmetry (zero/constant init keeps\n"
                    "hidden units identical), cnn (the seeds' CNN under zero, random,\n"
                    "Glorot and He init: accuracies and step-0 variance per layer), rnn\n"
                    "(the seeds' RNN: gradient through time at step 0, theory and measured;\n"
                    "the adding problem under IRNN, orthogonal, small random and Glorot).",
        epilog="examples:\n  varprop experiment symmetry\n  varprop experiment deep-relu "
               "--out deep-relu.png\n  varprop experiment cnn --data ~/mnist --max-train 10000"
               "\n  varprop experiment rnn --quick\n  varprop experiment rnn --steps 100 "
               "--epochs 20 --seeds 3 --out rnn.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="iris, digits, deep-relu, symmetry, cnn or rnn")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="cnn only: train on MNIST from the IDX files in DIR (train-images-"
                        "idx3-ubyte[.gz] and the rest) instead of the shipped 8x8 digits")
    p.add_argument("--max-train", type=int, default=None, metavar="N",
                   help="cnn only: use at most N training images")
    p.add_argument("--quick", action="store_true",
                   help="rnn only: tiny sizes (T 12, 16 units, 2 short epochs): a smoke test "
                        "in seconds, in which nothing is learned")
    p.add_argument("--steps", type=int, default=None, metavar="T",
                   help="rnn only: sequence length (default: 50)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="rnn only: adding-problem epochs of 10,000 sequences (default: 12)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="rnn only: adding-problem runs per initializer, seeds 0..N-1 "
                        "(default: 2)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="also write the experiment's figure (.png, .svg or .pdf)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress lines and no 'wrote FILE' note on stderr")
    p.set_defaults(func=_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="varprop",
        description="See and predict how variance travels through deep networks. "
                    "Start with 'varprop report'.")
    parser.add_argument("--version", action="store_true",
                        help="print the version and exit (takes no other arguments)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                help="what to do ('varprop COMMAND --help' for its options)")
    _report_parser(sub)
    _phase_parser(sub)
    _init_parser(sub)
    _experiment_parser(sub)
    from .sweep.command import add_sweep_parser  # the sweep's own module (docs/sweep.md)
    add_sweep_parser(sub)
    from .torch.command import add_model_parser  # imports no torch until it runs
    add_model_parser(sub)
    demo = sub.add_parser("demo", help="per-layer variance of a deep ReLU net (kernels demo)",
                          description=_demo.__doc__)
    demo.add_argument("--depth", type=int, default=20, help="dense layers (default: 20)")
    demo.add_argument("--width", type=int, default=512, help="units per layer (default: 512)")
    demo.add_argument("--batch", type=int, default=512,
                      help="input rows pushed through the net (default: 512)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the input batch and the weights (default: 0)")
    demo.set_defaults(func=_demo)
    return parser


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (the removal of a
    temporary output file) run as they do for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        if args.command is not None:
            parser.error("--version takes no other arguments")
        print(f"varprop {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        commands = ", ".join(next(a for a in parser._actions
                                  if isinstance(a, argparse._SubParsersAction)).choices)
        sys.stderr.write(f"varprop: error: a COMMAND is required: one of {commands} "
                         "(see 'varprop --help')\n")
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except UsageError as exc:
        sys.stderr.write(f"varprop {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"\nvarprop {args.command}: interrupted\n")
        return 130
    except _Terminated:
        sys.stderr.write(f"\nvarprop {args.command}: terminated\n")
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # e.g. `varprop report | head`: the reader has what it wants
        # point stdout at /dev/null so the interpreter's final flush cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. a full disk on stdout: one line, not a traceback
        name = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"varprop {args.command}: error:{name} {exc.strerror or exc}\n")
        return 1
    except MemoryError:
        sys.stderr.write(f"varprop {args.command}: error: out of memory; use smaller sizes\n")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
