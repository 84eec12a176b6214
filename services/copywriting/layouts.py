"""Channel layouts: a copy is a template family's layout filled with facts and, in English, the
model's free words (the hook).

Families (the arms the feedback loop chooses among, with the tone):

    spotlight  the product and its price first, then the hook           (the default)
    story      the hook first, then the product
    offer      the promotion first (without one: the tone's opener first)

Every piece but the hook is written here from data: the product's display title, its price,
the promotion's terms, the event's name, the tone's opener, and in Chinese the category and a
tag from the shop's vocabulary (left out when it has none: no English word mid-sentence; the
product's own title stays as it is). `lay_out` tries the fullest form first and drops pieces
(opener, reason, tag, price) until the copy fits the channel and passes `check_copy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from services.copywriting.channels import EMAIL_PREHEADER_MAX, EmailMessage, render_email, render_sms, sms_segments
from services.copywriting.checks import banned_problems, check_copy
from services.copywriting.facts import CHANNELS, Copy, CopyFacts, channel_ellipsis
from services.copywriting.text import cut_candidates, display_title, display_width, format_price, has_cjk, nice_runs, percent_text
from services.copywriting.vocabulary import Vocabulary, has_latin

FAMILIES = ("spotlight", "story", "offer")
DEFAULT_FAMILY = "spotlight"
TONES = ("friendly", "grateful", "welcoming", "win-back", "inspiring", "exclusive", "value", "urgent")

OPENERS = {
    "en": {
        "friendly": "Hello!",
        "grateful": "Thank you for shopping with us.",
        "welcoming": "Welcome in!",
        "win-back": "We've missed you.",
        "inspiring": "Something new to try.",
        "exclusive": "Picked just for you.",
        "value": "Good value, picked for you.",
        "urgent": "Don't miss it.",
    },
    "zh": {
        "friendly": "您好！",
        "grateful": "感谢您一直以来的支持！",
        "welcoming": "欢迎光临！",
        "win-back": "好久不见，想您了！",
        "inspiring": "给生活添点新意。",
        "exclusive": "为您专属挑选。",
        "value": "实惠好物，为您挑选。",
        "urgent": "机会难得，别错过。",
    },
}
CTAS = {
    "en": {"spotlight": "Shop now", "story": "Take a look", "offer": "Get the offer"},
    "zh": {"spotlight": "立即查看", "story": "去看看", "offer": "立即抢购"},
}


@dataclass(frozen=True)
class Pieces:
    """Everything a layout may place, each "" when absent, in the copy's language."""

    name: str
    price: str
    hook: str  # the model's words (en only)
    opener: str
    promo: str  # the promotion's terms, in full
    promo_short: str  # the terms with the code, but without dates and the price after
    headline_offer: str  # a short offer line for a title ("20% off", "满100减20")
    promo_min: str  # the shortest statement: the first term and the code
    reason: str  # the recommendation's reason, as a sentence (en)
    tag: str  # zh: a sentence about a tag or category the vocabulary has


@dataclass(frozen=True)
class LaidOut:
    copy: Copy
    sms_segments: int = 0
    email: EmailMessage | None = None


def _money(value: float, facts: CopyFacts) -> str:
    return format_price(value, facts.currency)


