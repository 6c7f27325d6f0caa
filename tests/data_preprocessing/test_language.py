"""Language detection with CLD2 and the keep/skip/repeated-digits filter."""

from __future__ import annotations

import pycld2
import pytest

from camel_chat.data_preprocessing import language
from camel_chat.data_preprocessing.language import (
    conversation_text,
    detect_language,
    filter_language,
)
from camel_chat.data_preprocessing.tally import Tally

ENGLISH = "The quick brown fox jumps over the lazy dog. This sentence is written in plain English."
FRENCH = "Bonjour, je voudrais réserver une table pour deux personnes ce soir, s'il vous plaît."
CHINESE = "我想学习如何用Python编写一个简单的网络爬虫程序，请给我一些建议。"
KOREAN = "안녕하세요. 오늘 날씨가 정말 좋네요. 산책하러 가고 싶어요."


def conv(rid: str, *values: str) -> dict:
    roles = ("human", "gpt")
    return {
        "id": rid,
        "conversations": [{"from": roles[i % 2], "value": v} for i, v in enumerate(values)],
    }


@pytest.mark.parametrize(("text", "code"), [(ENGLISH, "en"), (FRENCH, "fr"), (CHINESE, "zh"), (KOREAN, "ko")])
def test_detect_language(text, code):
    assert detect_language(text) == code


@pytest.mark.parametrize("text", ["", "12345 67890", "!!! ???"])
def test_undetectable_text_is_unknown(text):
    assert detect_language(text) == "unknown"


def test_short_text_falls_back_to_best_effort():
    # Too short for a reliable strict pass; the best-effort pass decides, as polyglot did.
    assert pycld2.detect("bonjour")[0] is False
    assert detect_language("bonjour") == "fr"


def test_control_characters_surrogates_and_noncharacters_do_not_make_text_unknown():
    noisy = ENGLISH + "\x00\x01\x7f\x85\ufffe\U0010ffff\ud83d"
    with pytest.raises(pycld2.error):
        pycld2.detect(noisy.encode("utf-8", "surrogatepass"))
    assert detect_language(noisy) == "en"


def test_cld2_error_is_unknown(monkeypatch):
    def fail(*args, **kwargs):
        raise pycld2.error("input contains invalid UTF-8")

    monkeypatch.setattr(language.pycld2, "detect", fail)
    assert detect_language(ENGLISH) == "unknown"


def test_conversation_text_joins_values_with_newlines():
    assert conversation_text(conv("x", "a", "b", "c")) == "a\nb\nc"


def test_keep_english_drops_other_languages_by_code():
    records = [
        conv("en", ENGLISH, ENGLISH),
        conv("fr", FRENCH, FRENCH),
        conv("zh", CHINESE, CHINESE),
        conv("ko", KOREAN, KOREAN),
        conv("num", "12345", "67890"),
    ]
    tally = Tally("language")
    kept = filter_language(records, tally)
    assert kept == [records[0]]
    assert tally.kept == 1
    assert dict(tally.dropped) == {
        "language-fr": 1,
        "language-zh": 1,
        "language-ko": 1,
        "language-unknown": 1,
    }
    assert tally.examples["language-unknown"] == ["num"]


def test_mostly_english_conversation_is_english():
    record = conv("mix", ENGLISH + " " + ENGLISH, "Merci.")
    assert filter_language([record], Tally("language")) == [record]


def test_keep_all_keeps_everything_without_detecting(monkeypatch):
    def boom(text: str) -> str:
        raise AssertionError("detection must not run")

    monkeypatch.setattr(language, "detect_language", boom)
    records = [conv("fr", FRENCH, FRENCH), conv("num", "1", "2")]
    tally = Tally("language")
    assert filter_language(records, tally, keep_lang="all") == records
    assert (tally.kept, tally.total_dropped) == (2, 0)


def test_skip_lang_drops_only_that_language():
    records = [conv("en", ENGLISH, ENGLISH), conv("ko", KOREAN, KOREAN), conv("fr", FRENCH, FRENCH)]
    tally = Tally("language")
    kept = filter_language(records, tally, keep_lang="all", skip_lang="ko")
    assert [r["id"] for r in kept] == ["en", "fr"]
    assert dict(tally.dropped) == {"language-ko": 1}


def test_reduce_rep_drops_nine_repeated_digits_only():
    records = [
        conv("nine", ENGLISH, "Call 555555555 now."),
        conv("eight", ENGLISH, "Call 55555555 now."),
        conv("mixed", ENGLISH, "Call 123456789 now."),
    ]
    tally = Tally("language")
    kept = filter_language(records, tally, reduce_rep=True)
    assert [r["id"] for r in kept] == ["eight", "mixed"]
    assert dict(tally.dropped) == {"repeated-digits": 1}
    # Off by default, as in camel_chat.
    assert len(filter_language(records, Tally("language"))) == 3


def test_language_is_checked_before_repeated_digits():
    tally = Tally("language")
    filter_language([conv("fr", FRENCH, "000000000")], tally, reduce_rep=True)
    assert dict(tally.dropped) == {"language-fr": 1}
