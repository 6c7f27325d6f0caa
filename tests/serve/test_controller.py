"""The controller: Registry with a fake clock, dispatch, and the app in-process (MockTransport workers)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from camel_chat.serve.controller import ControllerSettings, build_parser, make_app
from camel_chat.serve.protocol import SERVER_ERROR_MSG, WorkerStatus, frame_chunk
from camel_chat.serve.registry import Registry

W1, W2, W3 = "http://w1:21002", "http://w2:21002", "http://w3:21002"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def status(*models: str, speed: int = 1, queue: int = 0) -> WorkerStatus:
    return WorkerStatus(model_names=list(models), speed=speed, queue_length=queue)


# ---------------------------------------------------------------- Registry


def test_heartbeat_known_and_unknown() -> None:
    clock = FakeClock()
    reg = Registry(clock=clock)
    reg.register(W1, status("m"))
    clock.now += 5
    assert reg.heartbeat(W1, 3) is True
    assert reg.workers[W1].queue_length == 3 and reg.workers[W1].last_heart_beat == clock.now
    assert reg.heartbeat(W2, 0) is False


def test_expiry_is_exact() -> None:
    clock = FakeClock(0.0)
    reg = Registry(expiration=30.0, clock=clock)
    reg.register(W1, status("m"))
    reg.register(W2, status("m"), check_heart_beat=False)
    clock.now = 20.0
    reg.heartbeat(W1, 0)
    clock.now = 50.0  # exactly 30 s after the last heartbeat: still alive
    assert reg.expire() == []
    clock.now = 50.001
    assert reg.expire() == [W1]
    clock.now = 10_000.0  # check_heart_beat=False workers never expire
    assert reg.expire() == [] and list(reg.workers) == [W2]


def test_shortest_queue_prefers_least_load_per_speed() -> None:
    reg = Registry()
    reg.register(W1, status("m", speed=1, queue=2))
    reg.register(W2, status("m", speed=4, queue=4))  # 1.0 per unit of speed < 2.0
    assert reg.dispatch("m") == W2
    assert reg.workers[W2].queue_length == 5  # optimistic +1


def test_shortest_queue_ties_go_to_first_registered_and_increment_spreads_load() -> None:
    reg = Registry()
    for w in (W1, W2, W3):
        reg.register(w, status("m"))
    picks = [reg.dispatch("m") for _ in range(6)]
    assert picks == [W1, W2, W3, W1, W2, W3]
    reg.heartbeat(W3, 0)  # the heartbeat corrects the optimistic count
    assert reg.dispatch("m") == W3


def test_reregistration_keeps_order() -> None:
    reg = Registry()
    reg.register(W1, status("m"))
    reg.register(W2, status("m"))
    reg.register(W1, status("m"))
    assert list(reg.workers) == [W1, W2]
    assert reg.dispatch("m") == W1


def test_shortest_queue_zero_speed() -> None:
    reg = Registry()
    reg.register(W1, status("m", speed=0))
    assert reg.dispatch("m") == ""
    reg.register(W2, status("m", speed=1, queue=50))
    assert reg.dispatch("m") == W2


def test_unknown_model_gets_empty_address() -> None:
    reg = Registry()
    reg.register(W1, status("m"))
    assert reg.dispatch("other") == ""
    assert Registry(dispatch_method="lottery").dispatch("m") == ""


def test_lottery_is_weighted_by_speed() -> None:
    reg = Registry(dispatch_method="lottery", rng=random.Random(0))
    reg.register(W1, status("m", speed=3))
    reg.register(W2, status("m", speed=1))
    reg.register(W3, status("m", speed=0))
    counts = Counter(reg.dispatch("m") for _ in range(4000))
    assert counts[W3] == 0
    assert 2.5 < counts[W1] / counts[W2] < 3.5
    assert reg.workers[W1].queue_length == 0  # lottery does not touch queues


def test_lottery_zero_total_speed() -> None:
    reg = Registry(dispatch_method="lottery")
    reg.register(W1, status("m", speed=0))
    assert reg.dispatch("m") == ""


def test_models_and_aggregate_status() -> None:
    reg = Registry()
    reg.register(W1, status("b", "a", speed=2, queue=1))
    reg.register(W2, status("a", "c", speed=1, queue=3), multimodal=True)
    assert reg.models() == ["a", "b", "c"]
    assert reg.models(multimodal=True) == ["a", "c"] and reg.models(multimodal=False) == ["a", "b"]
    assert reg.aggregate_status() == WorkerStatus(model_names=["a", "b", "c"], speed=3, queue_length=4)


def test_unknown_dispatch_method() -> None:
    with pytest.raises(ValueError, match="dispatch method"):
        Registry(dispatch_method="random")  # type: ignore[arg-type]


# ---------------------------------------------------------------- app helpers

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class FakeWorkers:
    """Mock workers keyed by base URL; records every request the controller sends."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        handler = self.handlers.get(base)
        if handler is None:
            raise httpx.ConnectError("connection refused", request=request)
        return await handler(request)


def status_handler(st: WorkerStatus) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/worker_get_status"
        return httpx.Response(200, json=st.model_dump())

    return handle


def run_app(
    test: Callable[[httpx.AsyncClient, Any, FakeWorkers], Awaitable[None]],
    settings: ControllerSettings | None = None,
    **kw: Any,
) -> None:
    async def go() -> None:
        workers = FakeWorkers()
        worker_client = httpx.AsyncClient(transport=httpx.MockTransport(workers))
        app = make_app(settings, http_client=worker_client, **kw)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://controller") as c:
                await test(c, app, workers)
        await worker_client.aclose()

    asyncio.run(go())


def frames(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\0")
    return [json.loads(f) for f in body.split(b"\0") if f]


async def register(c: httpx.AsyncClient, name: str, st: WorkerStatus | None, **kw: Any) -> httpx.Response:
    body = {"worker_name": name, "check_heart_beat": True, "worker_status": st and st.model_dump()}
    return await c.post("/register_worker", json=body, **kw)


# ---------------------------------------------------------------- app: registration, listing, dispatch


def test_register_with_status_list_and_dispatch() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        r = await register(c, W1, status("vicuna", queue=2))
        assert r.status_code == 200 and r.json() is None
        await register(c, W2, status("vicuna", "camel"))
        assert (await c.post("/list_models")).json() == {"models": ["camel", "vicuna"]}
        assert (await c.post("/get_worker_address", json={"model": "vicuna"})).json() == {"address": W2}
        assert (await c.post("/get_worker_address", json={"model": "nope"})).json() == {"address": ""}
        st = (await c.post("/worker_get_status")).json()
        assert st == {"model_names": ["camel", "vicuna"], "speed": 2, "queue_length": 3}
        assert workers.requests == []  # status given: the controller asked nobody
        r = await c.get("/test_connection")
        assert r.status_code == 200 and r.json() == "success"

    run_app(t)


def test_register_without_status_fetches_it() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        workers.handlers[W1] = status_handler(status("camel", speed=2, queue=1))
        r = await register(c, W1, None)
        assert r.status_code == 200
        assert [str(q.url) for q in workers.requests] == [W1 + "/worker_get_status"]
        info = app.state.registry.workers[W1]
        assert (info.model_names, info.speed, info.queue_length) == (["camel"], 2, 1)

    run_app(t)


def test_register_without_status_unreachable_worker_is_not_registered() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        r = await register(c, W1, None)
        assert r.status_code == 503 and r.json()["error"]["code"] == 50006
        assert (await c.post("/list_models")).json() == {"models": []}

        async def bad_json(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"unexpected": True})

        workers.handlers[W2] = bad_json
        assert (await register(c, W2, None)).status_code == 503
        assert app.state.registry.workers == {}

    run_app(t)


