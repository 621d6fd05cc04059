"""varprop._validate, the checks every public function runs, and varprop._json: what is
accepted, what is refused, and that every message names the argument."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from varprop import _json, _validate as V


# --------------------------------------------------------------------------- integers
@pytest.mark.parametrize("value", [3, np.int8(3), np.int64(3), np.uint64(3)])
def test_integer_accepts_python_and_numpy_ints(value):
    out = V.integer("n", value, minimum=1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 3.0, np.float64(3), "3", None, [3]])
def test_integer_refuses_bools_floats_and_strings(value):
    with pytest.raises(TypeError, match=r"^width must be a positive integer; got .* \("):
        V.positive_int("width", value)


def test_integer_bounds_and_messages():
    with pytest.raises(ValueError, match=r"^depth must be a positive integer; got 0$"):
        V.positive_int("depth", 0)
    with pytest.raises(ValueError, match=r"^n must be a non-negative integer; got -1$"):
        V.non_negative_int("n", -1)
    with pytest.raises(ValueError, match=r"^m must be >= 2; got 1 \(why\)$"):
        V.integer("m", 1, minimum=2, note="why")
    with pytest.raises(ValueError, match=r"^measure: batch must be >= 2; got 1 \(a variance"):
        V.variance_batch("batch", 1, owner="measure")
    with pytest.raises(TypeError, match=r"batch must be an integer >= 2 or None; got 2\.5"):
        V.variance_batch("batch", 2.5, or_none=True)
    assert V.variance_batch("batch", None, or_none=True) is None
    assert V.non_negative_int("n", 0) == 0 and V.integer("k", -7) == -7
    with pytest.raises(TypeError, match="n_threads must be a positive integer or None"):
        V.positive_int("n_threads", True, or_none=True)


# --------------------------------------------------------------------------- reals
@pytest.mark.parametrize("value", [2, 2.0, np.float32(2), np.float16(2), np.int64(2), Fraction(2)])
def test_finite_real_accepts_every_real_type(value):
    out = V.finite_real("x", value, positive=True)
    assert out == 2.0 and type(out) is float


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), np.inf])
def test_finite_real_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match=r"^stddev must be finite; got"):
        V.finite_real("stddev", value)


@pytest.mark.parametrize("value", [True, np.bool_(False), "1.0", None, 1j, np.complex64(1)])
def test_finite_real_refuses_non_reals(value):
    with pytest.raises(TypeError, match=r"^RandomNormal: mean must be a real number; got"):
        V.finite_real("mean", value, owner="RandomNormal")


def test_finite_real_signs():
    with pytest.raises(ValueError, match=r"^scale must be > 0; got 0\.0$"):
        V.finite_real("scale", 0.0, positive=True)
    with pytest.raises(ValueError, match=r"^tol must be >= 0; got -1$"):
        V.finite_real("tol", -1, non_negative=True)
    assert V.finite_real("tol", 0, non_negative=True) == 0.0
    assert V.finite_real("noise", None, or_none=True) is None
    with pytest.raises(TypeError, match="noise must be a real number or None"):
        V.finite_real("noise", "big", or_none=True)


def test_real_in_range_ends_and_nan():
    assert V.real_in_range("m", 0, 0.0, 1.0, closed_high=False) == 0.0
    with pytest.raises(ValueError, match=r"^momentum must be in \[0, 1\); got 1\.0$"):
        V.real_in_range("momentum", 1.0, 0.0, 1.0, closed_high=False)
    with pytest.raises(ValueError, match=r"^test_size must be in \(0, 1\); got 0$"):
        V.real_in_range("test_size", 0, 0.0, 1.0, closed_low=False, closed_high=False)
    for bad in (math.nan, math.inf, 1.5, -1.0000001):
        with pytest.raises(ValueError, match=r"input_correlation must be in \[-1, 1\]"):
            V.correlation("input_correlation", bad)
    assert V.correlation("c", -1) == -1.0 and V.probability("p", np.float32(1)) == 1.0
    with pytest.raises(TypeError, match="p must be a real number in"):
        V.probability("p", "0.5")
    with pytest.raises(TypeError, match="p must be a real number in"):
        V.probability("p", True)


# --------------------------------------------------------------------------- the rest
def test_boolean():
    assert V.boolean("center", np.bool_(True)) is True and V.boolean("c", False) is False
    for bad in (1, 0, "yes", None, np.int64(1)):
        with pytest.raises(TypeError, match=r"^center must be True or False; got"):
            V.boolean("center", bad)
    assert V.boolean("compress", None, or_none=True) is None
    with pytest.raises(TypeError, match="compress must be True, False or None"):
        V.boolean("compress", 1, or_none=True)


def test_one_of_suggests_close_names():
    assert V.one_of("mode", "fan_in", ("fan_in", "fan_out")) == "fan_in"
    with pytest.raises(ValueError, match=r"^mode must be one of 'fan_in', 'fan_out'; got "
                                         r"'fan_ni'; did you mean 'fan_in'"):
        V.one_of("mode", "fan_ni", ("fan_in", "fan_out"))
    with pytest.raises(ValueError, match=r"got 'xyz'$"):
        V.one_of("mode", "xyz", ("fan_in", "fan_out"))
    with pytest.raises(TypeError, match=r"^layout must be one of 'keras', 'torch'; got 1 \(int\)"):
        V.one_of("layout", 1, ("keras", "torch"))
    assert V.close_matches("HENORMAL", ["HeNormal", "he_normal"], ignore_case=True)[0] == "HeNormal"


def test_float_dtype():
    assert V.float_dtype("dtype", "float16") == np.float16
    assert V.float_dtype("dtype", np.float32, kernels=True) == np.float32
    for bad in (np.float16, "float16", np.longdouble):
        if np.dtype(bad) in (np.float32, np.float64):
            continue
        with pytest.raises(TypeError, match=r"^dtype must be float32 or float64; got"):
            V.float_dtype("dtype", bad, kernels=True)
    for bad in (np.int32, bool, np.complex64, "nonsense", object()):
        with pytest.raises(TypeError, match="dtype must be a real floating dtype"):
            V.float_dtype("dtype", bad)


def test_shape_tuple():
    assert V.shape_tuple("shape", np.int64(4)) == (4,)
    assert V.shape_tuple("shape", np.array([2, 3])) == (2, 3)
    assert V.shape_tuple("shape", [np.uint8(2), 0]) == (2, 0)
    for bad, exc in ((3.0, TypeError), ((3.0, 4), TypeError), ((True, 4), TypeError),
                     ("34", TypeError), ((-1, 4), ValueError)):
        with pytest.raises(exc, match="^shape must"):
            V.shape_tuple("shape", bad)


# --------------------------------------------------------------------------- seeds
def test_as_generator_gives_numpys_streams():
    g = np.random.default_rng(5)
    assert V.as_generator(g) is g
    ref = np.random.default_rng(7).random(4)
    for seed in (7, np.int64(7), np.uint32(7), np.random.SeedSequence(7), np.random.PCG64(7)):
        assert np.array_equal(V.as_generator(seed).random(4), ref)  # bit for bit
    assert isinstance(V.as_generator(None), np.random.Generator)


@pytest.mark.parametrize("seed", [True, np.bool_(False), 1.5, "1", [1, 2], np.random.RandomState(0)])
def test_as_generator_refuses_other_types(seed):
    with pytest.raises(TypeError, match=r"^fit: seed must be None, a non-negative int"):
        V.as_generator(seed, owner="fit")


def test_as_generator_refuses_negative_ints():
    with pytest.raises(ValueError, match=r"^--seed must be None, a non-negative int.*got -1$"):
        V.as_generator(-1, name="--seed")


def test_seed_key():
    assert V.seed_key(3) == V.seed_key(np.int64(3)) == ("int", 3)
    assert V.seed_key(np.random.SeedSequence(3)) == V.seed_key(np.random.SeedSequence(3))
    assert V.seed_key(np.random.SeedSequence(3)) != V.seed_key(np.random.SeedSequence(4))
    for seed in (True, None, np.random.default_rng(3), np.random.PCG64(3)):
        assert V.seed_key(seed) is None


def test_seed_list():
    assert V.seed_list("seeds", 3, int_is_count=True) == [0, 1, 2]
    assert V.seed_list("seeds", np.int64(3), int_is_count=False) == [3]
    assert V.seed_list("seeds", np.array([4, 9]), int_is_count=True, unique=True) == [4, 9]
    assert V.seed_list("seeds", [1, 1], int_is_count=False) == [1, 1]
    for bad, exc in ((0, ValueError), ([], ValueError), ([1, 1], ValueError), ([-1], ValueError),
                     (1.5, TypeError), ([1.5], TypeError), ([True], TypeError), (True, TypeError),
                     ("12", TypeError), ({1, 2}, TypeError)):
        with pytest.raises(exc, match="^measure: seeds"):
            V.seed_list("seeds", bad, int_is_count=True, unique=True, owner="measure")


def test_checked_changes_the_error_class():
    class UsageError(Exception):
        pass

    assert V.checked(V.positive_int, UsageError, "--depth", 3) == 3
    with pytest.raises(UsageError, match=r"^--depth must be a positive integer; got 0$"):
        V.checked(V.positive_int, UsageError, "--depth", 0)


# --------------------------------------------------------------------------- one home
def test_each_fact_has_one_home():
    import varprop.initializers as I
    from varprop import profile
    from varprop.datasets import _common
    from varprop.reporting import commands, results
    from varprop.training import _checks

    assert profile.json_number is results.json_number is _json.json_number
    assert not hasattr(commands, "clean_json")  # json_clean has one name: varprop._json
    assert I.as_generator is V.as_generator and I.SeedLike is V.SeedLike is _common.SeedLike
    for gone in ("check_positive_int", "check_positive_float", "check_fraction", "check_dtype"):
        assert not hasattr(_checks, gone)
    from varprop import training
    from varprop.initializers import _core
    for gone in ("check_real", "check_shape", "check_dtype", "real"):
        assert not hasattr(_core, gone)
    assert not hasattr(training, "mlp")  # one name for the trainer's builder: classifier


def test_json_number_and_clean():
    assert _json.json_number(math.nan) is None and _json.json_number(-math.inf) is None
    assert _json.json_number(np.float32(1.5)) == 1.5 and type(_json.json_number(np.float32(1))) is float
    assert type(_json.json_number(np.int64(2))) is int and _json.json_number(np.bool_(1)) is True
    assert _json.json_number(3) == 3 and _json.json_number(None) is None and _json.json_number("a") == "a"
    doc = {1: (np.float64(math.nan), [np.int32(4), {"x": np.inf}]), "b": True}
    assert _json.json_clean(doc) == {"1": [None, [4, {"x": None}]], "b": True}
