"""A PyTorch LSTM/GRU that returns its steps, followed by a mean or pooling over time
(skipped without torch).

Read as a sequence (the default for a ``batch_first`` recurrent layer reading the
input), the mean over time joins the recurrent layer's measured-only op: it is measured,
and the gated mean field is not put beside it (its per-step variance is not a
prediction of the mean over correlated steps). Read as channels-first images
(``input_kind="image"``), the pooling after the op is theory that takes the steps as
independent: flagged approximate in the notes and the comparison's table. References:
the PyTorch model itself, measured (log-space test at its 1% false-alarm rate; seeded).
"""

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import varprop.torch as vt  # noqa: E402
from varprop.adapters.compare import APPROXIMATE  # noqa: E402


class Pooled(nn.Module):
    """rnn(x) -> mean over time (or the last step) -> Linear -> ReLU -> Linear."""

    def __init__(self, width, reduce="mean", cell=nn.LSTM):
        super().__init__()
        self.rnn = cell(8, width, batch_first=True)
        self.fc0, self.fc1 = nn.Linear(width, width), nn.Linear(width, width)
        self.reduce = reduce

    def forward(self, x):
        h = self.rnn(x)[0]
        h = h.mean(1) if self.reduce == "mean" else h[:, -1]
        return self.fc1(torch.relu(self.fc0(h)))


class AdaptivePooled(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.rnn, self.pool = nn.LSTM(8, width, batch_first=True), nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return self.fc(self.pool(self.rnn(x)[0].transpose(1, 2)).squeeze(-1))


@pytest.mark.parametrize("width", [32, 128])
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_mean_over_time_is_measured_and_has_no_gated_theory_beside_it(width, cell):
    torch.manual_seed(0)
    model, x = Pooled(width, cell=cell), torch.randn(64, 24, 8)
    result = vt.trace(model, x)
    (op,) = result.measured
    assert op.pooled and op.name.startswith(f"{cell.__name__} at 'rnn'")
    cmp = vt.compare(model, x, seeds=3)
    assert cmp.agree, cmp.table()
    assert cmp.measured_only[0]["recurrent_theory"] is None
    assert "gated theory beside it" not in cmp.table()


def test_last_step_keeps_its_gated_theory():
    torch.manual_seed(0)
    model = Pooled(32, reduce="last")
    (op,) = vt.trace(model, torch.randn(16, 24, 8)).measured
    assert not op.pooled and op.last
    cmp = vt.compare(model, torch.randn(64, 24, 8), seeds=2)
    assert cmp.measured_only[0]["recurrent_theory"]["what"] == "Var[h] at the last step"


def test_adaptive_pool_after_an_lstm_sequence_vs_image_reading():
    torch.manual_seed(0)
    model, x = AdaptivePooled(64), torch.randn(64, 24, 8)
    seq = vt.trace(model, x)  # auto: the batch_first LSTM reads (batch, T, features)
    assert seq.sequence and seq.measured[0].pooled
    assert not any(APPROXIMATE in n for n in seq.notes)
    image = vt.trace(model, x, input_kind="image")
    flagged = [n for n in image.notes if APPROXIMATE in n]
    assert len(flagged) == 1 and flagged[0].startswith("AdaptiveAvgPool1d at 'pool'")
    cmp = vt.compare(model, x, seeds=2, input_kind="image")
    assert cmp.approximate == flagged and f"approximate: {flagged[0]}" in cmp.table()
