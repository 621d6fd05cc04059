"""varprop.keras (trace, init_, audit, compare) against references built independently:
hand-built varprop networks (varprop.mlp with the same initializer names), Keras's own
forward pass in float32, and fans and chi-square bounds computed here from the layer
shapes (skipped without keras; run on the torch backend).

Every statistical bound has a stated false-alarm rate ``ALPHA`` per check (the draws are
seeded, so each test is deterministic; the rate says how unusual a failure would be)."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
L = keras.layers

import varprop  # noqa: E402
import varprop.keras as vk  # noqa: E402

from _env import subprocess_env  # noqa: E402
from _adapter_checks import ALPHA, KURTOSIS, assert_profiles_equal, chi2_band  # noqa: E402

# Keras's variables under numpy 2 (its __array__ takes no copy keyword): Keras's warning
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

EPS32 = float(np.finfo(np.float32).eps)


def float32_tolerance(max_fan_in, depth):
    """A bound on |float32 model - float64 trace| relative to the output's scale: each
    layer's sums of ``fan_in`` float32 products carry a rounding error of about
    ``eps32 * sqrt(fan_in)`` of their size (a random walk of roundings), the layers add
    theirs (normalizations rescale errors with the signal), and a factor 10 covers the
    tail of that random walk."""
    return 10.0 * EPS32 * math.sqrt(max_fan_in) * depth


def assert_forward_matches(result, model, x, max_fan_in):
    want = keras.ops.convert_to_numpy(model(x, training=True))
    got = result.forward(x)
    assert got.shape == want.shape
    tol = float32_tolerance(max_fan_in, len(result.names)) * float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= tol


# ----------------------------------------------------------------------------- models
def resnet():
    """A functional ResNet-style CNN: stem conv-BN-ReLU, two basic blocks
    relu(x + alpha * bn(conv(relu(bn(conv(x)))))) (alpha 1 and 0.5, by Rescaling), max
    pooling, global average pooling and a Dense head."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    for i, alpha in enumerate((1.0, 0.5)):
        y = L.Conv2D(16, 3, padding="same", use_bias=False, name=f"b{i}_conv1")(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(16, 3, padding="same", use_bias=False, name=f"b{i}_conv2")(y)
        y = L.BatchNormalization()(y)
        if alpha != 1.0:
            y = L.Rescaling(alpha)(y)
        x = L.Add()([x, y])
        x = L.Activation("relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, name="head")(x), name="resnet")


def many_ops_2d():
    """Grouped, strided and dilated convolutions ("same" and "valid"), GroupNorm,
    LayerNorm over a whole sample, "same" average pooling (even padding), a flatten into
    a Dense, BatchNorm on features, Dropout, LeakyReLU/ELU/GELU/SiLU, a residual made
    with keras.ops's ``+`` and a Rescaling at its branch's end."""
    inp = keras.Input((10, 10, 4))
    x = L.Conv2D(6, 3, strides=2, padding="same", groups=2, activation="gelu")(inp)
    x = L.GroupNormalization(groups=3)(x)
    x = L.Conv2D(6, (3, 2), padding="same", dilation_rate=(1, 2), activation="silu")(x)
    x = L.LayerNormalization(axis=[1, 2, 3])(x)
    x = L.AveragePooling2D(3, strides=1, padding="same")(x)
    x = L.Dropout(0.0)(x)
    x = L.Flatten()(x)
    x = L.Dense(20)(x)
    x = L.BatchNormalization()(x)
    x = L.ELU(alpha=0.7)(x)
    y = L.LeakyReLU(negative_slope=0.1)(x)
    y = L.Dense(20, activation="tanh")(y)
    x = x + L.Rescaling(0.25)(y)
    return keras.Model(inp, L.Dense(3, activation="softsign")(x), name="many_ops_2d")


def many_ops_1d():
    """Causal dilated Conv1D, "same" max pooling with uneven padding, global pooling."""
    inp = keras.Input((15, 3))
    x = L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu")(inp)
    x = L.MaxPooling1D(2, padding="same")(x)
    x = L.Conv1D(8, 2, padding="valid", activation="selu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(4)(x), name="many_ops_1d")


def mlp(widths, activation="relu", **dense_kw):
    layers = [keras.Input((widths[0],))]
    for i, w in enumerate(widths[1:]):
        last = i == len(widths) - 2
        layers.append(L.Dense(w, activation=None if last else activation, **dense_kw))
    return keras.Sequential(layers)


def x_of(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- trace
def test_trace_mlp_equals_varprop_mlp_with_the_same_initializer_names():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32,)),
        L.Dense(64, activation="relu", kernel_initializer="he_normal"),
        L.Dense(64, activation="tanh"),  # Keras's defaults: glorot_uniform, zeros
        L.Dense(48, activation="elu", kernel_initializer=keras.initializers.Orthogonal(2.0),
                bias_initializer=keras.initializers.RandomNormal(0.1, 0.3)),
        L.Dense(10, kernel_initializer=keras.initializers.VarianceScaling(
            2.0, "fan_avg", "uniform"), bias_initializer=keras.initializers.Constant(0.5))])
    result = vk.trace(model)
    hand = varprop.mlp(
        [32, 64, 64, 48, 10], ["relu", "tanh", "elu", "linear"],
        ["he_normal", "glorot_uniform", {"name": "orthogonal", "gain": 2.0},
         {"name": "variance_scaling", "scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}],
        ["zeros", "zeros", {"name": "random_normal", "mean": 0.1, "stddev": 0.3},
         {"name": "constant", "value": 0.5}], final_activation=False)
    assert_profiles_equal(varprop.analyze(result.network), varprop.analyze(hand))
    assert [law.label for law in result.laws[0]] == ["he_normal", "zeros"]
    assert {law.source for laws in result.laws for law in laws} == {"initializer"}
    assert result.covered == 1.0 and result.unsupported == [] and result.notes == []
    assert result.next_op == {n: a for n, a in zip(result.names, ["relu", "tanh", "elu", "other"])}
    assert_forward_matches(result, model, x_of(7, 32), 64)


def test_trace_law_weights_reads_the_values_and_init_overrides():
    keras.utils.set_random_seed(1)
    model = mlp([64, 128, 96, 10], kernel_initializer="he_normal")
    model.layers[1].kernel.assign(np.full((128, 96), 0.01, np.float32))
    w = x_of(96, 10, seed=3) * np.float32(0.05)  # a normal no scheme has: its moments
    model.layers[2].kernel.assign(w)
    sd = math.sqrt(float(np.mean(w.astype(np.float64) ** 2)))  # the mean is within noise of 0
    result = vk.trace(model, law="weights")
    assert [laws[0].label for laws in result.laws] == [
        "he_normal", "constant(0.01)", f"random_normal(mean=0, stddev={sd:.4g})"]
    assert [laws[0].source for laws in result.laws] == ["matched", "constant", "moments"]
    # the configured law says he_normal, and notes that the values do not fit it
    configured = vk.trace(model)
    assert [laws[0].label for laws in configured.laws] == ["he_normal"] * 3
    assert sum("do not fit" in note for note in configured.notes) == 2
    named = vk.trace(model, init="lecun_normal")
    want = varprop.mlp([64, 128, 96, 10], "relu", "lecun_normal", final_activation=False)
    assert_profiles_equal(varprop.analyze(named.network), varprop.analyze(want))


def test_trace_reads_keras_named_fan_axes():
    """Keras 3.15's input_axes/output_axes fix the fans to the named axes alone: a conv
    kernel (3, 3, 64, 64) drawn with input_axes=[2] has variance scale / 64, not / 576."""
    keras.utils.set_random_seed(2)
    init = keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal",
                                              input_axes=[2], output_axes=[3])
    model = keras.Sequential([keras.Input((6, 6, 64)),
                              L.Conv2D(64, 3, kernel_initializer=init, use_bias=False)])
    w = model.layers[0].kernel.numpy().astype(np.float64)
    lo, hi = chi2_band(2.0 / 64, w.size, KURTOSIS["normal"])
    assert lo <= float(np.mean(w * w)) <= hi  # what Keras drew
    result = vk.trace(model)
    hand = varprop.Network((6, 6, 64), (varprop.Conv(64, 64, 3, varprop.random_normal(
        stddev=math.sqrt(2.0 / 64))),))
    assert_profiles_equal(varprop.analyze(result.network), varprop.analyze(hand))


def test_trace_resnet_structure_and_forward_match_keras():
    keras.utils.set_random_seed(0)
    model = resnet()
    x = x_of(8, 8, 8, 3)
    result = vk.trace(model, x)
    net = result.network
    assert net.layout == "keras" and net.input_width == (8, 8, 3)
    assert [type(layer).__name__ for layer in net.layers] == [
        "Conv", "BatchNorm", "Act", "Residual", "Act", "Residual", "Act", "MaxPool",
        "GlobalAvgPool", "Dense"]
    blocks = [layer for layer in net.layers if isinstance(layer, varprop.Residual)]
    assert [b.alpha for b in blocks] == [1.0, 0.5]
    for block in blocks:
        assert [type(layer).__name__ for layer in block.branch] == [
            "Conv", "BatchNorm", "Act", "Conv", "BatchNorm"]
        assert block.branch[0].padding == "same" and block.branch[0].bias_init is None
    assert result.names == ["stem", "b0_conv1", "b0_conv2", "b1_conv1", "b1_conv2", "head"]
    assert result.covered == 1.0 and result.notes == []
    assert result.next_op["stem"] == "norm" and result.next_op["head"] == "other"
    # the model's own weights through varprop's layers, against Keras (training=True:
    # BatchNorm with batch statistics), within the float32 bound
    assert_forward_matches(result, model, x, 16 * 9)
    profile = varprop.analyze(net)
    assert len(profile) == 6 and all(r.z_var > 0 and r.grad_var > 0 for r in profile)


@pytest.mark.parametrize("build, shape, fan", [(many_ops_2d, (6, 10, 10, 4), 150),
                                               (many_ops_1d, (5, 15, 3), 16)])
def test_trace_many_ops_forward_matches_keras(build, shape, fan):
    keras.utils.set_random_seed(3)
    model = build()
    result = vk.trace(model)
    assert_forward_matches(result, model, x_of(*shape), fan)
    if build is many_ops_2d:
        kinds = [type(layer).__name__ for layer in result.network.layers]
        assert {"GroupNorm", "LayerNorm", "AvgPool", "Flatten", "BatchNorm"} <= set(kinds)
        assert [b.alpha for b in result.network.layers if isinstance(b, varprop.Residual)] == [0.25]


def test_trace_nested_models_shared_layers_and_an_unbuilt_sequential():
    keras.utils.set_random_seed(4)
    block = keras.Sequential([keras.Input((16,)), L.Dense(16, activation="relu"), L.Dense(16)],
                             name="block")
    shared = L.Dense(16, activation="tanh", name="shared")
    inp = keras.Input((16,))
    x = shared(L.Add()([inp, block(inp)]))
    model = keras.Model(inp, L.Dense(4)(shared(x)))
    result = vk.trace(model)
    assert isinstance(result.network.layers[0], varprop.Residual)
    assert result.names.count("shared") == 2 and any("more than once" in n for n in result.notes)
    assert_forward_matches(result, model, x_of(9, 16), 16)
    unbuilt = keras.Sequential([L.Dense(8, activation="relu"), L.Dense(4)])
    assert vk.trace(unbuilt, x_of(3, 5)).network.input_width == 5 and unbuilt.built


def test_trace_with_a_scheme_uses_the_true_fans_of_a_grouped_convolution():
    model = keras.Sequential([keras.Input((6, 6, 8)), L.Conv2D(16, 3, groups=4, name="g")])
    conv = vk.trace(model, init="glorot_normal").network.layers[0]
    fan_in, fan_out = 9 * 8 // 4, 9 * 16 // 4  # each output sees 2 channels, each input feeds 4
    assert conv.init.moments((3, 3, 2, 16)).var == pytest.approx(2.0 / (fan_in + fan_out))
    # as configured, the law is Keras's draw, whose fan-out ignores the groups
    conv = vk.trace(model).network.layers[0]
    assert conv.init.moments((3, 3, 2, 16)).var == pytest.approx(2.0 / (fan_in + 9 * 16))


def test_trace_drops_a_softmax_head_and_notes_it():
    model = keras.Sequential([keras.Input((16,)), L.Dense(16, activation="relu"),
                              L.Dense(4), L.Softmax()])
    result = vk.trace(model)
    assert len(result.names) == 2 and any("softmax head" in n for n in result.notes)
    fused = keras.Sequential([keras.Input((16,)), L.Dense(4, activation="softmax")])
    assert isinstance(vk.trace(fused).network.layers[-1], varprop.Dense)
    inner = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="softmax"), L.Dense(4)])
    with pytest.raises(vk.UnsupportedLayerError, match="softmax only as the model's last"):
        vk.trace(inner)


