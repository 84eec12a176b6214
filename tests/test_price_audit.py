"""`tailor audit`: one price for everyone (services/campaigns/price_audit.py) and exposure
(exposure.py), over small outboxes written in the layout of services/campaigns/outbox.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clients.cli import app
from services.campaigns.outbox import LOG_COLUMNS, MESSAGE_COLUMNS
from services.campaigns.outbox_rows import CampaignRows
from services.campaigns.price_audit import ALLOWED_CONDITIONS, AUDIT_FILE, VIOLATIONS, audit_outbox
from services.errors import DataFileError, InvalidArgument, NotFound

runner = CliRunner()
BUILD_ID = "20260101T000000Z-aaaaaaaa-0001"
ARROW_TYPES = {"string": pa.string(), "double": pa.float64(), "bool": pa.bool_(), "list<string>": pa.list_(pa.string())}
SCHEMA = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in MESSAGE_COLUMNS.items()])


def rule(rule_id: str = "spring10", percent_off: float = 10.0, amount_off: float = 0.0, **conditions) -> str:
    """The promotion column as the campaign writes it."""
    return json.dumps({"rule_id": rule_id, "percent_off": percent_off, "amount_off": amount_off, "code": "SPRING",
                       "ends": "2026-05-01", "threshold_amount": 0, "threshold_reduction": 0, "conditions": conditions})


def message(user_id: str, item_id: str = "i1", price: float = 10.0, offered_price: float | None = None,
            promotion: str = "", segment: str = "promising", loyalty_tier: str = "", channel: str = "push",
            item_ids: list[str] | None = None, **changes) -> dict:
    """One valid row of MESSAGE_COLUMNS; offered at the list price unless said."""
    row = {
        "idempotency_key": hashlib.sha256(f"c1|{user_id}|{channel}".encode()).hexdigest()[:32],
        "campaign_id": "c1", "user_id": user_id, "channel": channel, "language": "en", "outcome": "sent",
        "send_after": "2026-03-02T10:00:00+00:00", "date": "2026-03-02", "timezone": "Europe/London",
        "segment": segment, "loyalty_tier": loyalty_tier, "build_id": BUILD_ID,
        "item_ids": item_ids if item_ids is not None else [item_id], "item_id": item_id, "item_title": f"Item {item_id}",
        "currency": "GBP", "price": price, "offered_price": price if offered_price is None else offered_price,
        "promotion": promotion, "title": "", "body": "", "call_to_action": "", "copy_source": "", "personalized": True,
    }
    row.update(changes)
    assert set(row) == set(MESSAGE_COLUMNS)
    return row


def write_outbox(folder: Path, rows: list[dict], artifacts: Path | None = None, summary: bool = True,
                 drop: tuple[str, ...] = (), selection: str = "all") -> Path:
    """An outbox as `tailor campaign` writes it: settings, message parts per channel and date (Parquet
    and JSON lines), the log, done checkpoints, and the outcome counts."""
    folder.mkdir(parents=True)
    (folder / "campaign.json").write_text(json.dumps({"campaign_id": "c1", "build_id": BUILD_ID, "selection": selection,
                                                      "artifacts": str(artifacts) if artifacts else ""}))
    frame = pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))
    for chunk, ((channel, day), part) in enumerate(frame.groupby(["channel", "date"])):
        name = f"part-{chunk:05d}"
        target = folder / "messages" / f"channel={channel}" / f"date={day}" / f"{name}.parquet"
        target.parent.mkdir(parents=True)
        table = pa.Table.from_pandas(part.reset_index(drop=True), schema=SCHEMA, preserve_index=False)
        pq.write_table(table.drop(list(drop)), target)
        for sub, lines in (("messages.jsonl", part.to_dict("records")),
                           ("log", [{key: row.get(key, "") for key in LOG_COLUMNS} for row in part.to_dict("records")])):
            (folder / sub).mkdir(exist_ok=True)
            (folder / sub / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        (folder / "done").mkdir(exist_ok=True)
        (folder / "done" / name).write_text("")
    if summary:
        counts = {"sent": len(rows), "scheduled": 0, "capped": 2, "opted_out": 1, "no_recommendation": 0, "failed": 0}
        (folder / "summary.json").write_text(json.dumps({"campaign_id": "c1", "shoppers": len(rows) + 3, "outcomes": counts}))
    return folder


def write_items(artifacts: Path, buyers: dict[str, int]) -> Path:
    build = artifacts / "builds" / BUILD_ID
    build.mkdir(parents=True)
    pd.DataFrame({"item_id": list(buyers), "buyers": list(buyers.values()),
                  "popularity": [b / max(buyers.values()) for b in buyers.values()]}).to_parquet(build / "items.parquet")
    return artifacts


def kinds(audit) -> list[tuple[str, str]]:
    return sorted((v.kind, v.item_id) for v in audit.violations)


def shoppers(n: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


CODE_RULE = rule("code10", 10.0, code="SPRING")


def test_a_code_rule_given_to_everyone_offered_the_item_passes(tmp_path):
    rows = [message(user, promotion=CODE_RULE, offered_price=9.0, segment=seg)
            for user, seg in zip(shoppers(6), ["high-value", "promising", "at-risk"] * 2)]
    rows += [message("u9", item_id="i2", price=4.5)]  # another item at its list price needs nothing
    outbox = write_outbox(tmp_path / "outbox", rows)
    result = runner.invoke(app, ["audit", "--outbox", str(outbox)])
    assert result.exit_code == 0, result.output
    assert "No price violations" in result.output
    written = json.loads((outbox / AUDIT_FILE).read_text())
    assert written["passed"] is True and written["violations"] == [] and written["messages"] == 7
    assert written["counts"]["outcomes"]["capped"] == 2  # summary.json's outcome counts travel with the findings
    assert written["rules"] == [{"rule_id": "code10", "conditions": {"code": "SPRING"}, "percent_off": 10.0,
                                 "amount_off": 0.0, "messages": 6, "items": 1}]


def test_a_planted_segment_targeted_discount_fails_and_names_the_item(tmp_path):
    targeted = rule("vip15", 15.0, segment="high-value")
    rows = [message(user, item_id="SKU-77", price=20.0, segment="high-value", promotion=targeted, offered_price=17.0)
            for user in shoppers(3, "hv")]
    rows += [message(user, item_id="SKU-77", price=20.0, segment="promising") for user in shoppers(4, "p")]
    outbox = write_outbox(tmp_path / "outbox", rows)
    result = runner.invoke(app, ["audit", "--outbox", str(outbox)])
    assert result.exit_code == 1
    assert "SKU-77" in result.output and "targeted_condition" in result.output
    audit = audit_outbox(outbox)
    assert kinds(audit) == [("targeted_condition", "SKU-77")]
    found = audit.violations[0]
    assert (found.rule_id, found.shoppers, found.messages) == ("vip15", 3, 3)
    assert "segment" in found.description and len(found.examples) == 3


@pytest.mark.parametrize("kind", ["segment", "propensity", "profile", "city"])
def test_any_condition_outside_basket_time_tier_code_is_a_violation_by_itself(tmp_path, kind):
    # Even given to every shopper, a rule that would be decided by who the shopper is counts.
    rows = [message(user, promotion=rule("r", 10.0, **{kind: "x"}), offered_price=9.0) for user in shoppers(3)]
    assert kinds(audit_outbox(write_outbox(tmp_path / "outbox", rows))) == [("targeted_condition", "i1")]


@pytest.mark.parametrize("conditions", [{}, {"code": "SPRING"}, {"basket": {"min_items": 2}},
                                        {"time": {"from": "2026-03-01", "to": "2026-03-08"}}, {"code": "A", "time": "weekend"}])
def test_a_rule_without_a_tier_must_reach_everyone_offered_the_item(tmp_path, conditions):
    given = [message(user, promotion=rule("r", 10.0, **conditions), offered_price=9.0) for user in shoppers(4)]
    assert audit_outbox(write_outbox(tmp_path / "all", given)).passed
    missed = given + [message("late", segment="at-risk")]
    audit = audit_outbox(write_outbox(tmp_path / "some", missed))
    assert kinds(audit) == [("rule_not_applied_to_all", "i1")]
    assert audit.violations[0].shoppers == 1 and "everyone offered the item" in audit.violations[0].description


def test_a_tier_rule_given_to_everyone_of_the_tier_passes(tmp_path):
    gold = rule("gold5", 5.0, tier="gold")
    rows = [message(user, loyalty_tier="gold", promotion=gold, offered_price=9.5) for user in shoppers(3, "g")]
    rows += [message(user, loyalty_tier=tier) for user, tier in zip(shoppers(3, "s"), ["silver", "", "bronze"])]
    assert audit_outbox(write_outbox(tmp_path / "outbox", rows)).passed


def test_a_tier_rule_applied_to_only_some_of_the_tier_fails(tmp_path):
    gold = rule("gold5", 5.0, tier=["gold", "platinum"])
    rows = [message(user, loyalty_tier="gold", promotion=gold, offered_price=9.5) for user in shoppers(3, "g")]
    rows += [message(user, loyalty_tier="platinum", segment="high-value") for user in shoppers(2, "pl")]
    rows += [message("s1", loyalty_tier="silver")]
    audit = audit_outbox(write_outbox(tmp_path / "outbox", rows))
    assert kinds(audit) == [("rule_not_applied_to_all", "i1")]
    assert audit.violations[0].shoppers == 2 and "tier gold, platinum" in audit.violations[0].description


def test_a_tier_rule_given_outside_its_tier_fails(tmp_path):
    gold = rule("gold5", 5.0, tier="gold")
    rows = [message("g1", loyalty_tier="gold", promotion=gold, offered_price=9.5),
            message("s1", loyalty_tier="silver", promotion=gold, offered_price=9.5), message("s2", loyalty_tier="silver")]
    assert kinds(audit_outbox(write_outbox(tmp_path / "outbox", rows))) == [("rule_beyond_its_conditions", "i1")]


def test_a_better_rule_for_a_tier_beside_a_rule_for_everyone_passes(tmp_path):
    # Gold shoppers get the better of the two offers; nobody who qualifies pays more than a rule gives.
    everyone, gold = rule("all10", 10.0, code="SPRING"), rule("gold20", 20.0, tier="gold")
    rows = [message(user, promotion=everyone, offered_price=9.0) for user in shoppers(3)]
    rows += [message(user, loyalty_tier="gold", promotion=gold, offered_price=8.0) for user in shoppers(2, "g")]
    assert audit_outbox(write_outbox(tmp_path / "outbox", rows)).passed


def test_the_rules_tailor_campaign_writes_are_read_as_it_means_them(tmp_path):
    from services.campaigns.plan import parse_promotion

    gold = parse_promotion("code=GOLD5,percent_off=5,ends=2026-12-31,tier=gold", "2026-03-01")
    promotion = json.dumps(gold.as_json())
    rows = [message(user, loyalty_tier="gold", promotion=promotion, offered_price=gold.terms.price_after(10.0))
            for user in shoppers(3, "g")]
    rows += [message("s1", loyalty_tier="silver")]
    assert audit_outbox(write_outbox(tmp_path / "given", rows)).passed
    missed = rows + [message("g9", loyalty_tier="gold")]
    assert kinds(audit_outbox(write_outbox(tmp_path / "missed", missed))) == [("rule_not_applied_to_all", "i1")]


def test_a_discount_in_a_campaign_sent_to_one_segment_fails(tmp_path):
    rows = [message(user, promotion=CODE_RULE, offered_price=9.0, segment="high-value") for user in shoppers(3)]
    audit = audit_outbox(write_outbox(tmp_path / "outbox", rows, selection="segment:high-value"))
    assert kinds(audit) == [("targeted_selection", "i1")] and "segment:high-value" in audit.violations[0].description
    undiscounted = [message(user, segment="high-value") for user in shoppers(3)]
    assert audit_outbox(write_outbox(tmp_path / "plain", undiscounted, selection="segment:high-value")).passed


def test_an_item_without_a_price_is_noted_not_audited(tmp_path):
    nan = float("nan")
    rows = [message("a", item_id="free", price=nan, offered_price=nan, promotion=CODE_RULE), message("b")]
    audit = audit_outbox(write_outbox(tmp_path / "outbox", rows))
    assert audit.passed and audit.messages == 2 and audit.exposure["discounted_share"] == 0
    assert any("1 messages about items without a price" in note for note in audit.notes)


def test_a_list_price_that_differs_between_shoppers_fails(tmp_path):
    rows = [message(user, price=10.0) for user in shoppers(5)] + [message("x", price=12.0), message("y", item_id="i2")]
    audit = audit_outbox(write_outbox(tmp_path / "outbox", rows))
    assert kinds(audit) == [("list_price_differs", "i1")]
    assert audit.violations[0].messages == 1 and "10.00 (5 messages), 12.00 (1 messages)" in audit.violations[0].description


def test_a_discount_without_a_rule_or_a_price_the_rule_does_not_give_fails(tmp_path):
    rows = [message("a", offered_price=9.0), message("b"),                                          # no rule
            message("c", item_id="i2", promotion=rule("r", 10.0), offered_price=8.5),               # 10 % of 10 is 9.00
            message("d", item_id="i3", offered_price=11.0)]                                         # above the list price
    assert kinds(audit_outbox(write_outbox(tmp_path / "outbox", rows))) == [
        ("above_list_price", "i3"), ("discount_without_rule", "i1"), ("rule_price_mismatch", "i2")]


def test_one_rule_id_with_two_terms_on_an_item_fails(tmp_path):
    rows = [message("a", promotion=rule("r", 10.0), offered_price=9.0), message("b", promotion=rule("r", 20.0), offered_price=8.0)]
    found = kinds(audit_outbox(write_outbox(tmp_path / "outbox", rows)))
    assert ("rule_redefined", "i1") in found and ("rule_not_applied_to_all", "i1") in found


def test_prices_round_as_a_promotion_does_and_amounts_off_count(tmp_path):
    # 15 % off 9.99 is 8.4915 → 8.49 (cents, half up); 1.50 off after that.
    rows = [message(user, price=9.99, promotion=rule("r", 15.0, 1.5), offered_price=6.99) for user in shoppers(3)]
    assert audit_outbox(write_outbox(tmp_path / "outbox", rows)).passed


def test_every_violation_kind_is_described():
    assert set(VIOLATIONS) == {"list_price_differs", "above_list_price", "discount_without_rule", "targeted_condition",
                               "rule_price_mismatch", "rule_redefined", "rule_beyond_its_conditions", "rule_not_applied_to_all",
                               "targeted_selection"}
    assert ALLOWED_CONDITIONS == ("basket", "time", "tier", "code")
    assert set(CampaignRows.COLUMNS) <= set(MESSAGE_COLUMNS)  # the audit reads only the outbox's own columns


# ---- bad input: exit 2 with the reason ---------------------------------------------------------


def test_a_missing_column_is_named_and_exits_2(tmp_path):
    outbox = write_outbox(tmp_path / "outbox", [message("a")], drop=("offered_price", "loyalty_tier"))
    with pytest.raises(DataFileError, match="missing columns loyalty_tier, offered_price"):
        audit_outbox(outbox)
    result = runner.invoke(app, ["audit", "--outbox", str(outbox)])
    assert result.exit_code == 2 and "offered_price" in result.output and "part-00000.parquet" in result.output


def test_bad_json_in_the_promotion_column_names_the_row(tmp_path):
    rows = [message("a"), message("b", promotion='{"rule_id": "r", "percent_off": 10', offered_price=9.0)]
    with pytest.raises(DataFileError, match=r"row 2, column 'promotion': not JSON") as error:
        audit_outbox(write_outbox(tmp_path / "outbox", rows))
    assert error.value.row == 2


@pytest.mark.parametrize("promotion, says", [('["r"]', "JSON object"), (rule("r", 120.0), "below 100"),
                                             (rule("r", 10.0, tier=3), "tier condition"), (rule("r", -1.0), "0 or more")])
def test_a_promotion_that_is_no_rule_is_bad_input(tmp_path, promotion, says):
    with pytest.raises(DataFileError, match=says):
        audit_outbox(write_outbox(tmp_path / "outbox", [message("a", promotion=promotion, offered_price=9.0)]))


def test_a_folder_that_is_no_outbox_exits_2(tmp_path):
    with pytest.raises(NotFound):
        audit_outbox(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidArgument, match="not a campaign outbox"):
        audit_outbox(tmp_path / "plain")
    result = runner.invoke(app, ["audit", "--outbox", str(tmp_path / "plain")])
    assert result.exit_code == 2 and "campaign.json" in result.output


def test_a_running_campaign_is_audited_over_its_done_chunks_only(tmp_path):
    rows = [message("a"), message("b", channel="sms", offered_price=1.0)]
    outbox = write_outbox(tmp_path / "outbox", rows, summary=False)
    (outbox / "done" / "part-00001").unlink()  # the sms chunk is still being written
    audit = audit_outbox(outbox)
    assert audit.passed and audit.messages == 1 and audit.counts is None
    assert any("1 of 2 message files" in note for note in audit.notes)


# ---- exposure --------------------------------------------------------------------------------


def test_exposure_counts_the_long_tail_and_each_segment(tmp_path):
    # Purchases 50+30 = 80 % of 100 are the head (i1, i2); i3, i4 and i5 (not in the build) are the tail.
    artifacts = write_items(tmp_path / "artifacts", {"i1": 50, "i2": 30, "i3": 15, "i4": 5})
    half = rule("h", 50.0)
    rows = [
        message("a", item_id="i1", segment="high-value", item_ids=["i1", "i3"]),
        message("a", item_id="i3", segment="high-value", item_ids=["i3", "i4", "i5"], channel="sms"),
        message("b", item_id="i2", segment="high-value", item_ids=["i2"]),
        message("c", item_id="i4", segment="new", item_ids=["i4", "i1"], price=8.0, promotion=half, offered_price=4.0),
    ]
    audit = audit_outbox(write_outbox(tmp_path / "outbox", rows), artifacts=artifacts)
    assert audit.passed
    exposure = audit.exposure
    assert exposure["catalog_items"] == 4 and exposure["long_tail_items"] == 2 and exposure["catalog_long_tail_share"] == 0.5
    assert exposure["headline_long_tail_share"] == 0.5           # i3, i4 of i1, i3, i2, i4
    assert exposure["ranked_long_tail_share"] == 5 / 8           # i3, i3, i4, i5, i4 of 8 ranked
    assert exposure["items_not_in_build"] == 1 and exposure["shoppers"] == 3 and exposure["ranked_items"] == 5
    segments = {s["segment"]: s for s in exposure["segments"]}
    assert [s["segment"] for s in exposure["segments"]] == ["high-value", "new"]
    high, new = segments["high-value"], segments["new"]
    assert (high["messages"], high["shoppers"], high["items"]) == (3, 2, 3)
    assert high["long_tail_share"] == pytest.approx(1 / 3) and high["ranked_long_tail_share"] == pytest.approx(4 / 6)
    assert high["discounted_share"] == 0 and high["mean_discount"] == 0
    assert (new["long_tail_share"], new["ranked_long_tail_share"], new["discounted_share"]) == (1.0, 0.5, 1.0)
    assert new["mean_discount"] == 4.0 and new["mean_discount_percent"] == 50.0


def test_exposure_finds_the_build_from_campaign_json_and_says_when_it_cannot(tmp_path):
    artifacts = write_items(tmp_path / "artifacts", {"i1": 9, "i2": 1})
    found = audit_outbox(write_outbox(tmp_path / "named", [message("a", item_id="i2")], artifacts=artifacts))
    assert found.exposure["headline_long_tail_share"] == 1.0 and found.notes == []
    lost = audit_outbox(write_outbox(tmp_path / "lost", [message("a")]))
    assert lost.exposure["headline_long_tail_share"] is None and lost.passed
    assert any("long tail: not available" in note for note in lost.notes)


def test_json_output_is_the_audit_file(tmp_path):
    rows = [message("a", offered_price=9.0)]
    outbox = write_outbox(tmp_path / "outbox", rows)
    result = runner.invoke(app, ["audit", "--outbox", str(outbox), "--json"])
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed["violations"][0]["kind"] == "discount_without_rule"
    assert printed["violation_kinds"]["discount_without_rule"] == 1
    assert json.loads((outbox / AUDIT_FILE).read_text())["violations"] == printed["violations"]
