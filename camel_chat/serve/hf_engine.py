"""The transformers engine: dynamic batching over the one model loader.

    engine = TransformersEngine.from_pretrained("path/to/checkpoint", device="cpu")
    async for chunk in engine.generate(GenerateRequest(messages=[...], max_new_tokens=64, echo=False)):
        print(chunk.text)                       # cumulative; the last chunk has finish_reason + usage

How it runs. One scheduler task per engine (started on first use, in the running event loop)
alternates two kinds of steps, each executed on the engine's single worker thread so the event
loop never blocks:

    prefill   the waiting requests (up to `max_batch_size` running) run their prompts together in
              left-padded passes (`prefill`), draw their first tokens and join the batch's
              left-padded KV cache (`kv_batch.BatchCache`); prompt scoring has its own pass
    decode    ONE forward pass advances every running request by one token

so requests join and leave at step boundaries. A request leaves when it stops (stop token, stop
string, max_new_tokens) or when its consumer stops iterating (the client went away), or when the
task consuming it has ended without closing it: its row is dropped before the next step.
Consumers wait on an event and read an immutable snapshot, so a slow consumer skips
intermediate texts instead of queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from camel_chat.serve.detokenize import IncrementalDecoder, StopStrings
from camel_chat.serve.engine import (
    ChatFormat,
    ChatFormatQueries,
    GenerationLimits,
    choose_template,
    context_length_of,
    default_model_names,
)
from camel_chat.serve.errors import BadRequest, ErrorCode, ServiceUnavailable
from camel_chat.serve.kv_batch import BatchCache
from camel_chat.serve.prefill import prefill_groups, prefill_together
from camel_chat.serve.prompt_scoring import PromptLogprobs, score_groups, score_prompts
from camel_chat.serve.protocol import GenerateChunk, GenerateRequest, Usage
from camel_chat.serve.request_state import RequestState, Snapshot, as_serve_error
from camel_chat.serve.sampling import Choice, SamplingDefaults, SamplingParams, choose_tokens

log = logging.getLogger(__name__)
EMBED_BATCH_SIZE = 8


def _set_threads(num_threads: int | None) -> None:
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


class TransformersEngine(ChatFormatQueries):
    """A causal LM from `camel_chat.model.loader`, served with dynamic batching."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        chat: ChatFormat,
        *,
        model_names: Sequence[str],
        context_length: int | None = None,
        max_batch_size: int = 32,
        num_threads: int | None = None,
        sampling_defaults: SamplingDefaults | None = None,
        stream_interval: int = 1,
    ) -> None:
        import inspect

        self.model = model
        # What a request that leaves temperature/top_p/... out gets (the checkpoint's generation config).
        self.sampling_defaults = sampling_defaults or SamplingDefaults.from_generation_config(
            getattr(model, "generation_config", None)
        )
        self.tokenizer = tokenizer
        self.chat = chat
        self.model_names = list(model_names)
        self.context_length = context_length or context_length_of(model.config)
        self.max_batch_size = max_batch_size
        # FastChat's --stream-interval: a chunk every N new tokens (the first and last always),
        # fewer frames for the worker, the API server and the client to handle per token.
        self.stream_interval = max(1, stream_interval)
        self.device = model.get_input_embeddings().weight.device
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        accepts = inspect.signature(base.forward).parameters
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        # One thread runs every forward pass. `num_threads` sets its torch intra-op threads (set
        # in that thread: with OpenMP the setting is per calling thread); tiny models are
        # fastest with 1, big models on CPU want the cores.
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="camel-chat-engine", initializer=_set_threads, initargs=(num_threads,)
        )
        self._batch = BatchCache(self.device)
        self._running: list[RequestState] = []  # the batch's rows, in order (engine thread)
        self._waiting: deque[RequestState] = deque()  # (event loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closed = False
        self._counts = {
            "decode_steps": 0,
            "prefills": 0,
            "scored_batches": 0,
            "prefill_batches": 0,
            "generated_tokens": 0,
            "max_batch": 0,
        }

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        *,
        model_names: str | Sequence[str] | None = None,
        conv_template: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        bits: int = 16,
        device_map: Any = None,
        max_memory: dict | None = None,
        trust_remote_code: bool = False,
        max_batch_size: int = 32,
        num_threads: int | None = None,
        stream_interval: int = 1,
    ) -> TransformersEngine:
        """Load tokenizer, template and model the one way (`camel_chat.model.loader`)."""
        from camel_chat.model.loader import load_model, load_tokenizer

        # ensure_pad=False: serving pads itself, so the vocabulary stays exactly as trained.
        tokenizer = load_tokenizer(model_path, trust_remote_code=trust_remote_code, ensure_pad=False)
        template, source = choose_template(model_path, tokenizer, conv_template)
        model = load_model(
            model_path,
            dtype=dtype,
            device=device,
            bits=bits,
            device_map=device_map,
            max_memory=max_memory,
            trust_remote_code=trust_remote_code,
        )
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        chat = ChatFormat(tokenizer, template, eos_ids, template_source=source)
        if not chat.can_chat:
            log.warning("%s has no chat template: chat requests will fail; pass --conv-template", model_path)
        return cls(
            model,
            tokenizer,
            chat,
            model_names=default_model_names(model_path, model_names),
            max_batch_size=max_batch_size,
            num_threads=num_threads,
            stream_interval=stream_interval,
        )

    # ------------------------------------------------------------------ small queries

    def stats(self) -> dict[str, Any]:
        return {
            "running": len(self._running),
            "waiting": len(self._waiting),
            "max_batch_size": self.max_batch_size,
            **self._counts,
        }

    # ------------------------------------------------------------------ generation

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        params = SamplingParams.from_request(request, self.sampling_defaults)
        prompt_ids = await asyncio.to_thread(self.chat.prompt_ids, request)
        limits = GenerationLimits.check(
            len(prompt_ids), request.max_new_tokens, self.context_length, echo=request.echo
        )
        stops, stop_ids = self.chat.stops_for(request)
        echo = ""
        if request.echo:
            echo = request.prompt or self.tokenizer.decode(prompt_ids, skip_special_tokens=True)
        seq = RequestState(
            prompt_ids,
            params,
            limits,
            StopStrings(stops),
            stop_ids,
            IncrementalDecoder(self.tokenizer),
            wants_prompt_logprobs=request.echo and params.logprobs is not None,
        )
        seq.consumer = asyncio.current_task()
        self._submit(seq)
        shown: Snapshot | None = None
        try:
            while True:
                await seq.event.wait()
                seq.event.clear()
                if seq.error is not None:
                    raise as_serve_error(seq.error)
                snap = seq.snapshot
                if snap is None or snap is shown:
                    continue
                if (
                    shown is not None
                    and snap.finish_reason is None
                    and snap.completion_tokens - shown.completion_tokens < self.stream_interval
                ):
                    continue
                shown = snap
                logprobs = (
                    seq.logprobs_dict(snap.logprobs, len(echo)) if params.logprobs is not None else None
                )
                usage = Usage(
                    prompt_tokens=limits.prompt_tokens,
                    completion_tokens=snap.completion_tokens,
                    total_tokens=limits.prompt_tokens + snap.completion_tokens,
                )
                yield GenerateChunk(
                    text=echo + snap.text, usage=usage, finish_reason=snap.finish_reason, logprobs=logprobs
                )
                if snap.finish_reason is not None:
                    return
        finally:
            if not seq.done:  # the consumer left early: leave the batch at the next step
                seq.cancelled = True
                if self._wakeup is not None:
                    self._wakeup.set()

    def _submit(self, seq: RequestState) -> None:
        if self._closed:
            raise ServiceUnavailable("the engine is shut down")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            if self._loop is not None and self._loop is not loop:
                self._executor.submit(self._reset)  # rows left by a previous event loop
            self._loop, self._wakeup = loop, asyncio.Event()
            self._task = loop.create_task(self._schedule(), name="camel-chat-engine-scheduler")
        self._waiting.append(seq)
        assert self._wakeup is not None
        self._wakeup.set()

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            if not self._waiting and not self._running:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._drop_orphans()
            admitted: list[RequestState] = []
            while self._waiting and len(self._running) + len(admitted) < self.max_batch_size:
                seq = self._waiting.popleft()
                if not seq.cancelled:
                    admitted.append(seq)
            touched = admitted + self._running
            try:
                if admitted:
                    await loop.run_in_executor(self._executor, self._prefill, admitted)
                    self._notify(admitted)
                if self._running:
                    touched = list(self._running)
                    await loop.run_in_executor(self._executor, self._decode)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: fail what was in flight rather than hang it
                log.exception("engine step failed")
                for seq in touched:
                    if not seq.done:
                        seq.fail(exc)
                await loop.run_in_executor(self._executor, self._reset)
            self._notify(touched)

    def _drop_orphans(self) -> None:
        """Belt and braces: a request whose consumer task has ended leaves at the next step, even
        if nobody closed its generator (no slot or batch row is held for a dead request)."""
        for seq in (*self._waiting, *self._running):
            if not seq.done and not seq.cancelled and seq.consumer_gone:
                log.warning("dropping a request whose consumer is gone")
                seq.cancelled = True

    @staticmethod
    def _notify(seqs: Sequence[RequestState]) -> None:
        for seq in seqs:
            seq.event.set()

    def _reset(self) -> None:
        for seq in self._running:
            if not seq.done:
                seq.fail(ServiceUnavailable("generation was interrupted"))
        self._running = []
        self._batch.reset()

    def _generator(self, params: SamplingParams) -> Any:
        import torch

        if params.greedy:
            return None
        generator = torch.Generator(device=self.device)
        generator.manual_seed(params.seed if params.seed is not None else random.getrandbits(63))
        return generator

    def _prefill(self, seqs: list[RequestState]) -> None:
        """Engine thread: the newcomers' prompts, in as few forward passes as fit: scoring requests
        (no KV cache afterwards) share passes, generation requests share left-padded prefill
        passes, and a request that wants prompt logprobs prefills alone (all positions' logits)."""
        import torch

        live = [seq for seq in seqs if not seq.cancelled]
        scoring = [seq for seq in live if seq.scores_only]
        with torch.inference_mode():
            vocab = int(getattr(self.model.config, "vocab_size", 0) or len(self.tokenizer))
            for group in score_groups([len(s.prompt_ids) for s in scoring], vocab):
                rows = [scoring[i] for i in group]
                drawn = score_prompts(self.model, rows, self.device, self.tokenizer, self._generator)
                self._counts["prefills"] += len(rows)
                self._counts["scored_batches"] += 1
                self._counts["generated_tokens"] += drawn
            together = [seq for seq in live if not seq.scores_only and not seq.wants_prompt_logprobs]
            for group in prefill_groups([len(seq.prompt_ids) for seq in together]):
                self._prefill_together([together[i] for i in group])
            for seq in live:  # prompt logprobs need every position's logits: these prefill alone
                if seq.wants_prompt_logprobs and not seq.scores_only:
                    self._prefill_alone(seq)
        self._counts["max_batch"] = max(self._counts["max_batch"], len(self._running))

    def _prefill_alone(self, seq: RequestState) -> None:
        """Engine thread: one prompt alone (keeping every position's logits where it asks for
        prompt logprobs), its first token drawn, its row added to the batch."""
        import torch
        from transformers import DynamicCache

        try:
            ids = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self.device)
            keep = {} if seq.wants_prompt_logprobs else self._keep_last
            out = self.model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True, **keep)
            if seq.wants_prompt_logprobs:
                seq.prompt_logprobs = PromptLogprobs.compute(
                    out.logits[0], seq.prompt_ids, seq.params.logprobs or 0, self.tokenizer
                )
            seq.generator = self._generator(seq.params)
            seq.accept(choose_tokens(out.logits[:, -1, :].float(), [seq])[0])
        except Exception as exc:
            seq.fail(as_serve_error(exc))
            return
        self._counts["prefills"] += 1
        self._counts["generated_tokens"] += 1
        if seq.finish_reason is None:
            self._batch.add(out.past_key_values, len(seq.prompt_ids))
            self._running.append(seq)

    def _prefill_together(self, seqs: list[RequestState]) -> None:
        """Engine thread: the group's prompts in one left-padded pass; first tokens drawn; the
        rows join the batch. If the shared pass fails, each prompt is retried alone, so a bad
        request fails by itself."""
        if len(seqs) == 1:
            self._prefill_alone(seqs[0])
            return
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        try:
            prompts = [seq.prompt_ids for seq in seqs]
            logits, cache, mask = prefill_together(self.model, prompts, pad_id, self.device, self._keep_last)
        except Exception:
            log.warning("batched prefill of %d prompts failed; prefilling them one by one", len(seqs))
            for seq in seqs:
                self._prefill_alone(seq)
            return
        for seq in seqs:
            seq.generator = self._generator(seq.params)
        first = len(self._running)
        self._running.extend(seqs)
        self._batch.add_rows(cache, mask)
        self._counts["prefills"] += len(seqs)
        self._counts["prefill_batches"] += 1
        self._draw(logits, self._running[first:])
        self._keep([i for i, seq in enumerate(self._running) if not seq.done])

    def _decode(self) -> None:
        """Engine thread: drop cancelled rows, then one forward pass for all running sequences."""
        import torch

        self._keep([i for i, seq in enumerate(self._running) if not seq.cancelled])
        if not self._running:
            return
        with torch.inference_mode():
            try:
                ids = torch.tensor(
                    [[seq.pending] for seq in self._running], dtype=torch.long, device=self.device
                )
                mask, positions = self._batch.next_inputs()
                out = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=self._batch.cache,
                    use_cache=True,
                )
                self._batch.advance(mask)
                logits = out.logits[:, -1, :].float()
            except Exception as exc:  # the shared forward failed (e.g. out of memory): all rows fail
                error = as_serve_error(exc)
                for seq in self._running:
                    seq.fail(error)
                self._running = []
                self._batch.reset()
                return
            self._draw(logits)
        self._counts["decode_steps"] += 1
        self._keep([i for i, seq in enumerate(self._running) if not seq.done])

    def _draw(self, logits: Any, seqs: Sequence[RequestState] | None = None) -> None:
        """Each row's next token (rows = `seqs`, default the running batch); a row whose
        sampling fails (e.g. NaN scores) fails alone."""
        seqs = self._running if seqs is None else seqs
        choices: list[Choice | None]
        try:
            choices = list(choose_tokens(logits, seqs))
        except Exception:
            choices = []
            for i, seq in enumerate(seqs):
                try:
                    choices += choose_tokens(logits[i : i + 1], [seq])
                except Exception as exc:
                    seq.fail(as_serve_error(exc))
                    choices.append(None)
        for seq, choice in zip(seqs, choices, strict=True):
            if choice is not None:
                seq.accept(choice)
                self._counts["generated_tokens"] += 1

    def _keep(self, rows: list[int]) -> None:
        if len(rows) != len(self._running):
            self._batch.keep(rows)
            self._running = [self._running[i] for i in rows]

    # ------------------------------------------------------------------ embeddings

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Mean-pooled, L2-normalised last hidden states (FastChat's worker), and the token count."""
        encoded = await asyncio.to_thread(lambda: [self.chat.encode_prompt(t) for t in texts])
        for i, ids in enumerate(encoded):
            if not ids:
                raise BadRequest(f"input[{i}] is empty", param="input")
            if len(ids) > self.context_length:
                raise BadRequest(
                    f"input[{i}] has {len(ids)} tokens; this model's maximum context length is "
                    f"{self.context_length} tokens",
                    code=int(ErrorCode.CONTEXT_OVERFLOW),
                    param="input",
                )
        if self._closed:
            raise ServiceUnavailable("the engine is shut down")
        vectors = await asyncio.get_running_loop().run_in_executor(self._executor, self._embed, encoded)
        return vectors, sum(len(ids) for ids in encoded)

    def _embed(self, encoded: list[list[int]]) -> list[list[float]]:
        import torch

        vectors: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), EMBED_BATCH_SIZE):
                batch = encoded[start : start + EMBED_BATCH_SIZE]
                width = max(len(ids) for ids in batch)
                ids = torch.zeros(len(batch), width, dtype=torch.long, device=self.device)
                mask = torch.zeros(len(batch), width, dtype=torch.long, device=self.device)
                for row, seq in enumerate(batch):
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                out = self.model(
                    input_ids=ids, attention_mask=mask, output_hidden_states=True, **self._keep_last
                )
                hidden = out.hidden_states[-1].float()
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
                vectors += torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()
        return vectors

    # ------------------------------------------------------------------ shutdown

    async def aclose(self) -> None:
        """Stop the scheduler, fail whatever is still queued or running, end the engine thread."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        stranded = [*self._waiting, *self._running]
        for seq in self._waiting:
            seq.fail(ServiceUnavailable("the engine is shut down"))
        self._waiting.clear()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._reset)
        self._notify(stranded)
        self._executor.shutdown(wait=True)

    def close(self) -> None:
        """Synchronous shutdown (no event loop running): end the engine thread."""
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
