"""Profile.from_json (the inverse of to_json), its short repr and its per-layer table
(issue 13)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

import varprop
from varprop.profile import Profile


def _net():
    return varprop.mlp([32] * 5, activation="tanh", init="glorot_normal")


def _assert_same(a: Profile, b: Profile) -> None:
    assert (a.kind, a.network, a.meta) == (b.kind, b.network, b.meta)
    assert a.input_var == b.input_var and a.input_mean == b.input_mean
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        np.testing.assert_equal(asdict(ra), asdict(rb))  # NaN equals NaN here
    assert a.seed_values.keys() == b.seed_values.keys()
    for k in a.seed_values:
        np.testing.assert_equal(a.seed_column(k), b.seed_column(k))


def test_from_json_round_trips_an_analytic_profile_with_nan_fields():
    p = varprop.analyze(_net())
    assert math.isnan(p[0].z_corr) and math.isnan(p[0].z_var_ci)  # NaN fields to carry
    p.records[2].grad_var = math.nan
    text = p.to_json()
    assert "NaN" not in text and "null" in text
    q = Profile.from_json(text)
    _assert_same(p, q)
    assert math.isnan(q[2].grad_var) and math.isnan(q[0].z_corr)
    assert q.to_json() == text  # and back again, byte for byte
    assert Profile.from_json(text.encode()).to_json() == text


def test_from_json_round_trips_an_empirical_profile_with_seed_values():
    p = varprop.measure(_net(), batch=16, seeds=2, n_threads=1)
    assert p.kind == "empirical" and p.seed_values
    p.seed_values["grad_var"][1][3] = math.nan
    p.records[1].channel_var = math.nan
    text = p.to_json(indent=1)
    q = Profile.from_json(text)
    _assert_same(p, q)
    assert math.isnan(q.seed_column("grad_var")[1, 3])
    assert q.to_json(indent=1) == text
    assert q.forward_ratio() == p.forward_ratio()


def test_from_json_reads_infinity_as_nan_and_rejects_other_documents():
    p = varprop.analyze(_net())
    p.records[0].z_var = math.inf
    q = Profile.from_json(p.to_json())
    assert math.isnan(q[0].z_var)  # JSON has no infinity: to_json wrote null
    with pytest.raises(ValueError, match="not JSON"):
        Profile.from_json("{nope")
    with pytest.raises(ValueError, match="'kind' and 'records'"):
        Profile.from_json("[1, 2]")
    newer = dict(json.loads(p.to_json()), schema_version=99)
    with pytest.raises(ValueError, match="schema_version 99"):
        Profile.from_json(json.dumps(newer))


def test_repr_is_short_and_str_is_a_per_layer_table():
    p = varprop.analyze(varprop.mlp([16] * 31, activation="relu", init="he_normal"))
    r = repr(p)
    assert r.startswith("Profile(kind='analytic', network='mlp depth 30")
    assert r.endswith(", 30 layers)") and len(r) < 120 and "LayerRecord" not in r
    table = str(p)
    assert table == p.table()
    lines = table.splitlines()
    assert lines[0] == r and "Var[z]" in lines[1] and "Var[dL/dz]" in lines[1]
    assert "... 0 layers" not in table
    assert len(lines) == 3 + 30  # repr, header, rule, one line per layer
    assert len(p.table(max_rows=6).splitlines()) == 3 + 6 + 1
    assert "... 24 layers ..." in p.table(max_rows=6)
    assert max(len(line) for line in lines) < 100


def test_table_shows_nan_and_the_confidence_half_widths_of_a_measurement():
    m = varprop.measure(_net(), batch=16, seeds=2, n_threads=1)
    m.records[0].z_var = math.nan
    t = m.table()
    assert "±" in t and "nan" in t.splitlines()[3]
    a = varprop.analyze(varprop.mlp([8] * 3, activation="relu", init="zeros"))
    assert "±" not in a.table() and "symmetric" in a.table()
