"""Speed of the analyzer (issue 5, item 8), with every result asserted.

(a) ``varprop.analyze`` of a 1000-layer, width-512 MLP for every registry activation
    (12), each with its recommended initializer: target under 0.1 s for all twelve.
    The reference is the same recursion evaluating each layer's Gaussian moments with
    the vectorized ``gaussian_moments`` (``analyze``'s slow twin, ``fast=False``).
(b) ``varprop.measure`` of a depth-50, width-512, batch-512 ReLU MLP (forward and
    backward, statistics on, seeds=1, 2 threads) against its GEMM floor: the 3 GEMMs of
    ``2 * 512^3`` flops per layer (forward, dX, dW) at the rate of
    ``scipy.linalg.blas.sgemm`` on F-ordered operands with 2 BLAS threads, measured in
    the same run: target within 1.2x. Drawing the weights with the initializer is part
    of ``measure``'s cost and is reported separately.
(c) ``varprop.analyze`` against depth (docs/theory.md, section 10): zeros, ones,
    identity and He weights with relu at 1000 and 8000 layers. The symmetric and
    identity chains carry the exact law of a unit (a per-node quadrature rule), a few
    tens of microseconds a layer; what matters is that the cost per layer does not grow
    with depth (it did: the composition was copied at every layer, 2.6 s and 851 MB at
    8000 layers for zeros). The script prints the ratio of the two depths.

Run:  pytest bench/bench_analyzer.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_analyzer.py          # prints both figures and the breakdown
As tests (CI): pytest bench/bench_analyzer.py --benchmark-disable (each case runs once
and checks its result; the timings are not asserted, they depend on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from typing import Callable

import numpy as np
import pytest
from scipy.linalg import blas
from threadpoolctl import threadpool_limits

import varprop
from _cases import call_times
from varprop import _empirical_run, kernels
from varprop.layers import Dense
from varprop.activations import ACTIVATION_NAMES
from varprop.analytic import _analyze
from varprop.initializers import recommended_initializer
from varprop.theory import gaussian_moments

DEPTH_A, WIDTH_A = 1000, 512
DEPTH_B, WIDTH_B, BATCH_B, THREADS = 50, 512, 512, 2
GROUP_A = f"analyze {DEPTH_A}x{WIDTH_A}"
GROUP_B = f"measure depth {DEPTH_B} {BATCH_B}x{WIDTH_B}x{WIDTH_B} threads={THREADS}"
GEMMS_B = 3 * DEPTH_B  # forward, dX, dW per layer
FLOPS_B = GEMMS_B * 2 * BATCH_B * WIDTH_B * WIDTH_B


# ----------------------------------------------------------------------------- (a)
def analytic_nets() -> dict[str, varprop.Network]:
    return {a: varprop.mlp([WIDTH_A] * (DEPTH_A + 1), a, recommended_initializer(a))
            for a in ACTIVATION_NAMES}


def analyze_all(nets: dict[str, varprop.Network], **kwargs) -> dict[str, varprop.Profile]:
    return {a: _analyze(net, **kwargs) for a, net in nets.items()}


def check_analytic(profiles: dict[str, varprop.Profile], nets) -> None:
    """Closed-form layers exactly; every layer's moments one step against the vectorized
    reference (``gaussian_moments`` at that layer's (mean, var)) to 1e-12."""
    for name, prof in profiles.items():
        assert len(prof) == DEPTH_A, name
        z = prof.column("z_var")
        assert np.all(np.isfinite(z)) and np.all(z > 0), name
        second = prof.column("a_var") + prof.column("a_mean") ** 2
        # the recursion itself: q_{l+1} = n Var[W] E[a_l^2] (zero-mean weights, no bias)
        init = nets[name].layers[0].init
        sw2 = WIDTH_A * init.moments((WIDTH_A, WIDTH_A)).var
        np.testing.assert_allclose(z[1:], sw2 * second[:-1], rtol=1e-12, err_msg=name)
        g = gaussian_moments(name, z, mean=prof.column("z_mean"))
        np.testing.assert_allclose(prof.column("a_var"), g.var_phi, rtol=1e-12, atol=1e-300,
                                   err_msg=name)
        assert np.all(np.abs(prof.column("a_mean") - g.e_phi)
                      <= 1e-12 * np.sqrt(np.asarray(g.e_phi2))), name
        grad = prof.column("grad_var")
        chi = sw2 * np.asarray(g.e_dphi2)
        np.testing.assert_allclose(grad[-1], g.e_dphi2[-1], rtol=1e-12, err_msg=name)
        ok = grad[1:] > 1e-290  # below that the float64 products are subnormal
        np.testing.assert_allclose(grad[:-1][ok], (grad[1:] * chi[:-1])[ok], rtol=1e-12,
                                   err_msg=name)
    for name in ("relu", "leaky_relu", "selu", "linear"):  # exact fixed points
        z = profiles[name].column("z_var")
        np.testing.assert_allclose(z, z[0], rtol=1e-12, err_msg=name)


def test_analyze_every_activation(benchmark):
    nets = analytic_nets()
    benchmark.group = GROUP_A + ", 12 activations"
    benchmark.extra_info["layers"] = DEPTH_A * len(nets)
    profiles = benchmark(analyze_all, nets)
    check_analytic(profiles, nets)


REFERENCE_SUBSET = ("relu", "tanh", "silu")


def test_analyze_fast_subset(benchmark):
    nets = {a: n for a, n in analytic_nets().items() if a in REFERENCE_SUBSET}
    benchmark.group = GROUP_A + ", " + "/".join(REFERENCE_SUBSET)
    fast = benchmark(analyze_all, nets)
    ref = analyze_all(nets, fast=False)
    for a in nets:  # stable recursions: the whole profile agrees with the slow twin
        for f in ("z_var", "a_var", "grad_var"):
            np.testing.assert_allclose(fast[a].column(f), ref[a].column(f), rtol=1e-12,
                                       err_msg=f"{a} {f}")


def test_analyze_reference_subset(benchmark):
    nets = {a: n for a, n in analytic_nets().items() if a in REFERENCE_SUBSET}
    benchmark.group = GROUP_A + ", " + "/".join(REFERENCE_SUBSET)
    ref = benchmark.pedantic(analyze_all, args=(nets,), kwargs={"fast": False}, rounds=1,
                             iterations=1)
    np.testing.assert_allclose(ref["relu"].column("z_var"), 2.0, rtol=1e-12)


# ----------------------------------------------------------------------------- (b)
def measure_net() -> varprop.Network:
    return varprop.mlp([WIDTH_B] * (DEPTH_B + 1), "relu", "he_normal")


def run_measure(net):
    return varprop.measure(net, batch=BATCH_B, seeds=1, n_threads=THREADS)


def gemm_operands(seed: int = 0):
    rng = np.random.default_rng(seed)
    a = np.asfortranarray(rng.standard_normal((BATCH_B, WIDTH_B)).astype(np.float32))
    b = np.asfortranarray(rng.standard_normal((WIDTH_B, WIDTH_B)).astype(np.float32))
    c = np.zeros((BATCH_B, WIDTH_B), np.float32, order="F")
    return a, b, c


def gemm_floor_work(a, b, c):
    """The floor's work: 3 GEMMs per layer, sgemm on F-ordered operands."""
    with threadpool_limits(limits=THREADS, user_api="blas"):
        for _ in range(GEMMS_B):
            c = blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)
    return c


