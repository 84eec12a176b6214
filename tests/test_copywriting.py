"""Copy checks, repairs and the template fallback (services/copywriting/). No engine needed."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from services.copywriting import (
    CHANNELS,
    OPT_OUT,
    Copy,
    CopyFacts,
    Promotion,
    build_messages,
    check_copy,
    copy_json_schema,
    display_title,
    finalize,
    format_price,
    sms_segment_usage,
    template_copy,
)
from services.errors import InvalidArgument

HEART = "WHITE HANGING HEART T-LIGHT HOLDER"
SPRING = Promotion(code="SPRING20", percent_off=20, ends="2011-12-31", description="Spring sale")


def facts(**changes) -> CopyFacts:
    base = CopyFacts(
        item_id="85123A",
        title=HEART,
        price=2.95,
        currency="GBP",
        category="Home decor",
        interests=("hearts", "candles"),
        segment="loyal",
        recent_titles=("WHITE METAL LANTERN",),
        reason="similar to WHITE METAL LANTERN you bought",
    )
    return dataclasses.replace(base, **changes)


def raw(title: str = "Heart T-light holder", body: str = "", cta: str = "Shop now") -> str:
    return json.dumps({"title": title, "body": body, "call_to_action": cta}, ensure_ascii=False)


def problems_text(outcome) -> str:
    return " | ".join(outcome.problems)


# --- structure -------------------------------------------------------------------------------


def test_no_output_falls_back_to_the_template():
    f = facts()
    out = finalize(None, f)
    assert out.source == "template"
    assert out.problems == ("no output from the engine",)
    assert out.copy == template_copy(f)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("not json at all", "invalid JSON"),
        ('{"title": "Heart", "body": "White hanging heart", ', "invalid JSON"),
        ('["White hanging heart holder"]', "invalid JSON: not an object"),
        ('{"title": "Heart holder", "call_to_action": "Shop now"}', "missing field 'body'"),
        ('{"title": "Heart holder", "body": 3, "call_to_action": "Shop now"}', "field 'body' is not a string"),
        (raw(title="  ", body="White hanging heart holder, £2.95."), "title empty"),
        (raw(body="   "), "body empty"),
        (raw(body="…!"), "body empty"),
    ],
)
def test_unusable_structure_falls_back_with_the_reason(text, problem):
    out = finalize(text, facts())
    assert out.source == "template"
    assert problem in out.problems
    assert not check_copy(out.copy, facts())


# --- a good output, and repairs -------------------------------------------------------------


def test_a_good_output_is_used_as_generated():
    f = facts()
    text = raw("Heart T-light holder", "Our white hanging heart T-light holder for your candles, just £2.95.", "Take a look")
    out = finalize(text, f)
    assert out.source == "model"
    assert out.problems == ()
    assert out.copy == Copy("Heart T-light holder", "Our white hanging heart T-light holder for your candles, just £2.95.", "Take a look")


@pytest.mark.parametrize(
    "changes, title, body, cta",
    [
        ({}, "Cosy evenings ahead", "Light up cosy evenings with our White Hanging Heart T-Light Holder, just £2.95.", "Shop the look"),
        (
            {"channel": "email"},
            "A heart for your candles",
            "Hi there! Since you loved the White Metal Lantern, we think you'll like the White Hanging Heart "
            "T-Light Holder. It's £2.95 and lovely for candle lovers.",
            "Discover more",
        ),
        ({"channel": "sms"}, "", "Your next favourite: White Hanging Heart T-Light Holder, £2.95. Reply STOP to opt out", ""),
        ({"language": "zh"}, "心形烛台", "White Hanging Heart心形烛台，温馨好物，仅需£2.95！", "去看看"),
        (
            {"promotion": SPRING},
            "Spring sale",
            "Spring sale! Get 20% off the White Hanging Heart T-Light Holder with code SPRING20 until 2011-12-31.",
            "Claim offer",
        ),
        ({"channel": "banner"}, "Heart T-light holder", "Hang it in a window: a warm glow for £2.95.", "Order today"),
        ({"promotion": SPRING}, "Hearts for less", "White hanging heart holder now £2.36 with SPRING20 (was £2.95).", "Shop now"),
    ],
)
def test_well_written_copy_passes_unchanged(changes, title, body, cta):
    out = finalize(raw(title, body, cta), facts(**changes))
    assert (out.source, out.problems) == ("model", ())
    assert out.copy == Copy(title, body, cta)


def test_an_overlong_body_is_cut_at_a_word_boundary_with_an_ellipsis():
    f = facts(channel="push")
    body = (
        "Light up your evenings with the white hanging heart T-light holder, a charming piece for shelves, "
        "windows and mantelpieces, yours for £2.95 today in our shop."
    )
    assert len(body) > CHANNELS["push"].body_max
    out = finalize(raw(body=body), f)
    assert out.source == "repaired"
    assert len(out.copy.body) <= CHANNELS["push"].body_limit("en")
    assert out.copy.body.endswith("…")
    kept = out.copy.body[:-1]
    assert body.startswith(kept) and body[len(kept)] == " "  # cut between words
    assert any("body too long" in p for p in out.problems)
    assert not check_copy(out.copy, f)


def test_an_overlong_title_is_cut_and_a_missing_cta_gets_the_default():
    f = facts(channel="banner")
    out = finalize(raw(title="White Hanging Heart T-Light Holder for cosy evenings", body="Heart holder, £2.95.", cta=""), f)
    assert out.source == "repaired"
    assert len(out.copy.title) <= CHANNELS["banner"].title_limit("en")
    assert out.copy.title.endswith("…")
    assert out.copy.call_to_action == "Shop now"
    assert "call to action empty: default used" in out.problems


def test_a_chinese_overlong_body_is_cut_at_a_character():
    f = facts(language="zh", channel="banner")
    body = "这款White Hanging Heart T-Light Holder很适合放在窗台和书架上，晚上点亮蜡烛，温暖又好看，售价£2.95，欢迎选购。"
    assert len(body) > CHANNELS["banner"].body_limit("zh")
    out = finalize(raw("心形烛台", body, "立即查看"), f)
    assert out.source == "repaired"
    assert len(out.copy.body) <= CHANNELS["banner"].body_limit("zh")
    assert out.copy.body.endswith("…") and body.startswith(out.copy.body[:-1])


def test_a_cut_that_removes_the_product_falls_back():
    f = facts(channel="banner")
    body = "Brighten your evenings, windows, shelves, mantelpieces and tables with this lovely piece: a white hanging heart."
    out = finalize(raw(title="Cosy evenings", body=body), f)
    assert out.source == "template"
    assert "copy does not mention the product" in out.problems


# --- SMS -------------------------------------------------------------------------------------


def test_sms_english_gets_the_opt_out_suffix_within_one_segment():
    f = facts(channel="sms")
    out = finalize(raw(title="", body="Your white hanging heart T-light holder is waiting: £2.95.", cta=""), f)
    assert out.source == "repaired"
    assert "opt-out suffix added" in out.problems
    assert out.copy.body == "Your white hanging heart T-light holder is waiting: £2.95. Reply STOP to opt out"
    used, capacity = sms_segment_usage(out.copy.body)
    assert capacity == 160 and used <= 160


def test_sms_with_the_suffix_already_is_used_as_generated():
    f = facts(channel="sms")
    body = "Your white hanging heart T-light holder is waiting: £2.95. Reply STOP to opt out"
    out = finalize(raw(title="", body=body, cta=""), f)
    assert (out.source, out.copy.body) == ("model", body)


def test_sms_long_english_is_cut_leaving_room_for_the_suffix():
    f = facts(channel="sms")
    body = (
        "The white hanging heart T-light holder brings a warm glow to shelves, windows and mantelpieces alike, "
        "and it makes a thoughtful little present for friends who love candles and cosy evenings, for £2.95"
    )
    out = finalize(raw(title="Heart", body=body, cta="Buy"), f)
    assert out.source == "repaired"
    assert out.copy.title == "" and out.copy.call_to_action == ""
    assert out.copy.body.endswith(OPT_OUT["en"])
    assert "..." in out.copy.body and "…" not in out.copy.body  # GSM-7 keeps 160 per segment
    used, capacity = sms_segment_usage(out.copy.body)
    assert capacity == 160 and used <= 160
    assert "title dropped: sms has no title" in out.problems


def test_sms_english_typographic_characters_become_gsm7():
    f = facts(channel="sms")
    out = finalize(raw(title="", body="It’s here: the white hanging heart T-light holder, £2.95.", cta=""), f)
    assert out.source == "repaired"
    assert out.copy.body.startswith("It's here")
    assert sms_segment_usage(out.copy.body)[1] == 160


def test_sms_chinese_suffix_and_seventy_characters():
    f = facts(channel="sms", language="zh")
    body = "您好！White Hanging Heart T-Light Holder心形烛台上新啦，放在窗台和书架上都很好看，晚上点亮更温馨，售价£2.95，欢迎选购"
    out = finalize(raw(title="", body=body, cta=""), f)
    assert out.source == "repaired"
    assert out.copy.body.endswith("回T退订")
    used, capacity = sms_segment_usage(out.copy.body)
    assert capacity == 70 and used <= 70
    assert "opt-out suffix added" in out.problems


def test_sms_template_suffix_and_limits():
    for language, capacity in (("en", 160), ("zh", 70)):
        for promo in (Promotion(), SPRING):
            copy = template_copy(facts(channel="sms", language=language, promotion=promo))
            assert copy.title == "" and copy.call_to_action == ""
            assert copy.body.endswith(OPT_OUT[language])
            used, cap = sms_segment_usage(copy.body)
            assert cap == capacity and used <= capacity


def test_sms_segment_usage_counts_gsm_extension_and_ucs2():
    assert sms_segment_usage("abc") == (3, 160)
    assert sms_segment_usage("€5") == (3, 160)  # € is an extension character: two septets
    assert sms_segment_usage("回T退订") == (4, 70)
    assert sms_segment_usage("hi 😀") == (5, 70)  # emoji: UCS-2, a surrogate pair


# --- banned terms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, term",
    [
        ("The best white hanging heart T-light holder, £2.95.", "best"),
        ("Our best-ever heart T-light holder, £2.95.", "best"),
        ("The No.1 heart T-light holder, £2.95.", "No.1"),
        ("The #1 heart T-light holder, £2.95.", "#1"),
        ("Heart T-light holder, guaranteed to please, £2.95.", "guaranteed"),
        ("The cheapest heart T-light holder around, £2.95.", "cheapest"),
        ("The perfect heart T-light holder for a cosy evening, £2.95.", "perfect"),
    ],
)
def test_banned_english_terms_fall_back(body, term):
    out = finalize(raw(body=body), facts())
    assert out.source == "template"
    assert f"banned term '{term}'" in out.problems


@pytest.mark.parametrize("body, term", [("最好看的White Hanging Heart烛台，£2.95。", "最"), ("销量第一的Heart烛台，£2.95。", "第一"), ("国家级品质Heart烛台，£2.95。", "国家级")])
def test_banned_chinese_terms_fall_back(body, term):
    out = finalize(raw("Heart烛台", body, "立即查看"), facts(language="zh"))
    assert out.source == "template"
    assert f"banned term '{term}'" in out.problems


def test_banned_terms_come_from_the_shops_policy_file(tmp_path):
    from services.copywriting.checks import BANNED_TERMS_FILE, banned_terms_pattern

    shipped = banned_terms_pattern(BANNED_TERMS_FILE)
    assert shipped.search("绝对好用") and shipped.search("a world-class mug") and not shipped.search("a worldly mug")
    policy = tmp_path / "banned.yaml"
    policy.write_text("zh:\n  - 爆款\nen:\n  - must[- ]have\n", encoding="utf-8")
    own = banned_terms_pattern(policy)
    assert own.search("今年的爆款") and own.search("A MUST-HAVE mug") and not own.search("mustard")
    assert not own.search("the best mug")  # only the file's terms


def test_banned_matching_is_by_word_and_spares_the_product_name():
    f = facts()
    ok = finalize(raw(body="Bestow a warm glow with the white hanging heart holder, £2.95."), f)
    assert ok.source == "model"
    zh = finalize(raw("Heart烛台", "根据您最近的购买，推荐White Hanging Heart烛台，£2.95。", "立即查看"), facts(language="zh"))
    assert zh.source == "model"  # 最近 ("recently") is not a superlative
    dad = facts(title="BEST DAD CANDLE LETTERS", price=1.25)
    named = finalize(raw("Best Dad Candle Letters", "Best Dad Candle Letters for his birthday, £1.25."), dad)
    assert named.source == "model"  # "best" is part of the product's name, not a claim


# --- facts -----------------------------------------------------------------------------------


def test_a_wrong_price_names_both_prices():
    out = finalize(raw(body="The white hanging heart T-light holder, only £3.95!"), facts())
    assert out.source == "template"
    assert "price 3.95 does not match item price 2.95" in out.problems


@pytest.mark.parametrize(
    "body",
    ["White hanging heart holder, 2.95 GBP.", "White hanging heart holder, GBP 2.95.", "White hanging heart holder for 2.95."],
)
def test_prices_are_read_in_every_form(body):
    assert finalize(raw(body=body), facts()).source == "model"
    wrong = body.replace("2.95", "2.59")
    assert "price 2.59 does not match item price 2.95" in finalize(raw(body=wrong), facts()).problems


def test_a_wrong_currency_is_reported():
    out = finalize(raw(body="The white hanging heart holder, $2.95."), facts())
    assert out.source == "template"
    assert any("currency '$'" in p and "GBP" in p for p in out.problems)


def test_chinese_yuan_amounts_are_checked():
    f = facts(language="zh", currency="CNY", price=12.5)
    assert finalize(raw("Heart烛台", "White Hanging Heart烛台，只要¥12.50。", "立即查看"), f).source == "model"
    out = finalize(raw("Heart烛台", "White Hanging Heart烛台，只要9.9元。", "立即查看"), f)
    assert "price 9.90 does not match item price 12.50" in out.problems


def test_the_promotion_price_and_terms_are_accepted():
    f = facts(promotion=SPRING)
    body = "White hanging heart holder: 20% off with code SPRING20 until 2011-12-31, £2.36 instead of £2.95."
    out = finalize(raw(body=body), f)
    assert out.source == "model", out.problems


def test_a_wrong_promotion_price_names_item_and_promotion_price():
    out = finalize(raw(body="White hanging heart holder, now £2.00 with code SPRING20."), facts(promotion=SPRING))
    assert "price 2.00 does not match item price 2.95 or promotion price 2.36" in out.problems


def test_amount_off_promotion_price():
    f = facts(promotion=Promotion(amount_off=0.5))
    assert finalize(raw(body="White hanging heart holder: save £0.50, just £2.45."), f).source == "model"


def test_a_percentage_without_a_promotion_falls_back():
    out = finalize(raw(body="White hanging heart holder, 20% off, £2.95."), facts())
    assert out.source == "template"
    assert "percentage 20% but there is no promotion" in out.problems


def test_a_wrong_percentage_names_the_right_one():
    out = finalize(raw(body="White hanging heart holder: 30% off with code SPRING20."), facts(promotion=SPRING))
    assert "percentage 30% does not match promotion 20% off" in out.problems


def test_chinese_zhe_discount_is_checked():
    f = facts(language="zh", promotion=SPRING)
    ok = finalize(raw("Heart烛台", "White Hanging Heart烛台限时8折，优惠码SPRING20。", "立即查看"), f)
    assert ok.source == "model", ok.problems
    bad = finalize(raw("Heart烛台", "White Hanging Heart烛台限时7折，优惠码SPRING20。", "立即查看"), f)
    assert any("7折" in p and "20% off" in p for p in bad.problems)


@pytest.mark.parametrize(
    "body, claim",
    [
        ("White hanging heart holder, on sale now for £2.95.", "sale"),
        ("White hanging heart holder with free delivery, £2.95.", "free"),
        ("White hanging heart holder at a discount, £2.95.", "discount"),
    ],
)
def test_discount_claims_without_a_promotion_fall_back(body, claim):
    out = finalize(raw(body=body), facts())
    assert out.source == "template"
    assert any(claim in p and "no promotion" in p for p in out.problems)


def test_chinese_discount_claims_without_a_promotion():
    out = finalize(raw("Heart烛台", "White Hanging Heart烛台促销中，包邮，£2.95。", "立即查看"), facts(language="zh"))
    assert out.source == "template"
    assert any("促销" in p for p in out.problems) and any("包邮" in p for p in out.problems)


def test_free_is_only_allowed_when_the_promotion_offers_it():
    body = "White hanging heart holder with free delivery this week, £2.95."
    assert finalize(raw(body=body), facts(promotion=Promotion(description="Free delivery this week"))).source == "model"
    out = finalize(raw(body=body), facts(promotion=SPRING))
    assert "'free' claim is not part of the promotion" in out.problems


def test_a_wrong_promotion_code_names_the_right_one():
    out = finalize(raw(body="White hanging heart holder: 20% off with code SAVE20."), facts(promotion=SPRING))
    assert out.source == "template"
    assert "promotion code 'SAVE20' does not match 'SPRING20'" in out.problems
    none = finalize(raw(body="White hanging heart holder, £2.95, use code HEART10."), facts())
    assert "promotion code 'HEART10' but the promotion has no code" in none.problems


def test_copy_about_something_else_falls_back():
    out = finalize(raw("Lovely lantern", "A white metal lantern for your garden, £2.95."), facts())
    assert out.source == "template"
    assert "copy does not mention the product" in out.problems


def test_numbers_inside_the_product_name_are_not_prices():
    f = facts(title="GARLAND, MAGIC GARDEN 1.8M", price=2.95)
    assert finalize(raw("Magic garden garland", "Garland, Magic Garden 1.8M: £2.95."), f).source == "model"


def test_a_number_not_in_the_facts_falls_back():
    out = finalize(raw(body="White hanging heart T-light holder 2022, £2.95."), facts())
    assert out.source == "template"
    assert "number 2022 is not in the facts" in out.problems
    set_of_3 = facts(title="SET OF 3 CAKE TINS PANTRY DESIGN", price=4.95)
    assert finalize(raw("Cake tins", "A set of 3 cake tins for your pantry, £4.95."), set_of_3).source == "model"


def test_a_body_about_another_product_falls_back():
    # what SmolLM2 wrote: the title names the item, the body the shopper's last purchase
    out = finalize(raw("White Hanging Heart T-Light Holder", "White Metal Lantern"), facts())
    assert out.source == "template"
    assert "body is about another product ('White Metal Lantern')" in out.problems


def test_one_generic_word_is_not_a_mention_of_the_product():
    body = "Tonight I am going to buy a white metal lantern, a wonderful gift for the love of light."
    out = finalize(raw(title="", body=body, cta=""), facts(channel="sms"))
    assert out.source == "template"
    assert "copy does not mention the product" in out.problems


@pytest.mark.parametrize(
    "title, body",
    [
        ("Cake Tins Pantry Design", "Cake Tins Pantry Design."),
        ("Buy Set of 3 Cake Tins Pantry Design", "Cake Tins Pantry Design"),  # adds nothing to the title
    ],
)
def test_a_body_that_only_repeats_the_title_falls_back(title, body):
    out = finalize(raw(title, body), facts(title="SET OF 3 CAKE TINS PANTRY DESIGN", channel="email"))
    assert out.source == "template"
    assert "body only repeats the title" in out.problems


def test_many_wrong_amounts_are_summarised():
    body = "Heart T-light holder sizes 12.5, 18.5, 1.5, 1.75 and 2.5"
    out = finalize(raw(body=body), facts())
    assert [p for p in out.problems if p.startswith("price")] == [
        "price 12.50 does not match item price 2.95",
        "price 18.50 does not match item price 2.95",
        "price 1.50 does not match item price 2.95",
    ]
    assert "2 more amounts that match no price" in out.problems


def test_a_field_stopped_mid_word_at_its_max_length_loses_the_broken_word():
    # constrained decoding closes the string at maxLength: "…T-Light Ho" (banner title max 30)
    f = facts(channel="banner")
    out = finalize(raw("White Hanging Heart T-Light Ho", "The white hanging heart holder, £2.95.", "See it now"), f)
    assert out.source == "repaired"
    assert out.copy.title == "White Hanging Heart T-Light…"
    assert "title cut off mid-word at the length limit: last word dropped" in out.problems
    whole = finalize(raw("Hanging Heart T-Light Holder £2", "The white hanging heart holder, £2.95.", "See it now"), f)
    assert "title cut off" not in problems_text(whole)  # ends in a word of the facts


def test_a_call_to_action_ending_in_a_lone_letter_at_the_limit_was_cut():
    f = facts(channel="email")  # CTA max 25
    out = finalize(raw(body="The white hanging heart T-light holder, £2.95.", cta="Buy White Hanging Heart T"), f)
    assert out.copy.call_to_action == "Shop now"
    assert any("cut off mid-word" in p for p in out.problems)


@pytest.mark.parametrize(
    "cta, why",
    [
        ("Buy White Hanging He", "cut off mid-word"),  # push CTA max 20
        ("Buy White Hanging Hear T", "too long"),
        ("TIPPING", "not an action"),
        ("Shopper likes, ", "junk"),
        ("Get 20% off", "percentage 20%"),
    ],
)
def test_a_bad_call_to_action_is_replaced_by_the_default(cta, why):
    out = finalize(raw(body="The white hanging heart T-light holder, £2.95.", cta=cta), facts())
    assert out.source == "repaired"
    assert out.copy.call_to_action == "Shop now"
    assert any(p.startswith("call to action") and why in p for p in out.problems), out.problems


# --- junk and language -----------------------------------------------------------------------


def test_the_tiny_models_placeholder_output_falls_back():
    text = (
        '{"title": "White Hanging Heart T-LIGHT Holder", "body": "Title: WHITE HANGING HEART T-LIGHT HOLDER, '
        'price: 2.95, body: [company name],", "call_to_action": "Shop now"}'
    )
    out = finalize(text, facts())
    assert out.source == "template"
    text_of_problems = problems_text(out)
    for junk in ("'title:'", "'price:'", "'body:'", "'['", "'company name'"):
        assert junk in text_of_problems


@pytest.mark.parametrize(
    "body",
    [
        "White hanging heart holder, £2.95 at http://shop.example",
        "<b>White hanging heart holder</b>, £2.95",
        "White hanging heart holder for {customer}, £2.95",
        "White hanging heart holder holder holder, £2.95",
    ],
)
def test_junk_falls_back(body):
    out = finalize(raw(body=body), facts())
    assert out.source == "template"
    assert any("junk" in p or "repetitive" in p for p in out.problems)


def test_chinese_requested_but_english_written():
    out = finalize(raw("Heart holder", "White hanging heart holder, £2.95.", "立即查看"), facts(language="zh"))
    assert out.source == "template"
    assert "language: Chinese requested but the body has no Chinese" in out.problems


def test_english_requested_but_chinese_written():
    out = finalize(raw("Heart holder", "这款White Hanging Heart心形烛台非常漂亮，适合送礼，售价£2.95。"), facts())
    assert out.source == "template"
    assert "language: English requested but the body is mostly Chinese" in out.problems


def test_a_chinese_cta_for_english_copy_is_replaced():
    out = finalize(raw(body="White hanging heart holder, £2.95.", cta="立即查看"), facts())
    assert out.source == "repaired"
    assert out.copy.call_to_action == "Shop now"


# --- the template ----------------------------------------------------------------------------

GRID_TITLES = [
    HEART,
    "SET OF 3 CAKE TINS PANTRY DESIGN",
    "BEST DAD CANDLE LETTERS",
    "GARLAND, MAGIC GARDEN 1.8M",
    "ESSENTIAL BALM 3.5g TIN IN ENVELOPE",
    'PINK/WHITE "KEEP CLEAN" BULLET BIN',
    "Dotcomgiftshop Gift Voucher £40.00",
    "Amazon eGift Card - Don't Panic on Your Birthday (Animated) [Hallmark]",
    "Entertainment Weekly Magazine Subscription, Fifty-One Issues Delivered Weekly With Digital Access Included "
    "For Phones, Tablets And Computers",
    "白色心形挂式烛台",
]
GRID_PROMOTIONS = [
    Promotion(),
    SPRING,
    Promotion(code="SAVE1", amount_off=1.0),
    Promotion(percent_off=12.5),
    Promotion(description="Free delivery this week", ends="2011-12-24"),
]
GRID_SHOPPERS = [
    dict(interests=("hearts", "candles"), reason="similar to WHITE METAL LANTERN you bought"),
    dict(interests=(), reason=""),
    dict(interests=("复古", "vintage"), reason="因为您买过白色金属灯笼"),
    dict(interests=("BEST SELLERS",), reason="bought with SET/3 RED SPOTTY 1.5L JUG [sale]"),
]


def grid():
    currencies = itertools.cycle(["GBP", "CNY", "XYZ", "EUR", "USD", ""])
    shoppers = itertools.cycle(GRID_SHOPPERS)
    for i, (title, promo, price, channel, language) in enumerate(
        itertools.product(GRID_TITLES, GRID_PROMOTIONS, [2.95, None, 1299.5], list(CHANNELS), ["en", "zh"])
    ):
        yield CopyFacts(
            item_id=f"item-{i}",
            title=title,
            price=price,
            currency=next(currencies),
            channel=channel,
            language=language,
            promotion=promo,
            **next(shoppers),
        )


def test_the_template_passes_every_check_over_a_grid_of_facts():
    failures = []
    for f in grid():
        copy = template_copy(f)
        spec = CHANNELS[f.channel]
        problems = check_copy(copy, f)
        outcome = finalize(json.dumps(dataclasses.asdict(copy), ensure_ascii=False), f)
        if problems or outcome.source != "model" or outcome.copy != copy:
            failures.append((f, copy, problems, outcome.problems))
            continue
        assert len(copy.title) <= spec.title_limit(f.language)
        assert spec.body_fits(copy.body, f.language)
        assert len(copy.call_to_action) <= spec.cta_limit(f.language)
        if f.price is not None:
            assert format_price(f.price, f.currency) in copy.title + copy.body
        if f.promotion.code:
            assert f.promotion.code in copy.body
    assert not failures, "\n".join(map(repr, failures[:5]))


def test_the_template_mentions_the_promotion_terms():
    copy = template_copy(facts(channel="email", promotion=SPRING))
    assert "20% off with code SPRING20 until 2011-12-31" in copy.body
    assert "£2.36" in copy.body and "£2.95" in copy.title + copy.body
    zh = template_copy(facts(channel="email", language="zh", promotion=SPRING))
    assert "20%" in zh.body and "SPRING20" in zh.body and "2011-12-31" in zh.body


def test_the_template_without_a_price_mentions_none():
    copy = template_copy(facts(price=None))
    assert not any(c in copy.title + copy.body for c in "£$¥€") and "2.95" not in copy.body


def test_the_template_is_deterministic_and_varies_by_item():
    f = facts()
    assert template_copy(f) == template_copy(f)
    phrasings = {template_copy(facts(item_id=str(i))).body.replace("White Hanging Heart T-Light Holder", "") for i in range(12)}
    assert len(phrasings) >= 2


def test_the_template_uses_a_cta_in_the_language():
    assert template_copy(facts()).call_to_action in ("Shop now", "Take a look", "See it now")
    assert template_copy(facts(language="zh")).call_to_action in ("立即查看", "去看看", "马上选购")


def test_display_title_cases_catalogue_titles():
    assert display_title(HEART) == "White Hanging Heart T-Light Holder"
    assert display_title("SET OF 3 CAKE TINS PANTRY DESIGN") == "Set of 3 Cake Tins Pantry Design"
    assert display_title("DOLLY GIRL'S LUNCH BOX") == "Dolly Girl's Lunch Box"
    assert display_title("BAG 500g SWIRLY MARBLES") == "Bag 500g Swirly Marbles"
    assert display_title("LED TEA LIGHTS  1.8M") == "LED Tea Lights 1.8M"
    assert display_title("Dotcomgiftshop Gift Voucher £40.00") == "Dotcomgiftshop Gift Voucher £40.00"
    assert display_title("白色心形挂式烛台") == "白色心形挂式烛台"


def test_format_price():
    assert format_price(2.95, "GBP") == "£2.95"
    assert format_price(3, "usd") == "$3.00"
    assert format_price(1299.5, "EUR") == "€1,299.50"
    assert format_price(12, "CNY") == "¥12.00"
    assert format_price(12.5, "XYZ") == "12.50 XYZ"
    assert format_price(2.675, "GBP") == "£2.68"  # half up, not float's 2.67


def test_promotion_price_rounds_to_cents():
    assert SPRING.price_after(2.95) == 2.36
    assert Promotion(percent_off=12.5).price_after(2.95) == 2.58  # 2.58125
    assert Promotion(amount_off=1).price_after(2.95) == 1.95
    assert Promotion(code="X").price_after(2.95) is None
    assert Promotion(percent_off=20).price_after(None) is None


# --- prompt and schema -----------------------------------------------------------------------


def test_the_prompt_carries_the_facts_and_nothing_about_the_person():
    profile = {
        "user_id": "U-17850-SENTINEL",
        "name": "Ada Sentinel",
        "email": "ada.sentinel@example.com",
        "phone": "+44 7700 900123",
        "interests": ["hearts", "candles"],
        "segment": "loyal",
        "recent": ["WHITE METAL LANTERN", "RED RETROSPOT CAKE STAND", "JUMBO BAG RED RETROSPOT", "PARTY BUNTING"],
    }
    f = facts(
        interests=tuple(profile["interests"]),
        segment=profile["segment"],
        recent_titles=tuple(profile["recent"]),
        promotion=SPRING,
    )
    messages = build_messages(f)
    assert [m["role"] for m in messages] == ["system", "user"]
    text = "\n".join(m["content"] for m in messages)
    for personal in ("U-17850", "SENTINEL", "Sentinel", "ada.sentinel", "7700", "17850"):
        assert personal not in text
    assert "White Hanging Heart T-Light Holder" in text and "£2.95" in text
    assert "SPRING20" in text and "£2.36" in text and "2011-12-31" in text
    assert "hearts" in text and "loyal" in text and "White Metal Lantern" in text
    assert "Party Bunting" not in text  # at most three recent purchases
    assert "Write in English" in text
    assert "120" in text and "40" in text  # push limits
    assert {field.name for field in dataclasses.fields(CopyFacts)}.isdisjoint({"user_id", "name", "email", "phone"})


def test_the_prompt_scrubs_contact_details_that_slip_into_free_text():
    f = facts(reason="similar to what ada@example.com bought, call +44 7700 900123")
    text = "\n".join(m["content"] for m in build_messages(f))
    assert "ada@example.com" not in text and "7700" not in text


def test_the_prompt_without_promotion_forbids_discounts_and_handles_zh_and_sms():
    text = "\n".join(m["content"] for m in build_messages(facts(channel="sms", language="zh", price=None)))
    assert "do not mention discounts" in text
    assert "Simplified Chinese" in text
    assert "do not mention a price" in text
    assert "SMS" in text and "opt-out" in text
    assert len(text) < 1200  # a small model's context: keep it compact


def test_copy_json_schema_is_a_valid_schema_with_the_channel_limits():
    jsonschema = pytest.importorskip("jsonschema")
    for channel, spec in CHANNELS.items():
        for language in ("en", "zh"):
            schema = copy_json_schema(channel, language)
            jsonschema.Draft202012Validator.check_schema(schema)
            props = schema["properties"]
            assert schema["required"] == ["title", "body", "call_to_action"]
            assert schema["additionalProperties"] is False
            assert props["title"]["maxLength"] == spec.title_limit(language)
            assert props["call_to_action"]["maxLength"] == spec.cta_limit(language)
            if spec.opt_out:  # room left for the opt-out suffix finalize adds
                assert props["body"]["maxLength"] < spec.body_limit(language)
            else:
                assert props["body"]["maxLength"] == spec.body_limit(language)
                copy = template_copy(facts(channel=channel, language=language, promotion=SPRING))
                jsonschema.validate(dataclasses.asdict(copy), schema)
            validator = jsonschema.Draft202012Validator(schema)
            assert not validator.is_valid({"title": "x", "body": "y"})
            assert not validator.is_valid({"title": "", "body": "y", "call_to_action": "", "extra": 1})


def test_channel_limits():
    assert CHANNELS["sms"].title_max == 0
    assert CHANNELS["sms"].body_limit("en") == 160 and CHANNELS["sms"].body_limit("zh") == 70
    assert CHANNELS["push"].title_limit("en") == 40 and CHANNELS["push"].body_limit("en") == 120
    assert CHANNELS["email"].title_limit("en") == 60
    assert CHANNELS["banner"].title_limit("en") == 30 and CHANNELS["banner"].body_limit("en") == 80


def test_unknown_channel_language_and_bad_numbers_are_invalid_arguments():
    with pytest.raises(InvalidArgument) as e:
        facts(channel="fax")
    assert e.value.field == "channel"
    with pytest.raises(InvalidArgument) as e:
        facts(language="fr")
    assert e.value.field == "language"
    with pytest.raises(InvalidArgument):
        copy_json_schema("fax", "en")
    with pytest.raises(InvalidArgument):
        facts(price=float("nan"))
    with pytest.raises(InvalidArgument) as e:
        Promotion(percent_off=120)
    assert e.value.field == "promotion.percent_off"
