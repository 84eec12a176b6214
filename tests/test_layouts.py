"""The channel layouts (services/copywriting/layouts.py): copy laid out from facts and the
model's free words passes every check, over real catalogue titles. No engine needed."""

from __future__ import annotations

import dataclasses
import itertools
import re
from html import escape

import pytest
from conftest import SAMPLE
from test_copywriting import HEART, SHOP, facts, is_hook

from services.copywriting import CHANNELS, Copy, CopyFacts, Promotion, check_copy, display_title
from services.copywriting.channels import OPT_OUT, SMS_MAX_SEGMENTS, sms_encoding, sms_segments
from services.copywriting.layouts import with_event_name, CTAS, FAMILIES, OPENERS, TONES, LaidOut, lay_out, pieces, promotion_pieces
from services.copywriting.text import display_width
from services.copywriting.vocabulary import VOCABULARY_FILE, Vocabulary, latin_words
from services.errors import InvalidArgument

LINKS = {
    "item_url": "https://shop.example/item/85123A",
    "unsubscribe_url": "https://shop.example/unsubscribe?t=0123abcd",
    "unsubscribe_mailto": "mailto:unsubscribe@shop.example?subject=unsubscribe-0123abcd",
}
XMAS = Promotion(code="XMAS20", percent_off=20, free_shipping=True, event="christmas")
MEMBERS = Promotion(description="Members' week", amount_off=0.1, threshold_amount=50, threshold_reduction=10, ends="2011-12-24")
PROMOTIONS = (Promotion(), XMAS, MEMBERS)
LANGUAGES = ("en", "zh")
HOOK = "Give your home a warm glow on cosy winter evenings with soft candlelight."
SHORT_HOOK = "Light up dark winter evenings with a soft glow for your room."

# Real titles of the shipped sample that are hard to lay out: the longest, numbers and sizes,
# stray punctuation and double spaces, claim words ("SAVE") and the event's own name.
HARD_TITLES = (
    "WHITE TALL PORCELAIN T-LIGHT HOLDER",
    "SET/5 RED RETROSPOT LID GLASS BOWLS",
    "DISCO BALL ROTATOR BATTERY OPERATED",
    "SET 12 LAVENDER  BOTANICAL T-LIGHTS",
    "SAVE THE PLANET MUG",
    "CHRISTMAS LIGHTS 10 REINDEER",
    "15CM CHRISTMAS GLASS BALL 20 LIGHTS",
    "SET OF 72 RETROSPOT PAPER  DOILIES",
    "SET 3 RETROSPOT TEA,COFFEE,SUGAR",
    "ELEPHANT, BIRTHDAY CARD,",
    "KEY FOB , SHED",
    "NURSERY A,B,C PAINTED LETTERS",
    "DIAMANTE RING ASSORTED IN BOX.",
    "LADIES & GENTLEMEN METAL SIGN",
    "YOU'RE CONFUSING ME METAL SIGN",
    "TOAST ITS - HAPPY BIRTHDAY",
    "3 TRADITIONAl BISCUIT CUTTERS  SET",
)
STRIDE = 50  # and every 50th item of the sample's ~1,100


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.load(VOCABULARY_FILE)


@pytest.fixture(scope="module")
def catalog():
    """The shipped sample's items, read by the project's loader (no build: a second or two)."""
    from services.shop_data import load_shop_data

    return load_shop_data(SAMPLE).items.reset_index(drop=True)


def lay(f: CopyFacts, vocabulary: Vocabulary, hook: str = "", family: str = "spotlight", **kw) -> LaidOut | None:
    return lay_out(f, hook, family, vocabulary, SHOP, LINKS, **kw)


