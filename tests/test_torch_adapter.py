"""varprop.torch (trace, init_, audit, compare) against references built independently:
hand-built varprop networks, PyTorch's own forward pass in float64, and fans and
chi-square bounds computed here from the layer shapes (skipped without torch).

Every statistical bound below has a stated false-alarm rate ``ALPHA`` per check (the
draws are seeded, so each test is deterministic; the rate says how unusual a failure
would be)."""

import copy
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import varprop  # noqa: E402
import varprop.torch as vt  # noqa: E402
from varprop.layers.measured import Measured  # noqa: E402
from _adapter_checks import ALPHA, KURTOSIS, assert_profiles_equal, chi2_band  # noqa: E402

# ----------------------------------------------------------------------------- models
class Block(nn.Module):
    """A ResNet basic block: relu(x + alpha * bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, c, alpha=1.0):
        super().__init__()
        self.alpha = alpha
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.alpha != 1.0:
            out = self.alpha * out
        out += x
        return F.relu(out)


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.layer = nn.Sequential(Block(16), Block(16, alpha=0.5))
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(self.layer(self.stem(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


class ManyOps(nn.Module):
    """Grouped/dilated/"same" convolutions, GroupNorm, LayerNorm, average pooling, a
    flatten into a Linear (PyTorch's channels-first order), BatchNorm1d, functional
    activations, and residual adds scaled by a constant, a division and a parameter."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, 3, stride=2, padding=1, groups=2)
        self.gn = nn.GroupNorm(3, 6)
        self.c2 = nn.Conv2d(6, 6, (3, 2), padding="same", dilation=(1, 2))
        self.ln = nn.LayerNorm([6, 5, 5])
        self.pool = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)
        self.drop = nn.Dropout(0.0)
        self.fc1 = nn.Linear(6 * 6 * 6, 20)
        self.bn = nn.BatchNorm1d(20)
        self.fc2 = nn.Linear(20, 20)
        self.fc3 = nn.Linear(20, 20)
        self.rezero = nn.Parameter(torch.tensor(0.25))
        self.out = nn.Linear(20, 3)

    def forward(self, x):
        x = F.gelu(self.gn(self.c1(x)), approximate="tanh")
        x = x + 0.5 * F.silu(self.c2(x))
        x = F.elu(self.ln(x), alpha=0.7)
        x = self.drop(self.pool(x))
        x = x.view(x.size(0), -1)
        x = torch.tanh(self.bn(self.fc1(x)))
        x = torch.add(x, self.fc2(F.leaky_relu(x, 0.1)) * self.rezero)
        x = x + F.softplus(self.fc3(x)) / 4
        return self.out(F.softsign(x))


def mlp(widths, act=nn.ReLU):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- trace
def test_trace_mlp_default_init_equals_the_hand_built_network():
    torch.manual_seed(0)
    widths = [32, 64, 64, 10]
    model = mlp(widths)
    result = vt.trace(model, torch.randn(16, 32))
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        bound = 1.0 / math.sqrt(a)  # PyTorch's default weight and bias: U(+-1/sqrt(fan_in))
        u = varprop.random_uniform(minval=-bound, maxval=bound)
        layers.append(varprop.Dense(a, b, u, u))
        if i < len(widths) - 2:
            layers.append(varprop.Act("relu"))
    hand = varprop.Network(32, tuple(layers))
    assert_profiles_equal(varprop.analyze(result.network), varprop.analyze(hand))
    assert [[law.label for law in laws] for laws in result.laws] == [
        ["torch_default", "torch_default_bias(fan_in=32)"],
        ["torch_default", "torch_default_bias(fan_in=64)"],
        ["torch_default", "torch_default_bias(fan_in=64)"]]
    assert all(law.source == "matched" for laws in result.laws for law in laws)
    assert result.covered == 1.0 and result.unsupported == [] and result.notes == []
    assert result.names == ["0", "2", "4"]
    x = torch.randn(7, 32, dtype=torch.float64)
    np.testing.assert_allclose(result.forward(x), copy.deepcopy(model).double()(x).detach(),
                               rtol=1e-12, atol=1e-14)


