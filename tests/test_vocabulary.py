"""The shop's bilingual vocabulary (services/copywriting/vocabulary.py) and the shipped demo file."""

from __future__ import annotations

import textwrap

import pytest

from services.copywriting.vocabulary import VOCABULARY_FILE, Event, Vocabulary, latin_words

SHOP = Vocabulary(
    {"tote bag": "托特包", "Lunch Bag": "午餐包", "doily": "蕾丝花边", "box": "收纳盒", "glass": "玻璃制品"},
    [
        Event("black_friday", "Black Friday", "黑色星期五", ("黑五",)),
        Event("singles_day", "Singles' Day", "双11", ("双十一",)),
        Event("618", "618 Shopping Festival", "618年中大促"),
    ],
)


def write(tmp_path, text: str, name: str = "vocabulary.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shipped() -> Vocabulary:
    return Vocabulary.load(VOCABULARY_FILE)


# ---- terms ----


@pytest.mark.parametrize("term", ["tote bag", "Tote Bag", "TOTE BAG", "  tote \t bag ", "tote bags", "Tote Bags"])
def test_a_term_is_found_whatever_its_case_spacing_or_number(term):
    assert SHOP.zh(term) == "托特包"


@pytest.mark.parametrize(
    ("term", "zh"),
    [("doilies", "蕾丝花边"), ("boxes", "收纳盒"), ("glasses", "玻璃制品"), ("lunch bags", "午餐包"), ("lunch bag", "午餐包")],
)
def test_plurals_find_their_singular(term, zh):
    assert SHOP.zh(term) == zh


@pytest.mark.parametrize("term", ["toast", "tote", "bag", "", "   ", "charlotte"])
def test_a_term_the_vocabulary_lacks_is_none(term):
    assert SHOP.zh(term) is None


@pytest.mark.parametrize("term", ["烘焙", "  圣诞 装饰 ", "双11"])
def test_a_term_already_in_chinese_is_returned_as_it_is(term):
    assert SHOP.zh(term) == " ".join(term.split())


def test_a_term_mixing_chinese_and_english_is_not_passed_through():
    assert Vocabulary().zh("toast面包") is None


def test_merged_adds_terms_and_the_configured_ones_win():
    merged = SHOP.merged({"tote bag": "手提袋", "bowl · dish": "碗碟", "heart decoration": ""})
    assert merged.zh("Bowl · Dish") == "碗碟"
    assert merged.zh("tote bag") == "托特包"  # the shop's own choice
    assert merged.zh("heart decoration") is None  # no Chinese yet: left out
    assert SHOP.zh("bowl · dish") is None  # merged leaves the original as it was
    assert merged.event("black friday", "zh") == "黑色星期五"


def test_two_translations_of_one_term_are_refused():
    with pytest.raises(ValueError, match="two translations"):
        Vocabulary({"Tote Bag": "托特包", "tote bag": "手提袋"})


# ---- events ----


@pytest.mark.parametrize("name", ["black_friday", "Black Friday", "BLACK FRIDAY", "black-friday", "黑色星期五", "黑五"])
def test_an_event_is_found_by_its_key_either_name_or_an_alias(name):
    assert SHOP.event(name, "zh") == "黑色星期五"
    assert SHOP.event(name, "en") == "Black Friday"


@pytest.mark.parametrize("name", ["singles_day", "Singles' Day", "singles day", "Singles’ Day", "双11", "双１１", "双十一"])
def test_singles_day_is_found_however_it_is_written(name):
    assert SHOP.event(name, "zh") == "双11"


def test_an_event_key_that_yaml_would_read_as_a_number_is_text(tmp_path):
    path = write(tmp_path, '''\
        events:
          618: {en: 618 Shopping Festival, zh: 618年中大促}
        ''')
    assert Vocabulary.load(path).event("618", "zh") == "618年中大促"


def test_an_unknown_event_is_none_and_an_unknown_language_is_an_error():
    assert SHOP.event("Diwali", "zh") is None
    with pytest.raises(ValueError, match="language"):
        SHOP.event("black_friday", "fr")


# ---- loading ----


def test_no_file_is_an_empty_vocabulary():
    empty = Vocabulary.load(None)
    assert empty.zh("tote bag") is None and empty.event("christmas", "zh") is None
    assert empty.zh("烘焙") == "烘焙"


def test_an_empty_file_is_an_empty_vocabulary(tmp_path):
    assert not Vocabulary.load(write(tmp_path, "# nothing yet\n")).terms


def test_a_file_loads_terms_and_events(tmp_path):
    path = write(tmp_path, '''\
        terms:
          Tote Bag: 托特包
          no: 不  # a key YAML 1.1 would read as false stays text
        events:
          christmas: {en: Christmas, zh: 圣诞节, aliases: [Xmas]}
        ''')
    vocabulary = Vocabulary.load(path)
    assert vocabulary.zh("tote bags") == "托特包" and vocabulary.zh("no") == "不"
    assert vocabulary.event("xmas", "zh") == "圣诞节"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("terms:\n  tote bag: [托特包\n", "line 2"),  # yaml's own error, with its line
        ("terms:\n  tote bag: 托特包\n\tlunch bag: 午餐包\n", "line 3"),
        ("terms:\n  tote bag: 托特包\n  Tote Bag: 手提袋\n", "line 3: term 'Tote Bag' is listed twice (first on line 2)"),
        ("terms:\n  tote bag:\n", "line 2: the Chinese for 'tote bag' must be non-empty text"),
        ("terms:\n  tote bag: [托特包]\n", "line 2: the Chinese for 'tote bag' must be non-empty text"),
        ("terms: [tote bag]\n", "line 1: terms must be a mapping"),
        ("term:\n  tote bag: 托特包\n", "line 1: unknown section 'term'"),
        ("events:\n  xmas:\n    en: Christmas\n", "line 3: event 'xmas' has no zh name"),
        ("events:\n  xmas: {en: Christmas, zh: 圣诞节, when: Dec}\n", "unknown field 'when'"),
        ("events:\n  a: {en: Christmas, zh: 圣诞节}\n  b: {en: Xmas, zh: 圣诞节}\n", "share the name '圣诞节'"),
        ("- just\n- a list\n", "line 1: the file must be a mapping"),
    ],
)
def test_a_bad_file_is_a_value_error_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = write(tmp_path, text, name="shop_vocabulary.yaml")
    with pytest.raises(ValueError) as caught:
        Vocabulary.load(path)
    message = str(caught.value)
    assert str(path) in message and problem in message, message


