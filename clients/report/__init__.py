"""`tailor report`: one self-contained HTML page about a published build, for a marketer.

The page carries everything it needs (plotly.js once, a small stylesheet, the figures' data),
so it opens from disk or an e-mail attachment with no network. It reads the build as
services/build.py writes it: the manifest, whose "segments", "propensity", "trends" and "rules"
are each analysis's own report(), and the tables the charts draw. A part the build lacks (an
older build) is shown as "not available in this build", never a crash. Every string from the
data is HTML-escaped: product titles hold "<" and "&".
"""

from clients.report.data import ReportData, load_report_data
from clients.report.format import NOT_AVAILABLE
from clients.report.page import render_report, write_report
from clients.report.sections import REPORT_SECTIONS

__all__ = ["NOT_AVAILABLE", "REPORT_SECTIONS", "ReportData", "load_report_data", "render_report", "write_report"]
