"""Export a template as an equivalent Jinja `chat_template` for Hugging Face tokenizers.

A checkpoint saved with this string in its tokenizer renders, through
`tokenizer.apply_chat_template` (and so vLLM, TGI or llama.cpp), the same text as our
renderer. Assistant replies are wrapped in `{% generation %}` so
`return_assistant_tokens_mask=True` marks what we train on. The test suite checks the
equality on many conversations.
"""

from __future__ import annotations

import re

from camel_chat.templates.render import message_segments
from camel_chat.templates.template import SYSTEM, SpecialTokens, Template

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


def _system_expr(template: Template) -> str:
    before, after = template.system.split(SYSTEM)
    return " + ".join(
        p for p in (_expr(before) if before else "", "system_message", _expr(after) if after else "") if p
    )


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
    if template.system_position == "start":
        out.append("{%- if " + has_system + " -%}{{- " + _system_expr(template) + " -}}{%- endif -%}")
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
    body = (_expr(assistant.lead) + " + " if assistant.lead else "") + "message['content']"
    if template.trained_suffix:
        body += " + " + _expr(template.trained_suffix)
    out.append(
        "{%- elif message['role'] == 'assistant' -%}"
        + _emit(assistant.prefix)
        + "{%- generation -%}{{- "
        + body
        + " -}}{%- endgeneration -%}"
        + _emit(template.tail)
    )
    out.append("{%- else -%}{{- raise_exception('roles must be system (first), user or assistant') -}}")
    out.append("{%- endif -%}{%- endfor -%}")
    out.append("{%- if add_generation_prompt -%}" + _emit(assistant.prefix) + "{%- endif -%}")
    return "".join(line for line in out if line)
