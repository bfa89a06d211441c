"""The cache folder: the array cache's size limit (least recently used out), and `auditoryhum cache`."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from auditoryhum.errors import UserError
from auditoryhum.io import cache_folder
from auditoryhum.io.array_cache import ArrayCache, max_bytes_from_env, rows_digest
from auditoryhum.io.text_cache import TextEmbeddingCache

from conftest import REPO


def entry_size(cache):
    """Bytes of one entry holding a float64 array of 1,000 values (header + NPY)."""
    return cache.entries()[0].size


def put(cache, name, value=0.0):
    key = cache.key("test", rows_digest(np.array([len(name)])), {"name": name})
    cache.put("test", key, np.full(1000, value))
    return cache.path("test", key)


def age(path, seconds):
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_over_its_limit_the_cache_removes_the_least_recently_used_entries(tmp_path):
    cache = ArrayCache(tmp_path, max_bytes=None)
    a = put(cache, "a")
    size = entry_size(cache)
    b, c = put(cache, "b"), put(cache, "c")
    age(a, 300), age(b, 200), age(c, 100)
    # Reading a back makes it the most recently used: b is now the oldest use.
    key_a = cache.key("test", rows_digest(np.array([1])), {"name": "a"})
    assert cache.get("test", key_a) is not None
    assert os.path.getmtime(a) > time.time() - 60
    limited = ArrayCache(tmp_path, max_bytes=3 * size)
    d = put(limited, "dd")
    assert sorted(p.name for p in (tmp_path / "arrays" / "test").iterdir()) == sorted(p.name for p in (a, c, d))
    assert limited.notes == [f"the array cache {tmp_path / 'arrays'} went over its {3 * size / 1024:.1f} KiB limit: "
                             f"removed the 1 least recently used entry ({size / 1024:.1f} KiB); "
                             f"$AUDITORYHUM_CACHE_MAX_SIZE sets the limit"]
    # Under the limit nothing is removed and nothing is said.
    quiet = ArrayCache(tmp_path, max_bytes=10 * size)
    put(quiet, "eee")
    assert quiet.notes == [] and len(quiet.entries()) == 4


def test_the_entry_just_written_is_kept_even_when_it_alone_is_over_the_limit(tmp_path):
    cache = ArrayCache(tmp_path, max_bytes=1)
    first = put(cache, "a")
    second = put(cache, "b")
    assert not first.exists() and second.exists()
    assert [e.path for e in cache.entries()] == [second]


def test_a_clustering_under_a_tiny_limit_gives_the_same_results(tmp_path, monkeypatch):
    from auditoryhum.stages.cluster import cluster

    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(12, 6)), 3, axis=0).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    free = cluster(str(tmp_path / "x.npy"), str(tmp_path / "free.csv"), None, algorithm="spectral", n_clusters=3,
                   no_cache=True)
    monkeypatch.setenv("AUDITORYHUM_CACHE_MAX_SIZE", "1K")
    tight = cluster(str(tmp_path / "x.npy"), str(tmp_path / "tight.csv"), None, algorithm="spectral", n_clusters=3,
                    cache_dir=str(tmp_path / "cache"))
    assert tight.labels == free.labels and tight.silhouette == free.silhouette
    assert (tmp_path / "free.csv").read_bytes() == (tmp_path / "tight.csv").read_bytes()
    assert any("went over its 1.0 KiB limit" in n for n in tight.notes)
    left = ArrayCache(tmp_path / "cache", max_bytes=None).entries()
    assert left and sum(e.size for e in left) <= 1024


def test_the_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("AUDITORYHUM_CACHE_MAX_SIZE", raising=False)
    assert max_bytes_from_env() == 4 * 2**30
    for text, expected in (("500M", 500 * 2**20), ("1.5G", 3 * 2**29), ("none", None), ("2048", 2048)):
        monkeypatch.setenv("AUDITORYHUM_CACHE_MAX_SIZE", text)
        assert max_bytes_from_env() == expected
    monkeypatch.setenv("AUDITORYHUM_CACHE_MAX_SIZE", "lots")
    with pytest.raises(UserError, match=r"\$AUDITORYHUM_CACHE_MAX_SIZE='lots' is not a size: set it to e.g. 20G"):
        ArrayCache("/nonexistent")
    assert ArrayCache("/nonexistent", enabled=False).max_bytes is None  # --no_cache never reads it


def test_only_files_the_caches_wrote_are_ever_removed(tmp_path):
    """A --cache_dir typed wrong (a folder of the user's own) loses nothing."""
    cache = ArrayCache(tmp_path, max_bytes=None)
    ours = put(cache, "a")
    kind = ours.parent
    lookalike = kind / ("0" * 40 + ".npy")  # an entry's name, not its header
    np.save(lookalike, np.arange(3))
    (kind / "notes.txt").write_text("mine")
    outside = tmp_path / "precious.npy"
    outside.write_bytes(ours.read_bytes())
    link = kind / ("1" * 40 + ".npy")
    link.symlink_to(outside)
    fresh_partial = kind / f".{'2' * 40}.npy.abc123.partial"
    stale_partial = kind / f".{'3' * 40}.npy.def456.partial"
    fresh_partial.write_bytes(b"x")
    stale_partial.write_bytes(b"x")
    age(stale_partial, 7200)
    shards = TextEmbeddingCache(tmp_path, "clap-text", "a" * 32)
    shards.add(["dog bark", "car horn"], np.ones((2, 4), dtype=np.float32))
    (tmp_path / "clap-text" / ("a" * 32) / "mine.npz").write_bytes(b"mine")
    (tmp_path / "my-data").mkdir()
    (tmp_path / "my-data" / "shard-x.npz").write_bytes(b"mine")

    summary = cache_folder.summarise(tmp_path)
    assert summary.arrays == {"test": (1, ours.stat().st_size)}
    assert list(summary.text) == ["clap-text/" + "a" * 32] and summary.text["clap-text/" + "a" * 32][0] == 1
    assert summary.stale_partials == 1

    would = cache_folder.clear(tmp_path, dry_run=True)
    assert [e.path for e in would[0]] == [ours] and len(would[1]) == 1 and ours.exists()
    arrays, text = cache_folder.clear(tmp_path)
    assert [e.path for e in arrays] == [ours] and not ours.exists()
    assert len(text) == 1 and not text[0].exists()
    for kept in (lookalike, kind / "notes.txt", outside, link, fresh_partial,
                 tmp_path / "clap-text" / ("a" * 32) / "mine.npz", tmp_path / "my-data" / "shard-x.npz"):
        assert os.path.lexists(kept), kept
    assert not stale_partial.exists()
    assert outside.read_bytes()[:8] == b"AHUMARR1"


def run_cache_command(*args, env=None):
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "auditoryhum", "cache", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=120)


