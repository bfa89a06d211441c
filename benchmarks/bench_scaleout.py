#!/usr/bin/env python3
"""Benchmark the Ray engine: scaling from 1 to 2 actors, and the driver's memory on a long stream.

1. Scaling. The same embedding job (N ten-second clips, default 200; ``--clips`` for fewer)
   with a FULL-SIZE randomly initialised AST (``ASTConfig()``: the published checkpoint's
   sizes, so the same compute as the real one; ``--model clap`` for the CLAP audio tower)
   through :func:`auditoryhum.models.audio_embed.run_clip_embeddings` with ``engine="ray"`` on
   a local Ray instance, with 1 and then 2 actors of one CPU each (torch uses one thread per
   actor). Printed: wall time, clips/s after the first batch (model loading left out), the
   ratio 2 actors / 1 actor (target >= 1.6 on 2 cores), and whether both outputs are
   byte-identical.
2. Driver memory. ``--items`` (default 200,000) synthetic items streamed through a trivial
   step (one actor) by :func:`auditoryhum.engine.run_resumable`, journal and all; the
   driver's resident memory is sampled every 0.1 s. Target: flat, under 1 GiB.

Usage: .venv/bin/python benchmarks/bench_scaleout.py [--clips 200] [--items 200000] [--batch_size 4] [--model ast]
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


class _Sampler:
    """The resident memory of this process, sampled on a thread."""

    def __init__(self, every_s: float = 0.1):
        import psutil

        self.proc, self.every_s, self.samples = psutil.Process(), every_s, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.samples.append(self.proc.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


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
    models = build_models(folder / "models", clap_fused=False)
    kind = "AST" if args.model == "ast" else "CLAP"
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


def driver_memory(args, folder: Path) -> None:
    from auditoryhum.engine import TEXT, Item, make_executor, run_resumable

    n = args.items
    items = [Item(f"item {i}", i) for i in range(n)]
    out = folder / "trivial.txt"

    def write(values, failures):
        with open(out, "w") as f:
            f.write("\n".join(values) + "\n")

    with _Sampler() as sampler:
        time.sleep(0.3)
        start = time.perf_counter()
        result = run_resumable(str(out), {"tool": "bench"}, items, TrivialSpec(), write=write, batch_size=1000,
                               desc="trivial", executor=make_executor("ray", actors=1), codec=TEXT)
        wall = time.perf_counter() - start
        time.sleep(0.3)
    mib = [s / 2**20 for s in sampler.samples]
    assert result.asked == n and not result.failures
    print(f"driver memory streaming {n:,} items through a trivial actor: start {mib[0]:.0f} MiB, peak {max(mib):.0f} MiB, "
          f"end {mib[-1]:.0f} MiB ({n / wall:,.0f} items/s, {wall:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--model", choices=("ast", "clap"), default="ast")
    parser.add_argument("--skip", choices=("scaling", "memory"), default=None)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
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
