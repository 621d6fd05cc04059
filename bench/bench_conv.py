"""Convolution forward and forward+backward against PyTorch CPU and the bare im2col GEMM,
in one group per shape (float32, 3x3 "same", ReLU, 2 threads).

Run:  pytest bench/bench_conv.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_conv.py        # the ratios of one interleaved run, as a table
Targets (issue 14): forward and forward+backward no slower than PyTorch on the seeds'
shapes and on batch 32, 56x56, 64 -> 64; the fused epilogue (bias, ReLU, per-channel
statistics) within 1.1x the bare im2col GEMM.
"""

import time

import numpy as np
import pytest

from varprop import conv_kernels as ck

THREADS = 2
#: (batch, H, W, C_in, C_out): the seeds' shapes and one larger layer
SHAPES = [(64, 8, 8, 1, 16), (64, 8, 8, 16, 32), (64, 28, 28, 1, 16), (64, 28, 28, 16, 32),
          (32, 56, 56, 64, 64)]


def _data(shape):
    b, h, w, ci, co = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, h, w, ci)).astype(np.float32)
    wt = (rng.standard_normal((3, 3, ci, co)) * np.sqrt(2 / (9 * ci))).astype(np.float32)
    bias = np.zeros(co, np.float32)
    return x, wt, bias


def _ours_forward(x, w, b):
    return ck.conv_forward(x, w, b, "relu", padding="same", stats=True, n_threads=THREADS)


def _ours_both(x, w, b):
    r = ck.conv_forward(x, w, b, "relu", padding="same", n_threads=THREADS)
    return ck.conv_backward(x, w, r.z, r.a, "relu", padding="same", n_threads=THREADS)


def _bare_gemm(x, w):
    """im2col (the same patches) and the BLAS sgemm alone: the floor of the fused pass."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.ascontiguousarray(ck._patches(xp, (3, 3), (1, 1), (1, 1), x.shape[1:3]))
    cols = cols.reshape(-1, 9 * x.shape[-1])
    return cols @ w.reshape(-1, w.shape[-1])  # numpy's BLAS call, no layout copy


def _torch_pieces(x, w, b):
    import torch
    torch.set_num_threads(THREADS)
    xt = torch.tensor(np.moveaxis(x, -1, 1).copy())
    wt = torch.tensor(np.moveaxis(w, (-1, -2), (0, 1)).copy())
    bt = torch.tensor(b)
    return torch, xt, wt, bt


def _torch_forward(torch, xt, wt, bt):
    with torch.no_grad():
        return torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=1))


def _torch_both(torch, xt, wt, bt):
    xg, wg = xt.clone().requires_grad_(), wt.clone().requires_grad_()
    y = torch.relu(torch.nn.functional.conv2d(xg, wg, bt, padding=1))
    y.backward(y.detach())
    return xg.grad, wg.grad


def _id(shape):
    return "b{}_{}x{}_{}to{}".format(*shape)


@pytest.mark.parametrize("shape", SHAPES, ids=[_id(s) for s in SHAPES])
def test_conv_forward(benchmark, shape):
    x, w, b = _data(shape)
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(_ours_forward, x, w, b)
    assert out.a.shape == x.shape[:3] + (w.shape[-1],)


@pytest.mark.parametrize("shape", SHAPES, ids=[_id(s) for s in SHAPES])
def test_conv_forward_backward(benchmark, shape):
    x, w, b = _data(shape)
    benchmark.group = "conv forward+backward " + _id(shape)
    out = benchmark(_ours_both, x, w, b)
    assert out.grad_x.shape == x.shape


@pytest.mark.parametrize("shape", SHAPES, ids=[_id(s) for s in SHAPES])
def test_bare_im2col_gemm(benchmark, shape):
    x, w, b = _data(shape)
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(_bare_gemm, x, w)
    assert np.allclose(np.maximum(out, 0).reshape(_ours_forward(x, w, b).a.shape),
                       _ours_forward(x, w, b).a, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=[_id(s) for s in SHAPES])
def test_torch_forward(benchmark, shape):
    pytest.importorskip("torch")
    x, w, b = _data(shape)
    pieces = _torch_pieces(x, w, b)
    benchmark.group = "conv forward " + _id(shape)
    out = benchmark(_torch_forward, *pieces)
    assert np.allclose(np.moveaxis(out.numpy(), 1, -1), _ours_forward(x, w, b).a, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=[_id(s) for s in SHAPES])
def test_torch_forward_backward(benchmark, shape):
    pytest.importorskip("torch")
    x, w, b = _data(shape)
    pieces = _torch_pieces(x, w, b)
    benchmark.group = "conv forward+backward " + _id(shape)
    gx, _ = benchmark(_torch_both, *pieces)
    assert np.allclose(np.moveaxis(gx.numpy(), 1, -1), _ours_both(x, w, b).grad_x, atol=1e-3)


def _median(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def ratios(repeats: int = 7) -> list[tuple[str, float, float, float, float]]:
    """Per shape: torch / varprop forward and forward+backward (above 1: varprop
    faster), fused forward / bare im2col GEMM, and varprop's forward in ms; the
    contenders interleaved in blocks, median of ``repeats``."""
    rows = []
    for shape in SHAPES:
        x, w, b = _data(shape)
        pieces = _torch_pieces(x, w, b)
        fns = {"ours_f": lambda: _ours_forward(x, w, b), "ours_fb": lambda: _ours_both(x, w, b),
               "gemm": lambda: _bare_gemm(x, w), "torch_f": lambda: _torch_forward(*pieces),
               "torch_fb": lambda: _torch_both(*pieces)}
        for f in fns.values():
            f()  # warm up
        t = {k: [] for k in fns}
        for _ in range(3):
            for k, f in fns.items():
                time.sleep(0.05)
                t[k].append(_median(f, repeats))
        m = {k: float(np.median(v)) for k, v in t.items()}
        rows.append((_id(shape), m["torch_f"] / m["ours_f"], m["torch_fb"] / m["ours_fb"],
                     m["ours_f"] / m["gemm"], 1e3 * m["ours_f"]))
    return rows


if __name__ == "__main__":
    print(f"{'shape':24} {'torch/ours fwd':>14} {'torch/ours f+b':>14} "
          f"{'fused/gemm':>10} {'ours fwd ms':>11}")
    for name, f, fb, g, ms in ratios():
        print(f"{name:24} {f:14.2f} {fb:14.2f} {g:10.2f} {ms:11.2f}")
