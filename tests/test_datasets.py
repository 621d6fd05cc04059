"""Tests for varprop.datasets: shipped data, toy sets, split, scaling (IDX and MNIST
files: tests/test_datasets_idx.py)."""

from __future__ import annotations

import hashlib
import math
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varprop import datasets as ds
from varprop.datasets import (
    Dataset,
    _shipped,
    load_digits,
    load_iris,
    make_toy_2d,
    standardize,
    train_test_split,
)

# ----------------------------------------------------------------------------- helpers


def _data_file(name: str):
    return resources.files("varprop").joinpath("data").joinpath(name)


def _lstsq_accuracy(train: Dataset, test: Dataset) -> float:
    """Accuracy of a least-squares linear classifier (targets -1/+1) fit on ``train``."""
    a = np.c_[train.x, np.ones(train.n_samples)]
    w = np.linalg.lstsq(a, 2.0 * train.y - 1.0, rcond=None)[0]
    pred = (np.c_[test.x, np.ones(test.n_samples)] @ w > 0).astype(np.int64)
    return float(np.mean(pred == test.y))


# ----------------------------------------------------------------------------- shipped data


def test_public_names_exist():
    for name in ds.__all__:
        assert hasattr(ds, name), name


def test_load_iris():
    iris = load_iris()
    assert isinstance(iris, Dataset)
    assert iris.x.shape == (150, 4) and iris.x.dtype == np.float64
    assert iris.y.shape == (150,) and iris.y.dtype == np.int64
    assert iris.class_names == ("setosa", "versicolor", "virginica")
    assert iris.feature_names is not None and len(iris.feature_names) == 4
    assert iris.class_counts().tolist() == [50, 50, 50]
    assert (iris.n_samples, iris.n_features, iris.n_classes, len(iris)) == (150, 4, 3, 150)
    assert iris.name == "iris"
    assert "10.24432/C56C76" in iris.description and "CC BY 4.0" in iris.description
    np.testing.assert_array_equal(iris.x[0], [5.1, 3.5, 1.4, 0.2])
    # Fisher's values where UCI's iris.data is wrong (samples 35 and 38, 1-based)
    np.testing.assert_array_equal(iris.x[34], [4.9, 3.1, 1.5, 0.2])
    np.testing.assert_array_equal(iris.x[37], [4.9, 3.6, 1.4, 0.1])
    # the summary statistics of the data set description
    np.testing.assert_allclose(iris.x.mean(axis=0), [5.843, 3.057, 3.758, 1.199], atol=1e-3)
    assert iris.x.min() == 0.1 and iris.x.max() == 7.9
    with pytest.raises(AttributeError):
        iris.images


def test_load_digits():
    digits = load_digits()
    assert digits.x.shape == (1797, 64) and digits.x.dtype == np.float64
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int64
    assert digits.class_names == tuple("0123456789")
    counts = digits.class_counts()
    assert counts.sum() == 1797
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert digits.x.min() == 0 and digits.x.max() == 16
    np.testing.assert_array_equal(digits.x, np.round(digits.x))
    assert digits.image_shape == (8, 8)
    assert digits.images.shape == (1797, 8, 8)
    assert np.shares_memory(digits.images, digits.x)
    assert digits.feature_names[0] == "pixel_0_0" and digits.feature_names[-1] == "pixel_7_7"
    # first image of the file, a zero
    np.testing.assert_array_equal(digits.images[0, 0], [0, 0, 5, 13, 9, 1, 0, 0])
    assert digits.y[0] == 0
    assert int(np.sum(digits.x.max(axis=0) == digits.x.min(axis=0))) == 3  # constant columns
    assert "10.24432/C50P49" in digits.description and "CC BY 4.0" in digits.description


def test_loaders_return_fresh_arrays():
    a = load_iris()
    a.x[:] = 0
    assert load_iris().x[0, 0] == 5.1
    with pytest.raises(Exception):
        a.name = "other"  # frozen


