"""What each channel sends, rendered from finished copy parts: SMS, e-mail, banner and push.

The copy says what to say; this module says how each channel carries it:

    SMS     render_sms: signature, body and opt-out as one message; sms_segments counts what
            the network bills (GSM 03.38 septets or UCS-2 units); sms_body_budget plans a body
    e-mail  render_email: an EmailMessage (HTML with a hidden preheader, its plain-text twin,
            and the RFC 8058 one-click unsubscribe headers)
    banner  Banner and its limits
    push    its limits

Pure Python: no Ray, no gRPC, and none of checks.py or templates.py (they may import this).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

from services.copywriting.text import one_line
from services.errors import InvalidArgument, excerpt

# --------------------------------------------------------------------------------------------
# SMS
# --------------------------------------------------------------------------------------------

# GSM 03.38 default alphabet: the basic table (one septet each; ESC, which only introduces an
# extension character, is left out), and the extension table (ESC + the character: two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

# Units in a message that is one segment, and in each segment of a concatenated message (whose
# user data header takes 6 octets: 7 septets of GSM-7, 3 UCS-2 characters).
SMS_GSM7_SEGMENT = 160
SMS_UCS2_SEGMENT = 70
SMS_GSM7_PART = 153
SMS_UCS2_PART = 67
SMS_MAX_SEGMENTS = 3

OPT_OUT = {"en": "Reply STOP to opt out", "zh": "回T退订"}
# Forms of the opt-out already at the end of a body (compared case-insensitively); render_sms
# drops them so the message carries the opt-out once, in the form above.
OPT_OUT_FORMS = {
    "en": ("reply stop to opt out", "reply stop to opt-out", "reply stop to unsubscribe", "text stop to opt out"),
    "zh": ("回t退订", "回td退订", "退订回t", "退订回td"),
}
LANGUAGES = tuple(OPT_OUT)

# A body that ends with one of these ends a sentence: the opt-out follows without a joiner.
_SENTENCE_END = {"en": ".!?…", "zh": "。！？!?.…"}
_CLOSERS = "\"'”’)]»」』）"  # a sentence may end inside quotes or brackets: 'Try "X."'
_SOFT_END = " ,;:-–—、，；："  # dropped before the joiner: no "Hurry,." or "快来，，"


def sms_encoding(text: str) -> str:
    """ "gsm7" when every character is in the GSM 03.38 alphabet, else "ucs2"."""
    return "gsm7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "ucs2"


def _sms_costs(text: str) -> tuple[list[int], int, int]:
    """The units of each character, and the units of a single and of a concatenated segment.

    A character's units never split across segments: a GSM-7 extension character (ESC + char)
    and a UCS-2 surrogate pair (an emoji) each go whole into the next segment, as handsets and
    gateways pack them.
    """
    if sms_encoding(text) == "gsm7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text], SMS_GSM7_SEGMENT, SMS_GSM7_PART
    return [2 if ord(c) > 0xFFFF else 1 for c in text], SMS_UCS2_SEGMENT, SMS_UCS2_PART


def sms_units(text: str) -> int:
    """GSM-7 septets (an extension character takes two), or for UCS-2 text, UTF-16 units."""
    return sum(_sms_costs(text)[0])


def sms_segments(text: str) -> int:
    """How many segments the network sends `text` as (an empty text is still one message).

    One if it fits a single segment (160 septets / 70 UCS-2 units), else packed 153 / 67 to a
    segment, a two-unit character never split: about ceil(units / 153) or ceil(units / 67).
    """
    costs, single, part = _sms_costs(text)
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments


def sms_fits(message: str, max_segments: int = SMS_MAX_SEGMENTS) -> bool:
    return sms_segments(message) <= max_segments


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise InvalidArgument("language", f"unknown language {language!r}; one of {', '.join(LANGUAGES)}")


def _signature(shop_name: str) -> str:
    shop = one_line(shop_name)
    if shop.startswith("【") and shop.endswith("】"):
        shop = shop[1:-1]
    return shop.rstrip(":：").strip()


def _strip_opt_out(body: str, language: str) -> str:
    tail = body.rstrip(" .!。！")
    for form in OPT_OUT_FORMS[language]:
        if tail[-len(form) :].casefold() == form:
            return tail[: -len(form)]
    return body


def _assemble(body: str, language: str, shop: str) -> str:
    """The message for a clean `body` (one line, no signature, no opt-out) and a clean `shop`."""
    body = body.rstrip(_SOFT_END)
    ended = not body or body.rstrip(_CLOSERS)[-1:] in tuple(_SENTENCE_END[language])
    if language == "zh":
        return f"【{shop}】{body}{'' if ended else '，'}{OPT_OUT['zh']}"
    return f"{shop}: {body}{' ' if ended else '. '}{OPT_OUT['en']}"


def render_sms(body: str, language: str, shop_name: str) -> str:
    """The SMS as sent: the shop's signature, the body and the opt-out, all counted.

        en  "{shop}: {body}. Reply STOP to opt out"   ("{shop}: {body} Reply ..." when the body
                                                     already ends with . ! ? or …)
        zh  "【{shop}】{body}，回T退订"                 ("【{shop}】{body}回T退订" when the body
                                                     already ends with 。！？!?.…)

    A trailing comma, colon or dash of the body is dropped before the joiner; a signature or an
    opt-out the body already carries is not repeated. Whitespace runs become one space.
    """
    _check_language(language)
    shop = _signature(shop_name)
    if not shop:
        raise InvalidArgument("shop_name", "an SMS must be signed with the shop's name; got an empty name")
    text = one_line(body)
    for prefix in (f"【{shop}】", f"{shop}:", f"{shop}："):
        if text.startswith(prefix):
            text = text[len(prefix) :].lstrip()
            break
    text = _strip_opt_out(text, language).rstrip(_SOFT_END)
    if not text:
        raise InvalidArgument("body", f"the SMS body is empty once signature and opt-out are removed: {excerpt(body)}")
    return _assemble(text, language, shop)


@functools.lru_cache(maxsize=256)
def sms_body_budget(language: str, shop_name: str, max_segments: int = SMS_MAX_SEGMENTS, gsm7: bool = True) -> int:
    """The most units a body may take for render_sms(body, language, shop_name) to fit
    `max_segments`.

    Units are GSM-7 septets when the whole message is GSM-7 (`gsm7`: the body is; the signature
    and the opt-out must be too, so never for zh), else UCS-2 units. The budget leaves room for
    the joiner a body without a full stop gets; a body that ends with its own has one unit spare.
    Exact for bodies of one-unit characters; a body with GSM extension characters (€ [ ] ...) or
    emoji in a message of several segments may lose one unit at each segment boundary, where a
    two-unit character is not split: check the rendered message with sms_fits.
    """
    _check_language(language)
    if max_segments < 1:
        raise InvalidArgument("max_segments", f"must be at least 1, got {max_segments}")
    shop = _signature(shop_name)
    if not shop:
        raise InvalidArgument("shop_name", "an SMS must be signed with the shop's name; got an empty name")
    filler = "x" if gsm7 else "中"  # one unit each, and no sentence end: the joiner counts

    def fits(n: int) -> bool:
        return sms_fits(_assemble(filler * n, language, shop), max_segments)

    if not fits(1):
        raise InvalidArgument(
            "shop_name", f"signature and opt-out alone leave no room in {max_segments} segment(s): {excerpt(shop)}"
        )
    low, high = 1, max_segments * SMS_GSM7_SEGMENT  # fits(low); not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


# --------------------------------------------------------------------------------------------
# E-mail
# --------------------------------------------------------------------------------------------

# Characters inboxes show before cutting: the subject in the list, the preheader after it.
EMAIL_SUBJECT_MAX = {"en": 60, "zh": 30}
EMAIL_PREHEADER_MAX = {"en": 90, "zh": 45}

# (why the reader gets the e-mail, the unsubscribe link's text)
_FOOTER = {
    "en": ("You receive this because you subscribed to {shop} e-mails.", "Unsubscribe"),
    "zh": ("您收到此邮件是因为您订阅了{shop}的邮件。", "退订"),
}
_FONTS = {
    "en": "Arial,Helvetica,sans-serif",
    "zh": "'PingFang SC','Hiragino Sans GB','Microsoft YaHei',Arial,sans-serif",
}
# After the preheader: invisible filler, so the inbox preview does not run on into the body.
_PREHEADER_FILLER = "&#847;&zwnj;&nbsp;" * 40


@dataclass(frozen=True)
class EmailMessage:
    subject: str
    preheader: str
    html: str
    text: str  # the text/plain twin: the same paragraphs, the call to action and unsubscribe URLs
    headers: dict[str, str]  # List-Unsubscribe and List-Unsubscribe-Post (RFC 2369, RFC 8058)


def _url(field: str, value: str, schemes: tuple[str, ...]) -> str:
    url = value.strip()
    if any(c.isspace() or c in '<>"' or ord(c) < 32 for c in url):
        raise InvalidArgument(field, f"a URL may not hold spaces, control characters, < > or \": {excerpt(value)}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes or not parts.netloc:
        raise InvalidArgument(field, f"must be an absolute {' or '.join(schemes)} URL, got {excerpt(value)}")
    return url


def _mailto(value: str) -> str:
    address = value.strip()
    if not address:
        return ""
    if not address.lower().startswith("mailto:"):
        address = "mailto:" + address
    if any(c.isspace() or c in '<>"' or ord(c) < 32 for c in address) or "@" not in address:
        raise InvalidArgument("unsubscribe_mailto", f"must be an e-mail address or a mailto: URI, got {excerpt(value)}")
    return address


def _required(field: str, value: str) -> str:
    text = one_line(value)
    if not text:
        raise InvalidArgument(field, "must not be empty")
    return text


def render_email(
    subject: str,
    preheader: str,
    paragraphs: list[str],
    call_to_action: str,
    item_url: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    language: str,
    shop_name: str,
) -> EmailMessage:
    """The e-mail as sent: a small HTML document, its plain-text twin, and its headers.

    HTML: `<html lang>`, UTF-8, inline styles only; the preheader first, hidden; each paragraph
    a <p>; the call to action a button linking to `item_url`; a footer in the copy's language
    saying why the reader gets it, with the unsubscribe link. Every text is HTML-escaped.
    `unsubscribe_url` must be https (one-click unsubscribe, RFC 8058); `unsubscribe_mailto`
    (an address or a mailto: URI) may be empty. Lengths are the caller's: EMAIL_SUBJECT_MAX,
    EMAIL_PREHEADER_MAX.
    """
    _check_language(language)
    subject = _required("subject", subject)
    call_to_action = _required("call_to_action", call_to_action)
    shop = _required("shop_name", shop_name)
    preheader = one_line(preheader)
    paragraphs = [p for p in (one_line(p) for p in paragraphs) if p]
    item_url = _url("item_url", item_url, ("https", "http"))
    unsubscribe_url = _url("unsubscribe_url", unsubscribe_url, ("https",))
    mailto = _mailto(unsubscribe_mailto)

    why, unsubscribe = _FOOTER[language]
    why = why.format(shop=shop)
    space = " " if language == "en" else ""
    colon = ": " if language == "en" else "："

    hidden = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;font-size:1px;line-height:1px;opacity:0;">'
        f"{escape(preheader)}{_PREHEADER_FILLER}</div>"
    )
    lines = [
        "<!DOCTYPE html>",
        f'<html lang="{language}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(subject)}</title>",
        "</head>",
        '<body style="margin:0;padding:0;background-color:#f4f4f4;">',
        *([hidden] if preheader else []),
        '<div style="max-width:600px;margin:0 auto;padding:24px;background-color:#ffffff;'
        f'font-family:{_FONTS[language]};font-size:16px;line-height:1.5;color:#222222;">',
        *(f'<p style="margin:0 0 16px;">{escape(p)}</p>' for p in paragraphs),
        f'<p style="margin:24px 0;"><a href="{escape(item_url)}" style="display:inline-block;padding:12px 24px;'
        'background-color:#1a73e8;color:#ffffff;text-decoration:none;border-radius:4px;font-weight:bold;">'
        f"{escape(call_to_action)}</a></p>",
        f'<p style="margin:32px 0 0;font-size:12px;line-height:1.4;color:#666666;">{escape(why)}{space}'
        f'<a href="{escape(unsubscribe_url)}" style="color:#666666;text-decoration:underline;">'
        f"{escape(unsubscribe)}</a></p>",
        "</div>",
        "</body>",
        "</html>",
    ]
    text = "\n\n".join(
        [*paragraphs, f"{call_to_action}{colon}{item_url}", f"{why}{space}{unsubscribe}{colon}{unsubscribe_url}"]
    )
    targets = [unsubscribe_url, *([mailto] if mailto else [])]
    headers = {
        "List-Unsubscribe": ", ".join(f"<{t}>" for t in targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return EmailMessage(
        subject=subject, preheader=preheader, html="\n".join(lines) + "\n", text=text + "\n", headers=headers
    )


# --------------------------------------------------------------------------------------------
# Banner and push
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Banner:
    """An in-app banner: a headline, one line under it, and a button."""

    headline: str
    line: str
    call_to_action: str


# A banner is one short heading over one or two lines on a phone-width card.
BANNER_HEADLINE_MAX = {"en": 30, "zh": 15}
BANNER_LINE_MAX = {"en": 90, "zh": 40}

# What a locked screen shows before it cuts with an ellipsis: about 40 characters of title on
# one line, and about two lines (~120 characters) of body in the collapsed notification on iOS
# and Android. A CJK character is about twice as wide, so zh gets half.
PUSH_TITLE_MAX = {"en": 40, "zh": 20}
PUSH_BODY_MAX = {"en": 120, "zh": 60}
