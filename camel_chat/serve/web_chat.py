"""The web UI's logic without Gradio: chat backends, event handlers and the conversation log.

Two backends stream a reply as CUMULATIVE text (each item is the whole reply so far):

    ControllerBackend   models from the controller's /list_models, replies from the worker's
                        /worker_generate_stream (our `messages` extension, NUL-framed chunks),
                        a model's sampling defaults from the worker's /model_details
    OpenAIBackend       models and streamed chat completions from an OpenAI-compatible server
                        (`--api-base`, the official `openai` client)

`generation_defaults(model)` is what the UI's sliders start at: the temperature and top_p the
model's checkpoint recommends (its generation_config.json), GenParams' documented 0.7 / 1.0 where
it recommends none or the backend cannot know (a FastChat worker, an OpenAI server).

Handlers are plain functions of the chat history (a list of `{"role", "content"}` dicts, the
Chatbot's "messages" format) and the user's input; `gradio_web_server.build_demo` wires them to
the UI and tests call them directly with a fake backend. Failures are raised as `BackendError`
and shown to the user as words plus `(error_code: N)`, never as tracebacks.

This module must not import gradio, torch or transformers.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from camel_chat.serve.errors import ErrorCode
from camel_chat.serve.protocol import SERVER_ERROR_MSG, ModelDetailsResponse, NulSplitter

INPUT_CHAR_LEN_LIMIT = 12000  # FastChat's default; longer input is truncated
CONVERSATION_TURN_LIMIT = 50  # user turns per conversation
CONVERSATION_LIMIT_MSG = (
    "YOU HAVE REACHED THE CONVERSATION LENGTH LIMIT. PLEASE CLEAR HISTORY AND START A NEW CONVERSATION."
)
CURSOR = "▌"
REQUEST_TIMEOUT = 100.0

History = list[dict[str, Any]]
log = logging.getLogger(__name__)


class BackendError(Exception):
    """A failure to show the user: `message` in words, `code` a FastChat error code."""

    def __init__(self, message: str, code: int = int(ErrorCode.GRADIO_REQUEST_ERROR)) -> None:
        super().__init__(message)
        self.message = message
        self.code = int(code)

    def user_text(self) -> str:
        return f"{self.message} (error_code: {self.code})"


@dataclass(frozen=True)
class GenParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512


class ChatBackend(Protocol):
    def list_models(self) -> list[str]: ...

    def generation_defaults(self, model: str) -> GenParams:
        """What the sliders start at for `model`; never raises (the documented defaults instead)."""
        ...

    def stream(self, model: str, messages: list[dict[str, str]], params: GenParams) -> Iterator[str]:
        """Yields the cumulative reply text; raises BackendError."""
        ...


# ---------------------------------------------------------------- backends


class ControllerBackend:
    """Models and replies through a FastChat-style controller and its workers."""

    def __init__(self, controller_url: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.controller_url = controller_url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            answer = httpx.post(f"{self.controller_url}{path}", json=body, timeout=10, trust_env=False)
            answer.raise_for_status()
            return answer.json() if answer.content else None
        except (httpx.HTTPError, ValueError) as exc:
            raise BackendError(
                f"Cannot reach the controller at {self.controller_url} ({type(exc).__name__}).",
                ErrorCode.GRADIO_REQUEST_ERROR,
            ) from exc

    def refresh(self) -> None:
        self._post("/refresh_all_workers")

    def list_models(self) -> list[str]:
        return list(self._post("/list_models").get("models", []))

    def _worker_address(self, model: str) -> str:
        address = (self._post("/get_worker_address", {"model": model}) or {}).get("address", "")
        if not address:
            raise BackendError(
                f"No worker serves the model {model!r} right now.", ErrorCode.CONTROLLER_NO_WORKER
            )
        return str(address)

    def generation_defaults(self, model: str) -> GenParams:
        """The worker's /model_details `sampling` (our extension) over GenParams' defaults."""
        documented = GenParams()
        try:
            address = self._worker_address(model)
            answer = httpx.post(
                f"{address}/model_details", json={"model": model}, timeout=10, trust_env=False
            )
            answer.raise_for_status()
            sampling = ModelDetailsResponse.model_validate(answer.json()).sampling
        except (BackendError, httpx.HTTPError, ValueError) as exc:  # pydantic's errors are ValueErrors
            log.info("sampling defaults of %r unknown, using 0.7 / 1.0: %s", model, exc)
            return documented
        if sampling is None:  # a FastChat worker
            return documented
        return replace(
            documented,
            temperature=documented.temperature if sampling.temperature is None else sampling.temperature,
            top_p=documented.top_p if sampling.top_p is None else sampling.top_p,
        )

    def stream(self, model: str, messages: list[dict[str, str]], params: GenParams) -> Iterator[str]:
        address = self._worker_address(model)
        # No repetition_penalty (nor top_k): the worker applies the checkpoint's own, else 1.0 (off).
        body = {
            "model": model,
            "prompt": "",
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
            "echo": False,
        }
        splitter = NulSplitter()
        try:
            with httpx.stream(
                "POST", f"{address}/worker_generate_stream", json=body, timeout=self.timeout, trust_env=False
            ) as answer:
                if answer.status_code != 200:
                    answer.read()
                    raise BackendError(
                        f"The model worker answered HTTP {answer.status_code}.",
                        ErrorCode.GRADIO_REQUEST_ERROR,
                    )
                for piece in answer.iter_bytes():
                    for frame in splitter.feed(piece):
                        yield _chunk_text(frame)
                rest = splitter.rest()
                if rest:
                    yield _chunk_text(rest)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"The model worker did not answer ({type(exc).__name__}).",
                ErrorCode.GRADIO_STREAM_UNKNOWN_ERROR,
            ) from exc


def _chunk_text(frame: bytes) -> str:
    try:
        chunk = json.loads(frame)
    except ValueError as exc:
        raise BackendError(
            "The model worker sent an unreadable reply.", ErrorCode.GRADIO_STREAM_UNKNOWN_ERROR
        ) from exc
    code = int(chunk.get("error_code", 0) or 0)
    if code:
        text = str(chunk.get("text", "")).replace(SERVER_ERROR_MSG, "").strip() or "The model worker failed."
        raise BackendError(text, code)
    return str(chunk.get("text", ""))


class OpenAIBackend:
    """Models and replies from an OpenAI-compatible server (our openai_api_server)."""

    def __init__(self, api_base: str, api_key: str | None = None, timeout: float = REQUEST_TIMEOUT) -> None:
        import openai

        self._openai = openai
        self.client = openai.OpenAI(
            base_url=api_base.rstrip("/"),
            api_key=api_key or "EMPTY",
            max_retries=0,
            timeout=timeout,
            http_client=httpx.Client(trust_env=False, timeout=timeout),
        )

    def _error(self, exc: Exception) -> BackendError:
        if isinstance(exc, self._openai.APIStatusError):
            try:
                detail = exc.body.get("message") if isinstance(exc.body, dict) else None
            except AttributeError:
                detail = None
            return BackendError(
                f"The API server refused the request: {detail or exc.message}", exc.status_code
            )
        if isinstance(exc, self._openai.APIConnectionError):
            return BackendError("Cannot reach the API server.", ErrorCode.GRADIO_REQUEST_ERROR)
        return BackendError(
            f"The API server failed ({type(exc).__name__}).", ErrorCode.GRADIO_STREAM_UNKNOWN_ERROR
        )

    def list_models(self) -> list[str]:
        try:
            return sorted(m.id for m in self.client.models.list().data)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc

    def generation_defaults(self, model: str) -> GenParams:
        """The documented defaults: the OpenAI API does not say what a model recommends."""
        return GenParams()

    def stream(self, model: str, messages: list[dict[str, str]], params: GenParams) -> Iterator[str]:
        text = ""
        try:
            chunks = self.client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                stream=True,
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    yield text
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc


# ---------------------------------------------------------------- handlers


def content_text(content: Any) -> str:
    """A Chatbot message's text: a string, a `{"text"}` part, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", content.get("value", "")))
    if isinstance(content, (list, tuple)):
        return "".join(content_text(part) for part in content)
    return str(getattr(content, "text", content))


