"""varprop.sweep: the parameterization table, the trainer's multipliers and per-layer
learning rates, one cell, slopes and verdicts, bad inputs (fast; the executors are in
test_sweep_executors.py, muP's known result in test_sweep_mup.py)."""

import json
import math

import numpy as np
import pytest

from varprop import sweep
from varprop.sweep import analysis, cell as cell_mod
from varprop.sweep.cell import Cell, cell_key, compute_cell
from varprop.sweep.parameterization import expected_exponent, layer_rules
from varprop.training import MLP, SGD, Adam, Momentum


# ---------------------------------------------------------------- the rules


def test_mup_adam_rules_are_table_3_of_tensor_programs_v():
    # Tensor Programs V (arXiv 2203.03466) Table 3, Adam column, written out by hand for
    # widths [d=32, n=512, n, K=10] against base width 128 (ratio 4): input lr 1; hidden
    # lr 1/4 (1/fan_in); output init var x 1/4 (1/fan_in^2 overall), lr 1/4; biases 1
    rules = layer_rules("mup", [32, 512, 512, 10], 128, "adam")
    assert [r.kind for r in rules] == ["input", "hidden", "output"]
    assert [r.lr_weight for r in rules] == [1.0, 0.25, 0.25]
    assert [r.lr_bias for r in rules] == [1.0, 1.0, 1.0]
    assert [r.init_factor for r in rules] == [1.0, 1.0, 0.25]
    assert [r.multiplier for r in rules] == [1.0, 1.0, 1.0]
    # Adam's eps like each gradient (docs/sweep.md section 2): input weights and input and
    # hidden biases 1/fan_out, hidden weights 1/fan_in, the readout's 1
    assert [(r.eps_weight, r.eps_bias) for r in rules] == [(0.25, 0.25), (0.25, 0.25),
                                                            (1.0, 1.0)]
    for name in ("sp", "ntk"):  # a fixed eps, as practised
        assert all(r.eps_weight == r.eps_bias == 1.0
                   for r in layer_rules(name, [32, 512, 512, 10], 128, "adam"))


def test_mup_sgd_rules_are_table_3_of_tensor_programs_v():
    # SGD column: input weights and all biases lr ~ fan_out, hidden 1, output 1/fan_in
    rules = layer_rules("mup", [32, 512, 512, 10], 128, "sgd")
    assert [r.lr_weight for r in rules] == [4.0, 1.0, 0.25]
    assert [r.lr_bias for r in rules] == [4.0, 4.0, 1.0]
    assert all(r.eps_weight == r.eps_bias == 1.0 for r in rules)  # no eps in SGD


def test_ntk_rules_keep_the_effective_variance_and_sp_equals_base():
    rules = layer_rules("ntk", [32, 256, 256, 10], 64, "adam")
    # W ~ sigma^2 / base_fan_in times the multiplier 1/sqrt(r_in): m^2 * var = SP's var
    assert [r.effective_factor for r in rules] == [1.0, 1.0, 1.0]
    assert [r.multiplier for r in rules] == [1.0, 0.5, 0.5]
    for name in sweep.PARAMETERIZATIONS:  # at the base width everything is SP
        assert all(r.init_factor == r.multiplier == r.lr_weight == r.lr_bias == 1.0
                   for r in layer_rules(name, [32, 64, 64, 10], 64, "sgd"))


def test_expected_exponents_name_the_readout_exception():
    assert expected_exponent("sp", "adam", "output", "dz") == 1.5
    assert expected_exponent("mup", "adam", "output", "dz") == 0.0
    assert expected_exponent("depth_mup", "momentum", "hidden", "dz") == 0.0
    assert expected_exponent("mup", "adam", "output", "z") == -0.5


# ---------------------------------------------------------------- the trainer's additions


def _relu_mlp(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal(7).astype(dtype)),
          (rng.standard_normal((7, 3)).astype(dtype), rng.standard_normal(3).astype(dtype))]
    return ws, rng.standard_normal((4, 5)).astype(dtype)


def test_multipliers_match_a_numpy_reference_forward_and_backward():
    ws, x = _relu_mlp()
    m = [0.5, 3.0]
    model = MLP([(w.copy(), b.copy()) for w, b in ws], ["relu", "linear"], multipliers=m)
    cache = model.forward(x)
    # the reference: z = m (x @ W) + b in numpy, backward by hand
    z1 = m[0] * (x @ ws[0][0]) + ws[0][1]
    a1 = np.maximum(z1, 0)
    z2 = m[1] * (a1 @ ws[1][0]) + ws[1][1]
    np.testing.assert_allclose(cache.logits, z2, rtol=1e-12)
    g2 = np.random.default_rng(1).standard_normal(z2.shape)
    grads, _ = model.backward(cache, g2)
    gw2 = m[1] * a1.T @ g2
    ga1 = m[1] * g2 @ ws[1][0].T
    gz1 = ga1 * (z1 > 0)
    np.testing.assert_allclose(grads[1][0], gw2, rtol=1e-12)
    np.testing.assert_allclose(grads[1][1], g2.sum(0), rtol=1e-12)
    np.testing.assert_allclose(grads[0][0], m[0] * x.T @ gz1, rtol=1e-12)


