"""`tailor report`: one self-contained HTML page about a published build, for a marketer.

The page carries everything it needs (plotly.js once, a small stylesheet, the figures' data),
so it opens from disk or an e-mail attachment with no network. It reads the build as
services/build.py writes it: the manifest, whose "segments", "propensity", "trends" and "rules"
are each analysis's own report(), and the tables the charts draw. A part the build lacks (an
older build) is shown as "not available in this build", never a crash. Every string from the
data is HTML-escaped: product titles hold "<" and "&".
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pyarrow.parquet as pq
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from services.artifacts import FILES, MANIFEST, current_build_dir
from services.errors import Unavailable
from services.insights.activity import ACTIVITY_COLUMNS
from services.insights.propensity import EXTRA_FEATURES

USER_COLUMNS = (
    "user_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm",
    "segment_id", "segment", "propensity", "map_x", "map_y", "currency",
)
# The typical shopper of a segment, in words a marketer reads; the build may keep more columns.
CENTROID_COLUMNS = {
    "recency_days": "days since bought",
    "frequency": "baskets",
    "monetary": "spend",
    "avg_basket_value": "per basket",
    "mean_unit_price": "unit price",
}
MONEY_COLUMNS = ("monetary", "avg_basket_value", "mean_unit_price")
# The propensity model's features, for the importance chart's hover.
FEATURE_MEANINGS = {**ACTIVITY_COLUMNS, **EXTRA_FEATURES}
# insights.trends: a backtest kind → (its key in the report's "series" and "eligible" counts, the page's word).
TREND_KINDS = {"category": ("categories", "categories"), "item": ("items", "products")}
# The chosen model and the two simple forecasts it is measured against (insights.trends BASELINES).
FORECASTS = {"chosen": "chosen model", "naive": "last week again", "mean4": "mean of the last 4 weeks"}
TREND_MODELS = {
    "ses": "simple exponential smoothing", "holt_damped": "damped trend (Holt)", "arima_011": "ARIMA(0,1,1)",
    "arima_110": "ARIMA(1,1,0)", "arima_100c": "AR(1) with a constant", "mean4": "mean of the last 4 weeks",
}
MAP_POINTS = 5_000
TOP_CATEGORIES = 6
TOP_FEATURES = 15
CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "CNY": "¥", "JPY": "¥"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# No mode bar: on a touch screen or in a screenshot it sits over the chart titles; zoom by
# dragging, double-click to reset.
PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
NOT_AVAILABLE = "not available in this build"


@dataclass
class ReportData:
    """What the page is drawn from (None: the build lacks that part). load_report_data is the
    one place that reads a build."""

    build_dir: Path
    manifest: dict                      # as written: overview, data quality and stages read it directly
    users: pd.DataFrame | None          # USER_COLUMNS that the build has, one row per shopper
    segments_table: pd.DataFrame | None # segments.parquet: one row per segment, with its centroid
    trend_series: pd.DataFrame | None   # trend_series.parquet with a `name` per series
    segments: dict | None               # insights.segments Segments.report()
    propensity: dict | None             # insights.propensity Propensity.report()
    trends: dict | None                 # insights.trends MarketTrends.report()
    rules: dict | None                  # insights.basket_rules BasketRules.report()


def load_report_data(build_dir: Path) -> ReportData:
    build_dir = Path(build_dir)
    manifest_path = build_dir / MANIFEST
    if not manifest_path.is_file():
        raise Unavailable(f"{build_dir} holds no {MANIFEST}: not a published build")
    manifest = json.loads(manifest_path.read_text())

    def table(name: str, columns: tuple[str, ...] | None = None) -> pd.DataFrame | None:
        path = build_dir / FILES[name]
        if not path.is_file():
            return None
        if columns is not None:  # read only what the page draws: a users table is wide
            present = set(pq.read_schema(path).names)
            columns = [column for column in columns if column in present]
        return pd.read_parquet(path, columns=columns)

    trend_series = table("trend_series")
    if trend_series is not None:
        # Series are named by id; the page names them as the shop does.
        names = {}
        categories = table("categories", ("category_id", "name"))
        if categories is not None:
            names.update(zip(categories["category_id"], categories["name"]))
        items = table("items", ("item_id", "title"))
        if items is not None and (trend_series["kind"] == "item").any():
            names.update(zip(items["item_id"].astype(str), items["title"]))
        trend_series["name"] = trend_series["series_id"].map(names).fillna(trend_series["series_id"])
    return ReportData(
        build_dir=build_dir,
        manifest=manifest,
        users=table("users", USER_COLUMNS),
        segments_table=table("segments"),
        trend_series=trend_series,
        segments=manifest.get("segments") or None,
        propensity=manifest.get("propensity") or None,
        trends=manifest.get("trends") or None,
        rules=manifest.get("rules") or None,
    )


def write_report(artifacts_dir: Path, out: Path) -> Path:
    """Write the page for the build published under artifacts_dir to `out`, all or nothing.

    Raises Unavailable when nothing is published there."""
    data = load_report_data(current_build_dir(Path(artifacts_dir)))
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


# --- formatting ----------------------------------------------------------------------------


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


def segment_colours(data: ReportData) -> dict:
    ids: list = []
    if data.segments_table is not None:
        ids = sorted(data.segments_table["segment_id"].tolist())
    elif data.users is not None and "segment_id" in data.users:
        ids = sorted(data.users["segment_id"].dropna().unique().tolist())
    return {segment: PALETTE[i % len(PALETTE)] for i, segment in enumerate(ids)}


def served_scores(propensity: dict) -> tuple[str, dict | None, dict | None]:
    """The held-out month's scores of the propensity that serves: (its name, its scores, the
    recency baseline's when a learned model serves). None: nothing was scored."""
    held_out = propensity.get("held_out") or {}
    method = propensity.get("method", "")
    if method == "lightgbm" and held_out.get("model"):
        return "LightGBM", held_out["model"], held_out.get("recency_baseline")
    if method == "recency baseline":
        return method, held_out.get("recency_baseline"), None
    return method, None, None


