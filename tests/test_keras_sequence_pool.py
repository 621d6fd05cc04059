"""A Keras recurrent layer with ``return_sequences=True`` followed by a pooling over its
steps (skipped without keras; torch backend).

The steps of one sequence are correlated, and the theory after a measured-only layer
takes the steps of its output as independent, so a ``GlobalAveragePooling1D`` right
after it would be under-predicted (by about the number of steps). The pooling is
measured with the recurrent layer instead; a pooling further down (after a Conv1D) is
flagged approximate in the trace's notes, the comparison's table and the command's
outputs. The reference is the Keras model itself, measured (the log-space test of
docs/comparison.md at its 1% false-alarm rate; seeded draws, so deterministic).
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

import varprop.keras as vk  # noqa: E402
from varprop.adapters.compare import APPROXIMATE  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def pooled(units, cell=L.LSTM, dropout=False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((24, 8)), cell(units, return_sequences=True, name="rnn")]
    layers += [L.Dropout(0.3)] if dropout else []
    layers += [L.GlobalAveragePooling1D(name="gap"), L.Dense(units, activation="relu"),
               L.Dense(units)]
    return keras.Sequential(layers)


def _x(shape):
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("units", [32, 128])
def test_pooling_over_the_steps_is_measured_with_the_recurrent_layer(units):
    """Before: the Dense after the pooling was predicted ~6x below the measurement
    (z = +24 at units 64); now theory meets the model at every width."""
    model = pooled(units)
    result = vk.trace(model, _x((16, 24, 8)))
    (m,) = result.measured
    assert m.name == "LSTM 'rnn' (+ GlobalAveragePooling1D 'gap')"
    assert m.layer.out_width == units  # the op hands on the pooled (batch, units)
    cmp = vk.compare(model, _x((64, 24, 8)), seeds=3)
    assert cmp.agree, cmp.table()
    assert cmp.measured_only[0]["recurrent_theory"] is None  # per-step theory: not beside it
    assert cmp.approximate == []


@pytest.mark.parametrize("cell", [L.GRU, L.SimpleRNN])
def test_other_cells_and_dropout_before_the_pooling(cell):
    model = pooled(32, cell, dropout=True)
    (m,) = vk.trace(model, _x((16, 24, 8))).measured
    assert "(+ GlobalAveragePooling1D" in m.name and len(m.pooled) == 2  # Dropout, pooling
    cmp = vk.compare(model, _x((64, 24, 8)), seeds=3)
    assert cmp.agree, cmp.table()


def conv_then_pool():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((24, 8)), L.LSTM(32, return_sequences=True,
                                                          name="rnn"),
                             L.Conv1D(32, 3, activation="relu"), L.GlobalAveragePooling1D(),
                             L.Dense(16)])


def test_a_later_pooling_over_the_steps_is_flagged_approximate():
    model = conv_then_pool()
    result = vk.trace(model, _x((16, 24, 8)))
    flagged = [n for n in result.notes if APPROXIMATE in n]
    assert len(flagged) == 1 and flagged[0].startswith("GlobalAveragePooling1D")
    assert "LSTM 'rnn'" in flagged[0] and "correlated" in flagged[0]
    cmp = vk.compare(model, _x((32, 24, 8)), seeds=2)
    assert cmp.approximate == flagged
    assert f"approximate: {flagged[0]}" in cmp.table()


def test_no_flag_without_a_pooling_over_the_steps():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((24, 8)), L.LSTM(16, return_sequences=True),
                              L.Flatten(), L.Dense(16)])
    result = vk.trace(model, _x((16, 24, 8)))
    assert not any(APPROXIMATE in n for n in result.notes)
    assert result.measured[0].pooled == ()


MODEL_FILE = '''
import keras
from keras import layers as L


def build():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((24, 8)),
                             L.LSTM(32, return_sequences=True, name="rnn"),
                             L.Conv1D(32, 3, activation="relu"), L.GlobalAveragePooling1D(),
                             L.Dense(16)])
'''


def test_command_outputs_carry_the_flag(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from varprop.torch.command import add_model_parser, run_model
    (tmp_path / "knet.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser(prog="varprop")
    add_model_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "knet.py:build", "--input-shape", "16", "24", "8",
                              "--seeds", "2", "--format", "json", "--out", "k.html", "-q"])
    assert run_model(args) == 0
    doc = json.loads(capsys.readouterr().out)
    (flag,) = doc["comparison"]["approximate"]
    assert APPROXIMATE in flag and flag in doc["notes"]
    page = (tmp_path / "k.html").read_text()
    assert page.count("from here on is approximate") >= 2  # under the table, in the notes
    rows = [r for r in doc["comparison"]["rows"] if r.get("measured_only")]
    assert {r["op"] for r in rows} == {"LSTM 'rnn'"}
