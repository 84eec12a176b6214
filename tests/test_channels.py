"""What each channel sends (services/copywriting/channels.py): SMS segments and messages, e-mail."""

from __future__ import annotations

import itertools
from html.parser import HTMLParser

import pytest

from services.copywriting.channels import (
    BANNER_HEADLINE_MAX,
    BANNER_LINE_MAX,
    EMAIL_PREHEADER_MAX,
    EMAIL_SUBJECT_MAX,
    LANGUAGES,
    PUSH_BODY_MAX,
    PUSH_TITLE_MAX,
    SMS_MAX_SEGMENTS,
    EmailMessage,
    render_email,
    render_sms,
    sms_body_budget,
    sms_encoding,
    sms_fits,
    sms_segments,
    sms_units,
)
from services.errors import InvalidArgument

SHOP = "Tailor Shop"
TITLE = 'Tea & "Cake" Set <Deluxe>'

# --- SMS: encoding, units, segments ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, encoding",
    [
        ("", "gsm7"),
        ("Hello! £5 off {today} @ Tailor", "gsm7"),
        ("€10 off ~ [all] ^items^ | \\", "gsm7"),
        ("Ça va? Über ñ å Δ", "gsm7"),
        ("全场八折", "ucs2"),
        ("It’s back", "ucs2"),  # a curly apostrophe is not GSM-7
        ("Sale 🎉", "ucs2"),
        ("ç", "ucs2"),  # the basic table has Ç only
    ],
)
def test_text_is_gsm7_only_when_every_character_is_in_the_gsm_alphabet(text, encoding):
    assert sms_encoding(text) == encoding


@pytest.mark.parametrize(
    "text, units",
    [("abc", 3), ("€", 2), ("a€[]", 7), ("\n", 1), ("中文", 2), ("🎉", 2), ("中🎉", 3), ("", 0)],
)
def test_units_are_septets_with_extension_characters_taking_two_or_utf16_units(text, units):
    assert sms_units(text) == units


@pytest.mark.parametrize(
    "text, segments",
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 459, 3),
        ("a" * 460, 4),
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 134, 2),
        ("中" * 201, 3),
        ("中" * 202, 4),
        ("", 1),
    ],
)
def test_one_segment_holds_160_or_70_and_concatenated_segments_153_or_67(text, segments):
    assert sms_segments(text) == segments


def test_the_euro_sign_counts_two_septets():
    assert sms_units("€" * 80) == 160
    assert sms_segments("€" * 80) == 1
    assert sms_segments("€" * 80 + "a") == 2


def test_an_extension_character_at_a_segment_boundary_moves_whole_to_the_next_segment():
    # 306 septets either way; 2 × 153 holds them only if the € does not straddle the boundary.
    assert sms_segments("a" * 151 + "€" + "a" * 153) == 2
    assert sms_segments("a" * 152 + "€" + "a" * 152) == 3


def test_an_emoji_at_a_ucs2_segment_boundary_moves_whole_to_the_next_segment():
    assert sms_segments("中" * 65 + "🎉" + "中" * 67) == 2
    assert sms_segments("中" * 66 + "🎉" + "中" * 66) == 3


def test_sms_fits_counts_segments_against_the_maximum():
    assert SMS_MAX_SEGMENTS == 3
    assert sms_fits("a" * 459) and not sms_fits("a" * 460)
    assert sms_fits("a" * 160, max_segments=1) and not sms_fits("a" * 161, max_segments=1)


# --- SMS: the message as sent ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, language, message",
    [
        ("Big sale today", "en", "Tailor Shop: Big sale today. Reply STOP to opt out"),
        ("Big sale today!", "en", "Tailor Shop: Big sale today! Reply STOP to opt out"),
        ('Try the "Heart."', "en", 'Tailor Shop: Try the "Heart." Reply STOP to opt out'),
        ("Hurry,", "en", "Tailor Shop: Hurry. Reply STOP to opt out"),
        ("  Two\n lines  ", "en", "Tailor Shop: Two lines. Reply STOP to opt out"),
        ("全场八折", "zh", "【Tailor Shop】全场八折，回T退订"),
        ("全场八折。", "zh", "【Tailor Shop】全场八折。回T退订"),
        ("快来看看！", "zh", "【Tailor Shop】快来看看！回T退订"),
        ("快来，", "zh", "【Tailor Shop】快来，回T退订"),
    ],
)
def test_an_sms_is_signature_body_and_opt_out_joined_without_doubled_punctuation(body, language, message):
    assert render_sms(body, language, SHOP) == message


