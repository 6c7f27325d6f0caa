"""From worker chunk streams to OpenAI responses: deltas, SSE framing, usage, logprobs.

Workers send FastChat chunks whose `text` is cumulative; this module turns one or more of them
(one per choice: `n` x prompts) into

    chat_response / completion_response     the non-streaming JSON bodies
    chat_events / completion_events         `data: {json}\\n\\n` SSE frames ending in `data: [DONE]`

Streams are read concurrently (FastChat ran `n` choices one after another). A chat stream opens
with a `role` delta per choice; each choice ends with its `finish_reason`; with
`stream_options.include_usage` a last chunk carries `usage` and `choices: []`. A failure after
the first byte becomes `data: {"error": {...}}` then `data: [DONE]`, so the official client
raises instead of hanging or yielding a bogus chunk. An idle stream sends `: ping` comments.
Incomplete UTF-8 (a trailing U+FFFD) is held back until the next chunk completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from camel_chat.serve.disconnect import finish
from camel_chat.serve.errors import to_openai_error
from camel_chat.serve.openai_backend import WorkerStream

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
_REPLACEMENT = "\ufffd"


def sse(data: dict[str, Any]) -> bytes:
    """One SSE event holding `data` as JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def sse_error(exc: BaseException) -> bytes:
    _status, body = to_openai_error(exc)
    return sse(body)


@dataclass
class Choice:
    """One generated sequence and what of it has already gone to the client."""

    index: int
    stream: WorkerStream
    prompt_index: int = 0  # which prompt of a completions request (usage counts each prompt once)
    sent: str = ""
    sent_logprobs: int = 0
    text: str = ""
    finish_reason: str | None = None
    finish_sent: bool = False
    usage: dict[str, int] | None = None
    logprobs: dict[str, Any] | None = None

    def absorb(self, chunk: dict[str, Any]) -> str:
        """Record a chunk; return the new text to send (possibly "")."""
        self.text = str(chunk.get("text") or "")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("logprobs"):
            self.logprobs = chunk["logprobs"]
        if chunk.get("finish_reason"):
            self.finish_reason = str(chunk["finish_reason"])
        visible = self.text if self.finish_reason else self.text.rstrip(_REPLACEMENT)
        if len(visible) <= len(self.sent):
            return ""
        delta = visible[len(self.sent) :]
        self.sent = visible
        return delta

    def new_logprobs(self) -> dict[str, list[Any]] | None:
        """Completions-format logprobs for tokens not yet sent (workers send them cumulatively)."""
        if not self.logprobs:
            return None
        tokens = list(self.logprobs.get("tokens") or [])
        start, self.sent_logprobs = self.sent_logprobs, len(tokens)
        if start >= len(tokens):
            return None
        return {
            key: list(self.logprobs.get(key) or [])[start:]
            for key in ("text_offset", "tokens", "token_logprobs", "top_logprobs")
        }


def completion_logprobs(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if not data:
        return None
    return {
        key: list(data.get(key) or []) for key in ("text_offset", "tokens", "token_logprobs", "top_logprobs")
    }


def chat_logprobs(data: dict[str, Any] | None, top: int) -> dict[str, Any] | None:
    """Completions-format logprobs (tokens, token_logprobs, top_logprobs) in the chat format."""
    if not data:
        return None
    tokens = list(data.get("tokens") or [])
    values = list(data.get("token_logprobs") or [])
    tops = list(data.get("top_logprobs") or [])
    content = []
    for i, token in enumerate(tokens):
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        ranked = sorted(alternatives.items(), key=lambda kv: -kv[1])[:top]
        content.append(
            {
                "token": token,
                "logprob": values[i] if i < len(values) and values[i] is not None else 0.0,
                "bytes": list(str(token).encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked],
            }
        )
    return {"content": content}


def total_usage(choices: list[Choice]) -> dict[str, int]:
    """Usage over all choices: each distinct prompt counted once, completions summed."""
    prompts: dict[int, int] = {}
    completion = 0
    for choice in choices:
        usage = choice.usage or {}
        prompts.setdefault(choice.prompt_index, int(usage.get("prompt_tokens") or 0))
        completion += int(usage.get("completion_tokens") or 0)
    prompt = sum(prompts.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def close_all(choices: list[Choice]) -> None:
    for choice in choices:
        with contextlib.suppress(Exception):  # a broken connection is as closed as it gets
            await choice.stream.aclose()


async def _stop_readers(choices: list[Choice], tasks: list[asyncio.Future[Any]]) -> None:
    """Close the worker streams first (their readers then end on their own), then cancel and
    await the readers. Cancelling a reader mid-read instead can leave httpcore's connection
    marked closed with its socket open: the worker then never learns the client left."""
    await close_all(choices)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------- non-streaming


async def collect(choices: list[Choice]) -> None:
    """Read every choice's stream to its end, concurrently; the first failure raises."""

    async def drain(choice: Choice) -> None:
        async for chunk in choice.stream:
            choice.absorb(chunk)
        choice.finish_reason = choice.finish_reason or "stop"

    tasks = [asyncio.ensure_future(drain(c)) for c in choices]
    try:
        await asyncio.gather(*tasks)
    finally:
        await finish(_stop_readers(choices, tasks))


def chat_response(
    rid: str, created: int, model: str, choices: list[Choice], top: int | None
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": chat_logprobs(c.logprobs, top or 0) if top is not None else None,
                "finish_reason": c.finish_reason,
            }
            for c in choices
        ],
        "usage": total_usage(choices),
        "system_fingerprint": None,
    }