@pytest.mark.parametrize("extra, name", [
    (lambda: L.PReLU(name="prelu"), "PReLU 'prelu'"),
    (lambda: L.GlobalMaxPooling1D(name="gmax"), "GlobalMaxPooling1D 'gmax'"),
    (lambda: L.ReLU(max_value=6.0, name="relu6"), "ReLU 'relu6'"),
    (lambda: L.Activation("hard_sigmoid", name="hs"), "Activation 'hs'"),
])
def test_trace_names_an_unsupported_layer(extra, name):
    layer = extra()
    shape = (5, 8) if "GlobalMax" in name else (8,)
    model = keras.Sequential([keras.Input(shape), L.Dense(8), layer, L.Dense(4)])
    with pytest.raises(ValueError, match=name) as info:
        vk.trace(model)
    assert isinstance(info.value, vk.UnsupportedLayerError)
    assert any(u.startswith(name) for u in info.value.unsupported)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch backend's padding")
def test_trace_refuses_uneven_same_average_pooling_on_torch():
    model = keras.Sequential([keras.Input((15, 2)), L.Conv1D(4, 3),
                              L.AveragePooling1D(2, padding="same", name="avg")])
    with pytest.raises(vk.UnsupportedLayerError, match="AveragePooling1D 'avg'.*replicating"):
        vk.trace(model)


