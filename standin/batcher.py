"""Dynamic batching with TF Serving's semantics, independent of any transport.

This mirrors TF Serving's batching session on a shared batch scheduler: requests for the same
signature join the one *open* batch until it holds ``max_batch_size`` rows or
``batch_timeout_micros`` have passed since its first request; closed batches wait in a queue of
at most ``max_enqueued_batches`` batches (the open one included), and a request that needs a new
batch when the queue is full fails at once with UNAVAILABLE. ``num_batch_threads`` batches run at
a time. A batch is padded with copies of its first row up to the next ``allowed_batch_sizes``
entry; a request larger than ``max_batch_size`` is rejected unless
``enable_large_batch_splitting``, which spreads requests over batches of at most
``max_execution_batch_size`` rows. Each request gets its own rows of the batch's outputs back.
A request cancelled while it waits (its caller's deadline passed, or the caller went away)
leaves its batch at once: its rows no longer count against the batch or the queue, and its
inputs are released.

All queue state lives on the asyncio loop thread, so it needs no locks; only the model runs on
the batch threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import numpy as np

from standin.status import ServingError, invalid
from tfsload.core.serving_config import BatchingConfig

Arrays = dict[str, np.ndarray]
_TIMER_SLACK = 1e-5  # seconds
RunBatch = Callable[[Hashable, Arrays], Arrays]


class BatchObserver(Protocol):
    """What the batcher reports, named after TF Serving's batching_session metrics."""

    def input_batch(self, rows: int) -> None: ...
    def queued(self, micros: float) -> None: ...
    def processed_batch(self, rows: int, padding: int) -> None: ...


@dataclass(eq=False)
class _Task:
    """Rows of one request (or one piece of a split request) waiting for a batch."""

    inputs: Arrays
    size: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    batch: _Batch | None = None


@dataclass(eq=False)
class _Batch:
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    opened: float = 0.0


class _Queue:
    """One signature's batches; ``batches[-1]`` is the open one."""

    def __init__(self) -> None:
        self.batches: deque[_Batch] = deque([_Batch()])

    @property
    def open(self) -> _Batch:
        return self.batches[-1]


