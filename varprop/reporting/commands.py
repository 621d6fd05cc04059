"""The implementations of ``varprop report``, ``phase``, ``init`` and ``experiment``.

Each ``run_*`` takes the parsed arguments, checks everything a user can get wrong before
computing (raising :class:`~.output.UsageError`), computes, renders every requested
output in memory, writes the file atomically and only then prints the result on stdout.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shlex
import sys
from argparse import Namespace
from typing import Any

import numpy as np

from .._json import json_clean
from .._validate import checked, finite_real, non_negative_int
from .output import OutputPath, Progress, UsageError, _isatty, check_positive, resolve_names
from .results import (CNN_DEFAULTS, DEFAULT_ACTIVATIONS, DEFAULT_INITIALIZERS, GATED_ARCHS,
                      GATED_DEFAULTS, GATED_INITIALIZERS, GATED_LAYOUTS, GATED_PRESETS,
                      RNN_DEFAULTS, SPATIAL_ARCHS, ReportSettings)

__all__ = ["run_report", "run_phase", "run_init", "run_experiment",
           "DEFAULT_BATCH", "DEFAULT_SEEDS"]

DEFAULT_BATCH = ReportSettings.batch
DEFAULT_SEEDS = ReportSettings.seeds


def _version() -> str:
    from .. import __version__

    return __version__


def _command_line() -> str:
    return "varprop " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _json_text(doc: dict[str, Any]) -> str:
    return json.dumps(json_clean(doc), indent=2, allow_nan=False) + "\n"


def _split_names(values: list[str] | None, option: str = "") -> list[str]:
    """The names of a ``nargs='+'`` option, commas or spaces between them; given but
    empty (``-i ''``, ``-a ','``) is a usage error, not a silent fallback to the defaults."""
    out: list[str] = []
    for v in values or []:
        out += [p for p in v.replace(",", " ").split() if p]
    if values is not None and not out:
        raise UsageError(f"{option} got no names ({' '.join(map(repr, values))}); give at least "
                         "one, or leave the option out for the defaults")
    return out


#: The largest ``--bias-var``: beyond it the biases (std 1e6) overflow float32 sums of
#: squares in the measured networks, and every number of the report is inf or nan.
MAX_BIAS_VAR = 1e12

#: Initializers ``report`` cannot use, and why: it builds dense square layers with each
#: initializer's default parameters and has no option to pass others.
#: Initializers that draw only dense (2-D) weights: not for the convolutions of
#: ``--arch cnn`` and ``seeds_cnn`` (the default list leaves them out there).
DENSE_ONLY = {"identity": "it makes 2-D (dense) weights only; its convolution analogue, "
                          "dirac, has no i.i.d. moments for the per-pixel theory"}

REPORT_UNSUITABLE = {
    "sparse": "it needs a parameter (sparsity) that report cannot pass; try "
              "'varprop init sparse --param sparsity=0.1 --shape 512 512'",
    "torch_default_bias": "it draws biases and needs a parameter (fan_in) that report "
                          "cannot pass",
    "dirac": "it makes convolution kernels (3-D to 5-D), not the dense square weights "
             "report measures; use identity",
    "delta_orthogonal": "it makes convolution kernels (3-D to 5-D), not the dense square "
                        "weights report measures; use orthogonal",
}


def _activation_names(given: list[str]) -> list[str]:
    """Canonical activation names, aliases (``swish`` = ``silu``) accepted."""
    from ..activations import ACTIVATION_NAMES, get_activation

    def resolve(name: str) -> str:
        return get_activation(name).name

    return resolve_names("activation", given, ACTIVATION_NAMES, resolve)


def _check_memory(need: float, what: str, advice: str) -> None:
    mem = _memory_bytes()
    if not need <= 0.8 * mem:
        raise UsageError(f"{what} needs about {_gb(need)}, more than this machine's "
                         f"{_gb(mem)}; {advice}")


def _progress(args: Namespace, label: str) -> Progress:
    return Progress(1.0, label, enabled=not args.quiet and _isatty(sys.stderr))


def _out_path(args: Namespace, default: str, allowed: tuple[str, ...]) -> OutputPath | None:
    if args.no_out:
        if args.out is not None:
            raise UsageError("--out and --no-out contradict each other; give one of them")
        return None
    return OutputPath(args.out if args.out is not None else default, "--out", allowed)


def _needs_matplotlib(formats: set[str]) -> None:
    if formats & {"html", "png", "svg"}:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("the figures of the html/png/svg output need matplotlib: "
                             "pip install 'varprop[plot]' (or use --format table --no-out)") from None


def _memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return math.inf


def _gb(n: float) -> str:
    if n >= 2**50:
        return f"{n / 2**50:.3g} PB"
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _emit(text: str | None, out: OutputPath | None, data: Any, quiet: bool) -> None:
    """Write the file (atomically) first, then stdout: a failed write prints nothing."""
    if out is not None:
        out.write(data)
        if not quiet:
            print(f"varprop: wrote {out}", file=sys.stderr)
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


# ----------------------------------------------------------------------------- report
def report_settings(args: Namespace) -> ReportSettings:
    """Check ``varprop report``'s arguments and turn them into :class:`ReportSettings`."""
    from .._threads import resolve_n_threads
    from .._validate import variance_batch
    from ..initializers import available_initializers, resolve_name
    from .compute import estimate_report_bytes

    arch = getattr(args, "arch", "mlp") or "mlp"
    gated = arch in GATED_ARCHS
    inits = _split_names(args.initializers, "--initializers") or [
        n for n in (GATED_INITIALIZERS if gated else DEFAULT_INITIALIZERS)
        if arch not in SPATIAL_ARCHS or n not in DENSE_ONLY]
    acts = _split_names(args.activations, "--activations") or list(
        GATED_LAYOUTS if gated else DEFAULT_ACTIVATIONS)
    usable = [n for n in available_initializers() if n not in REPORT_UNSUITABLE]
    presets = [n for n in inits if gated and n.lower() in GATED_PRESETS]
    named = resolve_names("initializer", [n for n in inits if n not in presets], usable,
                          resolve_name, available_initializers(aliases=True))
    # the rows in the order given, the presets among them
    by_given = dict(zip([n for n in inits if n not in presets], named))
    inits = list(dict.fromkeys(n.lower() if n in presets else by_given[n] for n in inits))
    for name in inits:
        if name in REPORT_UNSUITABLE:
            raise UsageError(f"report cannot use initializer {name!r}: {REPORT_UNSUITABLE[name]}")
        if arch in SPATIAL_ARCHS and name in DENSE_ONLY:
            raise UsageError(f"--arch {arch} cannot use initializer {name!r}: "
                             f"{DENSE_ONLY[name]}")
    if gated:  # the "activations" of a gated report are the frameworks' weight layouts
        acts = resolve_names(f"--arch {arch} layout (its gates are sigmoid and tanh; "
                             "--activations picks the weight layouts)", acts,
                             list(GATED_LAYOUTS))
    else:
        acts = _activation_names(acts)
    defaults = ReportSettings()
    image = defaults.image if getattr(args, "image", None) is None else \
        check_positive("--image", args.image)
    if arch != "cnn" and getattr(args, "image", None) is not None:
        raise UsageError("--image applies to --arch cnn only")
    if arch == "seeds_cnn":
        given = [f"--{n}" for n in ("depth", "width") if getattr(args, n) is not None]
        if given:
            raise UsageError(f"--arch seeds_cnn is a fixed network: drop {' and '.join(given)}")
        args.depth, args.width = 3, 16  # its weighted layers and first channels
    sizes = {"cnn": CNN_DEFAULTS, "rnn": RNN_DEFAULTS, "lstm": GATED_DEFAULTS,
             "gru": GATED_DEFAULTS}.get(
        arch, {"depth": defaults.depth, "width": defaults.width, "batch": DEFAULT_BATCH})
    if args.depth is None:
        args.depth = sizes["depth"]
    if args.width is None:
        args.width = sizes["width"]
    check_positive("--depth", args.depth)
    check_positive("--width", args.width)
    if args.analytic_only:
        given = [f"--{n}" for n in ("batch", "seeds", "threads") if getattr(args, n) is not None]
        if given:
            raise UsageError(f"--analytic-only measures nothing, so {' and '.join(given)} "
                             "would be ignored; drop one or the other")
    default_batch = CNN_DEFAULTS["batch"] if arch == "seeds_cnn" else sizes["batch"]
    batch = default_batch if args.batch is None else checked(variance_batch, UsageError,
                                                             "--batch", args.batch)
    seeds = DEFAULT_SEEDS if args.seeds is None else check_positive("--seeds", args.seeds)
    if args.threads is not None:
        check_positive("--threads", args.threads)
        try:
            resolve_n_threads(args.threads)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc).replace("n_threads", "--threads")) from None
    bias_var = checked(finite_real, UsageError, "--bias-var", args.bias_var, non_negative=True)
    if bias_var > MAX_BIAS_VAR:
        raise UsageError(f"--bias-var must be <= {MAX_BIAS_VAR:g}; got {args.bias_var!r} (larger "
                         "biases overflow the float32 networks: every result would be inf or nan)")
    settings = ReportSettings(tuple(inits), tuple(acts), args.depth, args.width, batch, seeds,
                              float(bias_var), 1.0, bool(args.analytic_only), args.threads,
                              arch=arch, image=image)
    sizes = f"--depth {args.depth}, --width {args.width}" + (
        "" if args.analytic_only else f", --batch {batch}, --seeds {seeds}")
    _check_memory(estimate_report_bytes(settings), f"{sizes} for {len(inits) * len(acts)} networks",
                  "use a smaller depth, width, batch or fewer seeds, initializers or activations"
                  + ("" if args.analytic_only else ", or --analytic-only"))
    return settings