def latin_outside_the_given(copy: Copy, f: CopyFacts) -> list[str]:
    """zh: Latin words of the copy outside the product's title (whole, or cut short with an
    ellipsis), the promotion code, the shop's signature and the opt-out."""
    text = "\n".join([copy.title, copy.body, copy.call_to_action])
    name = display_title(f.title)
    for given in sorted({f"【{SHOP}】", OPT_OUT["zh"], f.title, name, f.promotion.code} - {""}, key=len, reverse=True):
        text = text.replace(given, " ")
    for cut in re.findall(r"[^\n。，！：:；、]+…", text):  # "White Hanging Heart T-Light…"
        if name.startswith(cut.strip()[:-1].rstrip()):
            text = text.replace(cut, " ")
    return latin_words(text)


def layout_failures(f: CopyFacts, family: str, laid: LaidOut | None, hook: str = "") -> list[str]:
    """What is wrong with `laid`, the layout of `f` in `family` (empty: all well)."""
    where = f"{f.title!r} {f.channel}/{f.language}/{family}/{f.promotion.code or f.promotion.description or 'no promotion'}"
    if laid is None:
        return [f"{where}: nothing laid out"]
    copy, spec, lang = laid.copy, CHANNELS[f.channel], f.language
    out = [f"{where}: {p}" for p in check_copy(copy, f)]
    if f.promotion.code and f.promotion.code not in copy.title + copy.body:
        out.append(f"{where}: the code is missing")
    if lang == "zh" and latin_outside_the_given(copy, f):
        out.append(f"{where}: English words in Chinese copy {latin_outside_the_given(copy, f)}: {copy}")
    if hook and lang == "en" and hook not in copy.body:
        out.append(f"{where}: the free words are not in the copy")
    if f.channel == "sms":
        message = copy.body
        signature = f"【{SHOP}】" if lang == "zh" else f"{SHOP}: "
        if (copy.title, copy.call_to_action) != ("", ""):
            out.append(f"{where}: an SMS has a title or a button")
        if not message.startswith(signature) or not message.endswith(OPT_OUT[lang]):
            out.append(f"{where}: not signed or no opt-out: {message!r}")
        if not (laid.sms_segments == sms_segments(message) <= SMS_MAX_SEGMENTS):
            out.append(f"{where}: {laid.sms_segments} segments reported, {sms_segments(message)} sent")
        if lang == "en" and sms_encoding(message) != "gsm7":
            out.append(f"{where}: an English SMS in UCS-2 (a third of the room): {message!r}")
    else:
        if laid.sms_segments:
            out.append(f"{where}: segments counted for {f.channel}")
        if display_width(copy.title) > spec.title_max or display_width(copy.call_to_action) > spec.cta_max:
            out.append(f"{where}: title or button too wide: {copy}")
        if copy.call_to_action != CTAS[lang][family]:
            out.append(f"{where}: the button is not the family's: {copy.call_to_action!r}")
    if f.channel == "email":
        out += [f"{where}: e-mail: {p}" for p in email_failures(laid, lang)]
    elif laid.email is not None:
        out.append(f"{where}: an e-mail rendered for {f.channel}")
    return out


def email_failures(laid: LaidOut, lang: str) -> list[str]:
    email, copy = laid.email, laid.copy
    if email is None:
        return ["not rendered"]
    out = []
    paragraphs = copy.body.split("\n\n")
    if email.subject != copy.title:
        out.append(f"subject {email.subject!r} is not the title {copy.title!r}")
    if not email.html.startswith("<!DOCTYPE html>") or f'<html lang="{lang}">' not in email.html:
        out.append("not an HTML document in the copy's language")
    if not all(escape(p) in email.html and p in email.text for p in paragraphs):
        out.append("a paragraph is missing from the HTML or the text")
    if escape(copy.call_to_action) not in email.html or f"{LINKS['item_url']}" not in email.text:
        out.append("the button or its link is missing")
    headers = email.headers
    if headers.get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click":
        out.append(f"no one-click unsubscribe: {headers}")
    if f"<{LINKS['unsubscribe_url']}>" not in headers.get("List-Unsubscribe", "") or "<mailto:" not in headers["List-Unsubscribe"]:
        out.append(f"List-Unsubscribe lacks the links: {headers}")
    if LINKS["unsubscribe_url"] not in email.text or escape(LINKS["unsubscribe_url"]) not in email.html:
        out.append("no unsubscribe link in the message")
    return out


