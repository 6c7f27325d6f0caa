"""Prompt texts for CAMEL-style role-play generation (our own wording).

Three agents take part: a task specifier that turns a broad task into a concrete one, an
AI user that gives one instruction at a time, and an AI assistant that carries each one out.
The message conventions (``Instruction:``/``Input:`` from the user, ``Solution:`` ending in
``Next request.`` from the assistant, the ``<CAMEL_TASK_DONE>`` token) are the ones the CAMEL
data uses, so that the converter in :mod:`camel_chat.data_preprocessing.camel` reads the
generated files unchanged.
"""

from __future__ import annotations

TASK_DONE = "<CAMEL_TASK_DONE>"

TASK_SPECIFIER_SYSTEM = "You turn broad project ideas into one concrete, achievable assignment."

TASK_SPECIFIER_PROMPT = """Two collaborators will work on a project together.
One of them is a {assistant_role}, who will do the hands-on work.
The other is a {user_role}, who will direct the work step by step.
Their broad goal: {task}

Rewrite this goal as a single concrete assignment that the two of them could finish in one
working session. Be specific about what the result should contain. Use at most {word_limit} words.
Reply with the assignment only, without any introduction."""

ASSISTANT_SYSTEM = """You are acting as a {assistant_role}. A {user_role} is directing you.
Never swap these roles. The two of you are working on this assignment:
{task}

How you must work:
- The {user_role} sends one instruction at a time, as "Instruction: ..." followed by
  "Input: ..." (the input may be "None").
- Carry out exactly that instruction. If you truly cannot, say so briefly and explain why.
- Never give instructions yourself; you only do the work.
- Begin each answer with "Solution: " and give a concrete, detailed answer (code, steps,
  examples or explanations as the instruction needs).
- Finish each answer with the words "Next request."."""

USER_SYSTEM = """You are acting as a {user_role}. You are directing a {assistant_role}.
Never swap these roles. The two of you are working on this assignment:
{task}

How you must work:
- Guide the {assistant_role} towards finishing the assignment by sending one instruction
  per message, and nothing else.
- Write each message in exactly this layout:
  Instruction: <what to do next>
  Input: <context or material for the instruction, or "None">
- Do not solve the steps yourself; the {assistant_role} does the work and replies with a
  "Solution:".
- When you judge the assignment finished, reply only with {done_token}.
- Do not reply with {done_token} before the assignment is complete."""

USER_KICKOFF = "Begin: send me your first instruction now, using the Instruction/Input layout."


def render(template: str, **values: object) -> str:
    """Fill a template; unknown placeholders raise KeyError."""
    return template.format(done_token=TASK_DONE, **values)
