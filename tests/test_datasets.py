"""Tests for varprop.datasets: shipped data, IDX/MNIST files, toy sets, split, scaling."""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import struct
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
    load_idx,
    load_iris,
    load_mnist,
    make_toy_2d,
    save_idx,
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


# ----------------------------------------------------------------------------- IDX files

IDX_CASES = [
    (0x08, np.uint8, [0, 1, 127, 128, 255]),
    (0x09, np.int8, [-128, -1, 0, 1, 127]),
    (0x0B, np.int16, [-32768, -2, 0, 258, 32767]),
    (0x0C, np.int32, [-(2**31), -1, 0, 16909060, 2**31 - 1]),
    (0x0D, np.float32, [-1.5, 0.0, 3.25, np.inf, 1e-30]),
    (0x0E, np.float64, [-1.5, 0.0, math.pi, -np.inf, 1e300]),
]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("code,dtype,values", IDX_CASES, ids=[c[1].__name__ for c in IDX_CASES])
def test_idx_round_trip_every_dtype(tmp_path, code, dtype, values, compress):
    rng = np.random.default_rng(code)
    for shape in [(5,), (2, 3, 4), (0, 7), (1, 1, 1, 1)]:
        n = math.prod(shape)
        a = rng.choice(np.array(values, dtype=dtype), size=n).reshape(shape)
        path = tmp_path / f"a{len(shape)}.idx"
        assert save_idx(path, a, compress=compress) == path
        raw = path.read_bytes()
        if compress:
            assert raw[:2] == b"\x1f\x8b"
            raw = gzip.decompress(raw)
        # header: 0, 0, type code, ndim, then big-endian uint32 dims
        assert raw[:4] == bytes((0, 0, code, len(shape)))
        assert struct.unpack(f">{len(shape)}I", raw[4 : 4 + 4 * len(shape)]) == shape
        assert raw[4 + 4 * len(shape) :] == a.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
        b = load_idx(path)
        assert b.dtype == np.dtype(dtype) and b.dtype.isnative
        assert b.shape == shape and b.flags.writeable
        np.testing.assert_array_equal(b, a)


def test_idx_known_bytes(tmp_path):
    """A hand-written file in the published format, independent of save_idx."""
    path = tmp_path / "hand-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x03" + bytes([7, 2, 1]))
    np.testing.assert_array_equal(load_idx(path), np.array([7, 2, 1], np.uint8))
    path = tmp_path / "hand.idx"
    path.write_bytes(b"\x00\x00\x0b\x02\x00\x00\x00\x01\x00\x00\x00\x02" + b"\x01\x02\xff\xfe")
    np.testing.assert_array_equal(load_idx(str(path)), np.array([[258, -2]], np.int16))


def test_idx_gzip_detected_by_magic_not_name(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    save_idx(tmp_path / "compressed.idx", a, compress=True)
    save_idx(tmp_path / "plain.idx.gz", a, compress=False)
    np.testing.assert_array_equal(load_idx(tmp_path / "compressed.idx"), a)
    np.testing.assert_array_equal(load_idx(tmp_path / "plain.idx.gz"), a)
    # default: compress by suffix, deterministic bytes (no timestamp)
    save_idx(tmp_path / "x.gz", a)
    assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
    save_idx(tmp_path / "y.gz", a)
    assert (tmp_path / "x.gz").read_bytes() == (tmp_path / "y.gz").read_bytes()


def test_idx_byte_order_of_input_irrelevant(tmp_path):
    a = np.array([1.0, -2.5, 3.0], dtype=">f8")
    save_idx(tmp_path / "be", a)
    save_idx(tmp_path / "le", a.astype("<f8"))
    assert (tmp_path / "be").read_bytes() == (tmp_path / "le").read_bytes()
    np.testing.assert_array_equal(load_idx(tmp_path / "be"), a)


@settings(max_examples=30, deadline=None)
@given(
    case=st.sampled_from(IDX_CASES),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple),
    seed=st.integers(0, 2**32 - 1),
    compress=st.booleans(),
)
def test_idx_round_trip_property(tmp_path_factory, case, shape, seed, compress):
    _, dtype, values = case
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array(values, dtype=dtype), size=math.prod(shape)).reshape(shape)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    save_idx(path, a, compress=compress)
    b = load_idx(path)
    assert b.shape == a.shape and b.dtype == a.dtype
    np.testing.assert_array_equal(b, a)


def _good_idx_bytes() -> bytes:
    return b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6))


