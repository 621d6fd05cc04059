"""Convolutional networks end to end for a user: the report (--arch), its JSON against
the schema, the HTML's extra figures, and the seeds' CNN experiment."""

import json
import subprocess
import sys

import numpy as np
import pytest

import varprop
from varprop.reporting import ReportSettings, build_report, load_schema

from test_report import schema_errors


@pytest.fixture(scope="module")
def cnn_report():
    s = ReportSettings(("he_normal", "zeros"), ("relu", "tanh"), depth=3, width=16, batch=16,
                       seeds=2, arch="cnn", image=6)
    return build_report(s)


def test_cnn_report_json_follows_the_schema_and_keeps_the_maps(cnn_report):
    doc = json.loads(json.dumps(cnn_report.to_dict()))
    assert schema_errors(doc, load_schema("report")) == []
    assert doc["settings"]["arch"] == "cnn"
    profile = doc["results"][0]["analytic"]["profile"]
    assert len(profile["maps"]["0"]["z_var"]) == 6  # a 6x6 map per layer
    back = varprop.Profile.from_dict(profile)
    assert back.maps[2]["z_var"].shape == (6, 6)


def test_cnn_report_html_has_maps_and_signal_propagation(cnn_report):
    pytest.importorskip("matplotlib")
    from varprop.reporting.html import report_html
    page = report_html(cnn_report)
    assert 'id="pixels"' in page and 'id="spp"' in page


def _cli(*args, cwd, timeout=300):
    # run outside the source tree: it holds no compiled extension (README)
    return subprocess.run([sys.executable, "-m", "varprop", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_cli_arch_options_and_errors(tmp_path):
    r = _cli("report", "--arch", "seeds_cnn", "-i", "he_normal", "-a", "relu",
             "--seeds", "2", "--batch", "8", "--format", "json", "--no-out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["settings"]["arch"] == "seeds_cnn"
    assert len(doc["results"][0]["analytic"]["profile"]["records"]) == 3
    for bad, text in ((["--arch", "seeds_cnn", "--depth", "4"], "fixed network"),
                      (["--arch", "cnn", "-i", "identity"], "identity"),
                      (["--image", "8"], "--image"),
                      (["--arch", "cnn", "--image", "0"], "--image")):
        r = _cli("report", "--analytic-only", "--no-out", *bad, cwd=tmp_path)
        assert r.returncode == 2 and text in r.stderr, (bad, r.stderr)
    r = _cli("experiment", "iris", "--data", "/nonexistent", cwd=tmp_path)
    assert r.returncode == 2 and "cnn" in r.stderr


def test_cnn_experiment_zero_stuck_he_and_glorot_train():
    from varprop.experiments import run_cnn
    res = run_cnn(seeds=(0,), epochs=3, initializers=("zeros", "glorot_uniform", "he_normal"),
                  variance_batch=64)
    chance = res.settings["chance"]
    assert res.mean_accuracy("zeros") <= chance + 1e-9
    assert res.mean_accuracy("he_normal") > 0.8 and res.mean_accuracy("glorot_uniform") > 0.7
    th, me = res.theory["he_normal"], res.measured["he_normal"]
    assert np.all(np.isfinite(th["z_var"])) and np.all(me["z_var"] > 0)
    assert "layer 2" in res.table() and "chance" in res.table()


def test_cnn_experiment_reads_mnist_idx_files(tmp_path):
    """The --data path: MNIST's file layout (here 120 synthetic 28x28 images in 3
    classes whose class sets a bright square's position), the same code as the digits."""
    from varprop.datasets import save_idx
    from varprop.experiments import run_cnn
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40).astype(np.uint8)
    x = (rng.random((120, 28, 28)) * 60).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 4 + 8 * c:10 + 8 * c, 10:18] = 255
    save_idx(tmp_path / "train-images-idx3-ubyte", x)
    save_idx(tmp_path / "train-labels-idx1-ubyte", y)
    res = run_cnn(seeds=(0,), epochs=2, initializers=("he_normal",), data=tmp_path,
                  variance_batch=32)
    assert res.settings["data"] == "MNIST 28x28"
    assert res.theory["he_normal"]["z_var"].shape == (3,)
    assert res.mean_accuracy("he_normal") > 0.9  # the squares are easy to tell apart