def rows_of(inputs: Arrays) -> int:
    """The batch dimension shared by all inputs, as TF's batching session requires."""
    sizes = set()
    for array in inputs.values():
        if array.ndim == 0:
            raise invalid("Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def padded_size(rows: int, allowed: tuple[int, ...]) -> int:
    """The smallest allowed batch size that holds ``rows`` (``rows`` itself when none is set)."""
    for size in allowed:
        if size >= rows:
            return size
    return rows


class Batcher:
    """Batches ``submit`` calls that share a key and runs them with ``run_batch``."""

    def __init__(
        self, config: BatchingConfig, run_batch: RunBatch, observer: BatchObserver | None = None
    ) -> None:
        self.config = config
        self._run_batch = run_batch
        self._observer = observer
        self._queues: dict[Hashable, _Queue] = {}
        self._idle_threads = config.num_batch_threads
        self._pool = ThreadPoolExecutor(config.num_batch_threads, config.thread_pool_name)
        self._running: set[asyncio.Task] = set()
        self._timeout = config.batch_timeout_micros / 1e6
        self._flushing = False
        self._limit = config.max_execution_batch_size

    async def submit(self, key: Hashable, inputs: Arrays) -> Arrays:
        """Queue the request's rows and return its rows of the outputs."""
        size = rows_of(inputs)
        if size > self.config.max_batch_size:
            raise invalid(
                f"Task size {size} is larger than maximum input batch size "
                f"{self.config.max_batch_size}"
            )
        if self._observer:
            self._observer.input_batch(size)
        queue = self._queues.setdefault(key, _Queue())
        loop = asyncio.get_running_loop()
        pieces = self._pieces(queue, size)
        tasks = []
        start = 0
        for piece in pieces:
            part = {k: v[start : start + piece] for k, v in inputs.items()}
            tasks.append(_Task(part, piece, loop.create_future()))
            start += piece
        for task in tasks:
            self._enqueue(queue, task)
        self._dispatch()
        try:
            results = [await task.future for task in tasks]
        except asyncio.CancelledError:
            for task in tasks:
                task.future.cancel()
                self._withdraw(queue, task)
            raise
        if len(results) == 1:
            return results[0]
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}

    def _pieces(self, queue: _Queue, size: int) -> list[int]:
        """How the request's rows are spread over batches; raises UNAVAILABLE when full."""
        config = self.config
        batches = queue.batches
        if not config.enable_large_batch_splitting:
            if queue.open.size + size > self._limit and len(batches) >= config.max_enqueued_batches:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; "
                    f"currently {len(batches)} batches enqueued and max_enqueued_batches is "
                    f"{config.max_enqueued_batches}",
                )
            return [size]
        room = self._limit - queue.open.size
        capacity = (config.max_enqueued_batches - len(batches)) * self._limit + room
        if size > capacity:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                "The batch scheduling queue to which this task was submitted is full; task size "
                f"is {size} but scheduling capacity is only {capacity} (num_enqueued_batches="
                f"{len(batches)}, max_enqueued_batches={config.max_enqueued_batches}, "
                f"open_batch_size={queue.open.size}, max_execution_batch_size={self._limit})",
            )
        pieces = [min(size, room)] if room > 0 else []
        rest = size - sum(pieces)
        while rest > 0:
            pieces.append(min(rest, self._limit))
            rest -= pieces[-1]
        return pieces or [0]

    def _enqueue(self, queue: _Queue, task: _Task) -> None:
        if queue.open.size + task.size > self._limit:
            queue.batches.append(_Batch())
        batch = queue.open
        if not batch.tasks:
            batch.opened = time.monotonic()
            if self._timeout > 0:
                asyncio.get_running_loop().call_later(self._timeout, self._dispatch)
        batch.tasks.append(task)
        batch.size += task.size
        task.batch = batch

    def _withdraw(self, queue: _Queue, task: _Task) -> None:
        """Take a cancelled task out of its batch if that batch has not started running."""
        batch, task.batch = task.batch, None
        if batch is None or not any(b is batch for b in queue.batches):
            return  # running or done: the batch thread finishes it and drops its result
        batch.tasks.remove(task)
        batch.size -= task.size
        task.inputs = {}
        if not batch.tasks and batch is not queue.open:
            queue.batches.remove(batch)

    def _schedulable(self, queue: _Queue, now: float) -> bool:
        front = queue.batches[0]
        # The slack covers timers that fire a hair early, which would otherwise strand a batch.
        return len(queue.batches) > 1 or (
            bool(front.tasks)
            and (
                self._flushing
                or front.size >= self._limit
                or now - front.opened >= self._timeout - _TIMER_SLACK
            )
        )

    def _dispatch(self) -> None:
        """Hand schedulable batches to idle batch threads, oldest batch first."""
        while self._idle_threads > 0:
            now = time.monotonic()
            ready = [
                (queue.batches[0].opened, key)
                for key, queue in self._queues.items()
                if self._schedulable(queue, now)
            ]
            if not ready:
                return
            key = min(ready, key=lambda item: item[0])[1]
            queue = self._queues[key]
            batch = queue.batches.popleft()
            if not queue.batches:
                queue.batches.append(_Batch())
            tasks = [task for task in batch.tasks if not task.future.done()]
            if not tasks:
                continue
            self._idle_threads -= 1
            if self._observer:
                for task in tasks:
                    self._observer.queued((now - task.enqueued) * 1e6)
            running = asyncio.ensure_future(self._execute(key, tasks))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    async def _execute(self, key: Hashable, tasks: list[_Task]) -> None:
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._pool, self._run, key, tasks)
        except ServingError as exc:
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(exc)
        except Exception as exc:  # a bug, not a request error: report it, keep serving
            error = ServingError(grpc.StatusCode.INTERNAL, f"Batch failed: {exc!r}")
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(error)
        else:
            for task, output in zip(tasks, outputs, strict=True):
                if not task.future.done():
                    task.future.set_result(output)
        finally:
            self._idle_threads += 1
            self._dispatch()

    def _run(self, key: Hashable, tasks: list[_Task]) -> list[Arrays]:
        """On a batch thread: merge, pad, run once, and cut the outputs back per task."""
        rows = sum(task.size for task in tasks)
        target = padded_size(rows, self.config.allowed_batch_sizes) if rows else 0
        merged = {}
        for name in tasks[0].inputs:
            parts = [task.inputs[name] for task in tasks]
            if target > rows:
                parts.append(np.repeat(parts[0][:1], target - rows, axis=0))
            try:
                merged[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            except ValueError as exc:
                raise invalid(f"Batching Run() could not merge input {name}: {exc}") from None
        if self._observer:
            self._observer.processed_batch(target, target - rows)
        outputs = self._run_batch(key, merged)
        results = []
        start = 0
        for task in tasks:
            results.append({k: v[start : start + task.size] for k, v in outputs.items()})
            start += task.size
        return results

    def flush(self) -> None:
        """Stop waiting for batches to fill: from now on every batch runs as soon as it can.

        TF Serving's scheduler does the same when its queues close at shutdown, so stopping
        the server does not sit out ``batch_timeout_micros``.
        """
        self._flushing = True
        self._dispatch()

    async def close(self) -> None:
        """Run what is queued, wait for running batches, then stop the batch threads."""
        self.flush()
        while self._running or any(q.batches[0].tasks for q in self._queues.values()):
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
            else:
                await asyncio.sleep(0.001)
        self._pool.shutdown(wait=True)
