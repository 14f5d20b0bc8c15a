"""ASGI middlewares in front of the `smoke_detector` APIs, one concern each, composed in
order by `GuardMiddleware` (audit -> auth -> rate limit -> body -> validation messages):

- API key (when `SMOKE_API_KEY` is set): header `X-API-Key` (or `Authorization: Bearer`),
  compared in constant time; 401 otherwise. Health, readiness, metrics and the docs are open.
- Per-client token-bucket rate limit: 429 with `Retry-After` (split evenly over the
  `SMOKE_SERVICE_WORKERS` processes, each of which keeps its own buckets).
- Failed authentications are throttled per client address (`SMOKE_AUTH_FAILURES_PER_S`,
  burst `SMOKE_AUTH_FAILURES_BURST`): guessing keys ends in 429s.
- Request size limit: 413. JSON nested deeper than `MAX_JSON_DEPTH`: 400 before any
  parser sees it. A body that is not `application/json`: 415.
- Validation errors (BentoML's 400 with pydantic details) rewritten to name the row,
  the field, the value sent and the allowed range.
- One audit log line per request: client, route, status, model version, latency. Never
  the payload, never the key.
"""

import hashlib
import hmac
import json
import logging
import math
import time
from typing import Any

from bentos.limits import MAX_JSON_DEPTH, TokenBucket, json_depth
from smoke_platform.core.schema import field_errors
from smoke_platform.core.settings import ServiceSettings

audit_log = logging.getLogger("smoke_detector.audit")
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/health", "/metrics", "/docs.json", "/"})
OPEN_PREFIXES = ("/static_content/",)  # the API docs page's scripts and styles
# Routes that only read: BentoML serves every API as a POST; a GET here is answered as
# that POST with an empty JSON body (curl and browsers expect GET to work).
GET_AS_POST = frozenset({"/model_info"})
# The content type of each route's body: JSON, except the Arrow bulk route.
ARROW_MEDIA_TYPE = b"application/vnd.apache.arrow.stream"
BODY_TYPES = {"/predict_arrow": ARROW_MEDIA_TYPE}
MODEL_VERSION = {"value": "unknown"}  # set by the service when its model is loaded
REQUEST_BODY = "smoke.request_body"  # scope key: the body BodyMiddleware read


def set_model_version(version: str) -> None:
    MODEL_VERSION["value"] = version


def service_workers() -> int:
    """`SMOKE_SERVICE_WORKERS`: API worker processes (a whole number >= 1, or `cpu_count`)."""
    return ServiceSettings().workers()


def service_ssl() -> dict:
    """BentoML's `ssl` configuration from `SMOKE_SERVICE_SSL_CERT_FILE` / `_KEY_FILE`: the
    service answers HTTPS when they are set (`bentoml serve` needs no flag)."""
    return ServiceSettings().ssl()


def client_identity(scope: dict) -> str:
    """A stable, non-secret client identity: key fingerprint, else client address."""
    key = presented_key(scope)
    if key:
        return "key:" + hashlib.sha256(key).hexdigest()[:12]
    return address(scope)


def address(scope: dict) -> str:
    peer = scope.get("client") or ("unknown", 0)
    return f"addr:{peer[0]}"


def presented_key(scope: dict) -> bytes | None:
    headers = dict(scope.get("headers") or [])
    if b"x-api-key" in headers:
        return headers[b"x-api-key"]
    auth = headers.get(b"authorization", b"")
    return auth[7:] if auth.lower().startswith(b"bearer ") else None


