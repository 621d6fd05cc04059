"""varprop.torch.profile (the PyTorch model itself, measured through hooks), compare's
measure="model", and the ``varprop model`` command (varprop/torch/command.py), against
independent references: varprop.measure on hand-built networks (other draws of the same
law), varprop.measure on the traced network with the same seeds (the same draws, so
equal to rounding), analyze's records, and the model's own state (skipped without torch).

Statistical checks state their false-alarm rate ``ALPHA`` per check; the draws are
seeded, so every test is deterministic.
"""

import copy
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import varprop  # noqa: E402
import varprop.torch as vt  # noqa: E402
from varprop.reporting.output import UsageError  # noqa: E402
from varprop.torch.command import add_model_parser, run_model  # noqa: E402

from _env import subprocess_env  # noqa: E402
from test_torch_adapter import ManyOps, ResNetish, mlp  # noqa: E402

ALPHA = 1e-3
CHECKED = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var")


class Mixed(nn.Module):
    """Activations fused after a Linear through Dropout (module and function), an
    in-place ReLU module, a function (tanh) and a function with a parameter."""

    def __init__(self):
        super().__init__()
        self.a, self.drop = nn.Linear(20, 30), nn.Dropout(0.5)
        self.relu = nn.ReLU(inplace=True)
        self.b, self.c = nn.Linear(30, 30), nn.Linear(30, 5)

    def forward(self, x):
        x = F.dropout(self.relu(self.drop(self.a(x))), 0.3, self.training)
        x = torch.tanh(self.b(x))
        return F.leaky_relu(self.c(x), 0.2)


def _differ_beyond_noise(p, q, field, alpha=ALPHA):
    """Layers where two independent measurements of the same law differ by more than
    t_{1-alpha/2, S-1} * sqrt(se_p^2 + se_q^2), se = ci / t_{0.975, S-1} (each profile's
    95% half-width back to a standard error). With S - 1 degrees of freedom, at most
    Welch's, the bound is conservative: a false alarm has probability <= alpha per check."""
    out = []
    for rp, rq in zip(p, q):
        n_p, n_q = len(p.meta["seeds"]), len(q.meta["seeds"])
        se = [getattr(r, field + "_ci") / stats.t.ppf(0.975, n - 1)
              for r, n in ((rp, n_p), (rq, n_q))]
        bound = stats.t.ppf(1 - alpha / 2, min(n_p, n_q) - 1) * np.hypot(*se)
        if not abs(getattr(rp, field) - getattr(rq, field)) <= bound:
            out.append((rp.index, getattr(rp, field), getattr(rq, field), bound))
    return out


# ----------------------------------------------------------------------------- profile
def test_profile_of_a_he_mlp_agrees_with_measure_and_with_the_theory():
    widths = [64, 256, 256, 256, 10]
    model = mlp(widths)
    x = torch.randn(256, 64)
    got = vt.profile(model, x, seeds=6, init="he_normal")
    hand = varprop.mlp(widths, "relu", "he_normal", final_activation=False)
    want = varprop.measure(hand, batch=256, seeds=range(100, 106))  # other draws
    assert len(got) == len(want) == 4
    for field in CHECKED:  # 24 checks: family-wise false-alarm rate <= 2.4%
        assert _differ_beyond_noise(got, want, field) == [], field
    assert [(r.n_in, r.n_out) for r in got] == [(r.n_in, r.n_out) for r in want]
    assert got.meta["layers"] == ["0", "2", "4", "6"] and got.meta["batch"] == 256
    cmp = vt.compare(model, x, seeds=6, init="he_normal")
    assert cmp.empirical.meta["modes"] == vt.profile.__globals__["MODES"]
    assert cmp.disagrees is False  # the log-space test at its 1% false-alarm rate


@pytest.mark.parametrize("make, shape, batch", [
    (Mixed, (4, 20), 32), (ResNetish, (6, 3, 8, 8), 32), (ManyOps, (6, 2, 10, 10), 16)])