def run_report(args: Namespace) -> int:
    settings = report_settings(args)
    out = _out_path(args, "varprop-report.html", ("html", "json", "markdown", "table", "png", "svg"))
    _needs_matplotlib({args.format} | ({out.format} if out else set()))
    from .compute import build_report
    from .figures import FigureWorker

    formats = {args.format} | ({out.format} if out else set())
    bar = _progress(args, "report")
    worker = FigureWorker(enabled="html" in formats)
    try:
        worker.submit("weights", settings)  # both run while the parent analyzes
        worker.submit("warmup", None)
        report = build_report(settings, progress=lambda f, label: bar.advance(f - bar.done, label),
                              command=_command_line(), version=_version())
        bar.set_label("rendering")
        pngs = None
        if "html" in formats:
            for name in ("forward", "backward", "verdicts"):
                worker.submit(name, report)
            pngs = {name: worker.result(name, report)
                    for name in ("forward", "backward", "verdicts")}
            pngs["weights"] = worker.result("weights", settings)
        rendered = {fmt: _render_report(report, fmt, pngs) for fmt in formats}
    finally:
        worker.close()
        bar.close()
    _emit(rendered[args.format], out, rendered[out.format] if out else None, args.quiet)
    return 0


def _render_report(report: Any, fmt: str, pngs: dict[str, bytes] | None = None) -> Any:
    if fmt == "table":
        from .text import report_table
        return report_table(report)
    if fmt == "markdown":
        from .text import report_markdown
        return report_markdown(report)
    if fmt == "json":
        return _json_text(report.to_dict())
    if fmt == "html":
        from .html import report_html
        return report_html(report, pngs)
    from .. import plots  # png / svg: the key figure, variance against depth (time)
    from .figures import report_variance_figure
    return plots.figure_bytes(report_variance_figure(report, "z_var"), fmt, dpi=110)