def promotion_pieces(facts: CopyFacts, vocabulary: Vocabulary) -> tuple[str, str, str]:
    """(full terms, short terms, headline) of the promotion in the copy's language; "" without one."""
    promo, zh = facts.promotion, facts.language == "zh"
    if promo.is_empty:
        return "", "", ""
    event = facts.event_name or None
    # The operator's description only in the copy's own language and only if the policy allows it.
    desc = promo.description
    if not desc or (has_cjk(desc) != zh) or (zh and has_latin(desc)) or banned_problems(desc):
        desc = ""
    after = promo.price_after(facts.price)
    parts: list[str] = []
    if zh:
        if promo.percent_off:
            parts.append(f"立享{percent_text(promo.percent_off)}%折扣")
        if promo.amount_off:
            parts.append(f"立减{_money(promo.amount_off, facts)}")
        if promo.threshold_amount:
            parts.append(f"满{_money(promo.threshold_amount, facts)}减{_money(promo.threshold_reduction, facts)}")
        if promo.free_shipping:
            parts.append("全场包邮")
        code = f"优惠码{promo.code}" if promo.code else ""
        lead = "，".join(x for x in (event, desc) if x)
        short = "，".join(x for x in (lead, "，".join(parts), code) if x)
        full = short
        if after is not None:
            full += f"，到手价{_money(after, facts)}"
        if promo.ends:
            full += f"，截至{promo.ends}"
        if not full and promo.ends:
            full = short = f"活动截至{promo.ends}"
        headline = parts[0] if parts else (event or (f"优惠码{promo.code}" if promo.code else "限时优惠"))
        return (full.lstrip("，") + "。") if full else "", (short + "。") if short else "", headline
    if promo.percent_off:
        parts.append(f"{percent_text(promo.percent_off)}% off")
    if promo.amount_off:
        parts.append(f"{_money(promo.amount_off, facts)} off")
    if promo.threshold_amount:
        parts.append(f"{_money(promo.threshold_reduction, facts)} off orders of {_money(promo.threshold_amount, facts)} or more")
    if promo.free_shipping:
        parts.append("free delivery")
    terms = " and ".join(parts)
    lead = ": ".join(x for x in (event, desc) if x)
    short = ": ".join(x for x in (lead, terms) if x)
    if promo.code:
        short = f"{short} with code {promo.code}" if short else f"Use code {promo.code}"
    full = short
    if after is not None:
        full += f", making it {_money(after, facts)}"
    if promo.ends:
        full = f"{full} until {promo.ends}" if full else f"Offer ends {promo.ends}"
        short = short or full
    headline = parts[0] if parts else (event or (f"Code {promo.code}" if promo.code else "Offer"))
    cap = lambda s: s[0].upper() + s[1:] if s else s  # noqa: E731
    return cap(full) + ".", cap(short) + ".", cap(headline)


def _reason(facts: CopyFacts) -> str:
    reason = facts.reason.strip().rstrip(".。!！ ")
    if facts.language != "en" or not reason or has_cjk(reason) or len(reason) > 90:
        return ""
    reason = nice_runs(reason)
    return reason[0].upper() + reason[1:] + "."


def _tag(facts: CopyFacts, vocabulary: Vocabulary) -> str:
    """zh: "为喜欢{tag}的您挑选。" with the first interest (or the category) the vocabulary knows."""
    if facts.language != "zh":
        return ""
    for term in (*facts.interests, facts.category):
        zh = vocabulary.zh(term) if term else None
        if zh and not has_latin(zh):
            return f"为喜欢{zh}的您挑选。"
    return ""


def with_event_name(facts: CopyFacts, vocabulary: Vocabulary) -> CopyFacts:
    """The facts with the promotion's event named in the copy's language (or not at all)."""
    event = facts.promotion.event
    name = (vocabulary.event(event, facts.language) or "") if event else ""
    if facts.language == "zh" and has_latin(name):
        name = ""
    return facts if name == facts.event_name else dataclasses.replace(facts, event_name=name)


def pieces(facts: CopyFacts, hook: str, vocabulary: Vocabulary) -> Pieces:
    zh = facts.language == "zh"
    # A catalogue title may end in a full stop ("LUNCH BAG BLACK SKULL."): not before ", just".
    name = display_title(facts.title).rstrip(" .;,") or ("这款商品" if zh else "this item")
    price = _money(facts.price, facts) if facts.price is not None else ""
    full, short, headline = promotion_pieces(facts, vocabulary)
    opener = OPENERS[facts.language].get(facts.tone, "")
    code = facts.promotion.code
    if zh:
        minimal = (f"{headline}，优惠码{code}。" if code and headline != f"优惠码{code}" else f"{headline}。") if headline else ""
    else:
        minimal = (f"{headline} with code {code}." if code and headline != f"Code {code}" else f"{headline}.") if headline else ""
    return Pieces(name, price, "" if zh else hook, opener, full, short, headline, minimal, _reason(facts), _tag(facts, vocabulary))


def _product(p: Pieces, zh: bool, name: str) -> str:
    if not name:  # the title names the product: the body may give only the price
        return ("仅售" if zh else "Just ") + p.price + ("。" if zh else ".") if p.price else ""
    if zh:
        return f"{name}，仅售{p.price}。" if p.price else f"为您推荐{name}。"
    return f"{name}, just {p.price}." if p.price else f"Meet {name}."


def _join(parts: list[str], zh: bool) -> str:
    return ("" if zh else " ").join(x for x in parts if x)


def _names(p: Pieces, lang: str, ellipsis: str = "…") -> list[str]:
    """The full name, then cuts that keep at least half of it (a name is never cut to a stub)."""
    cuts = [c for c in cut_candidates(p.name, lang, ellipsis) if len(c) >= 0.5 * len(p.name)]
    return [p.name, *cuts[:6]]


