"""The Gradio web UI (spec §7.8).

    python -m camel_chat.serve.gradio_web_server --host 0.0.0.0 --port 7860 \\
        --controller-url http://localhost:21001 [--concurrency-count 10] \\
        [--model-list-mode once|reload] [--share] [--api-base URL [--api-key KEY]] [--log-dir DIR]

Without `--api-base` the UI lists models at the controller and streams from the workers; with it,
the UI sits on an OpenAI-compatible server (ours). The Temperature and Top P sliders start at the
selected model's defaults (its checkpoint's generation_config.json, through the worker's
/model_details; else 0.7 / 1.0) whenever the page loads or another model is picked; what the user
sets is what is sent. `build_demo(backend, settings)` returns the Blocks; the handlers live in
`camel_chat.serve.web_chat`. Analytics are off and the theme uses
system fonts, so neither the server nor the page contacts the internet (`--share` aside).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from camel_chat.serve.web_chat import (
    BackendError,
    ChatBackend,
    ControllerBackend,
    GenParams,
    History,
    OpenAIBackend,
    add_text,
    bot_response,
    clear_history,
    log_event,
    normalize,
    preselect,
    regenerate,
)

logger = logging.getLogger("camel_chat.serve.gradio_web_server")

TITLE = "# camel_chat"
LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
LOCAL_MONO = ["ui-monospace", "Consolas", "monospace"]
TEMPERATURE_MAX = 1.0
# Fine enough for what checkpoints recommend (0.95, 0.05), which a 0.1 step would round.
SAMPLING_STEP = 0.01


@dataclass
class WebSettings:
    model_list_mode: str = "once"  # "once": list at startup; "reload": on every page load
    log_dir: str = "."
    concurrency_count: int = 10


def theme() -> gr.themes.Base:
    """The default theme with system fonts only (the stock one loads Google Fonts)."""
    return gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO)


def _models(backend: ChatBackend) -> tuple[list[str], str]:
    try:
        return backend.list_models(), ""
    except BackendError as exc:
        return [], exc.user_text()


def _sliders(backend: ChatBackend, model: str | None) -> tuple[Any, Any]:
    """Temperature and Top P set to `model`'s defaults (the documented ones without a model)."""
    params = backend.generation_defaults(model) if model else GenParams()
    # A checkpoint may recommend a temperature above the usual range: widen it rather than clamp.
    temperature = gr.Slider(value=params.temperature, maximum=max(TEMPERATURE_MAX, params.temperature))
    return temperature, gr.Slider(value=params.top_p)


