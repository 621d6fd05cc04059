"""Run the analyzer over initializers x activations: :func:`build_report`."""

from __future__ import annotations

import datetime as _dt
import math
import threading
import time
import warnings
from typing import Any, Callable

import numpy as np

from .._blas import single_threaded_blas
from .._threads import resolve_n_threads, run_side_by_side
from .._validate import seed_key
from ..agreement import agreement
from ..analytic import analyze
from ..compare import verdict
from ..initializers import Initializer
from ..initializers import get as get_initializer
from ..network import dense_stack
from ..profile import Profile
from .results import GATED_ARCHS, GATED_PRESETS, Entry, Report, ReportSettings

__all__ = ["build_report", "SharedDraws", "bias_initializer", "estimate_report_bytes",
           "gated_cell", "chrono_t_max"]


class SharedDraws(Initializer):
    """An initializer that remembers what it drew, keyed by shape, seed and dtype.

    :func:`varprop.empirical.measure` draws every layer's weights from a stream that
    depends only on the seed and the layer's index, so the networks of one initializer
    and different activations draw the very same arrays. Wrapping the initializer in a
    ``SharedDraws`` makes those draws once instead of once per activation (the orthogonal
    initializer's QR decompositions cost about as much as the matrix products). The
    arrays are identical to the unshared ones; :meth:`clear` frees them.
    """

    uses_fan_options = False

    def __init__(self, inner: Initializer, max_bytes: int = 512 * 2**20) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.max_bytes = max_bytes
        self._bytes = 0
        self._cache: dict[Any, np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, shape: Any, seed: Any = None, dtype: Any = np.float32) -> np.ndarray:
        key = seed_key(seed)
        if key is None:
            return self.inner(shape, seed=seed, dtype=dtype)
        full = (tuple(int(s) for s in shape), key, np.dtype(dtype).str)
        # networks measured side by side ask for the same draws at about the same time:
        # under the lock the first one draws and the others wait for its array
        with self._lock:
            hit = self._cache.get(full)
            if hit is None:
                # one BLAS thread: the orthogonal initializer's QR otherwise fights the
                # kernels' OpenMP threads, still spinning after their last parallel region
                # (seconds per 512 x 512 draw instead of ~20 ms on two cores)
                with single_threaded_blas():
                    hit = self.inner(shape, seed=seed, dtype=dtype)
                if self._bytes + hit.nbytes <= self.max_bytes:  # beyond the budget: draw again
                    self._cache[full] = hit
                    self._bytes += hit.nbytes
        return hit

    def moments(self, shape: Any, **fan_options: Any) -> Any:
        return self.inner.moments(shape, **fan_options)

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._bytes = 0

    def __repr__(self) -> str:
        return repr(self.inner)


def bias_initializer(bias_var: float) -> Any:
    """zeros for ``bias_var == 0``, else N(0, bias_var)."""
    if bias_var == 0:
        return get_initializer("zeros")
    return get_initializer("random_normal", mean=0.0, stddev=math.sqrt(bias_var))


def chrono_t_max(steps: int) -> float:
    """The chrono rows' ``T_max``: the report's sequence length, the longest dependency
    it can show (Tallec and Ollivier 2018 set T_max to the expected range of the
    dependencies), at least 3 (the law ``log U(1, T_max - 1)`` needs ``T_max > 2``)."""
    return float(max(steps, 3))


def gated_cell(settings: ReportSettings, init: Any, layout: str, bias: Any) -> Any:
    """The gated report's cell (``settings.arch`` "lstm" or "gru") for one row and one
    layout: ``init`` is a preset of :data:`~.results.GATED_PRESETS` (the layout's
    framework defaults, with chrono biases for "chrono") or an initializer drawing both
    kernels, with ``bias`` (the LSTM's keras layout keeps Keras's unit_forget_bias)."""
    from ..recurrent import gated as g
    f = h = settings.width
    if isinstance(init, str) and init in GATED_PRESETS:
        make = {("lstm", "keras"): g.keras_lstm, ("lstm", "torch"): g.torch_lstm,
                ("gru", "keras"): g.keras_gru, ("gru", "torch"): g.torch_gru}[settings.arch, layout]
        chrono = chrono_t_max(settings.depth) if init == "chrono" else None
        return make(f, h, chrono=chrono)
    cls = g.LSTM if settings.arch == "lstm" else g.GRU
    return cls(f, h, init, init, bias, layout)


