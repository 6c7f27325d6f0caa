"""ShareGPT cleaning: the HTML→markdown routine, per-sample drop reasons and deduplication."""

from __future__ import annotations

import copy

import pytest
from bs4.builder import ParserRejectedMarkup

from camel_chat.data_preprocessing import sharegpt
from camel_chat.data_preprocessing.sharegpt import (
    BLOCKED_WORDS,
    clean_sample,
    clean_sharegpt,
    html_to_markdown,
)
from camel_chat.data_preprocessing.tally import Tally

# What a ChatGPT answer with a code block looked like in the crawl.
CHATGPT_CODE_HTML = (
    '<div class="markdown prose w-full break-words dark:prose-invert light">'
    "<p>Here is <strong>code</strong> for my_var:</p>"
    '<pre><div class="bg-black mb-4 rounded-md">'
    '<div class="flex items-center relative text-gray-200 bg-gray-800 px-4 py-2">'
    '<span class="">python</span>'
    '<button class="flex ml-auto gap-2"><svg stroke="currentColor"><path d="M16 4h2"></path>'
    "</svg>Copy code</button></div>"
    '<div class="p-4 overflow-y-auto"><code class="!whitespace-pre hljs language-python">'
    '<span class="hljs-keyword">def</span> <span class="hljs-title function_">f</span>'
    '(<span class="hljs-params">x_y</span>):\n'
    '    <span class="hljs-keyword">return</span> x_y * 2\n'
    "</code></div></div></pre>"
    "<h2>Notes</h2><ol><li>one</li><li>two</li></ol></div>"
)


def turn(role: str, value: str) -> dict:
    return {"from": role, "value": value}


def record(rid: str, *values: str, roles: tuple[str, ...] | None = None, **extra) -> dict:
    roles = roles or tuple("human" if i % 2 == 0 else "gpt" for i in range(len(values)))
    turns = [turn(r, v) for r, v in zip(roles, values, strict=True)]
    return {"id": rid, "conversations": turns, **extra}


# --- html_to_markdown -------------------------------------------------------------------


def test_chatgpt_code_block_becomes_fenced_block_with_language():
    assert html_to_markdown(CHATGPT_CODE_HTML) == (
        "Here is **code** for my\\_var:\n\n"
        "```python\n"
        "def f(x_y):\n"
        "    return x_y * 2\n"
        "```\n\n"
        "## Notes\n\n"
        "1. one\n"
        "2. two"
    )


def test_div_and_span_opening_tags_are_removed_keeping_their_text():
    html = '<div class="a"><div><p>Use <span class="hl">snake_case</span> names.</p></div></div>'
    assert html_to_markdown(html) == "Use snake\\_case names."


def test_code_block_without_language_keeps_code_and_indentation():
    html = (
        "<pre><div><div><button>Copy code</button></div><div><code>if x:\n    y()\n</code></div></div></pre>"
    )
    assert html_to_markdown(html) == "```\nif x:\n    y()\n```"


def test_headings_are_atx():
    assert html_to_markdown("<h1>Title</h1><h3>Sub</h3><p>body</p>") == "# Title\n\n### Sub\n\nbody"


def test_leading_regenerate_counter_is_removed():
    assert html_to_markdown("<p>2 / 2</p><p>Hello there</p>") == "Hello there"


def test_regenerate_counter_not_at_start_is_kept():
    assert html_to_markdown("<p>Use 1 / 2 cup</p>") == "Use 1 / 2 cup"


def test_copy_chars_words_fragment_is_removed():
    html = "<p>Answer text</p><p>Copy12 chars / 3 words</p>"
    assert html_to_markdown(html) == "Answer text"


def test_empty_copied_code_block_is_removed():
    html = (
        "<p>before</p><pre><div><div><span>bash</span><button>Copy code</button></div>"
        "<div><code></code></div></div></pre><p>after</p>"
    )
    # "before\n\n" + "" + "\n\nafter": one triple-newline pass leaves a blank line.
    assert html_to_markdown(html) == "before\n\nafter"


