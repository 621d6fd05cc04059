"""Simple RNN forward and forward+backward through time against PyTorch CPU's nn.RNN and
the plain-numpy twin (float32, tanh, a loss on every step, 2 threads), one group per shape.

Run:  pytest bench/bench_rnn.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_rnn.py [--repeat 9] [--rounds 3]   # the ratios, as a table

PyTorch runs nn.RNN(F, H, nonlinearity="tanh") on torch.set_num_threads(2), its inputs
and module prepared outside the timing; the backward is autograd's, from the same
upstream gradient. The numpy twin (varprop._reference_rnn) is a Python loop over the
steps with numpy matmuls in float64: what one would write without the kernels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _cases import interleaved_times  # noqa: E402

from varprop import _reference_rnn as ref  # noqa: E402
from varprop import rnn_kernels as rk  # noqa: E402

THREADS = 2
#: (T, B, F, H): the issue's 128-unit layer over 100 steps, and a small one where the
#: per-call overheads show
SHAPES = [(100, 32, 128, 128), (25, 8, 16, 32)]


def _data(shape):
    steps, batch, n_in, hidden = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, n_in)).astype(np.float32)
    w_x = (rng.standard_normal((n_in, hidden)) / np.sqrt(n_in)).astype(np.float32)
    w_h = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    b = (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    up = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    return x, w_x, w_h, b, up


def _ours_forward(x, w_x, w_h, b, up):
    return rk.rnn_forward(x, w_x, w_h, b, None, "tanh", n_threads=THREADS)


def _ours_both(x, w_x, w_h, b, up):
    f = rk.rnn_forward(x, w_x, w_h, b, None, "tanh", n_threads=THREADS)
    return rk.rnn_backward(x, w_x, w_h, f.z, f.h, up, None, "tanh", n_threads=THREADS)


def _numpy_both(x, w_x, w_h, b, up):
    f = ref.rnn_forward(x, w_x, w_h, b, None, "tanh")
    return ref.rnn_backward(x, w_x, w_h, f.z, f.h, up, None, "tanh")


def _torch_pieces(x, w_x, w_h, b, up):
    """(torch, module, x, upstream gradient): torch's layout (W_ih = w_x^T, W_hh = w_h^T,
    b_ih = b, b_hh = 0) on THREADS threads."""
    import torch
    torch.set_num_threads(THREADS)
    rnn = torch.nn.RNN(x.shape[2], w_h.shape[0], nonlinearity="tanh")
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(np.ascontiguousarray(w_x.T)))
        rnn.weight_hh_l0.copy_(torch.tensor(np.ascontiguousarray(w_h.T)))
        rnn.bias_ih_l0.copy_(torch.tensor(b))
        rnn.bias_hh_l0.zero_()
    return torch, rnn, torch.tensor(x), torch.tensor(up)


def _torch_forward(torch, rnn, xt, upt):
    with torch.no_grad():
        return rnn(xt)[0]


def _torch_both(torch, rnn, xt, upt):
    rnn.zero_grad(set_to_none=True)
    xg = xt.detach().requires_grad_()
    out, _ = rnn(xg)
    out.backward(upt)
    return xg.grad, rnn.weight_hh_l0.grad


def _id(shape):
    return "T{}_B{}_F{}_H{}".format(*shape)


IDS = [_id(s) for s in SHAPES]


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_rnn_forward(benchmark, shape):
    data = _data(shape)
    benchmark.group = "rnn forward " + _id(shape)
    out = benchmark(_ours_forward, *data)
    np.testing.assert_allclose(out.h, ref.rnn_forward(*data[:4]).h, rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_rnn_forward_backward(benchmark, shape):
    data = _data(shape)
    benchmark.group = "rnn forward+backward " + _id(shape)
    out = benchmark(_ours_both, *data)
    want = _numpy_both(*data)
    scale = np.abs(want.grad_w_h).max()
    np.testing.assert_allclose(out.grad_w_h, want.grad_w_h, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_numpy_twin_forward_backward(benchmark, shape):
    data = _data(shape)
    benchmark.group = "rnn forward+backward " + _id(shape)
    out = benchmark(_numpy_both, *data)
    assert out.grad_x.shape == data[0].shape and out.grad_w_h.shape == data[2].shape


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_torch_forward(benchmark, shape):
    pytest.importorskip("torch")
    data = _data(shape)
    pieces = _torch_pieces(*data)
    benchmark.group = "rnn forward " + _id(shape)
    out = benchmark(_torch_forward, *pieces)
    np.testing.assert_allclose(out.numpy(), _ours_forward(*data).h, rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_torch_forward_backward(benchmark, shape):
    pytest.importorskip("torch")
    data = _data(shape)
    pieces = _torch_pieces(*data)
    benchmark.group = "rnn forward+backward " + _id(shape)
    gx, gwh = benchmark(_torch_both, *pieces)
    ours = _ours_both(*data)
    np.testing.assert_allclose(gx.numpy(), ours.grad_x, rtol=0,
                               atol=1e-4 * np.abs(ours.grad_x).max())
    np.testing.assert_allclose(gwh.numpy().T, ours.grad_w_h, rtol=0,
                               atol=1e-4 * np.abs(ours.grad_w_h).max())


def ratios(repeat: int = 9, rounds: int = 3) -> list[dict]:
    """Per shape, each contender's best and median time (bench/_cases.interleaved_times)."""
    rows = []
    for shape in SHAPES:
        data = _data(shape)
        fns = {"fwd": lambda: _ours_forward(*data), "fb": lambda: _ours_both(*data),
               "numpy_fb": lambda: _numpy_both(*data)}
        try:
            pieces = _torch_pieces(*data)
            fns.update(torch_fwd=lambda: _torch_forward(*pieces),
                       torch_fb=lambda: _torch_both(*pieces))
        except ImportError:
            pass
        t = interleaved_times(fns, repeat, rounds)
        rows.append({"shape": _id(shape), **{k: v for k, v in t.items() if not k.endswith("_all")}})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    nan = float("nan")
    print(f"{THREADS} threads, float32, tanh; best of {args.rounds} x {args.repeat} calls "
          "(median ratio in brackets). x/ours > 1: varprop faster")
    print(f"{'shape':22} {'fwd ms':>7} {'torch':>7} {'torch/ours':>15} {'f+b ms':>7} "
          f"{'torch':>7} {'torch/ours':>15} {'numpy':>8} {'numpy/ours':>10}")
    for r in ratios(args.repeat, args.rounds):
        tf, tfb = r.get("torch_fwd", nan), r.get("torch_fb", nan)
        med = r.get("torch_fwd_median", nan) / r["fwd_median"]
        medfb = r.get("torch_fb_median", nan) / r["fb_median"]
        print(f"{r['shape']:22} {1e3 * r['fwd']:7.2f} {1e3 * tf:7.2f} "
              f"{tf / r['fwd']:6.2f} [{med:6.2f}] {1e3 * r['fb']:7.2f} {1e3 * tfb:7.2f} "
              f"{tfb / r['fb']:6.2f} [{medfb:6.2f}] {1e3 * r['numpy_fb']:8.2f} "
              f"{r['numpy_fb'] / r['fb']:10.2f}")


if __name__ == "__main__":
    main()