def test_a_missing_file_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="missing.yaml"):
        Vocabulary.load(tmp_path / "missing.yaml")


# ---- the shipped demo file ----


def test_the_shipped_file_loads_with_hundreds_of_terms_and_the_named_events(shipped):
    assert len(shipped.terms) >= 300
    expected = {
        "black_friday": "黑色星期五", "singles_day": "双11", "double_12": "双12", "christmas": "圣诞节",
        "chinese_new_year": "春节", "mid_autumn": "中秋节", "valentines": "情人节", "618": "618年中大促",
        "new_year": "新年", "mothers_day": "母亲节", "fathers_day": "父亲节", "cyber_monday": "网络星期一",
    }  # fmt: skip
    assert {key: shipped.event(key, "zh") for key in expected} == expected
    assert shipped.event("Singles' Day", "en") == "Singles' Day"


def test_every_chinese_value_in_the_shipped_file_has_no_latin_letters(shipped):
    bad = {en: zh for en, zh in shipped.terms.items() if latin_words(zh)}
    assert not bad
    # the derived category names ("a · b") are in it, each with Chinese
    joined = [en for en in shipped.terms if " · " in en]
    assert len(joined) >= 15 and all(shipped.zh(en) for en in joined)


@pytest.mark.parametrize(
    ("term", "zh"),
    [("lunch bag", "午餐包"), ("Tote Bags", "托特包"), ("christmas", "圣诞"), ("hearts", "爱心"), ("doilies", "蕾丝花边")],
)
def test_the_shipped_file_translates_the_shops_common_terms(shipped, term, zh):
    assert shipped.zh(term) == zh


# ---- latin_words ----


def test_latin_words_finds_english_left_in_chinese():
    assert latin_words("您喜欢toast，这款值得一看") == ["toast"]
    assert latin_words("您喜欢烘焙") == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Singles' Day 来了", ["Singles", "Day"]),
        ("T-shirt 与 3D 贴纸，500g", ["T-shirt", "3D", "500g"]),
        ("全场 8 折，仅需 ¥20", []),
        ("ｔｏａｓｔ面包", ["ｔｏａｓｔ"]),
        ("café 风格", ["café"]),
    ],
)
def test_latin_words_reads_words_with_digits_hyphens_and_accents(text, words):
    assert latin_words(text) == words
