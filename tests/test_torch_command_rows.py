"""``varprop model``: a measured-only op (an op without theory, here an LSTM) is a row of
the theory-vs-measured table in every format, in model order, with its measured values,
no theory and "measured only" where the verdict would be (skipped without torch).

The reference is the command's own JSON (``comparison.rows``, whose measured-only rows
come from the profile's ``meta["measured_only"]``) and the model's layer order.
"""

import argparse
import json
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")  # the HTML page's figures

from varprop.reporting.text import fmt_ci  # noqa: E402
from varprop.torch.command import add_model_parser, run_model  # noqa: E402

MODEL_FILE = '''
import torch
from torch import nn


class Net(nn.Module):
    """Linear -> ReLU -> LSTM (measured only) -> Linear on (batch, T, features)."""

    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(8, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.fc1 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc1(self.lstm(torch.relu(self.fc0(x)))[0])


def build():
    torch.manual_seed(0)
    return Net()
'''


def _run(tmp_path, monkeypatch, capsys, *extra):
    (tmp_path / "net.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser(prog="varprop")
    add_model_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "net.py:build", "--input-shape", "16", "5", "8",
                              "--seeds", "2", "--input-kind", "sequence", "-q", *extra])
    assert run_model(args) == 0
    return capsys.readouterr().out


@pytest.fixture()
def outputs(tmp_path, monkeypatch, capsys):
    doc = json.loads(_run(tmp_path, monkeypatch, capsys, "--format", "json",
                          "--out", "model.md"))
    markdown = (tmp_path / "model.md").read_text()
    _run(tmp_path, monkeypatch, capsys, "--out", "model.html")
    return doc, markdown, (tmp_path / "model.html").read_text()


def _measured(doc):
    rows = [r for r in doc["comparison"]["rows"] if r.get("measured_only")]
    assert rows, "the JSON carries the measured-only op as rows"
    by_field = {r["field"]: r for r in rows}
    return rows[0]["op"], rows[0]["after"], by_field


def test_markdown_table_has_the_measured_only_row_in_model_order(outputs):
    doc, markdown, _ = outputs
    op, after, by_field = _measured(doc)
    assert after == 1 and op.startswith("LSTM at 'lstm'")
    assert by_field["z_var"]["analytic"] is None and by_field["z_var"]["test"] is None
    table = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    firsts = [line.split("|")[1].strip() for line in table]
    assert firsts == ["0", "m", "1"]  # fc0, the LSTM, fc1: model order
    cells = [c.strip() for c in table[1].strip("|").split("|")]
    z, g = by_field["z_var"], by_field["grad_var"]
    assert cells[1] == op.replace("|", "\\|")
    assert cells[2] == cells[4] == cells[6] == "—"  # no theory
    assert cells[3] == cells[5] == fmt_ci(z["measured"], z["ci"])
    assert cells[7] == fmt_ci(g["measured"], g["ci"])
    assert cells[8].startswith("measured only")


def test_html_table_has_the_measured_only_row_in_model_order(outputs):
    doc, _, page = outputs
    op, _, by_field = _measured(doc)
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    assert [c[0] for c in cells] == ["0", "m", "1"]
    m = cells[1]
    z, g = by_field["z_var"], by_field["grad_var"]
    assert m[2] == m[4] == m[6] == "—"
    assert m[3] == m[5] == fmt_ci(z["measured"], z["ci"])
    assert m[7] == fmt_ci(g["measured"], g["ci"])
    assert m[8].startswith("measured only")
    assert "LSTM at &#x27;lstm&#x27;" in m[1]


def test_text_table_keeps_its_measured_only_row(tmp_path, monkeypatch, capsys):
    text = _run(tmp_path, monkeypatch, capsys)
    table = text.split("theory vs measured")[1].split("layers:")[0]
    starts = [line.split()[0] for line in table.splitlines()[3:]
              if line.strip() and line.split()[0] in ("0", "1", "m")]
    assert starts == ["0", "m", "1"]
