"""The per-batch step: the one piece of model work an executor runs on pending items.

A *step spec* is a small picklable object (model source, precision, batch size, ...) whose
:meth:`StepSpec.build` loads the model once and returns a *step*. An executor builds one step
per worker (in process for :class:`~auditoryhum.engine.executors.LocalExecutor`, once per
actor for :class:`~auditoryhum.engine.ray_executor.RayExecutor`) and calls it batch after
batch with plain picklable payloads (a clip path and its prompt, a text prompt, ...). For
each payload the step returns ``(value, error)``: the result and ``None``, or ``None`` (or a
partial value) and a one-line message. Audio decoding happens inside the step (its
:meth:`Step.prepare`), on the worker, never on the driver.

A step is the seam where another inference engine can replace transformers (for instance
vLLM where a GPU and weights are present): a spec whose ``build`` returns a step with the
same ``prepare``/``run`` contract, and every run, journal and executor stays as it is.

:class:`WorkerStep` is what executors actually hold: it seeds, builds the step, computes the
content fingerprint of each item's file on the worker (it reads the clip anyway) and tags
every result with its item's index.
"""

from dataclasses import dataclass
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

from auditoryhum.engine.common import optional_seed
from auditoryhum.io.hashing import file_digest

#: What a step returns per payload: (value or None, error message or None).
StepResult = Tuple[Any, Optional[str]]


class Task(NamedTuple):
    """One pending item as sent to a worker: its index in the run, the file whose content is
    fingerprinted (``None``: none), and the payload the step receives."""

    index: int
    path: Optional[str]
    payload: Any


class Outcome(NamedTuple):
    """One finished item as it comes back to the driver."""

    index: int
    value: Any
    error: Optional[str]
    digest: Optional[str]  # content digest of the item's file, as the worker read it


class Step:
    """Base class of per-batch steps. Subclasses implement :meth:`run`, often :meth:`prepare`."""

    def prepare(self, payloads: Sequence[Any]) -> Any:
        """CPU work on a batch before the model (decoding audio, features): may run on a
        helper thread while the model computes the previous batch. Default: the payloads."""
        return list(payloads)

    def run(self, prepared: Any) -> List[StepResult]:
        """The model work on a prepared batch: one ``(value, error)`` per payload, in order."""
        raise NotImplementedError

    def cancel(self) -> None:
        """The run is stopping: abandon work in flight where possible (default: nothing)."""

    def close(self) -> None:
        """Release what :meth:`StepSpec.build` acquired (default: nothing)."""


class StepSpec:
    """Base class of step specs: picklable recipes for a :class:`Step`.

    ``seed``: seed everything (:func:`auditoryhum.engine.common.seed_everything`) before
    :meth:`build` on every worker, or ``None`` for steps without a model of their own.
    """

    seed: Optional[int] = None

    def build(self) -> Step:
        raise NotImplementedError

    def describe(self) -> str:
        """A few words for messages (``"Qwen2-Audio labels"``)."""
        return type(self).__name__


@dataclass
class Prebuilt(StepSpec):
    """A spec around a step that is already built (in-process use of a loaded model)."""

    step: Step

    def build(self) -> Step:
        return self.step


class WorkerStep:
    """A built step as a worker holds it: fingerprints, index tags, one length check."""

    def __init__(self, spec: StepSpec):
        optional_seed(getattr(spec, "seed", None))
        self.step = spec.build()

    def prepare(self, tasks: Sequence[Task]):
        digests = [file_digest(t.path) if t.path is not None else None for t in tasks]
        return list(tasks), digests, self.step.prepare([t.payload for t in tasks])

    def run(self, prepared) -> List[Outcome]:
        tasks, digests, inner = prepared
        results = self.step.run(inner)
        if len(results) != len(tasks):
            raise RuntimeError(f"the step returned {len(results)} results for {len(tasks)} items")
        return [Outcome(t.index, value, error, d) for t, (value, error), d in zip(tasks, results, digests)]

    def __call__(self, tasks: Sequence[Task]) -> List[Outcome]:
        return self.run(self.prepare(tasks))

    def cancel(self) -> None:
        self.step.cancel()

    def close(self) -> None:
        self.step.close()
