"""Every JSON body the serving stack sends or receives, as pydantic models, plus the NUL stream framing.

Three planes:

    control plane   controller <-> workers      RegisterWorkerRequest, WorkerStatus, HeartBeat*, ...
    worker plane    clients -> a worker        GenerateRequest -> GenerateChunk stream (NUL-framed),
                                               CountToken*, ModelDetailsResponse (+ CheckpointSampling),
                                               Embeddings*
    OpenAI plane    apps -> the API server     ChatCompletion*, Completion*, Embedding*, ModelList,
                                               ErrorResponse

Requests are lenient: unknown fields are ignored and an explicit `null` means "use the default"
(real clients send both). Responses are strict models whose field names are the wire names.

Worker streams are FastChat's: each chunk is its JSON followed by one NUL byte, and `text` is
the CUMULATIVE output so far (clients diff against what they already sent). `frame_chunk` writes
one frame, `NulSplitter`/`aiter_chunks` read them back.

This module must never import torch or transformers (the controller and API server import it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Text FastChat shows users on any worker/controller failure (spec §7.2).
SERVER_ERROR_MSG = "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.**"
NUL = b"\0"


class LenientRequest(BaseModel):
    """Base of every request body: extra fields ignored, `null` treated as absent (-> default)."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


def _stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


# ---------------------------------------------------------------- control plane (FastChat controller)


class WorkerStatus(LenientRequest):
    model_names: list[str]
    speed: int = 1
    queue_length: int = 0


class RegisterWorkerRequest(LenientRequest):
    worker_name: str
    check_heart_beat: bool = True
    worker_status: WorkerStatus | None = None
    multimodal: bool = False


class HeartBeatRequest(LenientRequest):
    worker_name: str
    queue_length: int


class HeartBeatResponse(BaseModel):
    exist: bool


class GetWorkerAddressRequest(LenientRequest):
    model: str


class GetWorkerAddressResponse(BaseModel):
    address: str


class ListModelsResponse(BaseModel):
    models: list[str]


# ---------------------------------------------------------------- worker plane (FastChat worker)


class WorkerMessage(LenientRequest):
    """One chat message in our `GenerateRequest.messages` extension."""

    role: str
    content: str = ""


class GenerateRequest(LenientRequest):
    """Parameters of `/worker_generate(_stream)`; FastChat's names and defaults.

    Extensions (FastChat workers ignore them): `messages` — when present the worker renders them
    with ITS template (exact token ids, prompt built where the tokenizer lives) and `prompt` may be
    ""; `prompt_token_ids` — the prompt as token ids, used verbatim (nothing added). With `echo`
    and `logprobs`, the chunk's logprobs start with one entry per prompt token (the first one's
    logprob null); `max_new_tokens` 0 is allowed with `echo` (the prompt's logprobs only).
    """

    model: str | None = None
    prompt: str = ""
    messages: list[WorkerMessage] | None = None
    prompt_token_ids: list[int] | None = None
    # None: not given; the worker uses the checkpoint's generation_config.json, else 1.0/1.0/-1/1.0.
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_new_tokens: int = 256
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    echo: bool = True
    logprobs: int | None = None
    seed: int | None = None
    n: int = 1

    def stop_list(self) -> list[str]:
        """`stop` as a list of non-empty strings."""
        return _stop_list(self.stop)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class GenerateChunk(BaseModel):
    """One frame of a worker stream; `text` is cumulative. `error_code` 0 = success (ErrorCode)."""

    text: str
    error_code: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class CountTokenRequest(LenientRequest):
    prompt: str


class CountTokenResponse(BaseModel):
    count: int
    error_code: int = 0


