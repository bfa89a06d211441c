"""A fake of the Gemini REST API on loopback, for testing the cloud labeller end to end.

It implements the endpoints the ``google-genai`` SDK calls (Gemini Developer API mode):

* ``POST /{version}/models/{model}:generateContent``
* ``POST /upload/{version}/files`` with ``X-Goog-Upload-Command: start`` (resumable upload
  start: answers the upload URL in ``x-goog-upload-url``), then ``upload, finalize`` on that
  URL (the bytes; answers the file resource)
* ``GET /{version}/files/{id}`` and ``DELETE /{version}/files/{id}``

Every request is recorded (:attr:`FakeGemini.requests`). Faults are scripted per endpoint
with :meth:`FakeGemini.fail`: an HTTP status with a Google-style error body (optionally a
``RetryInfo`` delay or a ``Retry-After`` header), a delay before answering (to provoke client
timeouts), a hang until the server stops, or a malformed body.

A real ``ThreadingHTTPServer`` on ``127.0.0.1`` and a free port: the code under test talks
HTTP exactly as it would to the real service.
"""

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

GENERATE = "generate"
UPLOAD_START = "upload_start"
UPLOAD_DATA = "upload_data"
FILE_GET = "file_get"
FILE_DELETE = "file_delete"
ENDPOINTS = (GENERATE, UPLOAD_START, UPLOAD_DATA, FILE_GET, FILE_DELETE)

# google.rpc status names the real service puts in error bodies.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

DEFAULT_REPLY = "Birds chirping.\nWind-noise!"


@dataclass
class Recorded:
    """One request as the server saw it."""

    endpoint: str
    method: str
    path: str
    headers: Dict[str, str]  # lower-case names
    body: bytes
    time: float
    json: Any = None
    model: Optional[str] = None  # generate: the model id of the path
    prompt: Optional[str] = None  # generate: the text part(s), joined
    audio: Optional[bytes] = None  # generate: the audio bytes (inline, or the uploaded file's)
    audio_via: Optional[str] = None  # generate: "inline" or "file"
    mime_type: Optional[str] = None
    file_name: Optional[str] = None  # generate via file / get / delete: "files/<id>"
    status: int = 0  # what the server answered

    @property
    def config(self) -> Dict[str, Any]:
        return (self.json or {}).get("generationConfig", {})


@dataclass
class Fault:
    """A scripted misbehaviour of one endpoint; ``times`` None means every matching request."""

    endpoint: str
    status: Optional[int] = None
    times: Optional[int] = 1
    delay: float = 0.0
    hang: bool = False
    malformed: bool = False
    message: Optional[str] = None
    reason: Optional[str] = None  # google.rpc.ErrorInfo reason, e.g. API_KEY_INVALID
    retry_delay: Optional[str] = None  # google.rpc.RetryInfo retryDelay, e.g. "0.2s"
    retry_after: Optional[str] = None  # Retry-After header
    when: Optional[Callable[[Recorded], bool]] = None
    used: int = 0


@dataclass
class StoredFile:
    name: str
    mime_type: str
    size: int
    display_name: Optional[str]
    data: bytes = b""
    complete: bool = False
    deleted: bool = False
    gets: int = 0