# ----------------------------------------------------------------------------- phase
def run_phase(args: Namespace) -> int:
    from .phase import MAX_RESOLUTION, estimate_phase_bytes

    (act,) = _activation_names([args.activation])
    sb = tuple(args.sigma_b2)
    for name, pair in (("--sigma-b2", sb), ("--sigma-w2", args.sigma_w2)):
        if pair is None:
            continue
        lo, hi = pair
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise UsageError(f"{name} needs two finite numbers 0 <= LOW < HIGH, got {lo:g} {hi:g}")
    res = args.resolution
    if len(res) == 1:
        res = [res[0], max(3, int(round(res[0] * 2 / 3)))]
    if len(res) != 2 or not all(3 <= r <= MAX_RESOLUTION for r in res):
        raise UsageError(f"--resolution takes one or two grid sizes between 3 and "
                         f"{MAX_RESOLUTION}, got {' '.join(map(str, args.resolution))}")
    _check_memory(estimate_phase_bytes((res[0], res[1])),
                  f"--resolution {res[0]} {res[1]} ({res[0] * res[1]} grid points)",
                  "use a coarser grid")
    out = _out_path(args, f"varprop-phase-{act}.html", ("html", "json", "markdown", "table",
                                                       "png", "svg"))
    _needs_matplotlib({args.format} | ({out.format} if out else set()))
    from .phase import phase_diagram

    bar = _progress(args, "phase diagram")
    try:
        diagram = phase_diagram(act, sigma_w2=tuple(args.sigma_w2) if args.sigma_w2 else None,
                                sigma_b2=sb, resolution=(res[0], res[1]),
                                progress=lambda f, label: bar.advance(f - bar.done, label))
        diagram.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        diagram.command, diagram.version = _command_line(), _version()
        rendered = {fmt: _render_phase(diagram, fmt)
                    for fmt in {args.format} | ({out.format} if out else set())}
    finally:
        bar.close()
    _emit(rendered[args.format], out, rendered[out.format] if out else None, args.quiet)
    return 0


def _render_phase(diagram: Any, fmt: str) -> Any:
    if fmt in ("table", "markdown"):
        from .summaries import phase_text
        return phase_text(diagram, markdown=fmt == "markdown")
    if fmt == "json":
        return _json_text(diagram.to_dict())
    if fmt == "html":
        from .html import phase_html
        return phase_html(diagram)
    from .. import plots
    return plots.figure_bytes(plots.phase_figure(diagram), fmt, dpi=110)


