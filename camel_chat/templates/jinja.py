"""Export a template as an equivalent Jinja `chat_template` for Hugging Face tokenizers.

A checkpoint saved with this string in its tokenizer renders, through
`tokenizer.apply_chat_template` (and so vLLM, TGI or llama.cpp), the same text as our
renderer. Assistant replies (text and tool calls) are wrapped in `{% generation %}` so
`return_assistant_tokens_mask=True` marks what we train on. A template with a tool format
reads `tools=` (OpenAI tool dicts) and messages with `tool_calls` (arguments as objects,
as `camel_chat.conversation.to_openai` gives them) and `role: "tool"`. The test suite
checks the equality on many conversations, with and without tools.
"""

from __future__ import annotations

import re

from camel_chat.templates.render import message_segments
from camel_chat.templates.template import SYSTEM, SpecialTokens, Template
from camel_chat.templates.tool_format import ToolFormat, split

_PLACEHOLDER = re.compile(r"\{(bos_token|eos_token)\}")
_KEEP = SpecialTokens(bos="{bos_token}", eos="{eos_token}")


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _expr(text: str) -> str:
    """A Jinja expression for `text`, with {bos_token}/{eos_token} as variables."""
    parts: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > pos:
            parts.append(_quote(text[pos : match.start()]))
        parts.append(match.group(1))
        pos = match.end()
    if pos < len(text):
        parts.append(_quote(text[pos:]))
    return " + ".join(parts) if parts else '""'


def _emit(text: str) -> str:
    return "{{- " + _expr(text) + " -}}" if text else ""


def _system_expr(template: Template, inner: str = "system_message") -> str:
    before, after = template.system.split(SYSTEM)
    return " + ".join(p for p in (_expr(before) if before else "", inner, _expr(after) if after else "") if p)


def _format_expr(fmt: str, values: dict[str, str]) -> str:
    """A Jinja expression for a tool-format string; `values` maps placeholders to expressions."""
    parts = [f"({values[text]})" if is_placeholder else _quote(text) for text, is_placeholder in split(fmt)]
    return " + ".join(parts) if parts else '""'


def _tojson(value: str, tools: ToolFormat) -> str:
    return f"{value}|tojson" + (f"(indent={tools.indent})" if tools.indent is not None else "")


def _tools_system(template: Template, tools: ToolFormat) -> str:
    """Statements that write the system block with the tool definitions when `tools` is set."""
    definition = _format_expr(
        tools.definition,
        {
            "tool": _tojson("tool", tools),
            "function": _tojson("tool['function']", tools),
            "index": "loop.index|string",
        },
    )
    text = _format_expr(tools.system, {"system": "system_message", "tools": "ns.defs"})
    return (
        "{%- for tool in tools -%}"
        "{%- set ns.defs = ns.defs + " + definition + " -%}{%- endfor -%}"
        "{{- " + _system_expr(template, "(" + text + ")") + " -}}"
    )


def _assistant_body(tools: ToolFormat) -> str:
    """Statements that set `ns.body` to the assistant's text and calls (before end of turn)."""
    content = "(message['content'] or '')"
    shown = f"('' if message.tool_calls else {content})" if tools.content_in_call else content
    call = _format_expr(
        tools.call,
        {
            "name": "tc['function']['name']|tojson",
            "arguments": "tc['function']['arguments']|tojson",
            "content": content + "|tojson",
        },
    )
    separator = _quote(tools.call_separator)
    return (
        "{%- set ns.body = " + shown + " -%}"
        "{%- for tc in message.tool_calls or [] -%}"
        "{%- set ns.body = ns.body + (" + separator + " if ns.body else '') + " + call + " -%}"
        "{%- endfor -%}"
    )


def _tool_result(tools: ToolFormat) -> str:
    before, after = tools.result_parts()
    opened = "loop.first or loop_messages[loop.index0 - 1]['role'] != 'tool'"
    closed = "loop.last or loop_messages[loop.index0 + 1]['role'] != 'tool'"
    return (
        "{%- elif message['role'] == 'tool' -%}"
        + ("{%- if " + opened + " -%}" + _emit_literal(tools.results_open) + "{%- endif -%}")
        + "{{- "
        + " + ".join([_quote(before), "(message['content'] or '')", _quote(after)])
        + " -}}"
        + ("{%- if " + closed + " -%}" + _emit_literal(tools.results_close) + "{%- endif -%}")
    )


def _emit_literal(text: str) -> str:
    return "{{- " + _quote(text) + " -}}" if text else ""


def _examples(template: Template) -> str:
    text = ""
    for i, (role, content) in enumerate(template.examples):
        text += "".join(
            s.text for s in message_segments(template, role, content, first=i == 0, special=_KEEP)
        )  # type: ignore[arg-type]
    return _emit(text)


def to_jinja(template: Template) -> str:
    """The Jinja chat template equivalent to `template`."""
    has_system = "true" if template.system_if_empty else "system_message"
    user, assistant = template.user, template.assistant
    out = [
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system_message = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}",
        "{%- else -%}",
        "{%- set system_message = "
        + _quote(template.default_system)
        + " -%}{%- set loop_messages = messages -%}",
        "{%- endif -%}",
    ]
    if template.bos:
        out.append("{{- bos_token -}}")
    tools = template.tools
    if tools is not None:
        out.append("{%- set ns = namespace(defs='', body='') -%}")
    else:
        out.append("{%- if tools -%}{{- raise_exception('this template has no tool format') -}}{%- endif -%}")
    if template.system_position == "start":
        plain = "{%- if " + has_system + " -%}{{- " + _system_expr(template) + " -}}{%- endif -%}"
        if tools is not None:
            with_tools = _tools_system(template, tools)
            plain = "{%- if tools -%}" + with_tools + "{%- else -%}" + plain + "{%- endif -%}"
        out.append(plain)
    out.append(_examples(template))
    out.append("{%- for message in loop_messages -%}")
    out.append("{%- if message['role'] == 'user' -%}" + _emit(user.prefix))
    content = (_expr(user.lead) + " + " if user.lead else "") + "message['content']"
    if template.system_position == "first_user":
        out.append(
            "{%- if loop.first and " + has_system + " -%}"
            "{{- "
            + (_expr(user.lead) + " + " if user.lead else "")
            + _system_expr(template)
            + " + message['content'] -}}{%- else -%}{{- "
            + content
            + " -}}{%- endif -%}"
        )
    else:
        out.append("{{- " + content + " -}}")
    out.append(_emit(user.suffix))
    text = "message['content']" if tools is None else "ns.body"
    body = (_expr(assistant.lead) + " + " if assistant.lead else "") + text
    if template.trained_suffix:
        body += " + " + _expr(template.trained_suffix)
    out.append(
        "{%- elif message['role'] == 'assistant' -%}"
        + ("" if tools is None else _assistant_body(tools))
        + _emit(assistant.prefix)
        + "{%- generation -%}{{- "
        + body
        + " -}}{%- endgeneration -%}"
        + _emit(template.tail)
    )
    if tools is not None:
        out.append(_tool_result(tools))
    roles = "user or assistant" if tools is None else "user, assistant or tool"
    out.append("{%- else -%}{{- raise_exception('roles must be system (first), " + roles + "') -}}")
    out.append("{%- endif -%}{%- endfor -%}")
    out.append("{%- if add_generation_prompt -%}" + _emit(assistant.prefix) + "{%- endif -%}")
    return "".join(line for line in out if line)
