"""What is wrong with a copy for its facts: `check_copy`.

Content: placeholders or prompt echoes, banned absolute terms, prices / percentages / discount
claims / codes / numbers that the facts do not back, not about this product, wrong language.
Form: lengths, empty parts, the SMS opt-out suffix. The model is small (SmolLM2-135M): the
checks lean to rejecting.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import yaml

from services.copywriting.facts import CHANNELS, Copy, CopyFacts, has_opt_out
from services.copywriting.text import (
    CENT,
    CJK_RE,
    MASK,
    UPPER_RUN_RE,
    cents,
    display_title,
    display_width,
    format_price,
    has_cjk,
    is_cjk_or_punct,
    mostly_cjk,
    one_line,
    percent_text,
)

# Placeholders, markup, prompt echoes and other junk (compared case-insensitively).
_JUNK = (
    "[", "]", "{", "}", "<", ">", "\\", "`", "@", "http", "www.", "title:", "body:", "price:",
    "product:", "promotion:", "limits:", "tone:", "call_to_action", "cta:", "json",
    "company name", "product name", "brand name", "your name", "customer name", "lorem ipsum",
    "placeholder", "n/a", "null", "undefined",
    # the prompt's own labels and instructions echoed back
    "shopper likes", "shopper type", "recently bought", "why this product", "write in english",
    "write in simplified", "at most", "opt-out text", "do not mention", "no promotion", "not given",
)

# Absolute terms of advertising law, in both languages: the shop's policy, one data file.
BANNED_TERMS_FILE = Path(__file__).with_name("banned_terms.yaml")


def banned_terms_pattern(path: Path = BANNED_TERMS_FILE) -> re.Pattern:
    """One pattern of the policy's terms: Chinese ones anywhere, English ones as whole words."""
    terms = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    english = [f"(?<![A-Za-z0-9]){term}(?![A-Za-z0-9])" for term in terms.get("en", [])]
    return re.compile("|".join(english + list(terms.get("zh", []))), re.IGNORECASE)


_BANNED_RE = banned_terms_pattern()

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_PRE = r"US\$|HK\$|A\$|C\$|\$|£|€|¥|￥|(?<![A-Za-z])(?:GBP|USD|EUR|CNY|RMB|JPY)(?![A-Za-z])"
_SUF = (
    r"\s?(?:GBP|USD|EUR|CNY|RMB|JPY)(?![A-Za-z])|\s?(?:元|块钱|块|英镑|美元|欧元|£|\$|€|¥|￥)"
    r"|\s(?:pounds?|dollars?|euros?|quid|pence)(?![A-Za-z])|p(?![A-Za-z])"
)
_MONEY_RE = re.compile(
    rf"(?P<pre>{_PRE})\s?(?P<a>{_NUM})"
    rf"|(?<![\d.,])(?P<b>{_NUM})(?P<suf>{_SUF})"
    rf"|(?<![\d.,])(?P<c>\d{{1,3}}(?:,\d{{3}})+\.\d{{1,2}}|\d+\.\d{{1,2}})(?!\.?\d|\s?(?:%|％|percent|per cent|折))",
    re.IGNORECASE,
)
_CURRENCY_OF = {
    "£": {"GBP"}, "gbp": {"GBP"}, "pound": {"GBP"}, "pounds": {"GBP"}, "quid": {"GBP"}, "pence": {"GBP"},
    "p": {"GBP"}, "英镑": {"GBP"},
    "$": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD"}, "us$": {"USD"}, "hk$": {"HKD"}, "a$": {"AUD"},
    "c$": {"CAD"}, "usd": {"USD"}, "dollar": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD"},
    "dollars": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD"}, "美元": {"USD"},
    "€": {"EUR"}, "eur": {"EUR"}, "euro": {"EUR"}, "euros": {"EUR"}, "欧元": {"EUR"},
    "¥": {"CNY", "JPY"}, "￥": {"CNY", "JPY"}, "cny": {"CNY"}, "rmb": {"CNY"}, "元": {"CNY"}, "块": {"CNY"},
    "块钱": {"CNY"}, "jpy": {"JPY"},
}
_PERCENT_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?(?:%|％|percent(?![A-Za-z])|per cent(?![A-Za-z]))", re.IGNORECASE)
_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZHE_RE = re.compile(r"(?<![\d.])(\d(?:\.\d)?|[一二两三四五六七八九]{1,2})\s?折(?![叠])")
_CLAIM_EN_RE = re.compile(
    r"(?<![-A-Za-z])(?:on sale|sale|discount\w*|save|saving\w*|coupon\w*|voucher\w*|promo\w*|clearance|"
    r"half[- ]price|reduced|markdown|special offer|deals?|bargain\w*)(?![-A-Za-z])|\d\s?off(?![A-Za-z])",
    re.IGNORECASE,
)
_CLAIM_ZH_RE = re.compile(r"打折|折扣|优惠|促销|特价|特惠|立减|满减|秒杀|降价|半价|清仓|让利|限时|大促|折起")
_FREE_RE = re.compile(r"(?<![-A-Za-z])free(?![-A-Za-z])|免费|包邮|赠品|赠送|买一送一|免单", re.IGNORECASE)
_CODE_KEY_RE = re.compile(
    r"(?<![A-Za-z])(?:promo\s?code|discount\s?code|coupon\s?code|voucher\s?code|code|coupon|voucher)(?![A-Za-z])"
    r"[\s:：#'\"“‘]*([A-Za-z0-9][A-Za-z0-9_-]{2,})",
    re.IGNORECASE,
)
_CODE_KEY_ZH_RE = re.compile(r"(?:优惠码|折扣码|兑换码|券码|口令)[\s:：#'\"“‘]*([A-Za-z0-9][A-Za-z0-9_-]{2,})")
_CODE_SHAPE_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2,}\d{1,4}[A-Z0-9]*(?![A-Za-z0-9])")
_CURRENCY_CODE_AMOUNT_RE = re.compile(r"(?:GBP|USD|EUR|CNY|RMB|JPY)\d+", re.IGNORECASE)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _product_names(facts: CopyFacts) -> list[str]:
    names = {one_line(facts.title), display_title(facts.title), facts.brand}
    return sorted((n for n in names if len(n) >= 2), key=len, reverse=True)


