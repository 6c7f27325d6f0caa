"""The `Engine` interface the worker app serves, and `ChatFormat`: how one tokenizer's prompts are built.

    Engine            what `model_worker.make_app` needs from a backend (transformers: `hf_engine`,
                      vLLM: `vllm_engine`): generate a stream of cumulative chunks with exact usage,
                      count tokens, embed, describe the template
    ChatFormat        the prompt side, shared by both engines: the template a checkpoint carries
                      (`resolve_template`), messages -> exact prompt ids (our templates through the one
                      renderer + SegmentEncoder; foreign models through `tokenizer.apply_chat_template`),
                      raw prompts -> ids, the stop strings and stop token ids, FastChat's conv dict
    GenerationLimits  a request's prompt checked against the context (400 naming the limit) and
                      its max_new_tokens clamped to what is left

Nothing here imports torch; transformers only through the tokenizer object handed in.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from camel_chat.serve.errors import BadRequest, ErrorCode
from camel_chat.serve.protocol import GenerateChunk, GenerateRequest
from camel_chat.serve.sampling import SamplingDefaults

#: Config keys that hold a model's context length, in the order FastChat HEAD reads them.
CONTEXT_LENGTH_KEYS = (
    "max_position_embeddings",
    "max_sequence_length",
    "seq_length",
    "max_seq_len",
    "model_max_length",
)
DEFAULT_CONTEXT_LENGTH = 2048
#: What a checkpoint without any template is served with, by config `model_type` (FastChat serves
#: LLaMA-family models with the Vicuna template); other model types get FastChat's default.
FALLBACK_BY_MODEL_TYPE = {"llama": "vicuna_v1.1"}
DEFAULT_FALLBACK_TEMPLATE = "one_shot"
log = logging.getLogger(__name__)
#: FastChat HEAD's `SeparatorStyle` values, for `/worker_get_conv_template`.
_ADD_COLON_SINGLE, _ADD_COLON_TWO, _NO_COLON_SINGLE, _LLAMA2, _CHATML = 1, 2, 4, 7, 10


class Engine(Protocol):
    """A generation backend behind the worker app."""

    model_names: list[str]
    context_length: int
    template_name: str | None
    #: what a request that leaves temperature/top_p/top_k/repetition_penalty out gets
    sampling_defaults: SamplingDefaults

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        """Chunks with the cumulative text and exact usage; the last one has a finish_reason.

        Bad input raises `BadRequest` before the first chunk. Stopping iteration early (the
        client went away) cancels the request and frees its place in the batch.
        """
        ...

    def count_tokens(self, prompt: str) -> int: ...

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """One L2-normalised vector per text, and the number of tokens read."""
        ...

    def render_messages(self, messages: Sequence[Any]) -> list[int]: ...

    def conv_template(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def context_length_of(config: Any) -> int:
    """A model config's context length (× its rope scaling factor), else 2048 (FastChat HEAD)."""
    scaling = getattr(config, "rope_scaling", None) or {}
    factor = scaling.get("factor", 1) if isinstance(scaling, Mapping) else 1
    for key in CONTEXT_LENGTH_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return int(value * (factor or 1))
    return DEFAULT_CONTEXT_LENGTH


def default_model_names(model_path: str | Path, names: str | Sequence[str] | None) -> list[str]:
    """`--model-names a,b` as a list, else the last component of the model path."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    if names:
        return [n for n in names if n]
    return [str(model_path).rstrip("/").split("/")[-1]]


def resolve_template(model_path: str | Path, tokenizer: Any, override: str | None = None) -> str | None:
    """The camel_chat template to serve with (see `choose_template`); None means "use the
    tokenizer's chat_template" (or, for a model without any config, "none: chat is refused")."""
    return choose_template(model_path, tokenizer, override)[0]


def choose_template(
    model_path: str | Path, tokenizer: Any, override: str | None = None
) -> tuple[str | None, str]:
    """(template name, where it came from), the first that applies:

    "override"        `--conv-template`
    "checkpoint"      our metadata, or the camel/vicuna path rule (FastChat's old fallback)
    "tokenizer"       None: the tokenizer's own chat_template
    "fallback"        no template anywhere: `FALLBACK_BY_MODEL_TYPE` for the config's model_type
                      (`vicuna_v1.1` for LLaMA), else FastChat's default `one_shot`; logged once
    "none"            None: not even a config to go by (chat requests get a 400)
    """
    from camel_chat.model.checkpoint import template_for_checkpoint
    from camel_chat.templates import get_template

    if override:
        get_template(override)  # an unknown name fails now, naming the known ones
        return override, "override"
    name = template_for_checkpoint(model_path, tokenizer)
    if name is not None:
        return name, "checkpoint"
    if getattr(tokenizer, "chat_template", None):
        return None, "tokenizer"
    model_type = model_type_of(model_path)
    if model_type is None:
        return None, "none"
    name = FALLBACK_BY_MODEL_TYPE.get(model_type, DEFAULT_FALLBACK_TEMPLATE)
    log.warning(
        "%s has no chat template (no camel_chat metadata, no tokenizer chat_template): serving it with "
        "the fallback template %r for model_type %r; pass --conv-template NAME to choose another",
        model_path,
        name,
        model_type,
    )
    return name, "fallback"