def check_measured(p: varprop.Profile) -> None:
    assert len(p) == DEPTH_B and p.meta["n_threads"] == THREADS
    z, g = p.column("z_var"), p.column("grad_var")
    assert np.all(np.isfinite(z)) and np.all(np.isfinite(g))
    # He-ReLU: z_var = 2 and grad_var = 1/2 at every layer, up to finite-width
    # fluctuations: sd of log z_var <= sqrt(5 * 50 / 512) = 0.7 (docs/theory.md section 7)
    assert np.all(np.abs(np.log(z / 2.0)) < 5 * 0.7)
    assert np.all(np.abs(np.log(g / 0.5)) < 5 * 0.7)
    assert abs(p[0].z_var - 2.0) < 0.1  # the first layer is tight


def test_measure_depth_50(benchmark):
    net = measure_net()
    run_measure(net)  # warm-up: first-call allocations
    benchmark.group = GROUP_B
    benchmark.extra_info["gflop"] = FLOPS_B / 1e9
    p = benchmark.pedantic(run_measure, args=(net,), rounds=3, iterations=1)
    check_measured(p)


def test_gemm_floor(benchmark):
    a, b, c = gemm_operands()
    benchmark.group = GROUP_B
    benchmark.extra_info["gflop"] = FLOPS_B / 1e9
    out = benchmark.pedantic(gemm_floor_work, args=(a, b, c), rounds=3, iterations=1)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-3, atol=1e-3 * 30)


# ----------------------------------------------------------------------------- (c)
DEPTHS_C = (1000, 8000)
INITS_C = ("zeros", "ones", "identity", "he_normal")


def depth_net(init: str, depth: int) -> varprop.Network:
    return varprop.network.dense_stack(WIDTH_A, depth, "relu", init)


def check_deep(p: varprop.Profile, init: str) -> None:
    """No NaN at any depth; ones overflows float64 (inf), the others stay finite."""
    for f in ("z_var", "a_var", "grad_var", "weight_grad_var"):
        assert not np.any(np.isnan(p.column(f))), (init, f)
    z = p.column("z_var")
    assert np.all(np.isinf(z[60:])) if init == "ones" else np.all(np.isfinite(z)), init


@pytest.mark.parametrize("depth", DEPTHS_C)
@pytest.mark.parametrize("init", INITS_C)
def test_analyze_depth(benchmark, init, depth):
    net = depth_net(init, depth)
    benchmark.group = f"analyze relu x{WIDTH_A}, {init}"
    benchmark.extra_info["layers"] = depth
    p = benchmark.pedantic(varprop.analyze, args=(net,), rounds=1, iterations=1)
    check_deep(p, init)