def build_network(settings: ReportSettings, activation: str, init: Any, bias: Any) -> Any:
    """The report's network for one initializer x activation (``settings.arch``; for
    the gated cells ``activation`` is the weight layout)."""
    if settings.arch in GATED_ARCHS:
        return gated_cell(settings, init, activation, bias)
    if settings.arch == "cnn":
        from ..network_cnn import cnn
        return cnn((settings.image, settings.image, 1), [settings.width] * settings.depth,
                   activation=activation, init=init, bias_init=bias, head="none")
    if settings.arch == "seeds_cnn":
        from ..network_cnn import cnn_preset
        return cnn_preset("seeds_cnn", init=init, activation=activation, bias_init=bias)
    if settings.arch == "rnn":
        from ..recurrent import SimpleRNN
        return SimpleRNN(settings.width, settings.width, activation, init, init, bias)
    return dense_stack(settings.width, settings.depth, activation, init, bias)


def build_report(settings: ReportSettings, *,
                 progress: Callable[[float, str], None] | None = None,
                 command: str = "", version: str = "") -> Report:
    """Analyze (and, unless ``settings.analytic_only``, measure) every initializer x
    activation of ``settings``; ``progress(fraction_done, label)`` is called as it goes."""
    from ..empirical import measure

    t_start = time.perf_counter()
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    n_nets = len(settings.initializers) * len(settings.activations)
    bias = bias_initializer(settings.bias_var)
    analytic_share = 1.0 if settings.analytic_only else 0.03
    entries: list[Entry] = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # overflow to inf and inf - inf = NaN (ones, random_normal with relu, ...) are
        # results here, reported in the table as inf/nan: no RuntimeWarning noise
        warnings.simplefilter("ignore", RuntimeWarning)
        timings = _run(settings, entries, bias, analytic_share, n_nets, progress, measure)
    timings["total_s"] = time.perf_counter() - t_start
    return Report(settings, entries, timings, created, command, version)


def _copy_profile(p: Profile, network: str) -> Profile:
    """``p`` under the name ``network``: the records are shared (nothing changes them
    after ``analyze``; a 100,000-layer report would otherwise copy millions)."""
    return Profile(p.kind, list(p.records), network, p.input_var, p.input_mean,
                   dict(p.meta), dict(p.seed_values), dict(p.maps))


def _moments_key(net: Any) -> tuple[Any, ...]:
    """What :func:`~varprop.analytic.analyze` reads of a network: per layer the weight
    and bias moments (with their structure and symmetry) and the activation."""
    key: list[Any] = []
    # a deep network repeats the same initializer and activation objects layer after
    # layer: ask each for its moments or repr once (linear, and cheap, at any depth)
    seen: dict[tuple[int, Any], Any] = {}

    def once(obj: Any, what: Any, make: Any) -> Any:
        k = (id(obj), what)
        if k not in seen:
            seen[k] = (obj, make())  # the object itself keeps its id from being reused
        return seen[k][1]

    if not hasattr(net, "layers"):  # a SimpleRNN: its kernels' moments and activation
        return (net.kernel_init.moments(net.kernel_shape),
                net.recurrent_init.moments(net.recurrent_shape),
                None if net.bias_init is None else net.bias_init.moments((net.units,)),
                net.activation)
    for layer in net.layers:
        key.append(layer.analytic_key(once))
    return tuple(key)


def _analyze(settings: ReportSettings, net: Any) -> Profile:
    if settings.arch in GATED_ARCHS:
        from ..recurrent.gated import analyze_gated
        return analyze_gated(net, settings.depth, input_var=settings.input_var)
    if settings.arch == "rnn":
        from ..recurrent import analyze_rnn
        # the rare-path check judged against the report's own measurement
        return analyze_rnn(net, settings.depth, input_var=settings.input_var,
                           samples=settings.batch * settings.seeds)
    return analyze(net, input_var=settings.input_var, batch=settings.batch)


