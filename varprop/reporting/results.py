"""The report's data: settings, one :class:`Entry` per initializer x activation, and the
JSON document (``varprop/schemas/report.schema.json``) they turn into."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._json import json_number
from ..agreement import ALPHA, POWER, Agreement
from ..compare import Verdict
from ..profile import Profile

__all__ = ["DEFAULT_INITIALIZERS", "DEFAULT_ACTIVATIONS", "CNN_DEFAULTS", "RNN_DEFAULTS",
           "GATED_DEFAULTS", "GATED_ARCHS", "GATED_PRESETS", "GATED_INITIALIZERS",
           "GATED_LAYOUTS", "TIME_ARCHS", "SPATIAL_ARCHS", "ReportSettings", "Entry",
           "Report", "Ratios", "REPORT_SCHEMA_VERSION", "verdict_dict"]

#: Version of the JSON document of :meth:`Report.to_dict` (``report.schema.json``). 2: a
#: result's ``agree`` is the log-space test (docs/comparison.md), no longer the verdicts'
#: match (now ``verdicts_agree``); results carry ``agreement``, the document a summary.
REPORT_SCHEMA_VERSION = 2

#: The initializers of the default report, in the order they are shown.
DEFAULT_INITIALIZERS = ("zeros", "ones", "random_normal", "random_uniform", "truncated_normal",
                        "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
                        "lecun_normal", "lecun_uniform", "orthogonal", "identity")
#: The activations of the default report.
DEFAULT_ACTIVATIONS = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu", "gelu")


#: The report's sizes for ``--arch cnn`` when not given (a 512-channel, 30-layer CNN
#: would take hours to measure): 10 convolutions of 64 channels on 8x8 images.
CNN_DEFAULTS = {"depth": 10, "width": 64, "batch": 32}
#: The report's convolutional architectures (per-pixel maps, no dense-only initializers).
SPATIAL_ARCHS = ("cnn", "seeds_cnn")
#: The report's sizes for ``--arch rnn`` when not given: 50 time steps of 128 units.
RNN_DEFAULTS = {"depth": 50, "width": 128, "batch": 64}
#: The gated cells of ``--arch lstm`` and ``--arch gru`` (docs/gated.md).
GATED_ARCHS = ("lstm", "gru")
#: The report's architectures whose rows are time steps.
TIME_ARCHS = ("rnn",) + GATED_ARCHS
#: The report's sizes for ``--arch lstm``/``gru`` when not given: 30 time steps of 64
#: units (and 64 input features). The GRU's mean field integrates its candidate by a
#: 40 x 40 Gauss-Hermite rule at every step (docs/gated.md, section 2.2), 0.05 to 0.1 s a
#: step on a shared two-core machine, so its 8 default networks take 10 to 20 s of the
#: report; measuring them (batch 64 x 3 seeds) about a second.
GATED_DEFAULTS = {"depth": 30, "width": 64, "batch": 64}
#: The gated report's columns: each framework's weight layout (docs/gated.md, section 1).
GATED_LAYOUTS = ("keras", "torch")
#: The gated report's rows that are not registry initializers: the layout's framework
#: defaults (Keras: glorot_uniform / orthogonal / zeros with unit_forget_bias for the
#: LSTM; PyTorch: U(-1/sqrt(H), 1/sqrt(H)) everywhere), and those defaults with chrono
#: gate biases (Tallec and Ollivier 2018) for T_max = the report's time steps.
GATED_PRESETS = ("default", "chrono")
#: The gated report's default rows: the presets, then registry initializers drawing the
#: input and recurrent kernels (biases zero, or N(0, --bias-var); the LSTM's keras
#: layout keeps Keras's unit_forget_bias).
GATED_INITIALIZERS = GATED_PRESETS + ("orthogonal", "he_normal")


@dataclass(frozen=True)
class ReportSettings:
    """What ``varprop report`` analyzes: a square MLP of ``depth`` dense layers of
    ``width`` units (each followed by the activation), biases ~ N(0, ``bias_var``) (zeros
    when 0), inputs ~ N(0, ``input_var``); measured on ``seeds`` draws of a ``batch``.

    The default batch is 192, not the 512 of the seed question. Measuring costs three
    (batch x 512) by (512 x 512) matrix products per layer and seed, so the 91 networks
    x 30 layers x 3 seeds of the default report take, measured on two cores (networks
    side by side, one kernel thread each): 25 s at batch 96, 34 s at 192, 43 s at 256,
    and 81 s at 512, past the one-minute budget of ``varprop report`` even before the
    figures (about 4 s) are added. A layer's variance pools batch x width = 98,304
    entries (a sampling error of about 0.5%), while the spread between seeds (weight
    draws) is a few percent per layer and grows with depth, so the confidence
    intervals, which come from the seeds, barely change with the batch. ``--batch 512``
    measures the larger batch.

    ``alpha`` is the family-wise false-alarm rate of the log-space test of theory against
    measurement (:mod:`varprop.agreement`), shared by all the report's networks.
    """

    initializers: tuple[str, ...] = DEFAULT_INITIALIZERS
    activations: tuple[str, ...] = DEFAULT_ACTIVATIONS
    depth: int = 30
    width: int = 512
    batch: int = 192
    seeds: int = 3
    bias_var: float = 0.0
    input_var: float = 1.0
    analytic_only: bool = False
    n_threads: int | None = None
    alpha: float = ALPHA
    #: "mlp" (the square MLP above), "cnn" (``depth`` 3x3 "same" convolutions of
    #: ``width`` channels on ``image`` x ``image`` x 1 white-noise inputs) or "seeds_cnn"
    #: (the seeds' CNN preset, :func:`varprop.cnn_preset`; depth and width unused) or
    #: "rnn" (an Elman RNN of ``width`` units on ``width`` Gaussian input features over
    #: ``depth`` time steps, the initializer drawing both kernels, read at the last step)
    #: "lstm" and "gru" (the gated cells of docs/gated.md: ``width`` units on ``width``
    #: Gaussian features over ``depth`` time steps, read at the last step); their
    #: ``activations`` are the weight layouts ("keras", "torch") and their
    #: ``initializers`` may name the presets of :data:`GATED_PRESETS`.
    arch: str = "mlp"
    image: int = 8

    @property
    def axis(self) -> str:
        """What a row of the report's profiles is: "time step" or "dense layer"."""
        return "time step" if self.arch in TIME_ARCHS else "dense layer"

    @property
    def column(self) -> str:
        """What the report's second axis is: "layout" for the gated cells (their
        activations are fixed), else "activation"."""
        return "layout" if self.arch in GATED_ARCHS else "activation"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["initializers"] = list(self.initializers)
        d["activations"] = list(self.activations)
        d["dtype"] = "float32"
        return d


