#!/usr/bin/env python3
"""Benchmark features_clap_text.py against the published per-clip method.

Setup: a FULL-SIZE, randomly initialised CLAP (``ClapConfig()`` defaults: the RoBERTa-base
text tower and HTSAT audio tower of ``laion/clap-htsat-unfused``) saved to a temporary folder;
N clips (default 5,000) with K candidates each (default 8) drawn from a Zipf-like vocabulary
of V word pairs (default 1,500); random unit audio embeddings.

* ours: the real ``features_clap_text.py`` in a subprocess (imports, model load, every step),
  first with an empty text-embedding cache, then again with the cache it left.
* published method: for each clip, its candidates tokenised together and encoded with
  ``ClapModel.get_text_features``, cosine with the audio row, argmax. It is timed on a sample
  of clips (``--naive_sample``) and extrapolated to N, as the output says.

Ratios are printed from numbers measured in the same run. The kept labels of the sampled
clips are compared between the two methods as a check.

Usage: .venv/bin/python benchmarks/bench_clap_text.py [--clips 5000] [--naive_sample 150]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_vocabulary(n_pairs: int, rng: np.random.Generator):
    """``n_pairs`` distinct two-word labels made of pronounceable pseudo-words."""
    onsets = ["b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "ch", "st", "tr", "br"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ee", "oo"]
    codas = ["", "n", "r", "s", "t", "ng", "ck", "ll"]

    def word():
        return "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(rng.integers(1, 4)))

    pairs = set()
    while len(pairs) < n_pairs:
        pairs.add(f"{word()} {word()}ing" if rng.random() < 0.5 else f"{word()} {word()}")
    return sorted(pairs)


def build_full_size_clap(folder: Path, vocabulary) -> None:
    """Save a ClapConfig()-default (full-size) random CLAP with a byte-level BPE tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    transformers.utils.logging.disable_progress_bar()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # A small vocabulary splits words into several pieces, as RoBERTa's does for rare words.
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(vocabulary, trainer)
    import json

    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = RobertaTokenizer(vocab=state["vocab"], merges=merges)
    torch.manual_seed(0)
    model = ClapModel(ClapConfig()).eval()  # text vocab stays 50,265: the real embedding table
    ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)


def published_method(model, processor, audio_rows, label_lines):
    """The reference: each clip's candidates encoded on their own, then cosine and argmax."""
    import torch

    from auditoryhum.labels import split_candidates

    kept = []
    for row, line in zip(audio_rows, label_lines):
        candidates = split_candidates(line)
        inputs = processor(text=candidates, return_tensors="pt", padding=True)
        with torch.no_grad():
            text = model.get_text_features(**inputs).pooler_output
        sims = torch.nn.functional.cosine_similarity(torch.from_numpy(row)[None, :], text, dim=-1)
        best = int(torch.argmax(sims))
        kept.append((candidates[best], float(sims[best])))
    return kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=1500)
    parser.add_argument("--zipf", type=float, default=1.1, help="exponent s of p(rank) ~ 1/rank^s")
    parser.add_argument("--naive_sample", type=int, default=150, help="clips the published method is timed on")
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()

    import torch

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_clap_text_") as tmp:
        tmp = Path(tmp)
        vocabulary = make_vocabulary(args.vocab, rng)
        weights = 1.0 / np.arange(1, args.vocab + 1) ** args.zipf
        draws = rng.choice(args.vocab, size=(args.clips, args.candidates), p=weights / weights.sum())
        lines = [", ".join(vocabulary[k] for k in row) for row in draws]
        (tmp / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        clip_dir = tmp / "clips"
        clip_dir.mkdir()
        for i in range(args.clips):  # features_clap_text reads only the paths, never the audio
            (clip_dir / f"clip_{i:05d}.wav").touch()
        audio = rng.standard_normal((args.clips, 512)).astype(np.float32)
        audio /= np.linalg.norm(audio, axis=1, keepdims=True)
        np.save(tmp / "clap.npy", audio)

        t0 = time.perf_counter()
        build_full_size_clap(tmp / "clap", vocabulary)
        print(f"built and saved a full-size random CLAP in {time.perf_counter() - t0:.1f} s")
        distinct = len({vocabulary[k] for k in draws.ravel()})
        print(f"workload: {args.clips} clips x {args.candidates} candidates = {args.clips * args.candidates} candidate texts, "
              f"{distinct} distinct (Zipf s={args.zipf} over {args.vocab} word pairs); torch threads {torch.get_num_threads()}")

        command = [sys.executable, str(REPO / "features_clap_text.py"), "--filedir", str(clip_dir / "*.wav"),
                   "--clap_model", str(tmp / "clap"), "--clap_npy", str(tmp / "clap.npy"), "--text_label_csv", str(tmp / "labels.csv"),
                   "--top_label_scores_csv", str(tmp / "scores.csv"), "--cache_dir", str(tmp / "cache"),
                   "--batch_size", str(args.batch_size), "--device", "cpu", "--quiet"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        timings = {}
        for run in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, env=env)
            timings[run] = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"features_clap_text.py failed:\n{proc.stderr}")
            print(f"ours ({run}): {timings[run]:.1f} s from process start to exit ({proc.stdout.strip()})")

        from transformers import ClapModel, ClapProcessor

        t0 = time.perf_counter()
        model = ClapModel.from_pretrained(tmp / "clap").eval()
        processor = ClapProcessor.from_pretrained(tmp / "clap")
        load_s = time.perf_counter() - t0
        sample = np.sort(rng.choice(args.clips, size=min(args.naive_sample, args.clips), replace=False))
        published_method(model, processor, audio[sample[:5]], [lines[i] for i in sample[:5]])  # warm-up
        t0 = time.perf_counter()
        kept = published_method(model, processor, audio[sample], [lines[i] for i in sample])
        per_clip = (time.perf_counter() - t0) / len(sample)
        naive_total = load_s + per_clip * args.clips
        print(f"published method: {per_clip * 1000:.1f} ms per clip, measured on {len(sample)} random clips and "
              f"extrapolated to {args.clips}: {per_clip * args.clips:.1f} s encoding + {load_s:.1f} s model load = {naive_total:.1f} s")

        ours_rows = (tmp / "scores.csv").read_text().splitlines()
        agree = sum(ours_rows[i].split(", ")[2] == label for i, (label, _) in zip(sample, kept))
        print(f"check: kept labels agree on {agree} of {len(sample)} sampled clips")
        for run, seconds in timings.items():
            print(f"speed-up ({run}): {naive_total / seconds:.1f}x  (published {naive_total:.1f} s / ours {seconds:.1f} s; target >= 20x)")


if __name__ == "__main__":
    main()