def test_multipliers_bad_input():
    ws, _ = _relu_mlp()
    with pytest.raises(ValueError, match="multipliers"):
        MLP(ws, ["relu", "linear"], multipliers=[1.0])
    with pytest.raises(ValueError, match=r"multipliers\[1\]"):
        MLP(ws, ["relu", "linear"], multipliers=[1.0, -2.0])


def test_lr_scales_of_ones_are_bitwise_the_plain_optimizers():
    for make in (lambda **k: SGD(0.1, **k), lambda **k: Momentum(0.1, **k),
                 lambda **k: Adam(0.01, **k)):
        ws, _ = _relu_mlp(dtype=np.float32)
        ps_a = [p.copy() for pair in ws for p in pair]
        ps_b = [p.copy() for p in ps_a]
        a, b = make(), make(lr_scales=[1.0] * len(ps_a))
        rng = np.random.default_rng(2)
        for _ in range(3):
            gs = [rng.standard_normal(p.shape).astype(np.float32) for p in ps_a]
            a.step(ps_a, gs)
            b.step(ps_b, gs)
        for pa, pb in zip(ps_a, ps_b):
            assert np.array_equal(pa, pb)


def test_lr_scales_scale_each_parameter_like_a_numpy_reference():
    p = [np.ones(3), np.ones(2)]
    g = [np.full(3, 2.0), np.full(2, 2.0)]
    SGD(0.1, lr_scales=[1.0, 0.25]).step(p, g)
    np.testing.assert_allclose(p[0], 1 - 0.1 * 2.0)
    np.testing.assert_allclose(p[1], 1 - 0.025 * 2.0)
    # Adam's first step moves each entry by lr * scale (m / sqrt(v) = sign(g))
    q = [np.zeros(3), np.zeros(2)]
    Adam(0.01, epsilon=1e-12, lr_scales=[2.0, 0.5]).step(q, g)
    np.testing.assert_allclose(q[0], -0.02, rtol=1e-9)
    np.testing.assert_allclose(q[1], -0.005, rtol=1e-9)
    with pytest.raises(ValueError, match="lr_scales"):
        SGD(0.1, lr_scales=[1.0]).step(p, g)
    with pytest.raises(ValueError, match=r"lr_scales\[0\]"):
        SGD(0.1, lr_scales=[0.0, 1.0])


# ---------------------------------------------------------------- a cell


def test_cell_theory_matches_the_relu_closed_form():
    # He init with ReLU keeps E[z^2] = 2 E[x^2] = 2 at every layer (x ~ N(0, 1)); muP's
    # readout has variance 2 * base / width on top (init var ~ 1/fan_in^2)
    for p, out in (("sp", 2.0), ("mup", 2.0 * 64 / 256), ("ntk", 2.0)):
        r = compute_cell(Cell(width=256, parameterization=p, steps=0, batch=8))
        np.testing.assert_allclose(r["theory"]["z_rms"], [math.sqrt(2.0)] * 3 + [math.sqrt(out)],
                                   rtol=1e-9)


def test_cell_is_json_and_deterministic():
    c = Cell(width=32, steps=2, batch=8, base_width=16)
    r = compute_cell(c)
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    assert compute_cell(c) == r
    assert len(r["measured"]["z_rms"]) == 3 and len(r["measured"]["z_rms"][0]) == 4
    assert r["measured"]["dz_rms"][0] == [0.0] * 4
    assert r["key"] == cell_key(c)
    # the same data at every width (the data stream does not depend on the width)
    for a, b in zip(cell_mod._task(c), cell_mod._task(Cell(width=48, steps=2, batch=8))):
        assert np.array_equal(a, b)


def test_cell_key_covers_config_version_and_stream(monkeypatch):
    a = Cell(width=64)
    assert cell_key(a) == cell_key(Cell(width=64, test_crash_marker="/x"))
    assert cell_key(a) != cell_key(Cell(width=64, seed=1))
    assert cell_key(a) != cell_key(Cell(width=64, epsilon=1e-8))
    before = cell_key(a)
    monkeypatch.setattr(cell_mod, "RNG_STREAM_VERSION", cell_mod.RNG_STREAM_VERSION + 1)
    assert cell_key(a) != before
    monkeypatch.undo()
    monkeypatch.setattr(cell_mod, "__version__", "9.9.9")
    assert cell_key(a) != before


