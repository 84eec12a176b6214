"""`tailor report`: the HTML page about a build, opened in headless Chromium like a marketer would."""

from __future__ import annotations

import html
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from clients.report import NOT_AVAILABLE, REPORT_SECTIONS, load_report_data, render_report, write_report
from services.artifacts import current_build_dir
from services.errors import Unavailable

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# tests/artifacts/ is git-ignored: the screenshot stays there for a person to look at.
SCREENSHOT_DIR = Path(os.environ.get("TAILOR_TEST_OUTPUT", ROOT / "tests" / "artifacts"))
# A developer machine without Chromium skips the browser test; CI must have it (`make test` installs it).
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"{CHROMIUM} is not installed (`make browser` installs Debian's chromium and chromium-driver)",
)
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


@pytest.fixture(scope="module")
def sample_report(sample_build, sample_config, tmp_path_factory) -> Path:
    return write_report(sample_config.artifacts_dir, tmp_path_factory.mktemp("report") / "report.html")


class ExternalReferences(HTMLParser):
    """Every script, stylesheet, image or frame the page would fetch rather than carry."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe") and attrs.get("src"):
            self.found.append(f"<{tag} src={attrs['src']}>")
        if tag == "link" and attrs.get("href"):
            self.found.append(f"<link href={attrs['href']}>")


def external_references(page: str) -> list[str]:
    parser = ExternalReferences()
    parser.feed(page)
    return parser.found


def section_text(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}">')
    return page[start:page.index("</section>", start)]


def open_in_chromium(path: Path, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # A fresh profile: an old one may hold sign-in or sync state that reaches for the network.
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.get(path.as_uri())
    return driver


def fit_window_to_page(driver, width: int = 1400) -> None:
    """Grow the window until its viewport holds the whole document (the window's frame takes some)."""
    for _ in range(3):
        short = driver.execute_script("return document.documentElement.scrollHeight - window.innerHeight")
        if short <= 0:
            return
        driver.set_window_size(width, driver.get_window_size()["height"] + short)


CHARTS_DRAWN = """
const charts = [...document.querySelectorAll('.plotly-graph-div')];
return charts.every(div => div.querySelector('.main-svg') && div._fullData && div._fullData.length > 0);
"""


@needs_chromium
def test_headless_chromium_renders_every_section_with_no_script_error(sample_report, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = open_in_chromium(sample_report, tmp_path / "chromium-profile")
    try:
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(CHARTS_DRAWN))
        # The whole page in one picture, kept before any check so a failing page can be looked at:
        # a viewport as tall as the document, charts redrawn to it.
        fit_window_to_page(driver)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(CHARTS_DRAWN))
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        print(f"report screenshot: {shutil.copy(screenshot, SCREENSHOT_DIR / 'report.png')}")

        for section_id in REPORT_SECTIONS:
            section = driver.find_element(By.ID, section_id)
            assert section.is_displayed(), section_id
            assert section.find_element(By.TAG_NAME, "h2").text.strip(), section_id
        charts = driver.execute_script("return [...document.querySelectorAll('.plotly-graph-div')].map(div => div.id)")
        expected = {"fig-segment-sizes", "fig-segment-map", "fig-rfm-heat-map", "fig-forecasts", "fig-reliability", "fig-importance", "fig-stages"}
        assert expected - set(charts) == set()
        assert driver.execute_script("return window.__reportErrors") == []
        severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert severe == []
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
        assert [name for name in fetched if not name.startswith(("file:", "data:", "blob:"))] == []
    finally:
        driver.quit()
    assert screenshot.stat().st_size > 50_000  # a blank page compresses to far less


def test_the_sample_build_fills_every_section(sample_report):
    page = sample_report.read_text()
    empty = [section_id for section_id in REPORT_SECTIONS if NOT_AVAILABLE in section_text(page, section_id)]
    assert empty == []
    assert "could not be drawn" not in page


def test_the_page_fetches_nothing(sample_report):
    page = sample_report.read_text()
    assert external_references(page) == []
    assert get_plotlyjs()[:1000] in page  # plotly.js travels inside the page