class FakeGemini:
    """The fake service. Use as a context manager, or :meth:`start` / :meth:`stop`.

    Parameters
    ----------
    api_key : str, optional
        When set, a request whose ``x-goog-api-key`` differs gets the real service's answer
        to a bad key: HTTP 400 ``INVALID_ARGUMENT`` with ErrorInfo reason ``API_KEY_INVALID``.
    reply : callable, optional
        ``reply(recorded) -> str``: the model's text for a generate request
        (default :data:`DEFAULT_REPLY`).
    processing_gets : int
        An uploaded file reports state ``PROCESSING`` until it has been fetched this many
        times, then ``ACTIVE`` (0: ``ACTIVE`` at once).
    """

    def __init__(self, api_key: Optional[str] = None, reply: Optional[Callable[[Recorded], str]] = None,
                 processing_gets: int = 0):
        self.api_key = api_key
        self.reply = reply or (lambda recorded: DEFAULT_REPLY)
        self.processing_gets = processing_gets
        self.requests: List[Recorded] = []
        self.files: Dict[str, StoredFile] = {}
        self.faults: List[Fault] = []
        self.in_flight = 0
        self.bugs: List[str] = []  # requests the fake could not parse or answer (should stay empty)
        self.max_in_flight = 0
        self._sessions: Dict[str, str] = {}  # upload id -> file name
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "FakeGemini":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.fake = self
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting and inspection ----------------------------------------------------------

    def fail(self, endpoint: str, status: Optional[int] = None, times: Optional[int] = 1, **kwargs) -> Fault:
        """Make the next ``times`` requests to ``endpoint`` (that match ``when``) misbehave.

        Faults are used in the order they were added; see :class:`Fault` for the options.
        ``message`` may contain ``{key}``, replaced by the API key the request carried (to
        check that the client scrubs a key echoed back by a proxy).
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        fault = Fault(endpoint, status=status, times=times, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def of(self, endpoint: str) -> List[Recorded]:
        """The recorded requests to ``endpoint``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    # -- internals -------------------------------------------------------------------------

    def _take_fault(self, recorded: Recorded) -> Optional[Fault]:
        with self._lock:
            for fault in self.faults:
                if fault.endpoint != recorded.endpoint:
                    continue
                if fault.times is not None and fault.used >= fault.times:
                    continue
                if fault.when is not None and not fault.when(recorded):
                    continue
                fault.used += 1
                return fault
        return None

    def _audio_of_generate(self, recorded: Recorded) -> None:
        # Proto JSON accepts camelCase and snake_case field names; the SDK sends a mix.
        texts = []
        for content in (recorded.json or {}).get("contents", []):
            for part in content.get("parts", []):
                inline = _field(part, "inlineData", "inline_data")
                file_data = _field(part, "fileData", "file_data")
                if "text" in part:
                    texts.append(part["text"])
                elif inline is not None:
                    recorded.audio = _b64decode(inline["data"])
                    recorded.audio_via = "inline"
                    recorded.mime_type = _field(inline, "mimeType", "mime_type")
                elif file_data is not None:
                    uri = _field(file_data, "fileUri", "file_uri")
                    name = "files/" + urlsplit(uri).path.rstrip("/").split("/")[-1]
                    recorded.file_name = name
                    recorded.audio_via = "file"
                    recorded.mime_type = _field(file_data, "mimeType", "mime_type")
                    with self._lock:
                        stored = self.files.get(name)
                    if stored is not None and not stored.deleted:
                        recorded.audio = stored.data
        recorded.prompt = "".join(texts)


def _b64decode(text: str) -> bytes:
    # Proto JSON bytes may use either base64 alphabet (the SDK sends the URL-safe one).
    return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)


def _field(mapping: Dict[str, Any], camel: str, snake: str) -> Any:
    return mapping.get(camel, mapping.get(snake))