def day(timestamp) -> str:
    return "—" if missing(timestamp) else pd.Timestamp(timestamp).strftime("%Y-%m-%d")


# --- sections ------------------------------------------------------------------------------


def overview_section(data: ReportData) -> str:
    manifest = data.manifest
    counts = manifest.get("counts", {})
    span = manifest.get("time_span", {})
    in_cards = {"users": "shoppers", "items": "products", "events": "events"}
    figures_ = [(label, count(counts.get(key))) for key, label in in_cards.items()]
    if data.segments:
        figures_.append(("segments", count(data.segments.get("segments"))))
    if data.propensity:
        name, scores, _ = served_scores(data.propensity)
        if scores and not missing(scores.get("auc")):
            figures_.append((f"buy-again AUC ({name})", number(scores["auc"], 3)))
    rows = [
        ["Build", f'<code>{esc(manifest.get("build_id", "—"))}</code>'],
        ["Built at", esc(manifest.get("built_at", "—"))],
        ["Data source", esc(manifest.get("data", {}).get("source", "—"))],
        ["Events from", esc(span.get("first_event", "—"))],
        ["Events to", esc(span.get("last_event", "—"))],
    ]
    for name, value in counts.items():
        if name in in_cards:
            continue
        if isinstance(value, dict):
            value = "; ".join(f"{esc(key)} {count(n)}" for key, n in value.items())
        else:
            value = count(value)
        rows.append([esc(name.replace("_", " ")), value])
    return cards(figures_) + html_table(None, rows)


