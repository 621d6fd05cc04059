"""The thread count of the kernels: one helper resolves every ``n_threads`` argument."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

try:
    from . import _kernels
except ImportError:  # no compiled extension: one thread by default; varprop.kernels raises
    from types import SimpleNamespace  # ExtensionMissingError when a kernel is called

    _kernels = SimpleNamespace(openmp_max_threads=lambda: 1)
from ._validate import positive_int

_default_threads: int | None = None


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads the kernels use when ``n_threads`` is None.

    Args:
        n: a positive integer. Results do not depend on it (bitwise), only the speed.
    """
    global _default_threads
    _default_threads = positive_int("n", n)


def get_num_threads() -> int:
    """The thread count used when ``n_threads`` is None: the value of
    :func:`set_num_threads`, else OpenMP's default (``OMP_NUM_THREADS`` or all cores)."""
    if _default_threads is not None:
        return _default_threads
    return max(1, _kernels.openmp_max_threads())


def resolve_n_threads(n_threads: int | None) -> int:
    """None -> :func:`get_num_threads`; a positive int as is; anything else rejected."""
    if n_threads is None:
        return get_num_threads()
    return positive_int("n_threads", n_threads, or_none=True)


def run_side_by_side(fn: Callable[[int], object], n: int, workers: int, name: str) -> None:
    """``fn(0)``, ..., ``fn(n - 1)`` on ``workers`` Python threads (in turn when 1).

    The calls' results are written by ``fn`` itself (to slots fixed by the index), so the
    outcome cannot depend on which thread ran which call. A call's exception is raised
    here; after an error or Ctrl-C no further call starts (those running finish)."""
    if workers <= 1:
        for i in range(n):
            fn(i)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        futures = [pool.submit(fn, i) for i in range(n)]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
