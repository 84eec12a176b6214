"""bench/copy_audit.py, the independent audit of delivered copy: each rule fires exactly where it should."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    name = "copy_audit_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "copy_audit.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


ca = _load()

ITEMS = {
    "85123A": "WHITE HANGING HEART T-LIGHT HOLDER",
    "85099B": "JUMBO BAG RED RETROSPOT",
    "20725": "LUNCH BAG RED RETROSPOT",
    "RR": "RED RETROSPOT",  # a 2-word title inside the two bags' titles
    "BD1": "BEST DAD CANDLE LETTERS",  # a title with a banned word in it
    "15044A": "PINK PAPER PARASOL",
    "10120": "DOGGY RUBBER",
    "H1": "HEART",  # one word: never matched as "another product"
}


@pytest.fixture(scope="module")
def index():
    return ca.CatalogIndex(ITEMS, {k: "GBP" for k in ITEMS})


@pytest.fixture(scope="module")
def banned():
    return ca.load_banned(ROOT / "services" / "copywriting" / "banned_terms.yaml")


def row(**kw):
    base = dict(
        user_id="u1", item_id="85123A", item_title=ITEMS["85123A"], price=2.95, promo_price=2.55,
        code="HEART10", reason="popular with shoppers like you", channel="push", language="en",
        title="Light up your evenings",
        body="The White Hanging Heart T-Light Holder is now £2.55 (was £2.95). Use code HEART10 for 10% off.",
        cta="Shop now", source="model", variant_id="v1", family="f1",
        promotion={"percent_off": 10, "event": "spring"},
    )
    base.update(kw)
    return base


def audit(r, index, banned):
    return ca.audit_variant(r, index, banned)


def test_good_en_push_passes(index, banned):
    assert audit(row(), index, banned) == []
    assert ca.explain_variant(row(), index, banned) == {}


def test_good_zh_push_passes_with_title_in_display_form(index, banned):
    r = row(language="zh", title="为你推荐", cta="立即购买",
            body="White Hanging Heart T-Light Holder 现价£2.55，用优惠码HEART10再享9折。【Tailor小店】")
    assert audit(r, index, banned) == []


def test_zh_stray_english_word(index, banned):
    r = row(language="zh", title="为你推荐", cta="立即购买",
            body="White Hanging Heart T-Light Holder 超级 cute，现价£2.55。")
    assert audit(r, index, banned) == ["no_stray_latin"]
    assert "cute" in ca.explain_variant(r, index, banned)["no_stray_latin"]
    # the same English word in an en copy is fine
    assert audit(row(body="So cute: the White Hanging Heart T-Light Holder, now £2.55."), index, banned) == []


def test_sms_segments_counting():
    assert ca.sms_segments("a" * 160) == (1, "GSM-7")
    assert ca.sms_segments("a" * 161) == (2, "GSM-7")
    assert ca.sms_segments("a" * 459)[0] == 3
    assert ca.sms_segments("a" * 460)[0] == 4
    assert ca.sms_segments("€" * 80)[0] == 1  # extension chars take two septets
    assert ca.sms_segments("€" * 81)[0] == 2
    assert ca.sms_segments("好" * 70) == (1, "UCS-2")
    assert ca.sms_segments("好" * 201)[0] == 3
    assert ca.sms_segments("好" * 202)[0] == 4


def test_sms_of_four_segments_and_opt_out(index, banned):
    body = "The White Hanging Heart T-Light Holder is now £2.55. "
    ok = row(channel="sms", title="", cta="", body=body + "Reply STOP")
    assert audit(ok, index, banned) == []
    long = row(channel="sms", title="", cta="", body=body + "Lovely light. " * 32 + "Reply STOP")
    assert ca.sms_segments(long["body"])[0] == 4
    assert audit(long, index, banned) == ["sms_limits"]
    assert audit(row(channel="sms", title="", cta="", body=body), index, banned) == ["sms_limits"]
    # the message as sent ("sms") counts, not the body
    sent = row(channel="sms", title="", cta="", body=body, sms=body + "x" * 420 + " Reply STOP.")
    assert audit(sent, index, banned) == ["sms_limits"]
    zh = row(channel="sms", title="", cta="", language="zh",
             body="【Tailor】White Hanging Heart T-Light Holder 现价£2.55，快来看看。回T退订")
    assert audit(zh, index, banned) == []
    zh_long = dict(zh, body=zh["body"].replace("快来看看。", "快来看看。" * 40))
    assert audit(zh_long, index, banned) == ["sms_limits"]


def test_wrong_amounts_percent_and_code(index, banned):
    assert audit(row(body="The White Hanging Heart T-Light Holder is now £2.49."), index, banned) == ["facts_match"]
    assert audit(row(body="The White Hanging Heart T-Light Holder is now 2.49."), index, banned) == ["facts_match"]
    assert audit(row(body="The White Hanging Heart T-Light Holder: 20% off!"), index, banned) == ["facts_match"]
    assert audit(row(body="The White Hanging Heart T-Light Holder, code SAVE20."), index, banned) == ["facts_match"]
    assert audit(row(body="The White Hanging Heart T-Light Holder, save £0.40."), index, banned) == []  # the saving
    assert audit(row(body="The White Hanging Heart T-Light Holder is now ¥2.55."), index, banned) == ["facts_match"]
    zh = row(language="zh", title="为你推荐", cta="立即购买", body="White Hanging Heart T-Light Holder 现价£2.55，8折。")
    assert audit(zh, index, banned) == ["facts_match"]
    # numbers in the product's title are not amounts
    cake = row(item_id="X", item_title="REGENCY CAKESTAND 3.50 TIER", body="Regency Cakestand 3.50 Tier, now £2.55.")
    assert audit(cake, index, banned) == []


def test_other_catalog_product_named(index, banned):
    body = "The White Hanging Heart T-Light Holder pairs with the Jumbo Bag Red Retrospot, £2.55."
    assert audit(row(body=body), index, banned) == ["no_other_product"]
    assert "JUMBO BAG RED RETROSPOT" in ca.explain_variant(row(body=body), index, banned)["no_other_product"]
    # a past purchase cited as the reason may be named
    assert audit(row(body=body, reason="you bought JUMBO BAG RED RETROSPOT"), index, banned) == []
    # a title inside this product's own title is not "another product"; one-word titles never count
    jumbo = row(item_id="85099B", item_title=ITEMS["85099B"], price=2.08, promo_price=None, code="",
                promotion=None, body="Your Jumbo Bag Red Retrospot with a heart print: £2.08.")
    assert audit(jumbo, index, banned) == []


def test_banned_term_in_body_vs_in_product_title(index, banned):
    dad = row(item_id="BD1", item_title=ITEMS["BD1"], price=1.25, promo_price=None, code="", promotion=None,
              title="For Father's Day", body="Best Dad Candle Letters, just £1.25.")
    assert audit(dad, index, banned) == []
    assert audit(dict(dad, body="Best Dad Candle Letters, the best gift at £1.25."), index, banned) == ["no_banned_term"]
    assert audit(row(title="The perfect glow"), index, banned) == ["no_banned_term"]
    zh = row(language="zh", title="为你推荐", cta="立即购买", body="White Hanging Heart T-Light Holder 最受欢迎，现价£2.55。")
    assert audit(zh, index, banned) == ["no_banned_term"]
    assert audit(dict(zh, body="White Hanging Heart T-Light Holder 最近很受欢迎，现价£2.55。"), index, banned) == []


def test_product_named_parts_and_cuts(index, banned):
    assert audit(row(body="A lovely light for your evenings."), index, banned) == ["product_named"]
    assert audit(row(body="Our heart holder glows."), index, banned) == ["product_named"]  # not contiguous
    assert audit(row(body="Our Hanging Heart glows."), index, banned) == []
    assert audit(row(body="Our Heart T-Light Holder glows."), index, banned) == []  # long title: a clear part
    parasol = row(item_id="15044A", item_title=ITEMS["15044A"], price=2.95, promo_price=None, code="", promotion=None,
                  body="Shade in style.")
    assert audit(dict(parasol, title="Pink Paper Para…"), index, banned) == []  # cut after half of it
    assert audit(dict(parasol, title="Pink Pa..."), index, banned) == ["product_named"]  # too short a cut
    assert audit(dict(parasol, title="A paper parasol"), index, banned) == ["product_named"]  # short title: whole only
    assert audit(dict(parasol, title="PINK  paper PARASOL"), index, banned) == []


def test_not_empty(index, banned):
    assert audit(row(cta=""), index, banned) == ["not_empty"]
    assert audit(row(title="  "), index, banned) == ["not_empty"]
    assert ca.audit_variant(row(title="", body="", cta=""), index, banned) == ["product_named", "not_empty"]


def test_catalog_matcher_is_whole_word(index):
    found = {t.text for t, _, _ in index.find("a doggy rubber and a doggy rubbers, jumbo bag red retrospot")}
    assert found == {"DOGGY RUBBER", "JUMBO BAG RED RETROSPOT", "RED RETROSPOT"}


def test_cli_writes_json(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    cat = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": list(ITEMS), "title": list(ITEMS.values()), "currency": "GBP"}).to_parquet(cat)
    lines = [row(), row(variant_id="v2", cta=""), row(variant_id="v3", body="£9.99 for the White Hanging Heart T-Light Holder")]
    src = tmp_path / "v.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\nnot json\n", encoding="utf-8")
    out = tmp_path / "out.json"
    assert ca.main([str(src), "--catalog", str(cat), "--json", str(out), "--show-failures", "1"]) == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert (rep["variants"], rep["passed"], rep["unreadable_lines"]) == (3, 1, 1)
    assert rep["pass_rate"] == pytest.approx(1 / 3)
    assert rep["failures"]["not_empty"] == 1 and rep["failures"]["facts_match"] == 1
    assert sum(rep["failures"].values()) == 2
    assert {e["variant_id"] for e in rep["examples"]} == {"v2", "v3"}
    assert "pass rate" in capsys.readouterr().out
