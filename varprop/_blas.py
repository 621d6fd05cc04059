"""Hold the BLAS libraries to one thread while the OpenMP kernels run.

The kernels call BLAS from inside their own OpenMP threads. A multithreaded BLAS would
start a second, spinning thread pool on the same cores, which makes calls 3 to 100 times
slower on a small machine; so while any kernel runs, every BLAS that threadpoolctl finds
(numpy's and scipy's OpenBLAS, MKL, ...) is set to one thread, and restored afterwards.

The limit is reference-counted under a lock: concurrent kernel calls from several Python
threads share one limit, and the last one out restores the saved thread counts. While a
kernel runs, a numpy matmul in another Python thread of the same process is single-
threaded too.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[object, int]] = []
_blas_controllers: list[object] | None = None


def _controllers() -> list[object]:
    global _blas_controllers
    if _blas_controllers is None:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController()
            _blas_controllers = [lc for lc in ctl.lib_controllers if lc.user_api == "blas"]
        except Exception:  # noqa: BLE001 - no threadpoolctl view: nothing to limit
            _blas_controllers = []
    return _blas_controllers


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Context in which every BLAS library of the process runs on one thread."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved.clear()
            for lc in _controllers():
                n = lc.get_num_threads()
                if n is not None and n != 1:
                    _saved.append((lc, n))
                    lc.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lc, n in _saved:
                    lc.set_num_threads(n)
                _saved.clear()