def test_profile_equals_measure_of_the_traced_network_seed_for_seed(make, shape, batch):
    # init=None re-draws each layer from its traced law on varprop.measure's streams: the
    # same weights, inputs and output gradients, so in float64 the two agree to rounding
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    got = vt.profile(model, x, seeds=[0, 3], batch=batch)
    want = varprop.measure(vt.trace(model, x).network, seeds=[0, 3], batch=batch,
                           dtype=np.float64)
    for field in CHECKED + ("channel_sq_mean", "channel_var"):
        np.testing.assert_allclose(got.column(field), want.column(field), rtol=1e-9,
                                   atol=1e-300, err_msg=field)
    for name in ("z_var", "a_var", "grad_var"):
        np.testing.assert_allclose(got.seed_column(name), want.seed_column(name), rtol=1e-9)
    assert sorted(got.maps) == sorted(want.maps)
    for i in want.maps:
        for name in want.maps[i]:
            np.testing.assert_allclose(got.maps[i][name], want.maps[i][name], rtol=1e-9,
                                       atol=1e-300)


def test_profile_of_the_resnet_lines_up_with_analyze():
    torch.manual_seed(0)
    model = ResNetish()
    x = torch.randn(8, 3, 8, 8)
    result = vt.trace(model, x)
    theory = varprop.analyze(result.network, batch=64)
    got = vt.profile(model, x, seeds=3, batch=64)
    assert len(got) == len(theory) == 6
    assert [(r.index, r.n_in, r.n_out) for r in got] == \
        [(r.index, r.n_in, r.n_out) for r in theory]
    assert got.meta["layers"] == result.names and got.kind == "empirical"
    assert "BatchNorm in training mode" in got.meta["modes"]
    assert sorted(got.maps) == sorted(theory.maps) == [0, 1, 2, 3, 4]  # the convolutions
    assert got.maps[1]["z_var"].shape == theory.maps[1]["z_var"].shape == (8, 8)
    assert all(np.isfinite(getattr(r, f)) and np.isfinite(getattr(r, f + "_ci"))
               for r in got for f in CHECKED)
    cmp = varprop.compare(result.network, batch=64, analytic=theory, empirical=got)
    assert cmp.disagrees is False


def test_profile_restores_parameters_buffers_gradients_and_modes():
    torch.manual_seed(0)
    model = nn.Sequential(ResNetish(), nn.Dropout(0.3))
    model[0].eval()  # a mix of modes
    model[0].fc.weight.requires_grad_(False)
    model[0].stem[0].weight.grad = torch.full_like(model[0].stem[0].weight, 0.5)
    with torch.no_grad():
        model[0].stem[1].running_mean.fill_(0.25)
    state = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    for init in (None, "he_normal"):
        vt.profile(model, torch.randn(4, 3, 8, 8), seeds=2, init=init)
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert [m.training for m in model.modules()] == modes
        assert not model[0].fc.weight.requires_grad
        assert torch.equal(model[0].stem[0].weight.grad,
                           torch.full_like(model[0].stem[0].weight, 0.5))
        assert model[0].layer[0].conv1.weight.grad is None


