"""varprop.sweep executors: local processes and a Dask LocalCluster give the serial
run's numbers bitwise; a worker that dies mid-sweep loses only its cell, which is
retried; an interrupted sweep resumes from its cache."""

import pytest

from varprop import sweep
from varprop.sweep import Cell

# small cells: the executors are under test here, not the physics
SMALL = sweep.Grid(widths=(16, 32, 64), seeds=(0, 1), steps=2, batch=8,
                   parameterizations=("sp", "mup"))


@pytest.fixture(scope="module")
def serial():
    return sweep.run(SMALL, executor="serial")


def test_local_processes_equal_serial_bitwise(serial, tmp_path):
    local = sweep.run(SMALL, executor="local", workers=2, cache_dir=tmp_path)
    assert local.cells == serial.cells  # float ==: bitwise
    assert local.to_dict()["series"] == serial.to_dict()["series"]
    assert local.stats["computed"] == 12 and local.stats["restarts"] == 0


def test_local_workers_import_the_callers_varprop(serial, tmp_path, monkeypatch):
    """Run from a directory that holds another ``varprop`` package (a source checkout
    without its compiled extension, as in CI), the workers still import the caller's
    varprop: a forkserver started there imported the directory's copy."""
    (tmp_path / "varprop").mkdir()
    (tmp_path / "varprop" / "__init__.py").write_text("WRONG = True  # imports, has no sweep\n")
    monkeypatch.chdir(tmp_path)
    local = sweep.run(SMALL, executor="local", workers=2)
    assert local.cells == serial.cells


def test_killed_local_worker_is_retried(serial, tmp_path):
    marker = tmp_path / "crashed"
    cells = SMALL.cells()
    victim = 5
    cells[victim] = Cell(**cells[victim].config(), test_crash_marker=str(marker))
    result = sweep.run(cells, executor="local", workers=2, cache_dir=tmp_path / "cache")
    assert marker.exists()  # the first attempt died (os._exit in the worker)
    assert result.stats["restarts"] == 1
    assert result.cells == serial.cells


def test_resume_after_interruption(serial, tmp_path):
    done = []

    def stop_after_five(cell, cached):
        done.append(cell)
        if len(done) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run(SMALL, executor="serial", cache_dir=tmp_path, on_done=stop_after_five)
    assert len(list(tmp_path.glob("*.json"))) == 5
    assert not list(tmp_path.glob(".*"))  # no temporary left behind
    resumed = sweep.run(SMALL, executor="serial", cache_dir=tmp_path)
    assert resumed.stats["cached"] == 5 and resumed.stats["computed"] == 7
    assert resumed.cells == serial.cells
    again = sweep.run(SMALL, executor="serial", cache_dir=tmp_path)
    assert again.stats["cached"] == 12 and again.stats["computed"] == 0


def test_a_corrupt_cache_file_is_recomputed(serial, tmp_path):
    sweep.run(SMALL, executor="serial", cache_dir=tmp_path)
    victim = sorted(tmp_path.glob("*.json"))[0]
    victim.write_text("{not json")
    r = sweep.run(SMALL, executor="serial", cache_dir=tmp_path)
    assert r.stats["computed"] == 1 and r.cells == serial.cells


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as c:
        yield c


def test_dask_local_cluster_equals_serial_bitwise(serial, cluster):
    r = sweep.run(SMALL, executor="dask", scheduler=cluster.scheduler_address)
    assert r.cells == serial.cells
    assert r.to_dict()["series"] == serial.to_dict()["series"]


def test_dask_killed_worker_is_retried(serial, cluster, tmp_path):
    from dask.distributed import Client

    marker = tmp_path / "crashed"
    cells = SMALL.cells()
    cells[3] = Cell(**cells[3].config(), test_crash_marker=str(marker))
    with Client(cluster.scheduler_address) as client:
        # the previous test's client released its tasks, so the victim (whose key is
        # that of the same cell without the hook) runs afresh and kills its worker
        r = sweep.run(cells, executor=client, retries=2)
    assert marker.exists()
    assert r.cells == serial.cells
