"""A worker's life at its controller: register, heartbeat, re-register when forgotten.

    state = RegistrationState()
    task = asyncio.create_task(keep_registered(client, controller, worker, status_fn, state=state))

The loop registers (with the worker's status, so the controller need not call back), then sends
a heartbeat carrying the queue length every `interval` seconds. When the controller answers
`exist: false` (it restarted, or expired us) the worker registers again at once. A failed call
(controller down) is retried every `retry_interval` seconds, forever; cancelling the task ends it.
With a shared secret the calls carry `Authorization: Bearer <secret>`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from camel_chat.serve.protocol import HeartBeatRequest, HeartBeatResponse, RegisterWorkerRequest, WorkerStatus

log = logging.getLogger(__name__)


@dataclass
class RegistrationState:
    """What the loop knows, for /health and tests."""

    registered: bool = False
    registrations: int = 0
    heartbeats: int = 0
    last_heartbeat: float | None = None
    last_error: str | None = None


def _headers(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


async def register(
    client: httpx.AsyncClient,
    controller: str,
    worker_name: str,
    status: WorkerStatus,
    *,
    secret: str | None = None,
) -> None:
    """POST /register_worker with our status; raises httpx.HTTPError on failure."""
    body = RegisterWorkerRequest(worker_name=worker_name, check_heart_beat=True, worker_status=status)
    response = await client.post(
        f"{controller.rstrip('/')}/register_worker", json=body.model_dump(), headers=_headers(secret)
    )
    response.raise_for_status()


async def heart_beat(
    client: httpx.AsyncClient,
    controller: str,
    worker_name: str,
    queue_length: int,
    *,
    secret: str | None = None,
) -> bool:
    """POST /receive_heart_beat; whether the controller still knows us."""
    body = HeartBeatRequest(worker_name=worker_name, queue_length=queue_length)
    response = await client.post(
        f"{controller.rstrip('/')}/receive_heart_beat", json=body.model_dump(), headers=_headers(secret)
    )
    response.raise_for_status()
    return HeartBeatResponse.model_validate(response.json()).exist


async def keep_registered(
    client: httpx.AsyncClient,
    controller: str,
    worker_name: str,
    status: Callable[[], WorkerStatus],
    *,
    state: RegistrationState,
    interval: float = 5.0,
    retry_interval: float = 5.0,
    secret: str | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run until cancelled (see the module docstring)."""
    while True:
        try:
            if not state.registered:
                await register(client, controller, worker_name, status(), secret=secret)
                state.registered = True
                state.registrations += 1
                log.info("registered %s at %s", worker_name, controller)
            else:
                exist = await heart_beat(
                    client, controller, worker_name, status().queue_length, secret=secret
                )
                state.heartbeats += 1
                state.last_heartbeat = clock()
                if not exist:
                    log.info("controller %s forgot %s; registering again", controller, worker_name)
                    state.registered = False
                    continue
            state.last_error = None
            await sleep(interval)
        except asyncio.CancelledError:
            raise
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body that is not the expected JSON
            state.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("controller %s: %s; retrying in %ss", controller, state.last_error, retry_interval)
            await sleep(retry_interval)
