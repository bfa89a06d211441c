"""Labelling and naming through an OpenAI-compatible server (vLLM): ``--server URL``.

The transformers route (:mod:`auditoryhum.models.labeller`) loads the model in this process;
this route sends every clip to a server that already holds it (``vllm serve`` on a GPU node,
usually shared by a lab), one chat-completions request per clip, and gets the answer back. The
toolkit gains an HTTP client (the standard library's ``http.client``), not vLLM's pins.

What a request carries is what the transformers route feeds its model, so that on the same
weights the label file is byte-identical:

* the family's system turn (:func:`auditoryhum.stages.label.resolve_prompts`: the published
  system prompt, or none for ``--task caption``) and the user turn: the clip, then the user
  prompt with its ``--annotations`` hint (:func:`auditoryhum.models.labeller.user_prompt`);
  the server renders them with the model's own chat template;
* the clip as a WAV ``input_audio`` part: decoded and resampled exactly as the transformers
  route decodes it (:func:`auditoryhum.io.audio.load_audio` at 16 kHz) and sent as 16-bit PCM
  when that is lossless (a 16-bit source), else as 32-bit float, so the server reads the same
  samples;
* greedy decoding (``temperature`` 0), at most 64 new tokens, seed 100
  (:data:`auditoryhum.recipe.LABEL_GENERATION_SETTINGS`, :data:`auditoryhum.recipe.SEED`);
* for the Qwen Omni families, ``mm_processor_kwargs`` that pad the clip's features only to its
  length plus one FFT window (:func:`auditoryhum.models.labeller.trimmed_pad_length`): vLLM's
  Qwen2.5-Omni input path otherwise pads every clip to the checkpoint's 300 s window, which
  costs about 0.3 s of CPU per clip and changes no real frame.

The answer goes through the same post-processing (:data:`auditoryhum.models.labeller.POSTPROCESS`)
and the run through the same journal (:func:`auditoryhum.engine.run_resumable`): resumable,
byte-identical after ``kill -9``, a failed clip gets an empty line and the run ends non-zero.

Before any work, :meth:`ServerClient.check` asks every server for ``/v1/models`` and sends one
probe request: an unreachable server, a model the server does not serve, a server without
audio input or without structured outputs is one line within seconds.

``--concurrency`` requests are in flight (threads of :class:`auditoryhum.engine.LocalExecutor`);
with several servers each request goes to the one with the fewest in flight. Only 408, 429,
5xx, timeouts and dropped connections are retried (bounded, with back-off); a refused key or an
unknown model stops the run; any other error fails that clip.

The key (``AUDITORYHUM_SERVER_API_KEY`` or ``OPENAI_API_KEY``) is sent as a bearer token and
never printed, journalled or written: messages pass through :func:`scrub`.

Top level: standard library only (the command line reads the defaults from here cheaply).
"""

import base64
import http.client
import io
import json
import os
import random
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from auditoryhum.defaults import (
    FORMAT_REGEX_PRESETS, SERVER_API_KEY_ENV_VARS, SERVER_CHECK_TIMEOUT_S, SERVER_CONCURRENCY,
    SERVER_MAX_CONSECUTIVE_FAILURES, SERVER_MAX_RETRIES, SERVER_RETRY_BASE_DELAY_S, SERVER_TIMEOUT_S,
)
from auditoryhum.engine import Item, LocalExecutor, Step, StepSpec, TEXT, digest, run_resumable
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.recipe import LABEL_GENERATION_SETTINGS, SEED

#: The sampling rate every labelling family's audio front end reads (Whisper's and Gemma-3n's):
#: clips are decoded and resampled to it here, as the transformers route does, so the server
#: resamples nothing.
SAMPLING_RATE = 16000
#: HTTP statuses worth retrying: the server is busy or restarting.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
_MESSAGE_LIMIT = 300

RETRY, CLIP, RUN = "retry", "clip", "run"
# Special-token texts at the end of a decoded answer: Qwen's <|im_end|>, <|endoftext|>, <|AUDIO|>;
# Gemma's <end_of_turn>, <eos>, <audio_soft_token>.
_TRAILING_SPECIALS = re.compile(r"(?:<\|[A-Za-z0-9_]+\|>|<[a-z][a-z0-9_]*>)+$")


# ---------------------------------------------------------------------------------------
# settings


