"""The web UI's handlers with a fake backend (no network, no model), and build_demo."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from camel_chat.serve import web_chat
from camel_chat.serve.errors import ErrorCode
from camel_chat.serve.protocol import GenerateChunk, error_chunk, frame_chunk
from camel_chat.serve.web_chat import (
    CURSOR,
    BackendError,
    ControllerBackend,
    GenParams,
    add_text,
    bot_response,
    clear_history,
    log_event,
    log_file,
    preselect,
    regenerate,
)


class FakeBackend:
    def __init__(self, words: list[str] | None = None, fail_after: int | None = None) -> None:
        self.words = words or ["Hello", " there", ",", " friend", "."]
        self.fail_after = fail_after
        self.calls: list[tuple[str, list[dict[str, str]], GenParams]] = []
        self.defaults = {"alpha": GenParams(temperature=0.2, top_p=0.9)}

    def list_models(self) -> list[str]:
        return ["alpha", "Tiny-Vicuna"]

    def generation_defaults(self, model: str) -> GenParams:
        return self.defaults.get(model, GenParams())

    def stream(self, model: str, messages: list[dict[str, str]], params: GenParams) -> Iterator[str]:
        self.calls.append((model, messages, params))
        text = ""
        for i, word in enumerate(self.words):
            if self.fail_after is not None and i == self.fail_after:
                raise BackendError("The model worker ran out of memory.", ErrorCode.CUDA_OUT_OF_MEMORY)
            text += word
            yield text


def test_add_text_appends_and_clears_input() -> None:
    history, box = add_text([], "  hi  ")
    assert history == [{"role": "user", "content": "hi"}] and box == ""
    assert add_text(history, "   ")[0] == history  # blank input adds nothing
    long, _ = add_text([], "x" * (web_chat.INPUT_CHAR_LEN_LIMIT + 50))
    assert len(long[0]["content"]) == web_chat.INPUT_CHAR_LEN_LIMIT


def test_streaming_accumulates_with_a_cursor_then_settles() -> None:
    backend = FakeBackend()
    history, _ = add_text([], "Say hello")
    frames = list(bot_response(backend, history, "alpha", "Be brief.", 0.3, 0.9, 64))
    replies = [f[-1]["content"] for f in frames]
    assert replies[0] == CURSOR
    assert replies[1:-1] == [
        "Hello▌",
        "Hello there▌",
        "Hello there,▌",
        "Hello there, friend▌",
        "Hello there, friend.▌",
    ]
    assert replies[-1] == "Hello there, friend."
    assert all(len(r) <= len(n) for r, n in itertools.pairwise(replies[1:-1]))  # grows
    model, messages, params = backend.calls[0]
    assert model == "alpha" and params == GenParams(0.3, 0.9, 64)
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


def test_gradio_content_parts_are_read_as_text() -> None:
    backend = FakeBackend(["ok"])
    history = [
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "reply"}]},
        {"role": "user", "content": "second"},
    ]
    *_, last = bot_response(backend, history, "alpha")
    assert last[-1] == {"role": "assistant", "content": "ok"}
    assert [m["content"] for m in backend.calls[0][1]] == ["first", "reply", "second"]


def test_regenerate_drops_the_last_reply_and_streams_a_new_one() -> None:
    backend = FakeBackend(["again"])
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "old"}]
    trimmed = regenerate(history)
    assert trimmed == [{"role": "user", "content": "q"}]
    *_, last = bot_response(backend, trimmed, "alpha")
    assert last == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "again"}]


def test_clear() -> None:
    assert clear_history() == ([], "")


def test_errors_are_words_with_the_code_never_tracebacks() -> None:
    history, _ = add_text([], "hi")
    *_, last = bot_response(FakeBackend(fail_after=2), history, "alpha")
    reply = last[-1]["content"]
    assert reply.startswith("Hello there")
    assert "ran out of memory" in reply and f"(error_code: {int(ErrorCode.CUDA_OUT_OF_MEMORY)})" in reply
    assert "Traceback" not in reply

    class Broken(FakeBackend):
        def stream(self, model: str, messages: list[dict[str, str]], params: GenParams) -> Iterator[str]:
            raise RuntimeError("secret internals")
            yield ""

    *_, last = bot_response(Broken(), history, "alpha")
    assert "Unexpected failure (RuntimeError)" in last[-1]["content"]
    assert "secret internals" not in last[-1]["content"] and "Traceback" not in last[-1]["content"]

    *_, last = bot_response(FakeBackend(), history, None)
    assert "Pick a model" in last[-1]["content"]


def test_turn_limit_refuses() -> None:
    history: list[dict[str, str]] = []
    for _ in range(web_chat.CONVERSATION_TURN_LIMIT + 1):
        history += [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    *_, last = bot_response(FakeBackend(), history[:-1], "alpha")
    assert last[-1]["content"] == web_chat.CONVERSATION_LIMIT_MSG


def test_votes_are_appended_to_the_dated_log(tmp_path: Path) -> None:
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    for kind in ("upvote", "downvote", "flag"):
        log_event(tmp_path, kind, "alpha", history, GenParams(0.5, 1.0, 128), conv_id="c1", ip="10.0.0.1")
    path = log_file(tmp_path)
    assert path.name.endswith("-conv.json") and len(path.name) == len("YYYY-MM-DD-conv.json")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["upvote", "downvote", "flag"]
    first = records[0]
    assert first["model"] == "alpha" and first["ip"] == "10.0.0.1"
    assert first["gen_params"] == {"temperature": 0.5, "top_p": 1.0, "max_new_tokens": 128}
    assert first["state"]["conv_id"] == "c1" and first["state"]["messages"] == history
    assert isinstance(first["tstamp"], float)


def test_preselect_from_query_params() -> None:
    models = ["alpha", "Tiny-Vicuna"]
    assert preselect(models, {"model": "tiny-vicuna"}) == "Tiny-Vicuna"
    assert preselect(models, {"model": "nope"}) == "alpha"
    assert preselect(models, {}) == "alpha"
    assert preselect([], {"model": "x"}) is None


def mock_httpx(monkeypatch: pytest.MonkeyPatch, handler: Any) -> None:
    """httpx.post and httpx.stream (what ControllerBackend calls) answered by `handler`."""
    transport = httpx.MockTransport(handler)

    def post(url: str, **kw: object) -> httpx.Response:
        kw.pop("trust_env", None)
        with httpx.Client(transport=transport) as client:
            return client.post(url, **kw)  # type: ignore[arg-type]

    def stream(method: str, url: str, **kw: object):  # type: ignore[no-untyped-def]
        kw.pop("trust_env", None)
        client = httpx.Client(transport=transport)
        return client.stream(method, url, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "post", post)
    monkeypatch.setattr(httpx, "stream", stream)


def test_controller_backend_reads_nul_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join(frame_chunk(GenerateChunk(text=t)) for t in ["He", "Hell", "Hello"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/get_worker_address":
            return httpx.Response(200, json={"address": "http://worker"})
        if request.url.path == "/worker_generate_stream":
            sent = json.loads(request.content)
            assert sent["messages"] == [{"role": "user", "content": "hi"}] and sent["echo"] is False
            # Left out, so that the worker applies the checkpoint's repetition penalty.
            assert "repetition_penalty" not in sent and sent["temperature"] == 0.7
            return httpx.Response(200, content=body)
        if request.url.path == "/list_models":
            return httpx.Response(200, json={"models": ["m"]})
        return httpx.Response(404)

    real_post, real_stream = httpx.post, httpx.stream
    mock_httpx(monkeypatch, handler)
    backend = ControllerBackend("http://controller")
    assert backend.list_models() == ["m"]
    assert list(backend.stream("m", [{"role": "user", "content": "hi"}], GenParams())) == [
        "He",
        "Hell",
        "Hello",
    ]

    body = frame_chunk(GenerateChunk(text="He")) + frame_chunk(error_chunk(50002, "CUDA out of memory"))
    with pytest.raises(BackendError) as caught:
        list(backend.stream("m", [{"role": "user", "content": "hi"}], GenParams()))
    assert caught.value.code == 50002 and "CUDA out of memory" in caught.value.message
    assert (real_post, real_stream) != (httpx.post, httpx.stream)


def test_controller_backend_generation_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's /model_details `sampling` over the documented 0.7 / 1.0: per model, null
    fields, a FastChat worker (no `sampling`), a failing worker and no worker at all (an unreachable
    controller: test_controller_backend_unreachable_is_a_word_error)."""
    details: dict[str, Any] = {
        "smol": {"context_length": 8192, "sampling": {"temperature": 0.2, "top_p": 0.9, "top_k": None}},
        "top-p-only": {"context_length": 512, "sampling": {"temperature": None, "top_p": 0.8}},
        "fastchat": {"context_length": 2048},
    }
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        if request.url.path == "/get_worker_address":
            return httpx.Response(200, json={"address": "" if model == "nobody" else f"http://w-{model}"})
        if request.url.path == "/model_details":
            asked.append(request.url.host)
            return httpx.Response(200, json=details[model]) if model in details else httpx.Response(500)
        return httpx.Response(404)

    mock_httpx(monkeypatch, handler)
    backend = ControllerBackend("http://controller")
    assert backend.generation_defaults("smol") == GenParams(temperature=0.2, top_p=0.9)
    assert backend.generation_defaults("top-p-only") == GenParams(temperature=0.7, top_p=0.8)
    for model in ("fastchat", "broken", "nobody"):
        assert backend.generation_defaults(model) == GenParams()
    assert asked == ["w-smol", "w-top-p-only", "w-fastchat", "w-broken"]  # each at its own worker


