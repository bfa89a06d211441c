#!/usr/bin/env python3
"""Benchmark the Ray engine: scaling from 1 to 2 actors, and the driver's memory on a long stream.

1. Scaling. The same embedding job (N ten-second clips, default 200; ``--clips`` for fewer)
   with a FULL-SIZE randomly initialised audio model (the published checkpoint's sizes, so the
   same compute as the real one) through
   :func:`auditoryhum.models.audio_embed.run_clip_embeddings` with ``engine="ray"`` on a local
   Ray instance, with 1 and then 2 actors of one CPU each (torch uses one thread per actor).
   ``--model``: ``ast`` (default; ``ASTConfig()``, about 4 s per clip per thread here, so
   200 clips take about 20 min on 1 actor) or ``clap`` (the CLAP audio tower of
   ``ClapConfig()``, unfused: about 0.35 s per clip per thread here, so 200 clips on 1 and
   then 2 actors take about 3 min with start-up). Printed: wall time, clips/s after the first batch (model loading left out), the
   ratio 2 actors / 1 actor (target >= 1.6 on 2 cores), and whether both outputs are
   byte-identical.
2. Driver memory. Synthetic items streamed through a trivial step (one actor) by
   :func:`auditoryhum.engine.run_resumable`, journal and all, at two lengths: ``--items``
   (default 200,000) and a tenth of it, each in a fresh process, on the local engine and on
   Ray. Printed per run: peak resident memory (VmHWM) and peak private heap (RssAnon); then
   the growth per 100,000 items. The local engine's growth is the floor (the engine's own
   per-item records: the items, their values, what the journal keeps), Ray's beyond it is
   what the Ray engine adds. Target: flat beyond the floor, under 1 GiB. Then the same stream is
   killed after its last batch was journalled and resumed: the resume's wall time (every
   record read back; target: seconds at 2,000,000 items).

Usage: .venv/bin/python benchmarks/bench_scaleout.py [--clips 200] [--items 200000] [--batch_size 4] [--model {ast,clap}]
       [--skip {scaling,memory}]
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _first_record_time(journal: Path, stop: threading.Event, seen: dict) -> None:
    # When the first finished batch reaches the journal: model loading is over.
    while not stop.is_set():
        if journal.exists() and journal.read_bytes().count(b"\n") >= 2:
            seen["t"] = time.perf_counter()
            return
        time.sleep(0.01)


def scaling(args, folder: Path) -> None:
    from bench_audio_embed import build_models, write_clips

    from auditoryhum.models.audio_embed import ASTEmbedder, ClapAudioEmbedder, run_clip_embeddings

    clips = folder / "clips"
    clips.mkdir()
    write_clips(clips, args.clips)
    kind = "AST" if args.model == "ast" else "CLAP"
    models = build_models(folder / "models", clap_fused=False, kinds=(kind,))
    embedder = ASTEmbedder if kind == "AST" else ClapAudioEmbedder
    paths = sorted(str(p) for p in clips.glob("*.wav"))
    rates, outputs = {}, {}
    for actors in (1, 2):
        out = folder / f"rows_{actors}.npy"
        stop, seen = threading.Event(), {}
        watcher = threading.Thread(target=_first_record_time, args=(folder / f".rows_{actors}.npy.journal", stop, seen),
                                   daemon=True)
        watcher.start()
        start = time.perf_counter()
        run_clip_embeddings(embedder, models[kind], f"--{args.model}_model", "cpu", paths, str(out), args.batch_size,
                            engine="ray", actors=actors, cpus_per_actor=1)
        end = time.perf_counter()
        stop.set()
        first = seen.get("t", start)
        steady = (len(paths) - args.batch_size) / max(end - first, 1e-9)
        rates[actors] = steady
        outputs[actors] = out.read_bytes()
        print(f"{kind} full size, {len(paths)} clips of 10 s, {actors} actor(s): {end - start:.1f} s wall, "
              f"{steady:.2f} clips/s after the first batch", flush=True)
    print(f"scaling 2 actors / 1 actor: {rates[2] / rates[1]:.2f}x (target >= 1.6x on 2 cores); "
          f"outputs byte-identical: {outputs[1] == outputs[2]}", flush=True)


class TrivialStep:
    """Answers each item with its number as text: what is left is the engine's own cost."""

    def prepare(self, payloads):
        return list(payloads)

    def run(self, prepared):
        return [(str(p), None) for p in prepared]

    def cancel(self):
        pass

    def close(self):
        pass


