"""The Ray executor (auditoryhum.engine.ray_executor) on a local Ray instance on the CPU.

One Ray instance serves the whole module (started by the ``ray_cluster`` fixture, 3 logical
CPUs: two actors plus one for Ray Data's reading and collecting). Outputs are compared byte
for byte with the local engine's on tiny random models: the labels of the four audio-LLM
families, AST, CLAP, Qwen2-Audio and Gemma-3n tower rows.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import REPO, write_tone

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "auditoryhum[ray]" to test the Ray engine')


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance for this module; yields its address (for other driver processes)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Seven short clips of different pitch and length, and one that is not audio."""
    folder = tmp_path_factory.mktemp("ray_clips")
    for k in range(7):
        write_tone(folder / f"c{k}.wav", seconds=0.3 + 0.1 * k, freq=200.0 + 130 * k)
    (folder / "c3_bad.wav").write_bytes(b"not audio" * 20)
    return folder


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray_many")
    for k in range(30):
        write_tone(folder / f"m{k:02d}.wav", seconds=0.3 + 0.02 * k, freq=150.0 + 40 * k)
    return folder


@pytest.fixture(scope="module")
def ast_model(tmp_path_factory):
    from tiny_embed_models import build_tiny_ast

    return str(build_tiny_ast(tmp_path_factory.mktemp("ray_ast") / "ast"))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """The session's folder of tiny MLLMs (each family built on first use, shared with other modules)."""
    return tmp_path_factory.getbasetemp() / "tiny_mllm"


@pytest.fixture(scope="module")
def qwen2a_model(tiny_base):
    from tiny_mllm_models import tiny_model

    return str(tiny_model(tiny_base, "qwen2a", "random"))


def _paths(folder):
    return sorted(str(p) for p in folder.glob("*.wav"))


def _embed(model, folder, out, **engine):
    from auditoryhum.models.audio_embed import ASTEmbedder, run_clip_embeddings

    return run_clip_embeddings(ASTEmbedder, model, "--ast_model", "cpu", _paths(folder), str(out), 2, **engine)


def _label(model, folder, out, family="qwen2a", **engine):
    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import run_labelling, user_prompt

    paths = _paths(folder)
    return run_labelling(get_family(family), model, paths, [user_prompt(None)] * len(paths), str(out),
                         resolve_precision("cpu"), batch_size=2, **engine)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_ast_rows_ray_equal_local(ray_cluster, ast_model, clips, tmp_path, capsys):
    local, _ = _embed(ast_model, clips, tmp_path / "local.npy")
    remote, _ = _embed(ast_model, clips, tmp_path / "ray.npy", engine="ray", actors=2)
    assert (tmp_path / "local.npy").read_bytes() == (tmp_path / "ray.npy").read_bytes()
    assert remote.failures == local.failures and len(remote.failures) == 1 and "c3_bad.wav" in remote.failures[0]
    assert np.isnan(remote.rows[4]).all()  # the failed clip's row, as locally
    err = capsys.readouterr().err
    assert err.count("note: Ray: 2 actor(s), each 1 CPU and 0 GPU") == 1


@pytest.mark.slow
def test_labels_ray_equal_local_and_resume_across_engines(ray_cluster, qwen2a_model, clips, tmp_path):
    local = _label(qwen2a_model, clips, tmp_path / "local.csv")
    remote = _label(qwen2a_model, clips, tmp_path / "ray.csv", engine="ray", actors=2)
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "ray.csv").read_bytes()
    assert len(set(local.labels)) > 2 and remote.failures == local.failures and len(remote.failures) == 1

    # The failed clip keeps the Ray run's journal; fixed, a local rerun reuses the rest.
    write_tone(clips / "c3_bad.wav", seconds=0.5, freq=900.0)
    try:
        again = _label(qwen2a_model, clips, tmp_path / "ray.csv")
        assert again.reused == 7 and not again.failures
        _label(qwen2a_model, clips, tmp_path / "fresh.csv", engine="ray")
        assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "fresh.csv").read_bytes()
    finally:
        (clips / "c3_bad.wav").write_bytes(b"not audio" * 20)


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory):
    """Two short clips around one that is not audio (the failure row sits between two batches' worth)."""
    folder = tmp_path_factory.mktemp("ray_three")
    write_tone(folder / "a.wav", seconds=0.6, freq=300.0)
    (folder / "b_bad.wav").write_bytes(b"not audio" * 20)
    write_tone(folder / "c.wav", seconds=0.9, freq=700.0)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5o", "qwen3o", "gemma3n"])
