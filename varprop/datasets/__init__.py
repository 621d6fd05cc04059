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


from ._shipped import Dataset, load_digits, load_iris
from .idx import IDX_DTYPES, load_idx, load_mnist, save_idx
from .split import standardize, train_test_split
from .toy import TOY_KINDS, make_toy_2d

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
