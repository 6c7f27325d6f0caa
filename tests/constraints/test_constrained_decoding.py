"""Constrained decoding on the tiny RANDOM model: every output is schema-valid JSON, and
every demanded tool call is a valid call the template's parser reads back. A random model
writes garbage unless the mask allows nothing else, so these pass only if the mask is right.

Each claimed schema feature has its own schema: enums, nested objects, arrays (with
item bounds), integers and numbers (with bounds), booleans, strings (with lengths),
required and optional fields, `$defs` references. Decoding is greedy on the masked logits
and, for variety, sampled at temperature 1 with fixed seeds."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from camel_chat.constraints import Constraint, GrammarBackend, constraint_for_request
from camel_chat.templates import get_template, list_templates
from camel_chat.tool_parsers import parse

torch = pytest.importorskip("torch")

SCHEMAS: dict[str, dict[str, Any]] = {
    "enum": {
        "type": "object",
        "properties": {"unit": {"enum": ["celsius", "fahrenheit", "kelvin"]}},
        "required": ["unit"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "traveller": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 6}, "vip": {"type": "boolean"}},
                "required": ["name", "vip"],
                "additionalProperties": False,
            },
        },
        "required": ["traveller"],
        "additionalProperties": False,
    },
    "array": {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 4},
                "minItems": 1,
                "maxItems": 3,
            }
        },
        "required": ["tags"],
        "additionalProperties": False,
    },
    "numbers": {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": 99},
            "price": {"type": "number", "minimum": 0, "maximum": 10},
        },
        "required": ["count", "price"],
        "additionalProperties": False,
    },
    "required_and_optional": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 9},
            "note": {"type": "string", "maxLength": 5},
        },
        "required": ["id"],
        "additionalProperties": False,
    },
    "defs": {
        "type": "object",
        "$defs": {
            "point": {
                "type": "object",
                "properties": {
                    "x": {"type": "integer", "minimum": -5, "maximum": 5},
                    "y": {"type": "integer", "minimum": -5, "maximum": 5},
                },
                "required": ["x", "y"],
                "additionalProperties": False,
            }
        },
        "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 8},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string", "maxLength": 10}},
            "required": ["q"],
            "additionalProperties": False,
        },
    },
}
TOOL_TEMPLATES = [n for n in list_templates() if get_template(n).tools is not None]
MAX_NEW_TOKENS = 160
JSON_OBJECT_SEEDS = (0, 6)
# kagent's call carries the reply's text (task_name, up to CALL_TEXT_MAX characters) first.
BUDGET = {"chatml": MAX_NEW_TOKENS, "llama-3": MAX_NEW_TOKENS, "kagent": 400}


@pytest.fixture(scope="module")
def model(tiny_tokenizer: Any) -> Any:
    from camel_chat.model.tiny import build_tiny_model

    # torch's spinning intra-op threads and llguidance's pool fight over 2 cores (a 30x slower
    # step measured); one torch thread for this tiny model avoids it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_model("llama", tiny_tokenizer, seed=3)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backend(tiny_tokenizer: Any) -> GrammarBackend:
    return GrammarBackend(tiny_tokenizer)


def decode(
    model: Any,
    tokenizer: Any,
    backend: GrammarBackend,
    constraint: Constraint,
    seed: int | None,
    *,
    must_end: bool = True,
    budget: int = MAX_NEW_TOKENS,
) -> str:
    """A greedy (seed None) or sampled loop over the model's masked logits; the reply text."""
    matcher = backend.matcher(constraint)
    ids = tokenizer("<|im_start|>user\nAnswer.<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")[
        "input_ids"
    ]
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    out: list[int] = []
    past = None
    with torch.no_grad():
        for _ in range(budget):
            result = model(input_ids=ids, past_key_values=past, use_cache=True)
            past, logits = result.past_key_values, result.logits[0, -1]
            logits = logits.masked_fill(~torch.from_numpy(matcher.allowed(logits.shape[-1])), float("-inf"))
            if generator is None:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            assert matcher.consume(token), matcher.error
            if token == tokenizer.eos_token_id:
                break
            out.append(token)
            ids = torch.tensor([[token]])
    assert matcher.is_finished or not must_end, (
        f"no end within {MAX_NEW_TOKENS} tokens: {tokenizer.decode(out)!r}"
    )
    return tokenizer.decode(out)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_output_is_schema_valid_json(
    name: str, model: Any, tiny_tokenizer: Any, backend: GrammarBackend
) -> None:
    schema = SCHEMAS[name]
    constraint = constraint_for_request(
        response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    )
    assert constraint is not None
    for seed in (None, 1):
        text = decode(model, tiny_tokenizer, backend, constraint, seed)
        jsonschema.validate(json.loads(text), schema)
        if name != "numbers":  # (a float may carry more digits than json.dumps writes)
            assert text == json.dumps(json.loads(text), ensure_ascii=False)  # json.dumps' layout, as trained


def test_json_object_mode_gives_a_json_object(
    model: Any, tiny_tokenizer: Any, backend: GrammarBackend
) -> None:
    constraint = constraint_for_request(response_format={"type": "json_object"})
    assert constraint is not None
    # Any object may nest or run on without bound; these sampled runs end within the budget.
    for seed in JSON_OBJECT_SEEDS:
        assert isinstance(json.loads(decode(model, tiny_tokenizer, backend, constraint, seed)), dict)


@pytest.mark.parametrize("template", TOOL_TEMPLATES)
def test_required_tool_choice_gives_valid_calls_the_parser_reads(
    template: str, model: Any, tiny_tokenizer: Any, backend: GrammarBackend
) -> None:
    fmt = get_template(template).tools
    assert fmt is not None
    tools = [WEATHER, SEARCH]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        constraint = constraint_for_request(tools=tools, tool_choice=choice, tool_format=fmt)
        assert constraint is not None and constraint.kind == "tool_calls"
        for seed in (None, 7):
            text = decode(
                model, tiny_tokenizer, backend, constraint, seed, must_end=False, budget=BUDGET[template]
            )
            reply = parse(fmt.parser, text, tool_names=set(schemas))
            assert reply.tool_calls, text
            if choice != "required":
                assert [c.name for c in reply.tool_calls] == ["get_weather"]
            # Parallel calls may run past the token budget (a cut-off call's start is then text);
            # every finished call must be valid and only the last may be cut off.
            complete = [c for c in reply.tool_calls if c.complete]
            assert complete and all(c.complete for c in reply.tool_calls[:-1])
            assert (
                reply.content is None or (fmt.content_in_call and reply.content) or not text.endswith("}")
            ), text
            for call in complete:
                jsonschema.validate(call.arguments_object(), schemas[call.name])


@pytest.mark.parametrize("template", TOOL_TEMPLATES)
def test_one_required_call_when_calls_are_not_parallel(
    template: str, model: Any, tiny_tokenizer: Any, backend: GrammarBackend
) -> None:
    fmt = get_template(template).tools
    constraint = constraint_for_request(
        tools=[WEATHER, SEARCH], tool_choice="required", parallel_tool_calls=False, tool_format=fmt
    )
    assert constraint is not None and fmt is not None
    text = decode(model, tiny_tokenizer, backend, constraint, 9, budget=BUDGET[template])
    (call,) = parse(fmt.parser, text).tool_calls
    assert call.complete and call.name in {"get_weather", "search"}


def test_auto_with_a_strict_tool_allows_text_or_valid_calls(
    model: Any, tiny_tokenizer: Any, backend: GrammarBackend
) -> None:
    fmt = get_template("chatml").tools
    constraint = constraint_for_request(tools=[WEATHER, SEARCH], tool_choice="auto", tool_format=fmt)
    assert constraint is not None and constraint.kind == "text_or_tool_calls"
    assert constraint_for_request(tools=[WEATHER], tool_choice="auto", tool_format=fmt) is None  # not strict
    matcher = backend.matcher(constraint)
    prose = tiny_tokenizer("Plain prose, no call.", add_special_tokens=False)["input_ids"]
    assert all(matcher.consume(t) for t in [*prose, tiny_tokenizer.eos_token_id]) and matcher.is_finished
    bad = backend.matcher(constraint)
    bad_call = '<tool_call>\n{"name": "search", "arguments": {"q": 5}}'
    tokens = tiny_tokenizer(bad_call, add_special_tokens=False)["input_ids"]
    assert not all(bad.consume(t) for t in tokens)  # the strict tool's schema holds


def test_batch_fill_equals_each_rows_own_mask(tiny_tokenizer: Any, backend: GrammarBackend) -> None:
    a = backend.matcher(constraint_for_request(response_format={"type": "json_object"}))  # type: ignore[arg-type]
    b = backend.matcher(
        constraint_for_request(
            tools=[WEATHER], tool_choice="required", tool_format=get_template("chatml").tools
        )  # type: ignore[arg-type]
    )
    for token in tiny_tokenizer("<tool_call>", add_special_tokens=False)["input_ids"]:
        assert b.consume(token)
    bitmask = backend.allocate(3)
    bitmask[:] = 0
    backend.fill(bitmask, [(a, 2), (b, 0)])
    assert (bitmask[2] == a.bitmask()).all() and (bitmask[0] == b.bitmask()).all()
    assert not bitmask[1].any()  # a free row is left alone
