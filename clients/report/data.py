"""The one place that reads a build: the manifest and the tables the page draws."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from services.artifacts import FILES, MANIFEST
from services.errors import Unavailable

USER_COLUMNS = (
    "user_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm",
    "segment_id", "segment", "propensity", "map_x", "map_y", "currency",
)


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
    campaign: dict | None = None        # a campaign's audit (price_audit.Audit.to_dict()), with --outbox


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
