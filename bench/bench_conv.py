"""Convolution forward and forward+backward against PyTorch CPU and the bare im2col GEMM
(float32, 3x3 "same", bias + ReLU, 2 threads), one group per shape.

Run:  pytest bench/bench_conv.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_conv.py [--repeat 9]    # the ratios of one run, as a table

PyTorch runs in its own layout (NCHW inputs, OIHW weights, prepared outside the timing:
only the op is timed), on torch.set_num_threads(2). "bare" is the unfused floor: the
C im2col of the whole batch plus one scipy sgemm on those patches (BLAS on 2 threads),
each timed on its own; the fused pass adds the bias, the ReLU and the statistics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _cases import bare_gemm, interleaved_times  # noqa: E402

from varprop import conv_kernels as ck  # noqa: E402

THREADS = 2
#: (batch, H, W, C_in, C_out): the seeds' shapes and one larger layer
SHAPES = [(64, 8, 8, 1, 16), (64, 8, 8, 16, 32), (64, 28, 28, 1, 16), (64, 28, 28, 16, 32),
          (32, 56, 56, 64, 64)]


def _data(shape):
    b, h, w, ci, co = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, h, w, ci)).astype(np.float32)
    wt = (rng.standard_normal((3, 3, ci, co)) * np.sqrt(2 / (9 * ci))).astype(np.float32)
    bias = (0.1 * rng.standard_normal(co)).astype(np.float32)
    return x, wt, bias


def _ours_forward(x, w, b):
    return ck.conv_forward(x, w, b, "relu", padding="same", stats=True, n_threads=THREADS)


def _ours_both(x, w, b):
    r = ck.conv_forward(x, w, b, "relu", padding="same", n_threads=THREADS)
    return ck.conv_backward(x, w, r.z, r.a, "relu", padding="same", n_threads=THREADS)


def _columns(x):
    """The C im2col of the whole batch (what conv_forward feeds the GEMM)."""
    geo = ck._geo(x.shape, (3, 3), 1, "same", 1)
    buf = np.empty((x.shape[0] * geo.pixels, 9 * x.shape[-1]), x.dtype)
    return ck._columns(x, geo, 0, x.shape[-1], buf, THREADS)


def _bare(x, w):
    """im2col + the BLAS sgemm alone: the floor of the fused pass."""
    return bare_gemm(_columns(x), w.reshape(-1, w.shape[-1]))


def _torch_pieces(x, w, b):
    import torch
    torch.set_num_threads(THREADS)
    xt = torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    wt = torch.tensor(np.ascontiguousarray(np.moveaxis(w, (-1, -2), (0, 1))))
    return torch, xt, wt, torch.tensor(b)


def _torch_forward(torch, xt, wt, bt):
    with torch.no_grad():
        return torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=1))


def _torch_both(torch, xt, wt, bt):
    xg, wg = xt.detach().requires_grad_(), wt.detach().requires_grad_()
    y = torch.relu(torch.nn.functional.conv2d(xg, wg, bt, padding=1))
    y.backward(y.detach())
    return xg.grad, wg.grad


def _id(shape):
    return "b{}_{}x{}_{}to{}".format(*shape)


IDS = [_id(s) for s in SHAPES]


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_conv_forward(benchmark, shape):
    x, w, b = _data(shape)
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(_ours_forward, x, w, b)
    want = np.maximum(_bare(x, w) + b, 0).reshape(out.a.shape)
    np.testing.assert_allclose(out.a, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_conv_forward_backward(benchmark, shape):
    x, w, b = _data(shape)
    benchmark.group = "conv forward+backward " + _id(shape)
    out = benchmark(_ours_both, x, w, b)
    assert out.grad_x.shape == x.shape and out.grad_w.shape == w.shape


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_im2col(benchmark, shape):
    x, w, _ = _data(shape)
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(_columns, x)
    assert out.shape == (np.prod(x.shape[:3]), w.shape[0] * w.shape[1] * w.shape[2])


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_bare_gemm(benchmark, shape):
    x, w, b = _data(shape)
    cols, w2 = _columns(x).copy(), w.reshape(-1, w.shape[-1])
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(bare_gemm, cols, w2)
    np.testing.assert_allclose(np.maximum(out + b, 0).reshape(_ours_forward(x, w, b).a.shape),
                               _ours_forward(x, w, b).a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_torch_forward(benchmark, shape):
    pytest.importorskip("torch")
    x, w, b = _data(shape)
    pieces = _torch_pieces(x, w, b)
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(_torch_forward, *pieces)
    np.testing.assert_allclose(np.moveaxis(out.numpy(), 1, -1), _ours_forward(x, w, b).a,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_torch_forward_backward(benchmark, shape):
    pytest.importorskip("torch")
    x, w, b = _data(shape)
    pieces = _torch_pieces(x, w, b)
    benchmark.group = "conv forward+backward " + _id(shape)
    gx, gw = benchmark(_torch_both, *pieces)
    ours = _ours_both(x, w, b)
    np.testing.assert_allclose(np.moveaxis(gx.numpy(), 1, -1), ours.grad_x, rtol=1e-3,
                               atol=1e-3)
    np.testing.assert_allclose(np.moveaxis(gw.numpy(), (0, 1), (-1, -2)), ours.grad_w,
                               rtol=1e-3, atol=1e-3 * np.abs(ours.grad_w).max())


def _ours_forward_nostats(x, w, b):
    return ck.conv_forward(x, w, b, "relu", padding="same", n_threads=THREADS)


def ratios(repeat: int = 9, rounds: int = 3) -> list[dict]:
    """Per shape, each contender's best and median time (bench/_cases.interleaved_times);
    "bare" is im2col + sgemm, each timed on its own."""
    rows = []
    for shape in SHAPES:
        x, w, b = _data(shape)
        cols, w2 = _columns(x).copy(), w.reshape(-1, w.shape[-1])
        fns = {"fwd": lambda: _ours_forward(x, w, b),
               "fwd_nostats": lambda: _ours_forward_nostats(x, w, b),
               "fb": lambda: _ours_both(x, w, b), "im2col": lambda: _columns(x),
               "gemm": lambda: bare_gemm(cols, w2)}
        try:
            pieces = _torch_pieces(x, w, b)
            fns.update(torch_fwd=lambda: _torch_forward(*pieces),
                       torch_fb=lambda: _torch_both(*pieces))
        except ImportError:
            pass
        t = interleaved_times(fns, repeat, rounds)
        bare = [i + g for i, g in zip(t.pop("im2col_all"), t.pop("gemm_all"))]
        t["bare"], t["bare_median"] = min(bare), float(np.median(bare))
        rows.append({"shape": _id(shape), **{k: v for k, v in t.items() if not k.endswith("_all")}})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    nan = float("nan")
    print(f"{THREADS} threads, float32, 3x3 same, bias + relu; best of {args.rounds} x "
          f"{args.repeat} calls (median in brackets). torch/ours > 1: varprop faster")
    print(f"{'shape':18} {'fwd ms':>7} {'+stats':>7} {'torch':>7} {'torch/ours':>15} "
          f"{'f+b ms':>7} {'torch':>7} {'torch/ours':>15} {'fused/bare':>10} {'im2col':>7}")
    for r in ratios(args.repeat, args.rounds):
        tf, tfb = r.get("torch_fwd", nan), r.get("torch_fb", nan)
        med = r.get("torch_fwd_median", nan) / r["fwd_nostats_median"]
        medfb = r.get("torch_fb_median", nan) / r["fb_median"]
        print(f"{r['shape']:18} {1e3 * r['fwd_nostats']:7.2f} {1e3 * r['fwd']:7.2f} "
              f"{1e3 * tf:7.2f} {tf / r['fwd_nostats']:6.2f} [{med:6.2f}] "
              f"{1e3 * r['fb']:7.2f} {1e3 * tfb:7.2f} {tfb / r['fb']:6.2f} [{medfb:6.2f}] "
              f"{r['fwd'] / r['bare']:10.2f} {r['im2col'] / r['bare']:7.2f}")
    print("fwd: no statistics (torch computes none); +stats: with the per-channel "
          "statistics; fused/bare: forward with statistics / (im2col + sgemm, each timed "
          "on its own: run back to back, OpenMP's and OpenBLAS's spinning thread pools "
          "fight over the cores); im2col: its share of bare")


if __name__ == "__main__":
    main()