def segments_section(data: ReportData) -> str:
    colours = segment_colours(data)
    segments = data.segments_table
    parts = []
    if segments is None or segments.empty:
        parts.append(unavailable("Segments"))
    else:
        parts.append(segment_summary(data.segments))
        parts.append(segment_table(segments, data, colours))
        ordered = segments.sort_values("shoppers", ascending=False)
        bar = go.Figure(go.Bar(
            x=[plot_text(name) for name in ordered["name"]], y=ordered["shoppers"],
            marker_color=[colours.get(segment, PALETTE[0]) for segment in ordered["segment_id"]],
            text=[count(n) for n in ordered["shoppers"]], textposition="outside", cliponaxis=False,
            hovertemplate="%{x}: %{y:,} shoppers<extra></extra>",
        ))
        bar.update_layout(title="Shoppers per segment", yaxis_title="shoppers")
    charts = [] if segments is None or segments.empty else [(bar, "segment-sizes")]
    users = data.users
    mapped = users is not None and {"map_x", "map_y", "segment_id"} <= set(users.columns)
    if mapped and users[["map_x", "map_y"]].notna().all(axis=1).any():
        charts.append((shopper_map(users, colours), "segment-map"))
    else:
        parts.append(unavailable("Map of shoppers"))
    if charts:
        parts.append(figures(*charts))
    return "".join(parts)


def segment_summary(report: dict | None) -> str:
    """How the segments were made and how k was chosen, from Segments.report()."""
    if not report:
        return ""
    features = ", ".join(esc(feature.replace("_", " ")) for feature in report.get("features", []))
    text = f"{count(report.get('segments'))} segments, K-means over the shoppers' {features or 'profile features'}"
    if report.get("note"):
        text += f" ({esc(report['note'])})"
    parts = [f"<p>{text}.</p>"]
    if report.get("silhouette_by_k"):
        # k_tried says which k were eligible (every segment big enough); the best silhouette may not be.
        smallest = {str(row["k"]): row for row in report.get("k_tried") or [] if not row.get("eligible", True)}
        scores = []
        for k, score in report["silhouette_by_k"].items():
            shown = f"k = {esc(k)}: {number(score, 3)}"
            if str(k) == str(report.get("chosen_k")):
                shown = f"<b>{shown}</b>"
            if str(k) in smallest:
                shown += f" (smallest segment {percent(smallest[str(k)].get('smallest_share'))}: too small)"
            scores.append(shown)
        parts.append(f'<p class="muted">Silhouette by k (higher: segments better apart): {", ".join(scores)}.</p>')
    return "".join(parts)


def segment_table(segments: pd.DataFrame, data: ReportData, colours: dict) -> str:
    """Name and description, size, and the segment's typical shopper (its centroid)."""
    symbol = currency_symbol(data.users)
    centroid_columns = [column for column in CENTROID_COLUMNS if column in segments]
    propensity = None
    if data.users is not None and {"segment_id", "propensity"} <= set(data.users.columns):
        propensity = data.users.groupby("segment_id")["propensity"].mean()
    header = ["segment", "tone", "shoppers", "share"] + (["buys again"] if propensity is not None else [])
    header += [esc(CENTROID_COLUMNS[column]) for column in centroid_columns]
    rows = []
    for _, row in segments.sort_values("shoppers", ascending=False).iterrows():
        segment_id = row["segment_id"]
        swatch = f'<span class="swatch" style="background:{colours.get(segment_id, PALETTE[0])}"></span>'
        name = f'{swatch}<b>{esc(row["name"])}</b><div class="desc">{esc(row["description"])}</div>'
        cells = [name, esc(row["tone"]), count(row["shoppers"]), percent(row["share"])]
        if propensity is not None:
            cells.append(percent(propensity.get(segment_id)))
        for column in centroid_columns:
            value = row[column]
            cells.append(money(value, symbol) if column in MONEY_COLUMNS else number(value, 1))
        rows.append(cells)
    return '<div class="wide">' + html_table(header, rows, numeric=set(range(2, len(header)))) + "</div>"