BASE_MANIFEST = {
    "build_id": "b-minimal", "built_at": "2026-01-01T00:00:00+00:00", "counts": {"items": 2, "events": 3, "users": 2},
    "time_span": {"first_event": "2011-01-01T00:00:00", "last_event": "2011-01-02T00:00:00"},
    "data": {"source": "inline", "files": [], "rows_read": {"events": 4}, "rows_kept": {"events": 3},
             "dropped": {"events": {"blank_customer": 1}}, "repaired": {}, "notes": [], "balanced": True},
}


def build_folder(folder: Path, manifest: dict | None = None, **tables: pd.DataFrame) -> Path:
    """A build folder: the manifest (over what every build has) and the tables given, by file name
    (users defaults to two shoppers with nothing but an id)."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({**BASE_MANIFEST, **(manifest or {})}))
    tables.setdefault("users", pd.DataFrame({"user_id": ["u1", "u2"]}))
    for name, table in tables.items():
        table.to_parquet(folder / f"{name}.parquet")
    return folder


def page_of(folder: Path) -> str:
    return render_report(load_report_data(folder))


def test_a_build_without_the_insights_says_so_in_each_section(tmp_path):
    page = page_of(build_folder(tmp_path / "build"))
    for section_id in REPORT_SECTIONS:
        assert f'<section id="{section_id}">' in page
    for section_id in ("segments", "rfm", "trends", "rules", "propensity", "build-stages"):
        assert NOT_AVAILABLE in section_text(page, section_id), section_id
    for section_id in ("overview", "data-quality"):
        assert NOT_AVAILABLE not in section_text(page, section_id), section_id
    assert "could not be drawn" not in page


def test_data_quality_flags_counts_that_do_not_add_up(tmp_path):
    data = {"source": "inline", "rows_read": {"events": 10}, "rows_kept": {"events": 7}, "dropped": {"events": {"blank_customer": 2}}}
    assert "do not add up" in section_text(page_of(build_folder(tmp_path / "build", {"data": data})), "data-quality")
    balanced = page_of(build_folder(tmp_path / "balanced"))
    assert "every row read is kept or dropped" in section_text(balanced, "data-quality")


def shoppers(**columns) -> pd.DataFrame:
    table = pd.DataFrame({
        "user_id": ["u1", "u2", "u3"], "segment_id": [0, 0, 1], "segment": ["loyal", "loyal", "lapsed"],
        "map_x": [0.0, 1.0, 2.0], "map_y": [0.0, 1.0, 0.5], "recency_days": [1.0, np.nan, 30.0],
        "frequency": [3.0, 0.0, 1.0], "monetary": [10.0, 0.0, 5.0], "r_score": [5, 0, 2], "f_score": [5, 0, 2],
        "propensity": [0.8, 0.1, 0.3],
    })
    return table.assign(**columns)


def weekly_series(name: str | None = "mugs") -> pd.DataFrame:
    weeks = pd.date_range("2011-01-03", periods=6, freq="W-MON")
    table = pd.DataFrame({
        "kind": "category", "series_id": "c1", "week_start": weeks,
        "actual": [3.0, 4.0, 5.0, 6.0, np.nan, np.nan], "forecast": [np.nan] * 4 + [6.0, 6.0],
        "lower": [np.nan] * 4 + [4.0, 4.0], "upper": [np.nan] * 4 + [8.0, 8.0],
    })
    return table if name is None else table.assign(name=name)


RULE = {"antecedent": ["ALARM CLOCK RED"], "consequent": "ALARM CLOCK GREEN", "baskets": 11, "support": 0.0382,
        "confidence": 0.846, "lift": 15.23}


def rules_report(*top: dict) -> dict:
    """BasketRules.report() as the build writes it."""
    return {"baskets": 288, "items_in_baskets": 1112, "min_baskets_per_itemset": 3, "itemsets": {"1": 368, "2": 592},
            "rules": 3094, "rules_one_item_antecedent": 1174, "rules_two_item_antecedent": 1920, "rules_lift_above_1": 3094,
            "items_with_rules": 234, "top_rules_min_support": 0.03472, "top_rules_by_lift": list(top)}


def segments_table(**columns) -> pd.DataFrame:
    """segments.parquet as the build writes it (a few of its centroid columns)."""
    table = pd.DataFrame({"segment_id": [0, 1], "name": ["loyal", "lapsed"], "description": ["often", "long ago"],
                          "tone": ["grateful", "win-back"], "archetype_code": [0, 5], "shoppers": [2, 1], "share": [2 / 3, 1 / 3],
                          "recency_days": [3.0, 200.0], "frequency": [8.0, 1.0], "monetary": [3000.0, 150.0]})
    return table.assign(**columns)


def test_strings_from_the_data_are_escaped(tmp_path):
    hostile = '<img src=x onerror="alert(1)"> Tea & <b>Cakes</b>'
    rule = {**RULE, "antecedent": [hostile], "consequent": "MUG </td>"}
    manifest = {"build_id": "<b>id</b>", "rules": rules_report(rule), "stages": {hostile: 1.0}}
    segments = segments_table(name=[hostile, "b"], description=["a & b", "<i>"])
    page = page_of(build_folder(tmp_path / "build", manifest, users=shoppers(segment=[hostile, hostile, "b"], user_id=[hostile, "u2", "u3"]),
                                segments=segments, trend_series=weekly_series(hostile)))
    ours = page.replace(get_plotlyjs(), "")  # plotly's own bundle is not data
    assert "<img" not in ours and "<b>Cakes" not in ours and "MUG </td>" not in ours and "<b>id" not in ours and "<i>" not in ours
    assert "could not be drawn" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; Tea &amp; &lt;b&gt;Cakes&lt;/b&gt;" in section_text(page, "rules")
    assert "MUG &lt;/td&gt;" in section_text(page, "rules")
    assert external_references(page) == []


def test_the_report_shows_shares_counts_and_money_as_a_reader_expects(tmp_path):
    users = pd.DataFrame({"user_id": ["u1", "u2"], "segment_id": [0, 0], "currency": ["GBP", "GBP"], "propensity": [0.25, 0.5]})
    segments = segments_table(shoppers=[12345, 1], share=[0.1234, 0.0001], monetary=[1520.5, 1.0])
    page = page_of(build_folder(tmp_path / "build", {"counts": {"events": 1234567}}, users=users, segments=segments))
    assert "12,345" in page and "12.3 %" in page and "£1,520.50" in page and "37.5 %" in page  # "buys again": the mean propensity
    assert "1,234,567" in section_text(page, "overview")


def reliability(offset: float) -> list[dict]:
    return [{"bin": b, "lower": b / 10, "upper": (b + 1) / 10, "count": 5, "mean_predicted": b / 10 + 0.05,
             "observed_rate": b / 10 + offset} for b in range(10)]


def held_out(auc: float, brier: float, offset: float) -> dict:
    return {"auc": auc, "brier": brier, "shoppers": 50, "positives": 17, "observed_rate": 0.34, "mean_predicted": 0.3,
            "reliability": reliability(offset)}


WINDOWS = [
    {"window": "train", "cut": "2011-10-10T12:49:01", "label_end": "2011-11-09T12:49:01", "shoppers": 45, "positives": 18},
    {"window": "held_out", "cut": "2011-11-09T12:49:01", "label_end": "2011-12-09T12:49:01", "shoppers": 50, "positives": 17},
    {"window": "served", "cut": "2011-12-09T12:49:01", "label_end": None, "shoppers": 60, "positives": None},
]


def propensity_report(method: str = "lightgbm", note: str = "", **changes) -> dict:
    """Propensity.report() as the build writes it: by default a learned model, next to the baseline."""
    report = {"as_of": "2011-12-09T12:49:01", "horizon_days": 30.0, "method": method, "note": note, "rounds": 91,
              "shoppers": 60, "mean_probability": 0.35, "windows": WINDOWS,
              "held_out": {"model": held_out(0.812, 0.151, 0.05), "recency_baseline": held_out(0.701, 0.19, 0.0)},
              "importance": [{"feature": "frequency", "share": 0.75}, {"feature": "baskets_180d", "share": 0.25}]}
    return {**report, **changes}


def backtest(wape: tuple, mase: tuple, beats: float, oos_wape: tuple, oos_beats: float, models: dict) -> dict:
    """One kind of MarketTrends.report()["backtest"]: errors of (chosen, naive, mean4)."""
    def errors(values):
        return dict(zip(("chosen", "naive", "mean4"), values))

    return {"series": sum(models.values()), "points": 26 * sum(models.values()), "wape": errors(wape), "mase": errors(mase),
            "mase_series": sum(models.values()), "beats_better_baseline": beats, "models": models, "fallbacks": 0,
            "out_of_sample": {"wape": errors(oos_wape), "beats_better_baseline": oos_beats}}


TRENDS_REPORT = {
    "as_of": "2011-12-09T12:49:01", "weeks": 53, "series": {"categories": 4, "items": 90}, "eligible": {"categories": 3, "items": 7},
    "backtest": {
        "category": backtest((0.312, 0.401, 0.355), (0.88, 1.0, 0.93), 0.625, (0.301, 0.322, 0.333), 0.6667, {"holt_damped": 2, "ses": 1}),
        "item": backtest((0.523, 0.611, 0.544), (1.21, 1.59, 1.27), 0.5714, (0.538, 0.601, 0.469), 0.2857, {"ses": 4, "arima_110": 3}),
    },
    "trending": {"items_scored": 100, "by_model": 7, "rising": 40, "falling": 30, "selling_fast": 3, "top": ["1", "2"]},
    "seconds": 1.5,
}
# The insight parts of the manifest as services/build.py writes them: each analysis's report().
INSIGHTS_MANIFEST = {
    "segments": {"segments": 2, "chosen_k": 2, "features": ["recency_days", "frequency"], "note": "k=2 by silhouette among eligible k",
                 "silhouette_by_k": {"2": 0.41, "3": 0.45},
                 "k_tried": [{"k": 2, "silhouette": 0.41, "smallest_share": 0.33, "eligible": True},
                             {"k": 3, "silhouette": 0.45, "smallest_share": 0.004, "eligible": False}],
                 "segments_table": segments_table().drop(columns=["recency_days", "frequency", "monetary"]).to_dict("records")},
    "propensity": propensity_report(),
    "trends": TRENDS_REPORT,
    "rules": rules_report(RULE),
}


def insights_page(tmp_path, **changes) -> str:
    return page_of(build_folder(tmp_path / "build", {**INSIGHTS_MANIFEST, **changes}, users=shoppers(),
                                segments=segments_table(), trend_series=weekly_series()))


def test_the_build_manifest_fills_the_insight_sections(tmp_path):
    page = insights_page(tmp_path)
    for section_id in ("segments", "rfm", "trends", "rules", "propensity"):
        assert NOT_AVAILABLE not in section_text(page, section_id), section_id
    segments = section_text(page, "segments")
    assert "<b>k = 2: 0.410</b>" in segments and "long ago" in segments and "k=2 by silhouette among eligible k" in segments
    assert "k = 3: 0.450 (smallest segment 0.4 %: too small)" in segments
    assert "could not be drawn" not in page


def test_the_forecast_backtest_shows_categories_and_products_in_and_out_of_sample(tmp_path):
    trends = section_text(insights_page(tmp_path), "trends")
    for figure in ("0.312", "0.401", "0.355", "0.880", "0.930", "0.301", "0.322", "0.333",   # categories
                   "0.523", "0.611", "0.544", "1.210", "1.590", "0.538", "0.601", "0.469"):  # products
        assert figure in trends, figure
    assert "62.5 %" in trends and "66.7 %" in trends and "57.1 %" in trends and "28.6 %" in trends  # beats the better baseline
    assert "<b>categories</b> (3)" in trends and "<b>products</b> (7)" in trends
    assert "damped trend (Holt) 2" in trends and "ARIMA(1,1,0) 3" in trends
    assert "flatter it" in trends and "out of sample" in trends
    assert "<b>0.469</b>" in trends  # out of sample, the 4-week mean beat the products' chosen model: it is the best


def test_a_build_without_a_product_backtest_shows_the_categories_alone(tmp_path):
    trends = {**TRENDS_REPORT, "eligible": {"categories": 3, "items": 0},
              "backtest": {**TRENDS_REPORT["backtest"], "item": {"series": 0, "points": 0}}}
    text = section_text(insights_page(tmp_path, trends=trends), "trends")
    assert "0.312" in text and "0.523" not in text and "<b>products</b>" not in text
    assert NOT_AVAILABLE not in text


def test_propensity_shows_the_model_against_the_baseline_and_importance_as_shares(tmp_path):
    page = insights_page(tmp_path)
    text = section_text(page, "propensity")
    assert all(figure in text for figure in ("0.812", "0.701", "0.151", "0.190"))
    assert "of the 50 shoppers known on 2011-11-09, 17 (34.0 %) bought by 2011-12-09" in text
    assert "share of the gain" in text and "gain:" not in text
    assert "0.812" in section_text(page, "overview")


def test_the_rules_list_says_its_support_floor_and_counts_baskets(tmp_path):
    text = section_text(insights_page(tmp_path), "rules")
    assert "ALARM CLOCK GREEN" in text and "15.2 ×" in text and "3.82 %" in text
    assert "<td class=num>11</td>" in text  # the rule's baskets
    assert "at least 3.5 % of the baskets" in text and "3,094 rules mined from 288 baskets" in text


def test_a_build_that_fell_back_to_recency_shows_the_baseline_as_what_serves(tmp_path):
    propensity = propensity_report("recency baseline", "too little to learn from", rounds=0,
                                   held_out={"model": None, "recency_baseline": held_out(0.701, 0.19, 0.0)},
                                   importance=[{"feature": "recency_days", "share": 1.0}])
    text = section_text(page_of(build_folder(tmp_path / "build", {"propensity": propensity})), "propensity")
    assert "serves the recency baseline" in text and "0.701" in text and "too little to learn from" in text
    assert "0.812" not in text and NOT_AVAILABLE not in text


def test_a_build_serving_the_base_rate_says_nothing_was_scored(tmp_path):
    propensity = propensity_report("base rate", "one label class only", rounds=0, importance=[],
                                   held_out={"model": None, "recency_baseline": None})
    page = page_of(build_folder(tmp_path / "build", {"propensity": propensity}))
    text = section_text(page, "propensity")
    assert "one label class only" in text and f"Held-out scores: {NOT_AVAILABLE}" in text
    assert "could not be drawn" not in page and "AUC" not in section_text(page, "overview")


def test_the_sample_build_page_shows_the_figures_its_manifest_holds(sample_report, sample_config):
    manifest = load_report_data(current_build_dir(sample_config.artifacts_dir)).manifest
    page = sample_report.read_text()
    assert html.escape(manifest["segments"]["note"]) in section_text(page, "segments")
    category = manifest["trends"]["backtest"]["category"]
    assert f'{category["out_of_sample"]["wape"]["chosen"]:.3f}' in section_text(page, "trends")
    rules = manifest["rules"]
    assert f"at least {100 * rules['top_rules_min_support']:.1f} % of the baskets" in section_text(page, "rules")
    assert html.escape(rules["top_rules_by_lift"][0]["consequent"]) in section_text(page, "rules")
    assert html.escape(manifest["propensity"]["note"]) in section_text(page, "propensity")
def test_forecast_charts_name_categories_from_the_build(tmp_path):
    categories = pd.DataFrame({"category_id": ["c1"], "name": ["tea & mugs"]})
    page = page_of(build_folder(tmp_path / "build", users=shoppers(), trend_series=weekly_series(name=None), categories=categories))
    assert "tea &amp; mugs" in section_text(page, "trends")


def test_write_report_without_a_published_build_is_unavailable(tmp_path):
    with pytest.raises(Unavailable, match="no published build"):
        write_report(tmp_path / "artifacts", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_write_report_replaces_the_page_whole(tmp_path):
    build = build_folder(tmp_path / "artifacts" / "builds" / "b1")
    (tmp_path / "artifacts" / "current").symlink_to(build.relative_to(tmp_path / "artifacts"))
    out = tmp_path / "pages" / "report.html"
    out.parent.mkdir()
    out.write_text("old")
    assert write_report(tmp_path / "artifacts", out) == out
    assert out.read_text().startswith("<!DOCTYPE html>") and out.read_text().rstrip().endswith("</html>")
    assert [path.name for path in out.parent.iterdir()] == ["report.html"]  # no staging file left behind


# ---- a campaign's section (`tailor report --outbox`): services/campaigns/price_audit.py ----------


def campaign_outbox(tmp_path: Path, hostile: str = "<b>SKU</b> & co") -> Path:
    """An outbox with one segment-targeted discount on a product whose id needs escaping."""
    from test_price_audit import message, rule, write_items, write_outbox

    artifacts = write_items(tmp_path / "campaign-artifacts", {"i1": 80, hostile: 20})
    targeted = rule("vip15", 15.0, segment="high-value")
    rows = [message(f"h{i}", item_id=hostile, segment="<i>high</i>", promotion=targeted, offered_price=8.5) for i in range(3)]
    rows += [message(f"p{i}", item_id="i1", segment="promising") for i in range(5)]
    return write_outbox(tmp_path / "outbox", rows, artifacts=artifacts)


def campaign_page(tmp_path: Path) -> str:
    from dataclasses import replace

    from clients.report.campaign import load_campaign

    data = load_report_data(build_folder(tmp_path / "build"))
    return render_report(replace(data, campaign=load_campaign(campaign_outbox(tmp_path))))


def test_a_campaign_adds_its_outcomes_violations_and_exposure_escaped(tmp_path):
    page = campaign_page(tmp_path)
    assert '<a href="#campaign">' in page and "could not be drawn" not in page
    text = section_text(page, "campaign")
    assert "held back by a frequency cap" in text and "<td class=num>2</td>" in text  # summary.json's capped
    assert '<p class="bad">1 violations.</p>' in text and "targeted_condition" in text and "vip15" in text
    assert "&lt;b&gt;SKU&lt;/b&gt; &amp; co" in text and "<b>SKU" not in page.replace(get_plotlyjs(), "")
    assert "&lt;i&gt;high&lt;/i&gt;" in text and "<i>high" not in page
    assert "37.5 %" in text  # 3 of 8 headline products are the long-tail one
    assert "segment: high-value" in text  # the rule's conditions, as used


def test_a_page_without_an_outbox_has_no_campaign_section(tmp_path):
    page = page_of(build_folder(tmp_path / "build"))
    assert 'id="campaign"' not in page and "#campaign" not in page


def test_the_report_reads_a_fresh_audit_json_and_audits_again_after_the_campaign_changed(tmp_path):
    from clients.report.campaign import load_campaign
    from services.campaigns.price_audit import AUDIT_FILE, audit_outbox

    outbox = campaign_outbox(tmp_path)
    audit_outbox(outbox)
    written = json.loads((outbox / AUDIT_FILE).read_text())
    (outbox / AUDIT_FILE).write_text(json.dumps({**written, "campaign_id": "from-audit-json"}))
    assert load_campaign(outbox)["campaign_id"] == "from-audit-json"
    os.utime(outbox / AUDIT_FILE, (1, 1))  # older than the outbox's files: written before the campaign changed
    assert load_campaign(outbox)["campaign_id"] == "c1"


def test_tailor_report_with_an_outbox_writes_the_campaign_section(tmp_path):
    from typer.testing import CliRunner

    from clients.cli import app

    build = build_folder(tmp_path / "artifacts" / "builds" / "b1")
    (tmp_path / "artifacts" / "current").symlink_to(build.relative_to(tmp_path / "artifacts"))
    outbox, out = campaign_outbox(tmp_path), tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--artifacts", str(tmp_path / "artifacts"), "--outbox", str(outbox), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "vip15" in section_text(out.read_text(), "campaign")
    bad = CliRunner().invoke(app, ["report", "--artifacts", str(tmp_path / "artifacts"), "--outbox", str(tmp_path), "--out", str(out)])
    assert bad.exit_code == 2 and "not a campaign outbox" in bad.output


@needs_chromium
def test_headless_chromium_shows_the_campaign_section_with_no_script_error(tmp_path):
    from selenium.webdriver.common.by import By

    path = tmp_path / "campaign.html"
    path.write_text(campaign_page(tmp_path), encoding="utf-8")
    driver = open_in_chromium(path, tmp_path / "chromium-profile")
    try:
        section = driver.find_element(By.ID, "campaign")
        assert section.is_displayed() and "Campaign and price audit" in section.find_element(By.TAG_NAME, "h2").text
        assert "<b>SKU</b> & co" in section.text  # the escaped id reads as written
        assert driver.execute_script("return window.__reportErrors") == []
        assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
