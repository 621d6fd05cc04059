"""Issue 13 (A): IDX files are read header first and only as far as the header
announces; save_idx is atomic; absurd headers are refused by name."""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest

from varprop.datasets import idx as idx_mod
from varprop.datasets.idx import load_idx, save_idx


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes((0, 0, code, len(dims))) + struct.pack(f">{len(dims)}I", *dims)


def test_gzip_bomb_is_rejected_without_decompressing_it(tmp_path):
    # header: one byte of data; then 64 MB of zeros, compressed to ~64 KB
    blob = _header(0x08, (1,)) + b"\x00" + bytes(64 * 2**20)
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(gzip.compress(blob, compresslevel=9, mtime=0))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="trailing bytes after the IDX data"):
            load_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"decompressed {peak} bytes for a 1-element file"


def test_load_idx_of_an_endless_device_stops_at_the_header():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(ValueError, match="unknown IDX data type code 0x00"):
        load_idx("/dev/zero")


def test_header_announcing_terabytes_is_not_allocated(tmp_path):
    path = tmp_path / "huge.idx"
    path.write_bytes(_header(0x0E, (2**32 - 1, 2**32 - 1)) + b"\x00" * 16)
    with pytest.raises(ValueError, match="truncated IDX data"):
        load_idx(path)
    gz = tmp_path / "huge.idx.gz"
    gz.write_bytes(gzip.compress(_header(0x0E, (2**32 - 1, 2**32 - 1)) + b"\x00" * 16))
    with pytest.raises(ValueError, match="truncated IDX data"):
        load_idx(gz)


@pytest.mark.parametrize("ndim", [65, 200, 255])
def test_absurd_ndim_is_named(tmp_path, ndim):
    path = tmp_path / "many.idx"
    path.write_bytes(_header(0x08, (1,) * ndim) + b"\x00")
    with pytest.raises(ValueError, match=f"announces {ndim} dimensions; at most 64"):
        load_idx(path)


def test_save_idx_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.idx"
    save_idx(path, np.arange(6, dtype=np.uint8))
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idx_mod.os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        save_idx(path, np.arange(1000, dtype=np.uint8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.idx"]


def test_save_idx_interrupted_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "b.idx.gz"

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(idx_mod.os, "chmod", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_idx(path, np.arange(6, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_save_then_load_roundtrip_still_works(tmp_path):
    a = np.arange(24, dtype=">f4").reshape(2, 3, 4)
    for name in ("r.idx", "r.idx.gz"):
        save_idx(tmp_path / name, a)
        np.testing.assert_array_equal(load_idx(tmp_path / name), a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.idx", "r.idx.gz"]