@functools.lru_cache(maxsize=4096)
def _flexible(text: str) -> re.Pattern:
    return re.compile(r"\s+".join(re.escape(w) for w in text.split()), re.IGNORECASE)


def balanced(text: str) -> bool:
    return text.count('"') % 2 == 0 and all(text.count(a) == text.count(b) for a, b in ("()", "[]", "“”"))


def tail_phrases(facts: CopyFacts) -> list[str]:
    """The name's last words, two or more (catalogue names end in the product: "…Cake Tins")."""
    words = display_title(facts.title).split()
    phrases = [" ".join(words[-k:]).lstrip("-–,;:/&+ ") for k in range(len(words) - 1, 1, -1)]
    return [p for p in dict.fromkeys(phrases) if len(p) >= 5 and balanced(p)]


def _mask(text: str, facts: CopyFacts) -> str:
    """`text` with the product's own name (whole, or cut with an ellipsis) replaced by MASK.

    The name is a given fact: a number, a bracket or a word such as "best" inside it
    ("BEST DAD CANDLE LETTERS", "GARLAND, MAGIC GARDEN 1.8M") is not the copy's claim.
    """
    for name in _product_names(facts):
        text = _flexible(name).sub(MASK, text)
    for phrase in tail_phrases(facts):  # "Bullet Bin" of "PINK/WHITE "KEEP CLEAN" BULLET BIN"
        text = _flexible(phrase).sub(MASK, text)
    # A name cut short ("White Hanging Heart…"): the longest run of text before an ellipsis
    # that is a prefix of a name.
    targets = [_norm(n) for n in _product_names(facts)]
    for ellipsis in ("…", "..."):
        pos = text.find(ellipsis)
        while pos != -1:
            head = text[:pos].rstrip()
            best = None
            longest = max((len(t) for t in targets), default=0)
            for start in range(max(0, len(head) - longest - 8), len(head) - 2):
                before = head[start - 1] if start else " "
                if not (before.isspace() or before == MASK or is_cjk_or_punct(before) or is_cjk_or_punct(head[start])):
                    continue  # not at the start of a word
                piece = _norm(head[start:])
                if len(piece) >= 3 and any(t.startswith(piece) for t in targets):
                    best = start
                    break
            if best is not None:
                text = text[:best] + MASK + text[pos + len(ellipsis) :]
                pos = text.find(ellipsis, best + 1)
            else:
                pos = text.find(ellipsis, pos + len(ellipsis))
    return text


