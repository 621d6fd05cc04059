"""Print the benchmark ratio table: varprop's kernels against the bare BLAS GEMM and plain
numpy (and PyTorch when installed), all timed in this one process.

Usage:  python bench/ratios.py [--repeat 15] [--threads 2]

Each figure is a median over --repeat calls after a pause (SETTLE_S) and a warm-up;
ratios, not absolute times, are what carry over between runs on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import varprop  # noqa: E402
from _cases import (ACTIVATIONS, DTYPES, SETTLE_S, SHAPES, bare_gemm,  # noqa: E402
                    layer_data, numpy_forward, numpy_forward_backward)
from _cases import median_time as _median_time  # noqa: E402


def median_time(fn, repeat):
    return _median_time(fn, repeat, SETTLE_S)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    n = args.threads
    print(f"threads={n}, median of {args.repeat}; ratios are time / bare GEMM time "
          "(numpy column: numpy time / fused time, > 1 means varprop is faster)")
    header = (f"{'shape':>16} {'dtype':>7} {'act':>5} {'gemm ms':>8} {'fused':>6} "
              f"{'+stats':>7} {'numpy/fused':>11} {'GFLOP/s':>8}")
    print(header)
    for batch, width in SHAPES:
        for dtype in DTYPES:
            x, w, b = layer_data(batch, width, dtype)
            t_gemm = median_time(lambda: bare_gemm(x, w), args.repeat)
            for act in ACTIVATIONS:
                t_f = median_time(lambda: varprop.dense_forward(x, w, b, act, n_threads=n),
                                  args.repeat)
                t_s = median_time(lambda: varprop.dense_forward(x, w, b, act, stats=True,
                                                                n_threads=n), args.repeat)
                t_np = median_time(lambda: numpy_forward(x, w, b, act), args.repeat)
                gflops = 2 * batch * width * width / t_f / 1e9
                print(f"{batch}x{width}x{width:>6} {np.dtype(dtype).name:>7} {act:>5} "
                      f"{t_gemm * 1e3:8.3f} {t_f / t_gemm:6.3f} {t_s / t_gemm:7.3f} "
                      f"{t_np / t_f:11.2f} {gflops:8.1f}")
    print()
    print("forward + backward, float32: time / varprop time (> 1 means varprop is faster)")
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        torch = None
    print(f"{'shape':>16} {'act':>5} {'varprop ms':>10} {'numpy':>7} {'torch':>7}")
    for batch, width in SHAPES[:3]:
        x, w, b = layer_data(batch, width, np.float32)
        g = np.ones((batch, width), np.float32)
        for act in ACTIVATIONS:
            def ours():
                f = varprop.dense_forward(x, w, b, act, n_threads=n)
                varprop.dense_backward(x, w, f.z, g, act, n_threads=n)
            t_v = median_time(ours, args.repeat)
            t_n = median_time(lambda: numpy_forward_backward(x, w, b, act, g), args.repeat)
            t_t = float("nan")
            if torch is not None:
                xt, wt, bt = (torch.from_numpy(v).requires_grad_(True) for v in (x, w, b))
                gt = torch.from_numpy(g)
                fn = {"relu": torch.relu, "tanh": torch.tanh,
                      "gelu": torch.nn.functional.gelu}[act]

                def theirs():
                    for t in (xt, wt, bt):
                        t.grad = None
                    fn(torch.addmm(bt, xt, wt)).backward(gt)
                t_t = median_time(theirs, args.repeat)
            print(f"{batch}x{width}x{width:>6} {act:>5} {t_v * 1e3:10.3f} "
                  f"{t_n / t_v:7.2f} {t_t / t_v:7.2f}")
    print()
    x, w, b = layer_data(256, 1024, np.float32)
    big = np.ones((512, 512), np.float32)
    alone = median_time(lambda: varprop.dense_forward(x, w, b, "tanh"), args.repeat)

    def after():
        big @ big
        t0 = time.perf_counter()
        varprop.dense_forward(x, w, b, "tanh")
        return time.perf_counter() - t0

    after()
    t_after = statistics.median(after() for _ in range(args.repeat))
    print(f"kernel right after a numpy matmul / alone (256x1024x1024 float32 tanh): "
          f"{t_after / alone:.2f}")


if __name__ == "__main__":
    main()