# ----------------------------------------------------------------------------- script
def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(min, median) wall time over ``repeat`` calls after one warm-up."""
    times = call_times(fn, repeat)
    return min(times), statistics.median(times)


@contextlib.contextmanager
def timed(module, name: str, totals: dict[str, float], key: str):
    """Accumulate the wall time of ``module.name`` calls into ``totals[key]``."""
    orig = getattr(module, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - t0

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, orig)


def measure_breakdown(net) -> dict[str, float]:
    """Where one ``measure`` call spends its time (wall seconds)."""
    totals = {"draw weights (initializer)": 0.0, "forward kernels": 0.0,
              "backward kernels": 0.0, "gradient variances (numpy)": 0.0}
    with contextlib.ExitStack() as stack:
        # the dense layer draws its weights and imports the kernels at call time
        stack.enter_context(timed(Dense, "draw", totals, "draw weights (initializer)"))
        stack.enter_context(timed(kernels, "dense_forward", totals, "forward kernels"))
        stack.enter_context(timed(kernels, "dense_backward", totals, "backward kernels"))
        stack.enter_context(timed(_empirical_run, "pooled_var", totals,
                                  "gradient variances (numpy)"))
        t0 = time.perf_counter()
        run_measure(net)
        total = time.perf_counter() - t0
    totals["other (python, inputs, statistics)"] = total - sum(totals.values())
    totals["total"] = total
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    nets = analytic_nets()
    profiles = analyze_all(nets)
    check_analytic(profiles, nets)
    per_act = {a: best_time(lambda n=n: varprop.analyze(n), args.repeat)[0]
               for a, n in nets.items()}
    t_all, t_all_med = best_time(lambda: analyze_all(nets), args.repeat)
    print(f"(a) analyze, {DEPTH_A} layers x width {WIDTH_A}, recommended initializers, "
          f"{len(nets)} activations:")
    print(f"    total {t_all * 1e3:.1f} ms (min of {args.repeat}; median "
          f"{t_all_med * 1e3:.1f} ms), target < 100 ms: "
          f"{'met' if t_all < 0.1 else 'NOT met'}")
    print("    " + "  ".join(f"{a} {t * 1e3:.1f}" for a, t in per_act.items()) + "  (ms)")
    t_ref = best_time(lambda: analyze_all(
        {a: nets[a] for a in REFERENCE_SUBSET}, fast=False), 1)[0]
    t_fast = best_time(lambda: analyze_all({a: nets[a] for a in REFERENCE_SUBSET}),
                       args.repeat)[0]
    print(f"    {'/'.join(REFERENCE_SUBSET)}: {t_fast * 1e3:.1f} ms, with gaussian_moments "
          f"per layer {t_ref * 1e3:.0f} ms ({t_ref / t_fast:.0f}x)")

    net = measure_net()
    check_measured(run_measure(net))
    a, b, c = gemm_operands()
    floors, measures = [], []
    for _ in range(max(3, args.repeat // 2)):  # interleaved: both see the same machine
        floors.append(best_time(lambda: gemm_floor_work(a, b, c), 1)[0])
        measures.append(best_time(lambda: run_measure(net), 1)[0])
    floor, t_meas = min(floors), min(measures)
    rate = FLOPS_B / floor
    parts = measure_breakdown(net)
    draw = parts["draw weights (initializer)"]
    print(f"(b) measure, depth {DEPTH_B}, batch {BATCH_B}, width {WIDTH_B}, forward + "
          f"backward, stats, seeds=1, {THREADS} threads:")
    print(f"    {t_meas * 1e3:.0f} ms; GEMM floor {FLOPS_B / 1e9:.1f} GFLOP at the sgemm rate "
          f"{rate / 1e9:.0f} GFLOP/s = {floor * 1e3:.0f} ms")
    print(f"    ratio {t_meas / floor:.2f} (target <= 1.2: "
          f"{'met' if t_meas / floor <= 1.2 else 'NOT met'}); without drawing the weights "
          f"({draw * 1e3:.0f} ms) {(t_meas - draw) / floor:.2f}")
    print("    breakdown of one call: " + ", ".join(
        f"{k} {v * 1e3:.0f} ms" for k, v in parts.items()))

    print(f"(c) analyze against depth, relu x {WIDTH_A} (min of 3):")
    for init in INITS_C:
        times = [best_time(lambda d=d: varprop.analyze(depth_net(init, d)), 3)[0]
                 for d in DEPTHS_C]
        print(f"    {init:>9}: " + ", ".join(f"{d} layers {t:.3f} s" for d, t in
                                             zip(DEPTHS_C, times))
              + f"; ratio {times[1] / times[0]:.1f} for {DEPTHS_C[1] // DEPTHS_C[0]}x the depth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