def test_triple_newlines_are_replaced_in_a_single_pass():
    # Six newlines are two triples → two newlines; four newlines → one triple + one → two.
    assert html_to_markdown("<pre>a\n\n\n\n\n\nb\n\n\n\nc</pre>") == "```\na\n\nb\n\nc\n```"
    assert html_to_markdown("<pre>a\n\n\nb</pre>") == "```\na\nb\n```"


# --- clean_sample -------------------------------------------------------------------------


def test_clean_sample_converts_every_value_and_keeps_other_keys():
    raw = record("a1", "<p>Hi <em>you</em></p>", "<p>Hello!</p>", model="gpt-4")
    before = copy.deepcopy(raw)
    cleaned, reason = clean_sample(raw)
    assert reason is None
    assert cleaned == {
        "id": "a1",
        "conversations": [turn("human", "Hi *you*"), turn("gpt", "Hello!")],
        "model": "gpt-4",
    }
    assert raw == before  # the input is never modified


def test_leading_non_human_and_trailing_human_turns_are_trimmed():
    roles = ("gpt", "human", "gpt", "human")
    raw = record("t1", "<p>sys</p>", "<p>q</p>", "<p>a</p>", "<p>q2</p>", roles=roles)
    cleaned, reason = clean_sample(raw)
    assert reason is None
    assert cleaned["conversations"] == [turn("human", "q"), turn("gpt", "a")]


@pytest.mark.parametrize(
    ("values", "roles"),
    [
        ((), ()),
        (("<p>q</p>",), ("human",)),
        (("<p>x</p>", "<p>q</p>"), ("gpt", "human")),  # both trims leave nothing
        (("<p>q</p>", "<p>q2</p>"), ("human", "human")),  # trailing human trimmed → 1 turn
    ],
)
def test_too_short(values, roles):
    assert clean_sample(record("s", *values, roles=roles)) == (None, "too-short")


def test_wrong_format_when_roles_do_not_alternate():
    raw = record("w", "q", "a", "a2", "q2", roles=("human", "gpt", "gpt", "gpt"))
    assert clean_sample(raw) == (None, "wrong-format")
    raw = record("w2", "q", "a", roles=("human", "bing"))
    assert clean_sample(raw) == (None, "wrong-format")


@pytest.mark.parametrize("word", ["OpenAI", "chatGPT"])
def test_blocked_words_in_raw_value(word):
    assert BLOCKED_WORDS == ("openai", "chatgpt")
    raw = record("b", "<p>hi</p>", f"<p>I am {word}</p>")
    assert clean_sample(raw) == (None, "blocked-words")


def test_blocked_words_are_checked_on_raw_html_attributes_too():
    raw = record("b2", "<p>hi</p>", '<a href="https://openai.com">link</a>')
    assert clean_sample(raw) == (None, "blocked-words")


def test_first_offending_turn_decides_the_reason():
    raw = record("o", "<p>chatgpt?</p>", "a", "q", roles=("human", "gpt", "gpt"))
    assert clean_sample(raw) == (None, "blocked-words")


def test_deeply_nested_html_is_a_parser_error():
    raw = record("p", "<b>" * 3000 + "hi", "<p>ok</p>")
    assert clean_sample(raw) == (None, "parser-error")


@pytest.mark.parametrize("exc", [ParserRejectedMarkup("bad"), AssertionError("bad")])
def test_parser_exceptions_are_parser_error(monkeypatch, exc):
    def reject(html, **options):
        raise exc

    monkeypatch.setattr(sharegpt.markdownify, "markdownify", reject)
    assert clean_sample(record("p2", "q", "a")) == (None, "parser-error")


def test_turn_that_cleans_to_empty_drops_the_sample():
    raw = record("e", "<p>question</p>", "<div><span></span></div><p>1 / 1</p>")
    assert clean_sample(raw) == (None, "empty-turn")


