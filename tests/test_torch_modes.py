"""Every submodule's own train/eval mode survives varprop.torch (trace, profile,
compare, audit and the ``varprop model`` path), also when tracing raises: a model
whose submodules are in mixed modes (a BatchNorm or Dropout deliberately in eval while
the model trains, or the reverse) comes back exactly as it was (skipped without torch).

The reference is the mode map recorded before the call, read from the model itself.
"""

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import varprop.torch as vt  # noqa: E402


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Dropout(0.2),
                         nn.Linear(16, 4))


def _modes(model):
    return {name: m.training for name, m in model.named_modules()}


def _mixed(top_training):
    """The model with its top mode ``top_training`` and, against it, one BatchNorm and
    one Dropout in the other mode."""
    model = _model().train(top_training)
    model[1].train(not top_training)
    model[6].train(not top_training)
    return model


CALLS = {
    "trace": lambda m, x: vt.trace(m, x),
    "trace_no_anchor": lambda m, x: vt.trace(m, x, anchor=False),
    "profile": lambda m, x: vt.profile(m, x, seeds=1),
    "compare": lambda m, x: vt.compare(m, x, seeds=2),
    "audit": lambda m, x: vt.audit(m, x),
}


@pytest.mark.parametrize("top_training", [True, False])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_mixed_modes_are_restored(call, top_training):
    model = _mixed(top_training)
    before = _modes(model)
    assert len(set(before.values())) == 2  # the premise: the modes really are mixed
    CALLS[call](model, torch.randn(32, 8))
    assert _modes(model) == before


@pytest.mark.parametrize("top_training", [True, False])
def test_modes_restored_when_tracing_raises(top_training):
    model = _mixed(top_training)
    before = _modes(model)
    with pytest.raises(ValueError, match="does not run on example_input"):
        vt.trace(model, torch.randn(32, 9))  # the first Linear reads 8 features
    assert _modes(model) == before


def test_measured_only_model_keeps_mixed_modes():
    """A model with a measured-only op runs node by node (the graph runner) when it is
    anchored: its submodules' modes are still each put back."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Hardtanh(), nn.Dropout(0.1),
                          nn.BatchNorm1d(16), nn.Linear(16, 4)).train()
    model[3].eval()
    before = _modes(model)
    result = vt.trace(model, torch.randn(16, 8))
    assert result.measured  # the premise: Hardtanh is measured only
    assert _modes(model) == before


def test_note_names_batchnorm_in_eval_by_its_own_mode():
    """The trace's note about BatchNorm in eval mode reads each BatchNorm's own flag:
    a model in train mode holding one BatchNorm in eval mode gets it too."""
    note = "BatchNorm layers in eval mode are analyzed"
    x = torch.randn(32, 8)
    assert not any(note in n for n in vt.trace(_model().train(), x).notes)
    assert any(note in n for n in vt.trace(_mixed(True), x).notes)
    assert any(note in n for n in vt.trace(_model().eval(), x).notes)