def test_trace_refuses_a_projection_shortcut_naming_the_add():
    inp = keras.Input((8,))
    out = L.Add(name="proj_add")([L.Dense(8)(inp), L.Dense(8)(inp)])
    with pytest.raises(vk.UnsupportedLayerError, match="Add 'proj_add'.*projection shortcut"):
        vk.trace(keras.Model(inp, out))


def test_trace_refuses_recurrent_layers_it_cannot_keep_as_measured_only():
    # LSTM, GRU and SimpleRNN are kept as measured only (tests/test_keras_models.py); a
    # Bidirectional wrapper is named as unsupported
    model = keras.Sequential([keras.Input((12, 8)), L.Bidirectional(L.LSTM(16), name="bi"),
                              L.Dense(3, activation="softmax")])
    with pytest.raises(vk.UnsupportedLayerError, match=r"Bidirectional 'bi': recurrent "
                                                       r"layers other than LSTM") as info:
        vk.trace(model)
    assert info.value.unsupported == [u for u in info.value.unsupported if "'bi'" in u]


def test_trace_argument_errors():
    with pytest.raises(TypeError, match="model"):
        vk.trace("not a model")
    model = mlp([4, 3])
    with pytest.raises(ValueError, match="law"):
        vk.trace(model, law="values")
    with pytest.raises(ValueError, match="example_input"):
        vk.trace(model, np.zeros((2, 5), np.float32))  # the model takes 4 features
    with pytest.raises(ValueError, match="example_input"):
        vk.trace(keras.Sequential([L.Dense(3)]))  # unbuilt, no input shape


# ----------------------------------------------------------------------------- init_
# fans by hand: fan_in = inputs feeding one output unit, fan_out = outputs one input feeds
_FANS = {"dense": (256, 128),          # Dense 256 -> 128
         "grouped": (4 * 9, 8 * 9),    # Conv2D(32, 3, groups=4) on 16 channels: 16/4 in, 32/4 out
         # Conv2DTranspose(8, 3) on 16 channels: kernel (3, 3, 8, 16), 16 inputs feed each output
         "transposed": (16 * 9, 8 * 9)}
_SCHEMES = {"he_normal": ("truncated_normal", lambda fi, fo: 2.0 / fi),
            "he_uniform": ("uniform", lambda fi, fo: 2.0 / fi),
            "glorot_normal": ("truncated_normal", lambda fi, fo: 2.0 / (fi + fo)),
            "kaiming_normal": ("normal", lambda fi, fo: 2.0 / fi)}


def _init_model():
    inp = keras.Input((6, 6, 16))
    a = L.Conv2D(32, 3, groups=4, name="grouped")(inp)
    b = L.Conv2DTranspose(8, 3, name="transposed")(inp)
    return [keras.Model(inp, [a, b]),
            keras.Sequential([keras.Input((256,)), L.Dense(128, name="dense")])]


@pytest.mark.parametrize("scheme", sorted(_SCHEMES))
def test_init_moments_fit_the_scheme_at_the_true_fans(scheme):
    family, var_of = _SCHEMES[scheme]
    for model in _init_model():
        vk.init_(model, scheme, seed=0)
        for layer in model.layers:
            if layer.name not in _FANS:
                continue
            w = layer.kernel.numpy().astype(np.float64)
            var = var_of(*_FANS[layer.name])
            lo, hi = chi2_band(var, w.size, KURTOSIS[family])
            assert lo <= float(np.mean(w * w)) <= hi, (layer.name, np.mean(w * w), var)
            assert abs(float(w.mean())) <= stats.norm.ppf(1 - ALPHA / 2) * math.sqrt(var / w.size)
            assert np.count_nonzero(layer.bias.numpy()) == 0


def test_init_is_seeded_takes_params_and_trace_reads_its_scheme():
    a, b = mlp([64, 32, 10]), mlp([64, 32, 10])
    vk.init_(a, "kaiming_normal", seed=7, a=0.2)
    vk.init_(b, "kaiming_normal", seed=7, a=0.2)
    for p, q in zip(a.weights, b.weights):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    result = vk.trace(a)
    assert {laws[0].source for laws in result.laws} == {"init_"}
    assert result.laws[0][0].label.startswith("kaiming_normal(a=0.2")
    model = vk.init_(mlp([64, 300]), "he_normal", seed=1, bias_scheme="torch_default_bias")
    bias = model.layers[0].bias.numpy()
    assert float(np.abs(bias).max()) <= 1 / math.sqrt(64) and float(bias.std()) > 0
    with pytest.raises(ValueError, match="initializer"):
        vk.init_(mlp([3, 3]), "no_such_scheme")
    with pytest.raises(ValueError, match="no built Dense or Conv"):
        vk.init_(keras.Sequential([keras.Input((3,)), L.ReLU()]), "he_normal")


# ----------------------------------------------------------------------------- audit
def _kinds(findings, harmful=None):
    return [(f.layer, f.kind) for f in findings if harmful is None or f.harmful == harmful]


def test_audit_flags_glorot_before_relu_and_its_vanishing_signal():
    keras.utils.set_random_seed(0)
    model = mlp([64] + [64] * 20 + [10])  # Keras's defaults: glorot_uniform, zeros
    findings = vk.audit(model, x_of(16, 64))
    glorot = [layer for layer, kind in _kinds(findings, harmful=True)
              if kind == "glorot_before_relu"]
    assert glorot == [layer.name for layer in model.layers[:20]]  # all but the head
    assert "vanishing" in {k for _, k in _kinds(findings, True)}
    assert "he_normal" in findings[0].fix