def test_labels_of_the_other_families_ray_equal_local(ray_cluster, tiny_base, three_clips, tmp_path, family):
    from tiny_mllm_models import tiny_model

    model = str(tiny_model(tiny_base, family, "random"))
    local = _label(model, three_clips, tmp_path / "local.csv", family=family)
    remote = _label(model, three_clips, tmp_path / "ray.csv", family=family, engine="ray", actors=2)
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "ray.csv").read_bytes()
    assert remote.labels == local.labels and len(local.labels) == 3
    assert local.labels[1] == "" and local.labels[0] and local.labels[2]  # the undecodable clip: an empty label
    assert remote.failures == local.failures and len(remote.failures) == 1 and "b_bad.wav" in remote.failures[0]
    # Both runs keep their journal for the failed clip, with the same records.
    assert (tmp_path / ".local.csv.journal").exists() and (tmp_path / ".ray.csv.journal").exists()


@pytest.mark.slow
def test_gemma3n_tower_rows_ray_equal_local(ray_cluster, tiny_base, three_clips, tmp_path):
    from tiny_mllm_models import tiny_model

    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.tower_embed import run_tower_embeddings

    model = str(tiny_model(tiny_base, "gemma3n", "random"))
    paths = _paths(three_clips)
    family, precision = get_family("gemma3n"), resolve_precision("cpu")
    local = run_tower_embeddings(family, model, paths, str(tmp_path / "local.npy"), precision, batch_size=2)
    remote = run_tower_embeddings(family, model, paths, str(tmp_path / "ray.npy"), precision, batch_size=2,
                                  engine="ray", actors=2)
    assert (tmp_path / "local.npy").read_bytes() == (tmp_path / "ray.npy").read_bytes()
    assert remote.rows.shape == (3, 32) and np.isnan(remote.rows[1]).all() and np.isfinite(remote.rows[[0, 2]]).all()
    assert remote.failures == local.failures and len(remote.failures) == 1 and "b_bad.wav" in remote.failures[0]


def _actor_pids():
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "MapWorker" in cmd and "RayStep" in cmd:
            pids.append(proc.info["pid"])
    return pids


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_an_actor_killed_mid_run_is_replaced_and_the_output_is_identical(ray_cluster, ast_model, many_clips, tmp_path):
    from auditoryhum.models.audio_embed import ASTEmbedder, run_clip_embeddings

    paths = _paths(many_clips)
    run_clip_embeddings(ASTEmbedder, ast_model, "--ast_model", "cpu", paths, str(tmp_path / "local.npy"), 1)
    out = tmp_path / "ray.npy"
    journal = tmp_path / ".ray.npy.journal"
    killed = []

    def kill_one_actor_once_journalled():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
                for pid in _actor_pids()[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one_actor_once_journalled, daemon=True)
    watcher.start()
    table, _ = run_clip_embeddings(ASTEmbedder, ast_model, "--ast_model", "cpu", paths, str(out), 1,
                                   engine="ray", actors=2)
    watcher.join(timeout=5)
    assert killed, "no actor was killed while the run was going"
    assert table.failures == []
    assert out.read_bytes() == (tmp_path / "local.npy").read_bytes()
    assert not journal.exists()


_DRIVER = """
import sys
from auditoryhum.models.audio_embed import ASTEmbedder, run_clip_embeddings
folder, model, out, address = sys.argv[1:5]
import glob
paths = sorted(glob.glob(folder + "/*.wav"))
run_clip_embeddings(ASTEmbedder, model, "--ast_model", "cpu", paths, out, 1, engine="ray", ray_address=address, actors=2)
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_driver_killed_then_rerun_under_either_engine_is_identical(ray_cluster, ast_model, many_clips, tmp_path):
    paths = _paths(many_clips)
    reference = tmp_path / "reference.npy"
    _embed(ast_model, many_clips, reference)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))

    for rerun_engine in ("local", "ray"):
        out = tmp_path / f"killed_{rerun_engine}.npy"
        journal = tmp_path / f".killed_{rerun_engine}.npy.journal"
        child = subprocess.Popen([sys.executable, "-c", _DRIVER, str(many_clips), ast_model, str(out), ray_cluster],
                                 cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and child.poll() is None:
                if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
                    break
                time.sleep(0.01)
            assert child.poll() is None, "the driver finished before it could be killed"
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL and not out.exists()
        done = journal.read_bytes().count(b"\n") - 1
        assert 2 <= done < len(paths)
        engine = {"engine": "ray", "actors": 2} if rerun_engine == "ray" else {}
        _, reused = _embed(ast_model, many_clips, out, **engine)
        assert reused >= done
        assert out.read_bytes() == reference.read_bytes()


def test_missing_ray_is_one_line(monkeypatch):
    from auditoryhum.engine import make_executor
    from auditoryhum.errors import UserError

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(UserError) as info:
        make_executor("ray")
    assert str(info.value) == 'the Ray engine needs Ray: pip install "auditoryhum[ray]"'


@pytest.mark.slow
def test_unreachable_address_is_one_line_naming_it():
    code = ("from auditoryhum.engine.ray_executor import RayExecutor\n"
            "from auditoryhum.errors import UserError\n"
            "for address in ('127.0.0.1:1', 'ray://127.0.0.1:1'):\n"
            "    try:\n        RayExecutor(ray_address=address).connect()\n"
            "    except UserError as exc:\n        print(exc)\n")
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert time.time() - start < 60
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr
    assert lines[0].startswith("cannot reach the Ray cluster at '127.0.0.1:1' (Connection refused)")
    assert lines[1].startswith("cannot reach the Ray cluster at 'ray://127.0.0.1:1' (Connection refused)")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_address_probe_accepts_a_real_ray_head(ray_cluster):
    """Issue 23 item 9: the probe that refuses a non-Ray listener in seconds lets Ray's GCS through."""
    from auditoryhum.engine.ray_executor import _probe

    _probe(ray, ray_cluster)  # raises UserError if the GCS did not answer like gRPC


@pytest.mark.slow
def test_a_worker_that_cannot_read_the_clips_is_one_line(ray_cluster, ast_model, tmp_path):
    from auditoryhum.engine.ray_executor import RayExecutor
    from auditoryhum.errors import UserError

    with pytest.raises(UserError, match="a Ray worker cannot open .*missing.wav.*shared file system"):
        RayExecutor()._check_worker_can_read(ray, str(tmp_path / "missing.wav"))


@pytest.mark.slow
def test_more_gpus_than_the_cluster_has_is_one_line(ray_cluster):
    from auditoryhum.engine.ray_executor import RayExecutor
    from auditoryhum.errors import UserError

    with pytest.raises(UserError, match="2 actor\\(s\\) x 1 GPU need 2 GPUs but the Ray cluster has 0"):
        RayExecutor(actors=2, gpus_per_actor=1)._plan(ray)
    with pytest.raises(UserError, match="leave no CPU"):
        RayExecutor(actors=3, cpus_per_actor=1)._plan(ray)
    plan = RayExecutor(actors=2)._plan(ray)
    assert plan == {"cpus": 1.0, "gpus": 0.0}


@pytest.fixture(scope="module")
def clap_model(tmp_path_factory):
    from tiny_embed_models import build_tiny_clap

    return str(build_tiny_clap(tmp_path_factory.mktemp("ray_clap") / "clap", fused=False))


@pytest.mark.slow
def test_scripts_take_engine_ray_and_write_the_local_bytes(ray_cluster, clap_model, qwen2a_model, clips, tmp_path):
    """The command line end to end: features_clap.py and features_qwen2a.py with --engine ray joining
    the module's cluster, against the same commands on the local engine."""
    from conftest import run_script

    for script, model_flag, model, out_flag in (("features_clap.py", "--clap_model", clap_model, "--clap_npy"),
                                                ("features_qwen2a.py", "--qwen2a_model", qwen2a_model, "--qwen2a_npy")):
        common = ["--filedir", clips / "*.wav", model_flag, model, "--device", "cpu", "--batch_size", "2"]
        local = run_script(script, *common, out_flag, tmp_path / f"{script}.local.npy", timeout=300)
        remote = run_script(script, *common, out_flag, tmp_path / f"{script}.ray.npy", "--engine", "ray",
                            "--ray_address", ray_cluster, "--actors", "2", timeout=300)
        assert local.returncode == remote.returncode == 1  # the one undecodable clip, both times
        assert "c3_bad.wav" in local.stderr and "c3_bad.wav" in remote.stderr
        assert (tmp_path / f"{script}.local.npy").read_bytes() == (tmp_path / f"{script}.ray.npy").read_bytes()
        assert "Ray: 2 actor(s)" in remote.stderr and "Traceback" not in remote.stderr