def normalize(history: Sequence[Any] | None) -> History:
    """The history as plain `{"role", "content": str}` dicts."""
    out: History = []
    for message in history or []:
        if isinstance(message, dict):
            role, content = message.get("role", "user"), message.get("content")
        else:
            role, content = getattr(message, "role", "user"), getattr(message, "content", "")
        out.append({"role": str(role), "content": content_text(content)})
    return out


def add_text(history: Sequence[Any] | None, text: str) -> tuple[History, str]:
    """Appends the user's input (truncated to the char limit); returns (history, cleared input)."""
    history = normalize(history)
    text = (text or "").strip()[:INPUT_CHAR_LEN_LIMIT]
    if text:
        history.append({"role": "user", "content": text})
    return history, ""


def _request_messages(history: History, system_prompt: str) -> list[dict[str, str]]:
    messages = (
        [{"role": "system", "content": system_prompt.strip()}]
        if system_prompt and system_prompt.strip()
        else []
    )
    for m in history:
        if m["role"] in ("user", "assistant") and not m.get("error"):
            messages.append({"role": m["role"], "content": m["content"]})
    return messages


def _snapshot(history: History) -> History:
    """A copy per yield, so that streamed frames are distinct values."""
    return [dict(m) for m in history]


def bot_response(
    backend: ChatBackend,
    history: Sequence[Any] | None,
    model: str | None,
    system_prompt: str = "",
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
) -> Iterator[History]:
    """Streams the assistant's reply to the last user message: yields the history with the reply
    growing (a `▌` cursor while streaming); errors end the reply with words and the error code."""
    history = normalize(history)
    if not history or history[-1]["role"] != "user":
        yield _snapshot(history)
        return
    messages = _request_messages(history, system_prompt)
    history.append({"role": "assistant", "content": CURSOR})
    if sum(1 for m in history if m["role"] == "user") > CONVERSATION_TURN_LIMIT:
        history[-1]["content"] = CONVERSATION_LIMIT_MSG
        yield _snapshot(history)
        return
    if not model:
        history[-1]["content"] = BackendError("Pick a model first.", ErrorCode.INVALID_MODEL).user_text()
        yield _snapshot(history)
        return
    yield _snapshot(history)
    params = GenParams(float(temperature), float(top_p), int(max_new_tokens))
    text = ""
    try:
        for text in backend.stream(model, messages, params):
            history[-1]["content"] = text + CURSOR
            yield _snapshot(history)
    except BackendError as exc:
        history[-1]["content"] = (text + "\n\n" if text else "") + exc.user_text()
        yield _snapshot(history)
        return
    except Exception as exc:  # never show a traceback
        error = BackendError(
            f"Unexpected failure ({type(exc).__name__}).", ErrorCode.GRADIO_STREAM_UNKNOWN_ERROR
        )
        history[-1]["content"] = (text + "\n\n" if text else "") + error.user_text()
        yield _snapshot(history)
        return
    history[-1]["content"] = text.strip()
    yield _snapshot(history)


