"""LSTM and GRU forward and forward+backward through time against PyTorch CPU's
nn.LSTM / nn.GRU and the plain-numpy twin (float32, a loss on every step, 2 threads).

Run:  pytest bench/bench_gated.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_gated.py [--repeat 5] [--rounds 3]   # the ratios, as a table

PyTorch runs nn.LSTM(F, H) / nn.GRU(F, H) on torch.set_num_threads(2), its inputs and
module prepared outside the timing; its backward is autograd's, from the same upstream
gradient. The numpy twin (varprop.recurrent.gated_arrays) is a Python loop over the
steps with numpy matmuls in float32: what one would write without the kernels. Every
contender computes the gradients of the input and of all weights and biases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _cases import interleaved_times  # noqa: E402

from varprop import gated_kernels as gk  # noqa: E402
from varprop.recurrent.gated import GRU, LSTM  # noqa: E402
from varprop.recurrent.gated_arrays import gated_backward, gated_forward  # noqa: E402

THREADS = 2
#: (T, B, F, H): the issue's 128-unit layer over 100 steps, and a small one where the
#: per-call overheads show
SHAPES = [(100, 32, 128, 128), (25, 8, 16, 32)]
KINDS = ["lstm", "gru"]
_G = {"lstm": 4, "gru": 3}


def _data(kind, shape):
    """x, canonical w_x (F, G H), w_h (H, G H), b_x, b_h (zeros for the LSTM, as Keras's
    single bias), the upstream gradient, and the Keras-layout cell and arrays for the
    numpy twin (the same numbers)."""
    steps, batch, n_in, hidden = shape
    gh = _G[kind] * hidden
    rng = np.random.default_rng(0)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    x = f32(rng.standard_normal((steps, batch, n_in)))
    w_x = f32(rng.standard_normal((n_in, gh)) / np.sqrt(n_in))
    w_h = f32(rng.standard_normal((hidden, gh)) / np.sqrt(hidden))
    b_x = f32(0.1 * rng.standard_normal(gh))
    b_h = np.zeros(gh, np.float32) if kind == "lstm" else f32(0.1 * rng.standard_normal(gh))
    up = f32(rng.standard_normal((steps, batch, hidden)))
    if kind == "lstm":
        cell = LSTM(n_in, hidden, unit_forget_bias=False)
        params = {"kernel": w_x, "recurrent_kernel": w_h, "bias": b_x}
    else:
        cell = GRU(n_in, hidden)
        params = {"kernel": w_x, "recurrent_kernel": w_h, "bias": np.stack([b_x, b_h])}
    return {"kind": kind, "x": x, "w_x": w_x, "w_h": w_h, "b_x": b_x,
            "b_h": None if kind == "lstm" else b_h, "up": up, "cell": cell,
            "params": params}


def _ours_forward(d):
    fn = gk.lstm_forward if d["kind"] == "lstm" else gk.gru_forward
    return fn(d["x"], d["w_x"], d["w_h"], d["b_x"], d["b_h"], n_threads=THREADS)


def _ours_both(d):
    f = _ours_forward(d)
    if d["kind"] == "lstm":
        return gk.lstm_backward(d["x"], d["w_x"], d["w_h"], f.h, f.c, f.gates, d["up"],
                                n_threads=THREADS)
    return gk.gru_backward(d["x"], d["w_x"], d["w_h"], f.h, f.gates, f.s, d["up"],
                           n_threads=THREADS)


def _numpy_both(d):
    f = gated_forward(d["cell"], d["x"], d["params"])
    return gated_backward(d["cell"], d["x"], d["params"], f, d["up"])


def _torch_pieces(d):
    """(torch, module, x, upstream gradient) in torch's layout (W_ih = w_x^T, gates
    i, f, g, o / r, z, n) on THREADS threads."""
    import torch
    torch.set_num_threads(THREADS)
    steps, batch, n_in = d["x"].shape
    hidden = d["w_h"].shape[0]
    perm = np.arange(4 * hidden) if d["kind"] == "lstm" else \
        np.r_[hidden:2 * hidden, 0:hidden, 2 * hidden:3 * hidden]
    mod = (torch.nn.LSTM if d["kind"] == "lstm" else torch.nn.GRU)(n_in, hidden)
    b_h = np.zeros_like(d["b_x"]) if d["b_h"] is None else d["b_h"]
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.tensor(np.ascontiguousarray(d["w_x"].T[perm])))
        mod.weight_hh_l0.copy_(torch.tensor(np.ascontiguousarray(d["w_h"].T[perm])))
        mod.bias_ih_l0.copy_(torch.tensor(d["b_x"][perm]))
        mod.bias_hh_l0.copy_(torch.tensor(b_h[perm]))
    return torch, mod, torch.tensor(d["x"]), torch.tensor(d["up"])


def _torch_forward(torch, mod, xt, upt):
    with torch.no_grad():
        return mod(xt)[0]


def _torch_both(torch, mod, xt, upt):
    mod.zero_grad(set_to_none=True)
    xg = xt.detach().requires_grad_()
    out, _ = mod(xg)
    out.backward(upt)
    return xg.grad, mod.weight_hh_l0.grad


def _id(kind, shape):
    return "{}_T{}_B{}_F{}_H{}".format(kind, *shape)


CASES = [(k, s) for k in KINDS for s in SHAPES]
IDS = [_id(k, s) for k, s in CASES]


@pytest.mark.parametrize("kind, shape", CASES, ids=IDS)
def test_gated_forward(benchmark, kind, shape):
    d = _data(kind, shape)
    benchmark.group = "gated forward " + _id(kind, shape)
    out = benchmark(_ours_forward, d)
    np.testing.assert_allclose(out.h, gated_forward(d["cell"], d["x"], d["params"]).h,
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind, shape", CASES, ids=IDS)
def test_gated_forward_backward(benchmark, kind, shape):
    d = _data(kind, shape)
    benchmark.group = "gated forward+backward " + _id(kind, shape)
    out = benchmark(_ours_both, d)
    want = _numpy_both(d).grad_x
    np.testing.assert_allclose(out.grad_x, want, rtol=0, atol=1e-3 * np.abs(want).max())


@pytest.mark.parametrize("kind, shape", CASES, ids=IDS)
def test_numpy_twin_forward_backward(benchmark, kind, shape):
    d = _data(kind, shape)
    benchmark.group = "gated forward+backward " + _id(kind, shape)
    out = benchmark(_numpy_both, d)
    assert out.grad_x.shape == d["x"].shape


@pytest.mark.parametrize("kind, shape", CASES, ids=IDS)
def test_torch_forward_backward(benchmark, kind, shape):
    pytest.importorskip("torch")
    d = _data(kind, shape)
    pieces = _torch_pieces(d)
    benchmark.group = "gated forward+backward " + _id(kind, shape)
    gx, _ = benchmark(_torch_both, *pieces)
    ours = _ours_both(d).grad_x
    np.testing.assert_allclose(gx.numpy(), ours, rtol=0, atol=1e-3 * np.abs(ours).max())


def ratios(repeat: int = 5, rounds: int = 3) -> list[dict]:
    """Per case, each contender's best and median time (bench/_cases.interleaved_times)."""
    rows = []
    for kind, shape in CASES:
        d = _data(kind, shape)
        fns = {"fwd": lambda: _ours_forward(d), "fb": lambda: _ours_both(d),
               "numpy_fb": lambda: _numpy_both(d)}
        try:
            pieces = _torch_pieces(d)
            fns.update(torch_fwd=lambda: _torch_forward(*pieces),
                       torch_fb=lambda: _torch_both(*pieces))
        except ImportError:
            pass
        t = interleaved_times(fns, repeat, rounds)
        rows.append({"case": _id(kind, shape),
                     **{k: v for k, v in t.items() if not k.endswith("_all")}})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    nan = float("nan")
    print(f"{THREADS} threads, float32; best of {args.rounds} x {args.repeat} calls "
          "(median ratio in brackets). x/ours > 1: varprop faster")
    print(f"{'case':26} {'fwd ms':>7} {'torch':>7} {'torch/ours':>15} {'f+b ms':>7} "
          f"{'torch':>7} {'torch/ours':>15} {'numpy':>8} {'numpy/ours':>15}")
    for r in ratios(args.repeat, args.rounds):
        tf, tfb = r.get("torch_fwd", nan), r.get("torch_fb", nan)
        med = r.get("torch_fwd_median", nan) / r["fwd_median"]
        medfb = r.get("torch_fb_median", nan) / r["fb_median"]
        mednp = r["numpy_fb_median"] / r["fb_median"]
        print(f"{r['case']:26} {1e3 * r['fwd']:7.2f} {1e3 * tf:7.2f} "
              f"{tf / r['fwd']:6.2f} [{med:6.2f}] {1e3 * r['fb']:7.2f} {1e3 * tfb:7.2f} "
              f"{tfb / r['fb']:6.2f} [{medfb:6.2f}] {1e3 * r['numpy_fb']:8.2f} "
              f"{r['numpy_fb'] / r['fb']:6.2f} [{mednp:6.2f}]")


if __name__ == "__main__":
    main()