def test_non_null_plugins_drops_the_sample():
    assert clean_sample(record("pl", "q", "a", plugins=["search"])) == (None, "plugins")
    cleaned, reason = clean_sample(record("pl2", "q", "a", plugins=None))
    assert reason is None
    assert cleaned["plugins"] is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "not a record",
        {"id": "m"},
        {"id": "m", "conversations": None},
        {"conversations": [turn("human", "q"), turn("gpt", "a")]},
        {"id": "m", "conversations": [{"from": "human"}, turn("gpt", "a")]},
        {"id": "m", "conversations": [{"value": "q"}, turn("gpt", "a")]},
        {"id": "m", "conversations": [turn("human", 3), turn("gpt", "a")]},
        {"id": "m", "conversations": ["q", "a"]},
    ],
)
def test_malformed_records_are_reported_not_raised(raw):
    assert clean_sample(raw) == (None, "malformed-record")


# --- clean_sharegpt -----------------------------------------------------------------------


def test_clean_sharegpt_counts_each_drop_reason():
    records = [
        record("ok", "<p>q</p>", "<p>a</p>"),
        record("short", "<p>q</p>"),
        record("bad", "q", "a", roles=("human", "human")),
        record("blocked", "<p>q</p>", "<p>OpenAI</p>"),
        record("empty", "<p>q</p>", "<p></p>"),
        "junk",
    ]
    tally = Tally("sharegpt")
    kept = clean_sharegpt(records, tally)
    assert [r["id"] for r in kept] == ["ok"]
    assert tally.kept == 1
    assert dict(tally.dropped) == {
        "too-short": 2,  # "bad" loses its trailing human turn, leaving one
        "blocked-words": 1,
        "empty-turn": 1,
        "malformed-record": 1,
    }
    assert tally.examples["too-short"] == ["short", "bad"]
    assert tally.examples["malformed-record"] == ["record #5"]


def test_dedup_by_id_then_by_first_answer_and_length():
    records = [
        record("a", "<p>q1</p>", "<p>same answer</p>"),
        record("a", "<p>q2</p>", "<p>other answer</p>"),  # same id
        record("b", "<p>q3</p>", "<p>same answer</p>"),  # same 2nd message, same length
        record("c", "<p>q4</p>", "<p>same answer</p>", "<p>q5</p>", "<p>more</p>"),  # 4 turns
        record("d", "<p>q6</p>", "<p>fresh</p>"),
    ]
    tally = Tally("sharegpt")
    kept = clean_sharegpt(records, tally)
    assert [r["id"] for r in kept] == ["a", "c", "d"]
    assert kept[0]["conversations"][0]["value"] == "q1"  # the first occurrence wins
    assert dict(tally.dropped) == {"duplicate-id": 1, "duplicate-content": 1}
    assert tally.examples == {"duplicate-id": ["a"], "duplicate-content": ["b"]}


def test_dropped_samples_register_no_dedup_keys():
    records = [
        record("a", "<p>chatgpt</p>", "<p>answer</p>"),  # dropped before dedup
        record("a", "<p>q</p>", "<p>answer</p>"),
    ]
    tally = Tally("sharegpt")
    assert [r["conversations"][0]["value"] for r in clean_sharegpt(records, tally)] == ["q"]
    assert dict(tally.dropped) == {"blocked-words": 1}


def test_workers_preserve_input_order_and_results():
    records = [record(f"id{i}", f"<p>question {i}</p>", f"<p>answer {i}</p>") for i in range(40)]
    records[7] = record("id7", "<p>q</p>", "<p>ChatGPT</p>")
    serial_tally, parallel_tally = Tally("s"), Tally("p")
    serial = clean_sharegpt(records, serial_tally, workers=1)
    parallel = clean_sharegpt(iter(records), parallel_tally, workers=2)
    assert parallel == serial
    assert [r["id"] for r in parallel] == [f"id{i}" for i in range(40) if i != 7]
    assert parallel[0]["conversations"] == [turn("human", "question 0"), turn("gpt", "answer 0")]
    assert (parallel_tally.kept, dict(parallel_tally.dropped)) == (39, {"blocked-words": 1})
