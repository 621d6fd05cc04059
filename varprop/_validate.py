"""The argument checks of every public function, and the one seed normalizer.

One vocabulary, one message format. Every check takes the argument's ``name`` first
and its ``value`` second, returns the value normalized (a Python ``int`` or ``float``,
a ``numpy.dtype``, ...) and raises

* ``TypeError`` when the value has the wrong type:
  ``"{name} must be {what}; got {value!r} ({type})"``;
* ``ValueError`` when the type is right but the value is not, naming the condition
  it broke: ``"batch must be >= 2; got 1"``, ``"stddev must be finite; got nan"``,
  ``"momentum must be in [0, 1); got 1.0"``, ``"depth must be a positive integer; got 0"``.

``owner="measure"`` prefixes the message with ``"measure: "``; ``or_none=True`` lets
None through (returned as None) and says "or None" in the message.

What is accepted, everywhere:

* integers: ``int`` and numpy integers (anything :class:`numbers.Integral`); ``bool``
  and ``numpy.bool_`` are refused (``True`` is not a width);
* real numbers: ``int``, ``float``, numpy integers and floats, ``fractions.Fraction``
  (anything :class:`numbers.Real`), bools refused, strings never parsed;
* seeds (:data:`SeedLike`): None, a non-negative integer, a
  :class:`numpy.random.SeedSequence`, a BitGenerator or a Generator.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

__all__ = [
    "SeedLike", "MIN_BATCH", "type_name", "integer", "positive_int", "non_negative_int",
    "variance_batch", "finite_real", "real_in_range", "probability", "correlation", "boolean",
    "one_of", "close_matches", "float_dtype", "shape_tuple", "as_generator", "seed_key",
    "seed_list", "checked", "per_layer",
]

SeedLike = Union[None, int, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator]
"""What ``seed`` accepts: None (fresh OS entropy), a non-negative int, a SeedSequence, a
BitGenerator or a Generator (used as it is, so its state advances)."""

MIN_BATCH = 2
"""The smallest batch a variance estimate can use (two samples)."""


def type_name(value: object) -> str:
    return type(value).__name__


def _where(owner: str) -> str:
    return f"{owner}: " if owner else ""


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def _wrong_type(name: str, what: str, value: object, owner: str) -> TypeError:
    return TypeError(f"{_where(owner)}{name} must be {what}; got {value!r} ({type_name(value)})")


def _note(note: str) -> str:
    return f" ({note})" if note else ""


# --------------------------------------------------------------------------- integers
def integer(name: str, value: Any, *, minimum: int | None = None, or_none: bool = False,
            owner: str = "", note: str = "") -> int | None:
    """``value`` as an int (bools refused), optionally ``>= minimum``.

    Messages: ``"n must be a positive integer; got 0"`` (minimum 1), ``"... a
    non-negative integer"`` (minimum 0), ``"batch must be >= 2; got 1"`` (others);
    ``note`` is appended to the ValueError in parentheses.
    """
    if value is None and or_none:
        return None
    if minimum is None:
        what = "an integer"
    else:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer >= {minimum}")
    if or_none:
        what += " or None"
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise _wrong_type(name, what, value, owner)
    n = int(value)
    if minimum is not None and n < minimum:
        bound = what if minimum in (0, 1) else f">= {minimum}"
        raise ValueError(f"{_where(owner)}{name} must be {bound}; got {n}{_note(note)}")
    return n


def positive_int(name: str, value: Any, *, or_none: bool = False, owner: str = "") -> int | None:
    """``value`` as an int >= 1 (bools refused)."""
    return integer(name, value, minimum=1, or_none=or_none, owner=owner)


def non_negative_int(name: str, value: Any, *, or_none: bool = False,
                     owner: str = "") -> int | None:
    """``value`` as an int >= 0 (bools refused)."""
    return integer(name, value, minimum=0, or_none=or_none, owner=owner)


def variance_batch(name: str, value: Any, *, or_none: bool = False,
                   owner: str = "") -> int | None:
    """A batch a variance is estimated over: an int >= 2 (or None with ``or_none``)."""
    return integer(name, value, minimum=MIN_BATCH, or_none=or_none, owner=owner,
                   note="a variance needs two samples")


# --------------------------------------------------------------------------- reals
def _real(name: str, value: Any, what: str, owner: str) -> float:
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise _wrong_type(name, what, value, owner)
    try:
        return float(value)
    except OverflowError:  # an int (or Fraction) beyond float64: as good as infinite
        return math.inf if value > 0 else -math.inf


def _short(value: Any) -> str:
    """repr of a value, cut to 40 characters (an int of 400 digits is not a message)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def finite_real(name: str, value: Any, *, positive: bool = False, non_negative: bool = False,
                or_none: bool = False, owner: str = "") -> float | None:
    """``value`` as a finite float (NaN and +-inf refused), optionally > 0 or >= 0."""
    if value is None and or_none:
        return None
    x = _real(name, value, "a real number or None" if or_none else "a real number", owner)
    if not math.isfinite(x):
        raise ValueError(f"{_where(owner)}{name} must be finite; got {_short(value)}")
    if positive and not x > 0.0:
        raise ValueError(f"{_where(owner)}{name} must be > 0; got {value!r}")
    if non_negative and not x >= 0.0:
        raise ValueError(f"{_where(owner)}{name} must be >= 0; got {value!r}")
    return x


