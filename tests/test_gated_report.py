"""``varprop report --arch lstm`` and ``--arch gru`` (issue 15): the gated cells' report.

Checks: the command runs for both cells (text, JSON, HTML), the JSON holds the theory and
the measurement at every step; the theory in the report is the one of the cell it names
(against an independent Gauss-Hermite recursion of docs/gated.md section 2.1 for Keras's
LSTM, and against ``analyze_gated`` of the framework constructor for the GRU, chrono
included); the measurement agrees with it within the log-space test's spread where
docs/gated.md says it converges, and the same test rejects a theory for the wrong layout.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from _env import subprocess_env
from varprop.agreement import agreement
from varprop.profile import Profile
from varprop.recurrent.gated import analyze_gated, keras_gru, keras_lstm, torch_gru

pytest.importorskip("varprop._rnn")


def _report(tmp_path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "varprop", "report", *args, "-q"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
                          env=subprocess_env())


def _json(tmp_path, *args: str) -> dict:
    out = _report(tmp_path, *args, "--format", "json", "--no-out")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no RuntimeWarning or other noise
    return json.loads(out.stdout)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_report_gated_json_has_theory_and_measurement_per_step(tmp_path, arch):
    data = _json(tmp_path, "--arch", arch, "-i", "default", "chrono", "orthogonal",
                 "--depth", "6", "--width", "16", "--seeds", "3", "--batch", "16")
    assert data["settings"]["arch"] == arch
    entries = {(e["initializer"], e["activation"]): e for e in data["results"]}
    # rows: the presets and a registry initializer; columns: the two layouts
    assert set(entries) == {(i, a) for i in ("default", "chrono", "orthogonal")
                            for a in ("keras", "torch")}
    for e in entries.values():
        for side in ("analytic", "measured"):
            records = e[side]["profile"]["records"]
            assert len(records) == 6
            assert all(r["a_var"] is not None and r["grad_var"] is not None for r in records)
        meta = e["analytic"]["profile"]["meta"]
        assert meta["cell"] == arch and meta["layout"] == e["activation"]
        assert "dL/dh_t" in meta["grad"]
        assert e["agreement"] is not None
        # the loss's own gradient at the last step: standard normal, so exactly 1 in theory
        assert e["analytic"]["profile"]["records"][-1]["grad_var"] == pytest.approx(1.0)


def _lstm_keras_default_recursion(units: int, steps: int) -> np.ndarray:
    """Var h_t of Keras's default LSTM (F = H = units, inputs N(0, 1)) by the forward
    recursion of docs/gated.md section 2.1, written out with 200-node Gauss-Hermite
    quadrature: an independent implementation of the mean field.

    glorot_uniform on (F, 4H): v_x = 2 / (F + 4H), so v_in = F v_x; orthogonal (H, 4H):
    H v_h = 1/4 per gate; biases 0 except the forget gate's 1 (unit_forget_bias). All
    gate means but the forget gate's are 0, E[g] = 0, so E[c_t] = 0 and E[h_t] = 0."""
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731

    def expect(fn, mean, var):
        return float(w @ fn(mean + np.sqrt(var) * x))

    v_in = units * 2.0 / (units + 4 * units)
    h2, c2, out = 0.0, 0.0, []
    for _ in range(steps):
        q = v_in + 0.25 * h2
        f2 = expect(lambda a: sig(a) ** 2, 1.0, q)
        i2 = o2 = expect(lambda a: sig(a) ** 2, 0.0, q)
        g2 = expect(lambda a: np.tanh(a) ** 2, 0.0, q)
        c2 = f2 * c2 + i2 * g2
        h2 = o2 * expect(lambda a: np.tanh(a) ** 2, 0.0, c2)
        out.append(h2)
    return np.array(out)


def test_report_lstm_theory_is_the_mean_field_of_keras_defaults(tmp_path):
    data = _json(tmp_path, "--arch", "lstm", "-i", "default", "-a", "keras", "--depth", "8",
                 "--width", "32", "--analytic-only")
    (entry,) = data["results"]
    got = np.array([r["a_var"] for r in entry["analytic"]["profile"]["records"]])
    # both integrate smooth Gaussian expectations to quadrature accuracy (<< 1e-8)
    np.testing.assert_allclose(got, _lstm_keras_default_recursion(32, 8), rtol=1e-7)