def verdict_dict(v: Verdict) -> dict[str, Any]:
    return {"kind": v.kind, "forward_factor": json_number(v.forward_factor),
            "backward_factor": json_number(v.backward_factor),
            "forward_total": json_number(v.forward_total),
            "backward_total": json_number(v.backward_total), "message": v.message}


def _ratio(method: Any, num: float, den: float) -> float:
    """``method()`` (the Profile's definition), with IEEE semantics for a zero denominator
    (x/0 = inf, 0/0 = NaN) instead of Python's ZeroDivisionError."""
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # numpy scalars
            return float(method())
    except ZeroDivisionError:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(num) / np.float64(den))


class Ratios(NamedTuple):
    forward: float
    gradient: float
    forward_ci: float
    gradient_ci: float


@dataclass
class Entry:
    """One initializer x activation: the analytic profile and verdict, the measured ones
    and the log-space test of one against the other (None with ``--analytic-only``)."""

    initializer: str
    activation: str
    analytic: Profile
    analytic_verdict: Verdict
    measured: Profile | None = None
    measured_verdict: Verdict | None = None
    agreement: Agreement | None = None

    @property
    def verdict(self) -> Verdict:
        """The measured verdict when there is one, else the analytic one."""
        return self.measured_verdict if self.measured_verdict is not None else self.analytic_verdict

    @property
    def agree(self) -> bool:
        """The log-space test does not reject the theory (docs/comparison.md); True
        without a measurement, and for an untestable comparison."""
        return self.agreement is None or not self.agreement.disagrees

    @property
    def verdicts_agree(self) -> bool:
        """Theory and measurement reach the same verdict kind (True without a
        measurement): a coarser comparison than :attr:`agree`."""
        return self.measured_verdict is None or self.measured_verdict.kind == self.analytic_verdict.kind

    def ratios(self, which: str) -> "Ratios":
        """Forward ratio (output over input variance) and gradient ratio (input over
        output gradient variance) of the "analytic" or "measured" profile, with 95%
        half-widths for the measured one (NaN otherwise, and for a missing profile).

        The forward half-width is the last layer's; the gradient one propagates the two
        layers' half-widths in quadrature (delta method, correlation ignored)."""
        p = self.analytic if which == "analytic" else self.measured
        if p is None:
            return Ratios(math.nan, math.nan, math.nan, math.nan)
        fwd = _ratio(p.forward_ratio, p[-1].a_var, p.input_var)
        grad = _ratio(p.gradient_ratio, p[0].grad_var, p[-1].grad_var)
        if p.kind != "empirical":
            return Ratios(fwd, grad, math.nan, math.nan)
        fwd_ci = p[-1].a_var_ci / p.input_var
        g0, g1 = p[0].grad_var, p[-1].grad_var
        grad_ci = math.nan
        if g0 and g1 and math.isfinite(g0) and math.isfinite(g1):
            grad_ci = abs(grad) * math.hypot(p[0].grad_var_ci / g0, p[-1].grad_var_ci / g1)
        return Ratios(fwd, grad, fwd_ci, grad_ci)

    def overflowed(self) -> tuple[bool, bool]:
        """Whether the measured forward ratio (its last step's ``a_var``) and gradient
        ratio (the first or last step's ``grad_var``) rest on a value that overflowed
        float32 (``meta["overflow"]`` of a recurrent measurement)."""
        over = {} if self.measured is None else self.measured.meta.get("overflow") or {}
        last = len(self.measured) - 1 if self.measured is not None else -1
        grad = over.get("grad_var", [])
        return last in over.get("a_var", []), (0 in grad or last in grad)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"initializer": self.initializer, "activation": self.activation,
                               "verdict": self.verdict.kind, "agree": self.agree,
                               "verdicts_agree": self.verdicts_agree,
                               "agreement": None if self.agreement is None
                               else self.agreement.to_dict()}
        for which, prof, verd in (("analytic", self.analytic, self.analytic_verdict),
                                  ("measured", self.measured, self.measured_verdict)):
            if prof is None or verd is None:
                out[which] = None
                continue
            fwd, grad, fwd_ci, grad_ci = self.ratios(which)
            side = {"forward_ratio": json_number(fwd), "gradient_ratio": json_number(grad)}
            if which == "measured":
                side["forward_ratio_ci"] = json_number(fwd_ci)
                side["gradient_ratio_ci"] = json_number(grad_ci)
            side["verdict"] = verdict_dict(verd)
            side["profile"] = prof.to_dict()
            out[which] = side
        return out