def junk_problems(masked: str) -> list[str]:
    low = masked.casefold()
    found = [j for j in _JUNK if j in low]
    if re.search(r"(?<![A-Za-z])(?:xxx+|tbd|todo)(?![A-Za-z])", low):
        found.append("xxx/tbd")
    return ["placeholder or junk text: " + ", ".join(f"'{j}'" for j in found)] if found else []


def _repetitive(masked: str) -> bool:
    """A word three times running, a phrase three times, or a character six times running."""
    low = masked.casefold()
    words = re.findall(r"\w+", low)
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return bool(
        re.search(r"(.)\1{5,}", low)
        or any(trigrams.count(t) >= 3 for t in set(trigrams))
        or any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    )


def banned_problems(masked: str) -> list[str]:
    seen: list[str] = []
    for m in _BANNED_RE.finditer(masked):
        term = m.group(0)
        if term.casefold() not in (s.casefold() for s in seen):
            seen.append(term)
    return [f"banned term '{t}'" for t in seen]


def _money_values(text: str) -> list[tuple[Decimal, str | None, str]]:
    """(amount, currency marker or None, text as written) for each money amount in `text`."""
    out = []
    for m in _MONEY_RE.finditer(text):
        if m.group("a"):
            number, marker = m.group("a"), m.group("pre")
        elif m.group("b"):
            number, marker = m.group("b"), m.group("suf").strip()
        else:
            number, marker = m.group("c"), None
        value = Decimal(number.replace(",", ""))
        if marker is not None and marker.casefold() in ("p", "pence"):
            value = value / 100
        out.append((value, marker, m.group(0).strip()))
    return out


def _percent_values(text: str) -> list[tuple[Decimal, str]]:
    """(percent off, text as written): "20%", "20 percent", and Chinese 折 ("8折" = 20% off)."""
    out = [(Decimal(m.group(1)), m.group(0)) for m in _PERCENT_RE.finditer(text)]
    for m in _ZHE_RE.finditer(text):
        digits = m.group(1)
        if digits[0] in _ZH_DIGITS:
            tenths = Decimal(_ZH_DIGITS[digits[0]]) + (Decimal(_ZH_DIGITS[digits[1]]) / 10 if len(digits) > 1 else 0)
        else:
            tenths = Decimal(digits)
        out.append((Decimal(100) - tenths * 10, m.group(0)))
    if "半价" in text:
        out.append((Decimal(50), "半价"))
    return out


def _money(value: Decimal | float) -> str:
    return f"{Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)}"


def _fact_texts(facts: CopyFacts) -> list[str]:
    promo = facts.promotion
    return [
        facts.title, facts.category, facts.brand, facts.reason, *facts.recent_titles, *facts.interests,
        promo.code, promo.ends, promo.description, percent_text(promo.percent_off), percent_text(promo.amount_off),
        percent_text(promo.threshold_amount), percent_text(promo.threshold_reduction), promo.event, facts.event_name,
    ]