@pytest.mark.parametrize(
    "body, language, message",
    [
        ("Big sale. Reply STOP to opt out", "en", "Tailor Shop: Big sale. Reply STOP to opt out"),
        ("Big sale, reply stop to opt-out.", "en", "Tailor Shop: Big sale. Reply STOP to opt out"),
        ("Tailor Shop: Big sale", "en", "Tailor Shop: Big sale. Reply STOP to opt out"),
        ("全场八折，回T退订", "zh", "【Tailor Shop】全场八折，回T退订"),
        ("【Tailor Shop】全场八折。退订回T", "zh", "【Tailor Shop】全场八折。回T退订"),
    ],
)
def test_a_signature_or_opt_out_the_body_already_carries_is_not_repeated(body, language, message):
    assert render_sms(body, language, SHOP) == message


def test_a_zh_sms_is_signed_in_brackets_at_the_start_and_ends_with_hui_t_tui_ding():
    message = render_sms("全场八折", "zh", "小店")
    assert message.startswith("【小店】") and message.endswith("回T退订")
    assert render_sms("全场八折", "zh", "【小店】") == message


def test_an_en_sms_is_signed_with_the_shop_name_and_ends_with_reply_stop():
    message = render_sms("Big sale today", "en", SHOP)
    assert message.startswith("Tailor Shop: ") and message.endswith("Reply STOP to opt out")


def test_signature_and_opt_out_count_toward_the_length():
    body = "x" * 124  # 160 less "Tailor Shop: " (13), ". " (2) and "Reply STOP to opt out" (21)
    assert sms_units(render_sms(body, "en", SHOP)) == 160
    assert sms_segments(render_sms(body, "en", SHOP)) == 1
    assert sms_segments(render_sms(body + "x", "en", SHOP)) == 2
    body = "中" * 52  # 70 less "【Tailor Shop】" (13), "，" and "回T退订" (4)
    assert sms_units(render_sms(body, "zh", SHOP)) == 70
    assert sms_segments(render_sms(body + "中", "zh", SHOP)) == 2


def filler(n: int, language: str, gsm7: bool) -> str:
    """A body of n units in the given encoding, not ending a sentence."""
    if language == "zh" or not gsm7:
        return "中" * n
    return "x" * n


@pytest.mark.parametrize(
    "language, shop, max_segments, gsm7",
    list(itertools.product(LANGUAGES, (SHOP, "小店", "A&B [UK]"), (1, 2, 3), (True, False))),
)
def test_a_body_of_the_budget_fits_and_one_unit_more_does_not(language, shop, max_segments, gsm7):
    budget = sms_body_budget(language, shop, max_segments, gsm7)
    assert budget > 0
    assert sms_fits(render_sms(filler(budget, language, gsm7), language, shop), max_segments)
    assert not sms_fits(render_sms(filler(budget + 1, language, gsm7), language, shop), max_segments)
    ended = filler(budget - 1, language, gsm7) + ("。" if language == "zh" else ".")  # its own full stop
    assert sms_fits(render_sms(ended, language, shop), max_segments)


