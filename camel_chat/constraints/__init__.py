"""Constrained decoding, engine-agnostic: a request's constraint → per-sequence token masks.

    from camel_chat.constraints import constraint_for_request, GrammarBackend
    constraint = constraint_for_request(response_format=..., tools=..., tool_choice=...,
                                        tool_format=get_template(name).tools)   # light; 400s here
    matcher = GrammarBackend(tokenizer).matcher(constraint)                     # engine side

The grammar library is llguidance (docs/CONSTRAINED_DECODING.md says why, with figures
from bench/constrained_decoding.py). `request` and `grammar` are light (no torch, no
tokenizer: the API server validates with them); `matcher` needs a tokenizer and numpy.
"""

from camel_chat.constraints.matcher import GrammarBackend, SequenceMatcher, allowed
from camel_chat.constraints.request import (
    Constraint,
    ConstraintError,
    constraint_for_request,
    response_format_constraint,
)

__all__ = [
    "Constraint",
    "ConstraintError",
    "GrammarBackend",
    "SequenceMatcher",
    "allowed",
    "constraint_for_request",
    "response_format_constraint",
]
