"""Pure ASGI middlewares: request id + access log + metrics + disconnect watch, and the upload size limit.

Pure ASGI (not BaseHTTPMiddleware) so streamed request and response bodies pass
through untouched and the size limit can act while the body is still arriving.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import error_response
from services.common.logs import request_id
from services.common.metrics import ServiceMetrics

logger = logging.getLogger("services.access")

client_gone: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("client_gone", default=None)
"""Set once the client of the current request disconnects; worker threads poll it to stop early."""


async def _watch_disconnect(receive: Receive, gone: threading.Event) -> None:
    while not gone.is_set():
        if (await receive())["type"] == "http.disconnect":
            gone.set()


class RequestContextMiddleware:
    """X-Request-ID in and out, one JSON access line per request, request counters and latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")[:128]
        rid = given if given and given.isprintable() else uuid.uuid4().hex
        token = request_id.set(rid)
        gone = threading.Event()
        gone_token = client_gone.set(gone)
        watcher: asyncio.Task | None = None
        status = 500
        start = time.perf_counter()

        async def watched_receive() -> Message:
            """Pass messages on; once the whole body is in, watch for the client going away."""
            nonlocal watcher
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body") and watcher is None:
                watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, watched_receive, send_with_id)
        finally:
            if watcher is not None:
                watcher.cancel()
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(self.metrics.service, scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(self.metrics.service, route).observe(elapsed)
            if route not in ("/healthz", "/readyz", "/metrics"):
                logger.info("%s %s %d", scope["method"], scope["path"], status, extra={"fields": {
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "duration_ms": round(elapsed * 1000, 1)}})
            client_gone.reset(gone_token)
            request_id.reset(token)


class BodyLimitMiddleware:
    """413 for bodies above `max_bytes`: at once from Content-Length, else while the body streams in.

    The body is never read whole first: the count runs per received chunk and the
    request is cut off at the first chunk past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        seen = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # whatever the app answered to the cut-off body is replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if exceeded and not started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        mb = self.max_bytes / 1e6
        response = error_response(413, f"request body exceeds the {mb:g} MB upload limit", param="file",
                                  headers={"Connection": "close"})
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass
