"""Chat templates as data (`templates.toml`), the one renderer, token encoding and Jinja export.

from camel_chat.templates import get_template, render, SegmentEncoder
segments = render(get_template("vicuna_v1.1"), conversation)
encoded = SegmentEncoder(tokenizer).encode(segments)   # input_ids + labels
"""

from camel_chat.templates.encode import IGNORE_INDEX, Encoded, SegmentEncoder
from camel_chat.templates.jinja import to_jinja
from camel_chat.templates.render import (
    Segment,
    generation_prompt,
    message_segments,
    render,
    render_text,
)
from camel_chat.templates.template import SpecialTokens, Template, get_template, list_templates

__all__ = [
    "IGNORE_INDEX",
    "Encoded",
    "Segment",
    "SegmentEncoder",
    "SpecialTokens",
    "Template",
    "generation_prompt",
    "get_template",
    "list_templates",
    "message_segments",
    "render",
    "render_text",
    "to_jinja",
]
