"""The Gemini cloud labeller: the published recipe through the ``google-genai`` SDK, made safe
to leave running unattended.

Each clip is sent with the user prompt (the published prompt plus the clip's human hint, see
:func:`auditoryhum.models.labeller.user_prompt`) as ``[prompt, audio]`` to ``generate_content``
with :data:`GENERATION_CONFIG`; the response goes through the same post-processing as the
local labellers (:func:`auditoryhum.models.labeller.label_line`).

Beyond the reference script (which retries every failure forever, re-uploading each time):

* **Errors are classified** (:func:`classify`). Retryable ones (HTTP 408, 429, 500, 502, 503,
  504, connection errors, timeouts, a malformed answer) are retried with bounded exponential
  back-off and jitter, honouring a delay the server asks for (``RetryInfo.retryDelay`` or
  ``Retry-After``). Other HTTP errors (400, 404, 413, ...) fail the clip at once. An
  authentication or permission error, and a model the service does not know, stop the whole
  run at once, since every later clip would fail the same way.
* **Uploads.** A clip of at most :data:`INLINE_MAX_BYTES` goes inline in the request; a larger
  one is uploaded once through the Files API, reused by every retry of its request, and
  deleted afterwards.
* **The SDK's own retries are off** (``HttpOptions(retry_options=None)``): the policy here is
  the only one. (The SDK's chunk loop of a resumable upload still repeats a chunk up to three
  times when an answer lacks the ``x-goog-upload-status`` header, which the upload service
  always sends; that loop cannot be switched off.)
* **The API key** is read from ``--api_key``, ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` and never
  printed or written: every message made from an exception has it replaced by ``***``.
* **Resume** exactly like the local labellers, through the same run engine
  (:func:`auditoryhum.engine.run_resumable`): a journal beside the output records every
  finished clip, a rerun skips them, and the label file is written atomically at the end,
  byte-identical to an uninterrupted run's.
* **Concurrency.** ``concurrency`` threads share one client and keep that many clips in flight
  (:class:`auditoryhum.engine.LocalExecutor`); results are journalled as they finish and
  written in sorted-path order.

Only this module imports ``google.genai``, and only inside functions.
"""

import mimetypes
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from auditoryhum.console import warn
from auditoryhum.engine import Item, LocalExecutor, Step, StepSpec, TEXT, digest, run_resumable
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import write_lines
from auditoryhum.models.labeller import POSTPROCESS, LabelReport

# Decoding of the published recipe (docs/spec.md: label_google_gen_ai_cloud.py).
from auditoryhum.recipe import GEMINI_GENERATION_CONFIG as GENERATION_CONFIG

# The client's own settings, one definition each in auditoryhum.defaults (the CLI's ``--help``
# reads them there without importing this module). Inline data: the request must stay under
# 20 MB and inline bytes travel base64-encoded, so larger clips go through the Files API.
# A file left behind after the delete tries expires on its own after 48 h.
from auditoryhum.defaults import (  # noqa: F401 (the module's names, as callers and tests use them)
    GEMINI_CONCURRENCY as DEFAULT_CONCURRENCY,
    GEMINI_DELETE_ATTEMPTS as DELETE_ATTEMPTS,
    GEMINI_DELETE_MAX_WAIT_S as DELETE_MAX_WAIT_S,
    GEMINI_FILE_PROCESSING_TIMEOUT_S as FILE_PROCESSING_TIMEOUT_S,
    GEMINI_INLINE_MAX_BYTES as INLINE_MAX_BYTES,
    GEMINI_MAX_CONSECUTIVE_FAILURES as DEFAULT_MAX_CONSECUTIVE_FAILURES,
    GEMINI_MAX_RETRIES as DEFAULT_MAX_RETRIES,
    GEMINI_RETRY_BASE_DELAY_S as DEFAULT_RETRY_BASE_DELAY_S,
    GEMINI_RETRY_MAX_DELAY_S as RETRY_MAX_DELAY_S,
    GEMINI_SERVER_RETRY_DELAY_CAP_S as SERVER_RETRY_DELAY_CAP_S,
    GEMINI_TIMEOUT_S as DEFAULT_TIMEOUT_S,
)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
# Google's documented precedence: GOOGLE_API_KEY wins when both are set (as the SDK does).
from auditoryhum.defaults import GEMINI_API_KEY_ENV_VARS as API_KEY_ENV_VARS, GEMINI_BASE_URL_ENV_VAR as BASE_URL_ENV_VAR  # noqa: E402

