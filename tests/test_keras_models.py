"""Keras versions of the test models (a ResNet-style CNN with BatchNormalization, an MLP
with Keras's defaults, an LSTM classifier whose LSTM is measured only), traced,
profiled, compared and audited, and the ``varprop model`` command on a Keras model
(skipped without keras; run on the torch backend).

The independent reference of :func:`varprop.keras.profile` is :func:`varprop.measure`
of the traced network with the same seeds: the same weights, inputs and output
gradients, run on varprop's own kernels instead of Keras's layers, so in float64 the
two agree to rounding. Keras 3.15's type promotion computes float64 tensors in float32
on the non-TensorFlow backends (``keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE``
maps float64 to float32, "to be aligned with JAX's default"): a float64 model's Dense
and BatchNormalization round to float32. The float64 tests switch that demotion off
(``float64_keras``), so that the comparison is of the arithmetic, not of Keras's
precision policy.

Statistical checks use the log-space test of docs/comparison.md at its 1% false-alarm
rate; the draws are seeded, so every test is deterministic.
"""

import argparse
import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - CI runs the torch backend
    pytest.skip("varprop.keras.profile measures on Keras's torch backend",
                allow_module_level=True)
L = keras.layers

import varprop  # noqa: E402
import varprop.keras as vk  # noqa: E402
from varprop.reporting.output import UsageError  # noqa: E402
from varprop.torch.command import add_model_parser, run_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var",
          "channel_sq_mean", "channel_var")


# ----------------------------------------------------------------------------- models
def resnet(dropout=0.0, init="glorot_uniform"):
    """A functional ResNet-style CNN: stem conv-BN-ReLU, two basic blocks
    relu(x + alpha * bn(conv(relu(bn(conv(x)))))) (alpha 1 and 0.5, by Rescaling),
    max pooling, global average pooling, Dropout, a ReLU Dense and a softmax head;
    ``init`` the convolutions' kernel_initializer (Keras's default: glorot_uniform)."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", kernel_initializer=init, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    for i, alpha in enumerate((1.0, 0.5)):
        y = L.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer=init,
                     name=f"b{i}_conv1")(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer=init,
                     name=f"b{i}_conv2")(y)
        y = L.BatchNormalization()(y)
        if alpha != 1.0:
            y = L.Rescaling(alpha)(y)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.MaxPooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(dropout)(x)
    x = L.Dense(32, activation="relu", kernel_initializer="he_normal", name="fc")(x)
    return keras.Model(inp, L.Dense(10, activation="softmax", name="head")(x), name="resnet")


def mlp(widths=(64, 128, 128, 128, 10), activation="relu", **dense_kw):
    """A Sequential MLP with Keras's defaults (glorot_uniform kernels, zero biases)."""
    layers = [keras.Input((widths[0],))]
    for i, w in enumerate(widths[1:]):
        last = i == len(widths) - 2
        layers.append(L.Dense(w, activation=None if last else activation,
                              name=f"dense_{i}", **dense_kw))
    return keras.Sequential(layers, name="mlp")