def _run(settings: ReportSettings, entries: list[Entry], bias: Any, analytic_share: float,
         n_nets: int, progress: Callable[[float, str], None] | None,
         measure: Callable[..., Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    # The analytic side sees a network only through its initializers' moments (DESIGN:
    # "the analytic side reads the initializers' moments"), and many initializers share
    # them (glorot/lecun normal/uniform and orthogonal on square layers): analyze each
    # distinct network once.
    analyzed: dict[Any, Profile] = {}
    nets: list[tuple[Any, SharedDraws | None]] = []
    for init_name in settings.initializers:
        shared = None if init_name in GATED_PRESETS and settings.arch in GATED_ARCHS \
            else SharedDraws(get_initializer(init_name))
        for act_name in settings.activations:
            net = build_network(settings, act_name, init_name if shared is None else shared,
                                bias)
            # a gated cell: one theory per row and layout (no two share their moments)
            key = (init_name, act_name) if settings.arch in GATED_ARCHS else _moments_key(net)
            if key not in analyzed:
                analyzed[key] = _analyze(settings, net)
            prof_a = _copy_profile(analyzed[key], net.describe())
            entries.append(Entry(init_name, act_name, prof_a, verdict(prof_a)))
            nets.append((net, shared))
            if progress:
                progress(analytic_share * len(entries) / n_nets,
                         f"theory: {init_name} x {act_name}")
    t_analytic = time.perf_counter() - t0
    t_measured = 0.0
    if not settings.analytic_only:
        t0 = time.perf_counter()
        _measure_all(settings, entries, nets, analytic_share, progress, measure)
        # the log-space test: every network shares the report's false-alarm rate
        for e in entries:
            e.agreement = agreement(e.analytic, e.measured, alpha=settings.alpha,
                                    n_networks=len(entries))
        t_measured = time.perf_counter() - t0
    return {"analytic_s": t_analytic, "measured_s": t_measured}


def _measure_all(settings: ReportSettings, entries: list[Entry], nets: list[tuple[Any, Any]],
                 analytic_share: float, progress: Callable[[float, str], None] | None,
                 measure: Callable[..., Any]) -> None:
    """Measure every network, ``n_threads`` networks at a time, each on one kernel thread.

    At the report's sizes (batch ~100 x 512 x 512) one kernel call is too small to keep
    two OpenMP threads busy, and the weight draws are serial: networks side by side on one
    thread each use the cores about 1.75x better (measured: 4 networks in 1.87 s instead
    of 3.27 s). The results are the same bit for bit (seeded per layer, and the kernels
    do not depend on the thread count). A SharedDraws is cleared once every network
    that draws from it is done."""
    n_workers = min(resolve_n_threads(settings.n_threads), len(nets))
    lock = threading.Lock()
    done = [0.0] * len(nets)
    left: dict[int, int] = {}
    for _, shared in nets:
        left[id(shared)] = left.get(id(shared), 0) + 1

    def one(i: int) -> None:
        net, shared = nets[i]
        e = entries[i]
        label = f"{e.initializer} x {e.activation} ({i + 1}/{len(nets)})"
        tick = None
        if progress:
            def tick(k: int, total: int) -> None:
                with lock:
                    done[i] = k / max(total, 1)
                    progress(analytic_share + (1 - analytic_share) * sum(done) / len(nets),
                             label)
        if settings.arch in GATED_ARCHS:
            from ..recurrent.gated import measure_gated
            with single_threaded_blas():  # one network per core, side by side (numpy path too)
                prof = measure_gated(net, settings.depth, batch=settings.batch,
                                     seeds=settings.seeds, input_var=settings.input_var,
                                     n_threads=1, progress=tick)
        elif settings.arch == "rnn":
            from ..recurrent.measure import measure_rnn
            prof = measure_rnn(net, settings.depth, batch=settings.batch,
                               seeds=settings.seeds, input_var=settings.input_var,
                               n_threads=1, progress=tick)
        else:
            prof = measure(net, batch=settings.batch, seeds=settings.seeds,
                           input_var=settings.input_var, n_threads=1, progress=tick)
        e.measured, e.measured_verdict = prof, verdict(prof)
        if shared is None:  # a gated preset: no shared draws
            return
        with lock:
            left[id(shared)] -= 1
            if left[id(shared)] == 0:
                shared.clear()

    run_side_by_side(one, len(nets), n_workers, "varprop-report")


#: Bytes a report holds per layer and network: the analytic profile (and its rendering),
#: the same again when measured, and per seed and layer the measured per-seed values
#: (calibrated on ``varprop report``: ~0.7 KB, ~0.9 KB).
_BYTES_PER_LAYER = 1536
_BYTES_PER_SEED_LAYER = 1024
_BYTES_PER_SEED = 64


def estimate_report_bytes(settings: ReportSettings) -> float:
    """About how much memory :func:`build_report` needs at its peak for ``settings``
    (an estimate, in Python floats, so absurd sizes give inf-like numbers rather than
    overflowing): the profiles of every network, and when measuring the per-seed values
    and the arrays of the networks measured side by side."""
    n_nets = float(len(settings.initializers) * len(settings.activations))
    depth = float(settings.depth)
    need = n_nets * depth * _BYTES_PER_LAYER
    if not settings.analytic_only:
        width, batch, seeds = float(settings.width), float(settings.batch), float(settings.seeds)
        if settings.arch in ("cnn", "seeds_cnn"):  # every pixel, 9 taps per weight
            batch *= float(settings.image) ** 2 * 10.0
        elif settings.arch == "rnn":  # the whole sequence is held for the backward
            batch *= depth
        elif settings.arch in GATED_ARCHS:  # every gate of the whole sequence is held
            batch *= depth * 8.0
            width *= 2.0  # the recurrent kernel holds 4 (3) gates: (H, 4H) ~ (2H)^2
        workers = float(min(resolve_n_threads(settings.n_threads), max(n_nets, 1.0)))
        need *= 2.0
        need += n_nets * seeds * _BYTES_PER_SEED
        need += workers * (seeds * depth * _BYTES_PER_SEED_LAYER
                           + 4.0 * (2.0 * width * width + 6.0 * batch * width))
    return need