def shopper_map(users: pd.DataFrame, colours: dict, seed: int = 0) -> go.Figure:
    """At most MAP_POINTS shoppers (a seeded sample): enough to see the shape, light to draw."""
    shown = users.dropna(subset=["map_x", "map_y"])
    if len(shown) > MAP_POINTS:
        shown = shown.sample(MAP_POINTS, random_state=seed)
    fig = go.Figure()
    hover_columns = [c for c in ("recency_days", "frequency", "monetary") if c in shown]
    template = "".join(f"<br>{c.replace('_', ' ')}: %{{customdata[{i}]:,.0f}}" for i, c in enumerate(hover_columns))
    for segment_id, group in shown.groupby("segment_id", sort=True):
        name = group["segment"].iloc[0] if "segment" in group else f"segment {segment_id}"
        fig.add_trace(go.Scatter(
            x=group["map_x"], y=group["map_y"], mode="markers", name=plot_text(name),
            marker=dict(size=5, opacity=0.6, color=colours.get(segment_id, PALETTE[0])),
            text=[plot_text(user) for user in group["user_id"]] if "user_id" in group else None,
            customdata=group[hover_columns].to_numpy(np.float64) if hover_columns else None,
            hovertemplate=f"shopper %{{text}}{template}<extra>{plot_text(name)}</extra>",
        ))
    title = f"Map of shoppers ({count(len(shown))} of {count(len(users))}): nearby shoppers behave alike"
    bare = dict(showticklabels=False, title=None, showgrid=False, zeroline=False)
    fig.update_layout(title=title, height=480, xaxis=bare, yaxis=bare, legend=dict(itemsizing="constant"))
    return fig


def rfm_section(data: ReportData) -> str:
    users = data.users
    if users is None or users.empty or not {"recency_days", "frequency", "monetary"} & set(users.columns):
        return unavailable("Recency, frequency and spend")
    symbol = currency_symbol(users)
    labels = {"recency_days": "days since the last purchase", "frequency": "baskets bought", "monetary": f"total spend {symbol}".strip()}
    charts = [(distribution(users[column], labels[column]), f"rfm-{column}") for column in labels if column in users]
    parts = []
    if "recency_days" in users:
        never = int(users["recency_days"].isna().sum())
        parts.append(f"<p>{count(len(users))} shoppers; {count(never)} never bought. Spread over the scores 1 (low) to 5 (high); "
                     "a recency score of 5 means bought most recently.</p>")
    if {"r_score", "f_score"} <= set(users.columns):
        charts.append((score_heat_map(users), "rfm-heat-map"))
    else:
        parts.append(unavailable("R × F scores"))
    return "".join(parts) + figures(*charts)


def distribution(values: pd.Series, label: str) -> go.Figure:
    """A histogram; on a log axis when the values are positive and skewed (spend, baskets)."""
    values = values.dropna().to_numpy(np.float64)
    fig = go.Figure()
    positive = values[values > 0]
    skewed = len(positive) > 2 and pd.Series(positive).skew() > 2
    if skewed:
        edges = np.geomspace(positive.min(), positive.max() * 1.0001, 31)
        if np.all(positive == np.round(positive)):  # counts: whole-number edges, no empty bins between 1 and 2
            edges = np.unique(np.round(np.append(edges, positive.max() + 1)))
        counts, _ = np.histogram(positive, edges)
        # A step outline on a log axis: bars would be drawn with linear widths.
        fig.add_trace(go.Scatter(x=edges, y=np.append(counts, counts[-1]), mode="lines", line_shape="hv", fill="tozeroy",
                                 line=dict(color=PALETTE[0]),
                                 hovertemplate="from %{x:,.1f}: %{y:,} shoppers<extra></extra>"))
        fig.update_xaxes(type="log")
        left_out = len(values) - len(positive)
        note = f" (log scale; {count(left_out)} at zero or below not shown)" if left_out else " (log scale)"
    else:
        fig.add_trace(go.Histogram(x=values, nbinsx=40, marker_color=PALETTE[0], hovertemplate="%{x}: %{y:,} shoppers<extra></extra>"))
        note = ""
    fig.update_layout(title=f"{label}{note}", xaxis_title=label, yaxis_title="shoppers", showlegend=False, bargap=0.05)
    return fig


def score_heat_map(users: pd.DataFrame) -> go.Figure:
    grid = users.groupby(["r_score", "f_score"]).size().unstack(fill_value=0).sort_index(ascending=False)
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=[f"F{f}" for f in grid.columns], y=[f"R{r}" for r in grid.index], colorscale="Blues",
        texttemplate="%{z:,}", hovertemplate="%{y} %{x}: %{z:,} shoppers<extra></extra>", colorbar=dict(title="shoppers"),
    ))
    fig.update_layout(title="Shoppers by recency (R) and frequency (F) score", xaxis_title="frequency score", yaxis_title="recency score")
    return fig