def model_type_of(model_path: str | Path) -> str | None:
    """The `model_type` of the checkpoint's config (transformers' AutoConfig), None if unreadable."""
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(str(model_path)), "model_type", None) or None
    except (OSError, ValueError, KeyError):
        return None


def _message_parts(messages: Iterable[Any]) -> list[tuple[str, str]]:
    parts = []
    for i, message in enumerate(messages):
        if isinstance(message, Mapping):
            role, content = message.get("role"), message.get("content")
        else:
            role, content = getattr(message, "role", None), getattr(message, "content", None)
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise BadRequest(f"messages[{i}]: unsupported role {role!r}", param="messages")
        parts.append((str(role), "" if content is None else str(content)))
    return parts


def split_system(messages: Iterable[Any]) -> tuple[str | None, list[tuple[str, str]]]:
    """(system text or None, the user/assistant messages). Leading system messages are joined;
    a system message after the first user/assistant message is a 400."""
    parts = _message_parts(messages)
    systems: list[str] = []
    while parts and parts[0][0] == "system":
        systems.append(parts.pop(0)[1])
    for role, _ in parts:
        if role == "system":
            raise BadRequest("a system message may only come before the other messages", param="messages")
    if not parts:
        raise BadRequest("messages must contain a user message", param="messages")
    return ("\n\n".join(systems) if systems else None), parts


class ChatFormat:
    """Prompt building and stop conditions for one tokenizer and template (None: its chat_template)."""

    def __init__(
        self,
        tokenizer: Any,
        template_name: str | None,
        eos_token_ids: Iterable[int] = (),
        *,
        template_source: str | None = None,
    ) -> None:
        from camel_chat.model.checkpoint import stop_token_ids
        from camel_chat.templates import SegmentEncoder, SpecialTokens, get_template

        self.tokenizer = tokenizer
        self.template_name = template_name
        self.template_source = template_source  # see `choose_template`
        self.template = get_template(template_name) if template_name else None
        self.special = SpecialTokens.of(tokenizer)
        ids = list(eos_token_ids)
        if self.template is not None:
            self.stop_strings = self.template.stop_strings(self.special)
            ids = stop_token_ids(self.template, tokenizer) + ids
            self._encoder: Any = SegmentEncoder(tokenizer)
        else:
            self.stop_strings = []
            if tokenizer.eos_token_id is not None:
                ids.append(tokenizer.eos_token_id)
        self.stop_token_ids: list[int] = list(dict.fromkeys(ids))

    @property
    def can_chat(self) -> bool:
        return self.template is not None or bool(getattr(self.tokenizer, "chat_template", None))

    def render_messages(self, messages: Sequence[Any]) -> list[int]:
        """Prompt ids for OpenAI-style messages, ending in the generation prompt."""
        system, parts = split_system(messages)
        if self.template is not None:
            from camel_chat.conversation import Conversation, Message
            from camel_chat.templates import render

            conversation = Conversation(tuple(Message(r, c) for r, c in parts), system)  # type: ignore[arg-type]
            # check=False: any order the template can render (a system message followed by an
            # assistant message is something real clients send).
            segments = render(
                self.template, conversation, add_generation_prompt=True, special=self.special, check=False
            )
            return list(self._encoder.encode(segments).input_ids)
        if not self.can_chat:
            raise BadRequest(
                "this model has no chat template: start the worker with --conv-template NAME",
                param="messages",
            )
        chat = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": r, "content": c} for r, c in parts
        ]
        try:
            text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja2 TemplateError (raise_exception in the template) and kin
            raise BadRequest(f"the model's chat template cannot render these messages: {exc}") from exc
        # The template writes the special tokens (BOS included) itself.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, prompt: str) -> list[int]:
        """Ids of a raw prompt, as FastChat's worker counts them (the tokenizer's BOS included,
        once: a prompt that already starts with the BOS text does not get a second one)."""
        ids = list(self.tokenizer(prompt)["input_ids"])
        bos = self.tokenizer.bos_token_id
        if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        return ids

    def prompt_ids(self, request: GenerateRequest) -> list[int]:
        """The request's prompt ids: its `messages` rendered with our template, else its
        `prompt_token_ids` verbatim (each checked against the vocabulary), else its `prompt`."""
        if request.messages:
            return self.render_messages(request.messages)
        if request.prompt_token_ids is not None:
            return self.check_token_ids(request.prompt_token_ids)
        if not request.prompt:
            raise BadRequest("the request has neither a prompt nor messages", param="prompt")
        return self.encode_prompt(request.prompt)

    def check_token_ids(self, ids: Sequence[int]) -> list[int]:
        """`ids` as a list; 400 when empty or when an id is outside the tokenizer's vocabulary."""
        if not ids:
            raise BadRequest("the prompt has no tokens", param="prompt")
        size = len(self.tokenizer)
        bad = next((t for t in ids if not 0 <= t < size), None)
        if bad is not None:
            raise BadRequest(f"token id {bad} is outside the vocabulary (0..{size - 1})", param="prompt")
        return list(ids)

    def stops_for(self, request: GenerateRequest) -> tuple[list[str], set[int]]:
        """Stop strings and stop token ids: the template's and EOS, plus the request's."""
        strings = list(dict.fromkeys([*self.stop_strings, *request.stop_list()]))
        return strings, {*self.stop_token_ids, *(request.stop_token_ids or [])}

    def conv_template(self) -> dict[str, Any]:
        """FastChat's `/worker_get_conv_template` body (plus `template` and `chat_template`)."""
        conv = _fastchat_conv(self.template_name, self.template, self.special)
        conv["stop_token_ids"] = list(self.stop_token_ids)
        conv["template"] = self.template_name
        conv["template_source"] = self.template_source
        conv["chat_template"] = getattr(self.tokenizer, "chat_template", None)
        return {"conv": conv}


