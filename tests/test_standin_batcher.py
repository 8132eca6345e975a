"""The stand-in's batcher against a fake model: TF Serving's batching rules, without TensorFlow."""

from __future__ import annotations

import asyncio
import threading

import grpc
import numpy as np
import pytest

from standin.batcher import Batcher
from standin.status import ServingError
from tfsload.core.serving_config import BatchingConfig

KEY = ("serving_default", ())


class FakeModel:
    """Doubles its input; records each batch; can hold batches until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[np.ndarray] = []
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        if not hold:
            self.release.set()

    def __call__(self, key, inputs):
        assert key == KEY
        self.batches.append(inputs["x"].copy())
        self.started.release()
        assert self.release.wait(30), "test never released the batch"
        return {"y": inputs["x"] * 2}


class Observer:
    def __init__(self) -> None:
        self.inputs: list[int] = []
        self.processed: list[tuple[int, int]] = []
        self.queued_micros: list[float] = []

    def input_batch(self, rows):
        self.inputs.append(rows)

    def queued(self, micros):
        self.queued_micros.append(micros)

    def processed_batch(self, rows, padding):
        self.processed.append((rows, padding))


def rows(start: int, count: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + count, dtype=np.int32).reshape(count, 1)}


def config(**fields) -> BatchingConfig:
    fields.setdefault("num_batch_threads", 1)
    fields.setdefault("max_execution_batch_size", fields.get("max_batch_size", 1000))
    return BatchingConfig(**fields)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_concurrent_requests_join_one_batch_and_get_their_own_rows():
    model = FakeModel()

    async def scenario():
        batcher = Batcher(config(max_batch_size=100, batch_timeout_micros=100_000), model)
        results = await asyncio.gather(*(batcher.submit(KEY, rows(10 * i, 3)) for i in range(5)))
        await batcher.close()
        return results

    results = run(scenario())
    assert [len(b) for b in model.batches] == [15]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], rows(10 * i, 3)["x"] * 2)


def test_without_timeout_an_idle_thread_takes_each_request_alone():
    model = FakeModel()

    async def scenario():
        batcher = Batcher(config(max_batch_size=100, num_batch_threads=2), model)
        for i in range(3):
            await batcher.submit(KEY, rows(i, 2))
        await batcher.close()

    run(scenario())
    assert [len(b) for b in model.batches] == [2, 2, 2]


def test_a_full_batch_does_not_wait_for_the_timeout():
    model = FakeModel()

    async def scenario():
        batcher = Batcher(config(max_batch_size=6, batch_timeout_micros=600_000_000), model)
        await asyncio.gather(batcher.submit(KEY, rows(0, 3)), batcher.submit(KEY, rows(3, 3)))
        await batcher.close()

    run(scenario())  # would hang for ten minutes (and time out) if the timeout were awaited
    assert [len(b) for b in model.batches] == [6]


def test_full_queue_fails_at_once_with_unavailable():
    model = FakeModel(hold=True)

    async def scenario():
        batcher = Batcher(config(max_batch_size=2, max_enqueued_batches=2), model)
        running = asyncio.ensure_future(batcher.submit(KEY, rows(0, 2)))
        await asyncio.to_thread(model.started.acquire)  # A holds the only batch thread
        queued = [asyncio.ensure_future(batcher.submit(KEY, rows(i, 2))) for i in (2, 4)]
        await asyncio.sleep(0)
        with pytest.raises(ServingError) as rejected:
            await batcher.submit(KEY, rows(6, 2))
        model.release.set()
        done = await asyncio.gather(running, *queued)
        await batcher.close()
        return rejected.value, done

    error, done = run(scenario())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert "The batch scheduling queue to which this task was submitted is full" in error.message
    assert [len(r["y"]) for r in done] == [2, 2, 2]
    assert [len(b) for b in model.batches] == [2, 2, 2]


def test_request_larger_than_max_batch_size_is_invalid_argument():
    async def scenario():
        batcher = Batcher(config(max_batch_size=4), FakeModel())
        with pytest.raises(ServingError) as error:
            await batcher.submit(KEY, rows(0, 5))
        await batcher.close()
        return error.value

    error = run(scenario())
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "Task size 5 is larger than maximum input batch size 4"


def test_batches_are_padded_to_allowed_sizes_and_padding_is_dropped():
    model = FakeModel()
    observer = Observer()

    async def scenario():
        batcher = Batcher(config(max_batch_size=8, allowed_batch_sizes=(4, 8)), model, observer)
        result = await batcher.submit(KEY, rows(7, 3))
        await batcher.close()
        return result

    result = run(scenario())
    np.testing.assert_array_equal(model.batches[0].ravel(), [7, 8, 9, 7])  # first row repeated
    np.testing.assert_array_equal(result["y"].ravel(), [14, 16, 18])
    assert observer.inputs == [3]
    assert observer.processed == [(4, 1)]
    assert len(observer.queued_micros) == 1 and observer.queued_micros[0] >= 0


def test_large_batch_splitting_spreads_a_request_and_reassembles_it():
    model = FakeModel()

    async def scenario():
        batcher = Batcher(
            config(
                max_batch_size=10,
                enable_large_batch_splitting=True,
                max_execution_batch_size=4,
                max_enqueued_batches=10,
            ),
            model,
        )
        result = await batcher.submit(KEY, rows(100, 10))
        await batcher.close()
        return result

    result = run(scenario())
    assert [len(b) for b in model.batches] == [4, 4, 2]
    np.testing.assert_array_equal(result["y"], rows(100, 10)["x"] * 2)


def test_splitting_refuses_what_the_queue_cannot_hold():
    async def scenario():
        batcher = Batcher(
            config(
                max_batch_size=10,
                enable_large_batch_splitting=True,
                max_execution_batch_size=2,
                max_enqueued_batches=2,
            ),
            FakeModel(),
        )
        with pytest.raises(ServingError) as error:
            await batcher.submit(KEY, rows(0, 5))
        await batcher.close()
        return error.value

    error = run(scenario())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert "task size is 5 but scheduling capacity is only 4" in error.message


def test_flush_runs_a_waiting_batch_without_its_timeout():
    model = FakeModel()

    async def scenario():
        batcher = Batcher(config(max_batch_size=100, batch_timeout_micros=600_000_000), model)
        waiting = asyncio.ensure_future(batcher.submit(KEY, rows(0, 3)))
        await asyncio.sleep(0.01)
        assert not model.batches
        batcher.flush()
        result = await waiting  # would take ten minutes (and time out) without the flush
        late = await batcher.submit(KEY, rows(3, 2))  # after a flush nothing waits to fill
        await batcher.close()
        return result, late

    result, late = run(scenario())
    assert [len(b) for b in model.batches] == [3, 2]
    np.testing.assert_array_equal(late["y"], rows(3, 2)["x"] * 2)
    assert len(result["y"]) == 3


def test_a_cancelled_request_is_left_out_of_its_batch():
    model = FakeModel()

    async def scenario():
        batcher = Batcher(config(max_batch_size=100, batch_timeout_micros=200_000), model)
        gone = asyncio.ensure_future(batcher.submit(KEY, rows(0, 3)))
        kept = asyncio.ensure_future(batcher.submit(KEY, rows(50, 2)))
        await asyncio.sleep(0.01)
        gone.cancel()
        result = await kept
        await batcher.close()
        return result

    result = run(scenario())
    assert [b.ravel().tolist() for b in model.batches] == [[50, 51]]
    np.testing.assert_array_equal(result["y"].ravel(), [100, 102])


def test_num_batch_threads_batches_run_at_the_same_time():
    barrier = threading.Barrier(2, timeout=30)

    def model(key, inputs):
        barrier.wait()  # breaks (BrokenBarrierError) unless two batches run concurrently
        return {"y": inputs["x"]}

    async def scenario():
        batcher = Batcher(config(max_batch_size=2, num_batch_threads=2), model)
        await asyncio.gather(batcher.submit(KEY, rows(0, 2)), batcher.submit(KEY, rows(2, 2)))
        await batcher.close()

    run(scenario())


def test_a_failing_batch_fails_every_request_in_it():
    def model(key, inputs):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "bad rows")

    async def scenario():
        batcher = Batcher(config(max_batch_size=100, batch_timeout_micros=100_000), model)
        results = await asyncio.gather(
            *(batcher.submit(KEY, rows(i, 1)) for i in range(3)), return_exceptions=True
        )
        await batcher.close()
        return results

    results = run(scenario())
    assert all(isinstance(r, ServingError) and r.message == "bad rows" for r in results)


def test_a_cancelled_request_leaves_its_batch_and_frees_its_queue_slot():
    """A caller whose deadline passed: its rows leave the open batch, so the next request
    needs no second batch (the queue holds one) and runs alone."""
    model = FakeModel()

    async def scenario():
        batcher = Batcher(
            config(max_batch_size=10, batch_timeout_micros=600_000_000, max_enqueued_batches=1),
            model,
        )
        abandoned = asyncio.ensure_future(batcher.submit(KEY, rows(0, 6)))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        kept = asyncio.ensure_future(batcher.submit(KEY, rows(100, 6)))  # 6 + 6 > 10
        await asyncio.sleep(0.01)
        batcher.flush()
        result = await kept
        await batcher.close()
        return result

    result = run(scenario())
    assert [b[:, 0].tolist() for b in model.batches] == [list(range(100, 106))]
    np.testing.assert_array_equal(result["y"], rows(100, 6)["x"] * 2)


def test_a_cancelled_request_in_a_closed_batch_leaves_the_queue_too():
    model = FakeModel(hold=True)

    async def scenario():
        batcher = Batcher(config(max_batch_size=4, max_enqueued_batches=2), model)
        running = asyncio.ensure_future(batcher.submit(KEY, rows(0, 4)))
        await asyncio.to_thread(model.started.acquire)  # holds the only batch thread
        abandoned = asyncio.ensure_future(batcher.submit(KEY, rows(4, 4)))  # closed batch
        waiting = asyncio.ensure_future(batcher.submit(KEY, rows(8, 4)))  # open batch: 2 of 2
        await asyncio.sleep(0.01)
        abandoned.cancel()
        await asyncio.sleep(0.01)
        again = asyncio.ensure_future(batcher.submit(KEY, rows(12, 4)))  # room again
        await asyncio.sleep(0.01)
        model.release.set()
        done = await asyncio.gather(running, waiting, again)
        await batcher.close()
        return done

    done = run(scenario())
    assert [len(r["y"]) for r in done] == [4, 4, 4]
    assert [b[0, 0] for b in model.batches] == [0, 8, 12]
