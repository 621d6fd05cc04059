"""The Dataset type and the shipped Iris and digits tables."""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from typing import Optional

import numpy as np

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
    package = "varprop"  # the data live in varprop/data, beside this subpackage
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
