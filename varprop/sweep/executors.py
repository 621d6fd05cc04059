"""Where a sweep's cells run: in this process, in local worker processes, or on a Dask
cluster; and the on-disk cache that lets an interrupted sweep resume.

Each cell is a pure task (:func:`varprop.sweep.cell.compute_cell`) keyed by
:func:`~varprop.sweep.cell.cell_key`, so the executors differ only in where and in which
order the cells run, never in the numbers (docs/sweep.md, "Executors"):

* ``serial``: one after the other in this process;
* ``local`` (the default): a :class:`concurrent.futures.ProcessPoolExecutor` on all cores
  with a ``spawn`` context (see :func:`_context` for why not ``forkserver`` or
  ``fork``) -- each worker's kernel and BLAS
  threads held to 1, so ``workers`` processes use ``workers`` cores, not workers^2. A
  worker that dies breaks the pool (BrokenProcessPool): the finished cells are kept, the
  unfinished ones resubmitted on a fresh pool, at most ``retries`` times;
* ``dask``: an existing ``dask.distributed`` scheduler (``tcp://HOST:PORT``) or Client;
  each cell is submitted with its key and ``retries=``, and the scheduler reschedules the
  cell of a worker that dies.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

from .cell import Cell, cell_key, compute_cell

__all__ = ["Cache", "run_cells", "EXECUTORS"]

#: Executor names :func:`varprop.sweep.run` accepts (besides a dask Client object).
EXECUTORS = ("local", "serial", "dask")


class Cache:
    """Finished cells on disk: ``DIR/KEY.json``, one file per cell, each written to a
    temporary file in ``DIR`` and renamed over its name (``os.replace``), so a file is
    either whole or absent even when the sweep is killed mid-write."""

    def __init__(self, directory: "str | os.PathLike[str] | None") -> None:
        self.dir = None if directory is None else Path(directory).expanduser()
        if self.dir is not None:
            if self.dir.exists() and not self.dir.is_dir():
                raise ValueError(f"cache_dir {str(self.dir)!r} exists and is not a directory")
            self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached result of ``key``, or None (absent, or unreadable: recomputed)."""
        if self.dir is None:
            return None
        path = self.dir / f"{key}.json"
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("key") == key else None

    def put(self, key: str, result: dict[str, Any]) -> None:
        if self.dir is None:
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(result, fh, allow_nan=False)
            os.replace(tmp, self.dir / f"{key}.json")
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _worker_init() -> None:
    """Hold a local worker's kernels and BLAS to one thread (no oversubscription)."""
    from .._threads import set_num_threads

    set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl is a dependency
        pass


def _dask_task(cell: Cell) -> dict[str, Any]:
    _worker_init()
    return compute_cell(cell)


def _context() -> Any:
    """``spawn``: each worker starts with this process's ``sys.path`` (multiprocessing's
    spawn preparation), so it imports the very varprop this process runs. Not
    ``forkserver``: its server starts as ``python -c`` with the current directory first
    on its path (Python 3.11 ignores the parent's path there), so run from a source
    checkout it imports the uncompiled source tree instead of the installed package. Not
    ``fork``: the children would inherit a half-copied OpenMP pool (varprop/_threads.py).
    """
    import multiprocessing

    return multiprocessing.get_context("spawn")


def run_cells(cells: Sequence[Cell], *, executor: Any = "local", workers: int | None = None,
              scheduler: str | None = None, cache: Cache, retries: int = 3,
              on_done: Callable[[Cell, bool], None] | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Compute (or read from ``cache``) every cell; return ``{key: result}`` and counts
    ``{"cached", "computed", "restarts"}``. ``on_done(cell, cached)`` after each cell."""
    results: dict[str, Any] = {}
    todo: list[tuple[str, Cell]] = []
    seen = set()
    stats = {"cached": 0, "computed": 0, "restarts": 0}
    for cell in cells:
        key = cell_key(cell)
        if key in seen:
            continue
        seen.add(key)
        hit = cache.get(key)
        if hit is not None:
            results[key] = hit
            stats["cached"] += 1
            if on_done:
                on_done(cell, True)
        else:
            todo.append((key, cell))
    # the largest cells first: the pool's last cells are then the short ones
    todo.sort(key=lambda kc: -(kc[1].width ** 2 * kc[1].depth * (kc[1].steps + 1)))

    def finish(key: str, cell: Cell, result: dict[str, Any]) -> None:
        cache.put(key, result)
        results[key] = result
        stats["computed"] += 1
        if on_done:
            on_done(cell, False)

    if executor == "serial":
        for key, cell in todo:
            finish(key, cell, compute_cell(cell))
    elif executor == "local":
        stats["restarts"] = _run_local(todo, workers, retries, finish)
    else:
        _run_dask(todo, executor, scheduler, retries, finish)
    return results, stats


def _run_local(todo: list[tuple[str, Cell]], workers: int | None, retries: int,
               finish: Callable[[str, Cell, dict[str, Any]], None]) -> int:
    if not todo:
        return 0
    n = workers or os.cpu_count() or 1
    pending = list(todo)
    restarts = 0
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(n, len(pending)), mp_context=_context(),
                                   initializer=_worker_init)
        broken = False
        try:
            futures = {pool.submit(compute_cell, cell): (key, cell) for key, cell in pending}
            left = set(futures)
            while left:
                done, left = wait(left, return_when=FIRST_COMPLETED)
                for f in done:
                    key, cell = futures[f]
                    try:
                        result = f.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    finish(key, cell, result)
                    pending.remove((key, cell))
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)
        if broken:
            restarts += 1
            if restarts > retries:
                raise RuntimeError(
                    f"a local worker died {restarts} times (retries={retries}); "
                    f"{len(pending)} cells unfinished, the first "
                    f"{pending[0][1].config()}; the finished cells are cached")
    return restarts


def _run_dask(todo: list[tuple[str, Cell]], executor: Any, scheduler: str | None,
              retries: int, finish: Callable[[str, Cell, dict[str, Any]], None]) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError as exc:
        raise ImportError("the dask executor needs dask.distributed: "
                          "pip install 'varprop[dask]'") from exc
    own = not isinstance(executor, Client)
    if own and not scheduler:
        raise ValueError("scheduler: the dask executor needs a scheduler address "
                         "(tcp://HOST:PORT) or a dask.distributed.Client as executor")
    client = Client(scheduler) if own else executor
    try:
        if not todo:
            return
        futures = {}
        for key, cell in todo:
            # the key names the task on the cluster: the same cell is one task
            f = client.submit(_dask_task, cell, key=f"varprop-cell-{key}", pure=True,
                              retries=retries)
            futures[f] = (key, cell)
        for f in as_completed(list(futures)):
            key, cell = futures[f]
            finish(key, cell, f.result())
            f.release()
    finally:
        if own:
            client.close()