def real_in_range(name: str, value: Any, low: float, high: float, *, closed_low: bool = True,
                  closed_high: bool = True, owner: str = "") -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (closed ends by
    default); NaN is outside every interval. Message: ``"momentum must be in [0, 1); got 1.0"``."""
    interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
    x = _real(name, value, f"a real number in {interval}", owner)
    inside_low = x >= low if closed_low else x > low
    inside_high = x <= high if closed_high else x < high
    if not (inside_low and inside_high):
        raise ValueError(f"{_where(owner)}{name} must be in {interval}; got {value!r}")
    return x


def probability(name: str, value: Any, *, owner: str = "") -> float:
    """A float in [0, 1]."""
    return real_in_range(name, value, 0.0, 1.0, owner=owner)


def correlation(name: str, value: Any, *, owner: str = "") -> float:
    """A correlation coefficient: a float in [-1, 1]."""
    return real_in_range(name, value, -1.0, 1.0, owner=owner)


# --------------------------------------------------------------------------- the rest
def boolean(name: str, value: Any, *, or_none: bool = False, owner: str = "") -> bool | None:
    """``value`` if it is ``True`` or ``False`` (or ``numpy.bool_``); ints are refused."""
    if value is None and or_none:
        return None
    if not _is_bool(value):
        raise _wrong_type(name, "True, False or None" if or_none else "True or False", value, owner)
    return bool(value)


def close_matches(word: str, choices: Sequence[str], *, n: int = 3,
                  ignore_case: bool = False) -> list[str]:
    """The entries of ``choices`` close to ``word`` (:func:`difflib.get_close_matches`,
    cutoff 0.6), best first; with ``ignore_case`` compared in lower case and returned
    as spelled in ``choices``."""
    if not ignore_case:
        return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    hits = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=n, cutoff=0.6)
    return [next(c for c in choices if c.lower() == h) for h in hits]


def one_of(name: str, value: Any, choices: Sequence[str], *, owner: str = "") -> str:
    """``value`` if it is one of the strings ``choices``; the ValueError lists them and
    suggests the close ones (``"did you mean 'fan_in'?"``)."""
    what = f"one of {', '.join(map(repr, choices))}"
    if not isinstance(value, str):
        raise _wrong_type(name, what, value, owner)
    if value not in choices:
        close = close_matches(value, choices)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"{_where(owner)}{name} must be {what}; got {value!r}{hint}")
    return value


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(name: str, value: Any, *, kernels: bool = False, owner: str = "") -> np.dtype:
    """``value`` as a real floating numpy dtype (TypeError otherwise: ints, bools and
    complex are refused); with ``kernels=True`` only float32 or float64, the two dtypes
    the compiled kernels run in."""
    what = "float32 or float64" if kernels else "a real floating dtype (float16, float32, float64)"
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        raise _wrong_type(name, what, value, owner) from None
    if (dt not in _KERNEL_DTYPES) if kernels else not np.issubdtype(dt, np.floating):
        raise TypeError(f"{_where(owner)}{name} must be {what}; got {dt.name}")
    return dt


def shape_tuple(name: str, value: Any) -> tuple[int, ...]:
    """``value`` (one int or a sequence of ints, numpy ints included) as a tuple of
    non-negative Python ints. Floats such as 3.0, bools and strings are refused: a shape
    is never guessed."""
    if type(value) is tuple and all(type(d) is int and d >= 0 for d in value):
        return value  # fast path: already a tuple of non-negative Python ints
    if isinstance(value, numbers.Integral) and not _is_bool(value):
        dims: Sequence[Any] = (value,)
    elif isinstance(value, np.ndarray) and value.ndim == 1:
        dims = list(value)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        dims = value
    else:
        raise _wrong_type(name, "an int or a sequence of ints", value, "")
    out = []
    for i, d in enumerate(dims):
        if _is_bool(d) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{name} must hold integers; got {d!r} ({type_name(d)}) "
                            f"at position {i} of {value!r}")
        if d < 0:
            raise ValueError(f"{name} must hold non-negative integers; got {int(d)} "
                             f"at position {i} of {value!r}")
        out.append(int(d))
    return tuple(out)


def per_layer(name: str, value: Any, n: int) -> list[Any]:
    """``value`` once per layer (``n`` copies), or a list or tuple of ``n`` per-layer
    values as a list. Message: ``"init must be one value or a list of 3 (one per layer);
    got 2"``."""
    if not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{name} must be one value or a list of {n} (one per layer); "
                         f"got {len(value)}")
    return list(value)