def test_sliders_follow_the_model() -> None:
    from camel_chat.serve.gradio_web_server import TEMPERATURE_MAX, _sliders

    backend = FakeBackend()
    backend.defaults["hot"] = GenParams(temperature=1.5)
    temperature, top_p = _sliders(backend, "alpha")
    assert (temperature.value, top_p.value, temperature.maximum) == (0.2, 0.9, TEMPERATURE_MAX)
    temperature, top_p = _sliders(backend, "Tiny-Vicuna")
    assert (temperature.value, top_p.value) == (0.7, 1.0)  # the documented defaults
    temperature, _ = _sliders(backend, "hot")
    assert temperature.value == 1.5 and temperature.maximum == 1.5  # widened, not clamped
    temperature, top_p = _sliders(backend, None)
    assert (temperature.value, top_p.value) == (0.7, 1.0)


def test_controller_backend_unreachable_is_a_word_error() -> None:
    with pytest.raises(BackendError) as caught:
        ControllerBackend("http://127.0.0.1:9").list_models()
    assert "Cannot reach the controller" in caught.value.user_text()
    assert ControllerBackend("http://127.0.0.1:9").generation_defaults("m") == GenParams()


def test_build_demo_builds(tmp_path: Path) -> None:
    import gradio as gr

    from camel_chat.serve.gradio_web_server import WebSettings, build_demo, build_parser

    demo = build_demo(FakeBackend(), WebSettings(log_dir=str(tmp_path)))
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"chatbot", "model_selector", "input_box", "send_btn", "stop_btn", "regen_btn", "clear_btn"} <= ids
    assert {"upvote_btn", "downvote_btn", "flag_btn", "system"} <= ids

    args = build_parser().parse_args(["--model-list-mode", "reload", "--api-base", "http://x/v1", "--share"])
    assert args.model_list_mode == "reload" and args.api_base == "http://x/v1" and args.share
    assert args.port == 7860 and args.concurrency_count == 10


def test_demo_serves_in_process(tmp_path: Path) -> None:
    """Launched with prevent_thread_lock on a loopback port, the page and the config answer."""
    import os

    from camel_chat.serve.gradio_web_server import WebSettings, build_demo, theme

    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"
    demo = build_demo(FakeBackend(), WebSettings(log_dir=str(tmp_path)))
    demo.queue().launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, theme=theme()
    )
    try:
        url = demo.local_url.rstrip("/")
        page = httpx.get(url, timeout=10, trust_env=False)
        assert page.status_code == 200 and "<html" in page.text.lower()
        config = httpx.get(f"{url}/config", timeout=10, trust_env=False).json()
        assert "fonts.googleapis.com" not in json.dumps(config.get("theme_css", ""))
    finally:
        demo.close()