def parse_servers(values: Any) -> Tuple[str, ...]:
    """The server base URLs of ``--server`` (repeatable, each may be comma-separated), normalised.

    ``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` name the same
    server; the requests add ``/v1/...``. Raises :class:`ParameterError` (``server``) for
    anything that is not an http(s) URL with a host, or for none at all.
    """
    if isinstance(values, str):
        values = [values]
    urls: List[str] = []
    for value in values or []:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            parsed = urllib.parse.urlsplit(part)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ParameterError("server", f"must be an http:// or https:// URL such as http://127.0.0.1:8000, "
                                               f"got {part!r}")
            path = parsed.path.rstrip("/")
            if path.endswith("/v1"):
                path = path[:-3]
            url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ParameterError("server", "is empty; give the URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    return tuple(urls)


def resolve_format_regex(value: Optional[str]) -> Optional[str]:
    """``--format_regex``: ``None`` (off, the published recipe), a preset name of
    :data:`auditoryhum.defaults.FORMAT_REGEX_PRESETS` (``word_pairs``), or a regular expression
    (checked with Python's ``re``; the server's engine reads it, so keep to the common syntax)."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    if value in FORMAT_REGEX_PRESETS:
        return FORMAT_REGEX_PRESETS[value]
    try:
        re.compile(value)
    except re.error as exc:
        raise ParameterError("format_regex", f"is neither a preset ({', '.join(FORMAT_REGEX_PRESETS)}) nor a valid "
                                             f"regular expression ({exc})") from None
    return value


def resolve_api_key(environ: Mapping[str, str] = os.environ) -> Tuple[Optional[str], Optional[str]]:
    """The server's API key and the variable it came from, or ``(None, None)`` (vLLM without ``--api-key``)."""
    for name in SERVER_API_KEY_ENV_VARS:
        value = environ.get(name, "").strip()
        if value:
            return value, name
    return None, None


@dataclass(frozen=True)
class ServerSettings:
    """Everything a server run needs besides the clips or prompts.

    Parameters
    ----------
    urls : tuple of str
        Base URLs of the servers (:func:`parse_servers`); requests are spread over them.
    model : str
        The served model's name (vLLM: ``--served-model-name``, else the ``--model`` it was started with).
    api_key : str, optional
        Bearer token; never shown (:func:`scrub`).
    concurrency : int
        Requests in flight over all servers.
    timeout_s, check_timeout_s : float
        Limit of one request; of the check before the run.
    max_retries, retry_base_delay_s
        Retries of a retryable failure and the first back-off (doubling, with jitter).
    max_consecutive_failures : int
        Stop after this many items failed in a row (0: never).
    format_regex : str, optional
        Structured output: every answer matches this regular expression (vLLM's
        ``structured_outputs``); ``None`` leaves decoding free, as the published recipe.
    """

    urls: Tuple[str, ...]
    model: str
    api_key: Optional[str] = field(default=None, repr=False)
    concurrency: int = SERVER_CONCURRENCY
    timeout_s: float = SERVER_TIMEOUT_S
    check_timeout_s: float = SERVER_CHECK_TIMEOUT_S
    max_retries: int = SERVER_MAX_RETRIES
    retry_base_delay_s: float = SERVER_RETRY_BASE_DELAY_S
    max_consecutive_failures: int = SERVER_MAX_CONSECUTIVE_FAILURES
    format_regex: Optional[str] = None


def server_settings(server: Any, model: str, *, concurrency: Optional[int] = None, format_regex: Optional[str] = None,
                    model_param: str = "model", **extra) -> ServerSettings:
    """Checked :class:`ServerSettings` from the stage's parameters; the key from the environment."""
    from auditoryhum.validation import positive_int

    if not isinstance(model, str) or not model.strip():
        raise ParameterError(model_param, "is empty; give the name the server serves the model under "
                                          "(GET /v1/models lists them)")
    api_key, _ = resolve_api_key()
    return ServerSettings(urls=parse_servers(server), model=model.strip(), api_key=api_key,
                          concurrency=positive_int(SERVER_CONCURRENCY if concurrency is None else concurrency, "concurrency"),
                          format_regex=resolve_format_regex(format_regex), **extra)


def scrub(text: str, secret: Optional[str]) -> str:
    """``text`` with ``secret`` (and its URL-encoded form) replaced by ``***``."""
    from auditoryhum.models.gemini import scrub as _scrub  # one definition of the rule

    return _scrub(text, secret)


def one_line(text: Any, limit: int = _MESSAGE_LIMIT) -> str:
    """Whitespace collapsed, cut to ``limit`` characters (a server's multi-line or HTML answer)."""
    from auditoryhum.models.gemini import one_line as _one_line  # one definition of the rule

    return _one_line(str(text), limit)


# ---------------------------------------------------------------------------------------
# the client


class ServerFailed(Exception):
    """A classified failure: ``kind`` is :data:`RETRY`, :data:`CLIP` or :data:`RUN`; ``status`` the HTTP status (0: none)."""

    def __init__(self, kind: str, message: str, status: int = 0, delay_s: Optional[float] = None):
        super().__init__(message)
        self.kind, self.message, self.status, self.delay_s = kind, message, status, delay_s


class _Stopped(Exception):
    """The run is stopping: abandon this request."""


def _error_text(body: bytes) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}`` or vLLM's
    ``{"object": "error", "message": ...}``), else the body itself."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return one_line(body.decode("utf-8", "replace")) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and error.get("message"):
            return one_line(error["message"])
        if isinstance(error, str):
            return one_line(error)
    return one_line(data)


