"""The template fallback: `template_copy` writes copy from the facts alone, within the
channel's limits, in en or zh, passing every check of `finalize`.
"""

from __future__ import annotations

import hashlib
import re

from services.copywriting.checks import (
    balanced,
    banned_problems,
    check_copy,
    junk_problems,
    mentions_product,
    tail_phrases,
)
from services.copywriting.facts import CHANNELS, CTA, Copy, CopyFacts, add_opt_out, channel_ellipsis
from services.copywriting.prompt import prompt_text
from services.copywriting.text import (
    TRAILING,
    cut,
    cut_candidates,
    display_title,
    format_price,
    has_cjk,
    mostly_cjk,
    nice_runs,
    one_line,
    percent_text,
)


def _stable_choice(facts: CopyFacts, n: int) -> int:
    key = f"{facts.item_id}\x1f{facts.channel}\x1f{facts.language}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % n


def _interest(facts: CopyFacts) -> str:
    for tag in facts.interests:
        tag = one_line(tag)
        if not tag or len(tag) > 24 or not re.search(r"[^\W\d_]", tag):
            continue
        if facts.language == "en" and has_cjk(tag):
            continue
        return tag.lower() if facts.language == "en" and tag.isupper() else tag
    return ""


def _reason(facts: CopyFacts) -> str:
    reason = one_line(facts.reason).rstrip(".。!！ ")
    if not reason or len(reason) > 90:
        return ""
    if facts.language == "zh":
        return reason if has_cjk(reason) else ""
    if has_cjk(reason):
        return ""
    reason = nice_runs(reason)
    return reason[0].upper() + reason[1:]


def _hooks(facts: CopyFacts, family: int) -> list[str]:
    tag, reason = _interest(facts), _reason(facts)
    if facts.language == "zh":
        by_tag = [f"您喜欢{tag}，这款值得一看。", f"因为您喜欢{tag}。", f"送给爱{tag}的您。"][family] if tag else ""
        by_reason = f"{reason}。" if reason else ""
    else:
        by_tag = [f"Picked for your love of {tag}.", f"Because you like {tag}.", f"A find for {tag} fans."][family] if tag else ""
        by_reason = f"{reason}." if reason else ""
    hooks = [by_reason, by_tag] if family % 2 == 0 else [by_tag, by_reason]
    return [h for h in hooks if h] + [""]


def _main_clause(lang: str, family: int, name: str, price: str) -> str:
    if lang == "zh":
        if name and price:
            return [f"{name}，仅需{price}。", f"为您推荐{name}，售价{price}。", f"{name}，现售{price}。"][family]
        if name:
            return [f"{name}，值得一看。", f"为您推荐{name}。", f"来看看{name}。"][family]
        if price:
            return [f"仅需{price}。", f"售价{price}。", f"只要{price}。"][family]
        return ""
    if name and price:
        return [f"{name}, just {price}.", f"{name} is {price}.", f"Take a look at {name}: {price}."][family]
    if name:
        return [f"{name}.", f"Meet {name}.", f"Take a look at {name}."][family]
    if price:
        return [f"Just {price}.", f"Only {price}.", f"Yours for {price}."][family]
    return ""


def _core_phrases(name: str, facts: CopyFacts, limit: int) -> list[str]:
    """Runs of whole words from inside the name that still name the product ("Cake Tins" of
    "Set of 3 Cake Tins Pantry Design"), longest first, within `limit`; only runs with
    nothing a check could trip on (digits, brackets, banned words), as they are not masked."""
    words = name.split()
    runs = set()
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            run = " ".join(words[i:j]).strip(TRAILING + ".")
            if len(run) > limit:
                break
            if run and not re.search(r"\d", run) and balanced(run) and mentions_product(run, facts):
                runs.add(run)
    clean = [r for r in runs if not junk_problems(r) and not banned_problems(r)]
    return sorted(clean, key=lambda r: (-len(r), r))


def _bare_clause(lang: str, name: str, price: str) -> str:
    """The product and its price, hardly anything else: for tight channels. (The Chinese
    needs a word of its own: the name may be English, and the body must read as Chinese.)"""
    if lang == "zh":
        if name and price:
            return f"{name}仅{price}。"
        return f"看看{name}。" if name else (f"仅{price}。" if price else "")
    return ", ".join(x for x in (name, price) if x) + "." if (name or price) else ""


def _promo_levels(facts: CopyFacts) -> list[str]:
    """Ways to state the promotion, fullest first; [""] without one. The code is always kept."""
    promo = facts.promotion
    if promo.is_empty:
        return [""]
    zh = facts.language == "zh"
    money = lambda v: format_price(v, facts.currency)  # noqa: E731
    pct = percent_text(promo.percent_off) if promo.percent_off else ""
    amount = money(promo.amount_off) if promo.amount_off else ""
    after = promo.price_after(facts.price)
    desc = prompt_text(promo.description, 60).rstrip(".。!！:：")
    # The operator's description leads only in the copy's language (it stays if it is the
    # only term the promotion has).
    desc_fits = has_cjk(desc) if zh else not mostly_cjk(desc)
    if zh:
        off = "".join([f"立享{pct}%折扣" if pct else "", ("再减" if pct else "立减") + amount if amount else ""])
        code = f"，优惠码{promo.code}" if promo.code else ""
        ends = f"，截至{promo.ends}" if promo.ends else ""
        now = f"，到手价{money(after)}" if after is not None else ""
        lead, end = (f"{desc}：" if desc and desc_fits else ""), "。"
        if off:
            cores = [off + code + ends + now, off + code + ends, off + code]
        elif code:
            cores = [f"使用优惠码{promo.code}{ends}", f"使用优惠码{promo.code}"]
        else:
            cores = [f"{desc}{ends}", desc] if desc else [ends.lstrip("，")]
            lead = ""
    else:
        off = " plus ".join(x for x in [f"{pct}% off" if pct else "", f"{amount} off" if amount else ""] if x)
        code = f" with code {promo.code}" if promo.code else ""
        ends = f" until {promo.ends}" if promo.ends else ""
        now = f", making it {money(after)}" if after is not None else ""
        lead, end = (f"{desc}: " if desc and desc_fits else ""), "."
        if off:
            cores = [off + code + ends + now, off + code + ends, off + code]
        elif code:
            cores = [f"Use code {promo.code}{ends}", f"Use code {promo.code}"]
        else:
            cores = [f"{desc}{ends}", desc] if desc else [f"Offer ends {promo.ends}"]
            lead = ""
    levels = [lead + cores[0] + end] if lead else []
    levels += [c + end for c in cores if c]
    return list(dict.fromkeys(levels))


def _join(parts: list[str], lang: str) -> str:
    text = ("" if lang == "zh" else " ").join(p for p in parts if p)
    return re.sub(r"(…|\.\.\.)[.。]", r"\1", text)  # "…Tablets..." not "…Tablets...."


def template_copy(facts: CopyFacts) -> Copy:
    """Copy written from the facts alone, within the channel's limits, in en or zh.

    Deterministic: the phrasing (one of three families) is chosen by a stable hash of item id,
    channel and language. Parts are dropped (hook, promotion details) or the product name cut
    until the copy fits; the result passes every check of `finalize`.
    """
    spec, lang = CHANNELS[facts.channel], facts.language
    family = _stable_choice(facts, 3)
    ellipsis = channel_ellipsis(facts)
    name = display_title(facts.title) or ("这款商品" if lang == "zh" else "this item")
    price = format_price(facts.price, facts.currency) if facts.price is not None else ""
    cta = CTA[lang][family] if spec.cta_limit(lang) else ""

    titles = [""]
    title_max = spec.title_limit(lang)
    if title_max:
        if lang == "zh":
            shapes = [[name], [f"为您精选：{name}", name], [f"{name} {price}" if price else name, name]][family]
        else:
            shapes = [[name], [f"For you: {name}", name], [f"{name}, {price}" if price else name, name]][family]
        titles = [t for t in dict.fromkeys(shapes) if len(t) <= title_max]
        cuts = [c for c in cut_candidates(name, lang, "…") if len(c) <= title_max]
        # Short titles that still name the product first: a cut ("White Hanging Heart…"), else
        # the name's last words ("Bullet Bin"), only then a cut that names nothing ("Pink/White…").
        naming = [c for c in cuts if mentions_product(c, facts)][:2]
        tails = [t for t in tail_phrases(facts) if len(t) <= title_max and mentions_product(t, facts)][:1]
        titles += naming + tails + _core_phrases(name, facts, title_max)[:1] + [c for c in cuts if c not in naming][:1]
        if not titles:
            titles = [cut(name, lambda s: len(s) <= title_max, lang, "…")]

    cuts = cut_candidates(name, lang, ellipsis)[:40]
    if spec.opt_out:
        names = [name] + cuts  # the body is all there is: it must name the product
    else:  # the title names the product: rather no name in the body than a stub of one
        long_cuts = [c for c in cuts if len(c) >= 0.6 * len(name)]
        names = [name] + long_cuts + [""] + [c for c in cuts if c not in long_cuts]
    hooks = _hooks(facts, family)
    promos = _promo_levels(facts)
    inline_cta = ""
    if spec.opt_out:
        inline_cta = f"{CTA[lang][family]}{'。' if lang == 'zh' else '.'}"

    def bodies():
        for n in names:
            for main in dict.fromkeys([_main_clause(lang, family, n, price), _bare_clause(lang, n, price)]):
                for promo in promos:
                    for hook in hooks:
                        parts = [hook, main, promo] if family == 1 else [main, promo, hook]
                        for extra in ([inline_cta, ""] if inline_cta else [""]):
                            body = _join(parts + [extra], lang)
                            if body:
                                yield add_opt_out(body, lang) if spec.opt_out else body

    def plain_bodies():
        for promo in (promos[-1], ""):
            for n in names:
                body = _join([_bare_clause(lang, n, price), promo], lang)
                if body:
                    yield add_opt_out(body, lang) if spec.opt_out else body

    for candidates in (bodies, plain_bodies):
        for title in titles:
            for body in candidates():
                copy = Copy(title, body, cta)
                if spec.body_fits(body, lang) and not check_copy(copy, facts):
                    return copy
    # Nothing passed (a product name of nothing but junk, say): the product's name, cut to fit.
    finish = (lambda s: add_opt_out(s, lang)) if spec.opt_out else (lambda s: s)
    short = cut(name, lambda s: spec.body_fits(finish(_bare_clause(lang, s, "")), lang), lang, ellipsis)
    return Copy(titles[0], finish(_bare_clause(lang, short, "")), cta)
