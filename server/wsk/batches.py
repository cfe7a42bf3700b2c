"""Many callers' Redis writes in few round trips, in the order they were asked for.

A node writes to Redis from many greenlets at once: every publish appends to the
stream, every connect keeps a session, every disconnect releases one. One round
trip each costs a pool checkout, two syscalls and a hub switch per caller, which
was a quarter of a connect's CPU. A ``Batches`` lets one greenlet at a time write
what has gathered meanwhile, in one pipeline, in the callers' order.

A caller that finds nobody writing writes its own item at once, in its own greenlet:
on a quiet node a writer greenlet and an event to wake the caller were about 40 µs
of a 139 µs append to a real Redis (docs/benchmarks.md). What gathers during that
write goes to a writer greenlet, as under load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import eventlet
import eventlet.event

Item = TypeVar("Item")


class Batches(Generic[Item]):
    """Runs ``write`` over what callers submitted, at most ``size`` items per call.

    ``write`` gets a list of items and returns one result per item; an exception it
    raises becomes the result of every item of that batch. ``submit`` waits for its
    item's result and returns it (exceptions are returned, not raised, so that the
    caller says what failed); ``post`` does not wait.
    """

    def __init__(self, write: Callable[[list[Item]], list[object]], size: int) -> None:
        self.write = write
        self.size = size
        self.waiting: list[tuple[Item, eventlet.event.Event | None]] = []
        self.writing = False

    def __len__(self) -> int:
        return len(self.waiting)

    def submit(self, item: Item) -> object:
        """Write ``item`` with the next batch; its result, or the exception that failed it."""
        if not self.writing:
            return self._write_one(item)
        done = eventlet.event.Event()
        self._add(item, done)
        return done.wait()

    def post(self, item: Item) -> None:
        """Write ``item`` with the next batch, without waiting for it."""
        self._add(item, None)

    def _add(self, item: Item, done: eventlet.event.Event | None) -> None:
        self.waiting.append((item, done))
        if not self.writing:
            self.writing = True
            eventlet.spawn_n(self._write_all)

    def _write_one(self, item: Item) -> object:
        # nothing waits while nobody writes: this item is first, and written alone
        self.writing = True
        try:
            try:
                (result,) = self.write([item])
                return result
            except Exception as exc:
                return exc
        finally:
            if self.waiting:
                # they came during the write, so after this item: a writer takes them
                eventlet.spawn_n(self._write_all)
            else:
                self.writing = False

    def _write_all(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[: self.size], self.waiting[self.size :]
                try:
                    results: list[object] = list(self.write([item for item, _ in batch]))
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, done), result in zip(batch, results, strict=True):
                    if done is not None:
                        done.send(result)
        finally:
            self.writing = False
