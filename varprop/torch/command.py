"""``varprop model FILE.py:FACTORY --input-shape 8 3 32 32``: your own PyTorch or Keras
model, audited, traced, measured and compared with the theory, from the command line.

The command imports ``FILE.py``, calls ``FACTORY()`` (no arguments) for the model and
prints, in this order (for a ``keras.Model``, the same with :mod:`varprop.keras`'s
functions, through :mod:`varprop.keras.command`; ``--input-shape`` channels last):

1. the audit (:func:`varprop.torch.audit`), harmful findings first, each with its fix;
2. theory next to measurement per weighted layer (:meth:`varprop.Comparison.table`):
   the mean field of the traced network (:func:`varprop.torch.trace`,
   :func:`varprop.analyze`) and the model itself measured through hooks
   (:func:`varprop.torch.profile`), with the log-space test of docs/comparison.md;
3. which module each layer row is, with its weight law, and what the trace assumed.

``--out`` also writes HTML (the audit, the table, and the forward and backward variance
against layer), JSON or Markdown, as the other commands do (docs/torch.md). Nothing here
imports torch or keras: :func:`add_model_parser` registers the command on ``varprop``'s
parser without them, the model file imports its own framework, and a missing one is a
usage error naming the extra. The model's type picks the path (a ``torch.nn.Module`` or
a ``keras.Model``), so a Keras model on a backend other than torch never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import io
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from ..reporting.output import OutputPath, Progress, UsageError, _isatty, check_positive
from ._doc import _Doc

__all__ = ["add_model_parser", "run_model", "main"]

_FORMATS = ("table", "json", "markdown")
_EPILOG = """examples:
  varprop model net.py:build --input-shape 8 3 32 32
  varprop model net.py:build --input-shape 64 784 --init he_normal --seeds 5
  varprop model net.py:build --input-shape 8 3 32 32 --out model.html"""


def add_model_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``model`` on ``varprop``'s subcommands (``args.func`` is :func:`run_model`).

    Example:
        >>> import argparse
        >>> sub = argparse.ArgumentParser(prog="varprop").add_subparsers(dest="command")
        >>> p = add_model_parser(sub)
        >>> p.parse_args(["m.py:build", "--input-shape", "8", "3", "32", "32"]).input_shape
        [8, 3, 32, 32]
    """
    p = subparsers.add_parser(
        "model", help="audit your own PyTorch or Keras model and compare theory with "
                      "measurement",
        description="Import FILE.py, call FACTORY() for a torch.nn.Module or a keras.Model,\n"
                    "audit its\n"
                    "initialization (harmful findings first, each with its fix), trace it\n"
                    "into a varprop network and print the mean-field theory next to the\n"
                    "model itself measured through hooks (Dropout off, BatchNorm in\n"
                    "training mode), per Linear/Conv (Dense/Conv) layer. Needs pip install\n"
                    "'varprop[torch]', or 'varprop[keras]' with KERAS_BACKEND=torch.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="FILE.py:FACTORY",
                   help="a Python file and the name of a function (or class) in it that "
                        "returns the model when called without arguments")
    p.add_argument("--input-shape", nargs="+", type=int, required=True, metavar="N",
                   help="the input's shape with its batch first: 8 784 for (batch, "
                        "features), 8 3 32 32 for (batch, C, H, W), 8 1 100 for (batch, C, L); "
                        "channels last for a Keras model: 8 32 32 3 for (batch, H, W, C)")
    p.add_argument("--input-kind", choices=("auto", "sequence", "image"), default="auto",
                   help="what a rank-3 PyTorch input is: sequence (batch, T, features), "
                        "image (batch, C, L), or auto (default: decided from the ops that "
                        "read it; an error asks where they do not say). Keras reads "
                        "(batch, steps, channels) one way and ignores it")
    p.add_argument("--init", metavar="SCHEME", default=None,
                   help="re-draw every Linear/Conv with this varprop scheme (biases zero) "
                        "instead of the laws read from the model's own weights")
    p.add_argument("--seeds", type=int, default=3,
                   help="independent draws of the measurement (default: 3; >= 2 for the "
                        "95%% intervals)")
    p.add_argument("--batch", type=int, default=None,
                   help="rows of each measured batch (default: the first --input-shape entry)")
    p.add_argument("--format", choices=_FORMATS, default="table",
                   help="what is printed on stdout (default: table)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="also write FILE, format from its suffix: .html, .json, .md or .txt")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no 'wrote FILE' note on stderr")
    p.set_defaults(func=run_model)
    return p


def run_model(args: argparse.Namespace) -> int:
    """Run ``varprop model`` (module doc); usage errors raise :class:`UsageError`."""
    shape = _check_shape(args.input_shape)
    seeds = check_positive("--seeds", args.seeds)
    batch = shape[0] if args.batch is None else args.batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise UsageError(f"the measured batch must be >= 2 (a variance needs two samples), got "
                         f"{batch}: give --input-shape a batch of 2 or more, or --batch")
    out = OutputPath(args.out, "--out", ("html", "json", "markdown", "table")) \
        if args.out else None
    if out is not None and out.format == "html":
        from ..reporting.commands import _needs_matplotlib
        _needs_matplotlib({"html"})
    init = _check_init(args.init)
    model, path, factory = _load(args.spec)
    bar = Progress(1.0, "measuring", enabled=False)

    def tick(done: int, total: int) -> None:
        bar.advance(done / total - bar.done)

    from ..keras.command import is_keras_model
    if is_keras_model(model):
        from ..keras.command import examine, layer_classes
        bar = Progress(1.0, "measuring", enabled=not args.quiet and _isatty(sys.stderr))
        try:
            result, findings, cmp = examine(model, factory, shape, seeds=seeds, batch=batch,
                                            init=init, progress=tick)
        finally:
            bar.close()
        doc = _Doc(model, path, factory, shape, batch, seeds, init, findings, result, cmp,
                   "Keras", layer_classes(result))
        return _emit(doc, args, out)
    from . import audit, compare, trace
    from ._example import example_input  # token indices where an Embedding reads the input
    example = example_input(model, shape)
    kind = getattr(args, "input_kind", "auto")
    try:
        # torch.fx's shape propagation prints the model's traceback itself: one line here
        with contextlib.redirect_stderr(io.StringIO()):
            result = trace(model, example, init=init, input_kind=kind)
    except (TypeError, ValueError) as exc:
        if "does not run on" in str(exc):
            raise UsageError(f"--input-shape {' '.join(map(str, shape))}: {factory}() does "
                             f"not run on it: {_first_line(_root(exc))}") from None
        message = str(exc).replace("input_kind=", "--input-kind ")  # the option's name
        raise UsageError(f"varprop cannot trace {factory}(): {message}") from None
    findings = sorted(audit(model, example, input_kind=kind), key=lambda f: not f.harmful)
    bar = Progress(1.0, "measuring", enabled=not args.quiet and _isatty(sys.stderr))
    try:
        cmp = compare(model, example, seeds=seeds, batch=batch, init=init, progress=tick,
                      input_kind=kind)
    finally:
        bar.close()
    doc = _Doc(model, path, factory, shape, batch, seeds, init, findings, result, cmp,
               "PyTorch", [type(model.get_submodule(n)).__name__ for n in result.names])
    return _emit(doc, args, out)


def _emit(doc: "_Doc", args: argparse.Namespace, out: "OutputPath | None") -> int:
    """Print ``doc`` in ``--format`` and write ``--out``."""
    formats = {args.format} | ({out.format} if out else set())
    rendered = {fmt: doc.render(fmt) for fmt in formats}
    if out is not None:
        out.write(rendered[out.format])
        if not args.quiet:
            print(f"varprop: wrote {out}", file=sys.stderr)
    sys.stdout.write(rendered[args.format])
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------------------- checks
def _check_shape(shape: list[int]) -> tuple[int, ...]:
    if not 2 <= len(shape) <= 4 or any(s < 1 for s in shape):
        raise UsageError(f"--input-shape takes 2 to 4 positive sizes, batch first: (batch, "
                         f"features), (batch, C, L) or (batch, C, H, W); got "
                         f"{' '.join(map(str, shape))}")
    return tuple(shape)


