"""The Ray executor: the pending items of a run streamed through a Ray Data actor pool.

Each actor builds the run's step once (:class:`~auditoryhum.engine.step.WorkerStep`: seeds,
loads the model) and is then called batch after batch, exactly as the local executor calls
it; audio is decoded in the actor. Finished batches come back to the driver (in any order,
each outcome tagged with its item's index), where the run engine journals them as locally,
so ``engine="ray"`` and ``engine="local"`` write the same bytes and a run interrupted under
one resumes under the other.

Clusters. With ``ray_address=None`` a local Ray instance is started on this machine (or the
one already running in this process is used). ``"auto"`` joins the cluster this machine
belongs to, ``"ray://host:10001"`` a remote one through Ray Client. Every worker must read the
clips at the same paths (a shared file system) and have auditoryhum installed; the executor
checks at start-up that a worker can open the first clip.

Faults. Actors are restarted when they die (``max_restarts=-1``) and the batch they held is
retried on a live one (``max_task_retries``, bounded so that a clip that kills every actor it
meets ends the run instead of looping). A retried batch can come back twice: the engine files
each item once. A run-ending error inside a step (out of memory, a model that cannot load) is
raised on the driver as the same one-line :class:`~auditoryhum.errors.UserError`.

Streaming. The driver never holds the run's pending tasks as a whole: it reads the engine's
batches once, chunk by chunk, into Ray's object store, and the read tasks of a small Ray Data
source (:class:`_PendingTasks`) hand the actors blocks of whole engine batches, so an actor
runs exactly the batches the local engine would.

Resources. Ray Data needs CPU for its read tasks (:data:`READ_CPUS` each, at most
:data:`MAX_READ_CONCURRENCY` at once) and for collecting results beside the actors; with
every logical CPU held by an actor the stream stalls ("backpressured"). A local instance is
therefore started with one logical CPU more than the actors hold, and on a joined cluster the
default CPUs per actor leave one CPU free.

A local instance started here ends with its driver, also when the driver is killed (see
:func:`_watch_own_instance`).
"""

import logging
import os
import pickle
import warnings
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from auditoryhum.console import note
from auditoryhum.engine.base import BatchStream, Executor
from auditoryhum.engine.step import Outcome, StepSpec, Task, WorkerStep
from auditoryhum.errors import UserError

INSTALL_HINT = 'the Ray engine needs Ray: pip install "auditoryhum[ray]"'
# Tries of one batch after the actor that held it died (the first try not counted).
MAX_BATCH_RETRIES = 3
# Seconds a check task on a worker (can it open the first clip?) may take.
CHECK_TIMEOUT_S = 120.0
# The pending tasks go into Ray's object store in chunks of about this many rows (whole
# batches; a power of two of batches, so that a block never straddles two chunks).
CHUNK_ROWS = 256
# A block (one read task) is the unit an actor takes, whose results come back to the journal
# together and which a dead actor's retry redoes. One engine batch per block while that makes
# at most this many blocks; beyond, blocks of more batches, up to one chunk (a run of 2 million
# clips in batches of 4: about 7,800 blocks of 256 clips).
MAX_BLOCKS = 200
# CPUs a read task holds (it only slices a chunk, and must fit beside the actors: see the
# module docstring on resources), and how many run at once at most.
READ_CPUS = 0.1
MAX_READ_CONCURRENCY = 4


