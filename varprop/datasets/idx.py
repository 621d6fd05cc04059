"""MNIST-format IDX files: reader, writer and the four-file MNIST layout."""

from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np

from .._validate import boolean, float_dtype, one_of
from ._common import PathLike
from ._shipped import Dataset

# --------------------------------------------------------------------------------------
# IDX (MNIST) files
# --------------------------------------------------------------------------------------

#: IDX data-type code -> numpy dtype of the stored (big-endian) values.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_IDX_CODE_OF_KIND = {(np.dtype(dt).kind, np.dtype(dt).itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _as_path(value: object, argname: str) -> Path:
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise TypeError(f"{argname} must be a str or os.PathLike path; got {type(value).__name__}")


#: The most dimensions an IDX file may announce: numpy's own limit (``MAXDIMS``).
IDX_MAX_NDIM = 64
_CHUNK = 1 << 22  # bytes read at a time from the (decompressed) stream


def _open(path: Path) -> Any:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: '{path}'") from None


def _read_exactly(fh: Any, n: int) -> bytes:
    """``n`` bytes of ``fh``, read in chunks (never more than the stream holds: a header
    announcing terabytes costs only what the file really has)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = fh.read(min(_CHUNK, n - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _header(fh: Any, source: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read and check the header; return the dtype, the shape and the header length."""
    magic = _read_exactly(fh, 4)
    if len(magic) < 4:
        raise ValueError(
            f"{source}: not an IDX file: {len(magic)} bytes, shorter than the 4-byte magic number"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"{source}: bad IDX magic number 0x{magic.hex()}: the first two bytes must be zero"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({n})" for c, n in _IDX_TYPE_NAMES.items())
        raise ValueError(f"{source}: unknown IDX data type code 0x{code:02X}; expected one of {known}")
    if ndim > IDX_MAX_NDIM:
        raise ValueError(f"{source}: the IDX header announces {ndim} dimensions; at most "
                         f"{IDX_MAX_NDIM} are supported (a corrupt or non-IDX file?)")
    header_len = 4 + 4 * ndim
    raw = _read_exactly(fh, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise ValueError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {4 + len(raw)}"
        )
    dims = struct.unpack(f">{ndim}I", raw)
    return IDX_DTYPES[code], dims, header_len


def _parse_idx_stream(fh: Any, source: str, size: Optional[int] = None) -> np.ndarray:
    """Decode an (uncompressed) IDX stream: the header first, then exactly the data it
    announces plus one byte (to detect trailing data). ``size``: the stream's length when
    known (a regular file), checked against the header before any data is read."""
    dtype, dims, header_len = _header(fh, source)
    code = next(c for c, dt in IDX_DTYPES.items() if dt == dtype)
    count = math.prod(dims)
    expected = count * dtype.itemsize
    what = f"shape {dims} of {_IDX_TYPE_NAMES[code]} needs {expected} data bytes"
    if size is not None and size - header_len < expected:
        raise ValueError(f"{source}: truncated IDX data: {what}, the file has {size - header_len}")
    if size is not None and size - header_len > expected:
        raise ValueError(f"{source}: {size - header_len - expected} trailing bytes after the "
                         f"IDX data ({what}, the file has {size - header_len})")
    data = _read_exactly(fh, expected + 1)
    found = len(data)
    if found < expected:
        raise ValueError(f"{source}: truncated IDX data: {what}, the file has {found}")
    if found > expected:
        # count what follows, but only up to a bound: the rest may be a gzip bomb
        extra = 1 + len(_read_exactly(fh, _CHUNK))
        count_text = f"{extra}" if extra <= _CHUNK else f"more than {_CHUNK}"
        raise ValueError(f"{source}: {count_text} trailing bytes after the IDX data ({what})")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def load_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the format MNIST is distributed in), gzip-compressed or not.

    The format: two zero bytes, a data-type code (``0x08`` unsigned byte, ``0x09`` signed
    byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of
    dimensions ``ndim`` (one byte), ``ndim`` big-endian uint32 sizes, then the values,
    big-endian, in C order. A gzip-compressed file is recognised by its magic bytes
    ``1f 8b``, whatever its name. The header is read and checked first (at most
    :data:`IDX_MAX_NDIM` dimensions; a regular file's size must match it), then exactly
    the data it announces plus one byte, streamed from the (gzip) file: a small gzip file
    that decompresses to gigabytes is refused after reading what the header announced.

    Parameters
    ----------
    path:
        The file to read.

    Returns
    -------
    numpy.ndarray
        A new, writable, native-byte-order array of the stored dtype and shape.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    ValueError
        If the file is not valid IDX: bad magic number, unknown type code, truncated header
        or data, trailing bytes after the data, or a corrupt gzip stream. The message names
        the file and the problem.
    """
    p = _as_path(path, "path")
    source = f"'{p}'"
    with _open(p) as fh:
        st = os.fstat(fh.fileno())
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        if fh.peek(2)[:2] != _GZIP_MAGIC:
            return _parse_idx_stream(fh, source, size)
        source = f"'{p}' (gzip)"
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                return _parse_idx_stream(gz, source)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{source}: corrupt gzip stream: {exc}") from None


def save_idx(path: PathLike, array: np.ndarray, *, compress: Optional[bool] = None) -> Path:
    """Write ``array`` as an IDX file, the inverse of :func:`load_idx`.

    Parameters
    ----------
    path:
        Where to write; an existing file is replaced.
    array:
        Array of dtype uint8, int8, int16, int32, float32 or float64 (either byte order),
        at most 64 dimensions (:data:`IDX_MAX_NDIM`), each below 2**32. Other dtypes are refused rather than
        converted: cast explicitly (MNIST images are uint8).
    compress:
        Gzip the file. ``None`` (default) compresses when ``path`` ends in ``.gz``. The gzip
        header carries no timestamp or name, so equal arrays give equal files.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    p = _as_path(path, "path")
    a = np.asarray(array)
    code = _IDX_CODE_OF_KIND.get((a.dtype.kind, a.dtype.itemsize))
    if code is None or a.dtype.fields is not None:
        raise TypeError(
            "array must have dtype uint8, int8, int16, int32, float32 or float64 to be written "
            f"as IDX; got {a.dtype} (cast it explicitly)"
        )
    if a.ndim > IDX_MAX_NDIM:
        raise ValueError(f"array has {a.ndim} dimensions; IDX files are read with at most "
                         f"{IDX_MAX_NDIM}")
    if any(s > 0xFFFFFFFF for s in a.shape):
        raise ValueError(f"array shape {a.shape} has a dimension of 2**32 or more; IDX cannot store it")
    if boolean("compress", compress, or_none=True) is None:
        compress = p.suffix.lower() == ".gz"
    header = bytes((0, 0, code, a.ndim)) + struct.pack(f">{a.ndim}I", *a.shape)
    body = np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + body
    if compress:
        blob = gzip.compress(blob, mtime=0)
    _write_atomic(p, blob)
    return p


def _write_atomic(path: Path, blob: bytes) -> None:
    """Write ``blob`` to a temporary file beside ``path`` and rename it over ``path``: a
    failed or interrupted write leaves neither a truncated file nor the temporary."""
    parent = path.parent if str(path.parent) else Path(".")
    tmp: Optional[str] = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


_MNIST_KINDS = {"train": "train", "t10k": "t10k", "test": "t10k"}


def _find_mnist_file(directory: Path, prefix: str, what: str, ndim: int) -> Path:
    names = []
    for stem in (f"{prefix}-{what}-idx{ndim}-ubyte", f"{prefix}-{what}.idx{ndim}-ubyte"):
        names += [stem, stem + ".gz"]
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no MNIST {prefix} {what} file in '{directory}': looked for " + ", ".join(names)
    )


def load_mnist(
    directory: PathLike,
    kind: Literal["train", "t10k", "test"] = "train",
    *,
    dtype: Union[type, np.dtype, str] = np.float64,
    class_names: Optional[Sequence[str]] = None,
) -> Dataset:
    """Read MNIST (or any data set in the same layout) from IDX files in ``directory``.

    Looks for ``<kind>-images-idx3-ubyte`` and ``<kind>-labels-idx1-ubyte``, each
    optionally gzip-compressed (``.gz``); the variant spelling ``<kind>-images.idx3-ubyte``
    is accepted too. Nothing is downloaded: fetch the files yourself (Fashion-MNIST and
    KMNIST use the same names and format).

    Parameters
    ----------
    directory:
        Directory holding the files.
    kind:
        ``"train"`` (60,000 images for MNIST) or ``"t10k"`` (10,000; ``"test"`` is an alias).
    dtype:
        Float dtype of ``x``: float64 (default) or float32 (half the memory: the MNIST
        training images take 376 MB as float64).
    class_names:
        Names of the classes, indexed by label; default ``("0", ..., "9")``.

    Returns
    -------
    Dataset
        ``x`` of shape ``(n, rows * cols)`` (784 for MNIST), pixel bytes divided by 255 so
        values lie in [0, 1]; ``y`` int64 labels; ``image_shape == (rows, cols)``.

    Raises
    ------
    FileNotFoundError
        If ``directory`` or one of the two files is missing (the message names what was
        looked for).
    ValueError
        If ``kind`` is not one of the names above, a file is not valid IDX (see
        :func:`load_idx`), the images are not a 3-D unsigned byte array, the labels not a
        1-D integer array, the two counts differ, or a label has no class name.
    TypeError
        If ``kind`` is not a string or ``dtype`` is not float32 or float64.
    """
    d = _as_path(directory, "directory")
    one_of("kind", kind, tuple(_MNIST_KINDS))
    out_dtype = float_dtype("dtype", dtype, kernels=True)
    names = tuple(str(i) for i in range(10)) if class_names is None else tuple(map(str, class_names))
    if not d.exists():
        raise FileNotFoundError(f"MNIST directory not found: '{d}'")
    if not d.is_dir():
        raise NotADirectoryError(f"directory is not a directory: '{d}'")
    prefix = _MNIST_KINDS[kind]
    images_path = _find_mnist_file(d, prefix, "images", 3)
    labels_path = _find_mnist_file(d, prefix, "labels", 1)
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"'{images_path}': MNIST images must be a 3-D unsigned byte array (n, rows, cols); "
            f"got shape {images.shape} of {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"'{labels_path}': MNIST labels must be a 1-D integer array (n,); "
            f"got shape {labels.shape} of {labels.dtype}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"image and label counts differ: '{images_path}' holds {len(images)} images, "
            f"'{labels_path}' holds {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(
            f"'{labels_path}': labels lie in {int(labels.min())}..{int(labels.max())}, but only "
            f"{len(names)} class names are given (labels must be in 0..{len(names) - 1})"
        )
    n, rows, cols = images.shape
    x = images.reshape(n, rows * cols).astype(out_dtype)
    x /= out_dtype.type(255)
    return Dataset(
        x=x,
        y=labels.astype(np.int64),
        class_names=names,
        name=f"mnist-{prefix}",
        description=(
            f"MNIST-format IDX data read from '{images_path}' and '{labels_path}': "
            f"{n} images of {rows}x{cols} pixels scaled to [0, 1]."
        ),
        image_shape=(rows, cols),
    )
