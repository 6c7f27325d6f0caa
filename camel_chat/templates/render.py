"""The one renderer: a conversation + a template → segments tagged trainable or not.

Training turns the segments into token ids and labels (`encode.py`); serving joins them
into a prompt ending in the generation prompt. Both call `render`, so the prompt a model
is served with is the prompt it was trained on, minus the answer.

A conversation renders as: preamble (BOS, system block, few-shot examples), then per
message its segments. A message's segments depend only on its role, its content and
whether it is the first message, never on its neighbours: that is what lets `merge.py`
compute a piece's exact token length as a sum over messages.

    >>> from camel_chat.conversation import Conversation
    >>> from camel_chat.templates.template import get_template
    >>> t = get_template("vicuna_v1.1")
    >>> c = Conversation.of(("user", "Hello!"), ("assistant", "Hi!"), ("user", "How are you?"), system="S")
    >>> render_text(t, c, add_generation_prompt=True)
    '<s>S USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:'
"""

from __future__ import annotations

from dataclasses import dataclass

from camel_chat.conversation import Conversation, Message, Role, validate
from camel_chat.templates.template import SYSTEM, SpecialTokens, Template

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


def _system_block(template: Template, system: str, special: SpecialTokens) -> str:
    if not system and not template.system_if_empty:
        return ""
    # Fill the template's own placeholders before inserting the user's text, which may
    # itself contain "{eos_token}" and must stay verbatim.
    return special.fill(template.system).replace(SYSTEM, system)


def preamble(
    template: Template, system: str | None, special: SpecialTokens = _DEFAULT_SPECIAL
) -> list[Segment]:
    """What precedes the first message: BOS, the system block (at the start), examples."""
    segments = [Segment(special.bos)] if template.bos and special.bos else []
    if template.system_position == "start":
        block = _system_block(template, system_text(template, system), special)
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
) -> list[Segment]:
    """The segments of one message. `first` marks the conversation's first message (where a
    `first_user` system block goes); `index` is recorded on the content segment."""
    fmt = template.user if role == "user" else template.assistant
    segments = [Segment(special.fill(fmt.prefix))]
    lead = fmt.lead
    if role == "user" and first and template.system_position == "first_user":
        block = _system_block(template, system_text(template, system), special)
        if block:
            segments.append(Segment(lead + block))
            lead = ""
    if role == "assistant":
        body = lead + content + special.fill(template.trained_suffix)
        segments.append(Segment(body, trainable=True, message=index))
        segments.append(Segment(special.fill(template.tail)))
    else:
        segments.append(Segment(lead + content, message=index))
        segments.append(Segment(special.fill(fmt.suffix)))
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
    segments = preamble(template, conversation.system, special)
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
    for i, message in enumerate(messages):
        out += message_segments(
            template,
            message.role,
            message.content,
            first=(i == 0),
            system=system,
            special=special,
            index=i,
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
