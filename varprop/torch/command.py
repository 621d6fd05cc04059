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
import html
import importlib.util
import io
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from ..reporting.output import OutputPath, Progress, UsageError, _isatty, check_positive

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
    try:
        # torch.fx's shape propagation prints the model's traceback itself: one line here
        with contextlib.redirect_stderr(io.StringIO()):
            result = trace(model, example, init=init)
    except (TypeError, ValueError) as exc:
        if "does not run on" in str(exc):
            raise UsageError(f"--input-shape {' '.join(map(str, shape))}: {factory}() does "
                             f"not run on it: {_first_line(_root(exc))}") from None
        raise UsageError(f"varprop cannot trace {factory}(): {exc}") from None
    findings = sorted(audit(model, example), key=lambda f: not f.harmful)  # stable
    bar = Progress(1.0, "measuring", enabled=not args.quiet and _isatty(sys.stderr))
    try:
        cmp = compare(model, example, seeds=seeds, batch=batch, init=init, progress=tick)
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


# ----------------------------------------------------------------------------- output
class _Doc:
    """What the command found, rendered as text, Markdown, JSON or HTML."""

    def __init__(self, model: Any, path: Path, factory: str, shape: tuple, batch: int,
                 seeds: int, init: "str | None", findings: list, result: Any, cmp: Any,
                 framework: str, classes: list[str]):
        self.framework, self.classes = framework, classes
        self.model, self.path, self.factory, self.shape = model, path, factory, shape
        self.batch, self.seeds, self.init, self.findings = batch, seeds, init, findings
        self.result, self.cmp = result, cmp
        self.notes = list(result.notes) + list(cmp.empirical.meta.get("notes", []))
        if init is not None and findings:
            self.notes.append(f"the audit reads the model as {factory}() builds it; the "
                              f"comparison re-draws its weights with {init}")

    def render(self, fmt: str) -> str:
        return {"table": self.text, "markdown": self.markdown, "json": self.json,
                "html": self.html}[fmt]()

    def settings(self) -> str:
        weights = (f"weights re-drawn with {self.init} (biases zero)" if self.init else
                   "weights re-drawn from the laws read off the model's own")
        return (f"{type(self.model).__name__} from {self.path}:{self.factory}, input "
                f"{self.shape}, batch {self.batch}, {self.seeds} seed"
                f"{'s' if self.seeds != 1 else ''}; {weights}")

    def mode(self) -> str:
        return (f"measured: the {self.framework} model itself; "
                f"{self.cmp.empirical.meta['modes']}")

    def audit_head(self) -> str:
        harmful = sum(f.harmful for f in self.findings)
        n = len(self.findings)
        return (f"audit: {n} finding{'s' if n != 1 else ''}, {harmful} harmful" if n else
                "audit: nothing found")

    def layer_rows(self) -> list[tuple[str, str, str, str]]:
        """(index, module, its class, weight law) per record."""
        rows = []
        for i, (name, laws, cls) in enumerate(zip(self.result.names, self.result.laws,
                                                  self.classes)):
            rows.append((str(i), name, cls, f"{laws[0].label} ({laws[0].source})"))
        return rows

    def text(self) -> str:
        lines = [f"varprop model: {self.settings()}", self.mode(), "", self.audit_head()]
        for f in self.findings:
            lines.append(f"  {'harmful ' if f.harmful else 'harmless'}  {f.layer}: "
                         f"{f.kind}: {f.message}")
            lines.append(f"            fix: {f.fix}")
        lines += ["", "theory vs measured (per weighted layer; measured: mean ± 95% "
                      "interval over seeds)", self.cmp.table(), "", "layers:"]
        rows = self.layer_rows()
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        lines += [f"  {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"
                  for r in rows]
        if self.notes:
            lines += ["notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _cells(self) -> list[list[str]]:
        """Per layer: index, module, then theory and measured of Var[z], Var[a], Var[dL/dz]
        and the test of z_var/grad_var."""
        from ..reporting.text import fmt, fmt_ci
        tests = {(r["layer"], r["field"]): r["test"] for r in self.cmp.rows if r["test"]}
        out = []
        for (i, name, _, _), a, e in zip(self.layer_rows(), self.cmp.analytic,
                                         self.cmp.empirical):
            row = [i, name]
            for f in ("z_var", "a_var", "grad_var"):
                row += [fmt(getattr(a, f)), fmt_ci(getattr(e, f), getattr(e, f + "_ci"))]
            row.append(", ".join(f"{f}: {tests[(a.index, f)]}" for f in ("z_var", "grad_var")
                                 if (a.index, f) in tests))
            out.append(row)
        return out

    _HEAD = ["layer", "module", "Var[z] theory", "Var[z] measured", "Var[a] theory",
             "Var[a] measured", "Var[dL/dz] theory", "Var[dL/dz] measured", "test"]

    def verdict_lines(self) -> list[str]:
        lines = [f"theory: {self.cmp.analytic_verdict.message}",
                 f"measured: {self.cmp.empirical_verdict.message}"]
        if self.cmp.agreement is not None:
            lines.append(f"test: {self.cmp.agreement.summary()}")
        return lines

    def markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|")

        lines = [f"# varprop model: {self.factory}()", "", esc(self.settings()) + ".",
                 "", esc(self.mode()) + ".", "", f"## {self.audit_head().capitalize()}", ""]
        lines += [f"- **{'harmful' if f.harmful else 'harmless'}** `{f.layer}` {f.kind}: "
                  f"{esc(f.message)} Fix: {esc(f.fix)}" for f in self.findings]
        lines += ["", "## Theory vs measured", "", "| " + " | ".join(self._HEAD) + " |",
                  "|" + "|".join("---:" if k not in (1, 8) else ":---"
                                 for k in range(len(self._HEAD))) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self._cells()]
        lines += [""] + [f"- {esc(v)}" for v in self.verdict_lines()]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {esc(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        from .. import __version__
        cmp = self.cmp
        return {
            "varprop": __version__, "command": "model",
            "model": {"file": str(self.path), "factory": self.factory,
                      "class": type(self.model).__name__, "framework": self.framework},
            "input_shape": list(self.shape), "batch": self.batch, "seeds": self.seeds,
            "init": self.init, "modes": cmp.empirical.meta["modes"],
            "audit": [{"layer": f.layer, "kind": f.kind, "harmful": f.harmful,
                       "message": f.message, "fix": f.fix} for f in self.findings],
            "layers": [{"index": int(i), "module": name, "class": cls, "law": law}
                       for i, name, cls, law in self.layer_rows()],
            "covered": self.result.covered, "notes": self.notes,
            "comparison": {"network": cmp.network, "disagrees": cmp.disagrees,
                           "theory_verdict": cmp.analytic_verdict.message,
                           "measured_verdict": cmp.empirical_verdict.message,
                           "agreement": None if cmp.agreement is None else cmp.agreement.to_dict(),
                           "rows": cmp.rows},
            "theory": cmp.analytic.to_dict(), "measured": cmp.empirical.to_dict(),
        }

    def json(self) -> str:
        from ..reporting.commands import _json_text
        return _json_text(self.to_dict())

    def html(self) -> str:
        from ..reporting.html import figure_html, page
        e = html.escape
        items = "".join(
            f"<li><b>{'harmful' if f.harmful else 'harmless'}</b> <code>{e(f.layer)}</code> "
            f"{e(f.kind)}: {e(f.message)}<br><i>Fix:</i> {e(f.fix)}</li>" for f in self.findings)
        audit = f"<ul>{items}</ul>" if items else "<p>Nothing found.</p>"
        head = "".join(f'<th{" class=l" if k in (1, 8) else ""}>{e(h)}</th>'
                       for k, h in enumerate(self._HEAD))
        body = "\n".join("<tr>" + "".join(
            f'<td{" class=l" if k in (1, 8) else ""}>{e(c)}</td>' for k, c in enumerate(row))
            + "</tr>" for row in self._cells())
        table = (f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
                 + "".join(f"<p>{e(v)}</p>" for v in self.verdict_lines()))
        names = list(self.result.names)
        sections = [("audit", self.audit_head().capitalize(), audit),
                    ("table", "Theory vs measured", table)]
        for sid, field, title, what in (
                ("forward", "z_var", "Forward signal", "the pre-activations z"),
                ("backward", "grad_var", "Backward gradient", "dL/dz for a standard normal "
                 "gradient at the output (read it from the right)")):
            png = _variance_png(self.cmp, field, names)
            sections.append((sid, title, figure_html(
                png, f"{field} against layer", f"Variance of {e(what)} at each weighted "
                "layer. Line: mean-field theory; points: the model measured (mean over "
                "seeds); band: the 95% interval over seeds.")))
        if self.notes:
            sections.append(("notes", "Notes", "<ul>" + "".join(
                f"<li>{e(n)}</li>" for n in self.notes) + "</ul>"))
        header = (f"<h1>varprop model: {e(self.factory)}()</h1><p>{e(self.settings())}.</p>"
                  f"<p>{e(self.mode())}.</p>")
        return page(f"varprop model {self.factory}", header, sections,
                    "varprop model: theory (mean field) against the model itself")


def _variance_png(cmp: Any, field: str, names: list[str]) -> bytes:
    """``field`` against layer, theory as a line, measurement as points with a band."""
    import numpy as np

    from .. import plots
    n = len(cmp.analytic)
    fig = plots._figure(min(plots.PAGE_WIDTH, 4.0 + 0.28 * n), 4.2)
    ax = fig.subplots()
    x = np.arange(n)
    theory = plots._positive(cmp.analytic.column(field))
    m, ci = cmp.empirical.column(field), cmp.empirical.column(field + "_ci")
    ax.plot(x, theory, "-", color="#1f77b4", lw=1.6, label="theory (mean field)")
    ax.plot(x, plots._positive(m), "o", color="#ff7f0e", ms=4.5, mec="none",
            label="measured (mean of seeds)")
    if np.any(np.isfinite(ci)):
        lo, hi = plots._log_band(m, ci)
        ax.fill_between(x, lo, hi, color="#ff7f0e", alpha=0.2, lw=0, label="95% band")
    ax.set_yscale("log")
    values = np.concatenate([theory, plots._positive(m)])
    values = values[np.isfinite(values)]
    plots._tame_log_axis(ax, [float(values.min()), float(values.max())] if values.size else None)
    if n <= 48:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7.5)
    ax.set_xlabel("weighted layer")
    ax.set_ylabel(plots._FIELD_LABEL[field][1])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8.5, frameon=False)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.96, bottom=0.32 if n <= 48 else 0.14)
    return plots.figure_bytes(fig, "png", dpi=100)


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