def build_demo(backend: ChatBackend, settings: WebSettings | None = None) -> gr.Blocks:
    """The chat UI on `backend`; nothing here is global, so several demos can coexist."""
    settings = settings or WebSettings()
    startup_models, startup_error = _models(backend)

    def on_load(request: gr.Request) -> tuple[Any, str, str, Any, Any]:
        models, error = (startup_models, startup_error)
        if settings.model_list_mode == "reload":
            models, error = _models(backend)
        params = dict(request.query_params) if request is not None else {}
        choice = preselect(models, params)
        notice = error or ("" if models else "No model is being served right now.")
        return gr.Dropdown(choices=models, value=choice), uuid.uuid4().hex, notice, *_sliders(backend, choice)

    def on_model(model: str | None) -> tuple[Any, Any]:
        return _sliders(backend, model)

    def respond(
        history: History, model: str, system: str, temperature: float, top_p: float, max_tokens: int,
        conv_id: str, request: gr.Request,
    ) -> Iterator[History]:  # fmt: skip
        start = time.time()
        out: History = normalize(history)
        for out in bot_response(backend, history, model, system, temperature, top_p, max_tokens):
            yield out
        if out and out[-1]["role"] == "assistant":
            _log("chat", out, model, system, temperature, top_p, max_tokens, conv_id, request, start)

    def _log(
        kind: str, history: Any, model: str, system: str, temperature: float, top_p: float, max_tokens: int,
        conv_id: str, request: gr.Request | None, start: float | None = None,
    ) -> str:  # fmt: skip
        ip = getattr(getattr(request, "client", None), "host", None) if request is not None else None
        try:
            log_event(
                settings.log_dir, kind, model, history,
                GenParams(float(temperature), float(top_p), int(max_tokens)),
                system_prompt=system, conv_id=conv_id, ip=ip, start=start,
                finish=time.time() if start is not None else None,
            )  # fmt: skip
        except OSError as exc:
            logger.warning("cannot write the conversation log: %s", exc)
            return f"Could not save your {kind}: the log is not writable."
        return ""

    def voter(kind: str, done: str) -> Any:
        def vote(
            history: History, model: str, system: str, temperature: float, top_p: float, max_tokens: int,
            conv_id: str, request: gr.Request,
        ) -> str:  # fmt: skip
            if not normalize(history):
                return "Nothing to vote on yet."
            return (
                _log(kind, history, model, system, temperature, top_p, max_tokens, conv_id, request) or done
            )

        return vote

    def clear() -> tuple[History, str, str, str]:
        history, text = clear_history()
        return history, text, uuid.uuid4().hex, ""

    with gr.Blocks(title="camel_chat", analytics_enabled=False) as demo:
        conv_id = gr.State("")
        gr.Markdown(TITLE)
        notice = gr.Markdown("", elem_id="notice")
        with gr.Row():
            model = gr.Dropdown(
                choices=startup_models, value=startup_models[0] if startup_models else None,
                label="Model", interactive=True, elem_id="model_selector", scale=3,
            )  # fmt: skip
        system = gr.Textbox(
            label="System prompt", placeholder="Optional system prompt", lines=1, elem_id="system"
        )
        chatbot = gr.Chatbot(
            label="Chat", elem_id="chatbot", height=420, buttons=["copy", "copy_all"], feedback_options=None
        )
        with gr.Row():
            textbox = gr.Textbox(
                show_label=False, placeholder="Type a message and press Enter", elem_id="input_box", scale=8
            )
            send_btn = gr.Button("Send", variant="primary", elem_id="send_btn", scale=1)
        with gr.Row():
            upvote_btn = gr.Button("Upvote", elem_id="upvote_btn")
            downvote_btn = gr.Button("Downvote", elem_id="downvote_btn")
            flag_btn = gr.Button("Flag", elem_id="flag_btn")
            stop_btn = gr.Button("Stop", elem_id="stop_btn")
            regen_btn = gr.Button("Regenerate", elem_id="regen_btn")
            clear_btn = gr.Button("Clear", elem_id="clear_btn")
        with gr.Accordion("Parameters", open=False):
            documented = GenParams()
            temperature = gr.Slider(
                0.0, TEMPERATURE_MAX, value=documented.temperature, step=SAMPLING_STEP,
                label="Temperature", elem_id="temperature",
            )  # fmt: skip
            top_p = gr.Slider(
                0.0, 1.0, value=documented.top_p, step=SAMPLING_STEP, label="Top P", elem_id="top_p"
            )
            max_tokens = gr.Slider(16, 1024, value=512, step=64, label="Max output tokens")

        gen_inputs = [chatbot, model, system, temperature, top_p, max_tokens, conv_id]
        limit = settings.concurrency_count
        events = []
        for trigger in (textbox.submit, send_btn.click):
            event = trigger(add_text, [chatbot, textbox], [chatbot, textbox], queue=False).then(
                respond, gen_inputs, [chatbot], concurrency_limit=limit, concurrency_id="generate"
            )
            events.append(event)
        events.append(
            regen_btn.click(regenerate, [chatbot], [chatbot], queue=False).then(
                respond, gen_inputs, [chatbot], concurrency_limit=limit, concurrency_id="generate"
            )
        )
        stop_btn.click(None, None, None, cancels=events)
        clear_btn.click(clear, None, [chatbot, textbox, conv_id, notice], cancels=events, queue=False)
        upvote_btn.click(voter("upvote", "Thanks for the upvote."), gen_inputs, [notice], queue=False)
        downvote_btn.click(voter("downvote", "Thanks for the feedback."), gen_inputs, [notice], queue=False)
        flag_btn.click(voter("flag", "Flagged, thank you."), gen_inputs, [notice], queue=False)
        # .input: the user picked a model; on_load sets the sliders for the one it preselects.
        model.input(on_model, [model], [temperature, top_p], queue=False)
        demo.load(on_load, None, [model, conv_id, notice, temperature, top_p], queue=False)
    return demo


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.serve.gradio_web_server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--controller-url", default="http://localhost:21001")
    p.add_argument("--concurrency-count", type=int, default=10)
    p.add_argument("--model-list-mode", choices=["once", "reload"], default="once")
    p.add_argument(
        "--share", action="store_true", help="create a public gradio.live link (contacts the internet)"
    )
    p.add_argument("--api-base", default=None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="key for --api-base")
    p.add_argument("--log-dir", default=os.environ.get("LOGDIR", "."), help="where YYYY-MM-DD-conv.json goes")
    return p


def make_backend(args: argparse.Namespace) -> ChatBackend:
    if args.api_base:
        return OpenAIBackend(args.api_base, args.api_key)
    backend = ControllerBackend(args.controller_url)
    try:
        backend.refresh()
    except BackendError as exc:
        logger.warning("%s", exc.user_text())
    return backend


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    settings = WebSettings(args.model_list_mode, args.log_dir, args.concurrency_count)
    demo = build_demo(make_backend(args), settings)
    demo.queue(default_concurrency_limit=args.concurrency_count).launch(
        server_name=args.host, server_port=args.port, share=args.share, show_error=False, theme=theme(),
        footer_links=[],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