class AuditMiddleware:
    """One JSON line per request: client, method, route, status, model version, latency.
    Never the payload, never the key."""

    def __init__(self, app: Any) -> None:
        self.app = app
        if not audit_log.handlers:  # one JSON line per request on stderr
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s AUDIT %(message)s"))
            audit_log.addHandler(handler)
            audit_log.setLevel(logging.INFO)
            audit_log.propagate = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            audit_log.info(
                json.dumps(
                    {
                        "client": client_identity(scope),
                        "method": scope.get("method"),
                        "route": scope["path"],
                        "status": status["code"],
                        "model_version": MODEL_VERSION["value"],
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                )
            )


class AuthMiddleware:
    """The API keys (none: open), compared in constant time against every key; failed
    authentications throttled per client address (`failures`)."""

    def __init__(self, app: Any, keys: list[bytes], failures: TokenBucket) -> None:
        self.app, self.keys, self.failures = app, keys, failures

    def _authorised(self, scope: dict) -> bool:
        if not self.keys:
            return True
        presented = presented_key(scope) or b""
        # Compare against every key so timing does not reveal which one nearly matched.
        return any([hmac.compare_digest(presented, key) for key in self.keys])

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._authorised(scope):
            await self.app(scope, receive, send)
            return
        if self.failures.rate > 0:
            wait = self.failures.take(address(scope), time.monotonic())
            if wait > 0:
                await _too_many(send, wait, "too many failed authentications from this address")
                return
        await _json(
            send,
            401,
            {"error": "missing or invalid API key", "header": "X-API-Key"},
            [(b"www-authenticate", b"ApiKey")],
        )


class RateLimitMiddleware:
    """Per-client token bucket (rate 0: unlimited): 429 with Retry-After."""

    def __init__(self, app: Any, bucket: TokenBucket) -> None:
        self.app, self.bucket = app, bucket

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.bucket.rate > 0:
            wait = self.bucket.take(client_identity(scope), time.monotonic())
            if wait > 0:
                await _too_many(send, wait, "rate limit exceeded")
                return
        await self.app(scope, receive, send)


class BodyMiddleware:
    """What a body may be: the route's content type (415), at most `max_body` bytes (413),
    JSON no deeper than `MAX_JSON_DEPTH` (400, before any parser sees it). A GET of a
    read-only route is answered as its POST with an empty JSON body. The body read here is
    handed on whole, and kept in the scope for `ValidationMessages`."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("method") == "GET" and scope["path"] in GET_AS_POST:
            kept = [h for h in scope.get("headers") or [] if h[0] != b"content-type"]
            scope = {
                **scope,
                "method": "POST",
                "headers": [*kept, (b"content-type", b"application/json")],
            }
            await self._call(scope, b"{}", receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        expected = BODY_TYPES.get(scope["path"], b"application/json")
        if scope.get("method") in ("POST", "PUT", "PATCH") and ctype != expected:
            shown = ctype.decode("latin-1")[:100] or "(none)"
            await _json(
                send,
                415,
                {
                    "error": f"content-type {shown} is not accepted here",
                    "content_type": shown,
                    "allowed": [expected.decode()],
                },
            )
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        depth = json_depth(body) if expected == b"application/json" else 0
        if depth > MAX_JSON_DEPTH:
            await _json(
                send,
                400,
                {
                    "error": f"JSON nested {depth} levels deep (allowed: at most "
                    f"{MAX_JSON_DEPTH}; a request is 3 levels deep)",
                    "depth": depth,
                    "max_depth": MAX_JSON_DEPTH,
                },
            )
            return
        await self._call(scope, body, receive, send)

    async def _call(self, scope: dict, body: bytes, receive: Any, send: Any) -> None:
        delivered = {"done": False}

        async def replay() -> dict:
            # The body once, then the client's own next message: a disconnect only when
            # the client really leaves (file and streaming responses wait for one).
            if delivered["done"]:
                return await receive()  # type: ignore[no-any-return]
            delivered["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, REQUEST_BODY: body}, replay, send)

    async def _read_body(self, scope: dict, receive: Any, send: Any) -> bytes | None:
        headers = dict(scope.get("headers") or [])
        declared = int(headers.get(b"content-length", b"0") or 0)
        chunks, size, more = [], 0, True
        if declared <= self.max_body:
            while more:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
        if declared > self.max_body or size > self.max_body:
            await _json(send, 413, {"error": "request too large", "max_bytes": self.max_body})
            return None
        return b"".join(chunks)


class ValidationMessages:
    """BentoML's 400 (pydantic details) rewritten to name the row, the field, the value sent
    and the allowed range (the request body from `BodyMiddleware`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        held: dict[str, Any] = {}
        request = scope.get(REQUEST_BODY, b"")

        async def intercept(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                held["start"], held["body"] = message, b""
                return
            if "start" in held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    await _send_rewritten(send, held["start"], held["body"], request)
                return
            await send(message)

        await self.app(scope, receive, intercept)


class GuardMiddleware:
    """The guard BentoML mounts: the middlewares above in their order, each given its part
    of `ServiceSettings`; health, readiness, metrics and the docs bypass them."""

    def __init__(self, app: Any) -> None:
        settings = ServiceSettings()
        # Each worker process has its own buckets and the kernel spreads connections over
        # the workers, so each enforces its share of the per-client limits.
        workers = settings.workers()
        rate = settings.rate_limit_per_s  # 0 = unlimited
        burst = settings.rate_limit_burst or max(rate * 2, 1)
        failures = TokenBucket(
            settings.auth_failures_per_s / workers,
            max(settings.auth_failures_burst / workers, 1.0),
        )
        self.app = app
        self.bucket = TokenBucket(rate / workers, max(burst / workers, 1.0))
        self.auth_failures = failures
        self.guarded = AuditMiddleware(
            AuthMiddleware(
                RateLimitMiddleware(
                    BodyMiddleware(ValidationMessages(app), settings.max_request_bytes),
                    self.bucket,
                ),
                settings.keys(),
                failures,
            )
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/docs":  # where people look first
            await send(
                {"type": "http.response.start", "status": 307, "headers": [(b"location", b"/")]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        await self.guarded(scope, receive, send)


def _rewrite(response: bytes, request: bytes) -> dict | None:
    """BentoML's pydantic 400 body -> errors naming row, field, value and allowed range."""
    try:
        detail = json.loads(response).get("detail")
    except (ValueError, AttributeError, RecursionError):
        return None
    try:
        payload = json.loads(request) if request else None
    except (ValueError, RecursionError):  # malformed JSON: show (the start of) what was sent
        payload = request[:200].decode("utf-8", "replace")
    if not isinstance(detail, list) or not all(isinstance(d, dict) for d in detail):
        return None
    errors = field_errors(detail, payload)
    rows = sorted({e.row for e in errors if e.row is not None})
    return {
        "error": "invalid input: " + "; ".join(str(e) for e in errors[:20]),
        "errors": [e.as_dict() for e in errors],
        "bad_rows": rows,
    }


async def _send_rewritten(send: Any, start: dict, original: bytes, request: bytes) -> None:
    rewritten = _rewrite(original, request)
    if rewritten is None:
        await send(start)
        await send({"type": "http.response.body", "body": original})
        return
    await _json(send, 400, rewritten)


async def _too_many(send: Any, wait: float, error: str) -> None:
    retry = str(max(1, math.ceil(wait))).encode()
    await _json(
        send, 429, {"error": error, "retry_after_s": float(retry)}, [(b"retry-after", retry)]
    )


async def _json(send: Any, status: int, body: dict, extra: list | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": data})
