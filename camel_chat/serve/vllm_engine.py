"""The vLLM engine: our `Engine` interface over vLLM's `AsyncLLM`.

    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(model=path, ...))       # see vllm_worker.py
    engine = VllmEngine.build(llm, path, sampling_params_cls=vllm.SamplingParams)

Prompts are built here, not by vLLM: messages are rendered with the checkpoint's template (ours
through the one renderer, exact ids; a foreign model's chat_template otherwise) and handed to
vLLM as token ids. A request becomes `SamplingParams` (FastChat's vLLM worker mapping: greedy
means temperature 0 and top_p 1, top_p floored at 1e-5; stop strings = template's + request's,
stop token ids = template's + EOS + request's), vLLM's cumulative outputs become our chunks with
exact usage, and a consumer that stops iterating aborts the request in vLLM. `echo` with
`logprobs` maps to vLLM's `prompt_logprobs` (the prompt's entries come first, as the transformers
engine sends them); tested against a fake AsyncLLM only (vllm is not installed where this was written).

This module imports neither vllm nor torch: the `AsyncLLM` and the `SamplingParams` class are
handed in, which is also how the unit tests drive it with fakes.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from camel_chat.serve.engine import (
    ChatFormat,
    ChatFormatQueries,
    GenerationLimits,
    choose_template,
    context_length_of,
    default_model_names,
)
from camel_chat.serve.errors import BadRequest
from camel_chat.serve.prompt_scoring import PromptLogprobs, text_offsets
from camel_chat.serve.protocol import GenerateChunk, GenerateRequest, Usage
from camel_chat.serve.sampling import SamplingDefaults, SamplingParams

_request_ids = itertools.count()


def _generation_config(model_path: str | Path) -> Any:
    """The checkpoint's generation_config.json as a `GenerationConfig`; None if it has none."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(str(model_path))
    except (OSError, ValueError):
        return None


def _eos_ids(model_path: str | Path) -> list[int]:
    """The EOS ids in the checkpoint's generation_config.json (none if it has no such file)."""
    config = _generation_config(model_path)
    eos = None if config is None else config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


