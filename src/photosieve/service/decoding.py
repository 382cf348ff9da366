"""A bound on concurrent decodes, so one hostile upload cannot stall every other upload.

Decoding is CPU- and memory-bound C code: with more decodes than cores in flight each one only
gets slower, and memory grows with every full-size buffer held at once. `DecodeGate` admits at
most `slots` decodes (default: the usable cores) and at most `heavy_slots` big ones (header over
`heavy_pixels`; default half the cores, at least one), so a small avatar always finds a free
core while big images queue behind each other. Waiting happens on `asyncio` semaphores — the
event loop keeps serving other requests — and the decode itself runs in the thread pool. A
request that waits longer than `max_wait_s` gets `DecodeBusy` (the route answers 503).

The semaphores are loop-safe: uvicorn runs one event loop, but Starlette's `TestClient` runs
each request on a loop of its own, so a plain `asyncio.Semaphore` (bound to one loop, not
thread-safe) would break under a threaded test.

`run_then` runs what follows a decode (the upload's moderation) in the same thread-pool call,
with the slot already given back: one thread hop instead of two, and a request waiting for the
model does not hold a decode slot.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from photosieve.vision.decode import ImageHeader

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")

# A photo over 4 MP (2048 × 2048) counts as a heavy decode: it takes a core for 0.1-1 s.
HEAVY_PIXELS = 4_000_000


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LoopSafeSemaphore:
    """An async semaphore usable from any event loop and thread; waiters are served in order."""

    def __init__(self, value: int) -> None:
        self._value = value
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (loop, waiter)
            self._waiters.append(entry)
        try:
            await waiter
        except BaseException:  # cancelled or timed out
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    raise
            # Already handed a slot: give it back (a cancelled future is handled by `_grant`).
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def _grant(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled meanwhile: pass the slot on
            self.release()
        else:
            waiter.set_result(None)

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._grant, waiter)
                    return
                except RuntimeError:  # that waiter's loop is closed
                    continue
            self._value += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class DecodeBusy(RuntimeError):
    """No decode slot freed up within the wait limit."""


class DecodeGate:
    """At most `slots` decodes at once, of which at most `heavy_slots` big ones."""

    def __init__(
        self,
        slots: int | None = None,
        heavy_slots: int | None = None,
        *,
        heavy_pixels: int = HEAVY_PIXELS,
        max_wait_s: float = 30.0,
    ) -> None:
        self.slots = slots if slots is not None else usable_cores()
        self.heavy_slots = heavy_slots if heavy_slots is not None else max(1, self.slots // 2)
        if self.slots < 1 or self.heavy_slots < 1:
            raise ValueError("a decode gate needs at least one slot of each kind")
        self.heavy_pixels = heavy_pixels
        self.max_wait_s = max_wait_s
        self._all = LoopSafeSemaphore(self.slots)
        self._heavy = LoopSafeSemaphore(min(self.heavy_slots, self.slots))

    async def _acquire(self, heavy: bool) -> list[LoopSafeSemaphore]:
        """Take a slot (heavy first, then a general one: a heavy request never sits on a general
        slot while it waits for its turn among the heavy ones); the semaphores to release."""
        taken: list[LoopSafeSemaphore] = []
        try:
            async with asyncio.timeout(self.max_wait_s):
                for semaphore in (self._heavy, self._all) if heavy else (self._all,):
                    await semaphore.acquire()
                    taken.append(semaphore)
        except BaseException as exc:
            _release(taken)
            if isinstance(exc, TimeoutError):
                raise DecodeBusy(
                    f"no decode slot within {self.max_wait_s:g} s; try again shortly"
                ) from exc
            raise
        return taken

    async def run(self, header: ImageHeader, decode: Callable[[], T]) -> T:
        """Run `decode` in the thread pool once a slot for an image like `header` is free."""
        return await self.run_then(header, decode, _itself)

    async def run_then(
        self, header: ImageHeader, decode: Callable[[], T], then: Callable[[T], U]
    ) -> U:
        """`run(header, decode)`, then `then(decoded)` in the same thread-pool call once the
        slot is given back: one trip to the thread pool instead of two, and the slot is held
        only while decoding (not while `then` waits for the model)."""
        taken = await self._acquire(header.pixels > self.heavy_pixels)
        released = threading.Lock()  # held once the slot has been given back

        def give_back() -> None:
            if released.acquire(blocking=False):
                _release(taken)

        def work() -> U:
            try:
                decoded = decode()
            finally:
                give_back()
            return then(decoded)

        try:
            return await run_in_threadpool(work)
        finally:
            give_back()  # the thread never ran (cancelled first)


def _itself(value: T) -> T:
    return value


def _release(semaphores: list[LoopSafeSemaphore]) -> None:
    for semaphore in reversed(semaphores):
        semaphore.release()


def return_freed_memory() -> None:
    """Make glibc hand big freed buffers back to the OS instead of keeping them in its arenas.

    Pillow allocates image memory in 16 MB blocks with `malloc`; glibc's adaptive mmap threshold
    serves such blocks from per-thread arenas after the first one is freed, and memory from a
    decode thread's arena is rarely returned: a 6300 × 6300 upload left ~400 MB resident for
    good. A fixed threshold (1 MB) keeps big blocks on `mmap`, which `free` returns at once.
    A no-op where glibc is not the C library.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3
    if mallopt(m_mmap_threshold, 1024 * 1024) != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD) refused; freed image memory may stay resident")
