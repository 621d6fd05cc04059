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
_saved: list[tuple["_ThreadKnob", int]] = []
_knobs: list["_ThreadKnob"] | None = None


class _ThreadKnob:
    """get/set of one BLAS library's thread count.

    threadpoolctl lets only its first "controlling" thread limit a pthreads OpenBLAS and
    silently ignores the others; our kernels are called from any Python thread, so for
    OpenBLAS the library's own (process-wide) setter is called directly.
    """

    def __init__(self, controller: object) -> None:
        self.get = controller.get_num_threads
        self.set = controller.set_num_threads
        if (getattr(controller, "internal_api", "") == "openblas"
                and getattr(controller, "threading_layer", "") != "openmp"):
            lib = controller.dynlib
            for prefix in ("", "scipy_"):
                for suffix in ("", "64_", "_64"):
                    name = f"{prefix}openblas_set_num_threads{suffix}"
                    getter = f"{prefix}openblas_get_num_threads{suffix}"
                    if hasattr(lib, name) and hasattr(lib, getter):
                        self.set = getattr(lib, name)
                        self.get = getattr(lib, getter)
                        return


def _controllers() -> list[_ThreadKnob]:
    global _knobs
    if _knobs is None:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController()
            _knobs = [_ThreadKnob(lc) for lc in ctl.lib_controllers if lc.user_api == "blas"]
        except Exception:  # noqa: BLE001 - no threadpoolctl view: nothing to limit
            _knobs = []
    return _knobs


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Context in which every BLAS library of the process runs on one thread."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved.clear()
            for knob in _controllers():
                n = knob.get()
                if n is not None and n != 1:
                    _saved.append((knob, n))
                    knob.set(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for knob, n in _saved:
                    knob.set(n)
                _saved.clear()
