"""varprop's recurrent theory beside a user's recurrent layer (docs/torch.md,
docs/keras.md): the Elman mean field beside a PyTorch ``nn.RNN`` or a Keras
``SimpleRNN``, the gated one beside an LSTM; skipped without torch (and Keras).

References: the model itself, measured by the adapter (the state's variance over seeds,
with its 95% half-width ``ci``); Keras's documented SimpleRNN defaults built by hand.
A theory and a measurement agree when ``|theory - measured| <= Z * ci / 1.96``, a
two-sided test at a 0.1% false-alarm rate (the seeds are fixed). At these widths the
mean field's finite-width bias (O(1/H), docs/theory.md section 11) is well below the
measurement's standard error.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import varprop.torch as vt  # noqa: E402
from varprop.recurrent import SimpleRNN, analyze_rnn  # noqa: E402

Z = 3.29  # two-sided, 0.1%


def _agrees(theory: float, row: dict) -> bool:
    return abs(theory - row["out_var"]) <= Z * row["out_var_ci"] / 1.96


class LastStep(nn.Module):
    """A recurrent layer read at its last step, then a two-class head."""

    def __init__(self, cell, units, **kw):
        super().__init__()
        self.rnn, self.head = cell(10, units, batch_first=True, **kw), nn.Linear(units, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _row(model, x, seeds=4):
    cmp = vt.compare(model, x, seeds=seeds)
    (row,) = cmp.measured_only
    return cmp, row, row["recurrent_theory"]


def test_torch_rnn_gets_the_elman_theory_beside_it():
    torch.manual_seed(0)
    model = LastStep(nn.RNN, 256)  # PyTorch's default U(-1/sqrt(H), 1/sqrt(H)) everywhere
    cmp, row, theory = _row(model, torch.randn(64, 20, 10))
    assert theory["label"] == "Elman theory" and "tanh" in theory["cell"]
    assert theory["what"] == "Var[h] at the last step"
    assert _agrees(theory["var"], row), (theory, row)
    # the sample mean of a centred draw is noise, not a non-centred law
    assert "non_centred" not in theory["approximate"]
    assert "Elman theory beside it (Var[h] at the last step)" in cmp.table()


def test_torch_irnn_is_read_as_the_identity_and_gets_its_exact_law():
    # IRNN (Le et al. 2015): identity recurrence, ReLU, zero biases. Each unit is a
    # reflected random walk over its inputs, far from a Gaussian of the same moments.
    torch.manual_seed(0)
    model = LastStep(nn.RNN, 128, nonlinearity="relu")
    with torch.no_grad():
        nn.init.eye_(model.rnn.weight_hh_l0)
        nn.init.normal_(model.rnn.weight_ih_l0, 0.0, 0.1)
        model.rnn.bias_ih_l0.zero_()
        model.rnn.bias_hh_l0.zero_()
    _, row, theory = _row(model, torch.randn(64, 30, 10))
    assert "identity" in theory["cell"] and theory["approximate"] == []
    assert _agrees(theory["var"], row), (theory, row)
    # what reading the identity as a Gaussian of its entries' moments would predict:
    # the measurement rules it out (by orders of magnitude)
    h = 128
    gaussian = analyze_rnn(SimpleRNN(10, h, "relu", {"name": "random_normal", "stddev": 0.1},
                                     {"name": "random_normal", "mean": 1 / h,
                                      "stddev": math.sqrt(1 / h - 1 / h ** 2)}, None),
                           30, input_var=row["in_var"])[-1].a_var
    assert not _agrees(gaussian, row)


def test_torch_lstm_with_zeroed_biases_gets_the_gated_theory():
    # zeroed biases have variance 0: read as the constant, not as a Gaussian of
    # standard deviation 0 (which the registry refuses)
    torch.manual_seed(0)
    model = LastStep(nn.LSTM, 64)
    with torch.no_grad():
        model.rnn.bias_ih_l0.zero_()
        model.rnn.bias_hh_l0.zero_()
    _, row, theory = _row(model, torch.randn(64, 20, 10), seeds=2)
    assert theory["label"] == "gated theory" and theory["approximate"] == ["gated"]
    # the gated mean field is approximate (docs/gated.md): within a factor 1.5
    assert 1 / 1.5 < theory["var"] / row["out_var"] < 1.5


def test_keras_simple_rnn_gets_the_elman_theory_of_its_configured_initializers(
        monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    import varprop.keras as vk
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 8))
    out = keras.layers.Dense(2, name="head")(keras.layers.SimpleRNN(128, name="rnn")(inp))
    x = np.random.default_rng(0).standard_normal((64, 12, 8)).astype("float32")
    cmp = vk.compare(keras.Model(inp, out), x, seeds=4)
    (row,) = cmp.measured_only
    theory = row["recurrent_theory"]
    # Keras's documented SimpleRNN defaults, by hand: tanh, glorot_uniform input
    # kernel, orthogonal recurrent kernel, zero bias
    hand = analyze_rnn(SimpleRNN(8, 128, "tanh", "glorot_uniform", "orthogonal", "zeros"),
                       12, input_var=row["in_var"])
    assert theory["var"] == pytest.approx(hand[-1].a_var, rel=1e-12)
    assert _agrees(theory["var"], row), (theory, row)
    assert "Elman theory beside it" in cmp.table()