# The audio formats the Gemini API lists, by file extension (mimetypes' answers vary by
# platform, e.g. audio/x-wav).
AUDIO_MIME_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mp3",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".flac": "audio/flac",
}

_MESSAGE_LIMIT = 300  # characters of a server message quoted in one line


# ---------------------------------------------------------------------------------------
# settings, key and base URL


@dataclass(frozen=True)
class GeminiSettings:
    """Everything a Gemini labelling run needs besides the clips.

    Parameters
    ----------
    model : str
        The model id (``gemini-2.5-flash``).
    api_key : str
        The API key. Never printed: see :func:`scrub`.
    base_url : str, optional
        Endpoint instead of the SDK's default (a gateway, proxy, regional endpoint or a test
        server).
    timeout_s : float
        Limit of each HTTP request in seconds.
    max_retries : int
        Retries of one request after a retryable failure (so at most ``max_retries + 1`` tries).
    retry_base_delay_s : float
        First back-off delay; it doubles per retry up to :data:`RETRY_MAX_DELAY_S`.
    inline_max_bytes : int
        Clips up to this size go inline; larger ones are uploaded.
    concurrency : int
        Clips in flight at once.
    max_consecutive_failures : int
        Stop the run when this many clips in a row have failed (0: never).
    system_prompt : str
        System instruction of every clip's request (``""``: none, the published call).
    task : {"labels", "caption"}
        Post-processing of the answers (:data:`auditoryhum.models.labeller.POSTPROCESS`).
    """

    model: str
    api_key: str = field(repr=False)
    base_url: Optional[str] = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_delay_s: float = DEFAULT_RETRY_BASE_DELAY_S
    inline_max_bytes: int = INLINE_MAX_BYTES
    concurrency: int = DEFAULT_CONCURRENCY
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    system_prompt: str = ""
    task: str = "labels"

    def check(self) -> None:
        """Raise :class:`UserError` for a value no run can use."""
        if not self.model.strip():
            raise UserError("--genai_id is empty; give a Gemini model id, e.g. --genai_id gemini-2.5-flash")
        if not self.timeout_s > 0:
            raise UserError(f"--timeout must be a positive number of seconds, got {self.timeout_s:g}")
        if self.max_retries < 0:
            raise UserError(f"--max_retries must be 0 or more, got {self.max_retries}")
        if self.retry_base_delay_s < 0:
            raise UserError(f"--retry_base_delay must be 0 or more seconds, got {self.retry_base_delay_s:g}")
        if self.inline_max_bytes < 0:
            raise UserError(f"--inline_max_bytes must be 0 or more, got {self.inline_max_bytes}")
        if self.concurrency < 1:
            raise UserError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_consecutive_failures < 0:
            raise UserError(f"--max_consecutive_failures must be 0 (never stop) or more, got {self.max_consecutive_failures}")
        if self.base_url is not None and not re.match(r"^https?://[^/\s]+", self.base_url):
            raise UserError(f"--base_url must be an http:// or https:// URL, got {self.base_url!r}")


def resolve_api_key(flag_value: Optional[str], environ: Mapping[str, str] = os.environ) -> Tuple[str, str]:
    """The API key and where it came from (``"--api_key"`` or the variable's name).

    ``--api_key`` wins; then ``GOOGLE_API_KEY``, then ``GEMINI_API_KEY`` (the precedence Google
    documents and the SDK applies). Blank values count as unset. With none, one clear line
    says how to provide a key.
    """
    if flag_value is not None and flag_value.strip():
        return flag_value.strip(), "--api_key"
    for name in API_KEY_ENV_VARS:
        value = environ.get(name, "")
        if value.strip():
            return value.strip(), name
    raise UserError(
        "no Gemini API key: set the environment variable GEMINI_API_KEY (or GOOGLE_API_KEY), "
        "or pass --api_key (visible to other users in the process list); "
        "create a key at https://aistudio.google.com/apikey"
    )


