"""varprop.measure's memory: checkpointing, the bounded forward and backward footprint,
and the 10,000-layer run (split from tests/test_empirical.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest
from test_empirical import measure  # one OpenMP thread unless a test asks

from varprop import _empirical_run as run
from varprop.network import mlp


# ----------------------------------------------------------------------------- checkpoints
def test_default_checkpointing_keeps_small_nets_whole():
    small = mlp([64] * 11, "relu", "he_normal")
    assert measure(small, batch=32, seeds=1).meta["checkpoint_every"] == 10
    # 1,000 x (2 activations + 1 weight) x 256 KiB = 750 MiB: checkpoint every sqrt(n)
    big = mlp([256] * 1001, "relu", "he_normal").steps
    assert run.cache_bytes(big, 256, 256, 4)[0] == 1000 * 3 * 256 * 256 * 4
    assert run.default_checkpoint_every(big, 256, 256, 4) == 32


def _peak(net, batch, **kwargs):
    tracemalloc.start()
    try:
        measure(net, batch=batch, seeds=1, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_forward_and_backward_memory_is_bounded():
    width, batch, depth, k = 128, 128, 200, 14
    layer = width * batch * 4  # one float32 activation (= one weight matrix here)
    shallow = mlp([width] * 21, "relu", "he_normal")
    deep = mlp([width] * (depth + 1), "relu", "he_normal")
    measure(shallow, batch=batch, seeds=1)  # warm-up: first-call allocations
    # forward only: the current layer's arrays, whatever the depth
    fwd_shallow = _peak(shallow, batch, backward=False)
    fwd_deep = _peak(deep, batch, backward=False)
    assert fwd_deep < fwd_shallow + layer and fwd_deep < 8 * layer, (fwd_shallow, fwd_deep)
    # backward: ceil(depth / k) checkpoints + k layers of (input, z, weights) + a working
    # set of about a dozen layer-sized arrays; keeping everything would be 3 * depth
    bwd = _peak(deep, batch, checkpoint_every=k)
    assert bwd < (math.ceil(depth / k) + 3 * k + 12) * layer, bwd / layer


# ----------------------------------------------------------------------------- the big one
def _slow_selected(config) -> bool:
    expr = config.getoption("-m") or ""
    return os.environ.get("VARPROP_SLOW") == "1" or ("slow" in expr and "not slow" not in expr)


@pytest.mark.slow
def test_ten_thousand_layers_under_one_gigabyte(request):
    """10,000 layers, width 256, batch 256, forward and backward, seeds=1: < 1 GB peak RSS.

    Minutes long: runs with ``pytest -m slow`` or ``VARPROP_SLOW=1``."""
    if not _slow_selected(request.config):
        pytest.skip("10,000-layer run takes minutes: select with -m slow or VARPROP_SLOW=1")
    code = textwrap.dedent("""
        import json, resource, time
        import numpy as np
        import varprop.empirical as E
        from varprop.network import mlp
        net = mlp([256] * 10001, "relu", "he_normal")
        t = time.perf_counter()
        p = E.measure(net, batch=256, seeds=1)
        dt = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"time": dt, "rss": rss, "depth": len(p),
                          "finite": bool(np.all(np.isfinite(p.column("grad_var"))))}))
    """)
    from _env import subprocess_env

    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
                         text=True, check=True)
    import json
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result)
    assert result["depth"] == 10000 and result["finite"]
    assert result["rss"] < 1e9, result