def _bodies(p: Pieces, family: str, zh: bool, names: list[str]) -> Iterator[list[str]]:
    """Body part lists, fullest first; the promotion is never dropped, the hook only last."""
    for name in names:
        product = _product(p, zh, name)
        end = "" if name.endswith(("…", "...")) else ("。" if zh else ".")
        bare = (f"{name}{end}" if name else "") if p.price else product
        for opener, tag, prod in ((p.opener, p.tag, product), ("", p.tag, product), ("", "", product), ("", "", bare)):
            if family == "story":
                yield [opener, p.hook, tag, prod, p.promo or p.promo_short]
            elif family == "offer":
                yield [p.promo or opener, p.hook, tag, prod]
            else:
                yield [opener, prod, p.hook, tag, p.promo]
            if p.promo_short != p.promo:
                yield [opener, prod, p.hook, tag, p.promo_short]
        if p.promo_min:
            yield [p.hook, bare, p.promo_min] if family == "story" else [bare, p.hook, p.promo_min]


def _titles(p: Pieces, family: str, lang: str, limit: int) -> list[str]:
    zh = lang == "zh"
    shapes = [p.name]
    if family == "offer" and p.headline_offer:
        shapes.insert(0, f"{p.headline_offer}：{p.name}" if zh else f"{p.headline_offer}: {p.name}")
    fitting = [t for t in shapes if display_width(t) <= limit]
    fitting += [c for c in cut_candidates(p.name, lang, "…") if display_width(c) <= limit][:3]
    return fitting or [p.name[: max(1, limit - 1)] + "…"]


def lay_out(
    facts: CopyFacts,
    hook: str,
    family: str,
    vocabulary: Vocabulary,
    shop_name: str,
    links: dict[str, str],
    max_sms_segments: int = 3,
) -> LaidOut | None:
    """The copy in `family`'s layout for facts.channel, the fullest that fits and passes every
    check; None when nothing with this hook does (the caller tries another hook, or none)."""
    lang, zh = facts.language, facts.language == "zh"
    spec = CHANNELS[facts.channel]
    facts = with_event_name(facts, vocabulary)
    p = pieces(facts, hook, vocabulary)
    names = _names(p, lang, channel_ellipsis(facts))
    cta = CTAS[lang][family]

    def passes(copy: Copy) -> bool:
        return not check_copy(copy, facts)

    if facts.channel == "sms":
        for parts in _bodies(p, family, zh, names):
            message = render_sms(_join(parts, zh), lang, shop_name)
            copy = Copy("", message, "")
            if sms_segments(message) <= max_sms_segments and passes(copy):
                return LaidOut(copy, sms_segments=sms_segments(message))
        return None

    if facts.channel == "email":
        subjects = _titles(p, family, lang, spec.title_limit(lang))
        for name in names:
            paragraphs = [x for x in (p.opener, _product(p, zh, name), p.hook, p.promo, p.reason, p.tag) if x]
            if family == "story":
                paragraphs = [x for x in (p.opener, p.hook, p.reason, _product(p, zh, name), p.promo, p.tag) if x]
            elif family == "offer" and p.promo:
                paragraphs = [x for x in (p.promo, p.hook, _product(p, zh, name), p.reason, p.tag) if x]
            for subject in subjects:
                copy = Copy(subject, "\n\n".join(paragraphs), cta)
                if passes(copy):
                    preheader = _preheader(p, lang)
                    email = render_email(
                        subject, preheader, paragraphs, cta, links["item_url"], links["unsubscribe_url"],
                        links["unsubscribe_mailto"], lang, shop_name,
                    )
                    return LaidOut(copy, email=email)
        return None

    # push and banner: a title (the banner's headline) and a body (its short line)
    title_max, body_max = spec.title_limit(lang), spec.body_limit(lang)
    titles = _titles(p, family, lang, title_max)
    # The body has the name whole, cut to at least half, or (the title naming it) not at all.
    for parts in _bodies(p, family, zh, [*names, ""]):
        body = _join(parts, zh)
        if not body or display_width(body) > body_max:
            continue
        for title in titles:
            copy = Copy(title, body, cta)
            if passes(copy):
                return LaidOut(copy)
    return None


def _preheader(p: Pieces, lang: str) -> str:
    limit = EMAIL_PREHEADER_MAX[lang]
    for text in (p.promo_short, p.hook, p.tag, p.reason, p.opener):
        if text and len(text) <= limit:
            return text
    return ""


def no_latin_outside(text: str, allowed: list[str]) -> bool:
    """zh: does `text`, with the allowed texts (title, code, signature) taken out, hold no Latin word?"""
    for a in sorted((a for a in allowed if a), key=len, reverse=True):
        text = text.replace(a, " ")
    return not has_latin(text)
