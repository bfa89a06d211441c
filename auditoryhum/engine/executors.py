"""Executors: who runs the per-batch step on the pending items of a run.

The interface (:class:`Executor`, :class:`BatchStream`) lives in :mod:`auditoryhum.engine.base`
and is importable from here too. Outcomes carry their item's index, so an executor may hand
batches back in any order; the run engine files them by index.

* :class:`LocalExecutor` runs the step in this process: with ``concurrency=1`` the next
  batch is decoded (``prepare``) on a helper thread while the model runs the current one and
  batches come back in order; with ``concurrency=N`` (API-bound steps such as Gemini) N
  threads share one step and keep at most N batches in flight or unconsumed.
* :class:`~auditoryhum.engine.ray_executor.RayExecutor` streams the batches through a Ray
  Data actor pool (one step per actor).

:func:`make_executor` builds one from the keyword options the run functions expose.
"""

import queue
import threading
from typing import Iterable, Iterator, List, Optional, Sequence

from auditoryhum.engine.base import ENGINES, BatchStream, Executor
from auditoryhum.engine.step import Outcome, StepSpec, Task, WorkerStep
from auditoryhum.errors import UserError

__all__ = ["ENGINES", "BatchStream", "Executor", "LocalExecutor", "make_executor"]


class LocalExecutor(Executor):
    """Run the step in this process (the default engine).

    Parameters
    ----------
    concurrency : int
        Batches in flight at once, on that many threads sharing one step (1: the model runs
        in the calling thread, the next batch is prepared on a helper thread).
    """

    name = "local"

    def __init__(self, concurrency: int = 1):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency

    def stream(self, spec: StepSpec, batches: Iterable[Sequence[Task]]) -> BatchStream:
        if self.concurrency == 1:
            return _SerialStream(spec, iter(batches))
        return _ThreadedStream(spec, iter(batches), self.concurrency)

    def describe(self) -> str:
        return "local" if self.concurrency == 1 else f"local, {self.concurrency} threads"


class _SerialStream(BatchStream):
    """Batches in order; ``prepare`` of the next batch overlaps ``run`` of the current one."""

    def __init__(self, spec: StepSpec, batches: Iterator[Sequence[Task]]):
        self.spec, self.batches = spec, batches
        self.worker: Optional[WorkerStep] = None
        self.pool = None
        self.ahead = None  # future of the next batch's prepare
        self.done = False

    def _submit_next(self):
        batch = next(self.batches, None)
        self.ahead = None if batch is None else self.pool.submit(self.worker.prepare, batch)

    def __next__(self) -> List[Outcome]:
        if self.done:
            raise StopIteration
        if self.worker is None:
            from concurrent.futures import ThreadPoolExecutor

            first = next(self.batches, None)
            if first is None:
                self.close()
                raise StopIteration
            self.worker = WorkerStep(self.spec)  # loads the model: only when there is work
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
            self.ahead = self.pool.submit(self.worker.prepare, first)
        if self.ahead is None:
            self.close()
            raise StopIteration
        prepared = self.ahead.result()
        self._submit_next()
        return self.worker.run(prepared)

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        if self.pool is not None:
            if self.ahead is not None:
                self.ahead.cancel()
            self.pool.shutdown(wait=True)
        if self.worker is not None:
            self.worker.close()


_END = object()


class _ThreadedStream(BatchStream):
    """``concurrency`` daemon threads share one step; batches come back as they finish.

    A thread takes a new batch only when the consumer has taken an earlier result, so at most
    ``concurrency`` batches are in flight or waiting: a decision to stop (an authentication
    error, failures in a row) is never outrun by work on later batches. Daemon threads: Ctrl-C
    ends the process at once instead of waiting out requests in flight.
    """

    def __init__(self, spec: StepSpec, batches: Iterator[Sequence[Task]], concurrency: int):
        self.batches = batches
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.results: "queue.Queue" = queue.Queue()
        self.slots = threading.Semaphore(concurrency)
        self.outstanding = 0  # batches taken by a thread and not yet consumed
        self.exhausted = False
        self.worker = WorkerStep(spec)
        self.threads = [threading.Thread(target=self._work, name=f"engine-{n}", daemon=True) for n in range(concurrency)]
        for thread in self.threads:
            thread.start()

    def _take(self):
        with self.lock:
            if self.exhausted or self.stop.is_set():
                return None
            batch = next(self.batches, None)
            if batch is None:
                self.exhausted = True
                return None
            self.outstanding += 1
            return batch

    def _work(self) -> None:
        while True:
            while not self.slots.acquire(timeout=0.2):
                if self.stop.is_set():
                    return
            batch = self._take()
            if batch is None:
                self.slots.release()
                self.results.put(_END)
                return
            try:
                self.results.put(self.worker(batch))
            except BaseException as exc:  # handed to the consumer, which decides
                self.results.put(exc)

    def __next__(self) -> List[Outcome]:
        ended = 0
        while True:
            try:
                item = self.results.get(timeout=0.2)
            except queue.Empty:
                if not any(t.is_alive() for t in self.threads) and self.results.empty():
                    raise StopIteration
                continue
            if item is _END:
                ended += 1
                with self.lock:
                    if self.exhausted and self.outstanding == 0:
                        raise StopIteration
                continue
            with self.lock:
                self.outstanding -= 1
            self.slots.release()  # only now may a thread start another batch
            if isinstance(item, BaseException):
                self.stop.set()
                self.worker.cancel()
                raise item
            return item

    def cancel(self) -> List[List[Outcome]]:
        self.stop.set()
        self.worker.cancel()
        for thread in self.threads:
            thread.join(timeout=30)
        finished = []
        while True:
            try:
                item = self.results.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                finished.append(item)
        self.close()
        return finished

    def close(self) -> None:
        self.stop.set()
        self.worker.cancel()


def make_executor(engine: str = "local", *, concurrency: int = 1, ray_address: Optional[str] = None, actors: int = 1,
                  gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None,
                  verbose: bool = False) -> Executor:
    """The executor for ``engine`` (``"local"`` or ``"ray"``) with its options.

    ``concurrency`` applies to the local engine; ``ray_address``, ``actors``,
    ``gpus_per_actor`` and ``cpus_per_actor`` to Ray (see
    :class:`~auditoryhum.engine.ray_executor.RayExecutor`).
    """
    if engine == "local":
        return LocalExecutor(concurrency)
    if engine == "ray":
        from auditoryhum.engine.ray_executor import RayExecutor

        return RayExecutor(ray_address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                           cpus_per_actor=cpus_per_actor, verbose=verbose)
    raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
