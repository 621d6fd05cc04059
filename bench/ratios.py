"""Print every figure of the kernel benchmark table (issue 17) in one run: varprop's
kernels against the bare BLAS GEMM, plain numpy and PyTorch (when installed), a kernel
right after a numpy matmul, and ``varprop.measure`` against its GEMM floor.

Usage:  python bench/ratios.py [--blocks 7] [--threads 2] [--quick]

Every contender of a figure is timed in interleaved blocks: in each block each one runs
after a pause (PAUSE_S, so OpenBLAS's spinning workers of the previous one have gone to
sleep), a warm-up call and ``reps`` timed calls; a ratio is the median over blocks of the
per-block ratios, which cancels slow drifts in the machine's load. Every baseline runs on
--threads threads too (OpenBLAS through threadpoolctl, torch.set_num_threads). Ratios,
not absolute times, carry over between runs on a shared machine. docs/kernels.md explains
the figures and keeps the table of the machines it was run on.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))

import varprop  # noqa: E402
from _cases import bare_gemm, layer_data, numpy_forward, numpy_forward_backward  # noqa: E402

try:
    import torch
except ImportError:  # the torch columns print n/a
    torch = None

ACTS = ("relu", "tanh", "gelu")
#: Pause before each contender's calls: OpenBLAS's workers sleep after about 0.1 s.
PAUSE_S = 0.3


def _shape(batch: int, width: int) -> str:
    return f"{batch}x{width}x{width}"


def interleaved(fns: dict[str, Callable[[], object]], blocks: int, reps: int,
                settle: float = PAUSE_S) -> dict[str, list[float]]:
    """Per-block median call times of each contender, the contenders interleaved."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            time.sleep(settle)
            fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[name].append(statistics.median(times))
    return out


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over blocks of times[num] / times[den]."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def _torch_forward(x, w, b, act):
    xt, wt, bt = (torch.from_numpy(v) for v in (x, w, b))
    fn = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}[act]

    def call():
        with torch.no_grad():
            return fn(torch.addmm(bt, xt, wt))
    return call


def _torch_forward_backward(x, w, b, act, g):
    xt, wt, bt = (torch.from_numpy(v.copy()).requires_grad_(True) for v in (x, w, b))
    gt = torch.from_numpy(g)
    fn = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}[act]

    def call():
        for t in (xt, wt, bt):
            t.grad = None
        fn(torch.addmm(bt, xt, wt)).backward(gt)
    return call


def forward_figures(n: int, blocks: int, shapes, reps_for, title: str) -> None:
    print(title)
    print(f"{'shape':>16} {'act':>5} {'sgemm ms':>9} {'fused':>6} {'+stats':>7} "
          f"{'torch fwd/sgemm':>15} {'torch/varprop':>13} {'numpy/varprop':>13}")
    for batch, width in shapes:
        x, w, b = layer_data(batch, width, np.float32)
        for act in ACTS:
            fns = {
                "gemm": lambda: bare_gemm(x, w),
                "fused": lambda: varprop.dense_forward(x, w, b, act, n_threads=n),
                "stats": lambda: varprop.dense_forward(x, w, b, act, stats=True, n_threads=n),
                "numpy": lambda: numpy_forward(x, w, b, act),
            }
            if torch is not None:
                fns["torch"] = _torch_forward(x, w, b, act)
            t = interleaved(fns, blocks, reps_for(batch, width))
            tf = f"{ratio(t, 'torch', 'gemm'):15.3f}" if torch is not None else f"{'n/a':>15}"
            tv = f"{ratio(t, 'torch', 'fused'):13.2f}" if torch is not None else f"{'n/a':>13}"
            print(f"{_shape(batch, width):>16} {act:>5} "
                  f"{statistics.median(t['gemm']) * 1e3:9.3f} {ratio(t, 'fused', 'gemm'):6.3f} "
                  f"{ratio(t, 'stats', 'gemm'):7.3f} {tf} {tv} "
                  f"{ratio(t, 'numpy', 'fused'):13.2f}", flush=True)


def backward_figures(n: int, blocks: int, shapes, reps_for) -> None:
    print("\n2. forward + backward, float32: other / varprop time (> 1: varprop faster)")
    print(f"{'shape':>16} {'act':>5} {'varprop ms':>10} {'numpy':>7} {'torch':>7}")
    for batch, width in shapes:
        x, w, b = layer_data(batch, width, np.float32)
        g = np.random.default_rng(1).standard_normal((batch, width)).astype(np.float32)
        for act in ACTS:
            def ours():
                f = varprop.dense_forward(x, w, b, act, n_threads=n)
                varprop.dense_backward(x, w, f.z, g, act, n_threads=n)
            fns = {"varprop": ours,
                   "numpy": lambda: numpy_forward_backward(x, w, b, act, g)}
            if torch is not None:
                fns["torch"] = _torch_forward_backward(x, w, b, act, g)
            t = interleaved(fns, blocks, reps_for(batch, width))
            tt = f"{ratio(t, 'torch', 'varprop'):7.2f}" if torch is not None else f"{'n/a':>7}"
            print(f"{_shape(batch, width):>16} {act:>5} "
                  f"{statistics.median(t['varprop']) * 1e3:10.3f} "
                  f"{ratio(t, 'numpy', 'varprop'):7.2f} {tt}", flush=True)