def _check_init(name: "str | None") -> "str | None":
    if name is None:
        return None
    from ..initializers import available_initializers, resolve_name
    from ..reporting.output import resolve_names
    (canonical,) = resolve_names("initializer", [name], available_initializers(), resolve_name,
                                 available_initializers(aliases=True))
    return canonical


def _root(exc: BaseException) -> BaseException:
    """The innermost cause of ``exc`` (the model's own error behind fx's wrappers)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _load(spec: str) -> tuple[Any, Path, str]:
    """(model, file, factory name) of ``FILE.py:FACTORY``; every failure a UsageError."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise UsageError(f"expected FILE.py:FACTORY (a file and the function in it that "
                         f"returns the model), got {spec!r}")
    path = Path(file).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UsageError(f"model file {file!r} {what}")
    if not name.isidentifier():
        raise UsageError(f"FACTORY must be a Python name, got {name!r}")
    module = _import(path)
    factory = getattr(module, name, None)
    if factory is None:
        defined = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                   and getattr(v, "__module__", None) == module.__name__]
        close = difflib.get_close_matches(name, defined, n=3)
        hint = (f"; did you mean {' or '.join(map(repr, close))}?" if close else
                f"; it defines {', '.join(map(repr, defined))}" if defined else
                "; it defines no function or class")
        raise UsageError(f"{str(path)!r} has no {name!r}{hint}")
    if not callable(factory):
        raise UsageError(f"{name!r} in {str(path)!r} is not callable (of type "
                         f"{type(factory).__name__}): give a function or class that returns "
                         "the model")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code: one line, with where
        raise UsageError(f"{name}() raised {type(exc).__name__}: {_first_line(exc)}"
                         f"{_where(exc, path)}") from None
    torch = sys.modules.get("torch")
    from ..keras.command import is_keras_model
    if not (torch is not None and isinstance(model, torch.nn.Module)) and \
            not is_keras_model(model):
        raise UsageError(f"{name}() returned {type(model).__name__}, not a torch.nn.Module "
                         "or a keras.Model")
    return model, path, name


# the frameworks a model file may import, and what to install (Keras's default backend
# is TensorFlow: a missing tensorflow, jax or torch means KERAS_BACKEND is not set)
_BACKEND = "Keras's backend set before keras is imported: KERAS_BACKEND=torch"
_EXTRAS = {"torch": "PyTorch: pip install 'varprop[torch]'",
           "keras": "Keras: pip install 'varprop[keras]' and KERAS_BACKEND=torch",
           "tensorflow": _BACKEND, "jax": _BACKEND}


def _import(path: Path) -> Any:
    """The file as a module; its folder on ``sys.path`` while it runs, so that it can
    import its neighbours."""
    name = f"_varprop_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {str(path)!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRAS:
            raise UsageError(f"{str(path)!r} imports {missing}: varprop model needs "
                             f"{_EXTRAS[missing]}") from None
        raise UsageError(f"importing {str(path)!r} failed: {type(exc).__name__}: "
                         f"{_first_line(exc)}{_where(exc, path)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: one line, with where
        raise UsageError(f"importing {str(path)!r} failed: {type(exc).__name__}: "
                         f"{_first_line(exc)}{_where(exc, path)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _where(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    return f" (line {frames[-1].lineno})" if frames else ""


# ----------------------------------------------------------------------------- standalone
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def main(argv: "list[str] | None" = None) -> int:
    """``python -m varprop.torch.command model FILE.py:FACTORY ...``, until ``varprop``
    itself wires the command in: usage errors are one line on stderr, status 2."""
    parser = _Parser(prog="varprop")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                required=True)
    add_model_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        sys.stderr.write(f"varprop {args.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