class _Server(ThreadingHTTPServer):
    fake: FakeGemini

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (timeout, killed process) resets its connection: expected here.
        import sys

        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            self.fake.bugs.append(f"{type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGemini
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle's algorithm each answer would
    # wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- dispatch --------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        url = urlsplit(self.path)
        recorded = Recorded(self._endpoint(method, url.path, headers), method, self.path, headers, body, time.monotonic())
        try:
            recorded.json = json.loads(body) if body and recorded.endpoint != UPLOAD_DATA else None
            if recorded.endpoint == GENERATE:
                recorded.model = url.path.split("/models/", 1)[-1].split(":", 1)[0]
                fake._audio_of_generate(recorded)
            elif recorded.endpoint in (FILE_GET, FILE_DELETE):
                recorded.file_name = "files/" + url.path.rstrip("/").split("/")[-1]
        except Exception as exc:  # a request the fake cannot read: a bug of the client or the fake
            fake.bugs.append(f"cannot parse {recorded.endpoint} request: {type(exc).__name__}: {exc}")
        with fake._lock:
            fake.requests.append(recorded)
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._answer(recorded, url)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer
        except Exception as exc:  # a bug of the fake: answer 500 and keep it for the test to see
            fake.bugs.append(f"{type(exc).__name__}: {exc}")
            self._error(recorded, 500, Fault(recorded.endpoint, message=f"fake server bug: {exc}"))
        finally:
            with fake._lock:
                fake.in_flight -= 1

    @staticmethod
    def _endpoint(method: str, path: str, headers: Dict[str, str]) -> str:
        if method == "POST" and path.endswith(":generateContent"):
            return GENERATE
        if method == "POST" and path.startswith("/upload/"):
            return UPLOAD_START if headers.get("x-goog-upload-command", "").strip() == "start" else UPLOAD_DATA
        if method == "GET" and "/files/" in path:
            return FILE_GET
        if method == "DELETE" and "/files/" in path:
            return FILE_DELETE
        return "unknown"

    def _answer(self, recorded: Recorded, url) -> None:
        fake = self.fake
        fault = fake._take_fault(recorded)
        if fault is not None:
            if fault.hang:
                fake._stopping.wait()
                return
            if fault.delay:
                time.sleep(fault.delay)
            if fault.malformed:
                self._send(recorded, 200, b"<html><body>gateway says hello</body></html>", "text/html")
                return
            if fault.status is not None:
                self._error(recorded, fault.status, fault)
                return
        if recorded.endpoint != UPLOAD_DATA and fake.api_key is not None and recorded.headers.get("x-goog-api-key") != fake.api_key:
            self._error(recorded, 400, Fault(GENERATE, message="API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"))
            return
        getattr(self, "_ok_" + recorded.endpoint, self._not_found)(recorded, url)

    # -- normal answers --------------------------------------------------------------------

    def _ok_generate(self, recorded: Recorded, url) -> None:
        text = self.fake.reply(recorded)
        payload = {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": recorded.model,
        }
        self._json(recorded, 200, payload)

    def _ok_upload_start(self, recorded: Recorded, url) -> None:
        fake = self.fake
        meta = (recorded.json or {}).get("file", {})
        upload_id = uuid.uuid4().hex
        name = f"files/{upload_id[:12]}"
        stored = StoredFile(
            name=name,
            mime_type=recorded.headers.get("x-goog-upload-header-content-type", meta.get("mimeType", "")),
            size=int(recorded.headers.get("x-goog-upload-header-content-length", 0)),
            display_name=meta.get("displayName"),
        )
        with fake._lock:
            fake.files[name] = stored
            fake._sessions[upload_id] = name
        upload_url = f"{fake.base_url}{url.path}?upload_id={upload_id}&upload_protocol=resumable"
        self._send(recorded, 200, b"", "application/json",
                   {"x-goog-upload-url": upload_url, "x-goog-upload-status": "active"})

    def _ok_upload_data(self, recorded: Recorded, url) -> None:
        fake = self.fake
        query = dict(p.split("=", 1) for p in url.query.split("&") if "=" in p)
        with fake._lock:
            name = fake._sessions.get(query.get("upload_id", ""))
            stored = fake.files.get(name) if name else None
        if stored is None:
            self._error(recorded, 404, Fault(UPLOAD_DATA, message="upload session not found"))
            return
        offset = int(recorded.headers.get("x-goog-upload-offset", 0))
        stored.data = stored.data[:offset] + recorded.body
        command = recorded.headers.get("x-goog-upload-command", "")
        if "finalize" not in command:
            self._send(recorded, 200, b"", "application/json", {"x-goog-upload-status": "active"})
            return
        stored.complete = True
        self._json(recorded, 200, {"file": self._resource(stored, count_get=False)}, {"x-goog-upload-status": "final"})

    def _ok_file_get(self, recorded: Recorded, url) -> None:
        stored = self.fake.files.get(recorded.file_name)
        if stored is None or stored.deleted:
            self._error(recorded, 404, Fault(FILE_GET, message=f"File {recorded.file_name} not found"))
            return
        self._json(recorded, 200, self._resource(stored, count_get=True))

    def _ok_file_delete(self, recorded: Recorded, url) -> None:
        stored = self.fake.files.get(recorded.file_name)
        if stored is None or stored.deleted:
            self._error(recorded, 404, Fault(FILE_DELETE, message=f"File {recorded.file_name} not found"))
            return
        stored.deleted = True
        self._json(recorded, 200, {})

    def _not_found(self, recorded: Recorded, url) -> None:
        self._error(recorded, 404, Fault(GENERATE, message=f"no such endpoint {recorded.method} {url.path}"))

    def _resource(self, stored: StoredFile, count_get: bool) -> Dict[str, Any]:
        if count_get:
            stored.gets += 1
        active = stored.gets >= self.fake.processing_gets
        file_id = stored.name.split("/", 1)[1]
        resource = {
            "name": stored.name,
            "mimeType": stored.mime_type,
            "sizeBytes": str(len(stored.data)),
            "uri": f"{self.fake.base_url}/v1beta/files/{file_id}",
            "state": "ACTIVE" if active else "PROCESSING",
            "sha256Hash": base64.b64encode(hashlib.sha256(stored.data).hexdigest().encode()).decode(),
            "source": "UPLOADED",
        }
        if stored.display_name:
            resource["displayName"] = stored.display_name
        return resource

    # -- writing ---------------------------------------------------------------------------

    def _error(self, recorded: Recorded, status: int, fault: Fault) -> None:
        message = fault.message or f"fake error {status}"
        message = message.replace("{key}", recorded.headers.get("x-goog-api-key", ""))
        details = []
        if fault.reason:
            details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": fault.reason,
                            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}})
        if fault.retry_delay:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fault.retry_delay})
        error = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
        if details:
            error["details"] = details
        extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if recorded.endpoint == UPLOAD_DATA:
            # The upload service marks every answer that ends a session, errors included.
            extra["x-goog-upload-status"] = "final"
        self._json(recorded, status, {"error": error}, extra)

    def _json(self, recorded: Recorded, status: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(recorded, status, json.dumps(payload).encode("utf-8"), "application/json; charset=UTF-8", headers)

    def _send(self, recorded: Recorded, status: int, body: bytes, content_type: str,
              headers: Optional[Dict[str, str]] = None) -> None:
        recorded.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