def catalog_facts(row, index: int) -> list[CopyFacts]:
    """Facts for one catalogue item on every channel, language and promotion; the shopper
    (interests, tone, the reason) varies with the item."""
    shoppers = (
        dict(interests=("candles", "christmas"), reason="similar to WHITE METAL LANTERN you bought"),
        dict(interests=(), reason=""),
        dict(interests=("kitchen", "vintage"), reason="popular with shoppers like you"),
    )
    base = CopyFacts(
        item_id=str(row.item_id), title=str(row.title), price=float(row.price), currency=str(row.currency),
        category=str(row.category), tone=TONES[index % len(TONES)], **shoppers[index % len(shoppers)],
    )
    return [
        dataclasses.replace(base, channel=channel, language=language, promotion=promo)
        for channel, language, promo in itertools.product(CHANNELS, LANGUAGES, PROMOTIONS)
    ]


def catalog_failures(rows, vocabulary: Vocabulary) -> list[str]:
    failures = []
    for index, row in enumerate(rows.itertuples()):
        for f in catalog_facts(row, index):
            for family in FAMILIES:
                failures += layout_failures(f, family, lay(f, vocabulary, family=family))
    return failures


# --- real catalogue titles on every channel, language, promotion and family -------------------


def test_the_layout_judge_catches_what_it_looks_for(vocabulary):
    """The grid below is only as good as layout_failures: it must see each fault."""
    sms = facts(channel="sms", language="zh", promotion=XMAS)
    good = lay(sms, vocabulary)
    assert layout_failures(sms, "spotlight", good) == []

    def judged(f, laid, **copy_changes):
        changed = dataclasses.replace(laid, copy=dataclasses.replace(laid.copy, **copy_changes))
        return " | ".join(layout_failures(f, "spotlight", changed))

    assert "the code is missing" in judged(sms, good, body=good.copy.body.replace("XMAS20", ""))
    assert "English words in Chinese copy ['cosy']" in judged(sms, good, body=good.copy.body.replace("您好！", "您好cosy！"))
    assert "not signed" in judged(sms, good, body=good.copy.body.replace(f"【{SHOP}】", ""))
    assert "nothing laid out" in " ".join(layout_failures(sms, "spotlight", None))
    email = facts(channel="email")
    laid = lay(email, vocabulary)
    assert layout_failures(email, "spotlight", laid) == []
    assert "e-mail: not rendered" in " ".join(layout_failures(email, "spotlight", dataclasses.replace(laid, email=None)))
    assert "the free words are not in the copy" in " ".join(layout_failures(email, "spotlight", laid, HOOK))


@pytest.mark.parametrize("title", HARD_TITLES)
def test_every_layout_of_a_hard_catalogue_title_passes_every_check(title, catalog, vocabulary):
    rows = catalog[catalog["title"] == title]
    assert len(rows) >= 1, f"{title!r} is not in the shipped sample"
    failures = catalog_failures(rows.head(1), vocabulary)
    assert not failures, "\n".join(failures[:8])


def test_every_layout_of_a_stride_of_the_catalogue_passes_every_check(catalog, vocabulary):
    rows = catalog.iloc[::STRIDE]
    assert len(rows) >= 20
    failures = catalog_failures(rows, vocabulary)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:8])


# --- the model's free words in the layouts ----------------------------------------------------


