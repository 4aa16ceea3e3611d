"""Dynamic batching: concurrent requests for the same served name become one ``generate_batch`` call.

One worker thread per base model owns that model: it alone switches adapters and generates, so a
batch never sees another request's adapter. The worker takes the oldest waiting request, then waits
up to ``max_wait_ms`` (from that request's arrival) for more requests with the same served name and
the same generation settings, up to ``max_batch_size``; requests that queued while a batch ran are
taken at once. A lone request after a lone batch (sequential traffic) does not wait at all.
Streaming requests run alone, so their tokens can be streamed as they are generated
(transformers streamers take one sequence); so do seeded sampling requests, so a seed reproduces.
If a batch fails, its requests are retried one by one, so one bad request fails alone; whatever a
generation raises (even ``StopIteration``, which an asyncio future refuses to carry) reaches its
request as a ``GenerationFailed``, and the worker lives on.

A request whose client went away (or a server shutting down) sets ``Job.cancel``: a stopping
criterion checked after every token ends that row, so an abandoned request stops costing CPU/GPU.
``/health`` reads bounded counters (batches run, largest batch, tokens generated, cancelled requests),
not a list that grows with every batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mixtrain.serving.pool import Base, Served


@dataclass
class Job:
    served: Served
    conversation: list[dict]
    images: list
    gen: dict  # generation_settings(...) plus "stop"
    seed: int | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    on_text: Callable[[str], object] | None = None  # streaming: called from the worker thread with new text
    arrived: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)  # the client went away: stop generating

    @property
    def alone(self) -> bool:
        """Streamed, or seeded sampling (reproducible only when the batch is the same): run by itself."""
        return self.on_text is not None or (self.seed is not None and bool(self.gen.get("do_sample")))

    def key(self) -> tuple:
        return (
            self.served.name,
            self.seed,
            tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in self.gen.items())),
        )


class GenerationFailed(Exception):
    """What a request gets when its generation raised: the original is its ``__cause__`` (logged, not shown)."""

    def __init__(self, err: BaseException):
        super().__init__(f"generation failed ({type(err).__name__})")
        self.__cause__ = err


class Batcher:
    def __init__(self, bases: list[Base], max_batch_size: int = 8, max_wait_ms: float = 10.0):
        self.max_batch_size, self.max_wait = max(1, max_batch_size), max(0.0, max_wait_ms) / 1000
        self._queues: dict[int, deque[Job]] = {id(b): deque() for b in bases}
        self._cond = threading.Condition()
        self._closing = False
        self.batch_count = 0  # batches run (for /health and tests) — counters, so memory stays flat
        self.largest_batch = 0
        self.completion_tokens = 0  # generated for answers delivered or abandoned
        self.cancelled = 0  # requests stopped early because their client went away
        self.pending = 0  # submitted and not yet answered (queued or generating)
        self._running: list[Job] = []
        self._last: dict[int, int] = {}  # size of each base's previous batch
        self._threads = [
            threading.Thread(target=self._work, args=(b,), name=f"batcher-{i}", daemon=True)
            for i, b in enumerate(bases)
        ]
        for t in self._threads:
            t.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("server is shutting down")
            self._queues[id(job.served.base)].append(job)
            self.pending += 1
            self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Stop: queued and running generations are cancelled (their requests are gone with the server)."""
        with self._cond:
            self._closing = True
            for job in [*self._running, *(j for q in self._queues.values() for j in q)]:
                job.cancel.set()
            self._cond.notify_all()
        end = time.monotonic() + timeout
        for t in self._threads:  # daemon threads: a generation stuck in native code cannot hold the exit
            t.join(max(0.0, end - time.monotonic()))

    # -- worker ---------------------------------------------------------------------------------------
    def _work(self, base: Base) -> None:
        queue = self._queues[id(base)]
        while True:
            with self._cond:
                while not queue and not self._closing:
                    self._cond.wait()
                if not queue:
                    return
                batch = self._take(queue, wait=self._last.get(id(base), 1) > 1 or len(queue) > 1)
                live = [j for j in batch if not j.cancel.is_set()]
                gone = [j for j in batch if j.cancel.is_set()]  # gone before it started: nothing to generate
                self.cancelled += len(gone)
                self.pending -= len(gone)
                self._running = live
            for job in gone:
                _settle(job, None, GenerationFailed(RuntimeError("cancelled before it started")))
            try:
                if live:
                    self._run(base, live)
            except BaseException as err:  # never let one batch kill the worker: every later request would hang
                for job in live:
                    if not job.future.done():
                        self._deliver(job, None, err)
            finally:
                with self._cond:
                    self._running = []

    def _take(self, queue: deque[Job], wait: bool = True) -> list[Job]:
        """Called with the lock held: the oldest job plus same-key jobs, waiting up to max_wait for more.

        ``wait`` is false for a lone request after a lone batch (one client at a time): waiting could
        only add latency there. Under concurrent load the previous batch was bigger and we wait.
        """
        head = queue[0]
        if not head.alone:
            key, deadline = head.key(), head.arrived + (self.max_wait if wait else 0.0)
            while not self._closing:
                same = sum(1 for j in queue if not j.alone and j.key() == key)
                left = deadline - time.monotonic()
                if same >= self.max_batch_size or left <= 0:
                    break
                self._cond.wait(left)
            batch = [j for j in queue if not j.alone and j.key() == key][: self.max_batch_size]
        else:
            batch = [head]
        for j in batch:
            queue.remove(j)
        return batch

    def _run(self, base: Base, batch: list[Job]) -> None:
        self.batch_count += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        self._last[id(base)] = len(batch)
        try:
            results = self._generate(base, batch)
        except Exception as err:
            if len(batch) > 1:
                for job in batch:  # find the request that broke the batch; the others still get answers
                    self._run(base, [job])
                return
            self._deliver(batch[0], None, err)
            return
        for job, res in zip(batch, results, strict=False):
            self._deliver(job, res, None)

    def _deliver(self, job: Job, result, error) -> None:
        with self._cond:
            self.pending -= 1
            if result is not None:
                self.completion_tokens += result.completion_tokens
            if job.cancel.is_set():
                self.cancelled += 1
        _settle(job, result, None if error is None else GenerationFailed(error))

    def _generate(self, base: Base, batch: list[Job]) -> list:
        from mixtrain.models.generate import generate_batch

        served = batch[0].served
        gen = dict(batch[0].gen)
        if batch[0].seed is not None:
            gen["seed"] = batch[0].seed  # one seed per batch: the batch key includes it
        kwargs: dict[str, Any] = {"stopping_criteria": _cancelled(batch)}
        if batch[0].on_text is not None:
            kwargs["streamer"] = _Streamer(served.processor.tokenizer, batch[0].on_text)
        with base.activate(served):
            return generate_batch(
                base.model,
                served.processor,
                [j.conversation for j in batch],
                [j.images for j in batch],
                gen,
                device=base.device,
                dtype=base.dtype,
                **kwargs,
            )


def _cancelled(batch: list[Job]):
    """A stopping criterion that ends the rows whose ``cancel`` is set (checked after every token)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([j.cancel.is_set() for j in batch], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


def _settle(job: Job, result, error) -> None:
    def settle():
        if job.future.done():  # the client went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    job.loop.call_soon_threadsafe(settle)


def _Streamer(tokenizer, on_text: Callable[[str], object]):
    """A transformers TextStreamer that hands decoded text to ``on_text`` instead of printing it."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
