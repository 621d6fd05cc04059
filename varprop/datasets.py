"""Data for the seed experiments: shipped tables, MNIST-format files, toy sets, splits.

Everything the experiments train on either ships inside the package or is generated
from a seed, so a fresh install reproduces them without a download:

- :func:`load_iris` and :func:`load_digits` read Fisher's Iris data (150 x 4, three
  classes) and the 8 x 8 optical digits (1797 x 64, ten classes, pixel counts 0..16)
  from ``varprop/data/`` through :mod:`importlib.resources`, so they work from a wheel or
  a zip as well as from a source tree. Each file's sha256 is checked on every load; where
  the files come from and under which license is in ``varprop/data/PROVENANCE.md``.
- :func:`load_idx` and :func:`save_idx` read and write the IDX format MNIST is
  distributed in (optionally gzip-compressed); :func:`load_mnist` reads the usual
  four-file MNIST layout from a directory the user gives. Nothing is downloaded.
- :func:`make_toy_2d` draws the small two-dimensional classification sets (blobs,
  moons, circles, spirals, xor) used to check that training works at all.
- :func:`train_test_split` makes a seeded, stratified split and :func:`standardize`
  centres and scales features with training statistics only.

All loaders and generators return a :class:`Dataset`: features ``x`` as a float array
``(n_samples, n_features)``, integer labels ``y`` in ``0 .. n_classes - 1`` indexing
``class_names``, and a description that says where the data came from.

Randomness follows the package convention: every function that draws takes ``seed``
(``None``, an int, a :class:`numpy.random.SeedSequence` or a
:class:`numpy.random.Generator`), normalised with :func:`numpy.random.default_rng`; there
is no global state. Bad input raises :class:`ValueError` or :class:`TypeError` naming the
argument, and a bad file raises :class:`ValueError` naming the file and what is wrong
with it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import numbers
import os
import struct
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np

__all__ = [
    "Dataset",
    "load_iris",
    "load_digits",
    "load_idx",
    "save_idx",
    "load_mnist",
    "make_toy_2d",
    "train_test_split",
    "standardize",
    "IDX_DTYPES",
    "TOY_KINDS",
]

SeedLike = Union[None, int, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator]
PathLike = Union[str, "os.PathLike[str]"]

# --------------------------------------------------------------------------------------
# The Dataset record
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class Dataset:
    """A labelled classification data set.

    Attributes
    ----------
    x:
        Features, a float array of shape ``(n_samples, n_features)`` (float64 from every
        loader unless asked otherwise).
    y:
        Labels, an int64 array of shape ``(n_samples,)`` with values in
        ``0 .. len(class_names) - 1``.
    class_names:
        Name of each class; ``class_names[y[i]]`` names sample ``i``.
    name:
        Short identifier, e.g. ``"iris"``.
    description:
        Where the data came from (source, citation, license) or how it was generated.
    feature_names:
        Name of each column of ``x``, or ``None``.
    image_shape:
        For image data, the shape one row of ``x`` reshapes to (``(8, 8)`` for the
        digits, ``(28, 28)`` for MNIST); ``None`` otherwise.

    The record is immutable (its fields cannot be reassigned); the arrays are ordinary
    writable arrays owned by this record, since each loader call builds fresh ones.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    name: str
    description: str = ""
    feature_names: Optional[tuple[str, ...]] = None
    image_shape: Optional[tuple[int, ...]] = None

    def __post_init__(self) -> None:
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        if x.ndim != 2:
            raise ValueError(f"Dataset x must be 2-D (n_samples, n_features); got shape {x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"Dataset x must be a float array; got dtype {x.dtype}")
        if y.ndim != 1:
            raise ValueError(f"Dataset y must be 1-D (n_samples,); got shape {y.shape}")
        if y.size and y.dtype.kind not in "iu":
            raise TypeError(f"Dataset y must hold integer labels; got dtype {y.dtype}")
        if len(y) != len(x):
            raise ValueError(
                f"Dataset x and y must have the same number of samples; got {len(x)} and {len(y)}"
            )
        y = y.astype(np.int64, copy=False)
        class_names = tuple(str(c) for c in self.class_names)
        if not class_names:
            raise ValueError("Dataset class_names must name at least one class")
        if y.size and (y.min() < 0 or y.max() >= len(class_names)):
            raise ValueError(
                f"Dataset y must lie in 0..{len(class_names) - 1} (one per class name); "
                f"got labels in {int(y.min())}..{int(y.max())}"
            )
        feature_names = self.feature_names
        if feature_names is not None:
            feature_names = tuple(str(f) for f in feature_names)
            if len(feature_names) != x.shape[1]:
                raise ValueError(
                    f"Dataset feature_names must have one name per column of x ({x.shape[1]}); "
                    f"got {len(feature_names)}"
                )
        image_shape = self.image_shape
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if math.prod(image_shape) != x.shape[1]:
                raise ValueError(
                    f"Dataset image_shape {image_shape} does not hold the {x.shape[1]} "
                    "features of one row of x"
                )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "class_names", class_names)
        object.__setattr__(self, "feature_names", feature_names)
        object.__setattr__(self, "image_shape", image_shape)

    @property
    def n_samples(self) -> int:
        """Number of samples (rows of ``x``)."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features (columns of ``x``)."""
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def images(self) -> np.ndarray:
        """``x`` reshaped to ``(n_samples, *image_shape)`` (a view); only for image data."""
        if self.image_shape is None:
            raise AttributeError(f"dataset {self.name!r} is not image data (image_shape is None)")
        return self.x.reshape((self.n_samples,) + self.image_shape)

    def class_counts(self) -> np.ndarray:
        """Number of samples of each class, an int64 array of length ``n_classes``."""
        return np.bincount(self.y, minlength=self.n_classes).astype(np.int64)

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_samples={self.n_samples}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}, x.dtype={self.x.dtype})"
        )


# --------------------------------------------------------------------------------------
# Shipped data
# --------------------------------------------------------------------------------------

#: sha256 of each shipped file, checked on every load (also listed in PROVENANCE.md).
_SHIPPED_SHA256 = {
    "iris.csv": "f13ffa8fdd56fd8e6c8d16d4081a3fbd3114bcd0aae4256c43205169cd9d1449",
    "digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
}

_IRIS_DESCRIPTION = (
    "Fisher's Iris data: 150 flowers, 4 measurements in cm (sepal length, sepal width, "
    "petal length, petal width), 3 species with 50 samples each. "
    "Source: R. A. Fisher (1936), 'The use of multiple measurements in taxonomic problems', "
    "Annals of Eugenics 7(2):179-188; UCI Machine Learning Repository, Iris, "
    "https://doi.org/10.24432/C56C76, licensed CC BY 4.0. The shipped file is scikit-learn's "
    "copy (sklearn/datasets/data/iris.csv, BSD-3-Clause), which follows Fisher's paper in the "
    "two values where UCI's iris.data is wrong (samples 35 and 38). "
    "See varprop/data/PROVENANCE.md."
)

_DIGITS_DESCRIPTION = (
    "Optical Recognition of Handwritten Digits, test partition: 1797 images of 8x8 "
    "pixels, each pixel the count (0..16) of set pixels in a 4x4 block of a 32x32 NIST "
    "bitmap, 10 classes (digits 0-9). Source: E. Alpaydin and C. Kaynak (1998), UCI Machine "
    "Learning Repository, https://doi.org/10.24432/C50P49, licensed CC BY 4.0. The shipped "
    "file is scikit-learn's copy (sklearn/datasets/data/digits.csv.gz, BSD-3-Clause). "
    "See varprop/data/PROVENANCE.md."
)

_IRIS_FEATURES = (
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
)


def _read_shipped(filename: str) -> bytes:
    """Bytes of ``varprop/data/<filename>``, checked against its recorded sha256."""
    package = __name__.rpartition(".")[0] or "varprop"
    ref = resources.files(package).joinpath("data").joinpath(filename)
    try:
        data = ref.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"shipped data file '{package}/data/{filename}' is missing from this installation "
            "(was the package built without its package data?)"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    expected = _SHIPPED_SHA256[filename]
    if digest != expected:
        raise RuntimeError(
            f"shipped data file '{package}/data/{filename}' is corrupt: sha256 {digest}, "
            f"expected {expected}; reinstall varprop"
        )
    return data


def _parse_csv(text: str, source: str, n_cols: int) -> np.ndarray:
    try:
        table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise RuntimeError(f"{source}: cannot parse: {exc}") from None
    if table.shape[1] != n_cols:
        raise RuntimeError(f"{source}: expected {n_cols} columns, found {table.shape[1]}")
    return table


def _labels_from_column(column: np.ndarray, n_classes: int, source: str) -> np.ndarray:
    y = column.astype(np.int64)
    if not np.array_equal(y, column) or y.min() < 0 or y.max() >= n_classes:
        raise RuntimeError(f"{source}: labels are not integers in 0..{n_classes - 1}")
    return y


def load_iris() -> Dataset:
    """Fisher's Iris data, shipped with the package.

    Returns
    -------
    Dataset
        ``x`` float64 ``(150, 4)`` (sepal length, sepal width, petal length, petal
        width, in cm), ``y`` int64 ``(150,)`` with 50 samples of each class, and
        ``class_names == ("setosa", "versicolor", "virginica")``. Rows are in the file's
        order (sorted by class); use :func:`train_test_split` to shuffle and split.

    Notes
    -----
    UCI Machine Learning Repository, Iris, https://doi.org/10.24432/C56C76 (CC BY 4.0), in
    scikit-learn's copy, which follows Fisher's 1936 paper where UCI's ``iris.data`` has
    two wrong values. See ``varprop/data/PROVENANCE.md``.
    """
    source = "varprop/data/iris.csv"
    text = _read_shipped("iris.csv").decode("ascii")
    header, _, body = text.partition("\n")
    fields = header.strip().split(",")
    n_samples, n_features = int(fields[0]), int(fields[1])
    class_names = tuple(fields[2:])
    table = _parse_csv(body, source, n_features + 1)
    if table.shape[0] != n_samples:
        raise RuntimeError(f"{source}: header says {n_samples} rows, found {table.shape[0]}")
    x = np.ascontiguousarray(table[:, :n_features])
    y = _labels_from_column(table[:, n_features], len(class_names), source)
    return Dataset(
        x=x,
        y=y,
        class_names=class_names,
        name="iris",
        description=_IRIS_DESCRIPTION,
        feature_names=_IRIS_FEATURES,
    )


def load_digits() -> Dataset:
    """The 8 x 8 optical handwritten digits (UCI test partition), shipped with the package.

    Returns
    -------
    Dataset
        ``x`` float64 ``(1797, 64)`` holding integer pixel counts 0..16 (row-major 8 x 8
        images, unscaled: divide by 16 or use :func:`standardize`), ``y`` int64
        ``(1797,)`` in 0..9, ``class_names == ("0", ..., "9")``,
        ``feature_names == ("pixel_0_0", ..., "pixel_7_7")`` and ``image_shape == (8, 8)``.
        Class counts: 178, 182, 177, 183, 181, 182, 181, 179, 174, 180.

    Notes
    -----
    E. Alpaydin and C. Kaynak (1998), Optical Recognition of Handwritten Digits, UCI Machine
    Learning Repository, https://doi.org/10.24432/C50P49 (CC BY 4.0), in scikit-learn's
    copy. Three pixel columns are zero in every image. See ``varprop/data/PROVENANCE.md``.
    """
    source = "varprop/data/digits.csv.gz"
    text = gzip.decompress(_read_shipped("digits.csv.gz")).decode("ascii")
    table = _parse_csv(text, source, 65)
    x = np.ascontiguousarray(table[:, :64])
    if x.min() < 0 or x.max() > 16 or not np.array_equal(x, np.round(x)):
        raise RuntimeError(f"{source}: pixel values are not integers in 0..16")
    y = _labels_from_column(table[:, 64], 10, source)
    return Dataset(
        x=x,
        y=y,
        class_names=tuple(str(d) for d in range(10)),
        name="digits",
        description=_DIGITS_DESCRIPTION,
        feature_names=tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)),
        image_shape=(8, 8),
    )


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


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: '{path}'") from None


def _parse_idx(buf: bytes, source: str) -> np.ndarray:
    """Decode an (uncompressed) IDX byte string; ``source`` names it in errors."""
    if len(buf) < 4:
        raise ValueError(
            f"{source}: not an IDX file: {len(buf)} bytes, shorter than the 4-byte magic number"
        )
    if buf[0] != 0 or buf[1] != 0:
        raise ValueError(
            f"{source}: bad IDX magic number 0x{buf[:4].hex()}: the first two bytes must be zero"
        )
    code, ndim = buf[2], buf[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({n})" for c, n in _IDX_TYPE_NAMES.items())
        raise ValueError(f"{source}: unknown IDX data type code 0x{code:02X}; expected one of {known}")
    header_len = 4 + 4 * ndim
    if len(buf) < header_len:
        raise ValueError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {len(buf)}"
        )
    dims = struct.unpack(f">{ndim}I", buf[4:header_len])
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = len(buf) - header_len
    what = f"shape {dims} of {_IDX_TYPE_NAMES[code]} needs {expected} data bytes"
    if found < expected:
        raise ValueError(f"{source}: truncated IDX data: {what}, the file has {found}")
    if found > expected:
        raise ValueError(
            f"{source}: {found - expected} trailing bytes after the IDX data ({what}, "
            f"the file has {found})"
        )
    data = np.frombuffer(buf, dtype=dtype, count=count, offset=header_len)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def load_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the format MNIST is distributed in), gzip-compressed or not.

    The format: two zero bytes, a data-type code (``0x08`` unsigned byte, ``0x09`` signed
    byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of
    dimensions ``ndim`` (one byte), ``ndim`` big-endian uint32 sizes, then the values,
    big-endian, in C order. A gzip-compressed file is recognised by its magic bytes
    ``1f 8b``, whatever its name.

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
    raw = _read_file(p)
    source = f"'{p}'"
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{source}: corrupt gzip stream: {exc}") from None
        source = f"'{p}' (gzip)"
    return _parse_idx(raw, source)


def save_idx(path: PathLike, array: np.ndarray, *, compress: Optional[bool] = None) -> Path:
    """Write ``array`` as an IDX file, the inverse of :func:`load_idx`.

    Parameters
    ----------
    path:
        Where to write; an existing file is replaced.
    array:
        Array of dtype uint8, int8, int16, int32, float32 or float64 (either byte order),
        at most 255 dimensions, each below 2**32. Other dtypes are refused rather than
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
    if a.ndim > 255:
        raise ValueError(f"array has {a.ndim} dimensions; IDX stores at most 255")
    if any(s > 0xFFFFFFFF for s in a.shape):
        raise ValueError(f"array shape {a.shape} has a dimension of 2**32 or more; IDX cannot store it")
    if compress is None:
        compress = p.suffix.lower() == ".gz"
    elif not isinstance(compress, (bool, np.bool_)):
        raise TypeError(f"compress must be None or a bool; got {type(compress).__name__}")
    header = bytes((0, 0, code, a.ndim)) + struct.pack(f">{a.ndim}I", *a.shape)
    body = np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + body
    if compress:
        blob = gzip.compress(blob, mtime=0)
    p.write_bytes(blob)
    return p


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
        If a file is not valid IDX (see :func:`load_idx`), the images are not a 3-D unsigned
        byte array, the labels not a 1-D integer array, the two counts differ, or a label
        has no class name.
    """
    d = _as_path(directory, "directory")
    if not isinstance(kind, str) or kind not in _MNIST_KINDS:
        raise ValueError(f"kind must be 'train' or 't10k' (alias 'test'); got {kind!r}")
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {out_dtype}")
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


# --------------------------------------------------------------------------------------
# Toy 2-D data
# --------------------------------------------------------------------------------------

#: Kinds :func:`make_toy_2d` draws, with their default ``noise``.
TOY_KINDS: dict[str, float] = {
    "blobs": 1.0,
    "moons": 0.1,
    "circles": 0.05,
    "spiral": 0.05,
    "xor": 0.3,
}
_MULTICLASS_KINDS = ("blobs", "spiral")


def _as_rng(seed: SeedLike) -> np.random.Generator:
    """Normalise ``seed`` with :func:`numpy.random.default_rng`, naming it in errors."""
    if isinstance(seed, (bool, np.bool_)) or not (
        seed is None
        or isinstance(
            seed,
            (numbers.Integral, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator),
        )
    ):
        raise TypeError(
            "seed must be None, an int, a numpy SeedSequence, BitGenerator or Generator; "
            f"got {type(seed).__name__}"
        )
    try:
        return np.random.default_rng(seed)
    except ValueError as exc:
        raise ValueError(f"seed must be a non-negative int; got {seed!r} ({exc})") from None


def _check_int(value: object, argname: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argname} must be at least {minimum}; got {value}")
    return int(value)


def make_toy_2d(
    n_samples: int = 200,
    kind: str = "blobs",
    *,
    noise: Optional[float] = None,
    n_classes: int = 2,
    seed: SeedLike = None,
) -> Dataset:
    """Draw a small two-dimensional classification data set.

    Kinds (the shapes are fixed; ``noise`` is the standard deviation of isotropic Gaussian
    noise added to every point, default per kind in :data:`TOY_KINDS`):

    - ``"blobs"``: one Gaussian blob per class, centres on a circle of radius 2.5 (for two
      classes at ``±(1.77, 1.77)``, 5 apart); with the default ``noise=1.0`` two classes
      are linearly separable up to about 0.6 % of the points.
    - ``"moons"``: two interleaved half circles (as in scikit-learn's ``make_moons``).
    - ``"circles"``: two concentric circles, radii 1 and 0.5.
    - ``"spiral"``: ``n_classes`` interleaved spiral arms out to radius 1.
    - ``"xor"``: four blobs at ``(±1, ±1)``; class 1 where the coordinates' signs differ.

    ``"blobs"`` and ``"spiral"`` take any ``n_classes >= 2``, the others exactly 2. Classes
    are as equal in size as ``n_samples`` allows (the first ``n_samples % n_classes``
    classes get one more), and the rows are shuffled.

    Parameters
    ----------
    n_samples:
        Total number of points, at least ``n_classes``.
    kind:
        One of ``"blobs"``, ``"moons"``, ``"circles"``, ``"spiral"``, ``"xor"``.
    noise:
        Standard deviation of the added Gaussian noise (>= 0); ``None`` for the kind's
        default.
    n_classes:
        Number of classes.
    seed:
        ``None``, int, SeedSequence or Generator; the same seed gives the same data.

    Returns
    -------
    Dataset
        ``x`` float64 ``(n_samples, 2)``, ``y`` int64, ``name == "toy-<kind>"``.
    """
    if not isinstance(kind, str) or kind not in TOY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, TOY_KINDS))}; got {kind!r}")
    n_classes = _check_int(n_classes, "n_classes", 2)
    if n_classes != 2 and kind not in _MULTICLASS_KINDS:
        raise ValueError(f"n_classes must be 2 for kind={kind!r}; got {n_classes}")
    n_samples = _check_int(n_samples, "n_samples", n_classes)
    if noise is None:
        noise = TOY_KINDS[kind]
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, numbers.Real):
        raise TypeError(f"noise must be a real number or None; got {type(noise).__name__}")
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0; got {noise}")
    rng = _as_rng(seed)

    sizes = [n_samples // n_classes + (k < n_samples % n_classes) for k in range(n_classes)]
    parts = []
    if kind == "blobs":
        for k, m in enumerate(sizes):
            angle = math.pi / 4 + 2 * math.pi * k / n_classes
            parts.append(np.tile([2.5 * math.cos(angle), 2.5 * math.sin(angle)], (m, 1)))
    elif kind == "moons":
        t0 = np.linspace(0.0, math.pi, sizes[0])
        t1 = np.linspace(0.0, math.pi, sizes[1])
        parts.append(np.column_stack([np.cos(t0), np.sin(t0)]))
        parts.append(np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)]))
    elif kind == "circles":
        for k, radius in enumerate((1.0, 0.5)):
            t = np.linspace(0.0, 2 * math.pi, sizes[k], endpoint=False)
            parts.append(radius * np.column_stack([np.cos(t), np.sin(t)]))
    elif kind == "spiral":
        for k, m in enumerate(sizes):
            r = np.linspace(0.1, 1.0, m)
            t = 2 * math.pi * k / n_classes + 1.5 * math.pi * r
            parts.append(np.column_stack([r * np.cos(t), r * np.sin(t)]))
    else:  # xor
        for k, m in enumerate(sizes):
            corners = [(1.0, 1.0), (-1.0, -1.0)] if k == 0 else [(1.0, -1.0), (-1.0, 1.0)]
            half = m // 2
            parts.append(np.vstack([np.tile(corners[0], (half, 1)), np.tile(corners[1], (m - half, 1))]))
    x = np.vstack(parts).astype(np.float64)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), sizes)
    x += rng.normal(0.0, noise, size=x.shape) if noise > 0 else 0.0
    order = rng.permutation(n_samples)
    return Dataset(
        x=np.ascontiguousarray(x[order]),
        y=y[order],
        class_names=tuple(str(k) for k in range(n_classes)),
        name=f"toy-{kind}",
        description=(
            f"Synthetic 2-D '{kind}' data from varprop.datasets.make_toy_2d: {n_samples} points, "
            f"{n_classes} classes, Gaussian noise std {noise:g}."
        ),
        feature_names=("x0", "x1"),
    )


