"""The thread count of the kernels: one helper resolves every ``n_threads`` argument.

Two limits apply to every count, whoever asks for it:

* at most :data:`MAX_THREADS` (a larger count is a ``ValueError`` naming the argument:
  OpenMP would try to allocate a stack for each thread and end the process);
* one thread in a process forked from one that ran the kernels: GNU OpenMP's thread
  pool does not survive ``fork()`` and a parallel region in the child waits forever for
  the parent's threads. The child runs every kernel on one thread instead (results are
  bitwise the same for any thread count, so only the speed changes). Processes started
  with ``spawn`` or ``forkserver`` are not affected.
"""

from __future__ import annotations

import os

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

try:
    from . import _kernels
except ImportError:  # no compiled extension: one thread by default; varprop.kernels raises
    from types import SimpleNamespace  # ExtensionMissingError when a kernel is called

    _kernels = SimpleNamespace(openmp_max_threads=lambda: 1)
from ._validate import positive_int

#: The largest thread count accepted (far above any machine's cores; OpenMP allocates a
#: stack per thread, so 10**9 threads would end the process).
MAX_THREADS = 1024

_default_threads: int | None = None
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _thread_count(name: str, n: object) -> int:
    n = positive_int(name, n)
    if n > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS}; got {n}")
    return n


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads the kernels use when ``n_threads`` is None.

    Args:
        n: a positive integer. Results do not depend on it (bitwise), only the speed.
    """
    global _default_threads
    _default_threads = _thread_count("n", n)


def get_num_threads() -> int:
    """The thread count used when ``n_threads`` is None: the value of
    :func:`set_num_threads`, else OpenMP's default (``OMP_NUM_THREADS`` or all cores),
    at most :data:`MAX_THREADS`; 1 in a forked child process (module doc)."""
    if _forked:
        return 1
    if _default_threads is not None:
        return _default_threads
    return min(MAX_THREADS, max(1, _kernels.openmp_max_threads()))


def resolve_n_threads(n_threads: int | None) -> int:
    """None -> :func:`get_num_threads`; a positive int up to :data:`MAX_THREADS` as is
    (1 in a forked child, module doc); anything else rejected, naming ``n_threads``."""
    if n_threads is None:
        return get_num_threads()
    n = _thread_count("n_threads", n_threads)
    return 1 if _forked else n


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
