"""The per-model batcher: runs at once when idle, merges while busy, bounded queue, cancellation, isolation."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from contract.errors import Overloaded
from serving.core.batcher import Batcher


class Model:
    """A stand-in for a session's ``predict_all``: doubles its rows, records each call, can be held."""

    def __init__(self, poison: float | None = None) -> None:
        self.calls: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.poison = poison

    def __call__(self, rows: np.ndarray) -> list[np.ndarray]:
        self.calls.append(rows.copy())
        self.entered.set()
        self.gate.wait(10)
        if self.poison is not None and (rows == self.poison).any():
            raise RuntimeError("the model cannot take this row")
        return [rows * 2, rows.sum(axis=1)]


def rows(*values: float) -> np.ndarray:
    return np.array([[v, v] for v in values], dtype=np.float32)


async def hold(model: Model, batcher: Batcher, first: np.ndarray) -> asyncio.Task:
    """Start ``first`` and wait until the model is computing it (held at the gate)."""
    model.gate.clear()
    model.entered.clear()
    task = asyncio.ensure_future(batcher.submit(first))
    await asyncio.to_thread(model.entered.wait, 5)
    return task


def test_lone_request_runs_at_once_and_gets_every_output():
    async def main() -> None:
        model = Model()
        batcher = Batcher("m", model, max_batch_size=8, max_queue=4)
        doubled, sums = await batcher.submit(rows(1, 2))
        np.testing.assert_array_equal(doubled, rows(2, 4))
        np.testing.assert_array_equal(sums, [2, 4])
        # Idle model, no delay: the request ran alone, nothing waited for company.
        assert [len(c) for c in model.calls] == [2]
        await batcher.close()

    asyncio.run(main())


def test_requests_arriving_while_busy_are_merged_into_the_next_call():
    async def main() -> None:
        seen: list[tuple[list[float], float, int]] = []
        model = Model()
        batcher = Batcher("m", model, max_batch_size=64, max_queue=16, on_batch=lambda q, c, n: seen.append((q, c, n)))
        first = await hold(model, batcher, rows(0))
        waiting = [asyncio.ensure_future(batcher.submit(rows(i, i + 0.5))) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert batcher.depth == 5
        model.gate.set()
        results = await asyncio.gather(first, *waiting)
        assert [len(c) for c in model.calls] == [1, 10]  # the five waiting requests ran as one call
        for i, (doubled, _) in enumerate(results[1:], start=1):
            np.testing.assert_array_equal(doubled, rows(i, i + 0.5) * 2)  # each got its own rows back
        assert [n for _, _, n in seen] == [1, 10]
        assert len(seen[1][0]) == 5 and all(q > 0 for q in seen[1][0])
        await batcher.close()

    asyncio.run(main())


def test_max_batch_size_splits_the_queue_into_several_calls():
    async def main() -> None:
        model = Model()
        batcher = Batcher("m", model, max_batch_size=4, max_queue=16)
        first = await hold(model, batcher, rows(0))
        waiting = [asyncio.ensure_future(batcher.submit(rows(i))) for i in range(1, 10)]
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.gather(first, *waiting)
        assert [len(c) for c in model.calls] == [1, 4, 4, 1]
        await batcher.close()

    asyncio.run(main())


def test_a_request_larger_than_the_batch_runs_alone():
    async def main() -> None:
        model = Model()
        batcher = Batcher("m", model, max_batch_size=2, max_queue=4)
        doubled, _ = await batcher.submit(rows(*range(5)))
        assert len(doubled) == 5 and [len(c) for c in model.calls] == [5]
        await batcher.close()

    asyncio.run(main())


def test_full_queue_is_refused_at_once():
    async def main() -> None:
        model = Model()
        batcher = Batcher("m", model, max_batch_size=64, max_queue=3)
        first = await hold(model, batcher, rows(0))
        waiting = [asyncio.ensure_future(batcher.submit(rows(i))) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="SERVING_MAX_QUEUE"):
            await batcher.submit(rows(9))
        model.gate.set()
        await asyncio.gather(first, *waiting)
        assert sum(len(c) for c in model.calls) == 4  # the refused request never reached the model
        await batcher.close()

    asyncio.run(main())


def test_cancelled_request_leaves_the_queue_before_it_runs():
    async def main() -> None:
        depths: list[int] = []
        model = Model()
        batcher = Batcher("m", model, max_batch_size=64, max_queue=8, on_depth=depths.append)
        first = await hold(model, batcher, rows(0))
        keep = asyncio.ensure_future(batcher.submit(rows(1)))
        gone = asyncio.ensure_future(asyncio.wait_for(batcher.submit(rows(7)), timeout=0.05))  # a deadline
        with pytest.raises(asyncio.TimeoutError):
            await gone
        assert batcher.depth == 1
        model.gate.set()
        await asyncio.gather(first, keep)
        assert not any((c == 7).any() for c in model.calls)
        assert depths[-1] == 0
        await batcher.close()

    asyncio.run(main())


def test_a_failing_request_never_fails_its_batch_mates():
    async def main() -> None:
        model = Model(poison=-1.0)
        batcher = Batcher("m", model, max_batch_size=64, max_queue=8)
        first = await hold(model, batcher, rows(0))
        good = [asyncio.ensure_future(batcher.submit(rows(i))) for i in (1, 2)]
        bad = asyncio.ensure_future(batcher.submit(rows(-1)))
        await asyncio.sleep(0.05)
        model.gate.set()
        await first
        for i, task in zip((1, 2), good):
            np.testing.assert_array_equal((await task)[0], rows(i) * 2)
        with pytest.raises(RuntimeError, match="cannot take"):
            await bad
        await batcher.close()

    asyncio.run(main())


def test_queue_delay_waits_for_company_only_when_asked():
    async def main() -> None:
        model = Model()
        batcher = Batcher("m", model, max_batch_size=64, max_queue=8, queue_delay_s=0.2)
        a = asyncio.ensure_future(batcher.submit(rows(1)))
        await asyncio.sleep(0.02)
        b = asyncio.ensure_future(batcher.submit(rows(2)))
        await asyncio.gather(a, b)
        assert [len(c) for c in model.calls] == [2]
        await batcher.close()

    asyncio.run(main())


def test_settings_are_checked():
    with pytest.raises(ValueError):
        Batcher("m", Model(), max_batch_size=0, max_queue=1)