def test_report_gru_rows_are_the_framework_cells(tmp_path):
    """'default' is the layout's framework defaults and 'chrono' adds chrono biases with
    T_max = the report's steps: the report's theory equals analyze_gated of those cells."""
    data = _json(tmp_path, "--arch", "gru", "-i", "default", "chrono", "-a", "keras", "torch",
                 "--depth", "7", "--width", "12", "--analytic-only")
    want = {("default", "keras"): keras_gru(12, 12), ("default", "torch"): torch_gru(12, 12),
            ("chrono", "keras"): keras_gru(12, 12, chrono=7),
            ("chrono", "torch"): torch_gru(12, 12, chrono=7)}
    for e in data["results"]:
        ref = analyze_gated(want[e["initializer"], e["activation"]], 7)
        for field in ("a_var", "z_var", "grad_var"):
            got = [r[field] for r in e["analytic"]["profile"]["records"]]
            np.testing.assert_allclose(got, ref.column(field), rtol=1e-12, err_msg=field)


def test_report_gated_measurement_agrees_where_the_theory_converges(tmp_path):
    """docs/gated.md section 3: Keras's LSTM gradient and the GRU's candidate variance
    agree with the mean field; the report's log-space test (family-wise false-alarm rate
    1% over its networks) must not reject them. The same test, handed the theory of the
    other layout for the measured Keras LSTM (PyTorch's defaults: another variance per
    gate), rejects it: the check can fail."""
    lstm = _json(tmp_path, "--arch", "lstm", "-i", "default", "-a", "keras", "--depth", "20",
                 "--width", "64", "--seeds", "4", "--batch", "64")
    (e,) = lstm["results"]
    grad = [t for t in e["agreement"]["tests"] if t["field"] == "grad_var"]
    assert grad and all(t["status"] == "agree" for t in grad), grad
    measured = Profile.from_dict(e["measured"]["profile"])
    from varprop.recurrent.gated import torch_lstm
    wrong = analyze_gated(torch_lstm(64, 64), 20)
    assert agreement(wrong, measured).disagrees
    assert not agreement(analyze_gated(keras_lstm(64, 64), 20), measured).disagrees
    gru = _json(tmp_path, "--arch", "gru", "-i", "default", "-a", "keras", "--depth", "12",
                "--width", "32", "--seeds", "4", "--batch", "64")
    (e,) = gru["results"]
    z = [t for t in e["agreement"]["tests"] if t["field"] == "z_var"]
    assert z and all(t["status"] == "agree" for t in z), z


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_report_gated_table_and_html(tmp_path, arch):
    out = _report(tmp_path, "--arch", arch, "-i", "default", "he_normal", "--depth", "5",
                  "--width", "8", "--seeds", "2", "--batch", "8", "--out", "r.html")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # the table's prose is wrapped at 100 columns
    assert f"{arch.upper()} of 8 units over 5 time steps" in text
    assert any(line.split()[:2] == ["initializer", "layout"]
               for line in out.stdout.splitlines() if line.strip())
    assert "Var dL/dh_t" in text and "t = 4" in text  # the per-step table
    assert text.count("docs/gated.md, section 3") == 1  # the gated flag, said once
    page = (tmp_path / "r.html").read_text()
    assert "time step" in page and "Var dL/dh_t" in page and "Weights as drawn" in page


def test_report_gated_rejects_activations_and_only_presets_draw_no_weights(tmp_path):
    out = _report(tmp_path, "--arch", "lstm", "-a", "relu", "--no-out")
    assert out.returncode == 2 and "layout" in out.stderr and "relu" in out.stderr
    out = _report(tmp_path, "--arch", "mlp", "-i", "chrono", "--no-out")
    assert out.returncode == 2 and "chrono" in out.stderr
    out = _report(tmp_path, "--arch", "gru", "-i", "default", "--depth", "4", "--width", "8",
                  "--analytic-only", "--out", "r.html")
    assert out.returncode == 0, out.stderr
    assert "Weights as drawn" not in (tmp_path / "r.html").read_text()