@pytest.mark.parametrize("name", ["iris.csv", "digits.csv.gz"])
def test_shipped_files_checksums_and_provenance(name):
    data = _data_file(name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert len(data) < 300_000
    assert _shipped._SHIPPED_SHA256[name] == digest
    provenance = _data_file("PROVENANCE.md").read_text(encoding="utf-8")
    row = next(line for line in provenance.splitlines() if line.startswith(f"| `{name}`"))
    assert digest in row
    assert str(len(data)) in row
    for needle in ("UCI Machine Learning Repository", "CC BY 4.0", "scikit-learn", "BSD-3-Clause"):
        assert needle in provenance


def test_corrupt_shipped_file_detected(monkeypatch):
    monkeypatch.setitem(_shipped._SHIPPED_SHA256, "iris.csv", "0" * 64)
    with pytest.raises(RuntimeError, match=r"iris\.csv.*corrupt"):
        load_iris()


def test_dataset_validates():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        Dataset(x=x, y=np.zeros(2, np.int64), class_names=("a",), name="t")
    with pytest.raises(ValueError, match="2-D"):
        Dataset(x=np.zeros(3), y=np.zeros(3, np.int64), class_names=("a",), name="t")
    with pytest.raises(TypeError, match="integer labels"):
        Dataset(x=x, y=np.zeros(3), class_names=("a",), name="t")
    with pytest.raises(ValueError, match="0..1"):
        Dataset(x=x, y=np.array([0, 1, 2]), class_names=("a", "b"), name="t")
    with pytest.raises(ValueError, match="feature_names"):
        Dataset(x=x, y=np.zeros(3, np.int64), class_names=("a",), name="t", feature_names=("f",))
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(x=x, y=np.zeros(3, np.int64), class_names=("a",), name="t", image_shape=(3, 3))
    d = Dataset(x=x, y=np.array([0, 1, 1], np.int32), class_names=["a", "b"], name="t")
    assert d.y.dtype == np.int64 and d.class_names == ("a", "b")
    assert "n_samples=3" in repr(d)


# ----------------------------------------------------------------------------- toy data


@pytest.mark.parametrize("kind", list(ds.TOY_KINDS))
def test_toy_shapes_balance_determinism(kind):
    a = make_toy_2d(101, kind, seed=3)
    b = make_toy_2d(101, kind, seed=3)
    c = make_toy_2d(101, kind, seed=4)
    assert a.x.shape == (101, 2) and a.x.dtype == np.float64 and a.y.dtype == np.int64
    assert a.class_counts().tolist() == [51, 50]
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.name == f"toy-{kind}"
    # rows are shuffled, not sorted by class
    assert 0 < np.sum(np.diff(a.y) != 0)
    assert np.all(np.isfinite(a.x))


def test_toy_seed_forms():
    ref = make_toy_2d(50, "moons", seed=11)
    same_ss = make_toy_2d(50, "moons", seed=np.random.SeedSequence(11))
    same_gen = make_toy_2d(50, "moons", seed=np.random.default_rng(11))
    np.testing.assert_array_equal(ref.x, same_ss.x)
    np.testing.assert_array_equal(ref.x, same_gen.x)
    make_toy_2d(50, "moons", seed=np.int64(11))
    make_toy_2d(50, "moons")  # seed=None draws fresh entropy
    with pytest.raises(TypeError, match="seed must be"):
        make_toy_2d(50, seed="11")
    with pytest.raises(TypeError, match="seed must be"):
        make_toy_2d(50, seed=1.5)
    with pytest.raises(ValueError, match="seed must be"):
        make_toy_2d(50, seed=-1)


def test_toy_blobs_linearly_separable():
    train = make_toy_2d(400, "blobs", seed=0)
    test = make_toy_2d(400, "blobs", seed=1)
    assert _lstsq_accuracy(train, test) > 0.9
    # and the non-linear kinds are not (that is what they are for)
    for kind in ("circles", "xor"):
        assert _lstsq_accuracy(make_toy_2d(400, kind, seed=0), make_toy_2d(400, kind, seed=1)) < 0.75


def test_toy_noise_and_classes():
    exact = make_toy_2d(40, "circles", noise=0, seed=0)
    radii = np.hypot(*exact.x.T)
    np.testing.assert_allclose(np.sort(np.unique(np.round(radii, 12))), [0.5, 1.0])
    np.testing.assert_allclose(radii[exact.y == 0], 1.0)
    three = make_toy_2d(10, "spiral", n_classes=3, seed=0)
    assert three.class_counts().tolist() == [4, 3, 3] and three.class_names == ("0", "1", "2")
    assert make_toy_2d(12, "blobs", n_classes=4, seed=0).n_classes == 4


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(kind="swirl"), ValueError, "kind must be one of"),
        (dict(kind="moons", n_classes=3), ValueError, "n_classes must be 2"),
        (dict(n_classes=1), ValueError, "n_classes must be >= 2; got 1"),
        (dict(n_samples=1), ValueError, "n_samples must be >= 2; got 1"),
        (dict(n_samples=2.5), TypeError, "n_samples must be an int"),
        (dict(noise=-0.1), ValueError, "noise must be >= 0"),
        (dict(noise=float("nan")), ValueError, "noise must be finite"),
        (dict(noise="big"), TypeError, "noise must be a real number"),
    ],
)
def test_toy_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_toy_2d(**kwargs)