def test_the_budget_is_in_septets_for_gsm7_and_utf16_units_otherwise():
    assert sms_body_budget("en", SHOP) == 459 - 36
    assert sms_body_budget("en", SHOP, 1) == 160 - 36
    assert sms_body_budget("en", SHOP, 3, gsm7=False) == 201 - 36
    assert sms_body_budget("zh", SHOP) == sms_body_budget("zh", SHOP, gsm7=False) == 201 - 18
    assert sms_body_budget("en", "小店") == 201 - 27  # a shop name outside GSM-7 makes it UCS-2


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: render_sms("Sale", "fr", SHOP), "language"),
        (lambda: render_sms("Sale", "en", "  "), "shop_name"),
        (lambda: render_sms("  ", "en", SHOP), "body"),
        (lambda: render_sms("Reply STOP to opt out", "en", SHOP), "body"),
        (lambda: sms_body_budget("en", ""), "shop_name"),
        (lambda: sms_body_budget("en", "S" * 200, 1), "shop_name"),
        (lambda: sms_body_budget("en", SHOP, 0), "max_segments"),
    ],
)
def test_sms_arguments_that_cannot_make_a_message_name_their_field(call, field):
    with pytest.raises(InvalidArgument) as error:
        call()
    assert error.value.field == field


# --- e-mail ------------------------------------------------------------------------------------

VOID = {"meta", "br", "img", "hr", "link", "input"}


