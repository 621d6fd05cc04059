"""``varprop.report``: the public face of the reports (see :mod:`varprop.reporting`).

    >>> from varprop.report import ReportSettings, build_report, report_table
    >>> report = build_report(ReportSettings(initializers=("he_normal",),
    ...                                      activations=("relu",), depth=10,
    ...                                      analytic_only=True))
    >>> report.entries[0].analytic_verdict.kind
    'preserves'
"""

from .reporting import (DEFAULT_ACTIVATIONS, DEFAULT_INITIALIZERS, REPORT_SCHEMA_VERSION, Entry,
                        Report, ReportSettings, build_report, load_schema, phase_diagram,
                        report_html, report_markdown, report_table)

__all__ = ["DEFAULT_ACTIVATIONS", "DEFAULT_INITIALIZERS", "REPORT_SCHEMA_VERSION", "Entry",
           "Report", "ReportSettings", "build_report", "load_schema", "phase_diagram",
           "report_html", "report_markdown", "report_table"]