@pytest.mark.parametrize(
    "blob,match",
    [
        (b"", r"not an IDX file: 0 bytes"),
        (b"\x00\x00", r"not an IDX file: 2 bytes"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", r"bad IDX magic number 0x01000801"),
        (b"\x00\x10\x08\x01\x00\x00\x00\x01\x05", r"bad IDX magic number"),
        (b"PK\x03\x04junk", r"bad IDX magic number"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", r"unknown IDX data type code 0x0A"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", r"unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00", r"truncated IDX header: 3 dimensions need 16"),
        (_good_idx_bytes()[:-1], r"truncated IDX data: shape \(2, 3\) .* needs 6 data bytes, the file has 5"),
        (_good_idx_bytes()[:12], r"truncated IDX data"),
        (_good_idx_bytes() + b"\x00", r"1 trailing bytes after the IDX data"),
        (_good_idx_bytes() + b"garbage!", r"8 trailing bytes"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x02" + b"\x00" * 7, r"truncated IDX data: .*float32 needs 8"),
        (b"\x00\x00\x08\x01\xff\xff\xff\xff" + b"\x00" * 10, r"truncated IDX data"),
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_idx_bad_files_give_clear_errors(tmp_path, blob, match, compress):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)
    with pytest.raises(ValueError, match=match) as info:
        load_idx(path)
    assert str(path) in str(info.value)


def test_idx_corrupt_gzip(tmp_path):
    blob = gzip.compress(_good_idx_bytes() * 50, mtime=0)
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt gzip stream") as info:
        load_idx(path)
    assert str(path) in str(info.value)
    path.write_bytes(blob[:10] + bytes(b ^ 0xFF for b in blob[10:20]) + blob[20:])
    with pytest.raises(ValueError, match="corrupt gzip stream"):
        load_idx(path)


def test_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_idx(path)
    with pytest.raises(TypeError, match="path must be"):
        load_idx(42)


def test_save_idx_refuses_unsupported(tmp_path):
    for bad in (np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.float16), np.zeros(2, complex)):
        with pytest.raises(TypeError, match="array must have dtype"):
            save_idx(tmp_path / "x", bad)
    with pytest.raises(TypeError, match="compress"):
        save_idx(tmp_path / "x", np.zeros(3, np.uint8), compress="yes")


# ----------------------------------------------------------------------------- MNIST


def _write_mnist(directory, prefix, n, *, gz, rows=28, cols=28, seed=0, dotted=False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    sep = "." if dotted else "-"
    suffix = ".gz" if gz else ""
    save_idx(directory / f"{prefix}-images{sep}idx3-ubyte{suffix}", images)
    save_idx(directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels)
    return images, labels


def test_load_mnist_tiny_directory(tmp_path):
    images, labels = _write_mnist(tmp_path, "train", 7, gz=True)
    timages, tlabels = _write_mnist(tmp_path, "t10k", 3, gz=False, seed=1)
    train = load_mnist(tmp_path)
    assert train.x.shape == (7, 784) and train.x.dtype == np.float64
    assert train.y.dtype == np.int64
    np.testing.assert_array_equal(train.y, labels)
    np.testing.assert_allclose(train.x, images.reshape(7, 784) / 255.0)
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    assert train.image_shape == (28, 28) and train.images.shape == (7, 28, 28)
    assert train.class_names == tuple("0123456789")
    assert train.name == "mnist-train"
    for kind in ("t10k", "test"):
        test = load_mnist(str(tmp_path), kind)
        assert test.x.shape == (3, 784)
        np.testing.assert_array_equal(test.y, tlabels)
    small = load_mnist(tmp_path, "train", dtype=np.float32)
    assert small.x.dtype == np.float32
    np.testing.assert_allclose(small.x, train.x, rtol=1e-6)


def test_load_mnist_variant_names_and_shapes(tmp_path):
    _write_mnist(tmp_path, "train", 4, gz=False, rows=5, cols=3, dotted=True)
    d = load_mnist(tmp_path)
    assert d.x.shape == (4, 15) and d.image_shape == (5, 3)


def test_load_mnist_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_mnist(missing)
    with pytest.raises(ValueError, match="kind must be"):
        load_mnist(tmp_path, "validation")
    with pytest.raises(ValueError, match="dtype must be"):
        load_mnist(tmp_path, dtype=np.int32)

    # labels file missing
    save_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"train labels file in .*train-labels-idx1-ubyte"):
        load_mnist(tmp_path)

    # count mismatch names both files
    save_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"counts differ.*2 images.*3 labels") as info:
        load_mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value) and "train-labels-idx1-ubyte" in str(info.value)

    # labels without a class name
    save_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 12], np.uint8))
    with pytest.raises(ValueError, match=r"labels lie in 1..12"):
        load_mnist(tmp_path)
    d = load_mnist(tmp_path, class_names=[f"c{i}" for i in range(13)])
    assert d.n_classes == 13 and d.class_names[12] == "c12"

    # images that are not 3-D unsigned bytes
    save_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2], np.uint8))
    save_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"3-D unsigned byte array.*float32"):
        load_mnist(tmp_path)
    save_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 16), np.uint8))
    with pytest.raises(ValueError, match=r"3-D unsigned byte array"):
        load_mnist(tmp_path)

    # a truncated images file reports that file
    images = tmp_path / "train-images-idx3-ubyte"
    save_idx(images, np.zeros((2, 4, 4), np.uint8))
    images.write_bytes(images.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated IDX data") as info:
        load_mnist(tmp_path)
    assert str(images) in str(info.value)

    # a file where the directory should be
    with pytest.raises(NotADirectoryError):
        load_mnist(images)


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
        (dict(n_classes=1), ValueError, "n_classes must be at least 2"),
        (dict(n_samples=1), ValueError, "n_samples must be at least 2"),
        (dict(n_samples=2.5), TypeError, "n_samples must be an int"),
        (dict(noise=-0.1), ValueError, "noise must be finite and >= 0"),
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
        (np.zeros(10), np.arange(10) % 2, dict(test_size=0), ValueError, "test_size must be strictly"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=1.0), ValueError, "test_size must be strictly"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=1.5), ValueError, "test_size must be strictly"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=-0.2), ValueError, "test_size must be strictly"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=True), TypeError, "test_size must be a float"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size="0.2"), TypeError, "test_size must be a float"),
        (np.zeros(10), np.arange(10) % 2, dict(test_size=0.95, stratify=False), ValueError, "empty training set"),
        (np.zeros(5), np.array([0, 0, 0, 0, 1]), {}, ValueError, "class 1 has 1"),
        (np.zeros(12), np.arange(12) % 6, dict(test_size=0.2), ValueError, "needs at least 6 samples"),
        (np.zeros(10), np.arange(10) % 2, dict(stratify="yes"), TypeError, "stratify must be a bool"),
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
