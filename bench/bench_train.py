"""One training epoch of the digits (1797 x 64) through a 64 -> 256 -> 256 -> 10 ReLU MLP
at batch 64 with Adam: varprop's trainer against the same loop in PyTorch CPU.

Run:  pytest bench/bench_train.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_train.py            # prints the varprop / torch time ratio
Target (issue 7): varprop's epoch no slower than PyTorch's (ratio <= 1). The script
form times torch with its default thread count and with one thread (varprop's trainer
runs layers this small on one thread: results never depend on the thread count). The
PyTorch cases are skipped when torch is not installed. With --benchmark-disable every case runs
once as a test and checks that the epoch trained.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pytest

from varprop import train
from varprop.datasets import load_digits, standardize

WIDTHS = (64, 256, 256, 10)
BATCH = 64
GROUP = "train epoch digits 64-256-256-10 batch 64"


def digits_data():
    data = load_digits()
    x, _, _, _ = standardize(data.x)
    return np.ascontiguousarray(x, np.float32), data.y.astype(np.int64)


def varprop_epoch_fn(track_gradients: bool = False):
    """A closure running one epoch of varprop's trainer (the model keeps training)."""
    x, y = digits_data()
    model = train.classifier(WIDTHS, "relu", kernel_initializer="he_uniform", seed=0)
    optimizer = train.Adam()
    state = {"epoch": 0}

    def run():
        state["epoch"] += 1
        return train.fit(model, x, y, epochs=1, batch_size=BATCH, optimizer=optimizer,
                         seed=state["epoch"], track_gradients=track_gradients).loss[-1]

    return run, model, (x, y)


def torch_epoch_fn():
    """The same loop in PyTorch: shuffle, forward, cross-entropy, backward, Adam step."""
    import torch

    x, y = digits_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(WIDTHS[0], WIDTHS[1]), torch.nn.ReLU(),
        torch.nn.Linear(WIDTHS[1], WIDTHS[2]), torch.nn.ReLU(),
        torch.nn.Linear(WIDTHS[2], WIDTHS[3]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    gen = torch.Generator().manual_seed(0)

    def run():
        order = torch.randperm(xt.shape[0], generator=gen)
        total = 0.0
        for i in range(0, xt.shape[0], BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / xt.shape[0]

    return run


def test_varprop_epoch(benchmark):
    run, model, (x, y) = varprop_epoch_fn()
    before = train.evaluate(model, x, y).loss
    benchmark.group = GROUP
    loss = benchmark(run)
    assert np.isfinite(loss)
    assert train.evaluate(model, x, y).loss < 0.5 * before


def test_varprop_epoch_tracking_gradients(benchmark):
    run, model, (x, y) = varprop_epoch_fn(track_gradients=True)
    benchmark.group = GROUP
    loss = benchmark(run)
    assert np.isfinite(loss)


def test_torch_epoch(benchmark):
    pytest.importorskip("torch")
    run = torch_epoch_fn()
    benchmark.group = GROUP
    first = run()
    loss = benchmark(run)
    assert np.isfinite(loss) and loss < first


def measure_ratio(repeat: int = 7) -> tuple[float, float, float]:
    """Median seconds per epoch of varprop and torch, interleaved in this process, and
    their ratio (varprop / torch; < 1 means varprop is faster)."""
    v_run, _, _ = varprop_epoch_fn()
    t_run = torch_epoch_fn()
    v_run(), t_run()  # warm-up
    tv, tt = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        v_run()
        tv.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        t_run()
        tt.append(time.perf_counter() - t0)
    v, t = statistics.median(tv), statistics.median(tt)
    return v, t, v / t


def test_ratio_against_torch():
    """Times both loops interleaved and reports the ratio (printed with -s); asserts only
    that it is not absurd, since absolute timings on a shared CI machine drift."""
    pytest.importorskip("torch")
    v, t, ratio = measure_ratio(repeat=3)
    print(f"\nepoch: varprop {v * 1e3:.1f} ms, torch {t * 1e3:.1f} ms, ratio {ratio:.2f}")
    assert ratio < 10


if __name__ == "__main__":
    try:
        import torch
    except ImportError:
        sys.exit("torch is not installed: nothing to compare against")

    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}; one epoch of digits, 64-256-256-10 ReLU, batch {BATCH}, Adam")
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        v, t, ratio = measure_ratio(repeat)
        print(f"torch on {threads} thread(s): varprop {v * 1e3:.1f} ms, torch {t * 1e3:.1f} ms, "
              f"varprop/torch = {ratio:.2f}")