# ----------------------------------------------------------------------------- split


def test_split_iris_stratified_and_deterministic():
    iris = load_iris()
    idx = np.arange(150)
    xtr, xte, ytr, yte = train_test_split(idx, iris.y, test_size=0.2, seed=0)
    assert len(xte) == 30 and len(xtr) == 120
    assert np.bincount(yte).tolist() == [10, 10, 10]
    assert np.bincount(ytr).tolist() == [40, 40, 40]
    # a partition of the samples, labels travelling with their rows
    np.testing.assert_array_equal(np.sort(np.concatenate([xtr, xte])), idx)
    np.testing.assert_array_equal(iris.y[xtr], ytr)
    np.testing.assert_array_equal(iris.y[xte], yte)
    # shuffled, not in class blocks
    assert np.any(np.diff(ytr) < 0)
    again = train_test_split(idx, iris.y, test_size=0.2, seed=0)
    for a, b in zip((xtr, xte, ytr, yte), again):
        np.testing.assert_array_equal(a, b)
    other = train_test_split(idx, iris.y, test_size=0.2, seed=1)
    assert not np.array_equal(np.sort(xte), np.sort(other[1]))
    gen = train_test_split(idx, iris.y, seed=np.random.default_rng(0))
    np.testing.assert_array_equal(gen[1], xte)
    # works on the 2-D features too, dtype kept
    ftr, fte, _, _ = train_test_split(iris.x, iris.y, seed=0)
    np.testing.assert_array_equal(fte, iris.x[xte])
    assert ftr.dtype == np.float64


def test_split_digits_proportions():
    digits = load_digits()
    counts = digits.class_counts()
    _, xte, _, yte = train_test_split(digits.x, digits.y, test_size=0.2, seed=5)
    assert len(yte) == math.ceil(0.2 * 1797) == 360
    per_class = np.bincount(yte, minlength=10)
    assert per_class.sum() == 360
    assert np.all(np.abs(per_class - 360 * counts / 1797) < 1)


