"""Every instruction-set path of the activation loops (baseline, AVX2/FMA, AVX-512) that
this machine can run, against the float64 reference and across thread counts.

The loops are compiled once per level and one is chosen at the first call
(csrc/vp_activations.c; docs/kernels.md, "Activation loops"); ``_kernels._set_isa``
forces a level, so each path the CPU offers is checked here, and the AVX-512 path is
checked wherever the CPU has it (a machine without it skips those cases).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from _env import subprocess_env

import varprop
from varprop import _reference as ref
from varprop.activations import ACTIVATION_NAMES

pytestmark = pytest.mark.skipif(not varprop.kernels.extension_available(),
                                reason="needs the compiled kernels")

if varprop.kernels.extension_available():
    from varprop import _kernels

    LEVELS = _kernels.ISA_LEVELS
    AVAILABLE = _kernels.isa_available()
else:  # pragma: no cover - the module is skipped
    LEVELS, AVAILABLE = ("baseline", "avx2", "avx512"), ()

# The accuracy contract of the activation loops, as in tests/test_activations.py.
TOLERANCE = {np.float32: (1e-6, 1e-7), np.float64: (1e-13, 1e-16)}
EXTREMES = [-np.inf, -1e4, -800.0, -745.0, -41.0, -40.0, -5.0, -1e-300, -0.0, 0.0, 1e-300,
            5.0, 40.0, 41.0, 709.0, 710.0, 1e4, np.inf]


@pytest.fixture
def isa_level(request):
    """Force a level for one test, skip it where the CPU lacks it, restore afterwards."""
    name = request.param
    if name not in AVAILABLE:
        pytest.skip(f"this CPU runs only {AVAILABLE}")
    saved = _kernels.isa()
    _kernels._set_isa(name)
    try:
        yield name
    finally:
        _kernels._set_isa(saved)


def _inputs(dtype):
    rng = np.random.default_rng(7)
    # odd lengths: the vector loops' remainders run too
    x = np.concatenate([rng.standard_normal(1001) * s for s in (1e-4, 0.3, 1.0, 4.0, 30.0)]
                       + [np.array(EXTREMES)])
    return x.astype(dtype)


@pytest.mark.parametrize("isa_level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_every_level_meets_the_accuracy_contract(name, dtype, isa_level):
    x = _inputs(dtype)
    for derivative in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fast = varprop.activation_apply(x, name, derivative=derivative)
        slow = ref.activation_apply(x.astype(np.float64), name, derivative=derivative)
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
        rtol, atol = TOLERANCE[dtype]
        np.testing.assert_allclose(fast.astype(np.float64), slow, rtol=rtol, atol=atol,
                                   err_msg=f"{isa_level} {name} derivative={derivative}")
    nan_in = np.array([np.nan, 1.0], dtype)
    assert np.isnan(varprop.activation_apply(nan_in, name)[0])


@pytest.mark.parametrize("isa_level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_level_is_bitwise_stable_across_thread_counts(dtype, isa_level):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((600, 70)).astype(dtype)
    w = (rng.standard_normal((70, 530)) / 8).astype(dtype)
    b = (0.1 * rng.standard_normal(530)).astype(dtype)
    g = rng.standard_normal((600, 530)).astype(dtype)
    first = None
    for n in (1, 2, 3, 8, 16):
        f = varprop.dense_forward(x, w, b, "gelu", stats=True, n_threads=n)
        d = varprop.dense_backward(x, w, f.z, g, "tanh", n_threads=n)
        got = (f.z, f.a, f.stats.a_var, d.grad_x, d.grad_w, d.grad_b, d.grad_z)
        if first is None:
            first = got
            want = ref.dense_forward(x, w, b, "gelu")
            np.testing.assert_allclose(f.a, want.a, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                       atol=1e-5 if dtype == np.float32 else 1e-12)
            continue
        for a, b_ in zip(got, first):
            assert np.array_equal(a, b_), (isa_level, n)


def test_level_names_and_bad_requests():
    assert AVAILABLE[0] == "baseline" and set(AVAILABLE) <= set(LEVELS)
    assert _kernels.isa() in AVAILABLE
    with pytest.raises(ValueError, match="name must be one of"):
        _kernels._set_isa("sse9")
    missing = [lv for lv in LEVELS if lv not in AVAILABLE]
    for lv in missing:
        with pytest.raises(ValueError, match="runs only"):
            _kernels._set_isa(lv)


@pytest.mark.parametrize("name", ["baseline", "avx2", "avx512", "bogus"])
def test_environment_variable_picks_the_level(name, tmp_path):
    # VARPROP_ISA is read at the first call in a fresh process; a level the CPU lacks
    # (or an unknown name) gives the best level it has
    code = "import varprop._kernels as k; print(k.isa())"
    # outside the source tree, with this process's varprop (a wheel in CI: the checkout
    # holds no compiled extension)
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(VARPROP_ISA=name),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=True).stdout.strip()
    want = name if name in AVAILABLE else AVAILABLE[-1]
    assert out == want