def _fastchat_conv(name: str | None, template: Any, special: Any) -> dict[str, Any]:
    """FastChat's Conversation fields for our templates; a generic one for a foreign chat_template."""
    system = template.default_system if template is not None else ""
    conv: dict[str, Any] = {
        "name": name or "chat_template",
        "system_template": "{system_message}",
        "system_message": system,
        "system_message_vision": "",
        "roles": ["user", "assistant"],
        "messages": [],
        "offset": 0,
        "sep_style": _ADD_COLON_SINGLE,
        "sep": "\n",
        "sep2": None,
        "stop_str": None,
        "max_image_size_mb": None,
    }
    if name == "vicuna_v1.1":
        conv.update(roles=["USER", "ASSISTANT"], sep_style=_ADD_COLON_TWO, sep=" ", sep2=special.eos)
    elif name == "one_shot":
        examples = [[("Human" if r == "user" else "Assistant"), c] for r, c in template.examples]
        conv.update(
            roles=["Human", "Assistant"],
            messages=examples,
            offset=len(examples),
            sep="\n### ",
            stop_str="###",
        )
    elif name == "chatml":
        conv.update(
            system_template="<|im_start|>system\n{system_message}",
            roles=["<|im_start|>user", "<|im_start|>assistant"],
            sep_style=_CHATML,
            sep="<|im_end|>",
            stop_str=["<|endoftext|>", "<|im_end|>"],
        )
    elif name == "llama-2":
        conv.update(
            system_template="[INST] <<SYS>>\n{system_message}\n<</SYS>>\n\n",
            roles=["[INST]", "[/INST]"],
            sep_style=_LLAMA2,
            sep=" ",
            sep2=f" {special.eos}{special.bos}",
        )
    elif name == "baichuan2":
        conv.update(roles=["<reserved_106>", "<reserved_107>"], sep_style=_NO_COLON_SINGLE, sep="")
    return conv


class ChatFormatQueries:
    """The Engine queries answered by the engine's `ChatFormat` alone (shared by every engine)."""

    chat: ChatFormat

    @property
    def template_name(self) -> str | None:
        return self.chat.template_name

    def count_tokens(self, prompt: str) -> int:
        return len(self.chat.encode_prompt(prompt))

    def render_messages(self, messages: Sequence[Any]) -> list[int]:
        return self.chat.render_messages(messages)

    def conv_template(self) -> dict[str, Any]:
        return self.chat.conv_template()


@dataclass(frozen=True)
class GenerationLimits:
    """A request's prompt length and the number of tokens it may generate."""

    prompt_tokens: int
    max_new_tokens: int

    @classmethod
    def check(
        cls, prompt_tokens: int, max_new_tokens: int, context_length: int, *, echo: bool = False
    ) -> GenerationLimits:
        """400 when the prompt leaves no room in the context; max_new_tokens is clamped to the rest.
        With `echo`, 0 new tokens is allowed (the prompt is scored only) and the prompt may then
        fill the whole context."""
        if max_new_tokens < (0 if echo else 1):
            floor = "0 with echo" if echo else "1 (0 only with echo)"
            raise BadRequest(
                f"max_new_tokens must be at least {floor}, not {max_new_tokens}", param="max_tokens"
            )
        if prompt_tokens > context_length or (max_new_tokens > 0 and prompt_tokens == context_length):
            raise BadRequest(
                f"This model's maximum context length is {context_length} tokens, "
                f"but the prompt has {prompt_tokens} tokens. Shorten the prompt.",
                code=int(ErrorCode.CONTEXT_OVERFLOW),
                param="messages",
            )
        return cls(prompt_tokens, min(max_new_tokens, context_length - prompt_tokens))


def error_code_of(exc: BaseException) -> int:
    """The FastChat `error_code` for an exception (a ServeError's own int code, else its class's)."""
    from camel_chat.serve.errors import ServeError

    if isinstance(exc, ServeError):
        return exc.code if isinstance(exc.code, int) else int(exc.error_code)
    return int(ErrorCode.INTERNAL_ERROR)