def test_audit_keeps_glorot_harmless_when_a_norm_follows():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)), L.Dense(32, name="d0"),
                              L.BatchNormalization(), L.ReLU(), L.Dense(10, name="d1")])
    assert _kinds(vk.audit(model)) == [("d0", "glorot_before_relu")]
    assert not vk.audit(model)[0].harmful


def test_audit_flags_selu_with_glorot_and_identical_kernels():
    keras.utils.set_random_seed(0)
    # widths change, so Glorot's 2 / (fan_in + fan_out) is not LeCun's 1 / fan_in
    model = mlp([64, 256, 64, 256, 10], activation="selu")
    names = [layer.name for layer in model.layers]
    assert [layer for layer, kind in _kinds(vk.audit(model)) if kind == "selu_init"] == names[:3]
    vk.init_(model, "lecun_normal", seed=0)
    model.layers[2].kernel.assign(model.layers[0].kernel.numpy())  # 64 -> 256, twice
    findings = vk.audit(model)
    assert _kinds(findings, harmful=True) == [(names[2], "identical_weights")]


@pytest.mark.parametrize("act, scheme", [("relu", "he_normal"), ("selu", "lecun_normal"),
                                         ("tanh", "glorot_normal")])
def test_audit_finds_nothing_harmful_in_a_well_initialized_mlp(act, scheme):
    keras.utils.set_random_seed(0)
    model = mlp([32, 128, 128, 128, 128, 10], activation=act, kernel_initializer=scheme)
    assert _kinds(vk.audit(model, x_of(32, 32)), harmful=True) == []


def test_audit_reports_an_untraceable_model_and_keeps_the_kernel_checks():
    model = keras.Sequential([keras.Input((16,)), L.Dense(16), L.PReLU(), L.Dense(16),
                              L.ReLU(), L.Dense(4)])
    findings = vk.audit(model)
    assert ("(model)", "not_analyzed") in _kinds(findings, harmful=False)
    assert (model.layers[2].name, "glorot_before_relu") in _kinds(findings, harmful=True)
    with pytest.raises(ValueError, match="alpha"):
        vk.audit(model, alpha=2.0)


# ----------------------------------------------------------------------------- compare
def test_compare_on_a_traced_mlp_agrees():
    keras.utils.set_random_seed(0)
    model = mlp([32, 64, 64, 10], activation="tanh")
    cmp = vk.compare(model, x_of(16, 32), seeds=3, batch=256)
    assert isinstance(cmp, varprop.Comparison)
    assert len(cmp.analytic) == len(cmp.empirical) == 3
    assert not cmp.disagrees  # the log-space test at its 1% false-alarm rate


def test_compare_on_the_traced_resnet_runs():
    keras.utils.set_random_seed(0)
    cmp = vk.compare(resnet(), x_of(8, 8, 8, 3), seeds=2, batch=64)
    assert len(cmp.analytic) == len(cmp.empirical) == 6
    assert "z_var theory" in cmp.table()


def test_import_varprop_keras_does_not_import_keras():
    code = ("import sys, varprop, varprop.keras; "
            "print('keras' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "False"


def test_import_varprop_keras_does_not_import_torch():
    # a finder that refuses torch: varprop.keras and all its modules import without it
    # (only the torch backend's measurement, varprop/keras/_torch_run.py, needs it), and
    # the ``varprop model`` command registers without it
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        import varprop.keras, varprop.adapters.audit, varprop.adapters.measure
        import varprop.keras.audit, varprop.keras.command, varprop.keras.compare
        import varprop.keras.init, varprop.keras.profile, varprop.keras.trace
        import varprop.torch.command
        print(sorted(m for m in ("torch", "keras") if m in sys.modules),
              varprop.keras.Finding.__module__, callable(varprop.keras.profile))
    """)
    env = {k: v for k, v in subprocess_env().items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "varprop.adapters.audit", "True"]