@pytest.mark.parametrize("kwargs, name", [
    ({"width": 0}, "width"), ({"width": 8, "depth": 1}, "depth"),
    ({"width": 8, "initializer": "orthogonal"}, "initializer"),
    ({"width": 8, "parameterization": "mupp"}, "parameterization"),
    ({"width": 8, "optimizer": "rmsprop"}, "optimizer"),
    ({"width": 8, "learning_rate": -1.0}, "learning_rate"),
    ({"width": 8, "epsilon": 0.0}, "epsilon"),
    ({"width": 8, "steps": -1}, "steps"), ({"width": 8, "dtype": "float16"}, "dtype"),
    ({"width": 8, "activation": "nope"}, "activation"), ({"width": 8, "n_classes": 1}, "n_classes"),
])
def test_cell_bad_inputs_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Cell(**kwargs)


def test_grid_and_run_bad_inputs():
    with pytest.raises(ValueError, match="widths"):
        sweep.Grid(widths=(64,))
    with pytest.raises(ValueError, match="seeds"):
        sweep.Grid(seeds=(0, 0))
    with pytest.raises(ValueError, match="grid"):
        sweep.run({"widthz": (1, 2)})
    with pytest.raises(ValueError, match="executor"):
        sweep.run(sweep.Grid(widths=(8, 16), seeds=(0,)), executor="gpu")
    with pytest.raises(ValueError, match="scheduler"):
        sweep.run(sweep.Grid(widths=(8, 16), seeds=(0,)), executor="dask",
                  scheduler="localhost")
    with pytest.raises(ValueError, match="workers"):
        sweep.run(sweep.Grid(widths=(8, 16), seeds=(0,)), workers=0)


# ---------------------------------------------------------------- slopes and verdicts


def test_fit_slope_matches_numpy_polyfit():
    rng = np.random.default_rng(3)
    w = [64, 128, 256, 512]
    y = list(np.exp(rng.standard_normal(4)))
    assert analysis.fit_slope(w, y) == pytest.approx(np.polyfit(np.log(w), np.log(y), 1)[0],
                                                     rel=1e-12)
    assert math.isnan(analysis.fit_slope(w, [1.0, 0.0, 1.0, 1.0]))


def test_verdicts_and_tolerance():
    assert analysis.verdict(0.1, 0.25) == "stable"
    assert analysis.verdict(0.52, 0.25) == "grows as width^0.5"
    assert analysis.verdict(-0.97, 0.25) == "shrinks as width^-1"
    assert analysis.tolerance([0.1]) == analysis.SLOPE_FLOOR
    # t_{2, 0.995} = 9.9248 (tables), sd of [0, 1, 2] = 1: 9.9248 / sqrt(3)
    assert analysis.tolerance([0.0, 1.0, 2.0]) == pytest.approx(9.9248 / math.sqrt(3), rel=1e-4)


def test_serial_run_text_json_html():
    pytest.importorskip("matplotlib")
    r = sweep.run(sweep.Grid(widths=(16, 32), seeds=(0, 1), steps=1, batch=8,
                             parameterizations=("sp", "mup")), executor="serial")
    assert r.stats["computed"] == 8 and len(r.series) == 2
    doc = json.loads(r.to_json())
    assert doc["series"][1]["config"]["parameterization"] == "mup"
    assert "grows" in r.text() or "stable" in r.text()
    page = r.html()
    assert page.count("<figure>") == 2 and "data:image/png;base64," in page


def test_dask_missing_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r"varprop\[dask\]"):
        sweep.run(sweep.Grid(widths=(8, 16), seeds=(0,)), executor="dask",
                  scheduler="tcp://127.0.0.1:1")


def test_cli_sweep(tmp_path, capsys):
    from varprop.cli import main

    out = tmp_path / "s.json"
    code = main(["sweep", "--widths", "16", "32", "--seeds", "2", "--steps", "1", "--batch",
                 "8", "--serial", "--quiet", "--out", str(out), "--cache-dir",
                 str(tmp_path / "c")])
    assert code == 0
    table = capsys.readouterr().out
    assert "sp, adam lr 0.01" in table and "mup, adam lr 0.01" in table
    doc = json.loads(out.read_text())
    assert len(doc["cells"]) == 8 and doc["stats"]["computed"] == 8
    assert main(["sweep", "--widths", "16", "--serial", "-q"]) == 2
    assert "widths" in capsys.readouterr().err