def completion_response(
    rid: str, created: int, model: str, choices: list[Choice], logprobs: bool
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "logprobs": completion_logprobs(c.logprobs) if logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in choices
        ],
        "usage": total_usage(choices),
        "system_fingerprint": None,
    }


# ---------------------------------------------------------------------- streaming


class _Merge:
    """Shared state of `merged`: the latest unread chunk per choice, ends, failures, a wake-up."""

    def __init__(self, choices: list[Choice]) -> None:
        self.choices = choices
        self.latest: dict[int, dict[str, Any]] = {}
        self.ended: set[int] = set()
        self.failures: list[BaseException] = []
        self.wake = asyncio.Event()
        self.produced = 0
        self.ping_due = False

    async def pump(self, pos: int) -> None:
        try:
            async for chunk in self.choices[pos].stream:
                self.latest[pos] = chunk  # text and logprobs are cumulative: newer replaces older
                self.wake.set()
        except Exception as exc:
            self.failures.append(exc)
        else:
            self.ended.add(pos)
        self.wake.set()

    async def ticker(self, keepalive: float) -> None:
        seen = -1
        while True:
            await asyncio.sleep(keepalive)
            if self.produced == seen:
                self.ping_due = True
                self.wake.set()
            seen = self.produced


async def merged(
    choices: list[Choice], keepalive: float
) -> AsyncIterator[tuple[Choice, dict[str, Any]] | None]:
    """`(choice, chunk)` from all streams as they come; None when idle for `keepalive` seconds.

    Chunks are cumulative, so when the client reads slower than the workers write, only each
    choice's newest chunk is kept (bigger deltas, no unbounded buffer, nothing lost). The first
    failure of any stream is raised; the readers stop when this generator is closed or finishes.
    """
    state = _Merge(choices)
    tasks = [asyncio.ensure_future(state.pump(pos)) for pos in range(len(choices))]
    tasks.append(asyncio.ensure_future(state.ticker(keepalive)))
    open_streams = set(range(len(choices)))
    try:
        while open_streams:
            if not (state.latest or state.failures or state.ping_due or state.ended & open_streams):
                state.wake.clear()
                await state.wake.wait()
            if state.latest:
                pos = min(state.latest)
                chunk = state.latest.pop(pos)
                state.produced += 1
                yield choices[pos], chunk
                continue
            if state.failures:
                raise state.failures[0]
            for pos in state.ended & open_streams:  # every chunk of these has been handed out
                open_streams.discard(pos)
                choices[pos].finish_reason = choices[pos].finish_reason or "stop"
            if state.ping_due and open_streams:
                state.ping_due = False
                yield None
    finally:
        await finish(_stop_readers(choices, tasks))


@dataclass
class StreamShape:
    """What every chunk of one streamed response shares."""

    rid: str
    created: int
    model: str
    include_usage: bool
    keepalive: float = 15.0
    logprobs_top: int | None = None  # chat: top_logprobs when logprobs were asked for
    completion_logprobs: bool = False
    usage: dict[str, int] = field(default_factory=dict)

    def chunk(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.rid,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "system_fingerprint": None,
        }
        if self.include_usage:
            data["usage"] = None
        return data


Render = Callable[[Choice, str], "dict[str, Any] | None"]


async def _events(
    shape: StreamShape, choices: list[Choice], obj: str, opening: bytes, render: Render
) -> AsyncGenerator[bytes, None]:
    """The SSE frames of one streamed response; `render(choice, new_text)` makes a choice's
    chunk body (None: nothing worth sending). Frames that are ready together go out in one
    write: the opening with the first chunk, the usage chunk with `[DONE]`."""
    pending = opening
    try:
        async for item in merged(choices, shape.keepalive):
            if item is None:
                yield pending + PING
                pending = b""
                continue
            choice, chunk = item
            if choice.finish_sent:
                continue
            body = render(choice, choice.absorb(chunk))
            if body is None:
                continue
            choice.finish_sent = choice.finish_reason is not None
            yield pending + sse(shape.chunk(obj, [body]))
            pending = b""
        for c in choices:  # a stream that ended without a finish chunk still gets one
            if not c.finish_sent and (body := render(c, "")) is not None:
                pending += sse(shape.chunk(obj, [body]))
        shape.usage = total_usage(choices)
        if shape.include_usage:
            pending += sse({**shape.chunk(obj, []), "usage": shape.usage})
    except Exception as exc:
        pending += sse_error(exc)
    yield pending + DONE


def chat_events(shape: StreamShape, choices: list[Choice]) -> AsyncGenerator[bytes, None]:
    """SSE frames of a streamed chat completion: a role delta per choice first (see the module docstring)."""
    obj = "chat.completion.chunk"
    opening = b"".join(
        sse(
            shape.chunk(
                obj,
                [
                    {
                        "index": c.index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            )
        )
        for c in choices
    )

    def render(choice: Choice, text: str) -> dict[str, Any] | None:
        logprobs = None
        if shape.logprobs_top is not None:
            logprobs = chat_logprobs(choice.new_logprobs(), shape.logprobs_top)
        if not text and not choice.finish_reason and not logprobs:
            return None
        delta = {"content": text} if text else {}
        return {
            "index": choice.index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }

    return _events(shape, choices, obj, opening, render)


def completion_events(shape: StreamShape, choices: list[Choice]) -> AsyncGenerator[bytes, None]:
    """SSE frames of a streamed (legacy) completion."""

    def render(choice: Choice, text: str) -> dict[str, Any] | None:
        logprobs = choice.new_logprobs() if shape.completion_logprobs else None
        if not text and not choice.finish_reason and not logprobs:
            return None
        return {
            "index": choice.index,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }

    return _events(shape, choices, "text_completion", b"", render)
