"""The sections about shoppers: segments, recency/frequency/spend, and who will buy again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from clients.report.data import ReportData
from clients.report.format import (
    PALETTE, cards, count, currency_symbol, day, esc, figures, html_table, missing, money, number, percent, plot_text,
    unavailable,
)
from services.insights.activity import ACTIVITY_COLUMNS
from services.insights.propensity import EXTRA_FEATURES

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
MAP_POINTS = 5_000
TOP_FEATURES = 15


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