def test_profile_is_seeded_and_reports_progress():
    model = mlp([16, 32, 8])
    x = torch.randn(32, 16)
    a = vt.profile(model, x, seeds=[1, 2])
    b = vt.profile(model, x, seeds=[1, 2])
    c = vt.profile(model, x, seeds=[3, 4])
    assert a.seed_values == b.seed_values and a.seed_values != c.seed_values
    calls = []
    vt.profile(model, x, seeds=3, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (12, 12) and len(calls) == 12  # 3 seeds x 2 layers x 2 passes


def test_profile_argument_errors():
    model = mlp([8, 8, 2])
    with pytest.raises(ValueError, match="batch="):
        vt.profile(model, torch.randn(1, 8))  # one row: no variance
    with pytest.raises(ValueError, match="batch"):
        vt.profile(model, torch.randn(4, 8), batch=1)
    with pytest.raises(ValueError, match="seeds"):
        vt.profile(model, torch.randn(4, 8), seeds=0)
    with pytest.raises(TypeError, match="progress"):
        vt.profile(model, torch.randn(4, 8), progress="yes")
    with pytest.raises(ValueError, match="measure"):
        vt.compare(model, torch.randn(4, 8), measure="both")


def test_compare_measure_traced_keeps_the_kernels_measurement():
    model = mlp([32, 32, 4])
    cmp = vt.compare(model, torch.randn(16, 32), seeds=2, measure="traced")
    assert cmp.empirical.meta["batch"] == 256 and "modes" not in cmp.empirical.meta
    cmp = vt.compare(model, torch.randn(16, 32), seeds=2)
    assert cmp.empirical.meta["batch"] == 16 and "modes" in cmp.empirical.meta


# ----------------------------------------------------------------------------- command
MODEL_FILE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(x + self.bn2(self.conv2(out)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def build():
    torch.manual_seed(0)
    return Net()


def not_a_model():
    return {"layers": 3}
'''


def _run(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "varprop.torch.command", "model", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env or subprocess_env())


def test_command_runs_end_to_end_and_writes_html(tmp_path):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    out = _run(tmp_path, "net.py:build", "--input-shape", "8", "3", "8", "8", "--seeds", "3",
               "--out", "report.html", "-q")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.index("audit: 6 findings, 1 harmful") < text.index("theory vs measured")
    assert text.index("harmful   fc: torch_default_init") < text.index("harmless")
    assert "fix: " in text and "BatchNorm in training mode" in text
    assert "z_var theory" in text and "test:     consistent" in text
    assert "blocks.1.conv2" in text.split("layers:")[1]
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 2
    assert "torch_default_init" in page and "Theory vs measured" in page
    assert out.stderr == ""  # -q


def test_command_json_and_markdown_in_process(tmp_path, monkeypatch, capsys):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    parser = __import__("argparse").ArgumentParser(prog="varprop")
    add_model_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "net.py:build", "--input-shape", "4", "3", "6", "6",
                              "--init", "kaiming_normal", "--seeds", "2", "--format", "json",
                              "--out", "model.md", "-q"])
    assert args.func is run_model and run_model(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["init"] == "kaiming_normal" and doc["batch"] == 4
    assert [layer["module"] for layer in doc["layers"]] == [
        "stem.0", "blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2", "fc"]
    assert len(doc["theory"]["records"]) == len(doc["measured"]["records"]) == 6
    assert doc["audit"][0]["harmful"] and doc["audit"][0]["fix"]
    markdown = (tmp_path / "model.md").read_text()
    assert "| layer | module |" in markdown and "## Audit" in markdown


@pytest.mark.parametrize("spec, message", [
    ("net.py:nope", "'net.py' has no 'nope'; it defines 'Block', 'Net', 'build', 'not_a_model'"),
    ("net.py:buld", "'net.py' has no 'buld'; did you mean 'build'?"),
    ("net.py:not_a_model", "not_a_model() returned dict, not a torch.nn.Module"),
    ("missing.py:build", "model file 'missing.py' not found"),
    ("net.py", "expected FILE.py:FACTORY"),
])
def test_command_usage_errors(tmp_path, monkeypatch, spec, message):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    parser = __import__("argparse").ArgumentParser(prog="varprop")
    add_model_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", spec, "--input-shape", "4", "3", "8", "8"])
    with pytest.raises(UsageError) as info:
        run_model(args)
    assert message in str(info.value)


def test_command_errors_exit_2_with_one_line(tmp_path):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    for args, message in ((("net.py:not_a_model", "--input-shape", "4", "3", "8", "8"),
                           "not a torch.nn.Module"),
                          (("net.py:build", "--input-shape", "4", "5", "8", "8"),
                           "--input-shape 4 5 8 8: build() does not run on it")):
        out = _run(tmp_path, *args)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.startswith("varprop model: error:") and message in out.stderr
        assert out.stderr.count("\n") == 1


def test_command_without_torch_is_a_usage_error(tmp_path):
    # a finder that refuses torch: the parser registers without it, the command names
    # the extra to install
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        from varprop.torch.command import main
        code = main(["model", "net.py:build", "--input-shape", "4", "3", "8", "8"])
        print("torch" in sys.modules, code)
        import varprop.torch
        try:
            varprop.torch.trace
        except ImportError as exc:
            print(exc)
    """)
    (tmp_path / "net.py").write_text(MODEL_FILE)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=subprocess_env())
    assert out.stdout.splitlines()[0] == "False 2", out.stderr
    assert "pip install 'varprop[torch]'" in out.stderr
    assert "varprop.torch.trace needs PyTorch: pip install 'varprop[torch]'" in out.stdout