def import_ray():
    """``ray`` and ``ray.data``, or one line saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's pyarrow and friends)
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def _quiet_ray(verbose: bool) -> None:
    # Ray and Ray Data log progress, resource reports and deprecation notes to the driver's
    # stderr; our own bar and one line replace them unless --verbose.
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.data", "ray.util", "ray._private"):
        logging.getLogger(name).setLevel(level)


class _RayStep:
    """The callable class Ray Data instantiates once per actor: one :class:`WorkerStep`."""

    def __init__(self, spec_bytes: bytes, verbose: bool = False):
        from auditoryhum.console import set_quiet

        set_quiet(not verbose)  # notes from model loading would repeat once per actor
        self.worker = WorkerStep(pickle.loads(spec_bytes))

    def __call__(self, block: Dict[str, Any]) -> Dict[str, Any]:
        """Run one block: the engine's batches it holds (rows tagged with their batch number,
        consecutive), each through the step exactly as the local engine would run it."""
        import numpy as np

        numbers, indices, paths, payloads = block["batch"], block["index"], block["path"], block["payload"]
        outcomes: List[Outcome] = []
        failure = None
        start, n = 0, len(numbers)
        while start < n:
            stop = start + 1
            while stop < n and numbers[stop] == numbers[start]:
                stop += 1
            tasks = [Task(int(indices[k]), paths[k] if paths[k] else None, pickle.loads(payloads[k]))
                     for k in range(start, stop)]
            try:
                outcomes.extend(self.worker(tasks))
            except UserError as exc:
                failure = str(exc)  # the batches before it stay answered
                break
            start = stop
        rows = [(o.index, pickle.dumps(o.value), "" if o.error is None else "\x00" + o.error, o.digest or "")
                for o in outcomes]
        if failure is not None:
            # Plain data crosses back intact; Ray would wrap the exception type.
            rows.append((-1, b"", failure, ""))
        return {
            "index": np.array([r[0] for r in rows], dtype=np.int64),
            "value": np.array([r[1] for r in rows], dtype=object),
            "error": np.array([r[2] for r in rows], dtype=object),
            "digest": np.array([r[3] for r in rows], dtype=object),
        }


class _PendingTasks:
    """The pending tasks of one run as a Ray Data source, fed from the engine's batch iterator.

    Why the object store: the driver reads the engine's batches once, packs each chunk of
    :data:`CHUNK_ROWS` rows into an Arrow table and puts it into Ray's object store, keeping
    only its reference; the read tasks carry a reference and a row range, and unpack their
    block on whatever node runs them. So the driver never holds the run's tasks (one chunk at
    a time, a reference per chunk and a read task per block), and on a multi-node cluster the
    tasks travel by Ray's own object transfer (spilled to disk if the store fills), needing
    nothing beyond what the actors need already: no second shared folder the driver must be
    able to write and every node to read (a temporary task file would), no feeder process to
    keep alive. Ray Data builds its read tasks once, at the start of execution, so read tasks
    that produce their tasks on the driver lazily are not possible with its Datasource API.

    Each block is whole engine batches (rows tagged with their batch number), so an actor runs
    exactly the local engine's batches and the output is byte-identical.
    """

    def __init__(self, ray, batches: Iterable[Sequence[Task]], batch_size: int):
        from array import array

        import pyarrow as pa

        self.batch_size = batch_size
        # The first row of every batch (and the end): 8 bytes a batch, so that blocks are cut
        # at batch boundaries whatever the batches' sizes.
        self.starts = array("q", [0])
        per_chunk = 1
        while per_chunk * 2 * batch_size <= CHUNK_ROWS:
            per_chunk *= 2
        self.per_chunk = per_chunk
        self.chunks = []  # (object ref, rows) per chunk of per_chunk batches
        self.schema = None
        self.nbytes = 0
        self.n_batches = 0
        columns = ([], [], [], [])

        def put():
            table = pa.table({"batch": pa.array(columns[0], pa.int64()), "index": pa.array(columns[1], pa.int64()),
                              "path": pa.array(columns[2], pa.string()), "payload": pa.array(columns[3], pa.binary())})
            self.schema = table.schema
            self.nbytes += table.nbytes
            self.chunks.append((ray.put(table), table.num_rows))
            for column in columns:
                column.clear()

        for batch in batches:
            for t in batch:
                columns[0].append(self.n_batches)
                columns[1].append(t.index)
                columns[2].append(t.path or "")
                columns[3].append(pickle.dumps(t.payload))
            self.starts.append(self.starts[-1] + len(batch))
            self.n_batches += 1
            if self.n_batches % per_chunk == 0:
                put()
        if columns[0]:
            put()
        # Batches per block: one while that gives at most MAX_BLOCKS blocks, never more than a chunk.
        per_block = 1
        while per_block < per_chunk and -(-self.n_batches // per_block) > MAX_BLOCKS:
            per_block *= 2
        self.per_block = per_block
        self.num_blocks = -(-self.n_batches // per_block)

    def datasource(self):
        """A :class:`ray.data.Datasource` over the chunks (the class is made here: ray.data is
        imported only when a run uses Ray)."""
        import functools

        from ray.data.block import BlockMetadata
        from ray.data.datasource import Datasource, ReadTask

        chunks, per_chunk, per_block, starts = self.chunks, self.per_chunk, self.per_block, self.starts
        n_batches, schema, nbytes = self.n_batches, self.schema, self.nbytes
        row_bytes = nbytes // max(1, starts[-1])

        class PendingTasksDatasource(Datasource):
            def get_name(self) -> str:
                return "PendingTasks"

            def estimate_inmemory_data_size(self) -> Optional[int]:
                return nbytes

            def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
                # Always the same blocks, whatever parallelism Ray asks for: the stream asks
                # for exactly this many (override_num_blocks), so no block is split further.
                tasks = []
                for first in range(0, n_batches, per_block):
                    ref, _ = chunks[first // per_chunk]
                    offset = starts[first] - starts[first - first % per_chunk]  # rows of the chunk before it
                    length = starts[min(first + per_block, n_batches)] - starts[first]
                    meta = BlockMetadata(num_rows=length, size_bytes=row_bytes * length, input_files=None, exec_stats=None)
                    tasks.append(ReadTask(functools.partial(_read_rows, ref, offset, length), meta, schema=schema))
                return tasks

        return PendingTasksDatasource()


def _read_rows(ref, offset: int, length: int):
    """A read task's work, on a worker: its rows of one chunk, as one block."""
    import ray

    return [ray.get(ref).slice(offset, length)]


PROBE_TIMEOUT_S = 5.0
# An HTTP/2 connection preface and an empty SETTINGS frame (RFC 7540 3.5, 6.5): every gRPC server,
# as Ray's GCS and its Ray Client server are, answers it with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def _answers_like_grpc(sock) -> bool:
    """Whether the listener on ``sock`` answers an HTTP/2 preface with a SETTINGS frame within
    :data:`PROBE_TIMEOUT_S`. An HTTP/1 server, a database or a silent listener does not, and
    ``ray.init`` would retry it for minutes ("Failed to get cluster ID from GCS server")."""
    try:
        sock.settimeout(PROBE_TIMEOUT_S)
        sock.sendall(_H2_PREFACE)
        head = b""
        while len(head) < 9:  # one frame header: length (3), type (1), flags (1), stream (4)
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:  # reset, timed out
        return False
    return head[3] == _H2_SETTINGS


def _probe(ray, address: str) -> None:
    """Stop in one line unless Ray listens at ``address`` (``auto`` is looked up first): nothing
    listening, or something that does not speak gRPC as Ray does; both within seconds."""
    import socket

    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die("auto")
        except Exception as exc:  # no cluster started on this machine
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise UserError(f"cannot reach the Ray cluster at 'auto': {text}; start one with 'ray start --head' or give "
                            f"--ray_address host:port") from None
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S) as sock:
            # With TLS (RAY_USE_TLS) the handshake comes first: the plain-text check would fail it.
            speaks = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true") or _answers_like_grpc(sock)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UserError(f"cannot reach the Ray cluster at {address!r} ({why}); check --ray_address (host:port of the "
                        f"head node, 'auto' on a cluster node, or ray://host:10001) and that the cluster is up") from None
    if not speaks:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: something listens there but does not answer as "
                        f"Ray does (no gRPC); check --ray_address (the head node's GCS port, 6379 by default, 'auto' on "
                        f"a cluster node, or ray://host:10001)")


