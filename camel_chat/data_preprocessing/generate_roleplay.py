"""Generate CAMEL role-play dialogues through any OpenAI-compatible chat endpoint.

For every (assistant role, user role, task) triple a task specifier first makes the task
concrete; then an AI user (sending ``Instruction: …\\nInput: …``) and an AI assistant
(answering ``Solution: … Next request.``) take turns. Each finished dialogue is written
atomically as ``<out-dir>/AAA_UUU_TTT.json`` in the CAMEL chat format (spec §1.2), which
:func:`camel_chat.data_preprocessing.camel.convert_chat` turns into a conversation. Files
already present are skipped, so an interrupted run can simply be started again.

Termination reasons (spec §1.2): ``<CAMEL_TASK_DONE>``, ``max_num_messages``,
``user_no_instruct_threshold``, ``assistant_instruct_threshold``, ``repeat_word_threshold``
and ``RoleType.USER: <reason>`` / ``RoleType.ASSISTANT: <reason>`` when a call fails.

Usage::

    python -m camel_chat.data_preprocessing.generate_roleplay --api-base http://localhost:8000/v1 \\
        --model NAME --assistant-roles a.txt --user-roles u.txt --tasks t.txt --out-dir out/
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from camel_chat.data_preprocessing import roleplay_prompts as prompts
from camel_chat.errors import CamelChatError
from camel_chat.json_input import read_text

logger = logging.getLogger(__name__)

TASK_DONE = prompts.TASK_DONE
DEFAULT_API_BASE = "http://localhost:8000/v1"
# The thresholds of CAMEL's generator.
USER_NO_INSTRUCT_THRESHOLD = 3
ASSISTANT_INSTRUCT_THRESHOLD = 1
REPEAT_WORD_THRESHOLD = 4
REPEAT_WORDS: tuple[str, ...] = ("goodbye", "good bye", "thank", "bye", "welcome", "language model")

_NUMBERING = re.compile(r"^\s*\d+\s*[.)]\s*")


class ApiError(RuntimeError):
    """A chat-completion call failed (transport error, HTTP error or unusable reply)."""


@dataclass
class ChatClient:
    """Minimal OpenAI chat-completions client over httpx (transport injectable for tests)."""

    api_base: str
    model: str
    api_key: str | None = None
    temperature: float = 1.0
    seed: int | None = None
    max_tokens: int | None = None
    timeout: float = 600.0
    transport: httpx.BaseTransport | None = None
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(
            base_url=self.api_base.rstrip("/"),
            headers=headers,
            timeout=self.timeout,
            transport=self.transport,
        )

    def close(self) -> None:
        self._client.close()

    def chat(self, messages: list[dict[str, str]]) -> str:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.seed is not None:
            body["seed"] = self.seed
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise ApiError(f"request failed: {exc}") from exc
        if response.status_code != 200:
            raise ApiError(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            choice = response.json()["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ApiError(f"malformed reply: {response.text[:200]}") from exc
        if not isinstance(content, str) or not content.strip():
            raise ApiError("empty reply")
        return content


@dataclass(frozen=True)
class Job:
    assistant_index: int  # 1-based, as in the file names
    user_index: int
    task_index: int
    assistant_role: str
    user_role: str
    task: str

    @property
    def id(self) -> str:
        return f"{self.assistant_index:03d}_{self.user_index:03d}_{self.task_index:03d}"


@dataclass(frozen=True)
class Limits:
    max_messages: int = 40
    user_no_instruct: int = USER_NO_INSTRUCT_THRESHOLD
    assistant_instruct: int = ASSISTANT_INSTRUCT_THRESHOLD
    repeat_word: int = REPEAT_WORD_THRESHOLD
    word_limit: int = 50


def read_list(path: str | Path) -> list[str]:
    """One item a line; blank lines and `#` comments skipped; `1. ` style numbering removed."""
    items = []
    for line in read_text(path).splitlines():
        line = _NUMBERING.sub("", line).strip()
        if line and not line.startswith("#"):
            items.append(line)
    return items


def make_jobs(assistant_roles: Sequence[str], user_roles: Sequence[str], tasks: Sequence[str]) -> list[Job]:
    return [
        Job(a + 1, u + 1, t + 1, assistant_role, user_role, task)
        for a, assistant_role in enumerate(assistant_roles)
        for u, user_role in enumerate(user_roles)
        for t, task in enumerate(tasks)
    ]


def _message(role_name: str, role_type: str, content: str) -> dict[str, Any]:
    return {
        "role_name": role_name,
        "role_type": role_type,
        "meta_dict": {},
        "role": role_type.lower(),
        "content": content,
    }


def specify_task(client: ChatClient, job: Job, word_limit: int) -> str:
    prompt = prompts.render(
        prompts.TASK_SPECIFIER_PROMPT,
        assistant_role=job.assistant_role,
        user_role=job.user_role,
        task=job.task,
        word_limit=word_limit,
    )
    messages = [
        {"role": "system", "content": prompts.TASK_SPECIFIER_SYSTEM},
        {"role": "user", "content": prompt},
    ]
    return client.chat(messages).strip()


def role_play(client: ChatClient, job: Job, limits: Limits | None = None) -> dict[str, Any] | None:
    """Run one dialogue and return its CAMEL chat-format record.

    Returns None when nothing usable came back (the task specifier or the very first call
    failed), so that no file is written and a later run retries the triple.
    """
    limits = limits or Limits()
    try:
        specified = specify_task(client, job, limits.word_limit)
    except ApiError as exc:
        logger.warning("%s: task specifier failed: %s", job.id, exc)
        return None
    roles = {"assistant_role": job.assistant_role, "user_role": job.user_role, "task": specified}
    user_history = [
        {"role": "system", "content": prompts.render(prompts.USER_SYSTEM, **roles)},
        {"role": "user", "content": prompts.USER_KICKOFF},
    ]
    assistant_history = [{"role": "system", "content": prompts.render(prompts.ASSISTANT_SYSTEM, **roles)}]
    messages: list[dict[str, Any]] = []
    reason = "max_num_messages"
    no_instruct = assistant_instruct = repeat_word = 0

    while len(messages) < limits.max_messages:
        try:
            user_text = client.chat(user_history)
        except ApiError as exc:
            reason = f"RoleType.USER: {exc}"
            break
        messages.append(_message(job.user_role, "USER", user_text))
        user_history.append({"role": "assistant", "content": user_text})
        if TASK_DONE in user_text:
            reason = TASK_DONE
            break
        no_instruct = 0 if "Instruction" in user_text else no_instruct + 1
        if no_instruct >= limits.user_no_instruct:
            reason = "user_no_instruct_threshold"
            break
        lowered = user_text.lower()
        repeat_word = repeat_word + 1 if any(w in lowered for w in REPEAT_WORDS) else 0
        if repeat_word >= limits.repeat_word:
            reason = "repeat_word_threshold"
            break
        if len(messages) >= limits.max_messages:
            break

        assistant_history.append({"role": "user", "content": user_text})
        try:
            assistant_text = client.chat(assistant_history)
        except ApiError as exc:
            reason = f"RoleType.ASSISTANT: {exc}"
            break
        messages.append(_message(job.assistant_role, "ASSISTANT", assistant_text))
        assistant_history.append({"role": "assistant", "content": assistant_text})
        user_history.append({"role": "user", "content": assistant_text})
        assistant_instruct = assistant_instruct + 1 if "Instruction:" in assistant_text else 0
        if assistant_instruct >= limits.assistant_instruct:
            reason = "assistant_instruct_threshold"
            break

    if not messages:
        logger.warning("%s: no message generated (%s)", job.id, reason)
        return None
    record: dict[str, Any] = {
        "id": job.id,
        "role_1": f"{job.assistant_role}_RoleType.ASSISTANT",
        "role_2": f"{job.user_role}_RoleType.USER",
        "original_task": job.task,
        "specified_task": specified,
    }
    for k, message in enumerate(messages, start=1):
        record[f"message_{k}"] = message
    record["termination_reason"] = reason
    record["num_messages"] = len(messages)
    return record


def write_atomic(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate(
    client: ChatClient,
    jobs: Sequence[Job],
    out_dir: str | Path,
    limits: Limits | None = None,
    parallel: int = 4,
) -> dict[str, int]:
    """Run every job whose file is missing; returns counts written / skipped / failed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if not (out / f"{job.id}.json").exists()]
    counts = {"written": 0, "skipped": len(jobs) - len(todo), "failed": 0}

    def one(job: Job) -> bool:
        record = role_play(client, job, limits)
        if record is None:
            return False
        write_atomic(out / f"{job.id}.json", record)
        logger.info("%s: %d messages, %s", job.id, record["num_messages"], record["termination_reason"])
        return True

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for ok in pool.map(one, todo):
            counts["written" if ok else "failed"] += 1
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.data_preprocessing.generate_roleplay", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--api-base", default=DEFAULT_API_BASE, help="OpenAI-compatible base URL (…/v1)")
    p.add_argument("--model", required=True)
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--assistant-roles", required=True, help="file, one assistant role a line")
    p.add_argument("--user-roles", required=True, help="file, one user role a line")
    p.add_argument("--tasks", required=True, help="file, one task a line (used for every role pair)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--max-messages", type=int, default=40)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None, help="per reply")
    p.add_argument("--word-limit", type=int, default=50, help="length of the specified task")
    p.add_argument("--limit", type=int, default=None, help="only the first N (assistant, user, task) triples")
    return p


def main(argv: Sequence[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        jobs = make_jobs(read_list(args.assistant_roles), read_list(args.user_roles), read_list(args.tasks))
    except CamelChatError as exc:  # a missing or undecodable list: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        jobs = jobs[: args.limit]
    if not jobs:
        empty = [f for f in (args.assistant_roles, args.user_roles, args.tasks) if not read_list(f)]
        print(f"error: {', '.join(empty) or '--limit 0'}: no (assistant role, user role, task) triple to run",
              file=sys.stderr)  # fmt: skip
        return 2
    client = ChatClient(
        args.api_base,
        args.model,
        api_key=args.api_key,
        temperature=args.temperature,
        seed=args.seed,
        max_tokens=args.max_tokens,
        transport=transport,
    )
    try:
        counts = generate(
            client,
            jobs,
            args.out_dir,
            Limits(max_messages=args.max_messages, word_limit=args.word_limit),
            args.parallel,
        )
    finally:
        client.close()
    print(json.dumps(counts))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
