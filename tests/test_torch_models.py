"""varprop.torch on the models people use (issue 16): a ResNet-style CNN with BatchNorm,
a pre-LN transformer encoder built from ``nn.TransformerEncoderLayer``, an LSTM
classifier and an MLP with PyTorch's default init, each traced, profiled, compared and
audited, with ops varprop has no theory for kept as measured-only (docs/torch.md).

References are independent of the code under test: the model itself measured through
hooks (compare's log-space test, false-alarm rate 0.01 per network), exact integrals of
a measured-only op's output, the entries of the model's own weights, and planted
mistakes the audit must name. Seeds are fixed, so every test is deterministic; the
statistical checks state their false-alarm rate.
"""

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate, stats

torch = pytest.importorskip("torch")
nn = torch.nn

import varprop  # noqa: E402
import varprop.torch as vt  # noqa: E402
from varprop.layers import LayerNorm, Residual  # noqa: E402

from _env import subprocess_env  # noqa: E402
from test_torch_adapter import ResNetish  # noqa: E402

ALPHA = 1e-3


class Encoder(nn.Module):
    """A pre-LN transformer encoder over token indices: Embedding, ``layers`` fresh
    ``nn.TransformerEncoderLayer(norm_first=True, batch_first=True)``, a final LayerNorm,
    the mean over tokens and a Linear head."""

    def __init__(self, vocab=50, d=64, layers=2, dropout=0.5, activation="gelu"):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=dropout, activation=activation,
                                       norm_first=True, batch_first=True)
            for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 5)

    def forward(self, tokens):
        h = self.emb(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h).mean(1))


class Stacked(nn.Module):
    """``nn.TransformerEncoder``: its layers are ``copy.deepcopy`` of one (pytorch
    issue 72253)."""

    def __init__(self, d=32):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.1, activation="relu",
                                           norm_first=True, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        return self.head(self.encoder(x)[:, 0])


class LSTMClassifier(nn.Module):
    def __init__(self, features=10, hidden=64, classes=4):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def _harmful(findings):
    return [(f.layer, f.kind) for f in findings if f.harmful]


# ----------------------------------------------------------------------------- ResNet
def test_resnet_with_batchnorm_end_to_end():
    torch.manual_seed(0)
    model, x = ResNetish(), torch.randn(8, 3, 8, 8)
    result = vt.trace(model, x)
    assert result.measured == [] and result.covered == 1.0
    assert len(vt.profile(model, x, seeds=2, batch=16)) == 6
    cmp = vt.compare(model, x, seeds=3, batch=32)
    assert cmp.agree, cmp.table()
    # PyTorch's default init before each BatchNorm does no harm; on the head it does
    assert _harmful(vt.audit(model, x)) == [("fc", "torch_default_init")]


# ----------------------------------------------------------------------------- transformer
def test_transformer_traces_its_blocks_and_theory_meets_the_model():
    torch.manual_seed(0)
    fast = torch.backends.mha.get_fastpath_enabled()
    model, x = Encoder(), torch.randint(0, 50, (16, 12))
    result = vt.trace(model, x)
    assert torch.backends.mha.get_fastpath_enabled() == fast  # put back
    assert result.sequence and result.tokens == 50
    assert result.names == ["emb", "layers.0.linear1", "layers.0.linear2",
                            "layers.1.linear1", "layers.1.linear2", "head"]
    blocks = [layer for layer in result.network.layers if isinstance(layer, Residual)]
    assert len(blocks) == 4 and all(isinstance(b.branch[0], LayerNorm) for b in blocks)
    assert [type(b.branch[1]).__name__ for b in blocks] == ["Measured", "Dense"] * 2
    names = [op.name for op in result.measured]
    assert ["MultiheadAttention" in n for n in names] == [True, True, False]
    assert "mean (node 'mean')" in names[2] and "approximate/measured only" in result.unsupported[0]
    assert 0.0 < result.covered < 1.0  # the attention's parameters are measured only
    # the Embedding's output variance is its weight variance (one-hot rows)
    emb = varprop.analyze(result.network, input_mean=result.input_moments[0],
                          input_var=result.input_moments[1])[0]
    w = model.emb.weight.detach().double()
    assert emb.z_var == pytest.approx(float((w ** 2).mean()), rel=1e-9)
    # dropout 0.5 is off while measuring (on, it would double the FFN's output variance)
    cmp = vt.compare(model, x, seeds=3)
    assert cmp.agree, cmp.table()
    only = [r for r in cmp.rows if r.get("measured_only")]
    assert len(only) == 6 and all(math.isnan(r["analytic"]) and r["test"] is None
                                  for r in only)
    text = cmp.table()
    assert text.count("measured only  ") >= 6 and "re-anchored" in text


def test_transformer_encoder_stack_and_the_audit_of_planted_mistakes():
    torch.manual_seed(1)
    model, x = Stacked(), torch.randn(8, 6, 32)
    result = vt.trace(model, x)  # nn.TransformerEncoder entered on its Python path
    assert result.names == ["encoder.layers.0.linear1", "encoder.layers.0.linear2",
                            "encoder.layers.1.linear1", "encoder.layers.1.linear2", "head"]
    harmful = _harmful(vt.audit(model, x))
    # deepcopy'd layers, and PyTorch's xavier_uniform_ on the packed (3d, d) QKV matrix
    assert ("encoder.layers.1.linear1", "identical_weights") in harmful
    assert ("encoder.layers.1.self_attn.in_proj_weight", "identical_weights") in harmful
    assert ("encoder.layers.0.self_attn.in_proj_weight", "packed_qkv_fans") in harmful
    cmp = vt.compare(model, x, seeds=3)
    assert cmp.agree, cmp.table()


def test_audit_finds_nothing_harmful_in_a_freshly_initialized_transformer():
    torch.manual_seed(2)
    model, x = Encoder(dropout=0.1), torch.randint(0, 50, (8, 12))
    vt.init_(model, "xavier_uniform", seed=0)  # every layer fresh, each projection its fans
    findings = vt.audit(model, x)
    assert _harmful(findings) == [], [str(f) for f in findings if f.harmful]
    assert {f.kind for f in findings} == {"measured_only"}


def test_init_draws_each_attention_projection_at_its_own_fans():
    model = nn.MultiheadAttention(64, 4)
    vt.init_(model, "xavier_normal", seed=0)
    w = model.in_proj_weight.detach().double().numpy()
    for k in range(3):  # each (64, 64) block: variance 2 / (64 + 64), chi-square band
        block = w[64 * k:64 * (k + 1)]
        lo, hi = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], block.size) / block.size / 64
        assert lo <= float(np.mean(block ** 2)) <= hi
    assert not model.in_proj_bias.detach().any()
    assert vt.audit(model) == []


# ----------------------------------------------------------------------------- LSTM
def test_lstm_classifier_is_one_measured_op_with_the_gated_theory_beside_it():
    torch.manual_seed(0)
    model, x = LSTMClassifier(), torch.randn(32, 20, 10)
    result = vt.trace(model, x)
    (op,) = result.measured
    assert op.name.startswith("LSTM at 'lstm'") and op.steps == 20 and op.last
    assert op.nodes[0] == "lstm" and result.names == ["fc"]
    cmp = vt.compare(model, x, seeds=4)
    assert cmp.agree, cmp.table()
    (row,) = cmp.measured_only
    gated = row["recurrent_theory"]
    # the gated mean field is approximate (docs/gated.md): within a factor 1.5 of the
    # state's measured variance, which the seeds pin to a few per cent here
    assert 1 / 1.5 < gated["var"] / row["out_var"] < 1.5
    assert "gated theory beside it" in cmp.table()
    kinds = {(f.layer, f.kind): f.harmful for f in vt.audit(model, x)}
    assert kinds[("fc", "torch_default_init")] and not kinds[(op.name, "measured_only")]


# ----------------------------------------------------------------------------- MLP
def test_mlp_with_pytorch_default_init_vanishes_as_predicted():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    model, x = nn.Sequential(*layers, nn.Linear(128, 10)), torch.randn(64, 128)
    assert len(vt.profile(model, x, seeds=2)) == 7
    cmp = vt.compare(model, x, seeds=3)
    assert cmp.agree and cmp.analytic_verdict.kind == cmp.empirical_verdict.kind == "vanishes"
    kinds = set(_harmful(vt.audit(model, x)))
    assert {(str(2 * i), "torch_default_init") for i in range(7)} <= kinds
    assert ("10", "vanishing") in kinds
    twin = copy.deepcopy(model)  # a planted copy: layer 2 the same as layer 0
    with torch.no_grad():
        twin[2].weight.copy_(twin[0].weight)
    assert ("2", "identical_weights") in _harmful(vt.audit(twin))


# ----------------------------------------------------------------------------- measured only
def test_a_measured_only_op_is_measured_and_the_theory_re_anchored_on_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.Hardtanh(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 256))
    vt.init_(model, "kaiming_normal", seed=0)
    x = torch.randn(128, 256)
    cmp = vt.compare(model, x, seeds=4)
    (row,) = cmp.measured_only
    # the op's output, measured, against the exact E[clip(z, -1, 1)^2] for z ~ N(0, s)
    s = cmp.analytic[0].z_var
    exact = integrate.quad(lambda z: min(z * z, 1.0) * stats.norm.pdf(z, scale=math.sqrt(s)),
                           -np.inf, np.inf)[0]
    se = row["out_var_ci"] / stats.t.ppf(0.975, 3)
    assert abs(row["out_var"] - exact) <= stats.t.ppf(1 - ALPHA / 2, 3) * se + 0.02 * exact
    # re-anchored: the next layer's theory is the mean field from the measured moments
    anchored = row["out_var"] + row["out_mean"] ** 2
    assert cmp.analytic[1].z_var == pytest.approx(256 * (2 / 256) * anchored, rel=1e-9)
    assert cmp.agree, cmp.table()
    with pytest.raises(ValueError, match="measured-only"):
        vt.compare(model, x, measure="traced")


# ----------------------------------------------------------------------------- command
MODEL_FILE = '''
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 32)
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, norm_first=True,
                                                batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, tokens):
        return self.head(self.layer(self.emb(tokens))[:, 0])


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 32, batch_first=True)
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def transformer():
    torch.manual_seed(0)
    return Encoder()


def lstm():
    torch.manual_seed(0)
    return Classifier()
'''


def _run(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "varprop.torch.command", "model", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=subprocess_env())


@pytest.mark.parametrize("factory, shape, op", [
    ("transformer", ("8", "10"), "MultiheadAttention at 'layer.self_attn'"),
    ("lstm", ("8", "12", "6"), "LSTM at 'lstm'"),
])
def test_command_on_a_transformer_and_an_lstm(tmp_path, factory, shape, op):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    out = _run(tmp_path, f"net.py:{factory}", "--input-shape", *shape, "--seeds", "2",
               "--out", "model.json", "-q")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "measured only" in text and op in text and "re-anchored" in text
    doc = json.loads((tmp_path / "model.json").read_text())
    rows = [r for r in doc["comparison"]["rows"] if r.get("measured_only")]
    assert rows and all(r["op"].startswith(op) or "getitem" in r["op"] for r in rows[:2])
    assert any("re-anchored" in n for n in doc["notes"])
