"""The report's forked figure workers stop when the report ends (issue 13: a report that
hung about once in a dozen runs, in ``FigureWorker.close``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("matplotlib")

# A parent that turns SIGTERM into an exception, as the ``varprop`` command does, and a
# worker task that swallows every exception, as code deep in a figure render may. The
# pool stops workers with SIGTERM; were the inherited handler kept, this worker would
# swallow it and wait for a task on the lock the terminating parent holds: close() would
# never return.
_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from varprop.reporting.figures import FigureWorker

    class Terminated(BaseException):
        pass

    def on_sigterm(signum, frame):
        raise Terminated()

    def swallow_everything(flag):
        open(flag, "w").close()
        while True:
            try:
                time.sleep(0.05)
            except BaseException:
                pass

    def report_signals():
        return (signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
                signal.getsignal(signal.SIGINT) == signal.SIG_IGN)

    signal.signal(signal.SIGTERM, on_sigterm)
    worker = FigureWorker(processes=2)
    if worker._pool is None:
        print("no-pool")
        sys.exit(0)
    print(worker._pool.apply(report_signals))
    flag = sys.argv[1]
    worker._pool.apply_async(swallow_everything, (flag,))
    while not os.path.exists(flag):
        time.sleep(0.01)
    worker.close()
    print("closed")
""")


def test_close_stops_workers_that_swallow_exceptions(tmp_path):
    try:
        done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "started")],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("FigureWorker.close() hung on a worker that caught SIGTERM's exception")
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "no-pool":
        pytest.skip("no fork or a single core: the figures are drawn in the parent")
    assert done.stdout.split() == ["(True,", "True)", "closed"], done.stdout
