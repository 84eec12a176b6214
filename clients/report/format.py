"""Small formatting pieces of the page: escaped text, numbers, tables, cards, figures."""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "CNY": "¥", "JPY": "¥"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# No mode bar: on a touch screen or in a screenshot it sits over the chart titles; zoom by
# dragging, double-click to reset.
PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
NOT_AVAILABLE = "not available in this build"


def esc(value) -> str:
    return html.escape(str(value))


def plot_text(value) -> str:
    """A label for plotly, which reads a subset of HTML in its text: escape it to show as is."""
    return html.escape(str(value), quote=False)


def missing(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def count(value) -> str:
    return "—" if missing(value) else f"{round(float(value)):,}"


def number(value, digits: int = 2) -> str:
    return "—" if missing(value) else f"{float(value):,.{digits}f}"


def percent(share, digits: int = 1) -> str:
    if missing(share):
        return "—"
    smallest = 10.0 ** -digits
    if 0 < 100 * float(share) < smallest:  # 33 rows of 541,909 are not "0.0 %"
        return f"< {smallest:.{digits}f} %"
    return f"{100 * float(share):.{digits}f} %"


def money(value, symbol: str) -> str:
    return "—" if missing(value) else f"{symbol}{float(value):,.2f}"


def seconds(value) -> str:
    return "—" if missing(value) else (f"{float(value):,.1f} s" if value < 120 else f"{float(value) / 60:,.1f} min")


def currency_symbol(users: pd.DataFrame | None) -> str:
    """£ for a GBP shop; nothing when the build does not say, or says several."""
    if users is None or "currency" not in users:
        return ""
    codes = users["currency"].dropna().unique()
    return CURRENCY_SYMBOLS.get(str(codes[0]), "") if len(codes) == 1 else ""


def html_table(header: list[str] | None, rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Cells are HTML already (escaped by the caller); columns in `numeric` align right."""
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{cell}</th>' for i, cell in enumerate(header or []))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def figures(*items: tuple[go.Figure, str]) -> str:
    """Figures side by side (two to a row on a wide screen)."""
    return '<div class="grid">' + "".join(figure(fig, name) for fig, name in items) + "</div>"


def figure(fig: go.Figure, name: str, height: int = 360) -> str:
    fig.update_layout(
        template="plotly_white", height=fig.layout.height or height, margin=dict(l=60, r=20, t=fig.layout.margin.t or 50, b=50),
        font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12),
    )
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{name}", config=PLOT_CONFIG)


def unavailable(what: str) -> str:
    return f'<p class="na">{esc(what)}: {NOT_AVAILABLE}.</p>'


def cards(pairs: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{value}</div><div class="label">{esc(label)}</div></div>' for label, value in pairs
    ) + "</div>"


def day(timestamp) -> str:
    return "—" if missing(timestamp) else pd.Timestamp(timestamp).strftime("%Y-%m-%d")
