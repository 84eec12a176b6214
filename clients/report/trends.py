"""The sales-forecast section: the backtest's accuracy and the weekly forecast charts."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clients.report.data import ReportData
from clients.report.format import PALETTE, count, esc, figure, html_table, missing, number, percent, plot_text, unavailable

# insights.trends: a backtest kind → (its key in the report's "series" and "eligible" counts, the page's word).
TREND_KINDS = {"category": ("categories", "categories"), "item": ("items", "products")}
# The chosen model and the two simple forecasts it is measured against (insights.trends BASELINES).
FORECASTS = {"chosen": "chosen model", "naive": "last week again", "mean4": "mean of the last 4 weeks"}
TREND_MODELS = {
    "ses": "simple exponential smoothing", "holt_damped": "damped trend (Holt)", "arima_011": "ARIMA(0,1,1)",
    "arima_110": "ARIMA(1,1,0)", "arima_100c": "AR(1) with a constant", "mean4": "mean of the last 4 weeks",
}
TOP_CATEGORIES = 6


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