def regenerate(history: Sequence[Any] | None) -> History:
    """Drops the last assistant reply so that `bot_response` writes a new one."""
    history = normalize(history)
    while history and history[-1]["role"] == "assistant":
        history.pop()
    return history


def clear_history() -> tuple[History, str]:
    return [], ""


def preselect(models: Sequence[str], query_params: dict[str, str] | Any) -> str | None:
    """`?model=NAME` (case-insensitive) when served, else the first model."""
    wanted = (query_params or {}).get("model") if hasattr(query_params, "get") else None
    if wanted:
        for name in models:
            if name.lower() == str(wanted).lower():
                return name
    return models[0] if models else None


# ---------------------------------------------------------------- conversation log


def log_file(log_dir: str | Path, now: float | None = None) -> Path:
    day = datetime.datetime.fromtimestamp(now if now is not None else time.time())
    return Path(log_dir) / f"{day:%Y-%m-%d}-conv.json"


def log_event(
    log_dir: str | Path,
    kind: str,
    model: str | None,
    history: Sequence[Any] | None,
    gen_params: GenParams | dict[str, Any],
    *,
    system_prompt: str = "",
    conv_id: str | None = None,
    ip: str | None = None,
    start: float | None = None,
    finish: float | None = None,
) -> dict[str, Any]:
    """Appends one JSON line (chat/upvote/downvote/flag) to `<log_dir>/YYYY-MM-DD-conv.json`."""
    now = time.time()
    record: dict[str, Any] = {
        "tstamp": round(now, 4),
        "type": kind,
        "model": model,
        "gen_params": asdict(gen_params) if isinstance(gen_params, GenParams) else dict(gen_params),
        "start": round(start, 4) if start is not None else None,
        "finish": round(finish, 4) if finish is not None else None,
        "state": {
            "conv_id": conv_id or uuid.uuid4().hex,
            "model_name": model,
            "system_message": system_prompt,
            "messages": normalize(history),
        },
        "ip": ip,
    }
    path = log_file(log_dir, now)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record