def resolve_base_url(flag_value: Optional[str], environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """``--base_url``, else ``GOOGLE_GEMINI_BASE_URL``, else ``None`` (the SDK's default endpoint)."""
    for value in (flag_value, environ.get(BASE_URL_ENV_VAR)):
        if value is not None and value.strip():
            return value.strip()
    return None


def scrub(text: str, secret: Optional[str]) -> str:
    """``text`` with every occurrence of ``secret`` (and its URL-encoded form) replaced by ``***``."""
    if not secret:
        return text
    from urllib.parse import quote

    for form in {secret, quote(secret, safe="")}:
        text = text.replace(form, "***")
    return text


def one_line(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    """Collapse whitespace (a server's multi-line or HTML answer) and cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def audio_mime_type(path: str) -> Optional[str]:
    """The MIME type to declare for a clip, from its extension (``None``: unknown)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in AUDIO_MIME_TYPES:
        return AUDIO_MIME_TYPES[ext]
    guessed, _ = mimetypes.guess_type(path)
    return guessed if guessed and guessed.startswith("audio/") else None


# ---------------------------------------------------------------------------------------
# error classification and back-off

RETRY = "retry"  # may succeed later: back off and try again
CLIP = "clip"  # this clip cannot succeed: record it and go on
RUN = "run"  # no clip can succeed: stop the run


class CallFailed(Exception):
    """A classified failure: ``kind`` is :data:`RETRY`, :data:`CLIP` or :data:`RUN`.

    ``message`` is one line with the key scrubbed; ``server_delay_s`` is the delay the server
    asked for, if any.
    """

    def __init__(self, kind: str, message: str, server_delay_s: Optional[float] = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.server_delay_s = server_delay_s


class _Stopped(Exception):
    """The run is stopping (another clip hit a run-stopping error): abandon this clip."""


def _httpx_errors(name: str) -> Tuple[type, ...]:
    # The SDK talks through httpx or its fork httpx2, whichever is installed; the two share
    # no base classes: the class ``name`` of each one present.
    found = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        found.append(getattr(module, name))
    return tuple(found)


def _duration_seconds(text: Any) -> Optional[float]:
    # google.protobuf.Duration in JSON: "37s", "0.25s".
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)s\s*", str(text))
    return float(match.group(1)) if match else None


def server_retry_delay(exc: BaseException) -> Optional[float]:
    """The delay in seconds the server asked for: ``RetryInfo.retryDelay`` in the error body,
    else a numeric ``Retry-After`` header; ``None`` when it asked for none."""
    details = getattr(exc, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            seconds = _duration_seconds(item.get("retryDelay", ""))
            if seconds is not None:
                return seconds
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            value = headers.get("retry-after")
        except Exception:  # a response object of an unexpected kind
            value = None
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None  # an HTTP date: rare from Google; the back-off applies instead
    return None


def _error_reasons(exc: BaseException) -> List[str]:
    details = getattr(exc, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else None
    if not isinstance(error, dict):
        return []
    return [str(item.get("reason", "")) for item in error.get("details", []) or [] if isinstance(item, dict)]


def classify(exc: BaseException, model: str, secret: Optional[str] = None) -> CallFailed:
    """Sort an exception from the SDK into retry / fail the clip / stop the run.

    * HTTP 408, 429, 500, 502, 503, 504, timeouts, connection errors and a malformed answer:
      :data:`RETRY` (with the server's retry delay, if it gave one).
    * HTTP 401, 403, and a 400 whose reason is ``API_KEY_INVALID`` (how the Gemini API answers
      a wrong key): :data:`RUN`, with a message about the key.
    * HTTP 404 naming the model: :data:`RUN` (an unknown or unsupported ``--genai_id``).
    * Any other HTTP error (400, 404, 413, ...), an unreadable clip, anything unexpected:
      :data:`CLIP`.

    Every message is one line with ``secret`` replaced by ``***``.
    """
    from google.genai import errors as genai_errors

    def failed(kind: str, message: str, delay: Optional[float] = None) -> CallFailed:
        # Quoted texts are already cut; the limit here only guards the whole line.
        return CallFailed(kind, one_line(scrub(message, secret), 4 * _MESSAGE_LIMIT), delay)

    def quoted(text: Any) -> str:
        # Scrub before cutting, so that a cut cannot leave part of the key behind.
        return one_line(scrub(str(text), secret))

    if isinstance(exc, CallFailed):
        return exc
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        status = exc.status or ""
        server_message = quoted(exc.message or exc)
        what = f"HTTP {code}{' ' + status if status else ''}: {server_message}"
        reasons = _error_reasons(exc)
        if code in AUTH_STATUS or "API_KEY_INVALID" in reasons or (code == 400 and "api key" in server_message.lower()):
            if code == 403:
                hint = f"the key is not allowed to use the Gemini API or model {model}; check the key's project and permissions"
            else:
                hint = "check the API key (--api_key, GOOGLE_API_KEY or GEMINI_API_KEY)"
            return failed(RUN, f"the service refused the API key ({what}); {hint}")
        if code == 404 and f"models/{model}" in server_message:
            return failed(RUN, f"model {model!r} was not found ({what}); check --genai_id")
        if code in RETRYABLE_STATUS:
            return failed(RETRY, what, server_retry_delay(exc))
        return failed(CLIP, what)
    if isinstance(exc, _httpx_errors("TimeoutException")):
        return failed(RETRY, f"no answer within the timeout ({type(exc).__name__})")
    if isinstance(exc, _httpx_errors("TransportError")):
        return failed(RETRY, f"connection error ({type(exc).__name__}: {quoted(exc)})")
    if isinstance(exc, ValueError) and type(exc).__name__ == "JSONDecodeError":
        return failed(RETRY, f"malformed answer from the service (not JSON: {quoted(exc)})")
    if type(exc).__name__ == "ValidationError":  # pydantic: JSON of an unexpected shape
        return failed(RETRY, f"malformed answer from the service ({quoted(exc)})")
    if isinstance(exc, OSError):
        return failed(CLIP, f"cannot read the clip ({quoted(exc.strerror or exc)})")
    return failed(CLIP, f"unexpected {type(exc).__name__}: {quoted(exc)}")


def unreachable_reason(exc: BaseException) -> Optional[str]:
    """``"the host name does not resolve"`` or ``"the connection was refused"`` when ``exc`` (or
    an exception it was raised from) is a DNS failure or a refused connection; else None."""
    import socket

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(exc, ConnectionRefusedError):
            return "the connection was refused"
        exc = exc.__cause__ or exc.__context__
    return None


def backoff_delay(retry: int, base_s: float, rng: random.Random, server_delay_s: Optional[float] = None) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first).

    Without a server delay: ``min(RETRY_MAX_DELAY_S, base_s * 2**retry)`` with "equal jitter"
    (a uniform draw from its upper half), so concurrent workers do not retry in step. With
    one: the server's delay, capped at :data:`SERVER_RETRY_DELAY_CAP_S`, plus up to 10 % jitter.
    """
    if server_delay_s is not None:
        delay = min(max(server_delay_s, 0.0), SERVER_RETRY_DELAY_CAP_S)
        return delay * (1.0 + 0.1 * rng.random())
    delay = min(RETRY_MAX_DELAY_S, base_s * (2.0 ** retry))
    return delay * (0.5 + 0.5 * rng.random())


# ---------------------------------------------------------------------------------------
# one clip


class GeminiLabeller:
    """A configured client: :meth:`describe_clip` sends one clip and returns the model's text.

    Thread-safe: the workers of a run share one instance (one HTTP connection pool).
    """

    def __init__(self, settings: GeminiSettings, stop: Optional[threading.Event] = None, seed: Optional[int] = None):
        import logging

        from google import genai
        from google.genai import types

        # The SDK logs advice through the root handler, some of it wrong for us ("Both
        # GOOGLE_API_KEY and GEMINI_API_KEY are set. Using GOOGLE_API_KEY." even when --api_key
        # is used); what matters is reported here. Its errors still show.
        logging.getLogger("google_genai").setLevel(logging.ERROR)
        self.settings = settings
        self.stop = stop or threading.Event()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        # Whether the service ever answered this run (a result or an HTTP error): until it has, a
        # name that does not resolve or a refused connection is the configuration, not a blip.
        self._reached = False
        self._types = types
        http_options = types.HttpOptions(
            base_url=settings.base_url,
            timeout=max(1, int(round(settings.timeout_s * 1000))),  # milliseconds
            retry_options=None,  # the SDK retries nothing: the policy is ours alone
        )
        try:
            self.client = genai.Client(api_key=settings.api_key, vertexai=False, http_options=http_options)
        except Exception as exc:  # the SDK validates options eagerly
            raise UserError(f"cannot set up the Gemini client: {one_line(scrub(str(exc), settings.api_key))}") from None
        self.config = types.GenerateContentConfig(**GENERATION_CONFIG)
        self.clip_config = (types.GenerateContentConfig(**GENERATION_CONFIG, system_instruction=settings.system_prompt)
                            if settings.system_prompt else self.config)

    # -- the retry policy ------------------------------------------------------------------

    def call(self, what: str, operation: Callable[[], Any], max_retries: Optional[int] = None,
             honour_stop: bool = True) -> Any:
        """Run ``operation``, retrying retryable failures with back-off; raise :class:`CallFailed`.

        ``what`` names the operation in the message of a failure that is given up on. With
        ``honour_stop`` (the default) a stopping run abandons the operation (:class:`_Stopped`)
        before each try and during each wait; clean-up calls pass ``False``.
        """
        max_retries = self.settings.max_retries if max_retries is None else max_retries
        retry = 0
        while True:
            if honour_stop and self.stop.is_set():
                raise _Stopped()
            try:
                result = operation()
                self._reached = True
                return result
            except (KeyboardInterrupt, _Stopped):
                raise
            except Exception as exc:
                from google.genai import errors as genai_errors

                failure = classify(exc, self.settings.model, self.settings.api_key)
                if isinstance(exc, genai_errors.APIError):
                    self._reached = True
                why = None if self._reached or failure.kind != RETRY else unreachable_reason(exc)
                if why is not None:
                    # Back-off is for 429/5xx/timeouts: no retry reaches a host that does not exist.
                    where = self.settings.base_url or "the Gemini API"
                    raise CallFailed(RUN, f"{what}: cannot reach {where}: {why} ({failure.message}); check "
                                          f"--base_url (or GOOGLE_GEMINI_BASE_URL) and the network")
            if failure.kind != RETRY:
                raise CallFailed(failure.kind, f"{what}: {failure.message}")
            if retry >= max_retries:
                tries = f"{retry + 1} tries" if retry else "1 try"
                raise CallFailed(CLIP, f"{what} failed after {tries}: {failure.message}")
            with self._rng_lock:
                delay = backoff_delay(retry, self.settings.retry_base_delay_s, self._rng, failure.server_delay_s)
            if honour_stop:
                if self.stop.wait(delay):
                    raise _Stopped()
            else:
                time.sleep(min(delay, DELETE_MAX_WAIT_S))
            retry += 1

    # -- one clip --------------------------------------------------------------------------

    def describe_clip(self, path: str, prompt: str) -> str:
        """The model's raw answer for the clip at ``path`` with the user prompt ``prompt``.

        Inline when the file has at most ``inline_max_bytes`` bytes, else uploaded once (every
        retry of the request reuses the upload) and deleted afterwards.
        Raises :class:`CallFailed`.
        """
        types = self._types
        mime_type = audio_mime_type(path)
        if mime_type is None:
            raise CallFailed(CLIP, f"unknown audio type {os.path.splitext(path)[1] or '(no extension)'!r}; "
                                   f"the Gemini API takes {', '.join(sorted(set(AUDIO_MIME_TYPES.values())))}")
        try:
            size = os.path.getsize(path)
            if size <= self.settings.inline_max_bytes:
                with open(path, "rb") as f:
                    data = f.read()
        except OSError as exc:
            raise CallFailed(CLIP, f"cannot read the clip ({exc.strerror or exc})") from None
        if size <= self.settings.inline_max_bytes:
            return self._generate(prompt, types.Part.from_bytes(data=data, mime_type=mime_type))

        uploaded = self.call("upload", lambda: self.client.files.upload(
            file=path, config=types.UploadFileConfig(mime_type=mime_type, display_name=os.path.basename(path))))
        try:
            uploaded = self._wait_until_active(uploaded)
            part = types.Part.from_uri(file_uri=uploaded.uri, mime_type=uploaded.mime_type or mime_type)
            return self._generate(prompt, part)
        finally:
            self._delete(uploaded.name)

    def _generate(self, prompt: str, audio_part) -> str:
        response = self.call("generate_content", lambda: self.client.models.generate_content(
            model=self.settings.model, contents=[prompt, audio_part], config=self.clip_config))
        text = response.text
        if not text or not text.strip():
            raise CallFailed(CLIP, f"the model answered no text ({_why_empty(response)})")
        return text

    def describe_text(self, prompt: str, system: Optional[str] = None) -> str:
        """The model's raw answer to a text-only ``prompt`` (no audio), with ``system`` as the
        system instruction; the same decoding (:data:`GENERATION_CONFIG`), retry policy and
        error classes as :meth:`describe_clip`. Raises :class:`CallFailed`."""
        config = self.config
        if system:
            config = self._types.GenerateContentConfig(**GENERATION_CONFIG, system_instruction=system)
        response = self.call("generate_content", lambda: self.client.models.generate_content(
            model=self.settings.model, contents=[prompt], config=config))
        text = response.text
        if not text or not text.strip():
            raise CallFailed(CLIP, f"the model answered no text ({_why_empty(response)})")
        return text

    def _wait_until_active(self, uploaded):
        """Poll an uploaded file until the service has processed it (audio usually is at once)."""
        deadline = time.monotonic() + FILE_PROCESSING_TIMEOUT_S
        poll = 0
        while _state_name(uploaded) == "PROCESSING":
            if time.monotonic() > deadline:
                raise CallFailed(CLIP, f"the uploaded file stayed PROCESSING for {FILE_PROCESSING_TIMEOUT_S:g} s")
            with self._rng_lock:
                delay = backoff_delay(poll, self.settings.retry_base_delay_s, self._rng)
            if self.stop.wait(min(delay, 10.0)):
                raise _Stopped()
            poll += 1
            name = uploaded.name
            uploaded = self.call("checking the uploaded file", lambda: self.client.files.get(name=name))
        if _state_name(uploaded) == "FAILED":
            reason = getattr(getattr(uploaded, "error", None), "message", None) or "no reason given"
            raise CallFailed(CLIP, f"the service could not process the uploaded file ({one_line(scrub(reason, self.settings.api_key))})")
        return uploaded

    def _delete(self, name: Optional[str]) -> None:
        if not name:
            return
        try:
            # Tried even while the run stops: a file left behind counts against the storage quota.
            self.call(f"deleting {name}", lambda: self.client.files.delete(name=name),
                      max_retries=DELETE_ATTEMPTS - 1, honour_stop=False)
        except CallFailed as exc:
            warn(f"could not delete uploaded file {name} ({exc.message}); the service deletes it after 48 hours")


def _state_name(uploaded) -> str:
    state = getattr(uploaded, "state", None)
    return str(getattr(state, "value", state) or "")


def _why_empty(response) -> str:
    feedback = getattr(response, "prompt_feedback", None)
    block = getattr(feedback, "block_reason", None)
    if block:
        return f"prompt blocked: {getattr(block, 'value', block)}"
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        return "no candidates"
    reason = getattr(candidates[0], "finish_reason", None)
    return f"finish reason {getattr(reason, 'value', reason)}" if reason else "empty candidate"


# ---------------------------------------------------------------------------------------
# the run: clips -> workers -> journal -> label file


def journal_key(settings: GeminiSettings) -> Dict[str, Any]:
    """What makes two runs' labels comparable: the model and the decoding (never the key, and
    not the endpoint, which only routes the same model)."""
    return {"tool": "label-gemini", "model": settings.model, "generation": GENERATION_CONFIG, "contents": "prompt,audio",
            "system": settings.system_prompt, "task": settings.task}


@dataclass
class GeminiSpec(StepSpec):
    """Builds the Gemini step: one client per worker (its threads share it)."""

    settings: GeminiSettings

    def build(self) -> "GeminiStep":
        return GeminiStep(self.settings)


class GeminiStep(Step):
    """Label ``(path, prompt)`` payloads one request each; see the module docstring for the policy.

    A run-stopping failure (authentication, unknown model) raises :class:`UserError`; any
    other failure is that clip's error message (key scrubbed).
    """

    def __init__(self, settings: GeminiSettings):
        self.settings = settings
        self.stop = threading.Event()
        self.labeller = GeminiLabeller(settings, self.stop)

    def run(self, payloads):
        return [self._one(path, prompt) for path, prompt in payloads]

    def _one(self, path: str, prompt: str):
        secret = self.settings.api_key
        try:
            return POSTPROCESS[self.settings.task](self.labeller.describe_clip(path, prompt)), None
        except _Stopped:
            return None, f"{path}: abandoned (the run is stopping)"
        except CallFailed as exc:
            if exc.kind == RUN:
                raise UserError(f"stopped: {exc.message}") from None
            return None, scrub(f"{path}: {exc.message}", secret)
        except Exception as exc:  # a bug must not cost the other clips; reported per clip
            message = one_line(scrub(f"{type(exc).__name__}: {exc}", secret))
            return None, scrub(f"{path}: unexpected error ({message})", secret)

    def cancel(self) -> None:
        self.stop.set()


def run_gemini_labelling(paths: Sequence[str], prompts: Sequence[str], output: str, settings: GeminiSettings) -> LabelReport:
    """Label every clip of ``paths`` with a Gemini model and write one line per clip to ``output``.

    Parameters
    ----------
    paths : sequence of str
        The clips, in sorted-path order (the order of the output lines).
    prompts : sequence of str
        One user prompt per clip (:func:`auditoryhum.models.labeller.user_prompt`).
    output : str
        The label file, written atomically at the end; its journal lives beside it.
    settings : GeminiSettings

    Returns
    -------
    LabelReport
        The lines written (a failed clip has an empty line) and one message per failed clip.

    Raises
    ------
    UserError
        When the run stops early: an authentication or permission error, an unknown model, or
        ``max_consecutive_failures`` clips failing in a row. Finished clips stay in the journal
        and a rerun resumes after them; the label file is not written.
    """
    if len(prompts) != len(paths):
        raise ValueError("run_gemini_labelling needs one prompt per clip")
    settings.check()
    items = [Item(os.path.abspath(p), (p, q), path=p, extra_fp=digest(q)) for p, q in zip(paths, prompts)]

    def write(values, _failures) -> None:
        write_lines(output, ["" if label is None else label for label in values])

    result = run_resumable(output, journal_key(settings), items, GeminiSpec(settings), write=write, batch_size=1,
                           desc="Gemini labels", executor=LocalExecutor(settings.concurrency), codec=TEXT,
                           warn_failures=True, max_consecutive_failures=settings.max_consecutive_failures)
    lines = ["" if label is None else label for label in result.values]
    return LabelReport(labels=lines, failures=[scrub(m, settings.api_key) for m in result.failure_list()],
                       reused=result.reused)