# --------------------------------------------------------------------------------------
# Splitting and scaling
# --------------------------------------------------------------------------------------


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` test samples over classes in proportion to ``counts``.

    Largest-remainder rounding in exact integer arithmetic, with every class keeping at
    least one sample on each side (``1 <= t_k <= counts_k - 1``); ties go to the lower
    class index. Feasible whenever ``len(counts) <= total <= counts.sum() - len(counts)``.
    """
    n = int(counts.sum())
    scaled = total * counts  # quota_k = scaled_k / n, kept exact as integers
    alloc = np.clip(scaled // n, 1, counts - 1)
    diff = total - int(alloc.sum())
    while diff:
        remainder = scaled - alloc * n  # (quota - alloc) * n
        if diff > 0:
            cand = np.flatnonzero(alloc < counts - 1)
            k = cand[np.argmax(remainder[cand])]
            alloc[k] += 1
            diff -= 1
        else:
            cand = np.flatnonzero(alloc > 1)
            k = cand[np.argmin(remainder[cand])]
            alloc[k] -= 1
            diff += 1
    return alloc


def train_test_split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float = 0.2,
    seed: SeedLike = None,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split samples into a training and a test set, seeded and (by default) stratified.

    The test set gets ``ceil(test_size * n_samples)`` samples. With ``stratify=True`` each
    class contributes in proportion to its size (largest-remainder rounding, so per-class
    counts are within one of exact proportion and sum to the total), and every class keeps
    at least one sample in each set. Within a class the samples are chosen at random, and
    each output set is shuffled. The same seed and inputs give the same split.

    Parameters
    ----------
    x:
        Samples along axis 0, shape ``(n_samples, ...)``.
    y:
        Labels, shape ``(n_samples,)``; any values ``numpy.unique`` can sort.
    test_size:
        Fraction of the samples for the test set, strictly between 0 and 1.
    seed:
        ``None``, int, SeedSequence or Generator.
    stratify:
        Keep class proportions in both sets (default) or split without regard to labels.

    Returns
    -------
    (x_train, x_test, y_train, y_test)
        New arrays (rows of the inputs, dtypes kept).

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in length, ``y`` is not 1-D, ``test_size`` is not in
        (0, 1) or leaves either set empty, or (stratified) a class has fewer than 2 samples
        or there are more classes than samples in the smaller set.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1:
        raise ValueError("x must have samples along axis 0; got a 0-d array")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D labels of shape (n_samples,); got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of samples; got x with {len(x)} and y with {len(y)}"
        )
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a float in (0, 1); got {type(test_size).__name__}")
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be strictly between 0 and 1; got {test_size}")
    if not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be a bool; got {type(stratify).__name__}")
    n = len(y)
    n_test = math.ceil(round(float(test_size) * n, 9))
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(
            f"test_size={test_size} with {n} samples leaves an empty "
            f"{'test' if n_test < 1 else 'training'} set"
        )
    rng = _as_rng(seed)
    if not stratify:
        order = rng.permutation(n)
        test_idx, train_idx = order[:n_test], order[n_test:]
    else:
        classes, inverse = np.unique(y, return_inverse=True)
        counts = np.bincount(inverse).astype(np.int64)
        if counts.min() < 2:
            worst = int(np.argmin(counts))
            raise ValueError(
                f"y: stratify=True needs at least 2 samples of every class; class "
                f"{classes[worst].tolist()!r} has {int(counts[worst])}"
            )
        k = len(classes)
        if n_test < k or n_train < k:
            raise ValueError(
                f"test_size={test_size}: a stratified split of {n} samples in {k} classes needs "
                f"at least {k} samples in each set; it would give {n_train} training and "
                f"{n_test} test samples"
            )
        per_class = _apportion(counts, n_test)
        test_parts, train_parts = [], []
        for c in range(k):
            members = rng.permutation(np.flatnonzero(inverse == c))
            test_parts.append(members[: per_class[c]])
            train_parts.append(members[per_class[c]:])
        test_idx = rng.permutation(np.concatenate(test_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]


def _as_2d_numeric(value: object, argname: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{argname} must be a real numeric array; got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{argname} must be 2-D (n_samples, n_features); got shape {a.shape}")
    return a


def standardize(
    x_train: np.ndarray, x_test: Optional[np.ndarray] = None
) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Centre and scale features to zero mean and unit variance using training data only.

    Each column is transformed as ``(x - mean) / std`` with the mean and (population,
    ``ddof=0``) standard deviation of ``x_train``; ``x_test`` gets the same transform.
    Columns that are constant in ``x_train`` (common in the digits, whose border pixels
    are always 0) are centred but not scaled (``std`` is reported as 1 for them), so
    nothing is divided by zero and they stay exactly 0 on the training data. NaN
    propagates as IEEE arithmetic says.

    Parameters
    ----------
    x_train:
        Training features, ``(n_train, n_features)``, at least one row.
    x_test:
        Optional further features ``(n_test, n_features)`` to transform with the training
        statistics.

    Returns
    -------
    (x_train_std, x_test_std, mean, std)
        Transformed arrays (float32 if the input was float32, else float64;
        ``x_test_std`` is ``None`` if ``x_test`` was) and the float64 per-column ``mean``
        and divisor ``std`` used, so that ``(x_new - mean) / std`` transforms new data the
        same way.
    """
    xt = _as_2d_numeric(x_train, "x_train")
    if xt.shape[0] < 1:
        raise ValueError("x_train must have at least one sample; got 0 rows")
    x64 = xt.astype(np.float64)
    constant = x64.max(axis=0) == x64.min(axis=0)
    mean = np.where(constant, x64[0], x64.mean(axis=0))
    std = np.where(constant, 1.0, x64.std(axis=0))

    def transform(a: np.ndarray) -> np.ndarray:
        out_dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        return ((a.astype(np.float64) - mean) / std).astype(out_dtype, copy=False)

    x_test_std = None
    if x_test is not None:
        xs = _as_2d_numeric(x_test, "x_test")
        if xs.shape[1] != xt.shape[1]:
            raise ValueError(
                f"x_test must have the {xt.shape[1]} features of x_train; got {xs.shape[1]}"
            )
        x_test_std = transform(xs)
    return transform(xt), x_test_std, mean, std
