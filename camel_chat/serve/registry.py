"""The controller's state: registered workers, heartbeat expiry and dispatch (no HTTP, no I/O).

    registry = Registry("shortest_queue", expiration=90.0, clock=time.monotonic)
    registry.register("http://host:21002", WorkerStatus(model_names=["m"]))
    registry.heartbeat(name, queue_length) -> bool      # False: unknown, the worker must re-register
    registry.expire() -> removed names                  # silent longer than `expiration`
    registry.dispatch("m") -> address or ""             # shortest_queue (optimistic +1) or lottery

The clock and the random generator are injected so tests are exact. Used by
`camel_chat.serve.controller`; never imports torch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from camel_chat.serve.protocol import WorkerStatus

DispatchMethod = Literal["shortest_queue", "lottery"]
DISPATCH_METHODS: tuple[str, ...] = ("shortest_queue", "lottery")


@dataclass
class WorkerInfo:
    model_names: list[str]
    speed: int
    queue_length: int
    check_heart_beat: bool
    last_heart_beat: float
    multimodal: bool = False


class Registry:
    """Workers by name (= base URL), in registration order; `clock` gives the heartbeat timestamps."""

    def __init__(
        self,
        dispatch_method: DispatchMethod = "shortest_queue",
        expiration: float = 90.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if dispatch_method not in DISPATCH_METHODS:
            raise ValueError(f"unknown dispatch method {dispatch_method!r}; choose from {DISPATCH_METHODS}")
        self.dispatch_method = dispatch_method
        self.expiration = expiration
        self.clock = clock
        self.rng = rng or random.Random()
        self.workers: dict[str, WorkerInfo] = {}

    def register(
        self, name: str, status: WorkerStatus, check_heart_beat: bool = True, multimodal: bool = False
    ) -> None:
        """Add or replace a worker (a re-registered worker keeps its place in the order)."""
        self.workers[name] = WorkerInfo(
            model_names=list(status.model_names),
            speed=status.speed,
            queue_length=status.queue_length,
            check_heart_beat=check_heart_beat,
            last_heart_beat=self.clock(),
            multimodal=multimodal,
        )

    def heartbeat(self, name: str, queue_length: int) -> bool:
        """Record a heartbeat; False if the worker is unknown (it must re-register)."""
        info = self.workers.get(name)
        if info is None:
            return False
        info.queue_length = queue_length
        info.last_heart_beat = self.clock()
        return True

    def remove(self, name: str) -> bool:
        return self.workers.pop(name, None) is not None

    def expire(self) -> list[str]:
        """Drop heartbeat-checked workers silent for longer than `expiration`; return their names."""
        deadline = self.clock() - self.expiration
        stale = [n for n, w in self.workers.items() if w.check_heart_beat and w.last_heart_beat < deadline]
        for name in stale:
            del self.workers[name]
        return stale

    def models(self, multimodal: bool | None = None) -> list[str]:
        """Sorted union of model names (only multimodal / only language workers when asked)."""
        names: set[str] = set()
        for w in self.workers.values():
            if multimodal is None or w.multimodal == multimodal:
                names.update(w.model_names)
        return sorted(names)

    def serving(self, model: str) -> list[str]:
        return [n for n, w in self.workers.items() if model in w.model_names]

    def dispatch(self, model: str) -> str:
        """A worker address for `model`, or "" when none can take it."""
        names = self.serving(model)
        if not names:
            return ""
        if self.dispatch_method == "lottery":
            speeds = [max(self.workers[n].speed, 0) for n in names]
            if sum(speeds) < 1e-4:
                return ""
            return self.rng.choices(names, weights=speeds, k=1)[0]
        # shortest_queue: least queue per unit of speed, first registered on ties; a worker with
        # speed <= 0 advertises no capacity and is never chosen.
        best, best_load = "", float("inf")
        for name in names:
            w = self.workers[name]
            if w.speed > 0 and w.queue_length / w.speed < best_load:
                best, best_load = name, w.queue_length / w.speed
        if best:
            # Optimistic: count the request now; the next heartbeat brings the real value.
            self.workers[best].queue_length += 1
        return best

    def aggregate_status(self) -> WorkerStatus:
        """All workers as one (so this controller can register with a parent controller)."""
        return WorkerStatus(
            model_names=self.models(),
            speed=sum(w.speed for w in self.workers.values()),
            queue_length=sum(w.queue_length for w in self.workers.values()),
        )