def test_register_rejects_a_name_that_is_not_a_url_and_bad_bodies() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        r = await register(c, "worker-1", status("m"))
        assert r.status_code == 400 and r.json()["error"]["param"] == "worker_name"
        r = await c.post("/register_worker", json={"check_heart_beat": True})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"

    run_app(t)


def test_heartbeats_exist_true_and_false() -> None:
    clock = FakeClock()

    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        await register(c, W1, status("m"))
        clock.now += 10
        r = await c.post("/receive_heart_beat", json={"worker_name": W1, "queue_length": 4})
        assert r.json() == {"exist": True}
        assert app.state.registry.workers[W1].queue_length == 4
        assert app.state.registry.workers[W1].last_heart_beat == clock.now
        r = await c.post("/receive_heart_beat", json={"worker_name": W2, "queue_length": 0})
        assert r.json() == {"exist": False}

    run_app(t, clock=clock)


def test_secret_required_for_register_and_heartbeat() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        r = await register(c, W1, status("m"))
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = await register(c, W1, status("m"), headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await c.post("/register_worker", content=b"not json")  # auth is checked before the body
        assert r.status_code == 401
        assert app.state.registry.workers == {}
        ok = {"Authorization": "Bearer s3cret"}
        assert (await register(c, W1, status("m"), headers=ok)).status_code == 200
        hb = {"worker_name": W1, "queue_length": 0}
        assert (await c.post("/receive_heart_beat", json=hb)).status_code == 401
        r = await c.post("/receive_heart_beat", json=hb, headers=ok)
        assert r.json() == {"exist": True}
        # Read-only endpoints stay open.
        assert (await c.post("/list_models")).json() == {"models": ["m"]}

    run_app(t, ControllerSettings(secret="s3cret"))


def test_refresh_all_workers_drops_the_unreachable_and_updates_the_rest() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        await register(c, W1, status("a"))
        await register(c, W2, status("b"))
        workers.handlers[W1] = status_handler(status("a", "a2", queue=7))
        r = await c.post("/refresh_all_workers")
        assert r.status_code == 200
        assert list(app.state.registry.workers) == [W1]
        assert app.state.registry.workers[W1].queue_length == 7
        assert (await c.post("/list_models")).json() == {"models": ["a", "a2"]}

    run_app(t)


def test_expiry_loop_runs_in_lifespan() -> None:
    clock = FakeClock()

    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        await register(c, W1, status("m"))
        await register(c, W2, status("m"))
        clock.now += 20
        await c.post("/receive_heart_beat", json={"worker_name": W2, "queue_length": 0})
        clock.now += 15  # W1 silent for 35 s > 30, W2 for 15 s
        for _ in range(200):
            if W1 not in app.state.registry.workers:
                break
            await asyncio.sleep(0.005)
        assert list(app.state.registry.workers) == [W2]
        r = await c.post("/receive_heart_beat", json={"worker_name": W1, "queue_length": 0})
        assert r.json() == {"exist": False}

    run_app(t, ControllerSettings(heart_beat_expiration=30), clock=clock, expiry_interval=0.01)


def test_health_and_metrics() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        await register(c, W1, status("m", queue=2))
        await c.post("/list_models")
        assert (await c.get("/health")).json() == {"status": "ok", "workers": 1, "models": ["m"]}
        text = (await c.get("/metrics")).text
        assert 'camel_chat_controller_requests_total{endpoint="/list_models",status="200"} 1.0' in text
        assert "camel_chat_controller_workers 1.0" in text
        assert "camel_chat_controller_queue_depth 2.0" in text

    run_app(t)


# ---------------------------------------------------------------- app: stream proxy

CHUNKS = [{"text": "He", "error_code": 0}, {"text": "Hello", "error_code": 0, "finish_reason": "stop"}]


def stream_handler(pieces: list[bytes], fail_after: bool = False, status_code: int = 200) -> Handler:
    async def body() -> AsyncIterator[bytes]:
        for p in pieces:
            yield p
        if fail_after:
            raise httpx.ReadError("worker died")

    async def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/worker_generate_stream"
        return httpx.Response(status_code, content=body())

    return handle


def test_stream_relays_whole_frames_and_passes_params_through() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        data = b"".join(frame_chunk(ch) for ch in CHUNKS)
        workers.handlers[W1] = stream_handler([data[:3], data[3:20], data[20:]])
        await register(c, W1, status("m"))
        params = {"model": "m", "prompt": "", "messages": [{"role": "user", "content": "hi"}], "x": 1}
        r = await c.post("/worker_generate_stream", json=params)
        assert r.status_code == 200
        assert frames(r.content) == CHUNKS
        assert json.loads(workers.requests[-1].content) == params
        assert W1 in app.state.registry.workers

    run_app(t)


def test_stream_without_worker_sends_one_50005_frame() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        r = await c.post("/worker_generate_stream", json={"model": "m", "prompt": "hi"})
        assert frames(r.content) == [
            {
                "text": SERVER_ERROR_MSG,
                "error_code": 50005,
                "usage": None,
                "finish_reason": None,
                "logprobs": None,
            }
        ]
        assert workers.requests == []
        r = await c.post("/worker_generate_stream", json={"prompt": "no model"})
        assert r.status_code == 400

    run_app(t)


def test_unreachable_worker_sends_one_50006_frame_and_leaves_dispatch() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        await register(c, W1, status("m"))
        r = await c.post("/worker_generate_stream", json={"model": "m", "prompt": "hi"})
        got = frames(r.content)
        assert len(got) == 1 and got[0]["error_code"] == 50006
        assert got[0]["text"].startswith(SERVER_ERROR_MSG)
        assert (await c.post("/get_worker_address", json={"model": "m"})).json() == {"address": ""}
        r = await c.post("/receive_heart_beat", json={"worker_name": W1, "queue_length": 0})
        assert r.json() == {"exist": False}  # so the worker re-registers once it is back

    run_app(t)


def test_worker_dying_mid_stream() -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        first = frame_chunk(CHUNKS[0])
        workers.handlers[W1] = stream_handler([first, b'{"text": "Hel'], fail_after=True)
        await register(c, W1, status("m"))
        await register(c, W2, status("m"))
        r = await c.post("/worker_generate_stream", json={"model": "m"})
        got = frames(r.content)  # the half frame is dropped, never glued to the error frame
        assert got[0] == CHUNKS[0] and [g["error_code"] for g in got[1:]] == [50006]
        assert list(app.state.registry.workers) == [W2]

    run_app(t)


@pytest.mark.parametrize(
    "code,error_code,removed", [(500, 50006, True), (429, 42903, False), (422, 40001, False)]
)
def test_worker_http_errors(code: int, error_code: int, removed: bool) -> None:
    async def t(c: httpx.AsyncClient, app: Any, workers: FakeWorkers) -> None:
        workers.handlers[W1] = stream_handler([b"oops"], status_code=code)
        await register(c, W1, status("m"))
        got = frames((await c.post("/worker_generate_stream", json={"model": "m"})).content)
        assert [g["error_code"] for g in got] == [error_code]
        assert (W1 not in app.state.registry.workers) is removed

    run_app(t)


# ---------------------------------------------------------------- process-level


def test_controller_never_imports_torch_and_help_runs() -> None:
    code = (
        "import sys\n"
        "import camel_chat.serve.controller as c\n"
        "c.make_app()\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-m", "camel_chat.serve.controller", "--help"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "--dispatch-method" in out and "--secret" in out


def test_cli_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.dispatch_method) == ("localhost", 21001, "shortest_queue")
    args = build_parser().parse_args(
        ["--dispatch-method", "lottery", "--heart-beat-expiration", "30", "--secret", "t"]
    )
    assert (args.dispatch_method, args.heart_beat_expiration, args.secret) == ("lottery", 30.0, "t")
