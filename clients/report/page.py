"""The page around the sections (stylesheet, navigation, plotly.js once), and writing it to disk."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from plotly.offline import get_plotlyjs

from clients.report.campaign import campaign_section, load_campaign
from clients.report.data import ReportData, load_report_data
from clients.report.format import esc
from clients.report.sections import SECTIONS
from services.artifacts import current_build_dir

STYLE = """
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;background:#f5f6f8}
header{background:#1d2a3a;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}header p{margin:4px 0 0;opacity:.8}
nav{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid #ddd;padding:8px 32px}
nav a{margin-right:16px;color:#1d5fa8;text-decoration:none;font-weight:500}
main{max-width:1280px;margin:0 auto;padding:8px 24px 48px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin:20px 0;padding:8px 24px 20px}
h2{font-size:20px;border-bottom:2px solid #e6e9ee;padding-bottom:6px}h3{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin:10px 0;font-size:14px}th,td{padding:5px 12px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}tbody tr:nth-child(even){background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}.muted{color:#777;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}.card{background:#f0f4fa;border-radius:8px;padding:10px 18px;min-width:140px}
.card .value{font-size:24px;font-weight:600}.card .label{font-size:13px;color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}
.desc{color:#555;font-size:13px;min-width:260px;max-width:380px;margin-top:2px}.wide{overflow-x:auto}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.na{color:#8a6d3b;background:#fcf8e3;padding:8px 12px;border-radius:6px}.ok{color:#2a7a2a}.bad{color:#b02a2a;font-weight:600}
code{font-size:13px;background:#f0f2f5;padding:1px 4px;border-radius:3px}
"""
# Installed before anything else runs: every script error the page meets is kept for a reader
# (and the browser test) to see.
ERROR_COLLECTOR = """window.__reportErrors = [];
window.addEventListener("error", function (e) { window.__reportErrors.push(String(e.message || e)); });
window.addEventListener("unhandledrejection", function (e) { window.__reportErrors.push("unhandled rejection: " + String(e.reason)); });"""


def render_report(data: ReportData) -> str:
    build_id = data.manifest.get("build_id", data.build_dir.name)
    shown = dict(SECTIONS)
    if data.campaign is not None:  # only with --outbox: a build's page has no campaign of its own
        shown["campaign"] = ("Campaign and price audit", campaign_section)
    sections = []
    for section_id, (title, render) in shown.items():
        try:
            body = render(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # An unexpected shape of one part must not take the other sections down with it.
            body = f'<p class="na">This section could not be drawn from this build ({esc(type(error).__name__)}: {esc(error)}).</p>'
        sections.append(f'<section id="{section_id}"><h2>{esc(title)}</h2>{body}</section>')
    nav = "".join(f'<a href="#{section_id}">{esc(title)}</a>' for section_id, (title, _) in shown.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Tailor report: build {esc(build_id)}</title>"
        f"<script>{ERROR_COLLECTOR}</script><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<header><h1>Tailor: what the shoppers do</h1><p>Build {esc(build_id)} · built {esc(data.manifest.get('built_at', '—'))}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(sections)}</main></body></html>\n"
    )


def write_report(artifacts_dir: Path, out: Path, outbox: Path | None = None) -> Path:
    """Write the page for the build published under artifacts_dir to `out`, all or nothing;
    with `outbox`, a campaign section from its audit (audit.json, or audited now).

    Raises Unavailable when nothing is published there; what audit_outbox raises for an
    outbox that cannot be audited."""
    data = load_report_data(current_build_dir(Path(artifacts_dir)))
    if outbox is not None:
        data = replace(data, campaign=load_campaign(Path(outbox), Path(artifacts_dir)))
    page = render_report(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(page, encoding="utf-8")
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return out
