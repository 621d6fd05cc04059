"""The recurrent kernels against torch.nn.RNN (skipped without torch): forward states and
the autograd gradients of sum(up * output), for tanh and relu, float32 and float64.

Mapping: torch keeps W_ih (H, F) and W_hh (H, H) and two biases, varprop W_x (F, H),
W_h (H, H) and one bias: w_x = W_ih^T, w_h = W_hh^T, b = b_ih + b_hh (one rounding,
inside the bound's bias term), and both of torch's bias gradients equal grad_b. The
tolerances are test_rnn_kernels.py's bounds, each side's activation allowed 4 eps (torch's
vectorized tanh is within a few ulps, not correctly rounded)."""

import numpy as np
import pytest

from test_rnn_kernels import _data, backward_bound, forward_bound
from varprop import rnn_kernels as rk
from varprop.activations import get_activation

torch = pytest.importorskip("torch")

SHAPES = [(1, 1, 1, 1), (5, 3, 4, 6), (7, 37, 9, 13), (4, 2, 20, 3)]


def _within(mine, theirs, tol, what):
    diff = np.abs(np.asarray(mine, np.float64) - np.asarray(theirs, np.float64))
    assert mine.shape == theirs.shape, what
    assert np.all(diff <= tol + 1e-300), (what, float(np.max(diff - tol)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_forward_and_backward_match_torch_rnn(name, shape, dtype):
    steps, batch, n_in, hidden = shape
    x, w_x, w_h, b_ih, h0 = _data(shape, dtype, seed=21)
    b_hh = (0.2 * np.random.default_rng(22).standard_normal(hidden)).astype(dtype)
    up = np.random.default_rng(23).standard_normal((steps, batch, hidden)).astype(dtype)
    ttype = torch.float32 if dtype == np.float32 else torch.float64
    rnn = torch.nn.RNN(n_in, hidden, nonlinearity=name).to(ttype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(w_x.T))
        rnn.weight_hh_l0.copy_(torch.tensor(w_h.T))
        rnn.bias_ih_l0.copy_(torch.tensor(b_ih))
        rnn.bias_hh_l0.copy_(torch.tensor(b_hh))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    out, last = rnn(xt, h0t)
    (out * torch.tensor(up)).sum().backward()

    b = b_ih + b_hh
    act = get_activation(name)
    mine = rk.rnn_forward(x, w_x, w_h, b, h0, name, n_threads=2)
    # three additions: b_ih + b_hh (rounded once here, one more add in torch) and the
    # two dot products' sum
    e_z, e_h = forward_bound(x, w_x, w_h, b, h0, mine.h, act, dtype, act_ulps=4, adds=3)
    _within(mine.h, out.detach().numpy(), e_h, "h")
    _within(mine.h[-1], last.detach().numpy()[0], e_h[-1], "h_T")

    # torch differentiates through its own states, off from ours by the forward bound:
    # its tanh' = 1 - h^2 is off by at most e_h (2 |h| + e_h); its relu' by 1 where z is
    # within e_z of 0 (elsewhere both sides take the same branch)
    ah = np.abs(mine.h).astype(np.float64)
    slope_err = e_h * (2 * ah + e_h) if name == "tanh" else \
        (np.abs(mine.z) <= e_z).astype(np.float64)
    g = rk.rnn_backward(x, w_x, w_h, mine.z, mine.h, up, h0, name, n_threads=2)
    bounds = backward_bound(x, w_x, w_h, mine.z, mine.h, up, h0, g.grad_z, act, dtype,
                            slope_err=slope_err)
    checks = {
        "grad_x": (g.grad_x, xt.grad.numpy(), bounds["grad_x"]),
        "grad_h0": (g.grad_h0, h0t.grad.numpy()[0], bounds["grad_h0"]),
        "grad_w_x": (g.grad_w_x, rnn.weight_ih_l0.grad.numpy().T, bounds["grad_w_x"]),
        "grad_w_h": (g.grad_w_h, rnn.weight_hh_l0.grad.numpy().T, bounds["grad_w_h"]),
        "grad_b_ih": (g.grad_b, rnn.bias_ih_l0.grad.numpy(), bounds["grad_b"]),
        "grad_b_hh": (g.grad_b, rnn.bias_hh_l0.grad.numpy(), bounds["grad_b"]),
    }
    for what, (a, t, tol) in checks.items():
        assert a.dtype == dtype, what
        _within(a, t, tol, what)


def test_zero_initial_state_is_torchs_default():
    x, w_x, w_h, b, _ = _data((6, 4, 3, 5), np.float64, seed=24)
    rnn = torch.nn.RNN(3, 5, nonlinearity="tanh", bias=False).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(w_x.T))
        rnn.weight_hh_l0.copy_(torch.tensor(w_h.T))
    out, _ = rnn(torch.tensor(x))
    mine = rk.rnn_forward(x, w_x, w_h)
    _, e_h = forward_bound(x, w_x, w_h, None, None, mine.h, get_activation("tanh"),
                           np.float64, act_ulps=4)
    _within(mine.h, out.detach().numpy(), e_h, "h")
