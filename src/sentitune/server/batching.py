"""Calling the model: one worker thread, and micro-batches of concurrent requests."""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

from sentitune.inference.classifier import Classifier
from sentitune.server.metrics import ServeMetrics
from sentitune.server.settings import ServeSettings

Predictions = list[dict[str, Any]]


class ModelWorker:
    """Runs `classifier.predict` in one dedicated thread, so calls never overlap."""

    def __init__(
        self, classifier: Classifier, settings: ServeSettings, metrics: ServeMetrics
    ) -> None:
        self._predict = partial(
            classifier.predict,
            batch_size=settings.max_batch_size,
            review_threshold=settings.review_threshold,
            review_truncated=settings.review_truncated,
        )
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentitune-model")

    async def predict(self, texts: list[str]) -> Predictions:
        loop = asyncio.get_running_loop()
        predictions = await loop.run_in_executor(self._executor, self._predict, texts)
        self._metrics.batch_size.observe(len(texts))
        return predictions

    async def warm_up(self) -> None:
        """One throwaway call: the first forward pass is slow, and no user should pay it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._predict, ["warm up"])

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[Predictions]
    arrived: float  # loop.time()


class MicroBatcher:
    """Groups concurrent requests into shared model calls.

    A batch starts with the oldest waiting request and closes when it holds
    `max_batch_size` texts or when that request has waited `max_wait_ms`. A request that
    finds nobody else waiting goes at once: low load pays no batching delay. Under load
    batches form by themselves, because requests queue up while the model is busy with
    the previous batch; the wait only matters for a burst that reaches an idle model.
    """

    def __init__(self, worker: ModelWorker, max_batch_size: int, max_wait_ms: float) -> None:
        self._worker = worker
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._pending: deque[_Pending] = deque()
        self._queued_texts = 0
        # An Event, not an asyncio.Queue: timing out a wait on it can never lose a request.
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve_forever(), name="sentitune-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        for pending in self._pending:
            pending.future.cancel()

    async def predict(self, texts: list[str]) -> Predictions:
        loop = asyncio.get_running_loop()
        pending = _Pending(texts, loop.create_future(), loop.time())
        self._pending.append(pending)
        self._queued_texts += len(texts)
        self._arrived.set()
        return await pending.future

    async def _serve_forever(self) -> None:
        while True:
            await self._run(await self._next_batch())

    async def _next_batch(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        # Let requests already read off the sockets in this loop turn join the batch.
        await asyncio.sleep(0)
        if len(self._pending) > 1:
            deadline = self._pending[0].arrived + self._max_wait
            while (
                self._queued_texts < self._max_batch_size
                and (remaining := deadline - loop.time()) > 0
            ):
                self._arrived.clear()
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
        batch = [self._pending.popleft()]
        texts = len(batch[0].texts)
        while self._pending and texts + len(self._pending[0].texts) <= self._max_batch_size:
            batch.append(self._pending.popleft())
            texts += len(batch[-1].texts)
        self._queued_texts -= texts
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        texts = [text for pending in batch for text in pending.texts]
        try:
            predictions = await self._worker.predict(texts)
        except asyncio.CancelledError:
            for pending in batch:
                pending.future.cancel()
            raise
        except Exception as error:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            # One request must not fail its neighbours: retry each on its own.
            for pending in batch:
                await self._run([pending])
            return
        start = 0
        for pending in batch:
            end = start + len(pending.texts)
            # Done already means cancelled: its client went away while it waited.
            if not pending.future.done():
                pending.future.set_result(predictions[start:end])
            start = end
