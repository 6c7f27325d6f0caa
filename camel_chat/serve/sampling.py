"""Choosing the next token for every row of a batch, each row with its own sampling parameters.

    SamplingDefaults  what a request that leaves temperature/top_p/top_k/repetition_penalty out
                      gets: the checkpoint's generation_config.json values (as vLLM does), else
                      FastChat's defaults (1.0, 1.0, off, 1.0)
    SamplingParams    a request's temperature/top_p/top_k/penalties/seed/logprobs, validated (400)
    choose_tokens     logits [rows, vocab] -> one `Choice` per row (token, logprob, top alternatives)

Order per row (FastChat's, plus OpenAI's penalties): repetition penalty over prompt + output,
presence/frequency penalties over the output, then greedy argmax (temperature < 1e-5 or
top_p < 1e-8) or temperature, top-k, top-p and a draw from the row's own `torch.Generator`
(seeded when the request has a seed, so a seeded request samples the same alone or batched).
Logprobs are those of the model's raw distribution (before penalties and temperature).
Greedy rows without penalties or logprobs share one argmax over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from camel_chat.serve.errors import BadRequest
from camel_chat.serve.protocol import GenerateRequest

if TYPE_CHECKING:
    import torch

MAX_LOGPROBS = 20


#: The generation_config.json keys that become defaults (vLLM reads the same ones).
GENERATION_CONFIG_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")


@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    #: The keys whose values a generation config set (the rest are the base's); equality ignores it.
    configured: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_generation_config(cls, config: Any, base: SamplingDefaults | None = None) -> SamplingDefaults:
        """`base` (default: FastChat's) overridden by what a `GenerationConfig` sets (only the
        values it sets, not transformers' own defaults such as top_k=50), or by the keys of a
        generation_config.json dict."""
        base = base or cls()
        if config is None:
            return base
        values = config.to_diff_dict() if hasattr(config, "to_diff_dict") else dict(config)
        given: dict[str, Any] = {}
        for key in GENERATION_CONFIG_KEYS:
            if values.get(key) is not None:
                given[key] = float(values[key]) if key != "top_k" else int(values[key])
        if given.get("top_k", 1) <= 0:
            given["top_k"] = -1
        configured = tuple(key for key in GENERATION_CONFIG_KEYS if key in given or key in base.configured)
        return replace(base, **given, configured=configured)

    def configured_values(self) -> dict[str, float | int]:
        """What the generation config set: the values of the `configured` keys."""
        return {key: getattr(self, key) for key in self.configured}


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's and k alternatives

    @classmethod
    def from_request(
        cls, request: GenerateRequest, defaults: SamplingDefaults | None = None
    ) -> SamplingParams:
        """The request's parameters, `defaults` for those it leaves out (None); out-of-range
        values raise `BadRequest` naming them."""
        d = defaults or SamplingDefaults()
        temperature = d.temperature if request.temperature is None else request.temperature
        top_p = d.top_p if request.top_p is None else request.top_p
        top_k = d.top_k if request.top_k is None else request.top_k
        repetition = (
            d.repetition_penalty if request.repetition_penalty is None else request.repetition_penalty
        )
        if temperature < 0:
            raise BadRequest(f"temperature must be >= 0, not {temperature}", param="temperature")
        if not 0 <= top_p <= 1:
            raise BadRequest(f"top_p must be in [0, 1], not {top_p}", param="top_p")
        if repetition <= 0:
            raise BadRequest(f"repetition_penalty must be > 0, not {repetition}", param="repetition_penalty")
        if request.logprobs is not None and not 0 <= request.logprobs <= MAX_LOGPROBS:
            raise BadRequest(
                f"logprobs must be in [0, {MAX_LOGPROBS}], not {request.logprobs}", param="logprobs"
            )
        return cls(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k if top_k > 0 else -1,
            repetition_penalty=repetition,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            seed=request.seed,
            logprobs=request.logprobs,
        )

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5 or self.top_p < 1e-8

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


class Row(Protocol):
    """What `choose_tokens` reads from a running sequence."""

    params: SamplingParams
    generator: Any  # torch.Generator | None
    prompt_ids: list[int]
    output_ids: list[int]


@dataclass(frozen=True)
class Choice:
    token: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


def _penalise(logits: torch.Tensor, row: Row) -> torch.Tensor:
    import torch

    p = row.params
    if p.repetition_penalty != 1.0:
        seen = torch.tensor(row.prompt_ids + row.output_ids, device=logits.device).unique()
        scores = logits[seen]
        scores = torch.where(scores < 0, scores * p.repetition_penalty, scores / p.repetition_penalty)
        logits = logits.index_put((seen,), scores)
    if (p.presence_penalty or p.frequency_penalty) and row.output_ids:
        ids = torch.tensor(row.output_ids, device=logits.device)
        counts = torch.bincount(ids, minlength=logits.shape[-1])[: logits.shape[-1]].to(logits.dtype)
        logits = logits - p.frequency_penalty * counts - p.presence_penalty * (counts > 0).to(logits.dtype)
    return logits


def _sample(logits: torch.Tensor, params: SamplingParams, generator: Any) -> int:
    import torch

    if params.temperature != 1.0:
        logits = logits / params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p (the first is always kept).
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p
        logits = logits.masked_fill(torch.empty_like(drop).scatter_(0, order, drop), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def choose_tokens(logits: torch.Tensor, rows: Sequence[Row]) -> list[Choice]:
    """One choice per row of `logits` (float, [len(rows), vocab])."""
    import torch

    greedy_ids = logits.argmax(dim=-1).tolist()
    choices: list[Choice] = []
    for i, row in enumerate(rows):
        p = row.params
        if p.greedy and not p.penalised and p.logprobs is None:
            choices.append(Choice(greedy_ids[i]))
            continue
        raw = logits[i]
        scores = _penalise(raw, row) if p.penalised else raw
        token = int(scores.argmax().item()) if p.greedy else _sample(scores, p, row.generator)
        if p.logprobs is None:
            choices.append(Choice(token))
            continue
        logprobs = torch.log_softmax(raw.float(), dim=-1)
        top: tuple[tuple[int, float], ...] = ()
        if p.logprobs > 0:
            values, ids = torch.topk(logprobs, p.logprobs)
            top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
        choices.append(Choice(token, float(logprobs[token].item()), top))
    return choices
