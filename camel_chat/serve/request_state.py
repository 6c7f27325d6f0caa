"""One generation request inside the transformers engine, and what its consumer may read of it.

    RequestState   written only by the engine thread: drawn tokens, incremental text, stop
                   conditions (stop token ids, stop strings, max_new_tokens), logprobs, and after
                   every token a new immutable `Snapshot`
    Snapshot       what the consumer (on the event loop) shows: the visible cumulative text (a tail
                   that may still become a stop string is held back until it is decided), the
                   completion token count and the finish reason

usage counts every drawn token, the stop token included; the text never contains the stop
token or the stop string.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from camel_chat.serve.detokenize import IncrementalDecoder, StopStrings
from camel_chat.serve.engine import GenerationLimits
from camel_chat.serve.errors import ErrorCode, InternalError, ServeError
from camel_chat.serve.sampling import Choice, SamplingParams

if TYPE_CHECKING:
    from camel_chat.serve.prompt_scoring import PromptLogprobs


@dataclass(frozen=True)
class Snapshot:
    """What a consumer may show: replaced, never mutated, by the engine thread."""

    text: str
    completion_tokens: int
    finish_reason: str | None
    logprobs: int  # entries of the sequence's logprob lists that belong to this snapshot


class RequestState:
    """One request in the engine. The engine thread writes it; the consumer reads `snapshot`."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        limits: GenerationLimits,
        stops: StopStrings,
        stop_ids: set[int],
        decoder: IncrementalDecoder,
        *,
        wants_prompt_logprobs: bool = False,
    ) -> None:
        self.prompt_ids = prompt_ids
        self.wants_prompt_logprobs = wants_prompt_logprobs  # echo + logprobs: score every prompt token
        self.prompt_logprobs: PromptLogprobs | None = None
        self.params = params
        self.max_new_tokens = limits.max_new_tokens
        self.stops = stops
        self.stop_ids = stop_ids
        self.decoder = decoder
        self.generator: Any = None
        self.output_ids: list[int] = []
        self.pending = -1  # the last drawn token, not yet in the KV cache
        self.text = ""
        self.finish_reason: str | None = None
        self.lp_tokens: list[str] = []
        self.lp_values: list[float | None] = []
        self.lp_top: list[dict[str, float]] = []
        self.lp_offsets: list[int] = []
        self.cancelled = False
        # The task reading this request's chunks: once it is done, nobody will read any more,
        # so the engine drops the row even if the generator was never closed.
        self.consumer: asyncio.Task[Any] | None = None
        self.error: BaseException | None = None
        self.snapshot: Snapshot | None = None
        self.event = asyncio.Event()

    @property
    def consumer_gone(self) -> bool:
        return self.consumer is not None and self.consumer.done()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.error is not None

    @property
    def scores_only(self) -> bool:
        """Needs no KV cache after its prompt: at most one new token, and prompt logprobs (or none
        at all). Such requests share one forward pass (`prompt_scoring.score_prompts`)."""
        return self.max_new_tokens <= 1 and (self.wants_prompt_logprobs or self.max_new_tokens == 0)

    def finish_without_tokens(self) -> None:
        """`max_new_tokens` 0 (echo): done once the prompt is scored."""
        self.finish_reason = "length"
        self.snapshot = Snapshot("", 0, self.finish_reason, 0)

    def accept(self, choice: Choice) -> None:
        """Record a drawn token: logprobs, text, stop conditions, a new snapshot."""
        token = choice.token
        self.output_ids.append(token)
        self.pending = token
        if choice.logprob is not None:
            self._record_logprob(choice)
        if token in self.stop_ids:
            self.finish_reason = "stop"  # the stop token counts as generated but adds no text
        else:
            grown_from = len(self.decoder.text)
            self.decoder.push(token)
            cut = self.stops.find(self.decoder.text, grown_from)
            self.text = self.decoder.text if cut is None else self.decoder.text[:cut]
            if cut is not None:
                self.finish_reason = "stop"
        if self.finish_reason is None and len(self.output_ids) >= self.max_new_tokens:
            self.decoder.flush()
            self.text = self.decoder.text
            self.finish_reason = "length"
        visible = self.text
        if self.finish_reason is None:
            visible = visible[: len(visible) - self.stops.partial(visible)]
        self.snapshot = Snapshot(visible, len(self.output_ids), self.finish_reason, len(self.lp_values))

    def _record_logprob(self, choice: Choice) -> None:
        decode = self.decoder.tokenizer.decode
        self.lp_offsets.append(len(self.decoder.text))
        self.lp_tokens.append(decode([choice.token]))
        self.lp_values.append(choice.logprob)
        self.lp_top.append({decode([t]): lp for t, lp in choice.top})

    def fail(self, exc: BaseException) -> None:
        self.error = exc

    def logprobs_dict(self, count: int, offset: int) -> dict[str, Any]:
        """FastChat's logprobs (cumulative, like the text) for the first `count` generated tokens,
        after the prompt's when they were asked for (`offset`: where the generated text starts)."""
        p = self.prompt_logprobs
        return {
            "text_offset": [*(p.text_offset if p else []), *(offset + o for o in self.lp_offsets[:count])],
            "tokens": [*(p.tokens if p else []), *self.lp_tokens[:count]],
            "token_logprobs": [*(p.token_logprobs if p else []), *self.lp_values[:count]],
            "top_logprobs": [*(p.top_logprobs if p else []), *self.lp_top[:count]],
        }


def as_serve_error(exc: BaseException) -> ServeError:
    if isinstance(exc, ServeError):
        return exc
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return InternalError(f"out of memory: {exc}", code=int(ErrorCode.CUDA_OUT_OF_MEMORY))
    return InternalError(f"{type(exc).__name__}: {exc}", code=int(ErrorCode.INTERNAL_ERROR))
