"""The analytic profile against closed-form mean-field results."""

import math

import numpy as np
import pytest
from scipy import special

from varprop.activations import get_activation
from varprop.analytic import analyze
from varprop.compare import verdict
from varprop.initializers import get as get_init
from varprop.network import Act, BatchNorm, Dense, Network, Residual, mlp
from varprop.theory import c_map


def test_he_relu_keeps_q_and_the_gradient_constant():
    p = analyze(mlp([512] * 31, "relu", "he_normal"))
    np.testing.assert_allclose(p.column("z_var"), 2.0, rtol=1e-12)
    # E[relu(z)] = sqrt(q / 2 pi), E[relu^2] = q / 2
    np.testing.assert_allclose(p.column("a_mean"), math.sqrt(2 / (2 * math.pi)), rtol=1e-12)
    np.testing.assert_allclose(p.column("a_var"), 1 - 2 / (2 * math.pi), rtol=1e-12)
    # chi1 = sigma_w^2 E[phi'^2] = 2 * 1/2 = 1: grad_var is the same at every layer
    np.testing.assert_allclose(p.column("grad_var"), 0.5, rtol=1e-12)
    assert verdict(p).kind == "preserves"


def test_xavier_fan_in_relu_halves_per_layer():
    # He et al. 2015: with n Var[W] = 1, ReLU halves E[x^2] per layer: 2^-L over L layers
    p = analyze(mlp([256] * 23, "relu", "lecun_normal"))
    z = p.column("z_var")
    np.testing.assert_allclose(z[1:] / z[:-1], 0.5, rtol=1e-12)
    # the output's E[a^2] over the input's E[x^2] = 1: std ratio 2^(-L/2), 4.88e-4 at L = 22
    out_second = p[-1].a_var + p[-1].a_mean ** 2
    assert math.sqrt(out_second) == pytest.approx(2 ** (-22 / 2), rel=1e-12)
    assert math.sqrt(out_second) == pytest.approx(4.88e-4, rel=1e-3)
    v = verdict(p)
    assert v.kind == "vanishes" and v.forward_factor == pytest.approx(0.5, rel=1e-12)


def test_glorot_uses_fan_avg_and_linear_preserves():
    p = analyze(mlp([100, 300, 300, 100], "linear", "glorot_normal"))
    # z_var of layer 1 = n_in * 2 / (n_in + n_out) * 1
    assert p[0].z_var == pytest.approx(100 * 2 / 400, rel=1e-12)
    assert p[1].z_var == pytest.approx(p[0].z_var * 300 * 2 / 600, rel=1e-12)


def test_weight_grad_var_is_input_second_moment_times_grad_var():
    p = analyze(mlp([64] * 4, "tanh", "glorot_normal"))
    second = p.column("a_var")[:-1] + p.column("a_mean")[:-1] ** 2
    np.testing.assert_allclose(p.column("weight_grad_var")[1:],
                               second * p.column("grad_var")[1:], rtol=1e-12)
    assert p[0].weight_grad_var == pytest.approx(1.0 * p[0].grad_var)


def test_correlation_follows_the_c_map():
    net = mlp([512] * 6, "tanh", get_init("random_normal", stddev=math.sqrt(1.5 / 512)))
    p = analyze(net, input_correlation=0.3)
    # the first dense layer sees the inputs themselves: its correlation is the input's
    assert p[0].z_corr == pytest.approx(0.3, rel=1e-12)
    q, c = p[0].z_var, p[0].z_corr
    for rec in p.records[1:]:
        # one step of the c-map at the current q, sigma_w^2 = 1.5, sigma_b^2 = 0
        c_next = float(c_map("tanh", c, q, 1.5, 0.0))
        assert rec.z_corr == pytest.approx(c_next, rel=1e-8)
        q, c = rec.z_var, rec.z_corr