def trends_section(data: ReportData) -> str:
    parts = [forecast_accuracy(data.trends) if data.trends else unavailable("Forecast accuracy")]
    series = data.trend_series
    if series is None or series.empty or not series["actual"].notna().any():
        parts.append(unavailable("Forecast charts"))
    else:
        parts.append(figure(forecast_charts(series), "forecasts"))
    return "".join(parts)


def forecast_accuracy(trends: dict) -> str:
    """MarketTrends.report(): per kind of series, how many are forecast, by which models, and
    the backtest's errors of the chosen model against the two simple forecasts."""
    backtest = trends.get("backtest") or {}
    with_sales, eligible = trends.get("series") or {}, trends.get("eligible") or {}
    scored = {kind: backtest[kind] for kind in TREND_KINDS if (backtest.get(kind) or {}).get("wape")}
    parts = [
        "<p>Sales are counted in baskets per week: baskets holding the product, or any product of the category. "
        "Each series with history enough gets the model that erred least in a backtest over the last weeks of the log "
        "(forecasts made from several recent weeks, checked against what then sold), measured against two simple "
        "forecasts: last week again, and the mean of the last 4 weeks.</p>"
    ]
    header = [""] + [label for _, label in TREND_KINDS.values()]
    rows = [
        ["series with a sale"] + [count(with_sales.get(key)) for key, _ in TREND_KINDS.values()],
        ["forecast by a model"] + [count(eligible.get(key)) for key, _ in TREND_KINDS.values()],
        ["models picked"] + [models_picked((backtest.get(kind) or {}).get("models")) for kind in TREND_KINDS],
        ["beats the better simple forecast, backtest (in sample)"]
        + [percent((backtest.get(kind) or {}).get("beats_better_baseline")) for kind in TREND_KINDS],
        ["beats the better simple forecast, latest weeks (out of sample)"]
        + [percent(((backtest.get(kind) or {}).get("out_of_sample") or {}).get("beats_better_baseline")) for kind in TREND_KINDS],
    ]
    parts.append(html_table(header, rows, numeric={1, 2}))
    if not scored:
        return "".join(parts) + unavailable("Backtest errors")
    rows = []
    for kind, summary in scored.items():
        out_of_sample = (summary.get("out_of_sample") or {}).get("wape") or {}
        columns = [summary["wape"], summary.get("mase") or {}, out_of_sample]
        best = [min((v for v in column.values() if not missing(v)), default=None) for column in columns]
        for i, (key, label) in enumerate(FORECASTS.items()):
            cells = [number(column.get(key), 3) for column in columns]
            cells = [f"<b>{cell}</b>" if column.get(key) == low and not missing(low) else cell
                     for cell, column, low in zip(cells, columns, best)]
            rows.append([f"<b>{TREND_KINDS[kind][1]}</b> ({count(summary.get('series'))})" if i == 0 else "", label, *cells])
    parts.append("<p>Backtest errors (lower is better; the best of each column in bold). WAPE: the error summed over "
                 "all series and weeks, over the sales. MASE: a series' error over its typical week-to-week change "
                 "before the backtest (above 1: larger than that change), averaged over the series.</p>")
    parts.append(html_table(["series", "forecast", "WAPE, backtest", "MASE, backtest", "WAPE, latest weeks (out of sample)"],
                            rows, numeric={2, 3, 4}))
    parts.append('<p class="muted">The chosen model is picked on the same weeks the backtest scores it on, so the '
                 "backtest figures, and the share that beats the better simple forecast, flatter it. The out-of-sample "
                 "figures pick the model on the first half of those weeks and score it on the second half, which the "
                 "pick did not see: they are the ones to trust.</p>")
    return "".join(parts)


def models_picked(models: dict | None) -> str:
    if not models:
        return "—"
    ranked = sorted(models.items(), key=lambda pair: -pair[1])
    return "<br>".join(f"{esc(TREND_MODELS.get(model, model))} {count(n)}" for model, n in ranked)


def forecast_charts(series: pd.DataFrame) -> go.Figure:
    """The best-selling categories (products when the build has no categories): history, forecast, band."""
    kind = "category" if (series["kind"] == "category").any() else series["kind"].iloc[0]
    series = series[series["kind"] == kind]
    top = series.groupby("series_id")["actual"].sum().nlargest(TOP_CATEGORIES).index
    names = series.drop_duplicates("series_id").set_index("series_id")["name"]
    rows = math.ceil(len(top) / 2)
    fig = make_subplots(rows=rows, cols=2, subplot_titles=[plot_text(names[s]) for s in top],
                        vertical_spacing=0.22 / max(rows, 1), horizontal_spacing=0.08)
    for i, series_id in enumerate(top):
        one = series[series["series_id"] == series_id].sort_values("week_start")
        at = dict(row=i // 2 + 1, col=i % 2 + 1)
        history = one[one["actual"].notna()]
        future = one[one["forecast"].notna()]
        first = i == 0
        fig.add_trace(go.Scatter(x=history["week_start"], y=history["actual"], mode="lines", name="baskets per week",
                                 line=dict(color=PALETTE[0]), legendgroup="a", showlegend=first), **at)
        if future.empty:
            continue
        if not history.empty:  # the forecast line starts where the history ends
            future = pd.concat([history.tail(1).assign(forecast=history["actual"].iloc[-1],
                                                       lower=history["actual"].iloc[-1], upper=history["actual"].iloc[-1]), future])
        fig.add_trace(go.Scatter(x=future["week_start"], y=future["upper"], mode="lines", line=dict(width=0),
                                 showlegend=False, hoverinfo="skip", legendgroup="b"), **at)
        fig.add_trace(go.Scatter(x=future["week_start"], y=future["lower"], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(255,127,14,0.2)", name="forecast interval", legendgroup="b", showlegend=first), **at)
        fig.add_trace(go.Scatter(x=future["week_start"], y=future["forecast"], mode="lines", name="forecast",
                                 line=dict(color=PALETTE[1], dash="dash"), legendgroup="c", showlegend=first), **at)
    label = TREND_KINDS.get(kind, (kind, kind))[1]
    of = series["series_id"].nunique()
    fig.update_layout(title=f"The {len(top)} {label} (of {count(of)}) with the most baskets: weekly history and forecast",
                      height=260 * rows + 120, legend=dict(orientation="h", y=-0.08), margin=dict(t=100))
    return fig


def rules_section(data: ReportData) -> str:
    """BasketRules.report(): the strongest rules by lift among those above the report's support floor."""
    rules = data.rules
    if not rules or not rules.get("top_rules_by_lift"):
        return unavailable("Association rules")
    top = rules["top_rules_by_lift"]
    rows = [[str(i), " + ".join(esc(title) for title in rule["antecedent"]), esc(rule["consequent"]), count(rule["baskets"]),
             percent(rule["support"], 2), percent(rule["confidence"]), f"{number(rule['lift'], 1)} ×"]
            for i, rule in enumerate(top, 1)]
    intro = (
        f"<p>{count(rules['rules'])} rules mined from {count(rules['baskets'])} baskets, each from products bought together "
        f"in at least {count(rules.get('min_baskets_per_itemset'))} baskets; {count(rules.get('items_with_rules'))} products "
        f"lead to another. Below, the {len(top)} strongest by lift (how many times likelier the second product is in a basket "
        f"that holds the first), among the rules found in at least {percent(rules.get('top_rules_min_support'))} of the "
        "baskets: rarer ones can show a high lift by chance. Each set of products is listed once, in its most confident "
        "direction.</p>"
    )
    header = ["#", "shoppers who buy", "also buy", "baskets", "support", "confidence", "lift"]
    return intro + html_table(header, rows, numeric={0, 3, 4, 5, 6})


def propensity_section(data: ReportData) -> str:
    """Propensity.report(): the held-out month's scores of the model and of the recency baseline."""
    info = data.propensity
    if not info:
        return unavailable("Purchase propensity")
    name, scores, baseline = served_scores(info)
    windows = {window["window"]: window for window in info.get("windows") or []}
    text = f"Probability that a shopper buys within {number(info.get('horizon_days'), 0)} days"
    held_out = windows.get("held_out")
    if held_out and not missing(held_out.get("positives")) and held_out.get("shoppers"):
        text += (f", checked on a period it did not learn from: of the {count(held_out['shoppers'])} shoppers known on "
                 f"{day(held_out['cut'])}, {count(held_out['positives'])} "
                 f"({percent(held_out['positives'] / held_out['shoppers'])}) bought by {day(held_out.get('label_end'))}")
    if name != "LightGBM":
        text += f". This build serves the {name}, not a learned model"
    parts = [f"<p>{esc(text)}.</p>"]
    if info.get("note"):
        parts.append(f'<p class="muted">{esc(info["note"])}</p>')
    if not scores:
        return "".join(parts) + unavailable("Held-out scores")
    figures_ = [(f"AUC, {name}", number(scores.get("auc"), 3))]
    if baseline:
        figures_.append(("AUC, recency baseline", number(baseline.get("auc"), 3)))
    figures_.append((f"Brier (lower is better), {name}", number(scores.get("brier"), 3)))
    if baseline:
        figures_.append(("Brier, recency baseline", number(baseline.get("brier"), 3)))
    parts.append(cards(figures_))
    curves = [(name, scores, PALETTE[0])] + ([("recency baseline", baseline, PALETTE[1])] if baseline else [])
    charts = []
    if any(part.get("reliability") for _, part, _ in curves):
        fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#aaa", dash="dot"), name="perfectly calibrated"))
        for label, part, colour in curves:
            bins = pd.DataFrame(part.get("reliability") or [], columns=["count", "mean_predicted", "observed_rate"])
            bins = bins[(bins["count"] > 0) & bins["mean_predicted"].notna() & bins["observed_rate"].notna()]
            fig.add_trace(go.Scatter(x=bins["mean_predicted"], y=bins["observed_rate"], mode="lines+markers", name=label,
                                     line=dict(color=colour), customdata=bins["count"],
                                     hovertemplate="predicted %{x:.1%}, observed %{y:.1%} (%{customdata:,} shoppers)<extra></extra>"))
        fig.update_layout(title="Reliability: predicted vs observed rate", xaxis=dict(title="predicted probability", range=[0, 1]),
                          yaxis=dict(title="observed share who bought", range=[0, 1]), legend=dict(x=0.02, y=0.98))
        charts.append((fig, "reliability"))
    importance = pd.DataFrame(info.get("importance") or [], columns=["feature", "share"]).dropna()
    if importance.empty:
        parts.append(unavailable("Feature importance"))
    else:
        importance = importance.nlargest(TOP_FEATURES, "share").iloc[::-1]
        meanings = [plot_text(FEATURE_MEANINGS.get(feature, "")) for feature in importance["feature"]]
        fig = go.Figure(go.Bar(x=importance["share"], y=[plot_text(f) for f in importance["feature"]], orientation="h",
                               marker_color=PALETTE[2], customdata=meanings,
                               hovertemplate="%{y}: %{x:.1%} of the gain<br>%{customdata}<extra></extra>"))
        subject = "model" if name == "LightGBM" else name
        fig.update_layout(title=f"What the {subject} looks at: each feature's share of the gain",
                          xaxis=dict(title="share of the gain", tickformat=".0%"), height=max(360, 24 * len(importance) + 120))
        charts.append((fig, "importance"))
    return "".join(parts) + (figures(*charts) if charts else "")


def data_quality_section(data: ReportData) -> str:
    info = data.manifest.get("data")
    if not info or "rows_read" not in info:
        return unavailable("Data-quality counts")
    files = info.get("files") or []
    parts = [f"<p>Source <b>{esc(info.get('source', '—'))}</b>"
             + (f" ({', '.join(f'<code>{esc(Path(f).name)}</code>' for f in files)})" if files else "") + ".</p>"]
    for table, read in info["rows_read"].items():
        kept = info.get("rows_kept", {}).get(table)
        dropped = info.get("dropped", {}).get(table, {})
        repaired = info.get("repaired", {}).get(table, {})
        rows = [["rows read", count(read), ""], ["rows kept", count(kept), percent(kept / read if read and kept is not None else None)]]
        rows += [[f"dropped: {esc(reason.replace('_', ' '))}", count(n), percent(n / read if read else None)]
                 for reason, n in dropped.items() if n]
        rows += [[f"repaired: {esc(what.replace('_', ' '))}", count(n), percent(n / read if read else None)]
                 for what, n in repaired.items() if n]
        adds_up = kept is not None and read == kept + sum(dropped.values())
        verdict = ('<span class="ok">✔ every row read is kept or dropped for a named reason</span>' if adds_up else
                   '<span class="bad">✘ the counts do not add up: read ≠ kept + dropped</span>')
        clean = [esc(name.replace("_", " ")) for name, n in {**dropped, **repaired}.items() if not n]
        parts.append(f"<h3>{esc(table.replace('_', ' '))}</h3>" + html_table(["", "rows", "of read"], rows, numeric={1, 2})
                     + (f'<p class="muted">Checked, none found: {", ".join(clean)}.</p>' if clean else "") + f"<p>{verdict}</p>")
    if "balanced" in info:
        parts.append(f"<p>The build's own check: {'balanced' if info['balanced'] else '<b>not balanced</b>'}.</p>")
    if info.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in info["notes"]) + "</ul>")
    return "".join(parts)


def build_stages_section(data: ReportData) -> str:
    stages = data.manifest.get("stages")
    if not stages:
        return unavailable("Stage timings")
    total = sum(stages.values())
    fig = go.Figure(go.Bar(x=list(stages.values())[::-1], y=[plot_text(s) for s in list(stages)[::-1]], orientation="h",
                           marker_color=PALETTE[4], hovertemplate="%{y}: %{x:,.1f} s<extra></extra>"))
    fig.update_layout(title=f"Seconds per stage (total {seconds(total)})", xaxis_title="seconds", height=max(300, 28 * len(stages) + 120))
    rows = [[esc(stage), seconds(value), percent(value / total if total else None)] for stage, value in stages.items()]
    return figures((fig, "stages")) + html_table(["stage", "time", "share"], rows, numeric={1, 2})


# The page's sections in order: id → (heading, renderer). The ids are the page's contract
# (links, tests).
SECTIONS: dict[str, tuple[str, Callable[[ReportData], str]]] = {
    "overview": ("Overview", overview_section),
    "segments": ("Shopper segments", segments_section),
    "rfm": ("Recency, frequency, spend", rfm_section),
    "trends": ("Sales forecasts", trends_section),
    "rules": ("Bought together", rules_section),
    "propensity": ("Who will buy again", propensity_section),
    "data-quality": ("Data quality", data_quality_section),
    "build-stages": ("Build stages", build_stages_section),
}
REPORT_SECTIONS = tuple(SECTIONS)


# --- the page ------------------------------------------------------------------------------

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
    sections = []
    for section_id, (title, render) in SECTIONS.items():
        try:
            body = render(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # An unexpected shape of one part must not take the other sections down with it.
            body = f'<p class="na">This section could not be drawn from this build ({esc(type(error).__name__)}: {esc(error)}).</p>'
        sections.append(f'<section id="{section_id}"><h2>{esc(title)}</h2>{body}</section>')
    nav = "".join(f'<a href="#{section_id}">{esc(title)}</a>' for section_id, (title, _) in SECTIONS.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Tailor report: build {esc(build_id)}</title>"
        f"<script>{ERROR_COLLECTOR}</script><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<header><h1>Tailor: what the shoppers do</h1><p>Build {esc(build_id)} · built {esc(data.manifest.get('built_at', '—'))}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(sections)}</main></body></html>\n"
    )