class CheckpointSampling(BaseModel):
    """The sampling defaults a checkpoint's generation_config.json sets; null where it sets none
    (a request that leaves that field out then gets FastChat's default)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None


class ModelDetailsResponse(BaseModel):
    context_length: int
    # Our extension (FastChat clients ignore it): what the web UI starts its sliders at.
    sampling: CheckpointSampling | None = None


class EmbeddingsRequest(LenientRequest):
    model: str | None = None
    input: list[str]
    encoding_format: str | None = None


class EmbeddingsResponse(BaseModel):
    embedding: list[list[float]] | list[str]
    token_num: int


def frame_chunk(chunk: GenerateChunk | dict[str, Any]) -> bytes:
    """One stream frame: the chunk's JSON then a NUL byte."""
    data = chunk.model_dump() if isinstance(chunk, BaseModel) else chunk
    return json.dumps(data, ensure_ascii=False).encode() + NUL


def error_chunk(error_code: int, detail: str | None = None) -> GenerateChunk:
    """FastChat's error frame: the server error text, `(detail)` appended when given."""
    text = SERVER_ERROR_MSG if not detail else f"{SERVER_ERROR_MSG}\n\n({detail})"
    return GenerateChunk(text=text, error_code=error_code)


class NulSplitter:
    """Reassembles NUL-delimited frames from arbitrarily cut byte pieces; empty frames are skipped."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        *frames, self._buf = self._buf.split(NUL)
        return [f for f in frames if f.strip()]

    def rest(self) -> bytes:
        """Bytes after the last NUL (a final frame without terminator, or b"")."""
        rest, self._buf = self._buf, b""
        return rest if rest.strip() else b""


async def aiter_frames(pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Raw frames (bytes, no NUL) from a byte stream such as `httpx.Response.aiter_bytes()`."""
    splitter = NulSplitter()
    async for piece in pieces:
        for frame in splitter.feed(piece):
            yield frame
    rest = splitter.rest()
    if rest:
        yield rest


async def aiter_chunks(pieces: AsyncIterable[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Decoded chunk dicts from a NUL-framed byte stream."""
    async for frame in aiter_frames(pieces):
        yield json.loads(frame)


# ---------------------------------------------------------------- OpenAI plane (requests)


class StreamOptions(LenientRequest):
    include_usage: bool = False


class ChatMessage(LenientRequest):
    """An OpenAI chat message; `content` may be a string, a list of parts, or null."""

    # Any string parses here; the worker answers 400 for a role its template cannot render. The
    # OpenAPI document lists the ones it can (`developer` is read as `system`).
    role: str = Field(json_schema_extra={"enum": ["system", "developer", "user", "assistant"]})
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text: a string content, or its `text` parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")

    def has_non_text_parts(self) -> bool:
        return isinstance(self.content, list) and any(p.get("type", "text") != "text" for p in self.content)


class _SamplingFields(LenientRequest):
    """Fields chat and completions share; ranges follow OpenAI's (violations -> HTTP 400)."""

    model: str
    # None (not given): the served checkpoint's generation_config.json decides, else OpenAI's 1.0.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = None
    n: int = Field(1, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0)  # extension (FastChat /api/v1, vLLM)
    seed: int | None = None
    user: str | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, v: int | None) -> int | None:
        if v is not None and (v == 0 or v < -1):
            raise ValueError("top_k must be -1 (off) or >= 1")
        return v

    def stop_list(self) -> list[str]:
        return _stop_list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def requested_max_tokens(self) -> int | None:
        """`max_completion_tokens` wins over the deprecated `max_tokens`; None = up to the context."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    # OpenAI's default for completions; 0 with `echo` scores the prompt only (evaluation harnesses).
    max_tokens: int | None = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingRequest(LenientRequest):
    model: str | None = None  # may come from the path (/v1/engines/{model}/embeddings)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


# ---------------------------------------------------------------- OpenAI plane (responses)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None = None


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None = "stop"
    logprobs: ChatChoiceLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaMessage(BaseModel):
    role: str | None = None
    content: str | None = None


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: ChatChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """A streamed chunk; the include_usage chunk has `choices: []` (never null) and `usage` set."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class CompletionLogprobs(BaseModel):
    text_offset: list[int] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# Streamed completions use the same object name and shape (OpenAI does too).
CompletionChunk = CompletionResponse


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "camel_chat"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(default_factory=list)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorDetail
