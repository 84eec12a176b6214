"""`finalize`: the engine's raw JSON text to a CopyOutcome.

`finalize` parses the model's JSON and checks it; the outcome says which copy it returns:

- "model":    the model's copy as generated (only surrounding whitespace trimmed);
- "repaired": the model's copy with mechanical fixes of form: cut to the channel's length at a
              word boundary (zh: at a character) with an ellipsis, a word broken off by the
              decoder's maxLength dropped, the SMS opt-out suffix added, an unusable call to
              action (empty, cut off, junk, not an action) replaced by the default one, extra
              spaces / line breaks removed;
- "template": what the title and body say is unusable (no output, invalid JSON, empty fields,
              banned absolute terms, prices / percentages / discount claims / codes / numbers
              that the facts do not back, not about this product, placeholders or prompt
              echoes, wrong language), so `template_copy` writes the copy from the same facts.
              Content is never repaired: taking words out of a tiny model's sentence does not
              make it true.

`problems` says why, in short phrases. The model is small (SmolLM2-135M): "template" is an
ordinary answer, and the checks lean to rejecting.
"""

from __future__ import annotations

import dataclasses
import json
import re

from services.copywriting.checks import check_copy, content_problems, cta_problem, cut_off
from services.copywriting.facts import (
    CHANNELS,
    DEFAULT_CTA,
    OPT_OUT_FORMS,
    Copy,
    CopyFacts,
    CopyOutcome,
    add_opt_out,
    channel_ellipsis,
    has_opt_out,
)
from services.copywriting.prompt import schema_body_max
from services.copywriting.templates import template_copy
from services.copywriting.text import cut, cut_candidates, one_line

_TO_GSM7 = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "\u00a0": " "})


def _split_opt_out(body: str, language: str) -> tuple[str, bool]:
    """(body without a trailing opt-out suffix, whether it had one)."""
    if not has_opt_out(body, language):
        return body, False
    stripped = body.rstrip(" .!。！")
    low = stripped.casefold()
    for form in OPT_OUT_FORMS[language]:
        if low.endswith(form):
            return stripped[: len(stripped) - len(form)].rstrip(" ,，"), True
    return body, False  # pragma: no cover - has_opt_out said it ends with one


def _repair(copy: Copy, facts: CopyFacts) -> tuple[Copy, list[str]]:
    """Mechanical fixes of form (never of content): whitespace, lengths, CTA, SMS suffix."""
    spec, lang = CHANNELS[facts.channel], facts.language
    ellipsis = channel_ellipsis(facts)
    notes: list[str] = []
    title, cta = one_line(copy.title), one_line(copy.call_to_action)
    if spec.name == "email":
        body = "\n".join(" ".join(line.split()) for line in copy.body.strip().splitlines()).strip()
        body = re.sub(r"\n{3,}", "\n\n", body)
    else:
        body = one_line(copy.body)
    if (title, body, cta) != (copy.title, copy.body, copy.call_to_action):
        notes.append("extra spaces or line breaks removed")

    title_max, cta_max = spec.title_limit(lang), spec.cta_limit(lang)
    # A field that fills its maxLength and ends in a letter was stopped mid-word by the
    # constrained decoder ("White Hanging Heart T-Light Ho"): drop the broken word.
    if title_max and cut_off(title, title_max, facts):
        notes.append("title cut off mid-word at the length limit: last word dropped")
        title = (cut_candidates(title, lang, "…") or [title])[0]
    body_max = schema_body_max(spec, lang)
    if cut_off(_split_opt_out(body, lang)[0] if spec.opt_out else body, body_max, facts):
        notes.append("body cut off mid-word at the length limit: last word dropped")
        body = (cut_candidates(body, lang, ellipsis) or [body])[0]

    if title_max == 0 and title:
        notes.append(f"title dropped: {spec.name} has no title")
        title = ""
    elif len(title) > title_max:
        notes.append(f"title too long ({len(title)} > {title_max} characters): cut")
        title = cut(title, lambda s: len(s) <= title_max, lang, ellipsis)

    if cta_max == 0:
        if cta:
            notes.append(f"call to action dropped: {spec.name} has none")
            cta = ""
    else:
        why = cta_problem(cta, facts)
        if why:  # a button label is not worth the whole copy: the standard one stands in
            notes.append(f"call to action {why}: default used")
            cta = DEFAULT_CTA[lang]

    if spec.opt_out:
        if lang == "en":
            gsm = body.translate(_TO_GSM7)
            if gsm != body:
                notes.append("characters outside the SMS alphabet replaced")
                body = gsm
        core, had = _split_opt_out(body, lang)
        if not had:
            notes.append("opt-out suffix added")
        if not (had and spec.body_fits(body, lang)):
            fitted = cut(core, lambda s: spec.body_fits(add_opt_out(s, lang), lang), lang, ellipsis)
            if fitted != core:
                full = body if had else add_opt_out(core, lang)
                notes.append(
                    f"body too long for one SMS ({spec.body_length(full)} > {spec.body_capacity(full, lang)}): cut"
                )
            body = add_opt_out(fitted, lang)
    elif not spec.body_fits(body, lang):
        limit = spec.body_limit(lang)
        notes.append(f"body too long ({len(body)} > {limit} characters): cut")
        body = cut(body, lambda s: len(s) <= limit, lang, ellipsis)
    return Copy(title, body, cta), notes


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _parse(raw: str | None, facts: CopyFacts) -> tuple[Copy | None, list[str]]:
    """The model's copy (surrounding whitespace trimmed) and what is structurally wrong with it."""
    if raw is None:
        return None, ["no output from the engine"]
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return None, ["invalid JSON"]
    if not isinstance(data, dict):
        return None, ["invalid JSON: not an object"]
    problems = []
    fields = {}
    for name in ("title", "body", "call_to_action"):
        value = data.get(name)
        if name not in data:
            problems.append(f"missing field '{name}'")
            value = ""
        elif not isinstance(value, str):
            problems.append(f"field '{name}' is not a string")
            value = ""
        fields[name] = value.strip()
    copy = Copy(fields["title"], fields["body"], fields["call_to_action"])
    spec = CHANNELS[facts.channel]
    if spec.title_limit(facts.language) and not copy.title and "missing field 'title'" not in problems:
        problems.append("title empty")
    if not re.search(r"\w", copy.body) and "missing field 'body'" not in problems:
        problems.append("body empty")
    return copy, problems


def finalize(raw: str | None, facts: CopyFacts) -> CopyOutcome:
    """Check the engine's text for `facts`; return it, a repaired version, or the template.

    `raw` is the engine's JSON text, or None when the engine failed or timed out. Problems
    with what the title and body say (banned terms, facts, junk, language, another product)
    lead to the template; problems of form (length, a word broken off at maxLength, SMS
    suffix, whitespace) are repaired, and so is the call to action, a button label that the
    default one replaces. Never raises for anything in `raw`.
    """
    copy, problems = _parse(raw, facts)
    if copy is not None and not problems:
        problems = content_problems(dataclasses.replace(copy, call_to_action=""), facts)
    if copy is None or problems:
        return CopyOutcome(template_copy(facts), "template", _dedupe(problems))
    repaired, notes = _repair(copy, facts)
    after = check_copy(repaired, facts)
    if after:  # a cut removed what made it right (e.g. the product's name): the template stands in
        return CopyOutcome(template_copy(facts), "template", _dedupe(notes + after))
    return CopyOutcome(repaired, "repaired" if notes else "model", _dedupe(notes))
