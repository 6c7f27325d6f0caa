"""Chat with a model in the terminal: `python -m camel_chat.serve.cli`.

    python -m camel_chat.serve.cli --model-path CHECKPOINT [--device cpu] [--style rich]
    python -m camel_chat.serve.cli --api-base http://localhost:8000/v1 --model NAME [--api-key KEY]

Sampling: without --temperature, direct mode uses the checkpoint's generation_config.json
temperature/top_p (as vLLM does), else 0.7; API mode leaves it to the server (which does the same
for our servers). Greedy: --temperature 0.

Direct mode runs the checkpoint in this process (`TransformersEngine`, the worker's engine: same
template, same stop conditions); API mode talks to any OpenAI-compatible server with the
official `openai` client. Both stream.

Commands at the prompt: `!!exit`, `!!reset` (new conversation), `!!remove` (drop the last
exchange), `!!regen` (answer the last message again), `!!save FILE`, `!!load FILE` (conversation
JSON: {"template", "system", "messages": [{"role", "content"}]}). Empty input, `!!exit` or
Ctrl-D exit (status 0). Ctrl-C during a reply stops it and keeps what was said so far.

The loop (`chat_loop`) is separate from the terminal (`chat_io.ChatIO`, one class per --style)
and from the model (`Backend`: `stream(messages, temperature, max_new_tokens)` yields the
cumulative reply text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from camel_chat.errors import CamelChatError, run_command
from camel_chat.json_input import read_json
from camel_chat.serve.chat_io import ChatIO, make_chatio

USER, ASSISTANT = "USER", "ASSISTANT"


#: The temperature when neither --temperature nor the checkpoint's generation_config.json gives one.
DEFAULT_TEMPERATURE = 0.7


class Backend(Protocol):
    template_name: str | None

    def stream(
        self, messages: list[dict[str, str]], temperature: float | None, max_new_tokens: int
    ) -> Iterator[str]:
        """Cumulative reply texts (temperature None: the model's default). Closing the iterator
        early stops the generation."""
        ...


@dataclass
class Conversation:
    template: str | None = None
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"template": self.template, "system": self.system, "messages": list(self.messages)}

    @classmethod
    def from_json(cls, data: Any) -> Conversation:
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise ValueError('expected an object with a "messages" list')
        messages = []
        for i, m in enumerate(data["messages"]):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
                raise ValueError(f"messages[{i}] needs a role of user, assistant or system")
            messages.append({"role": m["role"], "content": str(m.get("content") or "")})
        system = data.get("system")
        return cls(data.get("template"), None if system is None else str(system), messages)

    def request_messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [dict(m) for m in self.messages]


# ---------------------------------------------------------------- backends


class DirectBackend:
    """A TransformersEngine run on a background event loop; Ctrl-C cancels the request."""

    def __init__(self, engine: Any) -> None:
        from camel_chat.serve.sampling import SamplingDefaults

        self.engine = engine
        # A request without a temperature gets the checkpoint's (generation_config.json), else 0.7.
        engine.sampling_defaults = SamplingDefaults.from_generation_config(
            getattr(engine.model, "generation_config", None),
            SamplingDefaults(temperature=DEFAULT_TEMPERATURE),
        )
        self.template_name = engine.template_name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="camel-chat-cli-loop", daemon=True)
        self._thread.start()

    def stream(
        self, messages: list[dict[str, str]], temperature: float | None, max_new_tokens: int
    ) -> Iterator[str]:
        from camel_chat.serve.protocol import GenerateRequest

        request = GenerateRequest(
            messages=messages, temperature=temperature, max_new_tokens=max_new_tokens, echo=False
        )
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        finished = threading.Event()

        async def pump() -> None:
            try:
                async for chunk in self.engine.generate(request):
                    items.put(("text", chunk.text))
                items.put(("end", None))
            except Exception as exc:
                items.put(("error", exc))
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                try:
                    kind, value = items.get(timeout=0.1)  # short waits: Ctrl-C gets through
                except queue.Empty:
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise CamelChatError(str(value)) from value
                yield value
        finally:
            if not finished.is_set():
                future.cancel()  # cancels the engine request (its row leaves the batch)
                finished.wait(5)

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.engine.aclose(), self.loop).result(10)
        except Exception:  # shutting down anyway
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


class ApiBackend:
    """Any OpenAI-compatible server, through the official client (streaming)."""

    def __init__(
        self, api_base: str, model: str, api_key: str | None = None, template: str | None = None
    ) -> None:
        import openai

        self.client = openai.OpenAI(base_url=api_base, api_key=api_key or "EMPTY")
        self.model = model
        self.template_name = template

    def stream(
        self, messages: list[dict[str, str]], temperature: float | None, max_new_tokens: int
    ) -> Iterator[str]:
        import openai

        # No --temperature: leave it out, so the server applies the model's generation config.
        sampling = {} if temperature is None else {"temperature": temperature}
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_new_tokens,
                stream=True,
                **sampling,
            )
        except openai.OpenAIError as exc:
            raise CamelChatError(f"API error: {exc}") from exc
        text = ""
        try:
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    yield text
        except openai.OpenAIError as exc:
            raise CamelChatError(f"API error: {exc}") from exc
        finally:
            response.close()

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------- the loop


def _generate(
    backend: Backend, chatio: ChatIO, conv: Conversation, temperature: float | None, max_new_tokens: int
) -> None:
    """Stream one reply into `conv` (what was shown so far when interrupted)."""
    latest = [""]
    texts = backend.stream(conv.request_messages(), temperature, max_new_tokens)

    def recorded() -> Iterator[str]:
        for text in texts:
            latest[0] = text
            yield text

    chatio.prompt_for_output(ASSISTANT)
    try:
        chatio.stream_output(recorded())
    except KeyboardInterrupt:
        chatio.interrupted()
    except CamelChatError as exc:
        chatio.info(f"error: {exc}")
        conv.messages.pop()  # the user message that got no answer; it can be sent again
        return
    finally:
        close = getattr(texts, "close", None)
        if close is not None:
            close()
    conv.messages.append({"role": "assistant", "content": latest[0].strip()})


def _command(line: str, conv: Conversation, chatio: ChatIO) -> str:
    """Run a `!!` command; returns "exit", "generate" or "" (prompt again)."""
    name, _, arg = line[2:].strip().partition(" ")
    arg = arg.strip()
    if name == "exit":
        return "exit"
    if name == "reset":
        conv.messages.clear()
        chatio.info("resetting...")
    elif name == "remove":
        if conv.messages and conv.messages[-1]["role"] == "assistant":
            conv.messages.pop()
        if conv.messages and conv.messages[-1]["role"] == "user":
            conv.messages.pop()
            chatio.info("removing last message...")
        else:
            chatio.info("No messages to remove.")
    elif name == "regen":
        if conv.messages and conv.messages[-1]["role"] == "assistant":
            conv.messages.pop()
        if conv.messages and conv.messages[-1]["role"] == "user":
            chatio.info("regenerating last message...")
            return "generate"
        chatio.info("No user message to regenerate from.")
    elif name == "save":
        if not arg:
            chatio.info("usage: !!save FILE")
            return ""
        try:
            Path(arg).write_text(json.dumps(conv.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        except OSError as exc:
            chatio.info(f"cannot save: {exc}")
        else:
            chatio.info(f"saving to {arg}...")
    elif name == "load":
        if not arg:
            chatio.info("usage: !!load FILE")
            return ""
        try:
            loaded = Conversation.from_json(read_json(arg))
        except (CamelChatError, ValueError) as exc:
            chatio.info(f"cannot load {arg}: {exc}")
            return ""
        if loaded.template and conv.template and loaded.template != conv.template:
            chatio.info(f"note: {arg} was saved with template {loaded.template}, now {conv.template}")
        conv.messages = loaded.messages
        conv.system = loaded.system if loaded.system is not None else conv.system
        chatio.info(f"loading {arg}...")
        for m in conv.messages:
            chatio.print_message(
                {"user": USER, "assistant": ASSISTANT}.get(m["role"], m["role"].upper()), m["content"]
            )
    else:
        chatio.info(f"unknown command !!{name}: !!exit !!reset !!remove !!regen !!save FILE !!load FILE")
    return ""


def chat_loop(
    backend: Backend,
    chatio: ChatIO,
    *,
    system: str | None = None,
    temperature: float | None = None,
    max_new_tokens: int = 512,
    conv: Conversation | None = None,
) -> Conversation:
    """Prompt, answer, repeat until empty input, `!!exit` or end of input."""
    conv = conv or Conversation(template=backend.template_name, system=system)
    while True:
        try:
            line = chatio.prompt_for_input(USER)
        except EOFError:
            line = ""
        except KeyboardInterrupt:  # at the prompt: a fresh prompt, as a shell does
            chatio.info("")
            continue
        if not line.strip():
            chatio.info("exit...")
            return conv
        try:
            if line.startswith("!!"):
                action = _command(line, conv, chatio)
                if action == "exit":
                    chatio.info("exit...")
                    return conv
                if action != "generate":
                    continue
            else:
                conv.messages.append({"role": "user", "content": line})
            _generate(backend, chatio, conv, temperature, max_new_tokens)
        except KeyboardInterrupt:  # between the prompt and the reply: the chat goes on
            chatio.interrupted()
            if conv.messages and conv.messages[-1]["role"] == "user":
                conv.messages.append({"role": "assistant", "content": ""})


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.serve.cli",
        description="Chat with a checkpoint in the terminal, or with an OpenAI server (--api-base).",
    )
    p.add_argument("--model-path", default="lmsys/vicuna-7b-v1.5", help="checkpoint folder or Hub id")
    p.add_argument(
        "--device", choices=("cpu", "cuda", "mps"), default=None, help="default: cuda if available"
    )
    p.add_argument("--gpus", default=None, help='visible GPUs, e.g. "0,2" (sets CUDA_VISIBLE_DEVICES)')
    p.add_argument("--num-gpus", type=int, default=1, help="split the model over this many GPUs")
    p.add_argument("--max-gpu-memory", default=None, help='per-GPU limit with --num-gpus > 1, e.g. "13GiB"')
    p.add_argument("--dtype", default=None, help="float32, float16, bfloat16 or auto")
    quant = p.add_mutually_exclusive_group()
    quant.add_argument("--load-8bit", action="store_true", help="8-bit weights (bitsandbytes)")
    quant.add_argument("--load-4bit", action="store_true", help="4-bit NF4 weights (bitsandbytes)")
    p.add_argument("--cpu-offloading", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own Python code")
    p.add_argument("--conv-template", default=None, help="template name (default: what the checkpoint says)")
    p.add_argument("--conv-system-msg", default=None, help="system message for the conversation")
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="default: the checkpoint's generation_config.json, else 0.7 (direct) or the server's default",
    )
    p.add_argument("--repetition_penalty", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--api-base", default=None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    p.add_argument("--model", default=None, help="model name at --api-base")
    p.add_argument("--api-key", default=None, help="key for --api-base (default: $OPENAI_API_KEY or EMPTY)")
    p.add_argument("--style", choices=("simple", "rich", "programmatic"), default="simple")
    p.add_argument("--multiline", action="store_true", help="messages end with Ctrl-D on an empty line")
    return p


def _run(argv: Sequence[str] | None) -> int:
    import os

    args = build_parser().parse_args(argv)
    backend: Any
    if args.api_base:
        if not args.model:
            raise CamelChatError("--api-base needs --model NAME")
        backend = ApiBackend(
            args.api_base, args.model, args.api_key or os.environ.get("OPENAI_API_KEY"), args.conv_template
        )
    else:
        from camel_chat.serve.hf_engine import TransformersEngine
        from camel_chat.serve.model_worker import _load_options

        print(f"loading {args.model_path}...", flush=True)
        engine = TransformersEngine.from_pretrained(
            args.model_path, conv_template=args.conv_template, max_batch_size=1, **_load_options(args)
        )
        backend = DirectBackend(engine)
    chatio = make_chatio(args.style, args.multiline)
    try:
        chat_loop(
            backend,
            chatio,
            system=args.conv_system_msg,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
        )
    finally:
        backend.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
