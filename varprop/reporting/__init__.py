"""The reports of varprop: what ``varprop report`` and ``varprop phase`` compute and how
they are rendered (terminal table, Markdown, JSON, self-contained HTML).

Library use::

    from varprop.reporting import ReportSettings, build_report, report_table
    report = build_report(ReportSettings(initializers=("he_normal", "orthogonal"),
                                         activations=("relu", "tanh"), depth=20))
    print(report_table(report))
    doc = report.to_dict()          # follows varprop/schemas/report.schema.json

Modules: :mod:`.results` (data), :mod:`.compute` (running the analyzer), :mod:`.phase`
(phase diagrams), :mod:`.text`, :mod:`.summaries`, :mod:`.html` (renderers),
:mod:`.output` (errors, atomic files, progress), :mod:`.commands` (the subcommands).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .compute import build_report
from .results import (DEFAULT_ACTIVATIONS, DEFAULT_INITIALIZERS, REPORT_SCHEMA_VERSION, Entry,
                      Report, ReportSettings)
from .text import report_markdown, report_table

__all__ = ["DEFAULT_ACTIVATIONS", "DEFAULT_INITIALIZERS", "REPORT_SCHEMA_VERSION", "Entry",
           "Report", "ReportSettings", "build_report", "report_markdown", "report_table",
           "report_html", "phase_diagram", "load_schema"]


def load_schema(name: str = "report") -> dict[str, Any]:
    """The JSON schema ``name`` ("report", "phase" or "init") shipped in varprop/schemas."""
    if name not in ("report", "phase", "init"):
        raise ValueError(f"load_schema: name must be 'report', 'phase' or 'init', got {name!r}")
    text = resources.files("varprop").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def report_html(report: Report) -> str:
    """The self-contained HTML report (needs matplotlib)."""
    from .html import report_html as _html

    return _html(report)


def phase_diagram(activation: Any, **kwargs: Any) -> Any:
    """See :func:`varprop.reporting.phase.phase_diagram`."""
    from .phase import phase_diagram as _phase

    return _phase(activation, **kwargs)
