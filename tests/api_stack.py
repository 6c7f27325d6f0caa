"""Controller + model_worker + OpenAI API server as real processes on free loopback ports, for
any checkpoint and model name, behind an API key (the evaluation tests' stack): a thin front to
`serving_stack.serving_stack`, which starts, waits for and stops every process.

    with api_stack(tmp, checkpoint, "Tiny", worker_args=["--conv-template", "chatml"]) as stack:
        httpx.post(f"{stack.api}/v1/completions", ...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from serving_stack import Stack, serving_stack

API_KEY = "eval-key"


@contextmanager
def api_stack(
    root: Path,
    checkpoint: Path,
    model: str,
    *,
    worker_args: Sequence[str] = (),
    api_key: str = API_KEY,
) -> Iterator[Stack]:
    """The three processes (the worker serving `checkpoint` as `model`), the worker registered and
    the API server healthy; yields their addresses."""
    with serving_stack(
        root, checkpoint=checkpoint, model=model, api_keys=api_key, worker_args=worker_args
    ) as stack:
        yield stack
