"""Who may call the service from a web page: the Host check (``HostPolicy``) and the CORS policy
(``OriginPolicy``), two ASGI middlewares, and the parsers of Origin and Host headers, which never raise (a
malformed header is a 400 naming it, never a 500).

A browser page of another site must not make the service act for it (upload a clip into someone's session,
delete it): requests without an Origin header (curl, scripts) and same-origin ones pass; origins the service
was started with get CORS headers; others are refused (403) before their body is read. A page that rebinds its
own name to this machine's address looks same-origin, so the Host header must name this service.
"""

from __future__ import annotations

import ipaddress
import json
import re

from ..errors import ParameterError

DEFAULT_PORTS = {"http": 80, "https": 443}
# a Host header: a bracketed IPv6 address or a name / IPv4 address (no spaces, slashes, '@'...), then a port
HOST = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._~!$&'()*+,;=%-]*))(?::(?P<port>[^:]*))?")


def normalize_origin(origin: str) -> str:
    """``https://Example.com:443/`` -> ``https://example.com`` (the form browsers send); ``*`` kept.
    ParameterError for anything that is not scheme://host[:port]."""
    origin = origin.strip()
    if origin == "*":
        return origin
    parsed = parse_origin(origin)
    if parsed is None:
        raise ParameterError(f"allowed origin {origin!r}: write it as scheme://host[:port], e.g. "
                             "https://app.example.com or http://localhost:3000 (or * for any)")
    scheme, host, port = parsed
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port != DEFAULT_PORTS[scheme] else "")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (``Example.com:8080``, ``[::1]:8000``, ``127.0.0.1``) -> (lower-case host without
    brackets, port or None); None when it is malformed (a bad port, an unclosed bracket, characters a host
    cannot hold). Never raises: a header is the client's to get wrong."""
    m = HOST.fullmatch(value.strip())
    if m is None:
        return None
    host, port = (m["ip6"] or m["name"]).lower(), m["port"] or None  # "host:" has an empty port
    if m["ip6"] is not None and not is_ip(host):
        return None
    if port is not None and not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    return host, int(port) if port else None


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """An Origin header -> (scheme, host, port with the scheme's default filled in); None for ``null``, other
    schemes and anything malformed. Never raises."""
    scheme, sep, rest = value.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS or not rest or "/" in rest.rstrip("/") or "@" in rest:
        return None
    hp = parse_host(rest.rstrip("/"))
    if hp is None or not hp[0]:
        return None
    return scheme, hp[0], hp[1] or DEFAULT_PORTS[scheme]


def is_ip(host: str) -> bool:
    """Whether ``host`` (without brackets) is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``origin`` (a browser's Origin header) names the host the request was sent to (its Host
    header). The scheme is not compared, so that a TLS proxy in front keeps working; ports are (a Host
    header without one means the default port of the Origin's scheme). False for anything malformed."""
    o = parse_origin(origin)
    h = parse_host(host_header) if host_header else None
    if o is None or h is None:
        return False  # "null" (sandboxed pages, file://) and nonsense are foreign
    return (o[1], o[2]) == (h[0], h[1] or DEFAULT_PORTS[o[0]])


LOCAL_HOSTS = ("localhost", "*.localhost")  # names that resolve to this machine in every browser (RFC 6761)
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")


def normalize_host_pattern(pattern: str) -> str:
    """An entry of the Host allow-list: ``*`` (any), a name (``svc.example``), a suffix (``*.example.com``)
    or an IP address, lower-cased, without brackets. ParameterError for anything else (a port, a URL)."""
    p = pattern.strip().lower()
    if p == "*":
        return p
    name = p[2:] if p.startswith("*.") else p
    parsed = parse_host(name)
    if not name or "*" in name or parsed is None or parsed[1] is not None:
        raise ParameterError(f"allowed host {pattern!r}: write a host name without scheme or port, e.g. "
                             "svc.example.com, *.example.com (any subdomain) or * (any host)")
    return ("*." if p.startswith("*.") else "") + parsed[0]


def default_hosts(bind: str) -> tuple[str, ...]:
    """The Host names a service bound to ``bind`` answers to by default: the localhost names and ``bind``
    itself when it is a name (IP addresses always pass the Host check)."""
    bind = bind.strip().lower()
    if bind in WILDCARD_BINDS or is_ip(bind.strip("[]")):
        return LOCAL_HOSTS
    return (*LOCAL_HOSTS, normalize_host_pattern(bind))


class HostPolicy:
    """ASGI middleware: the Host header is well formed (else 400) and, with ``allow_hosts``, names this service
    (else 400): a DNS-rebinding page (``evil.example`` resolved to 127.0.0.1) sends its own name as Host, so it
    is refused before it can pose as same-origin. IP addresses always pass (a page served from an IP address
    is that address's own origin: nothing to rebind); no Host header (HTTP/1.0 clients) passes too.

    Written here rather than Starlette's TrustedHostMiddleware, whose answer is a plain-text "Invalid host
    header" that names no fix, and which reads ``[::1]:8000`` as the host ``[``."""

    def __init__(self, app, allow_hosts: tuple[str, ...] | None = None):
        self.app = app
        self.check = allow_hosts is not None and "*" not in allow_hosts
        self.names = frozenset(h for h in allow_hosts or () if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in allow_hosts or () if h.startswith("*."))

    def allows(self, host: str) -> bool:
        """Whether a well-formed Host (lower case, without port or brackets) may be served."""
        return (not self.check or not host or is_ip(host) or host in self.names
                or host.endswith(self.suffixes))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), None)
        if raw is None:
            return await self.app(scope, receive, send)
        value = raw.decode("latin-1")
        parsed = parse_host(value)
        if parsed is None:
            return await respond_error(send, 400, f"malformed Host header {value[:100]!r}: send host[:port] "
                                                  "with a port of 1-65535")
        if not self.allows(parsed[0]):
            return await respond_error(send, 400, (
                f"this service does not answer to the host name {parsed[0][:100]!r} (a guard against DNS "
                f"rebinding): use its address, or start it with --allow-host {parsed[0][:100]}"))
        return await self.app(scope, receive, send)


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
    HEADERS = "Content-Type, X-Session-Id, Idempotency-Key, X-Request-Id"

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
        if origin.strip() != "null" and parse_origin(origin) is None:
            return await respond_error(send, 400, f"malformed Origin header {origin[:100]!r}: browsers send "
                                                  "scheme://host[:port] or null")
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
