"""The one renderer: a conversation + a template → segments tagged trainable or not.

Training turns the segments into token ids and labels (`encode.py`); serving joins them
into a prompt ending in the generation prompt. Both call `render`, so the prompt a model
is served with is the prompt it was trained on, minus the answer.

A conversation renders as: preamble (BOS, system block, few-shot examples), then per
message its segments. A user or assistant message's segments depend only on its role,
its content (and calls) and whether it is the first message, never on its neighbours:
that is what lets `merge.py` compute a piece's exact token length as a sum over messages.
A tool result also depends on whether its neighbours are results (a run of results may
share one turn, as Qwen2.5 writes them).

Tools (templates with a `tools` table, see `tool_format.py`): the definitions go into the
system block; an assistant's calls are written after its text, inside the trained
segment (so the call text and its end marker are trained, like a reply); tool results are
never trained, nor are definitions or user text.

    >>> from camel_chat.conversation import Conversation
    >>> from camel_chat.templates.template import get_template
    >>> t = get_template("vicuna_v1.1")
    >>> c = Conversation.of(("user", "Hello!"), ("assistant", "Hi!"), ("user", "How are you?"), system="S")
    >>> render_text(t, c, add_generation_prompt=True)
    '<s>S USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:'
"""

from __future__ import annotations

from dataclasses import dataclass

from camel_chat.conversation import Conversation, ConversationError, Message, Role, Tool, ToolCall, validate
from camel_chat.templates.template import SYSTEM, SpecialTokens, Template
from camel_chat.templates.tool_format import ToolFormat

__all__ = ["Segment", "generation_prompt", "message_segments", "preamble", "render", "render_text"]

_DEFAULT_SPECIAL = SpecialTokens()


@dataclass(frozen=True)
class Segment:
    """A run of rendered text. `message` is the index of the message whose content it
    carries (None: template text, identical for every conversation)."""

    text: str
    trainable: bool = False
    message: int | None = None


def system_text(template: Template, system: str | None) -> str:
    return template.default_system if system is None else system


def _system_block(
    template: Template, system: str, special: SpecialTokens, tools: tuple[Tool, ...] = ()
) -> str:
    if tools and template.tools is not None:
        system = template.tools.system_text(system, tools)  # always shown: it lists the tools
    elif not system and not template.system_if_empty:
        return ""
    # Fill the template's own placeholders before inserting the user's text, which may
    # itself contain "{eos_token}" and must stay verbatim.
    return special.fill(template.system).replace(SYSTEM, system)


def preamble(
    template: Template,
    system: str | None,
    special: SpecialTokens = _DEFAULT_SPECIAL,
    tools: tuple[Tool, ...] = (),
) -> list[Segment]:
    """What precedes the first message: BOS, the system block (at the start), examples."""
    segments = [Segment(special.bos)] if template.bos and special.bos else []
    if template.system_position == "start":
        block = _system_block(template, system_text(template, system), special, tools)
        if block:
            segments.append(Segment(block))
    for i, (role, content) in enumerate(template.examples):
        for seg in message_segments(template, role, content, first=(i == 0), special=special):  # type: ignore[arg-type]
            segments.append(Segment(seg.text))  # examples are template text, never trained
    return segments