# The watchdog of a local instance (run with ``python -c``; standard library and psutil only).
# It blocks on its stdin, a pipe whose only writer is the driver: the pipe ends when the driver
# does, however it ends (SIGKILL included). It then ends the processes it was given, each only
# if it is still the same process (same start time), politely first.
_WATCHDOG = """
import json, sys
import psutil
targets = json.loads(sys.argv[1])
while sys.stdin.buffer.read(65536):
    pass
procs = []
for pid, started in targets:
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) < 0.01:
            procs.append(proc)
    except psutil.Error:
        pass
for proc in procs:
    try:
        proc.terminate()
    except psutil.Error:
        pass
_, alive = psutil.wait_procs(procs, timeout=2)
for proc in alive:
    try:
        proc.kill()
    except psutil.Error:
        pass
"""

_watchdog = None  # the watchdog of the local instance this process started (kept open until exit)


def _descendants() -> set:
    """``(pid, start time)`` of every process below this one (empty without psutil)."""
    try:
        import psutil

        found = set()
        for proc in psutil.Process().children(recursive=True):
            try:
                found.add((proc.pid, proc.create_time()))
            except psutil.Error:  # ended meanwhile
                pass
        return found
    except Exception:  # no psutil, or no process table to read: Ray's own fate sharing only
        return set()


def _watch_own_instance(started: set) -> None:
    """Make the local Ray instance this driver just started end with it, even on SIGKILL.

    Ray ties its GCS and raylet to the driver (the kernel kills them when it dies) and the
    workers and actors end when their raylet does, but its per-node agents (the dashboard
    agent, the runtime-env agent) do not: after a SIGKILLed driver they stayed up (measured:
    still running 30 s later, parented to init). So the processes this driver started during
    ``ray.init`` (``started``: its descendants that were not there before: GCS, raylet,
    agents, log monitor) are handed to a small watchdog process in a session of its own, which
    ends them when the driver's pipe to it closes. Processes of a cluster this driver only
    joined are never its descendants, so never touched.
    """
    global _watchdog
    import json
    import subprocess
    import sys

    targets = sorted(started)
    if _watchdog is not None and _watchdog.stdin is not None:
        _watchdog.stdin.close()  # an earlier instance of this process, shut down since: let its watchdog go
    _watchdog = None
    if not targets:
        return
    try:
        _watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, json.dumps(targets)], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        _watchdog = None


def _bound_step_class(spec_bytes: bytes, verbose: bool):
    """A :class:`_RayStep` with the spec built in: Ray pickles the class itself (by value), so
    no constructor arguments live in the object store, where an actor restart would need them."""

    class RayStep(_RayStep):
        def __init__(self):
            super().__init__(spec_bytes, verbose)

    return RayStep


