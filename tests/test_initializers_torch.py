"""Cross-checks against torch.nn.init (skipped unless torch is installed; tested with 2.13.0).

Deterministic schemes are compared exactly; random ones statistically, with the
false-alarm probability ALPHA per check: torch's own draws against varprop's
analytic moments (z-scores from the sample size and the fourth moment), and, for
uniform schemes, torch's largest |w| against varprop's analytic bound (for N
uniform draws P(max < b (1 - t)) = (1 - t/2)^N, so t = -2 ln(ALPHA) / N).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import varprop.initializers as I

torch = pytest.importorskip("torch")
from torch.nn import init as tinit  # noqa: E402

ALPHA = 1e-6
Z_CRIT = float(stats.norm.isf(ALPHA / 2))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_calculate_gain_equals_torch() -> None:
    for name in I.TORCH_GAINS:
        assert I.calculate_gain(name) == pytest.approx(tinit.calculate_gain(name), rel=1e-15), name
    for slope in (None, 0, 0.01, 0.2, 1, -0.5, math.sqrt(5)):
        assert I.calculate_gain("leaky_relu", slope) == pytest.approx(
            tinit.calculate_gain("leaky_relu", slope), rel=1e-15
        )


SHAPES = [(7, 5), (32, 16, 3), (32, 16, 3, 3), (8, 4, 2, 3, 5), (1, 1), (300, 2, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_equal_torch_for_plain_layers(shape: tuple) -> None:
    assert I.compute_fans(shape, layout="torch") == tinit._calculate_fan_in_and_fan_out(torch.empty(shape))


def _torch_sample(fn, shape, **kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
    t = torch.empty(shape, dtype=torch.float64)
    fn(t, **kwargs)
    return t.numpy().ravel()


def _z_second_moment(x: np.ndarray, var: float, mu4: float) -> float:
    return (float(np.mean(x * x)) - var) / math.sqrt((mu4 - var * var) / x.size)


CASES = [
    (tinit.kaiming_normal_, I.kaiming_normal, dict(a=0.1, mode="fan_in", nonlinearity="leaky_relu"), "normal"),
    (tinit.kaiming_normal_, I.kaiming_normal, dict(mode="fan_out", nonlinearity="relu"), "normal"),
    (tinit.kaiming_uniform_, I.kaiming_uniform, dict(a=math.sqrt(5)), "uniform"),
    (tinit.kaiming_uniform_, I.kaiming_uniform, dict(mode="fan_out", nonlinearity="tanh"), "uniform"),
    (tinit.xavier_normal_, I.xavier_normal, dict(gain=2.0), "normal"),
    (tinit.xavier_uniform_, I.xavier_uniform, dict(gain=0.5), "uniform"),
]


@pytest.mark.parametrize("shape", [(400, 500), (64, 32, 3, 3)])
@pytest.mark.parametrize(("tfn", "ours", "kwargs", "family"), CASES)
def test_torch_draws_match_our_moments(tfn, ours, kwargs, family, shape) -> None:  # type: ignore[no-untyped-def]
    x = _torch_sample(tfn, shape, **kwargs)
    var = ours(layout="torch", **kwargs).moments(shape).var
    mu4 = (3.0 if family == "normal" else 9.0 / 5.0) * var * var
    assert abs(_z_second_moment(x, var, mu4)) < Z_CRIT
    if family == "uniform":
        bound = math.sqrt(3 * var)
        t = -2 * math.log(ALPHA) / x.size
        assert bound * (1 - t) <= np.abs(x).max() <= bound * (1 + 1e-12)


@pytest.mark.parametrize(("n_in", "n_out"), [(300, 200), (17, 900)])
def test_torch_layer_defaults(n_in: int, n_out: int) -> None:
    layer = torch.nn.Linear(n_in, n_out)
    w = layer.weight.detach().double().numpy()  # (out, in)
    b = layer.bias.detach().double().numpy()
    init = I.torch_default(layout="torch")
    var = init.moments(w.shape).var
    assert var == pytest.approx(1 / (3 * n_in), rel=1e-14)
    assert abs(_z_second_moment(w.ravel(), var, 1.8 * var * var)) < Z_CRIT
    assert np.abs(w).max() <= 1 / math.sqrt(n_in)
    assert np.abs(b).max() <= 1 / math.sqrt(n_in)
    assert I.torch_default_bias(n_in).moments(b.shape).var == pytest.approx(1 / (3 * n_in), rel=1e-14)
    # and a conv layer
    conv = torch.nn.Conv2d(8, 16, 3)
    wc = conv.weight.detach().double().numpy()
    assert I.torch_default(layout="torch").moments(wc.shape).var == pytest.approx(1 / (3 * 72), rel=1e-14)


def test_trunc_normal_equals_torch_law() -> None:
    kwargs = dict(mean=0.5, std=2.0, a=-1.0, b=3.0)
    x = _torch_sample(tinit.trunc_normal_, (500, 400), **kwargs)
    dist = stats.truncnorm((-1.0 - 0.5) / 2.0, (3.0 - 0.5) / 2.0, loc=0.5, scale=2.0)
    m = I.trunc_normal(**kwargs).moments((500, 400))
    assert m.mean == pytest.approx(float(dist.mean()), rel=1e-12)
    assert m.var == pytest.approx(float(dist.var()), rel=1e-12)
    assert abs((x.mean() - m.mean) / math.sqrt(m.var / x.size)) < Z_CRIT
    ours = I.trunc_normal(**kwargs)((500, 400), seed=0, dtype=np.float64).ravel()
    assert stats.ks_2samp(x, ours).pvalue > ALPHA


@pytest.mark.parametrize(("shape", "groups"), [((6, 4, 3), 1), ((6, 2, 3, 3), 3), ((4, 4, 2, 3, 3), 2), ((8, 3, 5, 5), 1)])
def test_dirac_equals_torch(shape: tuple, groups: int) -> None:
    t = torch.empty(shape, dtype=torch.float64)
    tinit.dirac_(t, groups=groups)
    np.testing.assert_array_equal(I.dirac(groups, layout="torch")(shape, dtype=np.float64), t.numpy())


def test_deterministic_schemes_equal_torch() -> None:
    for shape in [(3, 5), (5, 3), (4, 4)]:
        t = torch.empty(shape, dtype=torch.float64)
        tinit.eye_(t)
        np.testing.assert_array_equal(I.get("eye_")(shape, dtype=np.float64), t.numpy())
    t = torch.empty((3, 4))
    tinit.constant_(t, 0.3)
    np.testing.assert_array_equal(I.constant(0.3)((3, 4)), t.numpy())
    tinit.zeros_(t)
    np.testing.assert_array_equal(I.get("zeros_")((3, 4)), t.numpy())
    tinit.ones_(t)
    np.testing.assert_array_equal(I.get("ones_")((3, 4)), t.numpy())


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (16, 8, 3, 3)])
def test_orthogonal_second_moment_equals_torch(shape: tuple) -> None:
    t = torch.empty(shape, dtype=torch.float64)
    tinit.orthogonal_(t, gain=1.5)
    var = I.orthogonal(1.5, layout="torch").moments(shape).var
    assert float(np.mean(t.numpy() ** 2)) == pytest.approx(var, rel=1e-12)  # exact for every draw


@pytest.mark.parametrize("sparsity", [0.1, 0.35])
def test_sparse_zero_counts_equal_torch(sparsity: float) -> None:
    shape = (40, 30)  # torch (rows, cols): zeros per column
    t = torch.empty(shape, dtype=torch.float64)
    tinit.sparse_(t, sparsity, std=0.1)
    ours = I.sparse(sparsity, std=0.1, layout="torch")(shape, seed=0, dtype=np.float64)
    np.testing.assert_array_equal((t.numpy() == 0).sum(axis=0), (ours == 0).sum(axis=0))