def test_symmetric_inits_are_flagged_not_called_healthy():
    for name in ("zeros", "ones"):
        p = analyze(mlp([32] * 6, "relu", name))
        assert p.symmetric and p[0].symmetric
        assert verdict(p).kind == "symmetric"
    p = analyze(mlp([32] * 6, "relu", "he_normal"))
    assert not p.symmetric


def test_constant_init_propagates_means_coherently():
    net = mlp([10, 10, 10], "linear", get_init("constant", value=0.1))
    p = analyze(net, input_mean=1.0, input_var=1.0)
    # z = 0.1 * sum(x): mean 10 * 0.1 * 1 = 1, var 10 * 0.01 * 1 = 0.1 (independent inputs)
    assert p[0].z_mean == pytest.approx(1.0) and p[0].z_var == pytest.approx(0.1)
    # layer 2 sees 10 identical units: var = (10 * 0.1)^2 * 0.1
    assert p[1].z_mean == pytest.approx(1.0) and p[1].z_var == pytest.approx(0.1)


def test_batchnorm_resets_and_residual_grows_linearly():
    he = get_init("he_normal")
    relu = Act(get_activation("relu"))
    branch = (BatchNorm(eps=0.0), relu, Dense(64, 64, he))
    net = Network(64, tuple(Residual(branch) for _ in range(10)))
    p = analyze(net)
    # each normalized branch adds Var = 2 * E[relu(N(0,1))^2] = 1 to the stream
    np.testing.assert_allclose(p.column("z_var"), 1.0, rtol=1e-12)
    net_plain = Network(64, tuple(Residual((relu, Dense(64, 64, he))) for _ in range(10)))
    p2 = analyze(net_plain)
    z = p2.column("z_var")
    # no normalization: Var doubles per block (docs/theory.md section 6)
    np.testing.assert_allclose(z[1:] / z[:-1], 2.0, rtol=1e-12)


def test_identity_passes_each_unit_on():
    p = analyze(mlp([16] * 9, "linear", "identity"), input_mean=0.5, input_var=2.0)
    np.testing.assert_allclose(p.column("z_mean"), 0.5, rtol=1e-12)
    np.testing.assert_allclose(p.column("z_var"), 2.0, rtol=1e-12)