def _can_open(path: str) -> str:
    """Run on a worker: ``""`` when ``path`` can be opened, else why not."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


class RayExecutor(Executor):
    """Run the step on a Ray Data actor pool (see the module docstring).

    Parameters
    ----------
    ray_address : str, optional
        ``None``: start a local Ray instance (or use the one this process already runs);
        ``"auto"``: join the cluster this machine belongs to; ``"ray://host:port"``: a remote
        cluster through Ray Client; ``"host:port"``: a head node's GCS address.
    actors : int
        Model replicas (actors) in the pool. Default 1.
    gpus_per_actor : float, optional
        GPUs each actor holds; default 1 when the cluster has GPUs, else 0.
    cpus_per_actor : float, optional
        CPUs each actor holds (also its torch threads); default 1, or less on a cluster too
        small to leave one CPU for reading and collecting.
    verbose : bool
        Let Ray's own logs through.
    """

    name = "ray"

    def __init__(self, ray_address: Optional[str] = None, actors: int = 1, gpus_per_actor: Optional[float] = None,
                 cpus_per_actor: Optional[float] = None, verbose: bool = False):
        from auditoryhum.validation import positive_int

        self.ray_address = ray_address
        self.actors = positive_int(actors, "actors")
        for name, value in (("gpus_per_actor", gpus_per_actor), ("cpus_per_actor", cpus_per_actor)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise UserError(f"{name} must be a number >= 0, got {value!r}")
        if cpus_per_actor is not None and cpus_per_actor == 0:
            raise UserError("cpus_per_actor must be more than 0")
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.verbose = verbose
        self.ray = import_ray()  # fail at once, before any model work, when Ray is missing
        self.resources = ""

    # -- the cluster ------------------------------------------------------------------------

    def connect(self):
        """Start or join Ray as configured; return ``ray``. One line on failure."""
        ray = self.ray
        _quiet_ray(self.verbose)
        if ray.is_initialized():
            return ray
        kwargs = dict(logging_level=logging.INFO if self.verbose else logging.ERROR, log_to_driver=self.verbose,
                      include_dashboard=False, configure_logging=True)
        if self.ray_address is None:
            kwargs["num_cpus"] = self._local_cpus()  # refuses actors the machine cannot hold, before Ray starts
            # A private instance on this machine: no token to manage (Ray warns without one).
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        else:
            # Ray retries an unreachable address for minutes, logging as it goes: check first.
            _probe(ray, self.ray_address)
            kwargs["address"] = self.ray_address
        earlier = _descendants() if self.ray_address is None else set()
        try:
            ray.init(**kwargs)
        except Exception as exc:  # ConnectionError, TimeoutError, ValueError for a bad address, ...
            where = "a local Ray instance" if self.ray_address is None else f"the Ray cluster at {self.ray_address!r}"
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise UserError(f"cannot reach {where}: {text}; check --ray_address and that the cluster is up "
                            f"(ray start --head on the head node)") from None
        if self.ray_address is None:
            _watch_own_instance(_descendants() - earlier)
        return ray

    def _local_cpus(self) -> int:
        """The logical CPUs of a local instance: the machine's cores plus one for reading and
        collecting. Refuses, in one line, more actors than the cores hold at ``cpus_per_actor``
        (default 1): each actor is a process holding a model, and a "cluster" inflated to fit
        them (100,000 actors: 100,001 CPUs on 2 cores) spawns workers without end."""
        from auditoryhum.errors import MentionError, mention

        try:
            cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        per_actor = self.cpus_per_actor if self.cpus_per_actor is not None else 1.0
        needed = self.actors * per_actor
        if needed > cores + 1e-9:
            fits = max(1, int(cores // per_actor))
            raise MentionError(
                f"{mention('actors')} {self.actors} x {per_actor:g} CPU need {needed:g} CPUs but this machine has "
                f"{cores}; give at most {fits} {mention('actors')}, a smaller {mention('cpus_per_actor')} "
                f"(e.g. {cores / self.actors:.2g}) or a cluster ({mention('ray_address')})")
        return cores + 1

    def _plan(self, ray) -> Dict[str, float]:
        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        gpa = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if gpus > 0 else 0.0)
        cpa = self.cpus_per_actor
        if cpa is None:
            cpa = 1.0 if cpus >= self.actors + 1 else max(0.1, round((cpus - 0.5) / self.actors, 2))
        if gpa * self.actors > gpus:
            raise UserError(f"{self.actors} actor(s) x {gpa:g} GPU need {gpa * self.actors:g} GPUs but the Ray cluster "
                            f"has {gpus:g}; lower actors or gpus_per_actor")
        if cpa * self.actors >= cpus:
            raise UserError(f"{self.actors} actor(s) x {cpa:g} CPU leave no CPU of the cluster's {cpus:g} for reading "
                            f"and collecting; lower actors or cpus_per_actor")
        self.resources = (f"Ray: {self.actors} actor(s), each {cpa:g} CPU and {gpa:g} GPU, on a cluster of {cpus:g} CPUs "
                          f"and {gpus:g} GPUs")
        return {"cpus": cpa, "gpus": gpa}

    def _check_worker_can_read(self, ray, path: str) -> None:
        check = ray.remote(num_cpus=0.01)(_can_open)
        try:
            why = ray.get(check.remote(path), timeout=CHECK_TIMEOUT_S)
        except Exception as exc:
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        if why:
            raise UserError(f"a Ray worker cannot open {path} ({why}); every Ray node must see the clips at the same "
                            f"path (a shared file system)")

    def describe(self) -> str:
        return self.resources or "ray"

    # -- the stream -------------------------------------------------------------------------

    def stream(self, spec: StepSpec, batches: Iterable[Sequence[Task]]) -> BatchStream:
        return _RayStream(self, spec, batches)


class _RayStream(BatchStream):
    """The Ray Data job of one run: the engine's batches in, finished outcomes out."""

    def __init__(self, executor: RayExecutor, spec: StepSpec, batches: Iterable[Sequence[Task]]):
        self.executor, self.spec = executor, spec
        self.batches = iter(batches)  # read once, in _start, chunk by chunk (never held whole)
        self.iterator: Optional[Iterator[Dict[str, Any]]] = None
        self.failure: Optional[UserError] = None
        self.closed = False

    def _start(self) -> bool:
        import itertools

        first = next(self.batches, None)
        if first is None:
            return False
        first = list(first)
        # The engine's batches have its batch size (the last one may be shorter).
        batch_size = len(first)
        ex = self.executor
        ray = ex.connect()
        plan = ex._plan(ray)
        path = next((t.path for t in first if t.path is not None), None)
        if path is not None:
            ex._check_worker_can_read(ray, path)
        note(ex.resources)
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the engine's bar is the only one
        ctx.print_on_execution_start = False
        pending = _PendingTasks(ray, itertools.chain([first], self.batches), batch_size)
        self.batches = iter(())
        # A few read tasks at a time: each only slices a chunk, and every concurrent one is a
        # worker process of its own (Ray warns when fractional CPUs start many).
        ds = ray.data.read_datasource(pending.datasource(), override_num_blocks=pending.num_blocks, num_cpus=READ_CPUS,
                                      concurrency=min(ex.actors, MAX_READ_CONCURRENCY))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing actor options as extra keywords but has no named
            # parameter for these two yet (its own defaults retry without bound).
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(
                # batch_size=None: an actor gets whole blocks and runs the engine's batches in them itself.
                _bound_step_class(ray.cloudpickle.dumps(self.spec), ex.verbose), batch_size=None,
                compute=ray.data.ActorPoolStrategy(size=ex.actors), num_cpus=plan["cpus"], num_gpus=plan["gpus"],
                batch_format="numpy", zero_copy_batch=True,
                max_restarts=-1, max_task_retries=MAX_BATCH_RETRIES,
            )
        # prefetch_batches=0: a finished block reaches the journal at once (with prefetching, Ray
        # Data held each block back until the next one was done too).
        self.iterator = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0))
        return True

    def __next__(self) -> List[Outcome]:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        if self.closed:
            raise StopIteration
        if self.iterator is None and not self._start():
            self.close()
            raise StopIteration
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.close()
            raise
        except UserError:
            raise
        except Exception as exc:
            raise _as_user_error(exc) from None
        outcomes = []
        for i, value, error, digest in zip(batch["index"], batch["value"], batch["error"], batch["digest"]):
            if int(i) < 0:  # a run-ending error in a step; the batches answered before it count
                self.failure = UserError(str(error))
                break
            outcomes.append(Outcome(int(i), pickle.loads(value), str(error)[1:] if error else None, digest or None))
        if self.failure is not None and not outcomes:
            return self.__next__()
        return outcomes

    def close(self) -> None:
        self.closed = True
        self.iterator = None


def _as_user_error(exc: BaseException) -> UserError:
    """One line for a failure of the Ray job itself (an actor that died too often, a lost node)."""
    cause = exc
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:
        cause = cause.cause
    text = " ".join(str(cause).split())
    return UserError(f"the Ray job failed: {type(cause).__name__}: {text[:400]}")