# --------------------------------------------------------------------------- seeds
_SEED_WHAT = ("None, a non-negative int, a numpy.random.SeedSequence, a BitGenerator or a "
              "numpy.random.Generator")


def as_generator(seed: SeedLike = None, *, name: str = "seed",
                 owner: str = "") -> np.random.Generator:
    """Normalize ``seed`` with :func:`numpy.random.default_rng`, the one place seeds
    become random streams.

    A Generator is returned unaltered (its state advances as it draws); None, an int,
    a SeedSequence or a BitGenerator make a new PCG64-based Generator, so the same int
    gives the same arrays on every machine and thread count.

    Raises:
        TypeError: anything else (bools, floats, strings, lists, legacy RandomState).
        ValueError: a negative int.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if _is_bool(seed) or not (seed is None or isinstance(
            seed, (numbers.Integral, np.random.SeedSequence, np.random.BitGenerator))):
        raise _wrong_type(name, _SEED_WHAT, seed, owner)
    if isinstance(seed, numbers.Integral) and seed < 0:
        raise ValueError(f"{_where(owner)}{name} must be {_SEED_WHAT}; got {seed!r}")
    return np.random.default_rng(seed)


def seed_key(seed: Any) -> Any:
    """A hashable identity of a reproducible seed (an int or a SeedSequence: the same key
    gives the same stream from :func:`as_generator`), None for one that is not (fresh
    entropy, a Generator whose state moves)."""
    if isinstance(seed, numbers.Integral) and not _is_bool(seed):
        return ("int", int(seed))
    if isinstance(seed, np.random.SeedSequence):
        entropy = seed.entropy
        entropy = tuple(entropy) if isinstance(entropy, (list, tuple)) else entropy
        return ("ss", entropy, tuple(seed.spawn_key), seed.pool_size, seed.n_children_spawned)
    return None


def seed_list(name: str, value: Any, *, int_is_count: bool, unique: bool = False,
              owner: str = "") -> list[int]:
    """Base seeds: a non-empty sequence of non-negative ints, as a list.

    A single int is the number of seeds ``0 .. n-1`` with ``int_is_count`` (then it
    must be >= 1), else the one seed itself. ``unique`` refuses repeats (repeated draws
    would fake the confidence intervals, which come from the spread between seeds).
    """
    what = "a count >= 1 or a sequence of ints" if int_is_count else "an int or a sequence of ints"
    if isinstance(value, numbers.Integral) and not _is_bool(value):
        if not int_is_count:
            value = (value,)
        elif value < 1:
            raise ValueError(f"{_where(owner)}{name} must be >= 1 (the number of draws); "
                             f"got {value}")
        else:
            return list(range(int(value)))
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise _wrong_type(name, what, value, owner)
    out = [integer(f"{name}[{i}]", s, minimum=0, owner=owner) for i, s in enumerate(value)]
    if not out:
        raise ValueError(f"{_where(owner)}{name} is empty; give at least one seed")
    if unique and len(set(out)) != len(out):
        raise ValueError(f"{_where(owner)}{name} repeat ({out}): repeated draws would fake the "
                         "confidence intervals")
    return out


def checked(check: Callable[..., Any], error: type[Exception], *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)`` with its TypeError or ValueError re-raised as ``error``
    (same message): how the command line turns a check into a usage error."""
    try:
        return check(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise error(str(exc)) from None