def test_split_unstratified_and_string_labels():
    y = np.array(["a"] * 8 + ["b"] * 2)
    x = np.arange(10)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, seed=2, stratify=False)
    assert len(xte) == 5 and len(xtr) == 5
    np.testing.assert_array_equal(np.sort(np.concatenate([xtr, xte])), x)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, seed=2)
    assert sorted(yte.tolist()) == ["a"] * 4 + ["b"]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(2, 40), min_size=1, max_size=6),
    test_size=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
)
def test_split_property(counts, test_size, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n, k = len(y), len(counts)
    n_test = math.ceil(round(test_size * n, 9))
    if not (k <= n_test <= n - k):
        with pytest.raises(ValueError, match="test_size"):
            train_test_split(np.arange(n), y, test_size=test_size, seed=seed)
        return
    xtr, xte, ytr, yte = train_test_split(np.arange(n), y, test_size=test_size, seed=seed)
    assert len(xte) == n_test
    np.testing.assert_array_equal(np.sort(np.concatenate([xtr, xte])), np.arange(n))
    per_class = np.bincount(yte, minlength=k)
    c = np.array(counts)
    assert np.all(per_class >= 1) and np.all(per_class <= c - 1)
    quota = n_test * c / n
    if np.all((quota >= 1) & (quota <= c - 1)):
        assert np.all(np.abs(per_class - quota) < 1)


@pytest.mark.parametrize(
    "x,y,kwargs,exc,match",
    [
        (np.zeros((5, 2)), np.zeros(4), {}, ValueError, "x and y must have the same number"),
        (np.zeros((4, 2)), np.zeros((4, 1)), {}, ValueError, "y must be 1-D"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=0), ValueError, r"test_size must be in \(0, 1\); got 0"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=1.0), ValueError, r"test_size must be in \(0, 1\)"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=1.5), ValueError, r"test_size must be in \(0, 1\)"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=-0.2), ValueError, r"test_size must be in \(0, 1\)"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=True), TypeError, "test_size must be a real number"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size="0.2"), TypeError, "test_size must be a real number"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=0.95, stratify=False), ValueError, "empty training set"),
        (np.zeros(5), np.array([0, 0, 0, 0, 1]), {}, ValueError, "class 1 has 1"),
        (np.zeros(12), np.arange(12) % 6, dict(test_size=0.2), ValueError, "needs at least 6 samples"),
        (np.zeros(10), np.arange(10) % 2, dict(stratify="yes"), TypeError, "stratify must be True or False"),
        (np.zeros(10), np.arange(10) % 2, dict(seed="x"), TypeError, "seed must be"),
    ],
)
def test_split_bad_input(x, y, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        train_test_split(x, y, **kwargs)


# ----------------------------------------------------------------------------- standardize


def test_standardize_constant_columns():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(3.0, 2.0, 50), np.full(50, 0.1), np.zeros(50), rng.normal(size=50)]
    x_test = np.c_[rng.normal(size=(5, 1)), np.full(5, 0.3), np.ones(5), rng.normal(size=(5, 1))]
    before = x.copy()
    xs, xts, mean, std = standardize(x, x_test)
    np.testing.assert_array_equal(x, before)  # inputs untouched
    assert np.all(np.isfinite(xs)) and np.all(np.isfinite(xts))
    np.testing.assert_array_equal(xs[:, 1:3], 0.0)  # constant columns: exactly 0
    np.testing.assert_array_equal(std[1:3], 1.0)
    np.testing.assert_allclose(xs[:, [0, 3]].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(xs[:, [0, 3]].std(axis=0), 1.0)
    np.testing.assert_allclose(mean[[0, 3]], x[:, [0, 3]].mean(axis=0))
    # the test set uses the training statistics
    np.testing.assert_allclose(xts, (x_test - mean) / std)
    np.testing.assert_allclose(xts[:, 1], 0.3 - 0.1)
    assert mean.dtype == std.dtype == np.float64


def test_standardize_digits_and_dtypes():
    digits = load_digits()
    xs, none, mean, std = standardize(digits.x)
    assert none is None and np.all(np.isfinite(xs)) and xs.dtype == np.float64
    assert int(np.sum(std == 1.0)) >= 3
    f32, _, _, _ = standardize(digits.x.astype(np.float32))
    assert f32.dtype == np.float32
    ints, _, _, _ = standardize(digits.x.astype(np.uint8))
    assert ints.dtype == np.float64
    np.testing.assert_allclose(ints, xs)


def test_standardize_nan_propagates_in_its_column():
    x = np.array([[1.0, 2.0], [np.nan, 4.0], [3.0, 6.0]])
    xs, _, mean, std = standardize(x)
    assert np.all(np.isnan(xs[:, 0])) and np.all(np.isfinite(xs[:, 1]))


def test_standardize_bad_input():
    with pytest.raises(ValueError, match="x_train must be 2-D"):
        standardize(np.zeros(5))
    with pytest.raises(ValueError, match="x_train must have at least one sample"):
        standardize(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="x_test must have the 3 features"):
        standardize(np.zeros((4, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x_test must be 2-D"):
        standardize(np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(TypeError, match="x_train must be a real numeric array"):
        standardize(np.array([["a", "b"]]))
