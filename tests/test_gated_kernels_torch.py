"""The gated-cell kernels against torch.nn.LSTM and torch.nn.GRU (skipped without torch):
the outputs, the final states and the autograd gradients of sum(up * output) with
respect to the input, the initial states and every weight and bias, float32 and
float64, initial states given.

Mapping: torch keeps W_ih (G H, F), W_hh (G H, H), b_ih, b_hh with its gates in the
order i, f, g, o (LSTM) and r, z, n (GRU); the kernels' canonical form is w_x = W_ih^T,
w_h = W_hh^T, b_x = b_ih, b_h = b_hh with the GRU's first two blocks swapped (z, r, n).
Torch computes the same equations in another order and with its own sigmoid and tanh,
so the tolerance is tests/_gated_reference.py's 2 u E with each side's gates allowed 4 ulps
(torch's vectorized sigmoid and tanh are within a few ulps, not correctly rounded)."""

import numpy as np
import pytest

from _gated_reference import G, reference, unit_roundoff
from test_gated_kernels import _data, _run

torch = pytest.importorskip("torch")

SHAPES = [(1, 1, 1, 1), (5, 3, 4, 6), (7, 37, 9, 13), (4, 2, 20, 3)]


def _perm(kind, hidden):
    """Rows of torch's arrays in canonical order (its own inverse: a swap of blocks)."""
    if kind == "lstm":
        return np.arange(4 * hidden)
    return np.r_[hidden:2 * hidden, 0:hidden, 2 * hidden:3 * hidden]


def _within(mine, theirs, tol, what):
    mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
    assert mine.shape == theirs.shape, what
    diff = np.abs(mine - theirs)
    assert np.all(diff <= tol + 1e-300), (what, float(np.max(diff - tol)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_forward_and_backward_match_torch(kind, shape, dtype):
    steps, batch, n_in, hidden = shape
    x, w_x, w_h, b_x, b_h, h0, c0, _ = _data(kind, shape, dtype, seed=21)
    up = np.random.default_rng(22).standard_normal((steps, batch, hidden)).astype(dtype)
    perm = _perm(kind, hidden)
    ttype = torch.float32 if dtype == np.float32 else torch.float64
    mod = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(n_in, hidden).to(ttype)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.tensor(np.ascontiguousarray(w_x.T[perm])))
        mod.weight_hh_l0.copy_(torch.tensor(np.ascontiguousarray(w_h.T[perm])))
        mod.bias_ih_l0.copy_(torch.tensor(b_x[perm]))
        mod.bias_hh_l0.copy_(torch.tensor(b_h[perm]))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    if kind == "lstm":
        c0t = torch.tensor(c0[None], requires_grad=True)
        out, (h_n, c_n) = mod(xt, (h0t, c0t))
    else:
        out, h_n = mod(xt, h0t)
    (out * torch.tensor(up)).sum().backward()

    f, g = _run(kind, x, w_x, w_h, b_x, b_h, h0, c0, up)
    ref = reference(kind, x, w_x, w_h, b_x, b_h, h0, c0, up, ulps=4)
    tol = 2 * unit_roundoff(dtype)
    _within(f.h, out.detach().numpy(), tol * ref["h"].e, "h")
    _within(f.h[-1], h_n.detach().numpy()[0], tol * ref["h"].e[-1], "h_n")
    if kind == "lstm":
        _within(f.c[-1], c_n.detach().numpy()[0], tol * ref["c"].e[-1], "c_n")
        _within(g.grad_c0, c0t.grad.numpy()[0], tol * ref["grad_c0"].e, "grad_c0")
    checks = {
        "grad_x": (g.grad_x, xt.grad.numpy()),
        "grad_h0": (g.grad_h0, h0t.grad.numpy()[0]),
        "grad_w_x": (g.grad_w_x, mod.weight_ih_l0.grad.numpy()[perm].T),
        "grad_w_h": (g.grad_w_h, mod.weight_hh_l0.grad.numpy()[perm].T),
        "grad_b_x": (g.grad_b_x, mod.bias_ih_l0.grad.numpy()[perm]),
        "grad_b_h": (g.grad_b_h, mod.bias_hh_l0.grad.numpy()[perm]),
    }
    for what, (mine, theirs) in checks.items():
        assert mine.dtype == dtype, what
        _within(mine, theirs, tol * ref[what].e, what)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_zero_states_and_no_bias_are_torchs_defaults(kind):
    shape = (6, 4, 3, 5)
    x, w_x, w_h, *_ = _data(kind, shape, np.float64, seed=24)
    perm = _perm(kind, shape[3])
    mod = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(3, 5, bias=False).double()
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.tensor(np.ascontiguousarray(w_x.T[perm])))
        mod.weight_hh_l0.copy_(torch.tensor(np.ascontiguousarray(w_h.T[perm])))
    out, _ = mod(torch.tensor(x))
    up = np.zeros((6, 4, 5))
    f, _ = _run(kind, x, w_x, w_h, None, None, None, None, up)
    ref = reference(kind, x, w_x, w_h, None, None, None, None, up, ulps=4)
    _within(f.h, out.detach().numpy(), 2 * unit_roundoff(np.float64) * ref["h"].e, "h")
    assert G[kind] * shape[3] == f.gates.shape[2]