def _fact_problems(text: str, facts: CopyFacts) -> list[str]:
    """Prices, percentages, discount claims and promotion codes against the facts."""
    promo = facts.promotion
    problems: list[str] = []

    # Promotion codes.
    codes = [m.group(1) for m in _CODE_KEY_RE.finditer(text) if any(c.isdigit() for c in m.group(1)) or m.group(1).isupper()]
    codes += [m.group(1) for m in _CODE_KEY_ZH_RE.finditer(text)]
    codes += [  # code-shaped words ("SAVE10"), not "MP3" or "GBP3"
        m.group(0)
        for m in _CODE_SHAPE_RE.finditer(text)
        if len(m.group(0)) >= 5 and not _CURRENCY_CODE_AMOUNT_RE.fullmatch(m.group(0))
    ]
    for code in dict.fromkeys(codes):
        if promo.code and code.casefold() == promo.code.casefold():
            continue
        if promo.code:
            problems.append(f"promotion code '{code}' does not match '{promo.code}'")
        else:
            problems.append(f"promotion code '{code}' but the promotion has no code")

    # Numbers: the promotion's own code and end date are not amounts.
    for given in (promo.code, promo.ends):
        if given:
            text = _flexible(given).sub(" ", text)
    description = promo.description

    allowed: list[Decimal] = []
    price = cents(facts.price) if facts.price is not None else None
    after = promo.price_after(facts.price)
    if price is not None:
        allowed.append(price)
    if after is not None:
        allowed += [cents(after), price - cents(after)]
    if promo.amount_off:
        allowed.append(cents(promo.amount_off))
    if promo.threshold_amount:
        allowed += [cents(promo.threshold_amount), cents(promo.threshold_reduction)]
    allowed += [v for v, _, _ in _money_values(description)]
    wrong = 0
    for value, marker, written in _money_values(text):
        if marker is not None and facts.currency:
            currencies = _CURRENCY_OF.get(marker.casefold(), set())
            if currencies and facts.currency not in currencies:
                problems.append(f"currency '{marker}' in '{written}' does not match {facts.currency}")
        if any(abs(value - a) < Decimal("0.005") for a in allowed):
            continue
        wrong += 1
        if wrong > 3:
            continue
        if price is None:
            problems.append(f"price {_money(value)} mentioned but the item has no price")
        elif after is not None:
            problems.append(
                f"price {_money(value)} does not match item price {_money(price)} or promotion price {_money(after)}"
            )
        else:
            problems.append(f"price {_money(value)} does not match item price {_money(price)}")

    if wrong > 3:
        problems.append(f"{wrong - 3} more amounts that match no price")
    allowed_pct = [Decimal(str(promo.percent_off))] if promo.percent_off else []
    allowed_pct += [v for v, _ in _percent_values(description)]
    for value, written in _percent_values(text):
        if any(abs(value - a) < Decimal("0.005") for a in allowed_pct):
            continue
        shown = f"{written} ({percent_text(float(value))}% off)" if "折" in written or "半" in written else written
        if promo.is_empty:
            problems.append(f"percentage {shown} but there is no promotion")
        elif promo.percent_off:
            problems.append(f"percentage {shown} does not match promotion {percent_text(promo.percent_off)}% off")
        else:
            problems.append(f"percentage {shown} but the promotion has no percentage off")

    # Any other number (a year, a size, a count) must come from the facts.
    rest = _CODE_SHAPE_RE.sub(" ", _ZHE_RE.sub(" ", _PERCENT_RE.sub(" ", _MONEY_RE.sub(" ", text))))
    known = set(re.findall(r"\d+", " ".join(_fact_texts(facts))))
    for number in dict.fromkeys(re.findall(r"\d+", rest)):
        if number not in known:
            problems.append(f"number {number} is not in the facts")

    if promo.is_empty:
        for m in list(_CLAIM_EN_RE.finditer(text)) + list(_CLAIM_ZH_RE.finditer(text)) + list(_FREE_RE.finditer(text)):
            problems.append(f"discount claim '{m.group(0)}' but there is no promotion")
    elif not (promo.free_shipping or _FREE_RE.search(description)):
        for m in _FREE_RE.finditer(text):
            problems.append(f"'{m.group(0)}' claim is not part of the promotion")
    return problems


_STOPWORDS = frozenset(
    "the and for with from set pack of in on to a an by your you our this that its it new assorted "
    "small large medium mini big jumbo tiny little design designs style styles colour color colours colors "
    "piece pieces pcs box".split()
)
_WEAK = frozenset(
    "white black red pink blue green yellow orange purple grey gray brown gold silver cream ivory "
    "natural clear vintage retro".split()
)


def _stem(word: str) -> str:
    w = word.casefold().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'")
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


@functools.lru_cache(maxsize=4096)
def _name_keys(title: str) -> tuple[frozenset[str], frozenset[str]]:
    """(significant words, stemmed; CJK bigrams) of a product name."""
    title = one_line(title)
    words = [_stem(w) for w in re.findall(r"[A-Za-z][A-Za-z'’]*", title)]
    words = [w for w in words if len(w) >= 3 and w not in _STOPWORDS]
    strong = [w for w in words if w not in _WEAK]
    keys = set(strong or words)
    if not keys:
        keys = {w.casefold() for w in re.findall(r"[A-Za-z0-9]{2,}", title)}
    cjk = "".join(CJK_RE.findall(title))
    grams = {cjk[i : i + 2] for i in range(len(cjk) - 1)} or set(cjk)
    return frozenset(keys), frozenset(grams)