def x_of(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture
def float64_keras(monkeypatch):
    """Models built in float64 that compute in float64 (module doc)."""
    from keras.src.backend.common import dtypes
    monkeypatch.setitem(dtypes.BIT64_TO_BIT32_DTYPE, "float64", "float64")
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")  # the global policy is cached from floatx on first
    keras.config.set_dtype_policy("float64")  # use: set both, restore both
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


def _snapshot(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]


# ----------------------------------------------------------------------------- profile
@pytest.mark.parametrize("build, shape, batch", [
    (resnet, (4, 8, 8, 3), 16), (lambda: mlp(activation="tanh"), (4, 64), 32)])
def test_profile_equals_measure_of_the_traced_network_seed_for_seed(float64_keras, build,
                                                                     shape, batch):
    keras.utils.set_random_seed(0)
    model = build()
    x = np.random.default_rng(1).standard_normal(shape)
    got = vk.profile(model, x, seeds=[0, 3], batch=batch)
    want = varprop.measure(vk.trace(model, x).network, seeds=[0, 3], batch=batch,
                           dtype=np.float64)
    assert got.meta["dtype"] == "float64" and len(got) == len(want)
    for field in FIELDS:
        np.testing.assert_allclose(got.column(field), want.column(field), rtol=1e-12,
                                   atol=1e-300, err_msg=field)
    np.testing.assert_allclose(got.seed_column("grad_var"), want.seed_column("grad_var"),
                               rtol=1e-12)
    assert sorted(got.maps) == sorted(want.maps)
    for i in want.maps:
        for name in want.maps[i]:
            np.testing.assert_allclose(got.maps[i][name], want.maps[i][name], rtol=1e-12,
                                       atol=1e-300)


def test_profile_of_the_resnet_lines_up_with_analyze_and_restores_the_model():
    keras.utils.set_random_seed(0)
    model = resnet(dropout=0.5)
    x = x_of(8, 8, 8, 3)
    before = _snapshot(model)
    result = vk.trace(model, x)
    cmp = vk.compare(model, x, seeds=3, batch=64)  # measure="model": the model itself
    got, theory = cmp.empirical, cmp.analytic
    assert len(got) == len(theory) == 7
    assert [(r.index, r.n_in, r.n_out) for r in got] == \
        [(r.index, r.n_in, r.n_out) for r in theory]
    assert got.meta["layers"] == result.names and got.meta["batch"] == 64
    assert "BatchNormalization in training mode" in got.meta["modes"]
    assert sorted(got.maps) == [0, 1, 2, 3, 4] and got.maps[1]["z_var"].shape == (8, 8)
    # dropout 0.5 off while measured: its rescaling by 2 would double fc's variance
    assert not cmp.disagrees, cmp.table()
    after = _snapshot(model)  # kernels, biases, BatchNormalization's moving statistics
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_compare_of_a_keras_default_mlp_agrees_and_measure_traced_still_works():
    keras.utils.set_random_seed(0)
    model = mlp()
    x = x_of(128, 64)
    cmp = vk.compare(model, x, seeds=4)  # the model, glorot_uniform as Keras drew it
    assert cmp.empirical.meta["measured"].startswith("the Keras model itself")
    assert not cmp.disagrees, cmp.table()
    # glorot before ReLU at 128 -> 128: Var[z'] = 128 * 2 / 256 * E[relu(z)^2], half of
    # Var[z] for zero-mean Gaussian z (the theory; the measurement agrees, above)
    theory = cmp.analytic
    assert theory[2].z_var / theory[1].z_var == pytest.approx(0.5, rel=1e-6)
    assert theory[3].z_var / theory[2].z_var == pytest.approx(128 * 2 / 138 / 2, rel=1e-6)
    traced = vk.compare(model, x, seeds=2, measure="traced")
    assert "measured" not in traced.empirical.meta or \
        "Keras" not in str(traced.empirical.meta.get("measured"))
    with pytest.raises(ValueError, match="measure must be one of"):
        vk.compare(model, x, measure="both")


def test_profile_with_a_scheme_and_the_backend_check(monkeypatch):
    keras.utils.set_random_seed(0)
    model = mlp((64, 256, 256, 10))
    x = x_of(128, 64)
    p = vk.profile(model, x, seeds=3, init="he_normal")
    # He after ReLU keeps E[z^2] = 2 Var[z_prev] E[relu^2] / 2: Var[z] = 2 * 1/2 * Var
    theory = varprop.analyze(vk.trace(model, x, init="he_normal").network)
    cmp = varprop.compare(vk.trace(model, x, init="he_normal").network, batch=128,
                          analytic=theory, empirical=p)
    assert not cmp.disagrees
    with pytest.raises(ValueError, match="seeds"):
        vk.profile(model, x, seeds=[1, 1])
    with pytest.raises(ValueError, match="batch"):
        vk.profile(model, x[:1])
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(NotImplementedError, match="torch backend.*'jax'.*measure='traced'"):
        vk.profile(model, x)


# ----------------------------------------------------------------------------- audit
def test_audit_of_the_models():
    keras.utils.set_random_seed(0)
    deep = mlp((64,) + (128,) * 6 + (10,))
    kinds = {(f.layer, f.kind, f.harmful) for f in vk.audit(deep, x_of(64, 64))}
    # glorot_uniform before ReLU at every hidden layer: harmful; the forward variance is
    # 64 * 2 / 192 = 2/3 at dense_0, then halves per layer: 2/3 / 8 at dense_3, beyond
    # the audit's one decade since the input (0.083 < 0.1), 2/3 / 4 at dense_2 within it
    assert {(f"dense_{i}", "glorot_before_relu", True) for i in range(6)} <= kinds
    vanishing = {layer for layer, kind, _ in kinds if kind == "vanishing"}
    assert {"dense_3", "dense_4", "dense_5"} <= vanishing and "dense_2" not in vanishing
    # Keras's default ResNet: glorot before BatchNorm + ReLU is harmless there
    found = vk.audit(resnet(), x_of(8, 8, 8, 3))
    assert {(f.layer, f.harmful) for f in found if f.kind == "glorot_before_relu"} == \
        {("stem", False), ("b0_conv1", False), ("b1_conv1", False)}
    # initialized for its ReLUs: nothing harmful
    harmful = [f for f in vk.audit(resnet(init="he_normal"), x_of(8, 8, 8, 3)) if f.harmful]
    assert harmful == [], harmful
    fixed = vk.init_(mlp(), "he_normal", seed=0)
    assert [f for f in vk.audit(fixed, x_of(64, 64)) if f.harmful] == []


def lstm_classifier():
    """Sequences (12 steps, 8 features) -> LSTM(32) -> Dense(64, ReLU, He) -> softmax."""
    return keras.Sequential([keras.Input((12, 8)), L.LSTM(32, name="lstm"),
                             L.Dense(64, activation="relu", kernel_initializer="he_normal",
                                     name="fc"),
                             L.Dense(3, activation="softmax", name="head")], name="lstm_clf")


def test_an_lstm_classifier_is_measured_only_and_the_theory_re_anchored_on_it():
    keras.utils.set_random_seed(0)
    model, x = lstm_classifier(), x_of(64, 12, 8)
    result = vk.trace(model, x)
    assert [m.name for m in result.measured] == ["LSTM 'lstm'"]
    assert any("LSTM 'lstm': measured only" in n for n in result.notes)
    assert result.names == ["fc", "head"] and result.covered < 1.0
    cmp = vk.compare(model, x, seeds=4)
    (row,) = cmp.empirical.meta["measured_only"]
    assert row["op"] == "LSTM 'lstm'" and row["after"] == 0
    assert 0 < row["out_var"] < 1 and row["grad_var"] > 0  # tanh-bounded states, and the
    # gradient reaching the LSTM's input
    # He after the re-anchor: Var[z_fc] = 32 * (2 / 32) * E[h^2], h the LSTM's output
    # measured (mean and variance), zero biases
    assert cmp.analytic[0].z_var == pytest.approx(
        2 * (row["out_var"] + row["out_mean"] ** 2), rel=1e-9)
    assert not cmp.disagrees, cmp.table()
    table = cmp.table()
    assert table.index("LSTM 'lstm'") < table.index("\n    0 ") and "measured only" in table
    # the gated theory beside it: Keras's documented LSTM defaults (glorot_uniform,
    # orthogonal, zero bias with unit_forget_bias), built here by hand, 12 steps of
    # standard-normal inputs (the measured input variance is the inputs' own)
    from varprop.recurrent.gated import LSTM, analyze_gated
    hand = analyze_gated(LSTM(8, 32, "glorot_uniform", "orthogonal", "zeros", "keras",
                              unit_forget_bias=True), 12, input_var=row["in_var"])
    assert cmp.measured_only[0]["recurrent_theory"]["var"] == pytest.approx(hand[-1].a_var,
                                                                      rel=1e-12)
    assert abs(row["in_var"] - 1.0) < 0.1  # 4 seeds x 64 x 12 x 8 standard normals
    with pytest.raises(ValueError, match="measured-only layers .*LSTM 'lstm'"):
        vk.compare(model, x, measure="traced")
    assert [(f.kind, f.harmful) for f in vk.audit(model, x)] == [("not_analyzed", False)]


# ----------------------------------------------------------------------------- command
MODEL_FILE = '''
import keras
L = keras.layers

def build():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    y = L.Conv2D(8, 3, padding="same", name="conv2")(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(16, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(4, activation="softmax", name="head")(x))
'''


def _args(*argv):
    parser = argparse.ArgumentParser(prog="varprop")
    add_model_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["model", *argv])