def test_profile_columns_and_json_round_trip():
    import json

    from varprop.profile import Profile

    p = analyze(mlp([8] * 4, "gelu", "he_uniform"), input_correlation=0.5)
    assert p.column("z_var").shape == (3,)
    data = json.loads(p.to_json())
    assert data["schema_version"] == 1 and data["kind"] == "analytic"
    q = Profile.from_dict(data)
    np.testing.assert_array_equal(q.column("z_var"), p.column("z_var"))
    with pytest.raises(ValueError, match="unknown field 'zvar'"):
        p.column("zvar")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"input_var": 0.0}, ValueError, "input_var must be > 0"),
    ({"input_var": "x"}, TypeError, "input_var must be a real number"),
    ({"input_correlation": 1.5}, ValueError, r"input_correlation must be in \[-1, 1\]"),
    ({"input_mean": float("nan")}, ValueError, "input_mean must be finite"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        analyze(mlp([4, 4], "relu"), **kwargs)


def test_bad_network():
    with pytest.raises(TypeError, match="net must be a varprop Network"):
        analyze([4, 4])
    with pytest.raises(ValueError, match="widths must be a positive integer"):
        mlp([4, 0, 4])
    with pytest.raises(ValueError, match="Dense expects 5 inputs but receives width 4"):
        Network(4, (Dense(5, 3, get_init("he_normal")),))
    with pytest.raises(ValueError, match="activation must be one value or a list of 2"):
        mlp([4, 4, 4], ["relu"])


def test_identity_chain_is_not_gaussian_relu_closed_form():
    # eye weights pass each unit on: z^l = relu(x) for l >= 2, exactly half-normal-like,
    # never the Gaussian recursion's 1/2 per layer; relu' products stay 1{x > 0}
    p = analyze(mlp([64] * 11, "relu", "identity"))
    np.testing.assert_allclose(p.column("z_mean")[1:], 1 / math.sqrt(2 * math.pi), rtol=1e-12)
    np.testing.assert_allclose(p.column("z_var")[1:], 0.5 - 0.5 / math.pi, rtol=1e-12)
    np.testing.assert_allclose(p.column("grad_var"), 0.5, rtol=1e-12)
    # a bias of -0.2 moves the kink of layer k to x = 0.2 k: the rule must follow it, and
    # then dL/dz^l = g prod_k 1{z^k > 0} = g 1{x > 1.2} at every layer of six
    shifted = analyze(mlp([64] * 7, "relu", "identity",
                          bias_init=get_init("constant", value=-0.2)))
    np.testing.assert_allclose(shifted.column("grad_var"), special.ndtr(-1.2), rtol=1e-12)


@pytest.mark.parametrize("activation, bias", [("tanh", 0.0), ("gelu", 0.0), ("selu", 0.0),
                                              ("sigmoid", 0.0), ("softplus", 0.0),
                                              ("tanh", 0.3), ("relu", -0.2), ("elu", 0.1)])
def test_identity_chain_matches_monte_carlo(activation, bias):
    """Identity layers (with a constant bias) compose the activation on each unit: the
    analytic profile is E over x ~ N(0, 1) of that composition. Monte Carlo of the same
    composition is the oracle, within 6 standard errors estimated from the sample."""
    depth, n = 6, 400_000
    net = mlp([8] * (depth + 1), activation, "identity",
              bias_init=get_init("constant", value=bias))
    p = analyze(net)
    act = get_activation(activation)
    x = np.random.default_rng(1).standard_normal(n)
    d2 = []  # phi'(z^l)^2 per sample, per layer
    z_layers = []
    a = x
    for _ in range(depth):
        z = a + bias
        z_layers.append(z)
        d2.append(act.derivative(z) ** 2)
        a = act(z)
    for l, z in enumerate(z_layers):
        for name, sample in (("z_mean", z), ("z_var", (z - z.mean()) ** 2)):
            se = sample.std() / math.sqrt(n)
            assert abs(getattr(p[l], name) - sample.mean()) <= 6 * se + 1e-12, (l, name)
        # dL/dz^l = g_out * prod_{k >= l} phi'(z^k) for a standard normal g_out
        g2 = np.prod(d2[l:], axis=0)
        se = g2.std() / math.sqrt(n)
        assert abs(p[l].grad_var - g2.mean()) <= 6 * se + 1e-12, (l, "grad_var")


def test_constant_init_chain_keeps_the_unit_law():
    # constant 0.1 weights over 10 identical units: z^{l+1} = 10 * 0.1 * relu(z^l) =
    # relu(z^l), so from layer 2 on each pre-activation is relu(z^1), z^1 ~ N(0, 0.1)
    p = analyze(mlp([10] * 5, "relu", get_init("constant", value=0.1)))
    assert p[0].z_var == pytest.approx(0.1, rel=1e-12)
    s = math.sqrt(0.1)
    np.testing.assert_allclose(p.column("z_mean")[1:], s / math.sqrt(2 * math.pi), rtol=1e-12)
    np.testing.assert_allclose(p.column("z_var")[1:], 0.1 * (0.5 - 0.5 / math.pi), rtol=1e-12)


def test_the_profile_says_where_the_theory_is_only_gaussian_approximation():
    exact = [mlp([32] * 6, "relu", "he_normal"), mlp([32] * 6, "relu", "identity"),
             mlp([32] * 6, "tanh", "identity", bias_init=get_init("constant", value=0.1))]
    for net in exact:
        assert analyze(net).meta["gaussian_approximation"] == []
    # random biases on identity layers: each unit is a function of x and of its own
    # biases, not of one Gaussian; from the second activation on it is approximated
    noisy = analyze(mlp([32] * 6, "relu", "identity", bias_init="random_normal"))
    assert noisy.meta["gaussian_approximation"] == [1, 2, 3, 4]
