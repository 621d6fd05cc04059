"""Every fact about an activation lives in its record (varprop/activations.py): the copies
in the C sources must agree with it, and each fact must be true of the record's own
numpy functions."""

import math
import pathlib
import re

import numpy as np
import pytest

from varprop import activations as A
from varprop.activations import ACTIVATION_NAMES, get_activation
from varprop.initializers import PARAMETRIC_GAINS, TORCH_GAINS, VARPROP_GAINS, calculate_gain
from varprop.theory import gaussian_expectation, gaussian_moments
from varprop.theory.closed_forms import FAMILIES, closed_form, scalar_closed_form

CSRC = pathlib.Path(__file__).resolve().parents[1] / "csrc"


def _enum() -> dict[str, tuple[int, dict[str, str]]]:
    """``enum vp_activation`` of csrc/vp_activations.h: VP_NAME -> (id, {p0: ..., p1: ...})."""
    text = (CSRC / "vp_activations.h").read_text()
    body = re.search(r"enum\s+vp_activation\s*\{(.*?)\};", text, re.S)
    assert body, "enum vp_activation not found in csrc/vp_activations.h"
    out = {}
    for line in body.group(1).splitlines():
        m = re.match(r"\s*(VP_\w+)\s*=\s*(\d+)\s*,?\s*(?:/\*(.*?)\*/)?", line)
        if m:
            args = dict(re.findall(r"\b(p[01])\s*=\s*(\w+)", m.group(3) or ""))
            out[m.group(1)] = (int(m.group(2)), args)
    return out


def _defines(path: pathlib.Path) -> dict[str, tuple[float, str]]:
    """``#define VP_X <number> [/* comment */]`` lines: VP_X -> (value, comment)."""
    out = {}
    for m in re.finditer(r"^#define\s+(VP_\w+)\s+\(?([-+0-9.eE]+)\)?[ \t]*(?:/\*(.*?)\*/)?",
                         path.read_text(), re.M):
        out[m.group(1)] = (float(m.group(2)), (m.group(3) or "").strip())
    return out


def test_c_enum_ids_and_kernel_parameters_match_the_records():
    enum = _enum()
    assert enum.pop("VP_N_ACTIVATIONS")[0] == len(ACTIVATION_NAMES)
    assert sorted(enum) == sorted(f"VP_{n.upper()}" for n in ACTIVATION_NAMES)
    for name in ACTIVATION_NAMES:
        act = get_activation(name)
        kid, args = enum[f"VP_{name.upper()}"]
        assert kid == act.kernel_id, name
        named = [args.get(p) for p in ("p0", "p1") if p in args]
        assert tuple(named) == act._spec.kernel_args, name
        p0, p1 = act.kernel_params
        assert (p0, p1)[:len(named)] == tuple(act.formula_params[k] for k in named)


def test_c_constants_match_the_records():
    defines = _defines(CSRC / "vp_activations.c")
    tagged = {k: v for k, v in defines.items() if re.fullmatch(r"_?[A-Z_0-9]+", v[1])}
    # every constant the C activations share with activations.py names its Python twin
    assert {"VP_SQRT_2_OVER_PI", "VP_GELU_TANH_COEFF", "VP_GATE_CLIP",
            "VP_SILU_CLIP"} <= set(tagged)
    for cname, (value, pyname) in tagged.items():
        assert value == pytest.approx(getattr(A, pyname), rel=3e-16, abs=0), cname
    math_h = _defines(CSRC / "vp_math.h")
    assert math_h["VP_INV_SQRT2"][0] == pytest.approx(A._INV_SQRT_2, rel=3e-16)
    assert math_h["VP_INV_SQRT_2PI"][0] == pytest.approx(A._INV_SQRT_2PI, rel=3e-16)
    # the SELU constants reach C only through the record's (p0, p1)
    assert get_activation("selu").kernel_params == (A.SELU_ALPHA, A.SELU_SCALE)
    assert "1.6732" not in (CSRC / "vp_activations.c").read_text()


def test_the_parser_sees_a_disagreement(tmp_path):
    bad = tmp_path / "h.c"
    bad.write_text("#define VP_GATE_CLIP 41.0 /* _GATE_CLIP */\n")
    value, pyname = _defines(bad)["VP_GATE_CLIP"]
    assert value != getattr(A, pyname)


X = np.linspace(-6.0, 6.0, 97)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_symmetry_facts(name):
    act = get_activation(name)
    if act.odd:
        np.testing.assert_array_equal(act(-X), -act(X))
        assert act.centred_mean == 0.0
    if act.centred_mean is not None:  # phi(x) + phi(-x) = 2 E[phi] at mean 0
        np.testing.assert_allclose(act(X) + act(-X), 2 * act.centred_mean, atol=1e-15)
    else:
        assert abs(float(act(np.array([1.0]))[0] + act(np.array([-1.0]))[0])) > 1e-3


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_shape_facts(name):
    act = get_activation(name)
    if act.piecewise_linear:
        left, right = act.slopes
        np.testing.assert_array_equal(act(X), np.where(X > 0, right * X, left * X))
        assert act.kinked == (left != right)
    else:
        assert act.slopes is None
    assert act.kinks == ((0.0,) if act.kinked else ())
    if act.asymptote is not None:
        ap, bp, am, bm, big = act.asymptote
        for x in (big, 2 * big):
            hi, lo = (float(v) for v in act(np.array([x, -x])))
            assert abs(hi - (ap * x + bp)) <= 1e-19 * max(1.0, abs(hi)), (name, x)
            assert abs(lo - (am * -x + bm)) <= 1e-19 * max(1.0, abs(lo)), (name, x)


def test_parametric_facts_follow_the_parameters():
    elu = get_activation("elu", alpha=0.5)
    assert elu.kinked and not get_activation("elu").kinked
    assert elu.asymptote == (1.0, 0.0, 0.0, -0.5, 48.0)
    assert get_activation("leaky_relu", negative_slope=0.3).slopes == (0.3, 1.0)
    assert get_activation("relu").kernel_params == (0.0, 0.0)
    assert elu.kernel_params == (0.5, 1.0)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_gains_come_from_the_records(name):
    act = get_activation(name)
    assert calculate_gain(name) == act.gain
    table = PARAMETRIC_GAINS if act.gain_rule else TORCH_GAINS if act.torch_gain else VARPROP_GAINS
    assert name in table
    if not act.torch_gain:  # varprop's rule: 1 / sqrt(E[phi(z)^2]), z ~ N(0, 1)
        assert act.gain == pytest.approx(float(gaussian_moments(act, 1.0).e_phi2) ** -0.5,
                                         rel=1e-12)


@pytest.mark.parametrize("name", [n for n in ACTIVATION_NAMES
                                  if get_activation(n).closed_form is not None])
@pytest.mark.parametrize("q", [1e-3, 0.04, 0.3, 1.0, 7.0, 1e6, 1e300])
def test_one_closed_form_serves_both_paths(name, q):
    act = get_activation(name)
    assert act.closed_form in FAMILIES
    scalar = scalar_closed_form(act.closed_form, act.formula_params, 0.0, q)
    kinds = ("phi", "phi2", "dphi2", "var")
    vec = closed_form(act, np.zeros(1), np.sqrt(np.array([q])), kinds, np.array([q]))
    if scalar is None:  # elu and selu below m^2 + q = 0.04: quadrature on both paths
        assert name in ("elu", "selu") and q < 0.04
        assert all(np.isnan(vec[k][0]) for k in kinds)
        return
    for k, v in zip(kinds, scalar):
        assert v == pytest.approx(float(vec[k][0]), rel=1e-15, abs=0), k


def test_centred_mean_is_exact_in_the_expectations():
    for name in ACTIVATION_NAMES:
        act = get_activation(name)
        if act.centred_mean is not None:
            assert gaussian_expectation(act, 2.5, "phi") == act.centred_mean
            assert math.isfinite(act.centred_mean)


def test_an_activation_pickles_by_its_config():
    import pickle

    act = get_activation("leaky_relu", negative_slope=0.3)
    back = pickle.loads(pickle.dumps(act))
    assert back == act and back.slopes == (0.3, 1.0) and back.kernel_params == (0.3, 0.0)
