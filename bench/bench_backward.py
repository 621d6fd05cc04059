"""Forward + backward: varprop's kernels against numpy by hand and PyTorch autograd.

Run:  pytest bench/bench_backward.py --benchmark-enable --benchmark-group-by=group
Target: no slower than either baseline.
"""

import numpy as np
import pytest

import varprop
from _cases import ACTIVATIONS, SHAPES, case_id, layer_data, numpy_forward_backward

THREADS = 2
PARAMS = [(b, w, act) for (b, w) in SHAPES[:3] for act in ACTIVATIONS]


def varprop_forward_backward(x, w, b, activation, grad_a):
    f = varprop.dense_forward(x, w, b, activation, n_threads=THREADS)
    g = varprop.dense_backward(x, w, f.z, grad_a, activation, n_threads=THREADS)
    return f.a, g.grad_x, g.grad_w, g.grad_b


@pytest.mark.parametrize("batch, width, activation", PARAMS,
                         ids=[case_id(b, w, np.float32, a) for b, w, a in PARAMS])
def test_varprop_forward_backward(benchmark, batch, width, activation):
    x, w, b = layer_data(batch, width, np.float32)
    g = np.ones((batch, width), np.float32)
    benchmark.group = "fwd+bwd " + case_id(batch, width, np.float32, activation)
    got = benchmark(varprop_forward_backward, x, w, b, activation, g)
    want = numpy_forward_backward(x, w, b, activation, g)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=2e-3, atol=2e-3 * np.abs(e).max())


@pytest.mark.parametrize("batch, width, activation", PARAMS,
                         ids=[case_id(b, w, np.float32, a) for b, w, a in PARAMS])
def test_numpy_forward_backward(benchmark, batch, width, activation):
    x, w, b = layer_data(batch, width, np.float32)
    g = np.ones((batch, width), np.float32)
    benchmark.group = "fwd+bwd " + case_id(batch, width, np.float32, activation)
    out = benchmark(numpy_forward_backward, x, w, b, activation, g)
    assert out[2].shape == (width, width)


@pytest.mark.parametrize("batch, width, activation", PARAMS,
                         ids=[case_id(b, w, np.float32, a) for b, w, a in PARAMS])
def test_torch_forward_backward(benchmark, batch, width, activation):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(THREADS)
    x, w, b = layer_data(batch, width, np.float32)
    xt, wt, bt = (torch.from_numpy(v).requires_grad_(True) for v in (x, w, b))
    g = torch.ones((batch, width))
    act = {"relu": torch.relu, "tanh": torch.tanh,
           "gelu": torch.nn.functional.gelu}[activation]

    def run():
        for t in (xt, wt, bt):
            t.grad = None
        a = act(torch.addmm(bt, xt, wt))
        a.backward(g)
        return a, xt.grad, wt.grad, bt.grad

    benchmark.group = "fwd+bwd " + case_id(batch, width, np.float32, activation)
    a, gx, gw, gb = benchmark(run)
    want = numpy_forward_backward(x, w, b, activation, g.numpy())
    np.testing.assert_allclose(gw.numpy(), want[2], rtol=2e-3, atol=2e-3 * np.abs(want[2]).max())
