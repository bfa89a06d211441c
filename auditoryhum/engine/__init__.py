"""The resumable-run engine: one journal mechanism and one executor interface for every long stage.

* :mod:`auditoryhum.engine.run`: :func:`run_resumable`, the run skeleton (journal, reused/pending
  split, batches to an executor, failures, atomic output, keep or drop the journal).
* :mod:`auditoryhum.engine.step`: the per-batch step (built once per worker, called per batch).
* :mod:`auditoryhum.engine.base`: the executor interface (:class:`Executor`, :class:`BatchStream`).
* :mod:`auditoryhum.engine.executors`: :class:`LocalExecutor` and :func:`make_executor`;
  :mod:`auditoryhum.engine.ray_executor`: :class:`RayExecutor` (Ray Data actor pool).
* :mod:`auditoryhum.engine.common`: digest, first line of an error, seeding, out of memory.

Importing this package loads no heavy library (numpy, torch, ray are imported where used).
"""

from auditoryhum.engine.common import OutOfMemory, digest, first_line, raise_if_out_of_memory, seed_everything
from auditoryhum.engine.base import ENGINES, BatchStream, Executor
from auditoryhum.engine.executors import LocalExecutor, make_executor
from auditoryhum.engine.run import ROWS, TEXT, Codec, Item, RunResult, MatrixOutput, Wording, run_resumable
from auditoryhum.engine.step import Outcome, Prebuilt, Step, StepResult, StepSpec, Task, WorkerStep

__all__ = [
    "ENGINES", "ROWS", "TEXT", "BatchStream", "Codec", "Executor", "Item", "MatrixOutput", "LocalExecutor", "OutOfMemory", "Outcome",
    "Prebuilt", "RunResult", "Step", "StepResult", "StepSpec", "Task", "WorkerStep", "Wording", "digest", "first_line",
    "make_executor", "raise_if_out_of_memory", "run_resumable", "seed_everything",
]