@pytest.mark.slow
def test_a_bad_engine_option_is_one_line_under_its_flag(tmp_path, clips, clap_model):
    from conftest import assert_one_line_error, run_script

    proc = run_script("features_clap.py", "--filedir", clips / "*.wav", "--clap_model", clap_model,
                      "--clap_npy", tmp_path / "x.npy", "--engine", "ray", "--actors", "0")
    assert_one_line_error(proc, "--actors must be at least 1, got 0")
    assert not (tmp_path / "x.npy").exists()


_OWN_INSTANCE_DRIVER = """
import glob, sys
from auditoryhum.models.audio_embed import ASTEmbedder, run_clip_embeddings
folder, model, out = sys.argv[1:4]
paths = sorted(glob.glob(folder + "/*.wav"))
run_clip_embeddings(ASTEmbedder, model, "--ast_model", "cpu", paths, out, 1, engine="ray", actors=1)
"""


def _instance_processes(driver_pid, temp_dir):
    """The live processes of one Ray instance: the driver's descendants and every process whose
    command line names the instance's temporary folder (zombies are ended processes)."""
    import psutil

    found = {}
    try:
        for proc in psutil.Process(driver_pid).children(recursive=True):
            found[proc.pid] = proc
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter(["cmdline"]):
        if temp_dir in " ".join(proc.info["cmdline"] or []):
            found[proc.pid] = proc
    alive = {}
    for pid, proc in found.items():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                # The program's own name first: a long install path must not push it out of
                # the shortened description (CI's checkout lives deeper than this one).
                cmdline = proc.cmdline() or [proc.name()]
                alive[pid] = " ".join([os.path.basename(cmdline[0]), *cmdline[1:]])[:120]
        except psutil.NoSuchProcess:
            pass
    return alive


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_a_killed_driver_takes_its_own_ray_instance_with_it(ast_model, many_clips, tmp_path):
    """A driver that started its own local Ray instance (``ray_address=None``) and is killed
    with SIGKILL leaves no Ray process behind (GCS, raylet, workers, the actor)."""
    import tempfile

    # A short folder of its own (Ray's socket paths must stay under 108 characters): the
    # instance's processes name it on their command lines, the module's instance does not.
    temp_dir = tempfile.mkdtemp(prefix="rk", dir="/tmp")
    out = tmp_path / "own.npy"
    journal = tmp_path / ".own.npy.journal"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO), RAY_TMPDIR=temp_dir)
    env.pop("RAY_ADDRESS", None)
    child = subprocess.Popen([sys.executable, "-c", _OWN_INSTANCE_DRIVER, str(many_clips), ast_model, str(out)],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and child.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the driver finished or failed before it could be killed"
        before = _instance_processes(child.pid, temp_dir)
        names = " | ".join(before.values())
        assert "gcs_server" in names and "raylet" in names, names
        assert any("RayStep" in c or "MapWorker" in c for c in before.values()) or len(before) >= 4, names
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        killed_at = time.time()
        ended = {}  # pid -> seconds after the kill when it was first seen gone
        left = dict(before)
        while left and time.time() < killed_at + 30:
            now = _instance_processes(child.pid, temp_dir)
            for pid in list(left):
                if pid not in now and not _alive(pid):
                    ended[pid] = time.time() - killed_at
                    del left[pid]
            left.update({pid: cmd for pid, cmd in now.items() if pid not in ended})
            time.sleep(0.05)
        took = time.time() - killed_at
        print(f"\n{len(before)} Ray processes of the killed driver's own instance: "
              + ", ".join(f"{before.get(pid, '?').split()[0]} {t:.1f} s" for pid, t in sorted(ended.items(), key=lambda x: x[1]))
              + (f"; still running after {took:.0f} s: {sorted(left.values())}" if left else ""))
        assert not left, f"still running {took:.0f} s after the driver was killed: {left}"
    finally:
        if child.poll() is None:
            child.kill()
        lingering = set(_instance_processes(child.pid, temp_dir)) | set(locals().get("before") or ())
        for pid in lingering:  # a failed check leaves nothing behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        import shutil

        shutil.rmtree(temp_dir, ignore_errors=True)


def _generated_batches(n, batch_size):
    # Made on the fly, as the engine's batch iterator does: the generator itself holds nothing.
    from auditoryhum.engine.step import Task

    for start in range(0, n, batch_size):
        yield [Task(i, f"/clips/{i:07d}.wav", (f"/clips/{i:07d}.wav", "describe the scene " * 3))
               for i in range(start, min(n, start + batch_size))]


@pytest.mark.slow
def test_pending_tasks_are_whole_engine_batches_in_bounded_blocks(ray_cluster):
    from auditoryhum.engine.ray_executor import CHUNK_ROWS, MAX_BLOCKS, _PendingTasks

    pending = _PendingTasks(ray, _generated_batches(3001, 3), 3)  # 1001 batches, the last one of 1 item
    assert pending.n_batches == 1001 and pending.per_chunk == 64 and 64 * 3 <= CHUNK_ROWS
    assert pending.per_block == 8 and pending.num_blocks == 126 <= MAX_BLOCKS
    tasks = pending.datasource().get_read_tasks(1)
    assert len(tasks) == pending.num_blocks
    seen = []
    for read in tasks[:3] + tasks[-2:]:
        (block,) = list(read())
        numbers, indices = block.column("batch").to_pylist(), block.column("index").to_pylist()
        assert read.metadata.num_rows == block.num_rows == len(indices)
        # Consecutive whole batches: batch b holds items 3b, 3b+1, 3b+2.
        assert numbers == [i // 3 for i in indices] and indices == list(range(indices[0], indices[-1] + 1))
        assert indices[0] % 24 == 0  # a block starts at a batch boundary (8 batches of 3)
        seen.append((indices[0], len(indices)))
    assert seen[0] == (0, 24) and seen[-1] == (3000 - 3000 % 24, 3001 - (3000 - 3000 % 24))
    import pickle

    (block,) = list(tasks[-1]())
    assert block.column("path").to_pylist()[-1] == "/clips/0003000.wav"
    assert pickle.loads(block.column("payload").to_pylist()[-1])[0] == "/clips/0003000.wav"


@pytest.mark.slow
def test_blocks_are_cut_at_batch_boundaries_whatever_the_batch_sizes(ray_cluster):
    from collections import Counter

    from auditoryhum.engine.ray_executor import _PendingTasks
    from auditoryhum.engine.step import Task

    sizes = [1 + k % 5 for k in range(300)]  # batches of 1 to 5 items
    starts = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    batches = [[Task(i, None, i) for i in range(starts[k], starts[k + 1])] for k in range(len(sizes))]
    pending = _PendingTasks(ray, iter(batches), 5)
    assert pending.per_chunk == 32 and pending.per_block == 2 and pending.num_blocks == 150
    covered = []
    for read in pending.datasource().get_read_tasks(1):
        (block,) = list(read())
        counts = Counter(block.column("batch").to_pylist())
        assert counts == {b: sizes[b] for b in counts} and len(counts) == 2  # two whole batches
        assert block.column("index").to_pylist() == list(range(starts[min(counts)], starts[max(counts) + 1]))
        covered.extend(sorted(counts))
    assert covered == list(range(300))


@pytest.mark.slow
def test_the_driver_holds_a_chunk_not_the_stream(ray_cluster):
    """Packing the pending tasks for the object store keeps the driver's Python heap flat: the
    tasks of 20,000 items cost the driver no more than those of 2,000 (a held list would be
    megabytes more)."""
    import gc
    import tracemalloc

    from auditoryhum.engine.ray_executor import _PendingTasks

    peaks = {}
    for n in (2_000, 20_000):
        gc.collect()
        tracemalloc.start()
        pending = _PendingTasks(ray, _generated_batches(n, 4), 4)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert sum(rows for _, rows in pending.chunks) == n
        del pending
    # 18,000 more tasks held would be about 18,000 x 250 bytes = 4.5 MB; what remains per item
    # is a share of one object reference per chunk of 256.
    assert peaks[20_000] - peaks[2_000] < 500_000, peaks