class Document(HTMLParser):
    """Checks tags nest and close; keeps what the tests look at."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict]] = []
        self.problems: list[str] = []
        self.doctype = ""
        self.first_in_body: tuple[str, dict] | None = None
        self.elements: list[tuple[str, dict, list[str]]] = []  # (tag, attrs, text parts)
        self.feed(html)
        self.close()
        if self.stack:
            self.problems.append(f"never closed: {[t for t, _ in self.stack]}")

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.stack and self.stack[-1][0] == "body" and self.first_in_body is None:
            self.first_in_body = (tag, attrs)
        if tag in VOID:
            self.elements.append((tag, attrs, []))
            return
        self.stack.append((tag, attrs))
        self.elements.append((tag, attrs, []))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), []))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        open_tags = [id(attrs) for _, attrs in self.stack]
        for tag, attrs, parts in self.elements:
            if id(attrs) in open_tags:
                parts.append(data)

    def texts(self, tag: str) -> list[str]:
        return ["".join(parts) for t, _, parts in self.elements if t == tag]

    def find(self, tag: str) -> list[tuple[dict, str]]:
        return [(attrs, "".join(parts)) for t, attrs, parts in self.elements if t == tag]


PARAGRAPHS = [f"Your {TITLE} is back in stock.", "Only £2.95 — it goes with <Pink Lantern> & more."]
ITEM_URL = "https://shop.example/items/85123A?utm_source=email&utm_medium=copy"
UNSUBSCRIBE_URL = "https://shop.example/unsubscribe?u=42&t=abc"


def email(**changes) -> EmailMessage:
    args = dict(
        subject=f"{TITLE} is back",
        preheader="Back & better, while stocks last",
        paragraphs=PARAGRAPHS,
        call_to_action="Shop now",
        item_url=ITEM_URL,
        unsubscribe_url=UNSUBSCRIBE_URL,
        unsubscribe_mailto="unsubscribe@shop.example",
        language="en",
        shop_name="Tailor & Sons",
    )
    args.update(changes)
    return render_email(**args)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_email_html_is_a_well_formed_document_in_the_copy_language(language):
    message = email(language=language)
    doc = Document(message.html)
    assert doc.problems == []
    assert doc.doctype.lower() == "doctype html"
    assert doc.find("html")[0][0]["lang"] == language
    assert {"charset": "utf-8"} in [attrs for attrs, _ in doc.find("meta")]
    assert doc.texts("title") == [f"{TITLE} is back"]
    assert "<style" not in message.html and "<script" not in message.html


def test_every_text_is_html_escaped():
    message = email()
    assert 'Tea &amp; &quot;Cake&quot; Set &lt;Deluxe&gt;' in message.html
    assert TITLE not in message.html and "<Pink Lantern>" not in message.html
    assert "Tailor &amp; Sons" in message.html
    assert "utm_source=email&amp;utm_medium=copy" in message.html
    assert Document(message.html).texts("title") == [f"{TITLE} is back"]


def test_the_preheader_is_the_hidden_first_element_of_the_body():
    doc = Document(email().html)
    tag, attrs = doc.first_in_body
    style = attrs["style"].replace(" ", "")
    assert tag == "div"
    assert "display:none" in style and "max-height:0" in style and "overflow:hidden" in style
    hidden = next(text for a, text in doc.find("div") if a is attrs)
    assert hidden.startswith("Back & better, while stocks last")


def test_no_hidden_element_without_a_preheader():
    doc = Document(email(preheader="").html)
    assert "display:none" not in doc.first_in_body[1].get("style", "")


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_paragraph_is_a_p_in_the_html_and_a_paragraph_in_the_text(language):
    message = email(language=language)
    assert Document(message.html).texts("p")[: len(PARAGRAPHS)] == PARAGRAPHS
    assert message.text.split("\n\n")[: len(PARAGRAPHS)] == PARAGRAPHS


def test_the_call_to_action_is_a_button_to_the_item_in_html_and_a_url_in_the_text():
    message = email()
    links = Document(message.html).find("a")
    assert (links[0][0]["href"], links[0][1]) == (ITEM_URL, "Shop now")
    assert "display:inline-block" in links[0][0]["style"]
    assert f"Shop now: {ITEM_URL}" in message.text


@pytest.mark.parametrize(
    "language, footer, link, text_line",
    [
        (
            "en",
            "You receive this because you subscribed to Tailor & Sons e-mails. Unsubscribe",
            "Unsubscribe",
            "You receive this because you subscribed to Tailor & Sons e-mails. Unsubscribe: "
            "https://shop.example/unsubscribe?u=42&t=abc",
        ),
        (
            "zh",
            "您收到此邮件是因为您订阅了Tailor & Sons的邮件。退订",
            "退订",
            "您收到此邮件是因为您订阅了Tailor & Sons的邮件。退订：https://shop.example/unsubscribe?u=42&t=abc",
        ),
    ],
)
def test_the_unsubscribe_footer_is_in_the_copy_language_in_html_and_text(language, footer, link, text_line):
    message = email(language=language, call_to_action="Shop now" if language == "en" else "立即查看")
    doc = Document(message.html)
    assert doc.texts("p")[-1] == footer
    attrs, text = doc.find("a")[-1]
    assert (attrs["href"], text) == (UNSUBSCRIBE_URL, link)
    assert message.text.rstrip("\n").split("\n\n")[-1] == text_line


def test_the_headers_offer_one_click_unsubscribe_per_rfc_8058():
    assert email().headers == {
        "List-Unsubscribe": "<https://shop.example/unsubscribe?u=42&t=abc>, <mailto:unsubscribe@shop.example>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert email(unsubscribe_mailto="mailto:stop@shop.example").headers["List-Unsubscribe"].endswith(
        "<mailto:stop@shop.example>"
    )
    assert email(unsubscribe_mailto="").headers["List-Unsubscribe"] == "<https://shop.example/unsubscribe?u=42&t=abc>"


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/unsubscribe",
        "mailto:unsubscribe@shop.example",
        "ftp://shop.example/u",
        "//shop.example/u",
        "https://",
        "",
        "https://shop.example/u\r\nBcc: someone@else.example",
    ],
)
def test_an_unsubscribe_url_that_is_not_https_is_refused_naming_the_field(url):
    with pytest.raises(InvalidArgument) as error:
        email(unsubscribe_url=url)
    assert error.value.field == "unsubscribe_url"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"item_url": "javascript:alert(1)"}, "item_url"),
        ({"unsubscribe_mailto": "not an address"}, "unsubscribe_mailto"),
        ({"subject": " "}, "subject"),
        ({"call_to_action": ""}, "call_to_action"),
        ({"shop_name": ""}, "shop_name"),
        ({"language": "fr"}, "language"),
    ],
)
def test_other_unusable_email_arguments_name_their_field(changes, field):
    with pytest.raises(InvalidArgument) as error:
        email(**changes)
    assert error.value.field == field


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [EMAIL_SUBJECT_MAX, EMAIL_PREHEADER_MAX, BANNER_HEADLINE_MAX, BANNER_LINE_MAX, PUSH_TITLE_MAX, PUSH_BODY_MAX],
)
def test_every_limit_is_set_for_every_language_and_zh_is_the_tighter(limits):
    assert set(limits) == set(LANGUAGES)
    assert 0 < limits["zh"] < limits["en"]