def message_segments(
    template: Template,
    role: Role,
    content: str,
    *,
    first: bool = False,
    system: str | None = None,
    special: SpecialTokens = _DEFAULT_SPECIAL,
    index: int | None = None,
    tool_calls: tuple[ToolCall, ...] = (),
    after_result: bool = False,
    before_result: bool = False,
) -> list[Segment]:
    """The segments of one message. `first` marks the conversation's first message (where a
    `first_user` system block goes); `index` is recorded on the content segment.
    `tool_calls` are an assistant's calls; a `tool` message needs to know whether the
    message before it (`after_result`) and after it (`before_result`) are results too."""
    if role == "tool":
        return _result_segments(_tool_format(template, index), content, index, after_result, before_result)
    fmt = template.user if role == "user" else template.assistant
    segments = [Segment(special.fill(fmt.prefix))]
    lead = fmt.lead
    if role == "user" and first and template.system_position == "first_user":
        block = _system_block(template, system_text(template, system), special)
        if block:
            segments.append(Segment(lead + block))
            lead = ""
    if role == "assistant":
        if tool_calls:
            tools = _tool_format(template, index)
            if tools.max_calls and len(tool_calls) > tools.max_calls:
                raise ConversationError(
                    "too-many-tool-calls",
                    f"template {template.name!r} writes at most {tools.max_calls} call(s) per message",
                    index,
                )
            content = tools.calls_text(content, tool_calls)
        body = lead + content + special.fill(template.trained_suffix)
        segments.append(Segment(body, trainable=True, message=index))
        segments.append(Segment(special.fill(template.tail)))
    else:
        segments.append(Segment(lead + content, message=index))
        segments.append(Segment(special.fill(fmt.suffix)))
    return [s for s in segments if s.text]


def _tool_format(template: Template, index: int | None) -> ToolFormat:
    if template.tools is None:
        with_tools = ", ".join(_templates_with_tools())
        raise ConversationError(
            "tools-unsupported",
            f"template {template.name!r} has no tool format; templates with tools: {with_tools}",
            index,
        )
    return template.tools


def _templates_with_tools() -> list[str]:
    from camel_chat.templates.template import get_template, list_templates

    return [name for name in list_templates() if get_template(name).tools is not None]


def _result_segments(
    tools: ToolFormat, content: str, index: int | None, after_result: bool, before_result: bool
) -> list[Segment]:
    before, after = tools.result_parts()
    segments = [] if after_result else [Segment(tools.results_open)]
    segments += [Segment(before), Segment(content, message=index), Segment(after)]
    if not before_result:
        segments.append(Segment(tools.results_close))
    return [s for s in segments if s.text]


def generation_prompt(template: Template, special: SpecialTokens = _DEFAULT_SPECIAL) -> str:
    """What follows the last user message when asking the model to answer."""
    return special.fill(template.assistant.prefix)


def render(
    template: Template,
    conversation: Conversation,
    *,
    add_generation_prompt: bool = False,
    special: SpecialTokens = _DEFAULT_SPECIAL,
    check: bool = True,
) -> list[Segment]:
    """Render a conversation. Training: it must end with an assistant message; serving
    (`add_generation_prompt=True`): with a user message. `check=False` skips validation
    for callers that validated already."""
    if check:
        validate(conversation, ends_with="user" if add_generation_prompt else "assistant")
    if conversation.uses_tools:
        _tool_format(template, None)
    segments = preamble(template, conversation.system, special, conversation.tools)
    segments += _messages(template, conversation.messages, conversation.system, special)
    if add_generation_prompt:
        prompt = generation_prompt(template, special)
        if prompt:
            segments.append(Segment(prompt))
    return segments


def _messages(
    template: Template, messages: tuple[Message, ...], system: str | None, special: SpecialTokens
) -> list[Segment]:
    out: list[Segment] = []
    roles = [m.role for m in messages]
    for i, message in enumerate(messages):
        out += message_segments(
            template,
            message.role,
            message.content,
            first=(i == 0),
            system=system,
            special=special,
            index=i,
            tool_calls=message.tool_calls,
            after_result=i > 0 and roles[i - 1] == "tool",
            before_result=i + 1 < len(roles) and roles[i + 1] == "tool",
        )
    return out


def render_text(
    template: Template,
    conversation: Conversation,
    *,
    add_generation_prompt: bool = False,
    special: SpecialTokens = _DEFAULT_SPECIAL,
) -> str:
    """The rendered conversation as one string."""
    segments = render(template, conversation, add_generation_prompt=add_generation_prompt, special=special)
    return "".join(s.text for s in segments)
