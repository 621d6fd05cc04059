"""The reports in process: data, renderers, JSON against its schema, the phase grid
against the scalar mean-field functions, atomic output files and the progress bar.
(tests/test_cli.py runs the same things end to end through the ``varprop`` command.)"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

import numpy as np
import pytest

from varprop.analytic import analyze
from varprop.compare import verdict
from varprop.empirical import measure
from varprop.initializers import get as get_initializer
from varprop.network import dense_stack
from varprop.profile import LayerRecord, Profile
from varprop.reporting import ReportSettings, build_report, load_schema
from varprop._json import json_clean as clean_json
from varprop.reporting.compute import SharedDraws
from varprop.reporting.output import OutputPath, Progress, UsageError, resolve_names
from varprop.reporting.results import REPORT_SCHEMA_VERSION, Entry, Report
from varprop.reporting.text import fmt, fmt_ci, report_markdown, report_table

SMALL = dict(depth=4, width=32, batch=32, seeds=2, n_threads=1)


# ----------------------------------------------------------------------------- schema check
# A small JSON-schema validator (jsonschema is not a dependency): the keywords varprop's
# schemas use; an unknown keyword is an error, so a schema cannot silently use one.
_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
_KEYWORDS = {"type", "const", "enum", "required", "properties", "additionalProperties",
             "propertyNames", "items", "minItems", "maxItems", "minimum", "exclusiveMinimum",
             "oneOf", "$ref"} | _ANNOTATIONS
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(doc: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
                  path: str = "$") -> list[str]:
    """Every violation of ``schema`` by ``doc`` as 'path: message' (empty: valid)."""
    root = schema if root is None else root
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise ValueError(f"{path}: the test validator does not know {sorted(unknown)}")
    errors: list[str] = []
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        errors += schema_errors(doc, root["$defs"][ref.split("/")[-1]], root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](doc) for t in types):
            return errors + [f"{path}: {doc!r:.60} is not of type {types}"]
    if "const" in schema and doc != schema["const"]:
        errors.append(f"{path}: {doc!r} != {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} not in {schema['enum']}")
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        if "minimum" in schema and doc < schema["minimum"]:
            errors.append(f"{path}: {doc} < {schema['minimum']}")
        if "exclusiveMinimum" in schema and doc <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: {doc} <= {schema['exclusiveMinimum']}")
    if isinstance(doc, dict):
        errors += [f"{path}: missing required {k!r}" for k in schema.get("required", [])
                   if k not in doc]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            if "propertyNames" in schema:
                errors += schema_errors(key, schema["propertyNames"], root, f"{path}.{key}<name>")
            if key in props:
                errors += schema_errors(value, props[key], root, f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(value, extra, root, f"{path}.{key}")
    if isinstance(doc, list):
        if len(doc) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(doc) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(doc if "items" in schema else []):
            errors += schema_errors(item, schema["items"], root, f"{path}[{i}]")
    if "oneOf" in schema:
        passing = sum(not schema_errors(doc, s, root, path) for s in schema["oneOf"])
        if passing != 1:
            errors.append(f"{path}: matches {passing} of the oneOf alternatives, not exactly 1")
    return errors


def test_the_validator_catches_violations():
    schema = load_schema("report")
    assert schema_errors({"schema": "varprop-report"}, schema)  # required fields missing
    bad = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
           "additionalProperties": False}
    assert schema_errors({"n": 0}, bad) and schema_errors({"n": 1.5}, bad)
    assert schema_errors({"n": 1, "x": 2}, bad) and not schema_errors({"n": 1}, bad)
    with pytest.raises(ValueError, match="does not know"):
        schema_errors(1, {"pattern": "x"})


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_report() -> Report:
    settings = ReportSettings(initializers=("he_normal", "glorot_uniform", "zeros", "ones",
                                            "orthogonal"),
                              activations=("relu", "tanh", "sigmoid"), **SMALL)
    return build_report(settings, command="varprop report (test)", version="test")


@pytest.fixture(scope="module")
def analytic_report() -> Report:
    return build_report(ReportSettings(initializers=("he_normal", "random_uniform", "zeros"),
                                       activations=("relu", "linear"), depth=10, width=64,
                                       analytic_only=True))


# ----------------------------------------------------------------------------- data
def test_entries_come_initializer_major_with_both_sides(small_report):
    keys = [(e.initializer, e.activation) for e in small_report.entries]
    s = small_report.settings
    assert keys == [(i, a) for i in s.initializers for a in s.activations]
    for e in small_report.entries:
        assert e.analytic.kind == "analytic" and e.measured.kind == "empirical"
        assert len(e.analytic) == len(e.measured) == s.depth
        assert e.verdict is e.measured_verdict


def test_ratios_follow_the_profile_definitions(small_report):
    e = small_report.entry("he_normal", "relu")
    a, m = e.ratios("analytic"), e.ratios("measured")
    # the definitions, from the layer records: last Var[a] over the input variance, and
    # Var[dL/dz] of the first layer over that of the last
    for r, p in ((a, e.analytic), (m, e.measured)):
        assert r.forward == pytest.approx(p[-1].a_var / p.input_var, rel=1e-12)
        assert r.gradient == pytest.approx(p[0].grad_var / p[-1].grad_var, rel=1e-12)
    assert m.forward_ci == pytest.approx(e.measured[-1].a_var_ci / e.measured.input_var)
    assert math.isnan(a.forward_ci) and m.gradient_ci > 0
    # closed forms (docs/theory.md sections 2-3): He + ReLU keeps Var[z] = 2 Var[x] and
    # Var[relu(z)] = (1/2 - 1/(2 pi)) Var[z]; backward, chi_1 = n Var[W] E[relu'(z)^2]
    # = 2 * 1/2 = 1 at every layer of the square stack, so the gradient ratio is 1
    assert a.forward == pytest.approx(2 * (0.5 - 0.5 / math.pi), rel=1e-9)
    assert a.gradient == pytest.approx(1.0, rel=1e-9)


def test_a_zero_gradient_gives_ieee_ratios_not_an_exception():
    rec = [LayerRecord(0, 4, 4, a_var=0.0, grad_var=0.0), LayerRecord(1, 4, 4, a_var=0.0,
                                                                      grad_var=0.0)]
    prof = Profile("analytic", rec)
    e = Entry("zeros", "relu", prof, verdict(prof))
    r = e.ratios("analytic")
    assert r.forward == 0.0 and math.isnan(r.gradient)


def test_shared_draws_change_nothing_but_the_time():
    init = get_initializer("orthogonal")
    shared = SharedDraws(init)
    plain_net = dense_stack(32, 3, "tanh", init, "zeros")
    shared_net = dense_stack(32, 3, "tanh", shared, "zeros")
    kw = dict(batch=16, seeds=2, n_threads=1)
    a, b = measure(plain_net, **kw), measure(shared_net, **kw)
    for name in ("z_var", "grad_var", "a_mean", "weight_grad_var"):
        np.testing.assert_array_equal(a.column(name), b.column(name), err_msg=name)
    assert shared._cache, "the draws were not shared"
    # a second network (another activation) reuses them
    before = len(shared._cache)
    measure(dense_stack(32, 3, "relu", shared, "zeros"), **kw)
    assert len(shared._cache) == before
    assert analyze(shared_net).to_dict()["records"] == analyze(plain_net).to_dict()["records"]
    shared.clear()
    assert not shared._cache


def test_networks_measured_side_by_side_give_the_serial_report():
    # 2 workers (one kernel thread each) against 1: the same numbers, in the same order
    kw = dict(SMALL, initializers=("orthogonal", "he_normal", "zeros"),
              activations=("relu", "tanh", "selu"))
    serial = build_report(ReportSettings(**{**kw, "n_threads": 1}))
    parallel = build_report(ReportSettings(**{**kw, "n_threads": 2}))
    assert [(e.initializer, e.activation) for e in parallel.entries] == \
        [(e.initializer, e.activation) for e in serial.entries]
    for a, b in zip(serial.entries, parallel.entries):
        for name in ("z_var", "a_mean", "grad_var", "weight_grad_var", "z_var_ci"):
            np.testing.assert_array_equal(a.measured.column(name), b.measured.column(name),
                                          err_msg=f"{a.initializer} x {a.activation}: {name}")


def test_shared_draws_respect_their_memory_budget():
    shared = SharedDraws(get_initializer("he_normal"), max_bytes=3 * 16 * 16 * 4)
    for s in range(5):
        shared((16, 16), seed=np.random.SeedSequence(s))
    assert len(shared._cache) == 3
    w1 = shared((16, 16), seed=np.random.SeedSequence(4))  # beyond the budget: drawn again
    np.testing.assert_array_equal(w1, get_initializer("he_normal")((16, 16),
                                                                  seed=np.random.SeedSequence(4)))


def test_verdicts_of_the_textbook_cases(analytic_report):
    kind = {(e.initializer, e.activation): e.verdict.kind for e in analytic_report.entries}
    assert kind[("he_normal", "relu")] == "preserves"
    assert kind[("random_uniform", "relu")] == "vanishes"
    assert kind[("zeros", "linear")] == "symmetric"


# ----------------------------------------------------------------------------- text
@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (1.0, "1"), (0.6816, "0.682"), (2.18e15, "2.18e15"), (3.2e-12, "3.2e-12"),
    (-4.5e-7, "-4.5e-7"), (math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"),
    (None, "-"), (1234.5, "1.23e3"),
])
def test_fmt(value, text):
    assert fmt(value) == text


def test_fmt_ci():
    assert fmt_ci(1.0, 0.25) == "1 ± 0.25"
    assert fmt_ci(1.0, math.nan) == "1"
    assert fmt_ci(math.inf, 1.0) == "inf"


def test_the_terminal_table(small_report):
    text = report_table(small_report)
    lines = text.splitlines()
    assert lines[0] == "varprop report"
    assert "Var[out]/Var[in]" in text and "Var[g_in]/Var[g_out]" in text
    assert "theory" in text and "measured" in text and "±" in text
    names = "|".join(small_report.settings.initializers)
    body = text.split("Verdicts at a glance")[0].splitlines()
    rows = [ln for ln in body if re.match(rf"^({names}|\s+)\s+(relu|tanh|sigmoid)\s", ln)]
    assert len(rows) == len(small_report.entries)
    assert "Verdicts at a glance (measured):" in text
    assert re.search(r"Of 15 networks \(measured\): .*preserves", text)
    assert not any(len(ln) > 200 for ln in lines)


def test_the_analytic_only_table_has_no_measured_column(analytic_report):
    text = report_table(analytic_report)
    assert "measured" not in text.split("Verdicts")[0]
    assert "Theory only" in text


def test_markdown_is_a_pipe_table_with_equal_columns(small_report):
    md = report_markdown(small_report)
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    counts = {ln.count("|") for ln in table[:len(small_report.entries) + 2]}
    assert len(counts) == 1, counts
    assert table[1].startswith("|:---|:---|---:")
    assert "`he_normal`" in md and "### Verdicts at a glance" in md


# ----------------------------------------------------------------------------- JSON
def test_report_json_follows_its_schema(small_report, analytic_report):
    schema = load_schema("report")
    for report in (small_report, analytic_report):
        doc = json.loads(json.dumps(clean_json(report.to_dict()), allow_nan=False))
        assert schema_errors(doc, schema) == []
    doc = clean_json(analytic_report.to_dict())
    assert all(r["measured"] is None for r in doc["results"])
    assert doc["summary"] == analytic_report.counts()


def test_non_finite_numbers_become_null():
    assert clean_json({"a": [math.nan, math.inf, 1.5, np.float32(2)], "b": np.bool_(True)}) == \
        {"a": [None, None, 1.5, 2.0], "b": True}


def test_the_schemas_are_valid_json_with_versions():
    versions = {"report": REPORT_SCHEMA_VERSION, "phase": 1, "init": 1}
    for name in ("report", "phase", "init"):
        schema = load_schema(name)
        assert schema["properties"]["schema_version"] == {"const": versions[name]}
        assert schema["properties"]["schema"]["const"] == f"varprop-{name}"
    with pytest.raises(ValueError):
        load_schema("nope")


# ----------------------------------------------------------------------------- HTML
def test_html_is_self_contained_with_one_figure_per_section(small_report):
    pytest.importorskip("matplotlib")
    from varprop.reporting import report_html

    html = report_html(small_report)
    assert not re.search(r"https?:", html, re.I), "the report must load nothing from the network"
    assert "<script" not in html.lower()
    sections = re.findall(r"<section\b.*?</section>", html, re.S)
    assert len(sections) == 4
    for sec in sections:
        assert sec.count("<figure>") == 1 and sec.count("<img ") == 1, sec[:80]
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', sec)
    assert html.count("<tr class=") == len(small_report.entries)


def test_phase_html_has_one_section_and_figure():
    pytest.importorskip("matplotlib")
    from varprop.reporting.html import phase_html
    from varprop.reporting.phase import phase_diagram

    html = phase_html(phase_diagram("relu", resolution=(9, 5), edge_points=3))
    assert not re.search(r"https?:", html, re.I)
    assert html.count("<section") == 1 and html.count("<figure>") == 1


# ----------------------------------------------------------------------------- phase grid
@pytest.mark.parametrize("activation, sigma_b2", [
    ("tanh", (0.0, 1.0)), ("sigmoid", (0.0, 1.0)), ("selu", (0.0, 1.0)), ("gelu", (0.0, 1.0)),
    ("elu", (0.0, 0.3)), ("softsign", (0.0, 1.0)), ("relu", (0.0, 1.0)), ("linear", (0.0, 1.0)),
])
def test_phase_grid_matches_the_scalar_theory(activation, sigma_b2):
    """Every grid point against varprop.theory.depth_scales. Where the trainable depth is
    below ~1800 layers (xi_c < 300) the per-layer slope exp(-1/xi_c) agrees to 1e-6.
    Closer to the edge of chaos xi_c is ill-conditioned (the slope tends to 1 and a
    1e-9 change of q* moves it) and off the heat map's scale (clipped at 1e4): there both
    must merely be large. NaN (diverging q*) and 0 must match exactly."""
    from varprop.reporting.phase import phase_diagram
    from varprop.theory import depth_scales, fixed_point

    d = phase_diagram(activation, sigma_b2=sigma_b2, resolution=(9, 4), edge_points=2)
    checked = chaotic = 0
    for i, sb in enumerate(d.sigma_b2):
        for j, sw in enumerate(d.sigma_w2):
            ref = depth_scales(activation, float(sw), float(sb)).xi_c
            got = float(d.xi_c[i, j])
            where = f"{activation} sigma_w2={sw:g} sigma_b2={sb:g}: {got} vs {ref}"
            if math.isnan(ref):
                assert math.isnan(got), where
                assert math.isinf(fixed_point(activation, float(sw), float(sb))), where
            elif ref == 0:
                assert got == 0, where
            elif ref > 300:
                assert got > 100, where
            else:
                assert math.exp(-1 / got) == pytest.approx(math.exp(-1 / ref), abs=1e-6), where
                checked += 1
                chaotic += d.chi1[i, j] > 1
    assert checked >= 4
    if activation in ("tanh", "sigmoid", "selu", "softsign"):
        assert chaotic >= 3, "no chaotic-phase point was checked"


def test_phase_edge_of_chaos_for_tanh_starts_at_one():
    from varprop.reporting.phase import phase_diagram

    d = phase_diagram("tanh", sigma_w2=(0.5, 3.0), sigma_b2=(0.0, 0.5), resolution=(6, 3),
                      edge_points=3)
    assert d.edge_sigma_b2[0] == 0 and d.edge_sigma_w2[0] == pytest.approx(1.0)
    assert np.all(np.diff(d.edge_sigma_w2) > 0)


def test_phase_json_follows_its_schema():
    from varprop.reporting.phase import phase_diagram

    d = phase_diagram("relu", resolution=(7, 4), edge_points=3)
    doc = json.loads(json.dumps(clean_json(d.to_dict()), allow_nan=False))
    assert schema_errors(doc, load_schema("phase")) == []
    # relu: no edge of chaos with sigma_b2 > 0, q* diverges for sigma_w2 > 2
    assert doc["edge"][0]["sigma_w2"] == pytest.approx(2.0)
    assert all(e["sigma_w2"] is None for e in doc["edge"][1:])
    assert d.notes


# ----------------------------------------------------------------------------- output
def test_output_path_writes_atomically(tmp_path):
    out = OutputPath(str(tmp_path / "r.json"))
    assert out.format == "json"
    out.write("{}")
    assert (tmp_path / "r.json").read_text() == "{}"

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError):
        OutputPath(str(tmp_path / "s.html")).write(boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no partial, no temp


@pytest.mark.parametrize("path, message", [
    ("nodir/x.html", "does not exist"), ("x.pdf", "cannot tell the file format"),
    (".", "is a directory"), ("noext", "without suffix"),
])
def test_output_path_rejects_bad_paths_up_front(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message):
        OutputPath(path)
    assert list(tmp_path.iterdir()) == []


def test_names_resolve_with_suggestions():
    from varprop.initializers import available_initializers, resolve_name

    valid = available_initializers()
    assert resolve_names("initializer", ["HeNormal", "he_normal", "GLOROT_uniform"], valid,
                         resolve_name) == ["he_normal", "glorot_uniform"]
    with pytest.raises(UsageError, match=r"did you mean 'he_normal'"):
        resolve_names("initializer", ["he_norml"], valid, resolve_name,
                      available_initializers(aliases=True))
    with pytest.raises(UsageError, match="did you mean 'tanh'"):
        resolve_names("activation", ["tahn"], ["relu", "tanh"])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal_after_the_delay():
    quiet = _Tty()
    p = Progress(10, "x", stream=quiet)  # default delay 1 s: a short run prints nothing
    for _ in range(10):
        p.advance()
    p.close()
    assert quiet.getvalue() == ""
    tty = _Tty()
    p = Progress(4, "work", stream=tty, delay=0.0)
    p.advance(2)
    assert "50%" in tty.getvalue() and "work" in tty.getvalue()
    p.close()
    assert tty.getvalue().endswith("\r")
    pipe = io.StringIO()  # not a terminal: never draws
    p = Progress(4, stream=pipe, delay=0.0)
    p.advance(4)
    p.close()
    assert pipe.getvalue() == ""


def test_the_table_names_the_entries_whose_theory_is_approximate():
    from varprop.reporting import report_html

    settings = ReportSettings(initializers=("identity", "he_normal"), activations=("relu",),
                              depth=4, width=32, bias_var=0.01, analytic_only=True)
    text = report_table(build_report(settings))
    assert "Theory is approximate for identity x relu:" in text
    assert "Theory is approximate for identity x relu:" in report_html(build_report(settings))
    assert "he_normal x relu" not in text.split("Theory is approximate for")[1].split(":")[0]
    clean = report_table(build_report(ReportSettings(**{**settings.__dict__, "bias_var": 0.0})))
    assert "Theory is approximate" not in clean


@pytest.mark.parametrize("activation", ["tanh", "softsign", "elu"])
def test_phase_chi_c_near_the_edge_of_chaos_matches_the_exact_map(activation):
    """Just inside the chaotic phase c* is close to 1, where the truncated Mehler series
    misplaces it (softsign was off by 2e-3 and tanh at the edge by 5e-2 before those rows
    were finished on the exact map). Reference: bisection of the exact correlation map
    (varprop.theory.gaussian_cross_moments), an independent root finder."""
    from varprop.activations import get_activation
    from varprop.reporting.phase import _chaotic_chi_c
    from varprop.theory import edge_of_chaos, fixed_point, gaussian_cross_moments, gaussian_moments

    act = get_activation(activation)
    sb = np.array([0.05, 0.3, 1.0])
    edge = np.array([edge_of_chaos(act, float(b)) for b in sb])
    sw = np.concatenate([edge * (1 + 1e-4), edge * 1.01, edge * 1.3])
    sb = np.tile(sb, 3)
    q = np.asarray(fixed_point(act, sw, sb), dtype=float)
    keep = np.isfinite(q)  # elu's length map diverges far inside the chaotic phase
    assert keep.sum() >= 6
    q, sw, sb = q[keep], sw[keep], sb[keep]
    length = sw * np.asarray(gaussian_moments(act, q).e_phi2) + sb
    got = _chaotic_chi_c(act, q, sw, sb, length)
    lo, hi = np.zeros(q.size), np.full(q.size, 1.0 - 1e-15)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        up = (sw * np.asarray(gaussian_cross_moments(act, q, q, mid).e_phi_phi) + sb) / length > mid
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    ref = sw * np.asarray(gaussian_cross_moments(act, q, q, 0.5 * (lo + hi)).e_dphi_dphi)
    # 60 halvings leave c* within 1e-15; chi_c's slope in c is O(1), so 1e-7 is slack for
    # the reference and still 2000x below the old error
    np.testing.assert_allclose(got, ref, rtol=1e-7)
    assert np.all(ref < 1.0)
