"""Who may call the service from a web page: the CORS policy (``OriginPolicy``, an ASGI middleware) and the
helpers that read Origin and Host headers.

A browser page of another site must not make the service act for it (upload a clip into someone's session,
delete it): requests without an Origin header (curl, scripts) and same-origin ones pass; origins the service
was started with get CORS headers; others are refused (403) before their body is read.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from ..errors import ParameterError


def normalize_origin(origin: str) -> str:
    """``https://Example.com:443/`` -> ``https://example.com`` (the form browsers send); ``*`` kept.
    ParameterError for anything that is not scheme://host[:port]."""
    origin = origin.strip()
    if origin == "*":
        return origin
    u = urlsplit(origin)
    if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/") or u.query or u.username:
        raise ParameterError(f"allowed origin {origin!r}: write it as scheme://host[:port], e.g. "
                             "https://app.example.com or http://localhost:3000 (or * for any)")
    port = u.port
    default = {"http": 80, "https": 443}[u.scheme]
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{u.scheme}://{host}" + (f":{port}" if port and port != default else "")


def host_port(netloc: str, default_port: int | None) -> tuple[str, int | None]:
    """``Example.com:8080`` -> (``example.com``, 8080); the port is ``default_port`` when absent or unreadable."""
    u = urlsplit("//" + netloc)
    try:
        port = u.port
    except ValueError:
        port = None
    return (u.hostname or "").lower(), port or default_port


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``origin`` (a browser's Origin header) names the host the request was sent to (its Host
    header). The scheme is not compared, so that a TLS proxy in front keeps working; ports are (a Host
    header without one means the default port of the Origin's scheme)."""
    if not host_header:
        return False
    u = urlsplit(origin)
    if u.scheme not in ("http", "https") or not u.netloc:
        return False  # "null" (sandboxed pages, file://) and nonsense are foreign
    default = {"http": 80, "https": 443}[u.scheme]
    return host_port(u.netloc, default) == host_port(host_header, default)


async def respond(send, status: int, body: bytes, headers: list) -> None:
    """Send a whole answer from an ASGI middleware."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send, status: int, message: str, close: bool = True) -> None:
    """Send ``{"error": message}`` with ``status`` from an ASGI middleware (the body, unread, is not drained:
    the connection is closed)."""
    headers = [(b"content-type", b"application/json")] + ([(b"connection", b"close")] if close else [])
    await respond(send, status, json.dumps({"error": message}).encode(), headers)


class OriginPolicy:
    """ASGI middleware: the CORS policy. Requests without an Origin header (curl, scripts) and same-origin
    ones pass. From an allowed origin: CORS headers added, preflights answered. From any other origin: a
    preflight or a request that is not GET/HEAD is refused with 403 before its body is read; GET/HEAD are
    answered without CORS headers, so the browser keeps the answer from the foreign page."""

    METHODS = "GET, POST, DELETE"
    HEADERS = "Content-Type, X-Session-Id"

    def __init__(self, app, allow_origins: tuple[str, ...] = ()):
        self.app = app
        self.any = "*" in allow_origins
        self.allowed = frozenset(o for o in allow_origins if o != "*")

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        try:
            return normalize_origin(origin) in self.allowed
        except ParameterError:
            return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        origin = headers.get(b"origin")
        if origin is None:
            return await self.app(scope, receive, send)
        origin = origin.decode("latin-1")
        if same_origin(origin, (headers.get(b"host") or b"").decode("latin-1")):
            return await self.app(scope, receive, send)
        allowed = self.allows(origin)
        method = scope["method"]
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if method == "OPTIONS" and b"access-control-request-method" in headers:  # a preflight
            if allowed:
                return await respond(send, 204, b"", cors + [
                    (b"access-control-allow-methods", self.METHODS.encode()),
                    (b"access-control-allow-headers", self.HEADERS.encode()),
                    (b"access-control-max-age", b"600")])
            return await self.refuse(send, origin, method)
        if not allowed:
            if method in ("GET", "HEAD"):
                return await self.app(scope, receive, send)
            return await self.refuse(send, origin, method)

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors,
                                                  (b"access-control-expose-headers", b"Retry-After")]}
            await send(message)

        return await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def refuse(send, origin: str, method: str):
        await respond_error(send, 403, (
            f"cross-origin {method} from {origin[:100]!r} refused: this service takes requests from its own page, "
            f"from scripts and from the origins it was started with; to let that site call it, start it with "
            f"--allow-origin {origin[:100]}"))