class ServerClient:
    """Requests to one or more OpenAI-compatible servers, shared by a run's threads.

    Each thread keeps one persistent connection per server (``http.client`` connections are not
    thread-safe); each request goes to the server with the fewest requests in flight, ties in
    turn. :meth:`post` retries what may succeed later.
    """

    def __init__(self, settings: ServerSettings, stop: Optional[threading.Event] = None):
        self.settings = settings
        self.stop = stop or threading.Event()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._in_flight = {url: 0 for url in settings.urls}
        self._turn = 0
        self._rng = random.Random(SEED)
        self.served: Dict[str, Dict[str, Any]] = {}  # url -> the /v1/models entry of the model
        self._no_detokenize = False

    # -- HTTP --------------------------------------------------------------------------------

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    def _connection(self, url: str, timeout: float) -> http.client.HTTPConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(url)
        if conn is None:
            parsed = urllib.parse.urlsplit(url)
            kind = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
            conn = pool[url] = kind(parsed.hostname, parsed.port, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self, url: str) -> None:
        conn = getattr(self._local, "pool", {}).pop(url, None)
        if conn is not None:
            conn.close()

    def request(self, url: str, method: str, path: str, payload: Any = None, timeout: Optional[float] = None) -> Tuple[int, bytes, Dict[str, str]]:
        """One HTTP exchange with ``url``: ``(status, body, headers)``; network errors raise :class:`ServerFailed` (:data:`RETRY`)."""
        timeout = self.settings.timeout_s if timeout is None else timeout
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        full_path = urllib.parse.urlsplit(url).path + path
        for attempt in (0, 1):
            conn = self._connection(url, timeout)
            try:
                conn.request(method, full_path, body=body, headers=self._headers())
                response = conn.getresponse()
                data = response.read()
                headers = {k.lower(): v for k, v in response.getheaders()}
                if headers.get("connection", "").lower() == "close":
                    self._drop(url)
                return response.status, data, headers
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A kept-alive connection the server closed meanwhile: once more on a fresh one.
                self._drop(url)
                if attempt == 0:
                    continue
                raise ServerFailed(RETRY, f"{url}: the connection was dropped ({type(exc).__name__})") from None
            except socket.timeout:
                self._drop(url)
                raise ServerFailed(RETRY, f"{url}: no answer within {timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(url)
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
                raise ServerFailed(RETRY, f"{url}: cannot connect ({one_line(why)})") from None
        raise AssertionError("unreachable")

    def _pick(self) -> str:
        with self._lock:
            urls = self.settings.urls
            least = min(self._in_flight[u] for u in urls)
            candidates = [u for u in urls if self._in_flight[u] == least]
            url = candidates[self._turn % len(candidates)]
            self._turn += 1
            self._in_flight[url] += 1
            return url

    def _release(self, url: str) -> None:
        with self._lock:
            self._in_flight[url] -= 1

    def _classify(self, url: str, status: int, body: bytes, headers: Dict[str, str]) -> ServerFailed:
        text = _error_text(body)
        what = f"{url}: HTTP {status}: {text}"
        if status in AUTH_STATUS:
            return ServerFailed(RUN, f"{url} refused the API key (HTTP {status}: {text}); set "
                                     f"{' or '.join(SERVER_API_KEY_ENV_VARS)} to the server's --api-key", status)
        if status == 404 and "model" in text.lower():
            return ServerFailed(RUN, f"{what}; check the model name (GET {url}/v1/models lists the served ones)", status)
        if status in RETRYABLE_STATUS:
            delay = None
            try:
                delay = max(0.0, float(headers.get("retry-after", "")))
            except ValueError:
                pass
            return ServerFailed(RETRY, what, status, delay)
        return ServerFailed(CLIP, what, status)

    def post(self, path: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        """POST ``payload`` (JSON) to the least busy server, retrying retryable failures with
        back-off; the answer's JSON. Raises :class:`ServerFailed` (key scrubbed) or :class:`_Stopped`."""
        from auditoryhum.defaults import GEMINI_SERVER_RETRY_DELAY_CAP_S
        from auditoryhum.models.gemini import backoff_delay

        secret = self.settings.api_key
        retry = 0
        while True:
            if self.stop.is_set():
                raise _Stopped()
            url = self._pick()
            try:
                status, body, headers = self.request(url, "POST", path, payload)
                if status == 200:
                    try:
                        return json.loads(body.decode("utf-8"))
                    except ValueError:
                        raise ServerFailed(RETRY, f"{url}: the answer is not JSON ({one_line(body[:200])})") from None
                raise self._classify(url, status, body, headers)
            except ServerFailed as exc:
                failure = exc
            finally:
                self._release(url)
            failure.message = scrub(failure.message, secret)
            if failure.kind != RETRY:
                raise failure
            if retry >= self.settings.max_retries:
                tries = f"{retry + 1} tries" if retry else "1 try"
                raise ServerFailed(CLIP, f"failed after {tries}: {failure.message}", failure.status)
            with self._lock:
                delay = backoff_delay(retry, self.settings.retry_base_delay_s, self._rng,
                                      None if failure.delay_s is None else min(failure.delay_s, GEMINI_SERVER_RETRY_DELAY_CAP_S))
            if self.stop.wait(delay):
                raise _Stopped()
            retry += 1

    def chat(self, messages: List[Dict[str, Any]], max_tokens: int, extra: Optional[Dict[str, Any]] = None) -> str:
        """The text of one greedy chat completion (``""`` when the model answered nothing), as
        transformers decodes the same tokens (:meth:`_lost_tail`)."""
        body = dict(extra or {}, return_token_ids=True)
        answer = self.post("/v1/chat/completions", chat_request(self.settings, messages, max_tokens, body))
        try:
            choice = answer["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ServerFailed(CLIP, f"the answer has no choices[0].message ({one_line(json.dumps(answer)[:200])})") from None
        ids = choice.get("token_ids")
        return content + self._lost_tail(ids, content) if ids else content

    def _lost_tail(self, ids: List[int], content: str) -> str:
        """What vLLM's text leaves out at the end: the replacement characters of an answer that
        ends inside a UTF-8 sequence (a byte-level BPE model cut at max_tokens can end with the
        first byte of a character). vLLM's incremental detokenizer holds such bytes back until
        the character completes and drops them at the end; transformers' ``batch_decode`` (the
        local route) turns them into U+FFFD. The token ids (``return_token_ids``) decoded by the
        server's ``/detokenize`` (the same tokenizer, no model work) say how many there are.
        A server without ``/detokenize`` (not vLLM) gets nothing added."""
        if self._no_detokenize:
            return ""
        try:
            decoded = self.post("/detokenize", {"model": self.settings.model, "tokens": ids}).get("prompt", "")
        except ServerFailed as exc:
            if exc.status in (404, 405):
                self._no_detokenize = True
                return ""
            raise
        # /detokenize keeps special tokens (the end token, a stray audio placeholder), which the
        # answer's text skips, as transformers does: drop those at the end before counting.
        decoded = _TRAILING_SPECIALS.sub("", decoded)
        lost = len(decoded) - len(decoded.rstrip("\ufffd"))
        have = len(content) - len(content.rstrip("\ufffd"))
        return "\ufffd" * max(0, lost - have)

    # -- the check before any work ------------------------------------------------------------

    def check(self, probe: Optional[List[Dict[str, Any]]] = None, probe_extra: Optional[Dict[str, Any]] = None,
              what: str = "audio input") -> None:
        """Stop in one line unless every server answers, serves the model, and (``probe``: the
        messages of one small request) accepts such a request, e.g. audio input and the
        structured output. Within :attr:`ServerSettings.check_timeout_s` per server."""
        settings = self.settings
        secret = settings.api_key
        for url in settings.urls:
            try:
                status, body, headers = self.request(url, "GET", "/v1/models", timeout=settings.check_timeout_s)
            except ServerFailed as exc:
                raise ParameterError("server", f"{scrub(exc.message, secret)}; start the server (docs/vllm.md: python -m "
                                               f"vllm.entrypoints.openai.api_server --model ...) or correct the URL") from None
            if status != 200:
                failure = self._classify(url, status, body, headers)
                if status == 404:
                    raise ParameterError("server", f"{url} has no /v1/models (HTTP 404): not an OpenAI-compatible server, "
                                                   f"or the URL has a wrong path")
                raise UserError(scrub(failure.message, secret)) if failure.kind == RUN else \
                    ParameterError("server", f"{scrub(failure.message, secret)}; is the server up and OpenAI-compatible?")
            try:
                listed = json.loads(body.decode("utf-8"))["data"]
                ids = [str(m["id"]) for m in listed]
            except (ValueError, KeyError, TypeError):
                raise ParameterError("server", f"{url}/v1/models answered {one_line(body[:120])!r}, not an OpenAI model "
                                               f"list; is it an OpenAI-compatible server?") from None
            if settings.model not in ids:
                shown = ", ".join(repr(i) for i in ids[:5]) or "none"
                raise ParameterError("model", f"{settings.model!r} is not served by {url} (it serves {shown}); give "
                                              f"that name (vLLM: --served-model-name, else its --model)")
            self.served[url] = next(m for m in listed if str(m["id"]) == settings.model)
        if probe is None:
            return
        for url in settings.urls:
            payload = chat_request(settings, probe, 1, probe_extra)
            try:
                status, body, headers = self.request(url, "POST", "/v1/chat/completions", payload,
                                                     timeout=max(settings.check_timeout_s, 60.0))
            except ServerFailed as exc:
                raise ParameterError("server", f"{scrub(exc.message, secret)} (the probe request)") from None
            if status == 200:
                continue
            failure = self._classify(url, status, body, headers)
            if failure.kind == RUN:
                raise UserError(scrub(failure.message, secret))
            text = scrub(_error_text(body), secret)
            hint = ""
            if settings.format_regex and any(w in text.lower() for w in ("structured", "regex", "guided", "grammar")):
                hint = "; the server does not take --format_regex (leave it out, or use a vLLM with structured outputs)"
            elif "audio" in text.lower() or "multimodal" in text.lower() or "multi-modal" in text.lower():
                hint = (f"; serve an audio model with audio input allowed (vLLM: --limit-mm-per-prompt "
                        f"'{{\"audio\": 1}}')")
            raise ParameterError("model", f"{settings.model!r} on {url} does not take {what} (HTTP {status}: {text}){hint}")

    def close(self) -> None:
        pool = getattr(self._local, "pool", {})
        for url in list(pool):
            self._drop(url)


def chat_request(settings: ServerSettings, messages: List[Dict[str, Any]], max_tokens: int,
                 extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The body of one chat-completions request: greedy (``temperature`` 0), ``max_tokens``,
    the recipe's seed, and the structured output when ``settings.format_regex`` is set."""
    body: Dict[str, Any] = {"model": settings.model, "messages": messages, "temperature": 0.0,
                            "max_tokens": max_tokens, "seed": SEED, "stream": False}
    if settings.format_regex:
        body["structured_outputs"] = {"regex": settings.format_regex}
    if extra:
        body.update(extra)
    return body


# ---------------------------------------------------------------------------------------
# labelling


def encode_wav(audio) -> bytes:
    """``audio`` (mono float32 at :data:`SAMPLING_RATE`) as WAV bytes the server decodes to the
    same samples: 16-bit PCM when every sample is a 16-bit value (a 16-bit source: half the
    bytes), else 32-bit float."""
    import numpy as np
    import soundfile as sf

    scaled = audio.astype(np.float64) * 32768.0
    lossless = bool(np.all(scaled == np.round(scaled))) and (audio.size == 0 or
                                                            (scaled.min() >= -32768 and scaled.max() <= 32767))
    buffer = io.BytesIO()
    if lossless:
        sf.write(buffer, scaled.astype(np.int16), SAMPLING_RATE, format="WAV", subtype="PCM_16")
    else:
        sf.write(buffer, audio.astype(np.float32), SAMPLING_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


#: The Whisper front end's FFT size and hop (Qwen2.5-Omni and Qwen3-Omni), at 16 kHz.
_WHISPER_N_FFT, _WHISPER_HOP = 400, 160


def omni_processor_kwargs(n_samples: int) -> Dict[str, Any]:
    """``mm_processor_kwargs`` of a Qwen Omni request: the Whisper features padded only to the
    clip plus one FFT window, as :func:`auditoryhum.models.labeller.trimmed_pad_length` does
    for the transformers route (the same real frames; vLLM would pad to the checkpoint's 300 s)."""
    needed = -(-(n_samples + _WHISPER_N_FFT) // _WHISPER_HOP) * _WHISPER_HOP
    return {"audio_kwargs": {"max_length": needed, "padding": "max_length"}}


def label_messages(system_prompt: str, prompt: str, wav: bytes) -> List[Dict[str, Any]]:
    """The chat messages of one clip: the family's conversation
    (:func:`auditoryhum.models.families.system_then_audio_and_text`) in the OpenAI format, the
    audio item as a base64 WAV ``input_audio`` part. An empty system prompt sends no system turn."""
    from auditoryhum.models.families import system_then_audio_and_text

    messages = []
    for message in system_then_audio_and_text(system_prompt, prompt, "clip"):
        content = []
        for part in message["content"]:
            if part["type"] == "audio":
                content.append({"type": "input_audio",
                                "input_audio": {"data": base64.b64encode(wav).decode("ascii"), "format": "wav"}})
            else:
                content.append({"type": "text", "text": part["text"]})
        if message["role"] == "system":  # a plain string: every chat template reads that
            content = "".join(p["text"] for p in content)
        messages.append({"role": message["role"], "content": content})
    return messages


def label_journal_key(family_key: str, settings: ServerSettings, served: Dict[str, Any], system_prompt: str,
                      task: str) -> Dict[str, Any]:
    """What makes two server runs' labels comparable: the family, the served model (its name and
    the weights the server names, ``root``), prompts, decoding and format; never the key or the
    URLs (which only route the same model)."""
    return {"tool": "label", "route": "server", "family": family_key, "model": settings.model,
            "root": served.get("root"), "system_prompt": system_prompt, "task": task,
            "generation": {"temperature": 0.0, "max_tokens": LABEL_GENERATION_SETTINGS["max_new_tokens"], "seed": SEED},
            "format_regex": settings.format_regex}


@dataclass
class ServerLabelSpec(StepSpec):
    """Builds :class:`ServerLabelStep`: one client, shared by the run's threads."""

    family_key: str
    settings: ServerSettings
    system_prompt: str
    task: str = "labels"
    #: Send :func:`omni_processor_kwargs` with Qwen Omni clips (the server allows per-request kwargs).
    trim_features: bool = True

    def build(self) -> "ServerLabelStep":
        return ServerLabelStep(self)

    def describe(self) -> str:
        from auditoryhum.models.families import get_family

        return f"{get_family(self.family_key).title} labels (server)"


class ServerLabelStep(Step):
    """Label ``(path, prompt)`` payloads, one request each; the audio is decoded in :meth:`prepare`."""

    def __init__(self, spec: ServerLabelSpec):
        from auditoryhum.models.families import get_family
        from auditoryhum.models.labeller import POSTPROCESS

        self.spec = spec
        self.family = get_family(spec.family_key)
        self.postprocess = POSTPROCESS[spec.task]
        self.stop = threading.Event()
        self.client = ServerClient(spec.settings, self.stop)

    def prepare(self, payloads):
        from auditoryhum.io.audio import AudioDecodeError, load_audio

        prepared = []
        for path, prompt in payloads:
            try:
                audio, _ = load_audio(path, SAMPLING_RATE)
            except AudioDecodeError as exc:
                prepared.append((path, prompt, None, None, str(exc)))
                continue
            prepared.append(self.prepare_audio(path, prompt, audio))
        return prepared

    def prepare_audio(self, path: str, prompt: str, audio):
        """One decoded clip (mono float32 at :data:`SAMPLING_RATE`) as :meth:`run` takes it."""
        trim = self.family.reads_real_frames_only and self.spec.trim_features
        extra = omni_processor_kwargs(len(audio)) if trim else None
        return (path, prompt, encode_wav(audio), extra, None)

    def run(self, prepared):
        return [self._one(*p) for p in prepared]

    def _one(self, path, prompt, wav, extra, error):
        if error is not None:
            return None, error
        secret = self.spec.settings.api_key
        messages = label_messages(self.spec.system_prompt, prompt, wav)
        try:
            answer = self.client.chat(messages, LABEL_GENERATION_SETTINGS["max_new_tokens"],
                                      {"mm_processor_kwargs": extra} if extra else None)
        except _Stopped:
            return None, f"{path}: abandoned (the run is stopping)"
        except ServerFailed as exc:
            if exc.kind == RUN:
                raise UserError(f"stopped: {exc.message}") from None
            return None, scrub(f"{path}: {exc.message}", secret)
        return self.postprocess(answer), None

    def cancel(self) -> None:
        self.stop.set()

    def close(self) -> None:
        self.client.close()


def run_server_labelling(family_key: str, settings: ServerSettings, paths: Sequence[str], prompts: Sequence[str],
                         output: str, system_prompt: str, task: str = "labels"):
    """Label every clip through the server(s) and write one line per clip to ``output``.

    The same journal, output writing and failure handling as
    :func:`auditoryhum.models.labeller.run_labelling` (a failed clip: an empty line, kept in the
    journal for the rerun). Returns a :class:`auditoryhum.models.labeller.LabelReport`.
    """
    import numpy as np

    from auditoryhum.console import note
    from auditoryhum.io.artefacts import write_lines
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import LabelReport, _lines

    if len(prompts) != len(paths):
        raise ValueError("run_server_labelling needs one prompt per clip")
    family = get_family(family_key)
    client = ServerClient(settings)
    # One small request with the family's messages, a second of silence and the format: a server
    # without audio input (or structured outputs) says so now, not once per clip.
    probe = label_messages(system_prompt, prompts[0] if prompts else "", silence := encode_wav(
        np.zeros(SAMPLING_RATE, dtype=np.float32)))
    trim = family.reads_real_frames_only
    if trim:
        try:
            client.check(probe, {"mm_processor_kwargs": omni_processor_kwargs(SAMPLING_RATE)})
        except UserError as exc:
            # vLLM refuses per-request processor kwargs unless started with
            # --trust-request-mm-kwargs: then every clip is padded to the checkpoint's window
            # on the server. The same features and labels, only slower: say so and go on.
            if "mm_processor_kwargs" not in str(exc) and "mm-kwargs" not in str(exc):
                raise
            trim = False
            from auditoryhum.console import warn

            warn(f"the server refuses per-request processor options, so it pads every {family.title} clip to the "
                 f"checkpoint's audio window (300 s for the published checkpoints: slow, same labels); start vLLM with "
                 f"--trust-request-mm-kwargs to let the client send only the clip's frames")
    if not trim:
        client.check(probe)
    del silence
    served = client.served[settings.urls[0]]
    client.close()
    if not system_prompt and family.key != "gemma3n":
        from auditoryhum.console import warn

        # The local route removes the default system turn a ChatML template writes when a
        # conversation has none (families.drop_default_system_turn); a server renders it.
        warn(f"with no system prompt, the {family.title} chat template on the server writes its default system turn "
             f"('You are a helpful assistant.'), which the local route leaves out: these labels can differ from "
             f"the local route's")
    _, key_from = resolve_api_key()
    servers = ", ".join(settings.urls)
    note(f"labelling {len(paths)} clips with {settings.model!r} on {servers} ({settings.concurrency} in flight"
         f"{', key from ' + key_from if key_from else ''}"
         f"{', answers constrained to ' + repr(settings.format_regex) if settings.format_regex else ''})")
    items = [Item(os.path.abspath(p), (p, q), path=p, extra_fp=digest(q)) for p, q in zip(paths, prompts)]
    spec = ServerLabelSpec(family_key, settings, system_prompt, task, trim_features=trim)
    result = run_resumable(output, label_journal_key(family_key, settings, served, system_prompt, task), items, spec,
                           executor=LocalExecutor(settings.concurrency), codec=TEXT, batch_size=1,
                           desc=f"{family.title} labels", write=lambda values, _: write_lines(output, _lines(values)),
                           max_consecutive_failures=settings.max_consecutive_failures)
    return LabelReport(labels=_lines(result.values), failures=[scrub(m, settings.api_key) for m in result.failure_list()],
                       reused=result.reused)


# ---------------------------------------------------------------------------------------
# composite naming (text only)


class ServerChatBackend:
    """Composite labels from a chat model on the server(s): one text request per cluster,
    greedy, the namer's token budget; the :func:`auditoryhum.models.chat.run_composite_labelling`
    backend interface (``system``, ``batch_size``, ``journal_key``, ``describe``, ``step_spec``)."""

    name = "server"

    def __init__(self, settings: ServerSettings, instruction: str, max_new_tokens: int):
        from auditoryhum.models.chat import system_message_for

        if max_new_tokens < 1:
            raise ParameterError("max_new_tokens", f"must be at least 1, got {max_new_tokens}")
        self.settings, self.max_new_tokens = settings, max_new_tokens
        client = ServerClient(settings)
        client.check()
        self.served = client.served[settings.urls[0]]
        client.close()
        self.family_key = served_family(self.served)
        self.system = system_message_for(self.family_key, instruction)

    @property
    def batch_size(self) -> int:
        return 1

    @property
    def max_consecutive_failures(self) -> int:
        return self.settings.max_consecutive_failures

    def generation(self) -> Dict[str, Any]:
        return {"temperature": 0.0, "max_tokens": self.max_new_tokens, "seed": SEED}

    def journal_key(self) -> Dict[str, Any]:
        return {"tool": "composite", "backend": self.name, "model": self.settings.model, "root": self.served.get("root"),
                "system": self.system, "generation": self.generation()}

    def describe(self) -> Dict[str, Any]:
        return {"backend": self.name, "model": self.settings.model, "generation": self.generation(), "seed": SEED}

    def step_spec(self) -> "ServerChatSpec":
        return ServerChatSpec(self.settings, self.system, self.max_new_tokens)

    def executor(self):
        return LocalExecutor(self.settings.concurrency)


def served_family(served: Dict[str, Any]) -> Optional[str]:
    """The audio-LLM family of the served model when the server names its weights by a folder
    this machine can read (vLLM's ``root``: a server on this machine or a shared disk), else
    ``None``: the namer's prompt style and system message follow the family as in the local
    route (:func:`auditoryhum.models.chat.family_of_model_type`); an unknown model is named as
    a plain chat model."""
    root = served.get("root")
    if not isinstance(root, str) or not os.path.isfile(os.path.join(root, "config.json")):
        return None
    from auditoryhum.models.chat import family_of_model_type

    try:
        with open(os.path.join(root, "config.json"), encoding="utf-8") as f:
            model_type = json.load(f).get("model_type", "")
    except (OSError, ValueError):
        return None
    family = family_of_model_type(model_type)
    return family.key if family is not None else None


def chat_messages(system: str, prompt: str) -> List[Dict[str, Any]]:
    """A text conversation: the system turn (none when empty), then the prompt."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


@dataclass
class ServerChatSpec(StepSpec):
    settings: ServerSettings
    system: str
    max_new_tokens: int

    def build(self) -> "ServerChatStep":
        return ServerChatStep(self)


class ServerChatStep(Step):
    """One text request per prompt; a refused key or an unknown model stops the run."""

    def __init__(self, spec: ServerChatSpec):
        self.spec = spec
        self.stop = threading.Event()
        self.client = ServerClient(spec.settings, self.stop)

    def run(self, prompts):
        out = []
        for prompt in prompts:
            try:
                # Templates that know a thinking switch (Qwen3) answer without thinking, as the
                # transformers route renders them (auditoryhum.models.chat.render_chat).
                out.append((self.client.chat(chat_messages(self.spec.system, prompt), self.spec.max_new_tokens,
                                             {"chat_template_kwargs": {"enable_thinking": False}}), None))
            except _Stopped:
                out.append((None, "abandoned (the run is stopping)"))
            except ServerFailed as exc:
                if exc.kind == RUN:
                    raise UserError(f"stopped: {exc.message}") from None
                out.append((None, exc.message))
        return out

    def cancel(self) -> None:
        self.stop.set()

    def close(self) -> None:
        self.client.close()