@dataclass
class Report:
    """The result of ``varprop report``: settings, entries (initializer-major) and timings."""

    settings: ReportSettings
    entries: list[Entry]
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    command: str = ""
    version: str = ""

    def entry(self, initializer: str, activation: str) -> Entry:
        for e in self.entries:
            if e.initializer == initializer and e.activation == activation:
                return e
        raise KeyError((initializer, activation))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.verdict.kind] = out.get(e.verdict.kind, 0) + 1
        return out

    def agreement_summary(self) -> dict[str, Any] | None:
        """The log-space test over the whole report (None when nothing was measured): the
        false-alarm rate, how many networks disagree (and which) or are untestable, and
        the per-layer error detected with probability :data:`~varprop.agreement.POWER`
        (median and largest over the networks where it is known)."""
        tested = [e for e in self.entries if e.agreement is not None]
        if not tested:
            return None
        deltas = sorted(e.agreement.detectable_error for e in tested
                        if not math.isnan(e.agreement.detectable_error))
        return {
            "alpha": self.settings.alpha, "power": POWER, "networks": len(tested),
            "disagree": sum(e.agreement.disagrees for e in tested),
            "untestable": sum(e.agreement.status == "untestable" for e in tested),
            "flagged": [f"{e.initializer} x {e.activation}" for e in tested
                        if e.agreement.disagrees],
            # disagreements where the theory already says it is only approximate
            "flagged_approximate": [f"{e.initializer} x {e.activation}" for e in tested
                                    if e.agreement.disagrees
                                    and e.analytic.meta.get("approximations")],
            "detectable_error_median": json_number(np.median(deltas)) if deltas else None,
            "detectable_error_max": json_number(deltas[-1]) if deltas else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "varprop-report",
            "schema_version": REPORT_SCHEMA_VERSION,
            "varprop_version": self.version,
            "created": self.created,
            "command": self.command,
            "settings": self.settings.to_dict(),
            "timings": {k: json_number(v) for k, v in self.timings.items()},
            "summary": self.counts(),
            "agreement": self.agreement_summary(),
            "results": [e.to_dict() for e in self.entries],
        }