# ----------------------------------------------------------------------------- init
def _param_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            value = conv(text)
        except ValueError:
            continue
        if conv is int and abs(value) >= 2**53:  # beyond exact float: treat as a float
            return float(value) if abs(value) < 2**1024 else math.inf
        return value
    return text


def _first_line(exc: BaseException, params: dict[str, Any]) -> str:
    """The first line of ``exc``; an overflow names the parameters that caused it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ArithmeticError):
        given = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "the defaults"
        return f"the parameters ({given}) overflow: {text}"
    return text


def run_init(args: Namespace) -> int:
    from ..initializers import available_initializers, get, resolve_name

    (name,) = resolve_names("initializer", [args.name], available_initializers(), resolve_name,
                            available_initializers(aliases=True))
    params: dict[str, Any] = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param takes KEY=VALUE (e.g. --param stddev=0.1), got {item!r}")
        params[key.strip()] = val = _param_value(value)
        if isinstance(val, float) and not math.isfinite(val):
            shown = value.strip() if len(value.strip()) <= 40 else value.strip()[:20] + "..."
            raise UsageError(f"--param {key.strip()} must be a finite number; got {shown!r}"
                             f"{' (too large for a float)' if val == val else ''}")
    try:
        init = get(name, **params)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise UsageError(_first_line(exc, params)) from None
    shape = tuple(args.shape)
    for s in shape:
        check_positive("--shape entries", s)
    dtype = np.dtype(args.dtype)
    n = math.prod(shape)
    if n * dtype.itemsize > 0.5 * _memory_bytes():
        raise UsageError(f"--shape {' '.join(map(str, shape))} needs {_gb(n * dtype.itemsize)}, "
                         f"more than half of this machine's {_gb(_memory_bytes())}")
    checked(non_negative_int, UsageError, "--seed", args.seed)
    out = None
    if args.out is not None:
        out = OutputPath(args.out, "--out", ("npy",))
    try:
        moments = init.moments(shape)
        w = init(shape, seed=args.seed, dtype=dtype)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise UsageError(f"{name} cannot fill shape {shape}: {_first_line(exc, params)}") from None
    from .summaries import init_summary, init_text

    doc = init_summary(name, init, shape, args.seed, dtype, moments, w,
                       str(out) if out else None, _version())
    text = _json_text(doc) if args.format == "json" else init_text(doc, args.format == "markdown")
    _emit(text, out, (lambda fh: np.save(fh, w, allow_pickle=False)) if out else None, args.quiet)
    return 0


# ----------------------------------------------------------------------------- experiment
#: The options of ``varprop experiment`` that belong to one experiment: option -> keyword
#: of that experiment's function (varprop.experiments).
EXPERIMENT_OPTIONS = {
    "cnn": {"data": "data", "max_train": "max_train"},
    "rnn": {"quick": "quick", "steps": "steps", "epochs": "epochs", "seeds": "seeds"},
}


def _experiment_options(name: str, args: Namespace) -> dict:
    """The keywords given on the command line for experiment ``name``; a UsageError for
    an option of another experiment or an out-of-range value."""
    extra = {}
    for owner, options in EXPERIMENT_OPTIONS.items():
        for option, key in options.items():
            value = getattr(args, option, None)
            if value is None or value is False:
                continue
            if name != owner:
                raise UsageError(f"--{option.replace('_', '-')} applies to the {owner} "
                                 f"experiment only")
            extra[key] = value
    for option in ("max_train", "steps", "epochs", "seeds"):
        if option in extra:
            check_positive(f"--{option.replace('_', '-')}", extra[option])
    if extra.get("steps", 2) < 2:
        raise UsageError("--steps must be >= 2 (a marker in each half of the sequence)")
    if "seeds" in extra:
        extra["seeds"] = tuple(range(extra["seeds"]))
    return extra


def run_experiment(args: Namespace) -> int:
    from ..experiments import EXPERIMENTS, run_experiment as _run

    (name,) = resolve_names("experiment", [args.name.replace("_", "-")], list(EXPERIMENTS))
    out = OutputPath(args.out, "--out", ("png", "svg", "pdf")) if args.out else None
    if out is not None:
        _needs_matplotlib({"png"})
    progress = (lambda msg: print(msg, file=sys.stderr, flush=True)) \
        if not args.quiet and _isatty(sys.stderr) else None
    extra = _experiment_options(name, args)
    result = _run(name, progress=progress, **extra)
    text = result.table()
    if out is not None:
        out.write_path(result.plot)
        if not args.quiet:
            print(f"varprop: wrote {out}", file=sys.stderr)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    return 0