@pytest.mark.parametrize("channel", list(CHANNELS))
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("promotion", [Promotion(), XMAS], ids=["no-promotion", "xmas"])
def test_english_free_words_are_in_the_copy_verbatim(channel, family, promotion, vocabulary):
    hook = SHORT_HOOK if channel == "banner" and not promotion.is_empty else HOOK
    assert is_hook(hook)
    f = facts(channel=channel, promotion=promotion)
    laid = lay(f, vocabulary, hook, family)
    assert not layout_failures(f, family, laid, hook), layout_failures(f, family, laid, hook)


@pytest.mark.parametrize("channel", list(CHANNELS))
@pytest.mark.parametrize("family", FAMILIES)
def test_chinese_copy_ignores_the_free_words(channel, family, vocabulary):
    f = facts(channel=channel, language="zh", promotion=XMAS)
    assert lay(f, vocabulary, HOOK, family) == lay(f, vocabulary, "", family)
    assert pieces(f, HOOK, vocabulary).hook == ""
    assert not layout_failures(f, family, lay(f, vocabulary, HOOK, family))


def test_free_words_too_long_for_the_channel_lay_out_nothing(vocabulary):
    # The banner's line holds the promotion and a short hook, not a long one: the writer then
    # tries the hook without its last clause, then none.
    f = facts(channel="banner", promotion=XMAS)
    assert lay(f, vocabulary, HOOK) is None
    assert lay(f, vocabulary, SHORT_HOOK) is not None


def test_each_family_puts_its_piece_first(vocabulary):
    f = facts(channel="email", promotion=XMAS, tone="grateful")
    full, _, headline = promotion_pieces(with_event_name(f, vocabulary), vocabulary)
    assert full.startswith("Christmas: ")  # the event, named from the shop's vocabulary
    paragraphs = {family: lay(f, vocabulary, HOOK, family).copy.body.split("\n\n") for family in FAMILIES}
    assert paragraphs["spotlight"][0] == OPENERS["en"]["grateful"] and paragraphs["spotlight"][1] != HOOK
    assert paragraphs["story"][:2] == [OPENERS["en"]["grateful"], HOOK]  # the story opens with the free words
    assert paragraphs["offer"][0] == full
    assert lay(f, vocabulary, HOOK, "offer").copy.title == f"{headline}: White Hanging Heart T-Light Holder"
    # without a promotion the offer family opens with the tone's opener
    assert lay(facts(channel="email"), vocabulary, HOOK, "offer").copy.body.startswith(OPENERS["en"]["friendly"])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("tone", TONES)
def test_every_tone_opens_the_copy_with_its_opener(tone, language, vocabulary):
    f = facts(channel="email", language=language, tone=tone)
    laid = lay(f, vocabulary)
    assert laid.copy.body.split("\n\n")[0] == OPENERS[language][tone]
    assert not layout_failures(f, "spotlight", laid)


def test_no_price_and_no_promotion_lay_out_the_name_alone(vocabulary):
    for channel, language in itertools.product(CHANNELS, LANGUAGES):
        f = facts(channel=channel, language=language, price=None)
        laid = lay(f, vocabulary)
        assert not layout_failures(f, "spotlight", laid)
        assert not re.search(r"[£$¥€]|\d", laid.copy.title + laid.copy.body)


def test_fewer_sms_segments_lay_out_a_shorter_message_or_nothing(vocabulary, catalog):
    for title in ("WHITE TALL PORCELAIN T-LIGHT HOLDER", "SAVE THE PLANET MUG", HEART):
        for language, promotion in itertools.product(LANGUAGES, PROMOTIONS):
            f = facts(title=title, channel="sms", language=language, promotion=promotion)
            laid = lay(f, vocabulary, max_sms_segments=1)
            assert laid is not None and laid.sms_segments == 1, (title, language, promotion)
            assert not check_copy(laid.copy, f)


# --- the promotion's pieces -------------------------------------------------------------------