class TrivialSpec:
    seed = None

    def build(self):
        return TrivialStep()


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure of this process in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory_child(engine: str, n: int, batch_size: int) -> None:
    """One measured stream, in a process of its own (so its peak is its own): ``n`` trivial
    items through ``engine``; prints one JSON line of resident-memory figures in MiB."""
    import json

    from auditoryhum.engine import TEXT, Item, make_executor, run_resumable

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "trivial.txt"

        def write(values, failures):
            with open(out, "w") as f:
                f.write("\n".join(values) + "\n")

        executor = make_executor(engine, actors=1)
        if engine == "ray":
            executor.connect()  # Ray's own start-up is not the stream's cost: measured before it
        heap = []  # private (anonymous) resident memory, sampled
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                heap.append(_status_kib("RssAnon"))
                time.sleep(0.05)

        before = _status_kib("VmRSS"), _status_kib("RssAnon")
        items = [Item(f"item {i}", i) for i in range(n)]
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        result = run_resumable(str(out), {"tool": "bench"}, items, TrivialSpec(), write=write, batch_size=batch_size,
                               desc="trivial", executor=executor, codec=TEXT)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        assert result.asked == n and not result.failures
        assert out.read_text().splitlines() == [str(i) for i in range(n)]
        # Resume: a run killed after the last batch was journalled, before the output was
        # written (the worst case: every record is read back); the rerun only reads the journal.
        resumed = Path(tmp) / "resumed.txt"

        def killed(values, failures):
            raise KeyboardInterrupt

        try:
            run_resumable(str(resumed), {"tool": "bench"}, items, TrivialSpec(), write=killed, batch_size=batch_size,
                          desc="trivial", executor=executor, codec=TEXT)
        except KeyboardInterrupt:
            pass
        start = time.perf_counter()
        again = run_resumable(str(resumed), {"tool": "bench"}, items, TrivialSpec(),
                              write=lambda values, failures: resumed.write_text("\n".join(values) + "\n"),
                              batch_size=batch_size, desc="trivial", executor=executor, codec=TEXT)
        resume_wall = time.perf_counter() - start
        assert again.reused == n and resumed.read_bytes() == out.read_bytes()
    mib = 1 / 1024
    print(json.dumps({"start": before[0] * mib, "start_heap": before[1] * mib, "peak": _status_kib("VmHWM") * mib,
                      "peak_heap": max(heap + [_status_kib("RssAnon")]) * mib, "wall": wall,
                      "resume_wall": resume_wall}), flush=True)


def driver_memory(args, folder: Path) -> None:
    """Peak driver memory at two stream lengths, on the local engine (the engine's own
    per-item records: the floor) and on Ray; printed as growth per 100,000 items."""
    import json
    import subprocess

    long_n = args.items
    short_n = max(1, long_n // 10)
    batch_size = 1000
    env = dict(os.environ, PYTHONPATH=str(REPO))
    figures = {}
    for engine in ("local", "ray"):
        for n in (short_n, long_n):
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_memory_child", engine, str(n),
                                   str(batch_size)], cwd=str(folder), env=env, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"the {engine} memory run of {n:,} items failed:\n{proc.stderr[-3000:]}")
            figures[engine, n] = fig = json.loads(lines[-1])
            print(f"driver memory, {engine} engine, {n:,} items (batches of {batch_size}): peak RSS {fig['peak']:.0f} MiB "
                  f"(start {fig['start']:.0f}), peak private heap {fig['peak_heap']:.0f} MiB (start "
                  f"{fig['start_heap']:.0f}); {n / fig['wall']:,.0f} items/s; resume after a kill with every item journalled: "
                  f"{fig['resume_wall']:.1f} s", flush=True)
    per = 100_000 / max(1, long_n - short_n)
    growth = {e: ((figures[e, long_n]["peak"] - figures[e, short_n]["peak"]) * per,
                  (figures[e, long_n]["peak_heap"] - figures[e, short_n]["peak_heap"]) * per) for e in ("local", "ray")}
    print(f"growth per 100,000 items: local engine {growth['local'][0]:.1f} MiB RSS / {growth['local'][1]:.1f} MiB heap "
          f"(the engine's own per-item records: items, values, journal bookkeeping; the floor); Ray engine "
          f"{growth['ray'][0]:.1f} MiB RSS / {growth['ray'][1]:.1f} MiB heap; Ray's own share "
          f"{growth['ray'][0] - growth['local'][0]:.1f} MiB RSS per 100,000 items. Peak at {long_n:,} items: "
          f"{figures['ray', long_n]['peak']:.0f} MiB (target: under 1 GiB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--model", choices=("ast", "clap"), default="ast",
                        help="full-size random model of the scaling job: ast (about 20 min for 200 clips on 1 actor "
                             "here) or clap (CLAP audio tower, 200 clips in a few minutes)")
    parser.add_argument("--skip", choices=("scaling", "memory"), default=None)
    parser.add_argument("--_memory_child", nargs=3, metavar=("ENGINE", "N", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args._memory_child:
        engine, n, batch = args._memory_child
        memory_child(engine, int(n), int(batch))
        return
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.skip != "scaling":
            scaling(args, folder)
        if args.skip != "memory":
            driver_memory(args, folder)


if __name__ == "__main__":
    main()