def test_trace_with_a_named_scheme_equals_varprop_mlp():
    model = mlp([32, 64, 64, 10])
    result = vt.trace(model, torch.randn(4, 32), init="he_normal")
    assert {law.source for laws in result.laws for law in laws} == {"scheme"}
    want = varprop.mlp([32, 64, 64, 10], "relu", "he_normal", final_activation=False)
    assert_profiles_equal(varprop.analyze(result.network), varprop.analyze(want))


def test_trace_resnet_structure_and_forward_match_torch():
    torch.manual_seed(0)
    model = ResNetish()
    x = torch.randn(8, 3, 8, 8)
    result = vt.trace(model, x)
    net = result.network
    assert net.layout == "torch" and net.input_width == (8, 8, 3)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Conv", "BatchNorm", "Act", "Residual", "Act", "Residual", "Act",
                     "MaxPool", "GlobalAvgPool", "Dense"]
    blocks = [layer for layer in net.layers if isinstance(layer, varprop.Residual)]
    assert [b.alpha for b in blocks] == [1.0, 0.5]
    for block in blocks:
        assert [type(layer).__name__ for layer in block.branch] == [
            "Conv", "BatchNorm", "Act", "Conv", "BatchNorm"]
        assert block.branch[0].padding == (1, 1) and block.branch[0].bias_init is None
    assert result.names == ["stem.0", "layer.0.conv1", "layer.0.conv2", "layer.1.conv1",
                            "layer.1.conv2", "fc"]
    assert result.covered == 1.0
    # the model's own weights through varprop's layers, against PyTorch in float64
    # (training mode: BatchNorm with batch statistics, as varprop's BatchNorm)
    reference = copy.deepcopy(model).double().train()
    x64 = x.double()
    with torch.no_grad():
        want = reference(x64).numpy()
    got = result.forward(x64)
    assert got.shape == want.shape == (8, 10)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    profile = varprop.analyze(net)
    assert len(profile) == 6 and all(r.z_var > 0 and r.grad_var > 0 for r in profile)


def test_trace_many_ops_forward_matches_torch():
    torch.manual_seed(3)
    model = ManyOps()
    x = torch.randn(6, 2, 10, 10)
    result = vt.trace(model, x)
    kinds = [type(layer).__name__ for layer in result.network.layers]
    assert kinds.count("Residual") == 3 and "Flatten" in kinds and "GroupNorm" in kinds
    assert [b.alpha for b in result.network.layers if isinstance(b, varprop.Residual)] == \
        [0.5, 0.25, 0.25]
    assert result.covered == 1.0  # the ReZero scalar is read as the residual's alpha
    x64 = x.double()
    with torch.no_grad():
        want = copy.deepcopy(model).double().train()(x64).numpy()
    np.testing.assert_allclose(result.forward(x64), want, rtol=1e-10, atol=1e-12)


def test_trace_notes_eval_mode_and_a_non_identity_affine():
    model = ResNetish().eval()
    with torch.no_grad():
        model.stem[1].weight.fill_(2.0)
    result = vt.trace(model, torch.randn(2, 3, 8, 8))
    assert any("stem.1" in n and "affine" in n for n in result.notes)
    assert any("eval mode" in n for n in result.notes)
    assert result.covered < 1.0
    assert not model.training  # left as it was


@pytest.mark.parametrize("model, x, name", [
    (nn.Sequential(nn.Linear(8, 8), nn.Hardtanh(), nn.Linear(8, 4)), (4, 8), "Hardtanh at '1'"),
    (nn.Sequential(nn.Linear(8, 8), nn.Softplus(beta=2.0)), (4, 8), "Softplus(beta=2.0)"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                   nn.Linear(50, 3)), (2, 1, 5, 5), "padding_mode='reflect'"),
])
def test_trace_keeps_an_unsupported_layer_as_measured_only(model, x, name):
    result = vt.trace(model, torch.randn(*x))
    assert len(result.measured) == 1 and any(name in u for u in result.unsupported)
    assert any(n.startswith("measured only") and name in n for n in result.notes)
    # the op is a layer of the network, anchored on a measurement: analyze runs
    assert sum(isinstance(layer, Measured) for layer in result.network.layers) == 1
    assert all(math.isfinite(r.z_var) for r in varprop.analyze(result.network))


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(16, 4)

    def forward(self, x):
        return self.b(torch.cat([self.a(x), x], 1))


class _Projection(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.p, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.out(self.a(x) + self.p(x))


@pytest.mark.parametrize("model, name, inside", [(_Cat(), "cat", ["a", "cat"]),
                                                  (_Projection(), "add", ["a", "p", "add"])])
def test_trace_keeps_a_function_or_structure_as_one_measured_only_op(model, name, inside):
    result = vt.trace(model, torch.randn(4, 8))
    (op,) = result.measured
    assert op.name.startswith(f"{name} (node '{name}')") and op.nodes == inside
    assert op.start == "x" and result.names == (["b"] if name == "cat" else ["out"])
    # the Linear layers inside the op are not the theory's: their parameters not covered
    assert result.covered < 1.0


def test_trace_still_refuses_several_outputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x), x

    with pytest.raises(vt.UnsupportedOpError, match="more than one tensor"):
        vt.trace(Two(), torch.randn(3, 4))


def test_trace_argument_errors():
    with pytest.raises(TypeError, match="model"):
        vt.trace("not a model", torch.randn(2, 3))
    with pytest.raises(TypeError, match="example_input"):
        vt.trace(nn.Linear(3, 2), torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="example_input"):
        vt.trace(nn.Linear(3, 2), torch.randn(2, 5))  # does not run on it


# ----------------------------------------------------------------------------- init_
# (shape-derived fans, computed by hand: fan_in = inputs feeding one output unit)
_FANS = {"0": (256, 128),        # Linear(256, 128)
         "1": (4 * 9, 8 * 9),    # Conv2d(16, 32, 3, groups=4): in 16/4 = 4 per group, out 32/4
         "2": (8 * 9, 4 * 9)}    # ConvTranspose2d(16, 8, 3, groups=2): 16/2 inputs, 8/2 outputs
_SCHEMES = {"he_normal": ("truncated_normal", lambda fi, fo: 2.0 / fi),
            "kaiming_uniform": ("uniform", lambda fi, fo: 2.0 / fi),
            "xavier_normal": ("normal", lambda fi, fo: 2.0 / (fi + fo))}


def _init_model():
    return nn.Sequential(nn.Linear(256, 128), nn.Conv2d(16, 32, 3, groups=4),
                         nn.ConvTranspose2d(16, 8, 3, groups=2))


@pytest.mark.parametrize("scheme", sorted(_SCHEMES))
def test_init_variances_match_the_scheme_at_the_true_fans(scheme):
    family, var_of = _SCHEMES[scheme]
    model = vt.init_(_init_model(), scheme, seed=0)
    for name, module in model.named_children():
        w = module.weight.detach().double().numpy()
        var = var_of(*_FANS[name])
        lo, hi = chi2_band(var, w.size, KURTOSIS[family])
        assert lo <= float(np.mean(w * w)) <= hi, (name, np.mean(w * w), var)
        assert abs(float(w.mean())) <= stats.norm.ppf(1 - ALPHA / 2) * math.sqrt(var / w.size)
        assert torch.count_nonzero(module.bias) == 0
    # PyTorch's own fans read dims 1 and 0 of the transposed kernel (16, 4, 3, 3): fan_in
    # 36, not 72 (pytorch issue 23854); the drawn variance is not that one
    w = model[2].weight.detach().double().numpy()
    assert torch.nn.init._calculate_fan_in_and_fan_out(model[2].weight)[0] == 36
    if scheme != "xavier_normal":
        lo, hi = chi2_band(2.0 / 36, w.size, KURTOSIS[family])
        assert not lo <= float(np.mean(w * w)) <= hi


def test_init_is_seeded_and_takes_bias_schemes_and_params():
    a = vt.init_(_init_model(), "kaiming_normal", seed=7, a=0.2)
    b = vt.init_(_init_model(), "kaiming_normal", seed=7, a=0.2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    model = vt.init_(nn.Linear(64, 300), "he_normal", seed=1, bias_scheme="torch_default_bias")
    bias = model.bias.detach().double()
    assert float(bias.abs().max()) <= 1 / math.sqrt(64) and float(bias.std()) > 0
    with pytest.raises(ValueError, match="initializer"):
        vt.init_(nn.Linear(3, 3), "no_such_scheme")
    with pytest.raises(ValueError, match="no Linear or Conv"):
        vt.init_(nn.ReLU(), "he_normal")


# ----------------------------------------------------------------------------- audit
def _kinds(findings, harmful=None):
    return [(f.layer, f.kind) for f in findings if harmful is None or f.harmful == harmful]


def test_audit_flags_the_default_init_harmless_before_a_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.BatchNorm1d(64),
                          nn.ReLU(), nn.Linear(64, 10))
    findings = vt.audit(model)
    assert _kinds(findings, harmful=True) == [("0", "torch_default_init"),
                                             ("5", "torch_default_init")]
    assert _kinds(findings, harmful=False) == [("2", "torch_default_init")]
    assert "1 / (3 fan_in)" in findings[0].message and findings[0].fix


def test_audit_flags_a_deepcopied_layer_and_the_selu_gain():
    torch.manual_seed(0)
    layers = []
    for _ in range(3):
        layer = nn.Linear(128, 128)
        nn.init.kaiming_normal_(layer.weight, nonlinearity="selu")  # gain 3/4
        nn.init.zeros_(layer.bias)
        layers += [layer, nn.SELU()]
    layers[2] = copy.deepcopy(layers[0])  # pytorch issue 72253
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    findings = vt.audit(model)
    assert ("2", "identical_weights") in _kinds(findings, harmful=True)
    assert "'0'" in next(f.message for f in findings if f.kind == "identical_weights")
    assert [layer for layer, kind in _kinds(findings) if kind == "selu_gain"] == ["0", "2", "4"]


def test_audit_predicts_vanishing_and_float16_underflow_in_a_deep_default_mlp():
    torch.manual_seed(0)
    model = mlp([64] + [64] * 20 + [10])
    findings = vt.audit(model, torch.randn(16, 64))
    kinds = {kind for _, kind in _kinds(findings, harmful=True)}
    assert {"torch_default_init", "vanishing", "float16_underflow"} <= kinds


@pytest.mark.parametrize("act, scheme", [(nn.ReLU, "he_normal"), (nn.SELU, "lecun_normal"),
                                         (nn.Tanh, "glorot_normal")])
def test_audit_finds_nothing_harmful_in_a_well_initialized_model(act, scheme):
    torch.manual_seed(0)
    model = vt.init_(mlp([32, 128, 128, 128, 128, 10], act), scheme, seed=0)
    findings = vt.audit(model, torch.randn(32, 32))
    assert _kinds(findings, harmful=True) == []


def test_audit_of_the_resnet_keeps_the_default_init_harmless_before_batchnorm():
    torch.manual_seed(0)
    findings = vt.audit(ResNetish(), torch.randn(8, 3, 8, 8))
    assert _kinds(findings, harmful=False) == [
        (name, "torch_default_init") for name in
        ("stem.0", "layer.0.conv1", "layer.0.conv2", "layer.1.conv1", "layer.1.conv2")]
    assert _kinds(findings, harmful=True) == [("fc", "torch_default_init")]


def test_audit_reports_an_untraceable_model_and_keeps_the_weight_checks():
    torch.manual_seed(0)

    class TwoHeads(nn.Module):  # two outputs: not one chain
        def __init__(self):
            super().__init__()
            self.body, self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 4), nn.Linear(16, 2)

        def forward(self, x):
            h = torch.relu(self.body(x))
            return self.a(h), self.b(h)

    model = TwoHeads()
    findings = vt.audit(model, torch.randn(4, 16))
    assert ("(model)", "not_analyzed") in _kinds(findings, harmful=False)
    assert ("body", "torch_default_init") in _kinds(findings)
    with pytest.raises(ValueError, match="alpha"):
        vt.audit(model, alpha=2.0)


# ----------------------------------------------------------------------------- compare
def test_compare_on_the_traced_resnet():
    torch.manual_seed(0)
    cmp = vt.compare(ResNetish(), torch.randn(8, 3, 8, 8), seeds=3, batch=128)
    assert isinstance(cmp, varprop.Comparison)
    assert len(cmp.analytic) == len(cmp.empirical) == 6
    assert not cmp.disagrees  # the log-space test at its 1% false-alarm rate


def test_import_varprop_does_not_import_torch():
    code = "import sys, varprop; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
