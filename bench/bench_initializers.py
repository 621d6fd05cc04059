"""Initializer draws against numpy's own Generator and QR, in the same group.

Run:  pytest bench/bench_initializers.py --benchmark-enable --benchmark-group-by=group
      python bench/bench_initializers.py        (prints the ratios)
Targets: a 4096 x 4096 float32 draw <= 1.5x numpy's Generator for the same distribution;
orthogonal 4096 x 4096 <= 1.2x a plain numpy QR of the same matrix.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import varprop.initializers as inits
from _cases import median_time

N = 4096
SMALL = 512  # what the test run (--benchmark-disable) draws, to stay quick

# (varprop initializer, the numpy Generator call drawing the same distribution, in
# float32 where numpy can; numpy has no truncated normal, so its baseline is the plain
# standard normal that a truncated draw cannot beat)
DRAWS = {
    "truncated_normal": (lambda: inits.get("truncated_normal", stddev=1.0),
                         lambda rng, n: rng.standard_normal((n, n), dtype=np.float32)),
    "he_uniform": (lambda: inits.get("he_uniform"),
                   lambda rng, n: 2.0 * rng.random((n, n), dtype=np.float32) - 1.0),
    "kaiming_normal": (lambda: inits.get("kaiming_normal"),
                       lambda rng, n: rng.standard_normal((n, n), dtype=np.float32)),
}


def _size(benchmark) -> int:
    return SMALL if benchmark.disabled else N


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_varprop_draw(benchmark, name):
    n = _size(benchmark)
    init = DRAWS[name][0]()
    benchmark.group = f"draw {name} {n}x{n} float32"
    w = benchmark(init, (n, n), seed=0, dtype=np.float32)
    mean, var = init.moments((n, n))
    # the sample variance of n^2 draws is within 6 standard errors (4th moment <= 3 var^2)
    assert abs(w.var() - var) < 6 * var * np.sqrt(2 / n**2)


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_numpy_generator_draw(benchmark, name):
    n = _size(benchmark)
    rng = np.random.default_rng(0)
    benchmark.group = f"draw {name} {n}x{n} float32"
    out = benchmark(DRAWS[name][1], rng, n)
    assert out.shape == (n, n)


def _qr_rounds(benchmark, fn, *args, **kwargs):
    """A 4096 x 4096 QR takes seconds: three rounds are enough for a median."""
    if benchmark.disabled:
        return benchmark(fn, *args, **kwargs)
    return benchmark.pedantic(fn, args, kwargs, rounds=3, iterations=1, warmup_rounds=1)


def test_varprop_orthogonal(benchmark):
    n = _size(benchmark)
    init = inits.get("orthogonal")
    benchmark.group = f"orthogonal {n}x{n} float32"
    w = _qr_rounds(benchmark, init, (n, n), seed=0, dtype=np.float32)
    np.testing.assert_allclose(w.T @ w, np.eye(n), atol=1e-4)


def test_numpy_qr(benchmark):
    n = _size(benchmark)
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    benchmark.group = f"orthogonal {n}x{n} float32"
    q, r = _qr_rounds(benchmark, np.linalg.qr, a)
    assert q.shape == (n, n)


def test_scipy_qr(benchmark):
    """scipy's LAPACK QR (what varprop calls), faster here than numpy's: the floor."""
    from scipy import linalg

    n = _size(benchmark)
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    benchmark.group = f"orthogonal {n}x{n} float32"
    q, r = _qr_rounds(benchmark, linalg.qr, a, mode="economic", overwrite_a=False)
    assert q.shape == (n, n)


def main(repeat: int = 5) -> None:
    rng = np.random.default_rng(0)
    print(f"{N}x{N} float32, median of {repeat}: varprop time / numpy time")
    for name, (make, ref) in sorted(DRAWS.items()):
        init = make()
        ours = median_time(lambda: init((N, N), seed=0, dtype=np.float32), repeat)
        theirs = median_time(lambda: ref(rng, N), repeat)
        print(f"  {name:18s} {ours * 1e3:8.1f} ms  {theirs * 1e3:8.1f} ms  ratio {ours / theirs:.2f}")
    a = rng.standard_normal((N, N)).astype(np.float32)
    orth = inits.get("orthogonal")
    ours = median_time(lambda: orth((N, N), seed=0, dtype=np.float32), max(1, repeat // 2))
    theirs = median_time(lambda: np.linalg.qr(a), max(1, repeat // 2))
    print(f"  {'orthogonal':18s} {ours * 1e3:8.1f} ms  {theirs * 1e3:8.1f} ms  ratio {ours / theirs:.2f}"
          "  (numpy: np.linalg.qr of the same-size float32 matrix)")
    from scipy import linalg

    floor = median_time(lambda: linalg.qr(a, mode="economic"), max(1, repeat // 2))
    print(f"  {'orthogonal':18s} {ours * 1e3:8.1f} ms  {floor * 1e3:8.1f} ms  ratio {ours / floor:.2f}"
          "  (scipy.linalg.qr, economic: the LAPACK call varprop makes)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
