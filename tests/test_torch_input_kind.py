"""``input_kind``: the user says whether a rank-3 input is a sequence ``(batch, T,
features)`` or channels-first images ``(batch, C, L)``; "auto" decides only where the
ops that read the input agree, and asks (a ValueError naming ``input_kind``) where they
do not (skipped without torch).

References: the mean field of a hand-built varprop network (the image reading of a
flattened input is one Dense of C*L fans), the layers' own shapes, and the error text.
"""

import argparse

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import varprop  # noqa: E402
import varprop.torch as vt  # noqa: E402
from varprop.reporting.output import UsageError  # noqa: E402
from varprop.torch.command import add_model_parser, run_model  # noqa: E402


class TwoReaders(nn.Module):
    """The input read channels first (Conv1d) and features last (Linear) at once."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv1d(8, 8, 1), nn.Linear(8, 8)

    def forward(self, x):
        return (self.conv(x) + self.fc(x)).flatten(1)


def flat_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6 * 10, 32), nn.ReLU(), nn.Linear(32, 4))


def test_ambiguous_rank3_input_asks_for_input_kind():
    with pytest.raises(ValueError, match=r"input_kind='sequence'.*input_kind='image'") as info:
        vt.trace(flat_mlp(), torch.randn(16, 6, 10))
    assert "first read by Flatten at '0'" in str(info.value)
    with pytest.raises(ValueError, match="read both as images .Conv1d at 'conv'. and as a "
                                         "sequence .Linear at 'fc'."):
        vt.trace(TwoReaders(), torch.randn(16, 8, 8))


def test_input_kind_image_reads_a_flattened_input_as_features():
    """Read as images, Flatten -> Linear(60, 32) is a Dense of 60 fans: its z_var is the
    mean field of the same Dense built by hand (PyTorch's default law: 1/(3 fan_in))."""
    model, x = flat_mlp(), torch.randn(16, 6, 10)
    result = vt.trace(model, x, input_kind="image")
    assert not result.sequence and not result.measured
    assert result.network.input_shape == (10, 6)  # channels last: (L, C)
    hand = varprop.Network(60, (varprop.layers.Dense(60, 32, "torch_default",
                                                     {"name": "torch_default_bias",
                                                      "fan_in": 60}),))
    want = varprop.analyze(hand)[0].z_var
    assert varprop.analyze(result.network)[0].z_var == pytest.approx(want, rel=1e-12)


def test_input_kind_sequence_makes_the_tokens_rows():
    model, x = flat_mlp(), torch.randn(16, 6, 10)
    result = vt.trace(model, x, input_kind="sequence")
    assert result.sequence  # the flatten mixes tokens: measured only
    assert [op.name for op in result.measured] == ["Flatten at '0'"]


@pytest.mark.parametrize("model, x, sequence", [
    (nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 4)),
     torch.randn(8, 5, 10), True),
    (nn.Sequential(nn.Dropout(0.1), nn.Tanh(), nn.Linear(10, 4)), torch.randn(8, 5, 10), True),
    (nn.Sequential(nn.Conv1d(5, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4)),
     torch.randn(8, 5, 10), False),
])
def test_auto_decides_where_unambiguous_and_equals_the_explicit_kind(model, x, sequence):
    auto = vt.trace(model, x)
    assert auto.sequence is sequence
    explicit = vt.trace(model, x, input_kind="sequence" if sequence else "image")
    assert explicit.network.describe() == auto.network.describe()


@pytest.mark.parametrize("value, error", [("images", ValueError), ("Sequence", ValueError),
                                          (3, TypeError), (None, TypeError)])
@pytest.mark.parametrize("call", ["trace", "profile", "compare", "audit"])
def test_bad_input_kind_names_the_argument(call, value, error):
    model = nn.Sequential(nn.Linear(10, 4))
    with pytest.raises(error, match="input_kind"):
        getattr(vt, call)(model, torch.randn(8, 5, 10), input_kind=value)


@pytest.mark.parametrize("x, kind", [
    (torch.randn(8, 10), "sequence"), (torch.randn(8, 10), "image"),
    (torch.randn(8, 3, 4, 4), "sequence"),
])
def test_input_kind_that_does_not_fit_the_input(x, kind):
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 4))
    with pytest.raises(ValueError, match=f"input_kind='{kind}' needs a rank-3"):
        vt.trace(model, x, input_kind=kind)


def test_tokens_refuse_input_kind_image():
    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 4))
    with pytest.raises(ValueError, match="input_kind='image' does not fit integer token"):
        vt.trace(model, torch.randint(0, 20, (8, 5)), input_kind="image")
    assert vt.trace(model, torch.randint(0, 20, (8, 5)), input_kind="sequence").sequence


def test_audit_reports_an_ambiguous_input_as_not_analyzed():
    findings = vt.audit(flat_mlp(), torch.randn(16, 6, 10))
    kinds = {f.kind: f for f in findings}
    assert "input_kind" in kinds["not_analyzed"].message
    assert not any(f.kind == "vanishing" for f in findings)


MODEL_FILE = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(60, 32), nn.ReLU(), nn.Linear(32, 4))
'''


def _args(*argv):
    parser = argparse.ArgumentParser(prog="varprop")
    add_model_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["model", *argv])


def test_command_asks_for_input_kind_and_takes_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--input-kind 'sequence'.*--input-kind 'image'"):
        run_model(_args("net.py:build", "--input-shape", "8", "6", "10", "-q"))
    assert run_model(_args("net.py:build", "--input-shape", "8", "6", "10", "--seeds", "2",
                           "--input-kind", "image", "-q")) == 0
    assert "theory vs measured" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _args("net.py:build", "--input-shape", "8", "6", "10", "--input-kind", "img")
