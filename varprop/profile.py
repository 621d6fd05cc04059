"""The per-layer record type shared by the analytic and the empirical analyzer.

Both halves return a :class:`Profile`: one :class:`LayerRecord` per dense layer, in
forward order, so the two compare field by field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator

import numpy as np

from ._json import json_number  # re-exported: the one NaN-to-null helper lives in _json

__all__ = ["LayerRecord", "Profile", "STAT_FIELDS", "SEED_FIELDS", "PROFILE_SCHEMA_VERSION",
           "json_number"]

#: Version of the JSON layout of :meth:`Profile.to_dict`.
PROFILE_SCHEMA_VERSION = 1

#: The statistics every record carries (analytic and empirical alike).
STAT_FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var", "z_corr")
#: The fields an empirical profile also keeps seed by seed (:attr:`Profile.seed_values`).
SEED_FIELDS = ("z_var", "a_var", "grad_var")


@dataclass(slots=True)  # a 100,000-layer report holds millions of records
class LayerRecord:
    """Statistics of one dense layer.

    Attributes:
        index: position among the network's dense layers (0-based).
        n_in, n_out: the layer's fans.
        z_mean, z_var: mean and variance of a pre-activation unit.
        a_mean, a_var: the same after the activation that follows (= z if none).
        grad_var: variance of dL/dz when the network's output gradient is standard normal.
        weight_grad_var: variance of an entry of dL/dW per sample (a batch of B summed
            samples multiplies it by B).
        z_corr: correlation of two inputs' pre-activations (NaN unless asked for).
        symmetric: the layer's initializer makes every unit identical (zeros, constant).
        *_ci: 95% confidence half-widths across seeds (empirical profiles; NaN otherwise).
        channel_sq_mean, channel_var: signal-propagation-plot statistics (Brock et al.
            2021): the average over units of the squared batch mean and of the batch
            variance of z (empirical profiles).
    """

    index: int
    n_in: int
    n_out: int
    z_mean: float = math.nan
    z_var: float = math.nan
    a_mean: float = math.nan
    a_var: float = math.nan
    grad_var: float = math.nan
    weight_grad_var: float = math.nan
    z_corr: float = math.nan
    symmetric: bool = False
    z_mean_ci: float = math.nan
    z_var_ci: float = math.nan
    a_mean_ci: float = math.nan
    a_var_ci: float = math.nan
    grad_var_ci: float = math.nan
    weight_grad_var_ci: float = math.nan
    z_corr_ci: float = math.nan
    channel_sq_mean: float = math.nan
    channel_var: float = math.nan


_RECORD_FIELDS = tuple(f.name for f in fields(LayerRecord))


@dataclass
class Profile:
    """Per-layer statistics of a network: ``kind`` is "analytic" or "empirical".

    ``seed_values`` (empirical profiles) holds, for each field of :data:`SEED_FIELDS`,
    every seed's own value per layer, ``seed_values[name][s][layer]``: the records carry
    only the means over seeds, and the log-space comparison (:mod:`varprop.agreement`)
    needs the spread between seeds. Empty for analytic profiles.
    """

    kind: str
    records: list[LayerRecord]
    network: str = ""
    input_var: float = 1.0
    input_mean: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    seed_values: dict[str, list[list[float]]] = field(default_factory=dict)
    #: Per-pixel maps of the weighted spatial layers (convolutions):
    #: ``maps[layer index][field]`` is an array over the layer's output pixels of the
    #: field's variance (``z_var``, ``a_var``, ``grad_var``; pooled over channels and
    #: the batch when measured). Empty for networks without spatial layers.
    maps: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.records)

    def __getitem__(self, i: int) -> LayerRecord:
        return self.records[i]

    def column(self, name: str) -> np.ndarray:
        """One field over the layers as a numpy array (float, or bool for ``symmetric``)."""
        if name not in _RECORD_FIELDS:
            raise ValueError(f"column: unknown field {name!r}; fields are {', '.join(_RECORD_FIELDS)}")
        values = [getattr(r, name) for r in self.records]
        return np.array(values, dtype=bool if name == "symmetric" else float)

    @property
    def symmetric(self) -> bool:
        """True when some layer's initializer makes its units identical."""
        return any(r.symmetric for r in self.records)

    def forward_ratio(self) -> float:
        """Variance of the last layer's activation over the input variance."""
        return self.records[-1].a_var / self.input_var if self.records else math.nan

    def gradient_ratio(self) -> float:
        """Variance of dL/dz at the first layer over that at the last."""
        if not self.records:
            return math.nan
        return self.records[0].grad_var / self.records[-1].grad_var

    def seed_column(self, name: str) -> np.ndarray:
        """``seed_values[name]`` as a (seeds, layers) float array (NaN where JSON had null);
        a (0, layers) array when the profile kept no per-seed values of ``name``."""
        rows = self.seed_values.get(name)
        if not rows:
            return np.empty((0, len(self.records)))
        return np.array(rows, dtype=float)  # None (JSON's null) becomes NaN

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema_version": PROFILE_SCHEMA_VERSION,
            "kind": self.kind,
            "network": self.network,
            "input_mean": self.input_mean,
            "input_var": self.input_var,
            "meta": self.meta,
            "records": [{k: json_number(v) for k, v in asdict(r).items()} for r in self.records],
        }
        if self.maps:
            out["maps"] = {str(i): {k: _nested(v) for k, v in fields_.items()}
                           for i, fields_ in self.maps.items()}
        if self.seed_values:  # NaN and +-inf become null, as in the records
            out["seed_values"] = {k: [[json_number(v) for v in row] for row in rows]
                                  for k, rows in self.seed_values.items()}
        return out

    def to_json(self, **kwargs: Any) -> str:
        """JSON text; NaN and inf become null (JSON has neither)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        records = [LayerRecord(**{k: (math.nan if v is None else v) for k, v in r.items()})
                   for r in data["records"]]
        seeds = {k: [[math.nan if v is None else v for v in row] for row in rows]
                 for k, rows in data.get("seed_values", {}).items()}
        maps = {int(i): {k: np.array(v, dtype=float) for k, v in fields_.items()}
                for i, fields_ in data.get("maps", {}).items()}
        return cls(data["kind"], records, data.get("network", ""), data.get("input_var", 1.0),
                   data.get("input_mean", 0.0), data.get("meta", {}), seeds, maps)

    @classmethod
    def from_json(cls, text: "str | bytes") -> "Profile":
        """The profile written by :meth:`to_json`: ``Profile.from_json(p.to_json())``
        equals ``p`` field by field, NaN for NaN (JSON's null). Infinities, which
        :meth:`to_json` also writes as null, come back as NaN."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"Profile.from_json: not JSON: {exc}") from None
        if not isinstance(data, dict) or "records" not in data or "kind" not in data:
            raise ValueError("Profile.from_json: expected an object with 'kind' and 'records' "
                             "(the output of Profile.to_json)")
        version = data.get("schema_version", PROFILE_SCHEMA_VERSION)
        if not isinstance(version, int) or version > PROFILE_SCHEMA_VERSION:
            raise ValueError(f"Profile.from_json: schema_version {version!r} is newer than "
                             f"this varprop reads ({PROFILE_SCHEMA_VERSION})")
        return cls.from_dict(data)

    @property
    def row_name(self) -> str:
        """What a record is: "layer", or "step" in a recurrent network's profile."""
        return "step" if self.meta.get("axis") == "time step" else "layer"

    def __repr__(self) -> str:
        network = self.network if len(self.network) <= 48 else self.network[:45] + "..."
        n = len(self.records)
        return (f"Profile(kind={self.kind!r}, network={network!r}, "
                f"{n} {self.row_name}{'' if n == 1 else 's'})")

    #: The columns of :meth:`table`: (field, heading).
    TABLE_COLUMNS = (("z_mean", "E[z]"), ("z_var", "Var[z]"), ("a_var", "Var[a]"),
                     ("grad_var", "Var[dL/dz]"), ("weight_grad_var", "Var[dL/dW]"))

    def table(self, max_rows: int | None = 40) -> str:
        """A compact per-layer table (layer, fans, the main statistics, with their 95%
        half-widths in an empirical profile); beyond ``max_rows`` layers the middle ones
        are elided (``None``: all)."""
        ci = any(math.isfinite(getattr(r, f + "_ci")) for r in self.records
                 for f, _ in self.TABLE_COLUMNS)
        head = [self.row_name, "fans"] + [h for _, h in self.TABLE_COLUMNS]
        rows: list[list[str] | None] = []
        n = len(self.records)
        keep = range(n) if max_rows is None or n <= max_rows else \
            list(range(max_rows // 2)) + [-1] + list(range(n - (max_rows - max_rows // 2), n))
        for i in keep:
            if i < 0:
                rows.append(None)
                continue
            r = self.records[i]
            row = [str(r.index), f"{r.n_in}>{r.n_out}" + (" s" if r.symmetric else "")]
            for f, _ in self.TABLE_COLUMNS:
                v, h = getattr(r, f), getattr(r, f + "_ci")
                row.append(_num(v) + (f" ±{_num(h, 2)}" if ci and math.isfinite(h) else ""))
            rows.append(row)
        widths = [max([len(head[k])] + [len(r[k]) for r in rows if r]) for k in range(len(head))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip()

        out = [repr(self), line(head), line(["-" * w for w in widths])]
        out += [line(r) if r else f"  ... {n - max_rows} {self.row_name}s ..."  # type: ignore[operator]
                for r in rows]
        if any(r.symmetric for r in self.records):
            out.append("s: a symmetric layer (every unit identical)")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _nested(arr: Any) -> Any:
    """A map as nested lists of JSON numbers (NaN and +-inf as null)."""
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 0:
        return json_number(float(arr))
    return [_nested(a) for a in arr]


def _num(v: float, digits: int = 4) -> str:
    """A statistic in ``digits`` significant digits; NaN as ``nan``."""
    return "nan" if math.isnan(v) else f"{v:.{digits}g}"
