#!/usr/bin/env python3
"""Benchmark audio-LLM labelling throughput per family: batched vs one clip at a time.

Default (mechanics only): the tiny random models of the four families from
``tests/tiny_mllm_models.py`` (their ``random`` variant, which always generates the full 64
new tokens, so every clip costs the same decoding work), on N synthetic clips of S seconds.
The numbers measure the engine's batching (left-padded text, full-window audio padding,
batched greedy generation), not the models: tiny models on a CPU are dominated by per-step
overheads, real 7B models on a GPU by memory bandwidth, where batching pays far more.

Real weights: give any of ``--qwen2a_model``, ``--qwen2_5o_model``, ``--qwen3o_model``,
``--gemma3n_model`` (local folders or hub ids), optionally ``--audio 'clips/*.wav'`` for real
clips, and ``--device cuda`` (``--quantization`` defaults to 4-bit NF4 there, as the paper);
only the families given are measured.

For each family the model is loaded once (load time reported, not counted), one warm-up batch
runs, then all clips are labelled with ``--batch_size 1`` and with ``--batch_size B`` through
the engine's per-batch step :func:`auditoryhum.models.labeller.label_batch` (feature
extraction + generation + decoding; audio decoding happens before timing), repeated and
interleaved (``--repeats``), the best time of each kept. The labels of the two runs are
compared (greedy output must not depend on the batch).

The server route (``--vllm`` or ``--server``): the same clips through an OpenAI-compatible
server, exactly as ``label_*.py --server`` sends them (the toolkit's client:
:class:`auditoryhum.models.server.ServerLabelStep`, ``--concurrency`` requests in flight, clips
encoded before timing as the local route's are decoded before timing), against the local route's
batched run on the same weights, and the labels compared. ``--vllm`` starts a vLLM server from
``.venv-vllm`` (``tools/ensure_vllm_env.sh``) on loopback for each family measured, with the tiny
models built the way vLLM's CPU attention needs them (text heads of 32), and stops it after;
``--server URL`` uses a running server (a GPU node: give the family's ``--<family>_model`` as the
local copy of the weights and ``--served_model`` if the server names it otherwise). The servers
``--vllm`` starts keep no processor or prefix cache: the repeats send the same clips again, which
a real run never does; start a ``--server`` the same way for a fair comparison.

Usage: .venv/bin/python benchmarks/bench_labelling.py [--clips 16] [--seconds 10] [--batch_size 8]
       .venv/bin/python benchmarks/bench_labelling.py --vllm --families qwen2a --clips 64
       .venv/bin/python benchmarks/bench_labelling.py --qwen2a_model DIR --device cuda --server http://gpu:8000
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAMILY_KEYS = ("qwen2a", "qwen2_5o", "qwen3o", "gemma3n")


def synthetic_clips(n: int, seconds: float, sr: int = 16000):
    """``n`` clips of ``seconds`` s: tones over noise, a different mix in each."""
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    clips = []
    for _ in range(n):
        y = 0.05 * rng.standard_normal(t.size)
        for f in rng.uniform(100, 6000, size=3):
            y += 0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        clips.append(y.astype(np.float32))
    return clips


def label_all(model, processor, family, clips, batch_size: int):
    from auditoryhum.models.labeller import label_batch, user_prompt

    labels = []
    for start in range(0, len(clips), batch_size):
        chunk = clips[start:start + batch_size]
        labels += label_batch(model, processor, family, chunk, [user_prompt()] * len(chunk))
    return labels


def measure(family_key: str, source: str, precision, clips, batch_size: int, repeats: int = 2) -> dict:
    import torch
    import transformers
    from auditoryhum.models.families import get_family
    from auditoryhum.models.loader import load_pretrained, load_processor

    transformers.utils.logging.disable_progress_bar()
    family = get_family(family_key)
    t0 = time.perf_counter()
    processor = load_processor(family.load_processor_class(), source, family.model_flag)
    processor.tokenizer.padding_side = "left"
    model = load_pretrained(family.load_class(), source, family.model_flag, precision.device,
                            dtype=precision.torch_dtype, quantization_config=precision.quantization_config())
    load_s = time.perf_counter() - t0
    label_all(model, processor, family, clips[:batch_size], batch_size)  # warm-up, both shapes
    label_all(model, processor, family, clips[:1], 1)
    result = {"family": family.title, "load_s": load_s}
    best = {"one": float("inf"), "batched": float("inf")}
    # Interleaved repeats, best time kept: a shared machine's load comes and goes.
    for _ in range(repeats):
        for name, size in (("one", 1), ("batched", batch_size)):
            if precision.device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            labels = label_all(model, processor, family, clips, size)
            if precision.device == "cuda":
                torch.cuda.synchronize()
                result[f"{name}_gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
            best[name] = min(best[name], time.perf_counter() - t0)
            result[f"{name}_labels"] = labels
    for name in best:
        result[f"{name}_clips_per_s"] = len(clips) / best[name]
    result["identical"] = result["one_labels"] == result["batched_labels"]
    result["speedup"] = result["batched_clips_per_s"] / result["one_clips_per_s"]
    del model
    return result


def measure_server(family_key: str, url: str, served_model: str, clips, concurrency: int, repeats: int = 2,
                   trim: bool = True) -> dict:
    """Clips/s of the server route: every clip one request through the toolkit's client, at most
    ``concurrency`` in flight, best of ``repeats``; the post-processed labels. ``trim=False``:
    Qwen Omni clips without the per-request feature trimming (the server pads to 300 s)."""
    from concurrent.futures import ThreadPoolExecutor

    from auditoryhum.models.labeller import user_prompt
    from auditoryhum.models.server import ServerClient, ServerLabelSpec, server_settings
    from auditoryhum.models.families import get_family

    family = get_family(family_key)
    settings = server_settings(url, served_model, concurrency=concurrency)
    ServerClient(settings).check()
    step = ServerLabelSpec(family_key, settings, family.system_prompt, trim_features=trim).build()
    prepared = [step.prepare_audio(f"clip{k}", user_prompt(), clip) for k, clip in enumerate(clips)]

    def one(item):
        value, error = step.run([item])[0]
        if error is not None:
            raise RuntimeError(error)
        return value

    best = float("inf")
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, prepared[:concurrency]))  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            labels = list(pool.map(one, prepared))
            best = min(best, time.perf_counter() - t0)
    step.close()
    return {"server_clips_per_s": len(clips) / best, "server_labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16, help="number of clips (default 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic clips (default 10 s)")
    parser.add_argument("--batch_size", type=int, default=8, help="batched run's batch size (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each run; the best is kept (default 2)")
    parser.add_argument("--families", nargs="+", choices=FAMILY_KEYS, default=None,
                        help="families to measure (default: all with tiny models, or those given a model path)")
    parser.add_argument("--audio", default=None, help="glob of real clips to label instead of synthetic ones (first --clips)")
    for key in FAMILY_KEYS:
        parser.add_argument(f"--{key}_model", default=None, help=f"real {key} checkpoint (folder or hub id)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--quantization", default="auto", choices=["auto", "none", "4bit", "8bit"])
    parser.add_argument("--vllm", action="store_true",
                        help="also measure the server route on a vLLM server started here from .venv-vllm (one per family)")
    parser.add_argument("--server", default=None, help="also measure the server route on this running server (URL)")
    parser.add_argument("--served_model", default=None,
                        help="with --server: the name it serves the model under (default: the --<family>_model value)")
    parser.add_argument("--concurrency", type=int, default=16, help="server route: requests in flight (default 16)")
    args = parser.parse_args()
    if args.vllm and args.server:
        parser.error("give --vllm (start a server here) or --server (use a running one), not both")

    import torch

    from auditoryhum.io.audio import expand_glob, load_audio
    from auditoryhum.models.device import resolve_precision

    precision = resolve_precision(args.device, args.dtype, args.quantization)
    real = {k: getattr(args, f"{k}_model") for k in FAMILY_KEYS if getattr(args, f"{k}_model")}
    families = args.families or (list(real) if real else list(FAMILY_KEYS))
    if args.audio:
        clips = [load_audio(p, 16000)[0] for p in expand_glob(args.audio)[: args.clips]]
        what = f"{len(clips)} clips from {args.audio}"
    else:
        clips = synthetic_clips(args.clips, args.seconds)
        what = f"{len(clips)} synthetic {args.seconds:g} s clips"
    print(f"labelling throughput: {what}; {precision.describe()}; torch threads {torch.get_num_threads()}")
    print(f"batch size 1 vs {args.batch_size}; greedy, up to 64 new tokens per clip; best of {args.repeats} interleaved runs")

    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for key in families:
            if key in real:
                sources[key] = (real[key], "real weights")
            else:
                sys.path.insert(0, str(REPO / "tests"))
                from tiny_mllm_models import tiny_model

                # With a server route, the variant vLLM can serve (text heads of 32), on both routes.
                vllm = bool(args.vllm or args.server)
                sources[key] = (str(tiny_model(Path(tmp), key, "random", vllm=vllm)), "tiny random")
        served = {}

        def measure_route(key: str, source: str, folder: str) -> dict:
            if args.server:
                return measure_server(key, args.server, args.served_model or source, clips, args.concurrency,
                                      args.repeats)
            sys.path.insert(0, str(REPO / "tests"))
            from vllm_process import VLLMServer

            from auditoryhum.models.families import get_family

            omni = get_family(key).reads_real_frames_only
            # One server at a time, stopped before the next family's (a 2-core machine holds one).
            # The Omni families' requests trim the clip's features (mm_processor_kwargs), which
            # vLLM takes only with --trust-request-mm-kwargs; without, it pads every clip to 300 s.
            # No processor cache and no prefix cache: the repeats send the same clips again, which
            # a real run never does, and a cache hit would skip the audio work.
            no_cache = ["--mm-processor-cache-gb", "0", "--no-enable-prefix-caching"]
            with VLLMServer(source, Path(folder) / f"vllm-{key}.log", 4096 if omni else 2048,
                            extra=no_cache + (["--trust-request-mm-kwargs"] if omni else [])) as server:
                result = measure_server(key, server.url, source, clips, args.concurrency, args.repeats)
                if omni:
                    untrimmed = measure_server(key, server.url, source, clips, args.concurrency, args.repeats, trim=False)
                    result["untrimmed_clips_per_s"] = untrimmed["server_clips_per_s"]
                    result["untrimmed_identical"] = untrimmed["server_labels"] == result["server_labels"]
                result["startup_s"] = server.startup_s
            return result

        print()
        print(f"{'family':14} {'weights':12} {'load s':>7} {'1 clip/s':>9} {f'{args.batch_size} clip/s':>9} {'speedup':>8}  labels identical")
        for key in families:
            source, kind = sources[key]
            r = measure(key, source, precision, clips, args.batch_size, args.repeats)
            print(f"{r['family']:14} {kind:12} {r['load_s']:7.1f} {r['one_clips_per_s']:9.2f} "
                  f"{r['batched_clips_per_s']:9.2f} {r['speedup']:7.2f}x  {'yes' if r['identical'] else 'NO'}"
                  + (f"  (GPU peak {r['one_gpu_peak_gib']:.1f} / {r['batched_gpu_peak_gib']:.1f} GiB)" if "one_gpu_peak_gib" in r else ""))
            if args.vllm or args.server:
                served[key] = (r, measure_route(key, source, tmp))
        if served:
            print()
            print(f"server route: {args.concurrency} requests in flight, through the toolkit's client "
                  f"(label_*.py --server); best of {args.repeats}")
            print(f"{'family':14} {f'local {args.batch_size} clip/s':>16} {'server clip/s':>14} {'ratio':>7}  "
                  f"labels identical  server start s")
            for key, (r, s) in served.items():
                print(f"{r['family']:14} {r['batched_clips_per_s']:16.2f} {s['server_clips_per_s']:14.2f} "
                      f"{s['server_clips_per_s'] / r['batched_clips_per_s']:6.2f}x  "
                      f"{'yes' if s['server_labels'] == r['batched_labels'] else 'NO':16}  "
                      f"{s.get('startup_s', float('nan')):.0f}"
                      + (f"  (without trimmed features: {s['untrimmed_clips_per_s']:.2f} clip/s, labels "
                         f"{'identical' if s['untrimmed_identical'] else 'DIFFERENT'})" if "untrimmed_clips_per_s" in s else ""))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB on Linux
    print(f"\nprocess peak RSS {peak_rss:.2f} GiB")


if __name__ == "__main__":
    main()
