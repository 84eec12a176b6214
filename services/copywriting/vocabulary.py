"""A shop's bilingual vocabulary: the Chinese for its category names, interest tags and events.

Chinese copy names a category, a tag or an event only in Chinese: through this vocabulary, or
not at all (a raw English word mid-sentence does not read as Chinese). The product's own title
is a fact and is not looked up here.

    terms   en → zh; "Tote Bags", "tote  bag" and "tote bag" are one term (case, spacing, and a
            plural or singular last word)
    events  a named promotion event: key → {en, zh, aliases}; looked up by the key, either
            name or an alias ("black_friday", "Black Friday", "黑色星期五")

The file is read with yaml.compose, not safe_load, so keys stay text ("618", "no"), a term or
event listed twice is reported rather than silently overwritten, and every problem names its
line. `latin_words` is the helper for the "no stray English in Chinese" check.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

import yaml

from services.errors import excerpt

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.yaml")  # the demo shop's
EVENT_LANGUAGES = ("en", "zh")

# Same ranges as text.CJK_RE; kept here so this module imports nothing from the package.
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Latin letters: ASCII, Latin-1 and Latin Extended-A/B (less × and ÷), and full-width ASCII.
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\uff21-\uff3a\uff41-\uff5a"
_LATIN_RE = re.compile(f"[{_LATIN}]")
# A word: letters and digits joined by inner apostrophes or hyphens, holding at least one letter
# ("toast", "Singles'", "T-shirt", "3D", "500g").
_LATIN_WORD_RE = re.compile(
    rf"(?<![{_LATIN}0-9])[0-9]*[{_LATIN}](?:[{_LATIN}0-9]|['’\-](?=[{_LATIN}0-9]))*"
)
_DOT_RE = re.compile(r"\s*[·・•]\s*")
_EVENT_SEPARATORS_RE = re.compile(r"[\s_\-]+")
_NULL_TAG = "tag:yaml.org,2002:null"


def latin_words(text: str) -> list[str]:
    """The words in Latin letters in `text`, in order ("您喜欢toast，这款值得一看" → ["toast"])."""
    return _LATIN_WORD_RE.findall(text)


def has_latin(text: str) -> bool:
    return bool(_LATIN_RE.search(text))


def _is_chinese(text: str) -> bool:
    return bool(_CJK_RE.search(text)) and not has_latin(text)


def _clean(text: str) -> str:
    """One line, single spaces, " · " between the parts of a joined name."""
    return _DOT_RE.sub(" · ", " ".join(unicodedata.normalize("NFKC", str(text)).split())).strip()


def term_key(term: str) -> str:
    """The form terms are matched on: NFKC, case-folded, whitespace collapsed."""
    return _clean(term).casefold()


def _event_key(name: str) -> str:
    """Events also ignore apostrophes and treat "_", "-" and spaces alike ("Singles' Day")."""
    return _EVENT_SEPARATORS_RE.sub(" ", term_key(name).replace("'", "").replace("’", "")).strip()


def _number_variants(word: str) -> list[str]:
    """Singular and plural guesses for one English word, most likely first."""
    if len(word) < 3 or not word.isalpha():
        return []
    if word.endswith("ies") and len(word) > 4:
        return [word[:-3] + "y", word[:-1]]
    if word.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return [word[:-2], word[:-1]]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return [word[:-1]]
    if word.endswith("y") and word[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    if word.endswith(("ch", "sh", "ss", "x", "z")):
        return [word + "es"]
    return [word + "s"]


def _key_variants(key: str) -> list[str]:
    """`key` itself, then with its last word (of each " · " part) in the other number."""
    parts = key.split(" · ")
    variants = [key]
    for i, part in enumerate(parts):
        head, _, last = part.rpartition(" ")
        for other in _number_variants(last):
            changed = parts[:i] + [f"{head} {other}" if head else other] + parts[i + 1 :]
            variants.append(" · ".join(changed))
    return variants


@dataclasses.dataclass(frozen=True)
class Event:
    """A named promotion event: its key, its name in each language, and other names for it."""

    key: str
    en: str
    zh: str
    aliases: tuple[str, ...] = ()

    def name(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class Vocabulary:
    """The Chinese for a shop's terms and events; empty when the shop configured none.

    `terms` maps English (any case; stored by `term_key`) to Chinese. Two spellings of one term
    with different Chinese, or two events sharing a name, are a ValueError.
    """

    def __init__(self, terms: Mapping[str, str] | None = None, events: Iterable[Event] = ()):
        table: dict[str, str] = {}
        for en, zh in (terms or {}).items():
            if not isinstance(en, str) or not isinstance(zh, str) or not _clean(en) or not _clean(zh):
                raise ValueError(f"term {excerpt(en)}: both the term and its Chinese must be non-empty text")
            key, value = term_key(en), _clean(zh)
            if table.get(key, value) != value:
                raise ValueError(f"term {excerpt(en)} has two translations: {table[key]!r} and {value!r}")
            table[key] = value
        self._terms = MappingProxyType(table)

        self._events = tuple(events)
        index: dict[str, Event] = {}
        for event in self._events:
            for name in (event.key, event.en, event.zh, *event.aliases):
                key = _event_key(name)
                if not key:
                    raise ValueError(f"event {event.key!r}: a name is empty")
                if index.get(key, event) is not event:
                    raise ValueError(f"events {index[key].key!r} and {event.key!r} share the name {name!r}")
                index[key] = event
        self._event_index = MappingProxyType(index)

    @property
    def terms(self) -> Mapping[str, str]:
        """English term (as `term_key` writes it) → Chinese."""
        return self._terms

    @property
    def events(self) -> tuple[Event, ...]:
        return self._events

    def __repr__(self) -> str:
        return f"Vocabulary({len(self._terms)} terms, {len(self._events)} events)"

    @classmethod
    def load(cls, path: Path | None) -> Vocabulary:
        """The vocabulary in a YAML file (sections `terms` and `events`); None → an empty one.

        Anything wrong with the file is a ValueError that names it and, where known, the line.
        """
        if path is None:
            return cls()
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the vocabulary file: {exc}") from exc
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
        try:
            terms, events = _sections(root)
            return cls(terms, events)
        except _NodeError as exc:
            raise ValueError(f"{path}, line {exc.line}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def zh(self, term: str) -> str | None:
        """The Chinese for `term`, or None when there is none (the caller then leaves it out).

        A term already in Chinese (CJK, no Latin letters) is returned as it is.
        """
        cleaned = _clean(term)
        if not cleaned:
            return None
        if _is_chinese(cleaned):
            return cleaned
        for key in _key_variants(cleaned.casefold()):
            if key in self._terms:
                return self._terms[key]
        return None

    def event(self, name: str, language: str) -> str | None:
        """The event's name in `language` ("en" or "zh"), found by its key, a name or an alias."""
        if language not in EVENT_LANGUAGES:
            raise ValueError(f"unknown language {language!r}; one of {', '.join(EVENT_LANGUAGES)}")
        found = self._event_index.get(_event_key(name))
        return found.name(language) if found else None

    def merged(self, other_terms: Mapping[str, str]) -> Vocabulary:
        """This vocabulary with `other_terms` added (e.g. the names of a build's derived categories).

        The configured terms win where both name a term: they are the shop's own choice. Empty
        values are skipped (a derived category with no Chinese name yet).
        """
        added: dict[str, str] = {}
        for en, zh in other_terms.items():
            if isinstance(en, str) and isinstance(zh, str) and _clean(en) and _clean(zh):
                added[term_key(en)] = zh
        return Vocabulary({**added, **self._terms}, self._events)


