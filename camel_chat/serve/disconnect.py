"""Client disconnects, for both apps (the worker and the OpenAI API server): notice that the client
went away, stop the work, and run the cleanup to its end whatever cancellation is in flight.

    return ClosingStreamingResponse(body, on_close=release, media_type="text/event-stream")
    result = await until_disconnect(request.receive, work)   # raises ClientGone if the client left
    await finish(cleanup())                                   # cleanup no cancellation can cut short

Why this module exists (issue 10). A streaming response is cancelled through an anyio cancel
scope when its client disconnects, and on asyncio that cancellation is level-triggered: every
`await` inside the cancelled body iterator's `finally` is cancelled again. The API server's
`finally` awaited the tasks reading the worker streams; cancelling that wait cancelled those
readers a second time while httpcore was closing their connection, so httpcore marked the stream
closed without closing the socket. The worker's socket stayed open and unread, the worker blocked
on TCP back-pressure and held its concurrency slot (for ever, with a long generation). Cleanup
therefore runs through `finish` (its own task, shielded from both anyio and asyncio cancellation)
and closes the upstream connections *before* it stops their readers.

`ClosingStreamingResponse` watches for `http.disconnect` itself, whatever ASGI spec version the
server announces (Starlette skips the watch for spec >= 2.4 and would stream to a dead client
until the generator ends), and always closes its body iterator and calls `on_close`, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

#: HTTP status for a request whose client went away before it finished (nginx's convention).
CLIENT_CLOSED = 499

# Cleanup tasks still running after their caller was cancelled: referenced so none is collected.
_running_cleanups: set[asyncio.Task[Any]] = set()


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def finish(work: Awaitable[T]) -> T:
    """Await `work` to its end in its own task, shielded from anyio cancel scopes and from
    `Task.cancel()`: if the caller is cancelled anyway, `work` still completes in the background."""
    task = asyncio.ensure_future(work)
    _running_cleanups.add(task)
    task.add_done_callback(_running_cleanups.discard)
    with anyio.CancelScope(shield=True):
        return await asyncio.shield(task)


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the ASGI server reports `http.disconnect` (the request body must be read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """`work`'s result, or `ClientGone` if the client disconnects first. `work` is then cancelled
    and its own cleanup has finished when this returns."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))

    async def settle() -> None:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)

    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await finish(settle())
    if task.cancelled():
        raise ClientGone()
    return task.result()


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that stops when its client disconnects and then, however it ended
    (finished, failed, client gone), closes its body iterator and runs `on_close` exactly once,
    to the end (see the module docstring)."""

    def __init__(
        self,
        content: AsyncIterable[bytes],
        on_close: Callable[[], Awaitable[None]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(content, **kw)
        self._on_close = on_close
        self._closed = False

    async def close(self) -> None:
        """Close the body iterator, then run `on_close` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self._on_close is not None:
                await self._on_close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Plain tasks, not an anyio task group: the streamer is cancelled exactly once (no
        # level-triggered re-delivery into the body iterator's cleanup) and nothing comes back
        # wrapped in an exception group.
        streamer = asyncio.ensure_future(self.stream_response(send))
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))

        async def stop() -> None:
            for task in (watcher, streamer):
                task.cancel()
            await asyncio.gather(watcher, streamer, return_exceptions=True)
            await self.close()

        try:
            await asyncio.wait({streamer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await finish(stop())
        if not streamer.cancelled() and streamer.exception() is not None:
            raise streamer.exception()  # type: ignore[misc]
        if self.background is not None:
            await self.background()