def _text_words(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'’]*", text)}


def _names(text: str, title: str, exclude: frozenset[str] = frozenset()) -> bool:
    """Does `text` name the product called `title`: two of its significant words (one if it
    has only one), or two of its CJK bigrams? `exclude`: words that do not count."""
    keys, grams = _name_keys(title)
    keys = keys - exclude
    if not keys and not grams:
        return False
    found = len(keys & _text_words(text)) + sum(1 for g in grams if g in text)
    return found >= min(2, len(keys) + len(grams))


def mentions_product(text: str, facts: CopyFacts) -> bool:
    """Does `text` name the product (see _names), or its brand?"""
    if facts.brand and _flexible(facts.brand).search(text):
        return True
    keys, grams = _name_keys(facts.title)
    if not keys and not grams:
        return True  # nothing to look for (an empty title)
    return _names(text, facts.title)


def _other_products(facts: CopyFacts) -> list[str]:
    """Names of other products the facts carry: recent purchases, catalogue titles in the reason."""
    in_reason = [m.group(0) for m in UPPER_RUN_RE.finditer(facts.reason) if len(re.findall(r"[A-Za-z]{2,}", m.group(0))) >= 2]
    return list(dict.fromkeys([*facts.recent_titles, *in_reason]))


def _about_another_product(body: str, facts: CopyFacts) -> str:
    """The other product `body` names while not naming this one, or ""."""
    if mentions_product(body, facts):
        return ""
    ours = _name_keys(facts.title)[0]
    for other in _other_products(facts):
        if _names(body, other, exclude=ours):
            return display_title(other)
    return ""


_SIGNATURE_RE = re.compile(r"【[^】]{1,24}】")


def stray_latin_words(masked: str, facts: CopyFacts) -> list[str]:
    """Latin words in Chinese copy outside the product's name, the code, the shop's signature
    and the currency code: Chinese copy reads as Chinese."""
    text = re.sub(r"回T退订|回TD退订|退订回TD?", " ", _SIGNATURE_RE.sub(" ", masked))
    for given in (facts.promotion.code, facts.currency, facts.brand):
        if given:
            text = _flexible(given).sub(" ", text)
    return list(dict.fromkeys(re.findall(r"[A-Za-z]+(?:['’-][A-Za-z]+)*", text)))


def _language_problems(masked_body: str, language: str) -> list[str]:
    if language == "zh" and not has_cjk(masked_body):
        return ["language: Chinese requested but the body has no Chinese"]
    if language == "en" and mostly_cjk(masked_body):
        return ["language: English requested but the body is mostly Chinese"]
    return []


def content_problems(copy: Copy, facts: CopyFacts) -> list[str]:
    """Everything about what the copy says (not its length): junk, banned terms, facts, language."""
    fields = [x for x in (copy.title, copy.body, copy.call_to_action) if x]
    masked = _mask("\n".join(fields), facts)
    problems = junk_problems(masked)
    if any(_repetitive(_mask(x, facts)) for x in fields):
        problems.append("repetitive text")
    problems += banned_problems(masked) + _fact_problems(masked, facts)
    if not mentions_product(f"{copy.title}\n{copy.body}", facts):
        problems.append("copy does not mention the product")
    other = _about_another_product(copy.body, facts)
    if other:
        problems.append(f"body is about another product ('{other}')")
    bare_body, bare_title = (_norm(re.sub(r"[^\w\s]", " ", x)) for x in (copy.body, copy.title))
    if copy.title and bare_body and bare_body in bare_title:
        problems.append("body only repeats the title")
    problems += _language_problems(_mask(copy.body, facts), facts.language)
    if facts.language == "zh":
        latin = stray_latin_words(masked, facts)
        if latin:
            problems.append(f"English words in Chinese copy: {', '.join(latin[:3])}")
    return problems


def _limit_problems(copy: Copy, facts: CopyFacts) -> list[str]:
    """Everything about form: lengths, empty parts, the SMS opt-out suffix."""
    spec, lang = CHANNELS[facts.channel], facts.language
    problems = []
    title_max, cta_max = spec.title_limit(lang), spec.cta_limit(lang)
    if display_width(copy.title) > title_max:
        problems.append(f"title too long ({display_width(copy.title)} > {title_max} columns)")
    if title_max and not copy.title.strip():
        problems.append("title empty")
    if spec.body_problem(copy.body, lang):
        problems.append(spec.body_problem(copy.body, lang))
    if not re.search(r"\w", copy.body):
        problems.append("body empty")
    if display_width(copy.call_to_action) > cta_max:
        problems.append(f"call to action too long ({display_width(copy.call_to_action)} > {cta_max} columns)")
    if cta_max and not copy.call_to_action.strip():
        problems.append("call to action empty")
    if spec.opt_out and not has_opt_out(copy.body, lang):
        problems.append("opt-out suffix missing")
    return problems


def check_copy(copy: Copy, facts: CopyFacts) -> list[str]:
    """Every problem of `copy` for its facts (empty: ready to send)."""
    return content_problems(copy, facts) + _limit_problems(copy, facts)