@pytest.mark.slow
def test_cache_command_lists_prunes_and_clears(tmp_path):
    cache = ArrayCache(tmp_path, max_bytes=None)
    paths = [put(cache, name) for name in ("a", "b", "c")]
    for i, path in enumerate(paths):
        age(path, 300 - 100 * i)
    size = paths[0].stat().st_size
    TextEmbeddingCache(tmp_path, "clap-text", "b" * 32).add(["rain"], np.ones((1, 4), dtype=np.float32))

    proc = run_cache_command("--cache_dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"cache folder: {tmp_path}"
    assert lines[1] == (f"  array cache: 3 entries, {3 * size / 1024:.1f} KiB (limit 4.0 GiB; "
                        f"$AUDITORYHUM_CACHE_MAX_SIZE sets it)")
    assert lines[2] == f"    test: 3 entries, {3 * size / 1024:.1f} KiB"
    assert lines[3].startswith("  text embeddings: 1 shard(s), ")
    assert lines[4].startswith(f"    clap-text/{'b' * 32}: 1 shard(s), ")

    proc = run_cache_command("--cache_dir", tmp_path, "--max_size", str(2 * size), "--dry_run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("would remove 1 array entry (")
    assert all(p.exists() for p in paths)
    proc = run_cache_command("--cache_dir", tmp_path, "--max_size", str(2 * size))
    assert proc.stdout.splitlines()[0].startswith("removed 1 array entry (")
    assert [p.exists() for p in paths] == [False, True, True]  # the least recently used went

    proc = run_cache_command("--cache_dir", tmp_path, "--clear")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("removed 2 array entries (") and "and 1 text-embedding shard(s)" in proc.stdout
    assert "array cache: 0 entries, 0 B" in proc.stdout and "text embeddings: 0 shard(s), 0 B" in proc.stdout

    proc = run_cache_command("--cache_dir", tmp_path, "--max_size", "lots")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("auditoryhum cache: error: --max_size must be a size such as 500M, 4G or "
                                   "1048576 (bytes), got 'lots'")
    proc = run_cache_command("--cache_dir", tmp_path, env={"AUDITORYHUM_CACHE_MAX_SIZE": "-3"})
    assert proc.returncode == 1 and "$AUDITORYHUM_CACHE_MAX_SIZE='-3' is not a size" in proc.stderr