class VllmEngine(ChatFormatQueries):
    """An `AsyncLLM` (or anything with its `generate`/`abort`) behind the worker app."""

    def __init__(
        self,
        llm: Any,
        chat: ChatFormat,
        *,
        model_names: Sequence[str],
        context_length: int,
        sampling_params_cls: Any,
        sampling_defaults: SamplingDefaults | None = None,
    ) -> None:
        self.llm = llm
        self.sampling_defaults = sampling_defaults or SamplingDefaults()
        self.chat = chat
        self.tokenizer = chat.tokenizer
        self.model_names = list(model_names)
        self.context_length = context_length
        self.sampling_params_cls = sampling_params_cls
        self._running = 0
        self._counts = {"requests": 0, "aborted": 0}

    @classmethod
    def build(
        cls,
        llm: Any,
        model_path: str | Path,
        *,
        sampling_params_cls: Any,
        model_names: str | Sequence[str] | None = None,
        conv_template: str | None = None,
        context_length: int | None = None,
        trust_remote_code: bool = False,
    ) -> VllmEngine:
        """Load the tokenizer and template the one way and wrap `llm`."""
        from camel_chat.model.loader import load_tokenizer

        tokenizer = load_tokenizer(model_path, trust_remote_code=trust_remote_code, ensure_pad=False)
        template, source = choose_template(model_path, tokenizer, conv_template)
        chat = ChatFormat(tokenizer, template, _eos_ids(model_path), template_source=source)
        if context_length is None:
            config = getattr(llm, "model_config", None)
            context_length = getattr(config, "max_model_len", None) or context_length_of(
                getattr(config, "hf_config", None)
            )
        return cls(
            llm,
            chat,
            model_names=default_model_names(model_path, model_names),
            context_length=int(context_length),
            sampling_params_cls=sampling_params_cls,
            sampling_defaults=SamplingDefaults.from_generation_config(_generation_config(model_path)),
        )

    # ------------------------------------------------------------------ small queries

    def stats(self) -> dict[str, Any]:
        return {"engine": "vllm", "running": self._running, **self._counts}

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        raise BadRequest(
            "the vLLM worker does not serve embeddings; use model_worker for them", param="input"
        )

    # ------------------------------------------------------------------ generation

    def sampling_params(
        self,
        params: SamplingParams,
        limits: GenerationLimits,
        stops: list[str],
        stop_ids: set[int],
        *,
        prompt_logprobs: bool = False,
    ) -> Any:
        """vLLM `SamplingParams` for one request. vLLM needs at least one new token: a request for
        0 (echo, scoring the prompt) asks for 1 and drops it, as vLLM's own server does."""
        kwargs: dict[str, Any] = {
            "n": 1,
            "max_tokens": max(1, limits.max_new_tokens),
            "temperature": 0.0 if params.greedy else params.temperature,
            "top_p": 1.0 if params.greedy else max(params.top_p, 1e-5),
            "presence_penalty": params.presence_penalty,
            "frequency_penalty": params.frequency_penalty,
            "repetition_penalty": params.repetition_penalty,
            "stop": list(stops),
            "stop_token_ids": sorted(stop_ids),
            "skip_special_tokens": True,
            "include_stop_str_in_output": False,
        }
        if params.top_k > 0:
            kwargs["top_k"] = params.top_k
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.logprobs is not None:
            kwargs["logprobs"] = params.logprobs
            if prompt_logprobs:
                kwargs["prompt_logprobs"] = params.logprobs
        return self.sampling_params_cls(**kwargs)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        params = SamplingParams.from_request(request, self.sampling_defaults)
        prompt_ids = await asyncio.to_thread(self.chat.prompt_ids, request)
        limits = GenerationLimits.check(
            len(prompt_ids), request.max_new_tokens, self.context_length, echo=request.echo
        )
        stops, stop_ids = self.chat.stops_for(request)
        wants_prompt = request.echo and params.logprobs is not None
        sampling = self.sampling_params(params, limits, stops, stop_ids, prompt_logprobs=wants_prompt)
        prompt_part: PromptLogprobs | None = None
        echo = ""
        if request.echo:
            echo = request.prompt or self.tokenizer.decode(prompt_ids, skip_special_tokens=True)
        request_id = f"camel-chat-{next(_request_ids)}"
        stream = self.llm.generate({"prompt_token_ids": prompt_ids}, sampling, request_id)
        finished = scored = False
        self._running += 1
        self._counts["requests"] += 1
        try:
            async for output in stream:
                entries = getattr(output, "prompt_logprobs", None)
                if wants_prompt and prompt_part is None and entries is not None:
                    prompt_part = _prompt_logprobs(entries, prompt_ids, params, self.tokenizer)
                if limits.max_new_tokens == 0:  # scoring only: the prompt, not vLLM's one token
                    usage = Usage(prompt_tokens=limits.prompt_tokens, total_tokens=limits.prompt_tokens)
                    logprobs = _join(prompt_part, None) if params.logprobs is not None else None
                    scored = True  # vLLM's one token is aborted below; the consumer did not leave
                    yield GenerateChunk(text=echo, usage=usage, finish_reason="length", logprobs=logprobs)
                    return
                completion = output.outputs[0]
                finish = completion.finish_reason if output.finished else None
                tokens = len(completion.token_ids)
                usage = Usage(
                    prompt_tokens=limits.prompt_tokens,
                    completion_tokens=tokens,
                    total_tokens=limits.prompt_tokens + tokens,
                )
                logprobs = None
                if params.logprobs is not None:
                    generated = _fastchat_logprobs(completion, params.logprobs, len(echo))
                    logprobs = _join(prompt_part, generated)
                yield GenerateChunk(
                    text=echo + completion.text, usage=usage, finish_reason=finish, logprobs=logprobs
                )
                if output.finished:
                    finished = True
                    return
        finally:
            self._running -= 1
            if not finished:  # the consumer went away (or vLLM failed): free vLLM's slot now
                self._counts["aborted"] += 0 if scored else 1
                await _maybe_await(self.llm.abort(request_id))
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def aclose(self) -> None:
        shutdown = getattr(self.llm, "shutdown", None)
        if shutdown is not None:
            await _maybe_await(shutdown())


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _prompt_logprobs(entries: Any, ids: list[int], params: SamplingParams, tokenizer: Any) -> PromptLogprobs:
    """vLLM's `prompt_logprobs` (per prompt token: None first, then {id: Logprob} holding the prompt
    token and the top-k) in our prompt logprobs shape (see `prompt_scoring.PromptLogprobs`)."""
    top = params.logprobs or 0
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    for token, options in zip(ids, entries, strict=False):
        if not options:
            values.append(None)
            tops.append(None)
            continue
        chosen = options.get(token)
        values.append(getattr(chosen, "logprob", None))
        entry = {
            (lp.decoded_token or ""): lp.logprob
            for t, lp in options.items()
            if t != token and (getattr(lp, "rank", 1) or 1) <= top
        }
        if chosen is not None:
            entry[chosen.decoded_token or tokenizer.decode([token])] = chosen.logprob
        tops.append(entry)
    names = tokenizer.batch_decode([[t] for t in ids])
    return PromptLogprobs(names, values, tops, text_offsets(tokenizer, ids))


def _join(prompt: PromptLogprobs | None, generated: dict[str, Any] | None) -> dict[str, Any] | None:
    """The prompt's logprobs (when asked for) followed by the generated tokens'."""
    if prompt is None:
        return generated
    out = {
        "text_offset": list(prompt.text_offset),
        "tokens": list(prompt.tokens),
        "token_logprobs": list(prompt.token_logprobs),
        "top_logprobs": list(prompt.top_logprobs),
    }
    for key, values in (generated or {}).items():
        out[key] += values
    return out


def _fastchat_logprobs(completion: Any, top: int, offset: int) -> dict[str, Any] | None:
    """vLLM's per-token {id: Logprob} dicts as FastChat's cumulative logprobs."""
    entries = getattr(completion, "logprobs", None)
    if entries is None:
        return None
    out: dict[str, Any] = {"text_offset": [], "tokens": [], "token_logprobs": [], "top_logprobs": []}
    for token_id, options in zip(completion.token_ids, entries, strict=False):
        chosen = options.get(token_id)
        text = getattr(chosen, "decoded_token", None) or ""
        out["text_offset"].append(offset)
        out["tokens"].append(text)
        out["token_logprobs"].append(getattr(chosen, "logprob", None))
        ranked = sorted(options.values(), key=lambda lp: getattr(lp, "rank", 0) or 0)
        out["top_logprobs"].append(
            {(lp.decoded_token or ""): lp.logprob for lp in ranked if (getattr(lp, "rank", 1) or 1) <= top}
        )
        offset += len(text)
    return out
