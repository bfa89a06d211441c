#!/usr/bin/env python3
"""Benchmark AST and CLAP clip embeddings: batched vs one clip at a time.

Setup: FULL-SIZE randomly initialised models (``ASTConfig()`` defaults = the published AST
checkpoint's sizes: 12 layers, 768-d, 1024 frames; ``ClapConfig()`` defaults = the sizes of
``laion/clap-htsat-unfused``, or the fused variant with ``--clap_fused``), saved to a temporary
folder; N ten-second clips (default 200; fewer with ``--clips`` on small machines: the output
says how many were used).

Each configuration runs in a fresh process through the toolkit's own code
(``auditoryhum.models.audio_embed.embed_clips``: decoding, resampling, feature extraction and
the forward passes), so its peak memory (max RSS; on CUDA also the peak allocated GPU memory)
is its own. Model loading is timed separately and left out of clips/s. Batched and
one-at-a-time rows are checked to be identical.

Usage: .venv/bin/python benchmarks/bench_audio_embed.py [--clips 200] [--batch_size 8] [--device auto]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_clips(folder: Path, n: int, seconds: float = 10.0, sr: int = 16000) -> None:
    """``n`` clips of ``seconds`` s at ``sr``: tones over noise, a different mix in each."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    for i in range(n):
        y = 0.05 * rng.standard_normal(t.size)
        for f in rng.uniform(100, 6000, size=3):
            y += 0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        sf.write(str(folder / f"clip_{i:04d}.wav"), y, sr, subtype="PCM_16")


def build_models(folder: Path, clap_fused: bool, kinds=("AST", "CLAP")) -> dict:
    """Full-size randomly initialised AST and/or CLAP folders under ``folder``; ``{kind: folder}``."""
    import warnings

    import torch
    import transformers
    from transformers import (ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ClapConfig,
                              ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer)

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    ast_dir, clap_dir = folder / "ast", folder / "clap"
    built = {}
    if "AST" in kinds:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*mel filter has all zero values.*")  # NumPy filter bank, harmless
            ASTFeatureExtractor().save_pretrained(ast_dir)
        ASTForAudioClassification(ASTConfig()).save_pretrained(ast_dir)
        built["AST"] = str(ast_dir)
    if "CLAP" not in kinds:
        return built
    # The audio benchmark never tokenizes; a minimal RoBERTa tokenizer completes the processor.
    tokenizer = RobertaTokenizer(vocab={"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}, merges=[])
    audio_config = dict(enable_fusion=True, fusion_type="aff_2d") if clap_fused else {}
    extractor = ClapFeatureExtractor(truncation="fusion" if clap_fused else "rand_trunc")
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(clap_dir)
    ClapModel(ClapConfig(audio_config=audio_config)).save_pretrained(clap_dir)
    built["CLAP"] = str(clap_dir)
    return built


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux's VmHWM starts afresh at exec; ``ru_maxrss`` would carry over the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def worker(kind: str, model_dir: str, pattern: str, batch_size: int, device: str, out: str) -> None:
    """One configuration in this fresh process: load, embed every clip, report timings and memory."""
    import torch

    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.audio_embed import ASTEmbedder, ClapAudioEmbedder, embed_clips
    from auditoryhum.models.device import resolve_device

    device = resolve_device(device)
    paths = expand_glob(pattern)
    t0 = time.perf_counter()
    embedder = (ASTEmbedder if kind == "AST" else ClapAudioEmbedder).load(model_dir, device)
    load_s = time.perf_counter() - t0
    embed_clips(paths[:1], embedder, 1)  # warm-up: first-call allocations and kernel selection
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    table = embed_clips(paths, embedder, batch_size)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    assert not table.failures, table.failures
    np.save(out, table.rows)
    result = {
        "load_s": load_s,
        "seconds": seconds,
        "clips": len(paths),
        "peak_rss_mb": peak_rss_mb(),
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200, help="ten-second clips per configuration (default 200)")
    parser.add_argument("--batch_size", type=int, default=None, help="batched runs: clips per forward pass (default: the tools' default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clap_fused", action="store_true", help="benchmark a fused CLAP (laion/clap-htsat-fused sizes)")
    parser.add_argument("--models", default="AST,CLAP", help="comma-separated subset of AST,CLAP")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, model_dir, pattern, batch_size, device, out = args.worker
        worker(kind, model_dir, pattern, int(batch_size), device, out)
        return

    from auditoryhum.models.audio_embed import default_batch_size
    from auditoryhum.models.device import resolve_device

    device = resolve_device(args.device)
    batch_size = args.batch_size or default_batch_size(device)
    with tempfile.TemporaryDirectory(prefix="bench_audio_embed_") as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        write_clips(tmp / "clips", args.clips)
        model_dirs = build_models(tmp, args.clap_fused)
        print(f"{args.clips} ten-second clips (16 kHz WAV); full-size random models; device {device}; "
              f"CLAP {'fused' if args.clap_fused else 'unfused'}")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        for kind in [k.strip() for k in args.models.split(",") if k.strip()]:
            results = {}
            for label, bs in ((f"batched ({batch_size})", batch_size), ("one at a time", 1)):
                out = tmp / f"{kind}_{bs}.npy"
                proc = subprocess.run([sys.executable, __file__, "--worker", kind, model_dirs[kind], str(tmp / "clips" / "*.wav"),
                                       str(bs), device, str(out)], capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    sys.exit(f"{kind} {label} failed:\n{proc.stderr}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results[label] = (r, np.load(out))
                gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
                print(f"{kind} {label:>14}: {r['clips'] / r['seconds']:7.2f} clips/s ({r['seconds']:.1f} s for {r['clips']} clips; "
                      f"load {r['load_s']:.1f} s), peak RSS {r['peak_rss_mb']:.0f} MB{gpu}, {r['threads']} threads")
            (batched, rows_b), (single, rows_1) = results.values()
            ratio = (batched["clips"] / batched["seconds"]) / (single["clips"] / single["seconds"])
            identical = "identical" if np.array_equal(rows_b, rows_1) else f"max |diff| {np.abs(rows_b - rows_1).max():.2e}"
            print(f"{kind} batched / one at a time: {ratio:.2f}x clips/s; rows {identical}")


if __name__ == "__main__":
    main()