def gemm_figures(n: int, blocks: int, shapes, reps_for) -> None:
    print(f"\n3. the GEMM alone: scipy's OpenBLAS sgemm / torch.mm time on {n} threads "
          "(> 1: torch's GEMM is faster)")
    if torch is None:
        print("   torch is not installed")
        return
    for batch, width in shapes:
        x, w, _ = layer_data(batch, width, np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        t = interleaved({"sgemm": lambda: bare_gemm(x, w), "torch": lambda: torch.mm(xt, wt)},
                        blocks, reps_for(batch, width))
        gflops = 2 * batch * width * width / statistics.median(t["sgemm"]) / 1e9
        print(f"{_shape(batch, width):>16}  sgemm/torch.mm {ratio(t, 'sgemm', 'torch'):.2f} "
              f"(sgemm {gflops:.0f} GFLOP/s)", flush=True)


def interference_figure(n: int, blocks: int) -> None:
    x, w, b = layer_data(256, 1024, np.float32)
    big = np.ones((512, 512), np.float32)
    alone, after = [], []
    for _ in range(blocks * 3):
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        varprop.dense_forward(x, w, b, "tanh", n_threads=n)
        alone.append(time.perf_counter() - t0)
        with threadpool_limits(None):  # numpy at its own (default) thread count
            big @ big
        t0 = time.perf_counter()
        varprop.dense_forward(x, w, b, "tanh", n_threads=n)
        after.append(time.perf_counter() - t0)
    print(f"\n4. kernel right after a numpy matmul / alone (256x1024x1024 float32 tanh, "
          f"numpy at its default threads): {statistics.median(after) / statistics.median(alone):.2f}")


def measure_figure(n: int, blocks: int, depth: int = 50, width: int = 512,
                   batch: int = 512, seeds: int = 4) -> None:
    net = varprop.mlp([width] * (depth + 1), activation="tanh")
    x = np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32)
    w = x.copy() if batch == width else np.ones((width, width), np.float32)

    def floor():
        # the GEMMs measure runs: per seed and layer one forward and two backward
        for _ in range(seeds * depth):
            bare_gemm(x, w)
            bare_gemm(x, w.T)
            bare_gemm(x.T, w)

    t = interleaved({"measure": lambda: varprop.measure(net, batch=batch, seeds=seeds,
                                                         n_threads=n),
                     "floor": floor}, max(3, blocks // 2), 1, settle=0.3)
    print(f"\n5. varprop.measure depth {depth}, width {width}, batch {batch}, {seeds} seeds: "
          f"{statistics.median(t['measure']):.3f} s; {ratio(t, 'measure', 'floor'):.2f} x "
          f"its GEMM floor ({statistics.median(t['floor']):.3f} s of bare sgemm)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="fewer blocks and no 1024x4096x4096 shape (a smoke run)")
    args = parser.parse_args(argv)
    n, blocks = args.threads, (3 if args.quick else args.blocks)
    if torch is not None:
        torch.set_num_threads(n)

    def reps_for(batch, width):
        work = batch * width * width
        return 1 if work >= 2**32 else 3 if work >= 2**29 else 9

    kernels = varprop.kernels._extension()
    print(f"threads={n}, {blocks} interleaved blocks; {platform.processor() or platform.machine()}"
          f" {os.cpu_count()} CPUs; activation loops: {kernels.isa()} "
          f"(available {', '.join(kernels.isa_available())}); "
          f"torch {torch.__version__ if torch is not None else 'not installed'}")
    big = [] if args.quick else [(1024, 4096)]
    with threadpool_limits(n):  # numpy's and scipy's OpenBLAS on n threads, like ours
        forward_figures(n, blocks, [(256, 1024), *big], reps_for,
                        "\n1. fused forward / bare sgemm (float32; +stats: with batch "
                        "statistics); torch/varprop, numpy/varprop: > 1: varprop is faster")
        forward_figures(n, blocks, [(1024, 256)], reps_for,
                        "\n1b. the same at 1024x256x256 (the numpy/varprop figure of tanh "
                        "and gelu)")
        backward_figures(n, blocks, [(512, 2048)], reps_for)
        gemm_figures(n, blocks, [(256, 1024), (512, 2048), *big], reps_for)
    interference_figure(n, blocks)
    with threadpool_limits(n):
        measure_figure(n, blocks)


if __name__ == "__main__":
    main()
