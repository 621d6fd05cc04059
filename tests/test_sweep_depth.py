"""Depth-muP and the coordinate check against depth: the trainer's residual MLP against a
numpy reference and finite differences, the analyzer's step-0 theory of the residual
stream against its closed form and the measurement, and depth-muP's known result
(Yang et al. 2023, Tensor Programs VI, arXiv 2310.02244; Bordelon et al. 2023, arXiv
2309.16620): with the branch multiplier 1/sqrt(L) the stream's scale at init and its
update after a few Adam steps stay flat as depth grows; with multiplier 1 (a standard
residual network) they grow.

Tolerances: a slope is the mean of S = 5 per-seed slopes over depths 4, 8, 16, 32 at
width 64; its seed-spread tolerance is t_{4, 0.995} * sd / sqrt(5) (false-alarm rate 1%
per comparison, two-sided), and the verdict's tolerance adds the floor 1/4
(varprop/sweep/analysis.py, docs/sweep.md section 4). The theory-vs-measurement check
compares the mean over seeds of the measured mean square with the theory's, with the
same t-interval (docs/sweep.md section 7)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from varprop import sweep
from varprop.initializers import VarianceScaling
from varprop.sweep import analysis
from varprop.sweep import parameterization as param_mod
from varprop.sweep.cell import Cell, compute_cell
from varprop.sweep.depth import residual_theory
from varprop.sweep.parameterization import depth_rule
from varprop.training import MLP, ResidualMLP, softmax_cross_entropy

DEPTHS = (4, 8, 16, 32)
SEEDS = (0, 1, 2, 3, 4)
CRIT = float(student_t.ppf(1 - analysis.FALSE_ALARM / 2, len(SEEDS) - 1))


# ---------------------------------------------------------------- the residual MLP


def _resnet(act="tanh", blocks=3, seed=0, multipliers=(0.5, 2.0, 1.0, 0.7, 1.5), a=0.6):
    rng = np.random.default_rng(seed)
    d, n, k = 5, 7, 3
    ws = [(rng.standard_normal((d, n)), rng.standard_normal(n))]
    ws += [(rng.standard_normal((n, n)) / 3, rng.standard_normal(n)) for _ in range(blocks)]
    ws += [(rng.standard_normal((n, k)), rng.standard_normal(k))]
    model = ResidualMLP([(w.copy(), b.copy()) for w, b in ws], act, branch_multiplier=a,
                        multipliers=list(multipliers))
    return model, ws, rng.standard_normal((4, d)), rng.integers(0, k, 4)


def _phi(act, h):
    return np.tanh(h) if act == "tanh" else np.maximum(h, 0.0)


def _dphi(act, h):
    return 1.0 - np.tanh(h) ** 2 if act == "tanh" else (h > 0).astype(h.dtype)


def _numpy_forward(ws, x, act, m, a):
    hs = [m[0] * (x @ ws[0][0]) + ws[0][1]]
    for l in range(1, len(ws) - 1):
        hs.append(hs[-1] + a * (m[l] * (_phi(act, hs[-1]) @ ws[l][0]) + ws[l][1]))
    return hs, m[-1] * (_phi(act, hs[-1]) @ ws[-1][0]) + ws[-1][1]


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_resmlp_matches_a_numpy_forward_and_backward(act):
    model, ws, x, _ = _resnet(act)
    m, a, n_last = model.multipliers, model.branch_multiplier, len(ws) - 1
    cache = model.forward(x)
    hs, logits = _numpy_forward(ws, x, act, m, a)
    np.testing.assert_allclose(cache.logits, logits, rtol=1e-12)
    for h_kernel, h_ref in zip(cache.z[:-1], hs):
        np.testing.assert_allclose(h_kernel, h_ref, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(logits.shape)
    grads, gzs = model.backward(cache, g, grad_z=True)
    # the reference backward, written out by hand
    ref = [None] * len(ws)
    u = _phi(act, hs[-1])
    ref[n_last] = (m[-1] * u.T @ g, g.sum(0))
    gh = (m[-1] * g @ ws[-1][0].T) * _dphi(act, hs[-1])
    for l in range(n_last - 1, 0, -1):
        np.testing.assert_allclose(gzs[l], gh, rtol=1e-10, atol=1e-12)
        gv = a * gh
        u = _phi(act, hs[l - 1])
        ref[l] = (m[l] * u.T @ gv, gv.sum(0))
        gh = gh + (m[l] * gv @ ws[l][0].T) * _dphi(act, hs[l - 1])
    ref[0] = (m[0] * x.T @ gh, gh.sum(0))
    for (gw, gb), (rw, rb) in zip(grads, ref):
        np.testing.assert_allclose(gw, rw, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gb, rb, rtol=1e-10, atol=1e-12)


def test_resmlp_gradients_match_finite_differences():
    # float64, central differences with h = 1e-6: truncation error ~ h^2 |f'''| ~ 1e-12
    # and rounding ~ 1e-16 / h ~ 1e-10, so 1e-6 absolute is a wide margin
    model, ws, x, y = _resnet("tanh")
    m, a = model.multipliers, model.branch_multiplier
    value, g, _ = softmax_cross_entropy(model.forward(x).logits, y)
    grads, _ = model.backward(model.forward(x), g)
    loss = lambda: softmax_cross_entropy(_numpy_forward(ws, x, "tanh", m, a)[1], y,
                                         grad=False)[0]
    assert loss() == pytest.approx(value, rel=1e-12)
    rng = np.random.default_rng(5)
    h = 1e-6
    for l, pair in enumerate(ws):
        for p, arr in enumerate(pair):
            for _ in range(4):
                idx = tuple(int(rng.integers(0, s)) for s in arr.shape)
                old = arr[idx]
                arr[idx] = old + h
                up = loss()
                arr[idx] = old - h
                down = loss()
                arr[idx] = old
                assert (up - down) / (2 * h) == pytest.approx(grads[l][p][idx], abs=1e-6), \
                    (l, p, idx)


def test_resmlp_without_blocks_is_the_plain_two_layer_mlp():
    model, ws, x, _ = _resnet("relu", blocks=0, multipliers=(1.0, 1.0))
    plain = MLP([(w.copy(), b.copy()) for w, b in ws], ["relu", "linear"])
    np.testing.assert_allclose(model.forward(x).logits, plain.forward(x).logits, rtol=1e-13)


def test_resmlp_bad_input_names_the_argument():
    _, ws, _, _ = _resnet()
    bad = list(ws)
    bad[1] = (np.zeros((7, 6)), np.zeros(6))
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        ResidualMLP(bad, "relu")
    with pytest.raises(ValueError, match="weights"):
        ResidualMLP(ws[:1], "relu")
    with pytest.raises(ValueError, match="branch_multiplier"):
        ResidualMLP(ws, "relu", branch_multiplier=0.0)
    with pytest.raises(ValueError, match="multipliers"):
        ResidualMLP(ws, "relu", multipliers=[1.0])
    with pytest.raises(TypeError, match="activation"):
        ResidualMLP(ws, ["relu", "relu"])
    model = ResidualMLP(ws, "relu")
    with pytest.raises(ValueError, match="stats"):
        model.forward(np.zeros((2, 5)), stats=True)


# ---------------------------------------------------------------- the rules and the theory


def test_depth_rules():
    r = depth_rule("depth_mup", 16, "adam")
    assert (r.branch_multiplier, r.block_lr, r.block_eps) == (0.25, 0.25, 0.25)
    assert depth_rule("depth_mup", 16, "momentum").block_lr == 1.0
    assert depth_rule("depth_mup", 16, "momentum").block_eps == 1.0  # no eps in SGD
    for name in ("sp", "ntk", "mup"):
        assert depth_rule(name, 16, "adam") == param_mod.DepthRule(1.0, 1.0)
    with pytest.raises(ValueError, match="n_blocks"):
        depth_rule("depth_mup", 0, "adam")
    # in width, depth-muP is muP
    assert (param_mod.layer_rules("depth_mup", [32, 256, 256, 10], 64, "adam")
            == param_mod.layer_rules("mup", [32, 256, 256, 10], 64, "adam"))


@pytest.mark.parametrize("a", [1.0, 0.5, 32 ** -0.5])
def test_residual_theory_is_the_relu_closed_form(a):
    # ReLU, Var[W] = 2/fan_in, unit input: Var[h_0] = 2; a block adds a^2 Var[W phi(h)]
    # = a^2 * 2 * Var[h]/2, so E[h_l^2] = 2 (1 + a^2)^l; the readout's E[z^2] = E[h_L^2]
    he = VarianceScaling(2.0, "fan_in", "normal")
    blocks = 6
    th = residual_theory([8] + [64] * (blocks + 1) + [3], "relu", [he] * (blocks + 2), a)
    expect = [2 * (1 + a * a) ** l for l in range(blocks + 1)]
    np.testing.assert_allclose(np.square(th[:-1]), expect, rtol=1e-12)
    assert th[-1] ** 2 == pytest.approx(expect[-1], rel=1e-12)


def test_cells_validate_arch_and_depth():
    with pytest.raises(ValueError, match="arch"):
        Cell(width=8, arch="transformer")
    with pytest.raises(ValueError, match="depth"):
        Cell(width=8, arch="mlp", depth=1)
    assert Cell(width=8, arch="residual", depth=1).widths == [32, 8, 8, 10]
    assert Cell(width=8, depth=3).widths == [32, 8, 8, 10]  # a plain MLP as before
    r = compute_cell(Cell(width=8, depth=3, steps=1))
    assert r["branch_multiplier"] is None and r["config"]["arch"] == "mlp"
    r = compute_cell(Cell(width=8, arch="residual", depth=4, steps=1,
                          parameterization="depth_mup"))
    assert r["branch_multiplier"] == 0.5 and r["block_lr"] == r["block_eps"] == 0.5
    assert len(r["measured"]["z_rms"][0]) == 6 and r["kinds"][1:5] == ["hidden"] * 4
    with pytest.raises(ValueError, match="widths"):
        sweep.Grid(widths=(64,), depths=(4,))
    sweep.Grid(widths=(64,), depths=(4, 8), archs=("residual",))  # a depth sweep


# ---------------------------------------------------------------- depth-muP's known result


def _depth_grid(parameterizations=("sp", "depth_mup")):
    return sweep.Grid(widths=(64,), depths=DEPTHS, archs=("residual",),
                      parameterizations=parameterizations, optimizers=("adam",),
                      learning_rates=(0.01,), seeds=SEEDS, steps=2)


@pytest.fixture(scope="module")
def result():
    return sweep.run(_depth_grid(), executor="serial")


@pytest.fixture(scope="module")
def series(result):
    out = {s["config"]["parameterization"]: s for s in result.series}
    assert all(s["axis"] == "depth" for s in out.values()) and len(result.series) == 2
    return out


def test_depth_mup_keeps_every_group_flat_in_depth(series):
    s = series["depth_mup"]
    assert s["depths"] == list(DEPTHS) and s["kinds"] == ["input", "stream", "output"]
    for q, steps in (("z", (0,)), ("dz", (1, 2))):
        for t in steps:
            for g, e in enumerate(s["slopes"][q][t]):
                assert abs(e["slope"]) <= e["tol"], (q, t, g, e)
                assert e["verdict"] == "stable" and not e["note"].startswith("unexpected")


def test_standard_residual_stream_grows_with_depth(series):
    s = series["sp"]
    for q, steps in (("z", (0,)), ("dz", (1, 2))):
        for t in steps:
            for g in (1, 2):  # the stream after the last block, the logits
                e = s["slopes"][q][t][g]
                assert e["slope"] - e["tol"] > 0, (q, t, g, e)
                assert e["verdict"].startswith("grows as depth^")
                assert e["note"].startswith("expected")
    # the input layer's output is depth-independent at init (same draw at every depth)
    assert s["slopes"]["z"][0][0]["slope"] == 0.0


def test_step0_theory_matches_the_measured_stream(result, series):
    # E[|h_L|^2] of the finite network equals the mean-field value at any width (the
    # blocks' weights are symmetric and independent), so the seed mean of the measured
    # mean square is unbiased for theory^2; the depth-32 SP cells are left out: their
    # stream is near log-normal with log sd ~ 1.2 and the t-interval no longer holds
    for name, s in series.items():
        for j, depth in enumerate(s["depths"]):
            if name == "sp" and depth > 16:
                continue
            cells = [c for c in result.cells if c["config"]["parameterization"] == name
                     and c["config"]["depth"] == depth]
            ms = np.array([c["measured"]["z_rms"][0][depth] ** 2 for c in cells])
            theory = cells[0]["theory"]["z_rms"][depth] ** 2
            tol = CRIT * ms.std(ddof=1) / math.sqrt(len(ms))
            assert abs(ms.mean() - theory) <= tol, (name, depth, ms.mean(), theory, tol)
            assert s["theory"][j][1] ** 2 == pytest.approx(theory, rel=1e-12)
    # the theory's slopes: depth-muP's stream sqrt(2 (1 + 1/L)^L) is flat to O(1/L);
    # SP's (2^(L+1))^(1/2) grows faster than any power
    flat = [math.log(math.sqrt(2 * (1 + 1 / d) ** d)) for d in DEPTHS]
    slope = np.polyfit(np.log(DEPTHS), flat, 1)[0]
    assert series["depth_mup"]["theory_slope"][1] == pytest.approx(slope, rel=1e-9)
    assert series["sp"]["theory_slope"][1] > 4


def test_without_the_adam_depth_rule_the_update_grows_as_sqrt_depth(monkeypatch):
    # the multiplier alone with an unscaled Adam lr: each block moves the stream by
    # ~ lr / sqrt(L) and L blocks add up, so the update grows as L^(1/2): the reason for
    # Adam's lr ~ L^(-1/2) on the blocks (docs/sweep.md section 7)
    monkeypatch.setitem(param_mod.DEPTH_TABLE, "depth_mup", (-0.5, 0.0, 0.0, -0.5))
    s = sweep.run(_depth_grid(("depth_mup",)), executor="serial").series[0]
    e = s["slopes"]["dz"][1][1]
    assert e["slope"] - e["tol"] > 0, e
    assert abs(e["slope"] - 0.5) <= e["tol"], e


def test_cli_depth_sweep(tmp_path, capsys):
    from varprop.cli import main

    out = tmp_path / "d.json"
    code = main(["sweep", "--parameterizations", "sp", "depth_mup", "--arch", "residual",
                 "--depths", "2", "4", "--widths", "16", "32", "--seeds", "2", "--steps",
                 "1", "--batch", "8", "--serial", "--quiet", "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "slopes against depth" in table and "residual MLP width 16" in table
    doc = json.loads(out.read_text())
    # per parameterization: a width series per depth, then a depth series per width
    assert [s["axis"] for s in doc["series"]] == ["width"] * 4 + ["depth"] * 4
    assert {c["branch_multiplier"] for c in doc["cells"]} == {1.0, 2 ** -0.5, 0.5}


def test_html_of_a_depth_series(result):
    page = result.html("varprop sweep --arch residual")
    assert page.count("<img") >= 2 and "scale against depth" in page
