"""Tests for varprop.datasets' IDX files (the MNIST format) and the MNIST loader."""

from __future__ import annotations

import gzip
import math
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varprop.datasets import load_idx, load_mnist, save_idx


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
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
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