def test_command_on_a_keras_model(tmp_path, monkeypatch, capsys):
    (tmp_path / "knet.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    args = _args("knet.py:build", "--input-shape", "8", "6", "6", "3", "--seeds", "2",
                 "--out", "report.html", "-q")
    assert run_model(args) == 0
    text = capsys.readouterr().out
    assert text.index("audit: ") < text.index("theory vs measured")
    assert "harmful   fc: glorot_before_relu" in text and "measured: the Keras model" in text
    layers = text.split("layers:")[1]
    assert all(name in layers for name in ("stem", "conv1", "conv2", "fc", "head"))
    assert "Conv2D" in layers and "Dense" in layers
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "glorot_before_relu" in page
    assert run_model(_args("knet.py:build", "--input-shape", "4", "6", "6", "3", "--seeds",
                           "2", "--format", "json", "-q")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"]["framework"] == "Keras"
    assert [layer["module"] for layer in doc["layers"]] == ["stem", "conv1", "conv2", "fc",
                                                            "head"]
    assert len(doc["theory"]["records"]) == len(doc["measured"]["records"]) == 5
    with pytest.raises(UsageError, match="--input-shape 4 3 6 6: build.. does not take it "
                                         r"\(channels last for Keras\)"):
        run_model(_args("knet.py:build", "--input-shape", "4", "3", "6", "6"))
