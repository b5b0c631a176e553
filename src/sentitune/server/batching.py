"""Calling the model: one worker thread, and fair micro-batches of concurrent requests."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
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
        answers = settings.inference
        self._predict = partial(
            classifier.predict,
            batch_size=settings.max_batch_size,
            review_threshold=answers.review_threshold,
            threshold=answers.threshold,
            review_truncated=answers.review_truncated,
            max_batch_tokens=settings.max_batch_tokens,
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


class Overloaded(Exception):
    """The model did not start on a request within `max_queue_ms`: answer 503."""

    def __init__(self, waited_ms: float) -> None:
        super().__init__(f"the server is overloaded: the request waited {waited_ms:.0f} ms "
                         "without reaching the model; retry later")
        self.retry_after_s = max(1, math.ceil(waited_ms / 1000))


@dataclass(eq=False)  # compared by identity: `in` and `remove` find this very request
class _Pending:
    texts: list[str]
    future: asyncio.Future[Predictions]
    arrived: float  # loop.time()
    sent: int = 0  # texts handed to the model so far
    answered: int = 0
    results: list[dict[str, Any] | None] = field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None

    @property
    def unsent(self) -> int:
        return len(self.texts) - self.sent


@dataclass
class _Piece:
    """Texts `start:end` of one request, in a shared model call."""

    pending: _Pending
    start: int
    end: int


class MicroBatcher:
    """Groups concurrent requests into shared model calls, fairly.

    A call holds at most `max_batch_size` texts, shared out one text per waiting request
    in turn (oldest first) until it is full: a request of 256 texts is answered in pieces
    across several calls, and a single text arriving meanwhile rides in the next call
    instead of waiting for all 256. A partly served request goes to the back of the queue.

    A call starts as soon as the model is free and a request waits; while more than one
    waits, it is held open up to `max_wait_ms` after the oldest arrived, until full. A
    request the model has not started on within `max_queue_ms` fails with `Overloaded`
    (503 with Retry-After): under overload clients hear so at once, they never stall.
    """

    def __init__(self, worker: ModelWorker, max_batch_size: int, max_wait_ms: float,
                 max_queue_ms: float) -> None:
        self._worker = worker
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._max_queue = max_queue_ms / 1000
        self._pending: deque[_Pending] = deque()
        self._queued_texts = 0  # texts not yet sent to the model
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
        pending = _Pending(texts, loop.create_future(), loop.time(), results=[None] * len(texts))
        pending.expiry = loop.call_later(self._max_queue, self._expire, pending)
        self._pending.append(pending)
        self._queued_texts += len(texts)
        self._arrived.set()
        try:
            return await pending.future
        finally:
            pending.expiry.cancel()
            if pending.future.cancelled():
                self._drop(pending)  # its client went away: do not compute the rest

    def _drop(self, pending: _Pending) -> None:
        if pending in self._pending:
            self._pending.remove(pending)
            self._queued_texts -= pending.unsent

    def _expire(self, pending: _Pending) -> None:
        if pending.sent == 0 and not pending.future.done():
            self._drop(pending)
            pending.future.set_exception(Overloaded(self._max_queue * 1000))

    async def _serve_forever(self) -> None:
        while True:
            await self._run(await self._next_batch())

    async def _next_batch(self) -> list[_Piece]:
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
        return self._share_out()

    def _share_out(self) -> list[_Piece]:
        """One text per waiting request in turn, oldest first, until the call is full."""
        shares = {id(pending): 0 for pending in self._pending}
        free = self._max_batch_size
        while free:
            given = 0
            for pending in self._pending:
                if free and pending.unsent > shares[id(pending)]:
                    shares[id(pending)] += 1
                    free -= 1
                    given += 1
            if not given:
                break
        pieces = []
        waiting: deque[_Pending] = deque()
        for pending in self._pending:
            share = shares[id(pending)]
            if share:
                pieces.append(_Piece(pending, pending.sent, pending.sent + share))
                pending.sent += share
            else:
                waiting.append(pending)
        # Partly served requests wait their next turn behind the others.
        waiting.extend(piece.pending for piece in pieces if piece.pending.unsent)
        self._pending = waiting
        self._queued_texts -= sum(piece.end - piece.start for piece in pieces)
        return pieces

    async def _run(self, pieces: list[_Piece]) -> None:
        if not pieces:
            return
        texts = [text for piece in pieces for text in piece.pending.texts[piece.start:piece.end]]
        try:
            predictions = await self._worker.predict(texts)
        except asyncio.CancelledError:
            for piece in pieces:
                piece.pending.future.cancel()
            raise
        except Exception as error:
            if len(pieces) == 1:
                pending = pieces[0].pending
                self._drop(pending)
                if not pending.future.done():
                    pending.future.set_exception(error)
                return
            # One request must not fail its neighbours: retry each on its own.
            for piece in pieces:
                await self._run([piece])
            return
        offset = 0
        for piece in pieces:
            pending, size = piece.pending, piece.end - piece.start
            pending.results[piece.start:piece.end] = predictions[offset:offset + size]
            pending.answered += size
            offset += size
            # Done already means cancelled or failed: nothing to deliver.
            if pending.answered == len(pending.texts) and not pending.future.done():
                pending.future.set_result(pending.results)