# --------------------------------------------------------------------------------------------
# Reading the YAML node tree


class _NodeError(ValueError):
    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.line = node.start_mark.line + 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """yaml's problem with its line, and what it was reading from where ("while parsing …")."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark, context, context_mark = (getattr(exc, a, None) for a in ("problem_mark", "context", "context_mark"))
    said = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
    if context and context_mark and (mark is None or context_mark.line != mark.line):
        said += f" ({context} that starts on line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        said += f" ({context})"
    return said


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _text(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or _is_null(node) or not node.value.strip():
        raise _NodeError(node, f"{what} must be non-empty text")
    return node.value.strip()


def _pairs(node: yaml.Node, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
    if _is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise _NodeError(node, f"{what} must be a mapping")
    return node.value


def _sections(root: yaml.Node | None) -> tuple[dict[str, str], list[Event]]:
    terms: dict[str, str] = {}
    events: list[Event] = []
    if root is None:
        return terms, events
    seen: dict[str, int] = {}
    for key_node, value_node in _pairs(root, "the file"):
        section = _text(key_node, "a section name")
        if section in seen:
            raise _NodeError(key_node, f"section {section!r} appears twice (first on line {seen[section]})")
        seen[section] = key_node.start_mark.line + 1
        if section == "terms":
            terms = _terms(value_node)
        elif section == "events":
            events = _events(value_node)
        else:
            raise _NodeError(key_node, f"unknown section {section!r}; the sections are 'terms' and 'events'")
    return terms, events


def _terms(node: yaml.Node) -> dict[str, str]:
    terms: dict[str, str] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in _pairs(node, "terms"):
        en = _text(key_node, "a term")
        key = term_key(en)
        if key in lines:
            raise _NodeError(key_node, f"term {en!r} is listed twice (first on line {lines[key]})")
        lines[key] = key_node.start_mark.line + 1
        terms[en] = _text(value_node, f"the Chinese for {en!r}")
    return terms


_EVENT_FIELDS = ("en", "zh", "aliases")


def _events(node: yaml.Node) -> list[Event]:
    events: list[Event] = []
    keys: set[str] = set()
    for key_node, value_node in _pairs(node, "events"):
        key = _text(key_node, "an event key")
        if key in keys:
            raise _NodeError(key_node, f"event {key!r} is listed twice")
        keys.add(key)
        fields: dict[str, yaml.Node] = {}
        for field_node, field_value in _pairs(value_node, f"event {key!r}"):
            field = _text(field_node, "a field name")
            if field not in _EVENT_FIELDS:
                known = ", ".join(_EVENT_FIELDS)
                raise _NodeError(field_node, f"event {key!r}: unknown field {field!r}; one of {known}")
            fields[field] = field_value
        missing = [f for f in ("en", "zh") if f not in fields]
        if missing:
            raise _NodeError(value_node, f"event {key!r} has no {' or '.join(missing)} name")
        aliases_node = fields.get("aliases")
        aliases: tuple[str, ...] = ()
        if aliases_node is not None and not _is_null(aliases_node):
            if not isinstance(aliases_node, yaml.SequenceNode):
                raise _NodeError(aliases_node, f"event {key!r}: aliases must be a list")
            aliases = tuple(_text(a, f"an alias of {key!r}") for a in aliases_node.value)
        en = _text(fields["en"], f"event {key!r}: en")
        events.append(Event(key, en, _text(fields["zh"], f"event {key!r}: zh"), aliases))
    return events
