"""The executor interface: :class:`Executor` and the :class:`BatchStream` it returns.

Its own module so that every executor (:mod:`auditoryhum.engine.executors` for the local one,
:mod:`auditoryhum.engine.ray_executor` for Ray) builds on it without importing another
executor's module: the two executor modules import this one and never each other at import
time (``make_executor`` imports the Ray module only when asked for it).

The interface (one method): ``executor.stream(spec, batches)`` takes a step spec (see
:mod:`auditoryhum.engine.step`) and an iterable of batches of :class:`~auditoryhum.engine.step.Task`
and returns a :class:`BatchStream`: an iterator of finished batches (lists of
:class:`~auditoryhum.engine.step.Outcome`, every task of a batch answered), plus
``cancel()`` (stop; return the batches that finished but were not yet taken) and
``close()``. Outcomes carry their item's index, so an executor may hand batches back in any
order (and in pieces of any size); the run engine (:func:`auditoryhum.engine.run.run_resumable`)
files them by index in the same journal and writes the same bytes whoever computed them.
"""

from typing import Iterable, Iterator, List, Sequence

from auditoryhum.engine.step import Outcome, StepSpec, Task

#: The engines :func:`auditoryhum.engine.executors.make_executor` knows.
ENGINES = ("local", "ray")


class BatchStream:
    """Finished batches of one run, as an iterator; see the module docstring."""

    def __iter__(self) -> Iterator[List[Outcome]]:
        return self

    def __next__(self) -> List[Outcome]:
        raise NotImplementedError

    def cancel(self) -> List[List[Outcome]]:
        """Stop the work; return the batches that had finished but were not taken yet."""
        self.close()
        return []

    def close(self) -> None:
        pass

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Executor:
    """Base class: ``stream(spec, batches) -> BatchStream`` and a one-line ``describe()``."""

    name = "executor"

    def stream(self, spec: StepSpec, batches: Iterable[Sequence[Task]]) -> BatchStream:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name
