"""A request's constraint maps OpenAI's fields exactly, and every malformed or unsupported
input is a `ConstraintError` naming the request field (the API answers it with a 400)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from camel_chat.constraints import ConstraintError, constraint_for_request
from camel_chat.templates import get_template

CHATML = get_template("chatml").tools
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
STRICT = {
    "type": "function",
    "function": {"name": "lookup", "strict": True, "parameters": {"type": "object"}},
}


@pytest.mark.parametrize(
    ("request_fields", "kind"),
    [
        ({}, None),
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, "json_object"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                }
            },
            "json_schema",
        ),
        ({"tools": [WEATHER]}, None),  # auto, nothing strict: the parser reads calls
        ({"tools": [WEATHER], "tool_choice": "none"}, None),
        ({"tools": [WEATHER], "tool_choice": "auto"}, None),
        ({"tools": [WEATHER, STRICT], "tool_choice": "auto"}, "text_or_tool_calls"),
        ({"tools": [WEATHER], "tool_choice": "required"}, "tool_calls"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "weather"}}},
            "tool_calls",
        ),
    ],
)
def test_openai_fields_map_to_the_constraint(request_fields: dict[str, Any], kind: str | None) -> None:
    constraint = constraint_for_request(**request_fields, tool_format=CHATML)
    assert (constraint and constraint.kind) == kind


@pytest.mark.parametrize(
    ("request_fields", "param", "says"),
    [
        ({"response_format": "json"}, "response_format", "'type'"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "'xml'"),
        # vLLM#11363: the schema next to "type" instead of inside "json_schema".
        (
            {"response_format": {"type": "json_schema", "schema": {"type": "object"}}},
            "response_format.json_schema",
            "goes inside",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
            "response_format.json_schema.schema",
            "JSON Schema object",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "strnig"}},
                }
            },
            "response_format.json_schema.schema",
            "strnig",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}},
            "response_format.json_schema.schema",
            "not",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}},
                }
            },
            "response_format.json_schema.schema",
            "missing",
        ),
        ({"tool_choice": "required"}, "tool_choice", "only allowed together with 'tools'"),
        ({"tools": [], "tool_choice": "required"}, "tool_choice", "needs 'tools'"),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice", "must be"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "'nope'",
        ),
        ({"tools": "weather"}, "tools", "list"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0]", "must match"),
        (
            {
                "tools": [
                    WEATHER,
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"a": {"not": {}}}},
                        },
                    },
                ]
            },
            "tools[1].function.parameters",
            "not",
        ),
        (
            {"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
            "response_format",
            "cannot be combined",
        ),
    ],
)
def test_bad_constraints_name_the_request_field(
    request_fields: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(ConstraintError) as info:
        constraint_for_request(**request_fields, tool_format=CHATML)
    assert info.value.param == param
    assert says in info.value.message


def test_calls_cannot_be_constrained_for_a_template_without_a_tool_format() -> None:
    with pytest.raises(ConstraintError) as info:
        constraint_for_request(tools=[WEATHER], tool_choice="required", tool_format=None)
    assert info.value.param == "tool_choice"


def test_the_request_side_is_light() -> None:
    """The API server validates constraints: importing that must not import torch or transformers."""
    code = (
        "import sys, camel_chat.constraints.request, camel_chat.tool_parsers; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "print(heavy); sys.exit(bool(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