def test_the_promotion_terms_in_english_and_chinese(vocabulary):
    en = promotion_pieces(with_event_name(facts(promotion=XMAS), vocabulary), vocabulary)
    assert en == (
        "Christmas: 20% off and free delivery with code XMAS20, making it £2.36.",
        "Christmas: 20% off and free delivery with code XMAS20.",
        "20% off",
    )
    zh = promotion_pieces(with_event_name(facts(language="zh", promotion=XMAS), vocabulary), vocabulary)
    assert zh == (
        "圣诞节，立享20%折扣，全场包邮，优惠码XMAS20，到手价£2.36。",
        "圣诞节，立享20%折扣，全场包邮，优惠码XMAS20。",
        "立享20%折扣",
    )
    threshold = Promotion(threshold_amount=50, threshold_reduction=10, ends="2011-12-24")
    assert promotion_pieces(facts(promotion=threshold), vocabulary)[0] == "£10.00 off orders of £50.00 or more until 2011-12-24."
    assert promotion_pieces(facts(language="zh", promotion=threshold), vocabulary)[0] == "满£50.00减£10.00，截至2011-12-24。"
    assert promotion_pieces(facts(promotion=Promotion(code="SAVE5")), vocabulary) == ("Use code SAVE5.", "Use code SAVE5.", "Code SAVE5")
    assert promotion_pieces(facts(), vocabulary) == ("", "", "")


def test_a_description_in_the_other_language_is_left_out(vocabulary):
    promo = Promotion(description="Spring sale", percent_off=10)
    assert "Spring sale" in promotion_pieces(facts(promotion=promo), vocabulary)[0]
    assert "Spring" not in promotion_pieces(facts(language="zh", promotion=promo), vocabulary)[0]


def test_chinese_copy_names_a_tag_only_through_the_vocabulary(vocabulary):
    assert pieces(facts(language="zh", interests=("candles",)), "", vocabulary).tag == f"为喜欢{vocabulary.zh('candles')}的您挑选。"
    assert pieces(facts(language="zh", interests=("zzyzx",), category="qwerty"), "", vocabulary).tag == ""
    assert pieces(facts(interests=("candles",)), "", vocabulary).tag == ""  # English copy has no tag line


# --- known bugs (reported; strict, so a fix turns them into passes to keep) -------------------


@pytest.mark.parametrize("event", ["singles_day", "双十一", "Mid-Year Sale"])
def test_an_event_whose_name_holds_a_number_is_laid_out(event, vocabulary):
    for channel, language in itertools.product(CHANNELS, LANGUAGES):
        f = facts(channel=channel, language=language, promotion=Promotion(event=event))
        laid = lay(f, vocabulary)
        assert laid is not None, (channel, language)
        assert vocabulary.event(event, language) in laid.copy.title + laid.copy.body


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_promotion_with_only_an_end_date_reads_as_a_sentence(language, vocabulary):
    f = facts(channel="push", language=language, promotion=Promotion(ends="2026-12-31"))
    body = lay(f, vocabulary).copy.body
    assert "  " not in body and ". until" not in body and "。，" not in body and not body.startswith(("，", " "))


def test_an_english_sms_that_cuts_the_name_stays_gsm7(vocabulary):
    title = "Personalised Wooden Memory Box For Grandparents With Engraved Family Tree And Twelve Name Tags Gift Set"
    f = facts(title=title, channel="sms", promotion=Promotion(code="XMAS20", percent_off=20))
    laid = lay(f, vocabulary, max_sms_segments=1)
    assert laid is not None and sms_encoding(laid.copy.body) == "gsm7"


@pytest.mark.parametrize("description, language", [("Our best prices of the year", "en"), ("VIP专享价", "zh")])
def test_a_description_the_checks_refuse_is_refused_up_front_or_left_out(description, language, vocabulary):
    try:
        promotion = Promotion(description=description)
    except InvalidArgument as e:
        assert e.field == "promotion.description"
        return
    f = facts(channel="email", language=language, promotion=promotion)
    assert any(lay(f, vocabulary, family=family) is not None for family in FAMILIES)
