"""Reading an upload within the limits: the Content-Length checked before a byte of the body is read, the body
bounded in size (413) and time (408), a client that leaves noticed (``ClientGone``), a refused body drained
so that the client reads the answer rather than a reset, and a multipart form parsed as it streams in."""

from __future__ import annotations

import os
import time

from .config import ServeConfig
from .errors import ClientGone, RequestError, size_text

CLOSE = {"Connection": "close"}  # for answers given before the body was read: drop the connection


def too_big(cfg: ServeConfig) -> RequestError:
    """413 for an upload over ``cfg.max_bytes``."""
    return RequestError(413, f"upload larger than the {size_text(cfg.max_bytes)} limit; send a shorter clip "
                             f"(at most {cfg.max_seconds:g} s) or a compressed format such as FLAC", CLOSE)


def declared_length(request, limit: int, cfg: ServeConfig) -> int | None:
    """The Content-Length, None without one; RequestError 400 when unreadable, 413 when over ``limit``."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    try:
        n = int(length)
    except ValueError:
        raise RequestError(400, f"invalid Content-Length header {length[:40]!r}", CLOSE) from None
    if n < 0:
        raise RequestError(400, f"invalid Content-Length header {length[:40]!r}", CLOSE)
    if n > limit:
        raise too_big(cfg)
    return n


def body_receiver(request, limit: int, cfg: ServeConfig):
    """``request``'s receive, bounded: RequestError 413 past ``limit`` bytes, 408 when the body is not in
    within cfg.body_timeout_s, ClientGone when the client disconnects before its end."""
    import anyio

    receive = request.receive
    deadline = time.monotonic() + cfg.body_timeout_s
    got = [0]

    async def bounded():
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                message = await receive()
        except TimeoutError:
            raise RequestError(408, f"the upload did not arrive within {cfg.body_timeout_s:g} s "
                                    f"({got[0]} bytes received); send it again on a faster link or "
                                    "as a shorter or compressed clip", CLOSE) from None
        if message["type"] == "http.disconnect":
            raise ClientGone(got[0])
        got[0] += len(message.get("body", b""))
        if got[0] > limit:
            raise too_big(cfg)
        return message

    return bounded


#: a client that sent ``Expect: 100-continue`` sends its body anyway after waiting this long for an answer (curl:
#: 1 s, Go: 1 s, .NET: 0.35 s); a refusal within it is answered before the body and closes the connection
EXPECT_WAIT_S = 0.25


async def drain(request, limit: int, cfg: ServeConfig, waited_s: float = 0.0) -> bool:
    """Read and drop the body of a request refused before its body was read, so that the client, still
    sending, gets the answer rather than a connection reset. ``waited_s``: how long the request had waited
    for its refusal. False when it is better not to (a client waiting for 100-continue that is refused at
    once: it sends no body) or could not (a body over ``limit``, too slow, or the client gone): then the
    connection is to be closed. A client that sent ``Expect: 100-continue`` and was kept waiting longer than
    EXPECT_WAIT_S has started sending (curl does after 1 s): it is drained too, so that it reads the answer
    rather than a reset (the first read also sends it the 100 Continue that one still waiting needs)."""
    if "100-continue" in request.headers.get("expect", "").lower() and waited_s < EXPECT_WAIT_S:
        return False
    receive = body_receiver(request, limit, cfg)
    try:
        while (await receive()).get("more_body", False):
            pass
    except (RequestError, ClientGone):
        return False
    return True


async def refuse_unread(request, limit: int, cfg: ServeConfig, exc: RequestError,
                        since: float | None = None) -> RequestError:
    """``exc`` for a request whose body was not read (``since``: the time.monotonic() at which its handler
    began): drained, or with Connection: close."""
    waited = 0.0 if since is None else time.monotonic() - since
    if not await drain(request, limit, cfg, waited):
        exc.headers = {**(exc.headers or {}), **CLOSE}
    return exc


async def read_body(receive) -> bytes:
    """The whole body from a (bounded) ``receive``."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    data = b"".join(chunks)
    chunks.clear()
    return data


async def upload_from_form(request, receive, cfg: ServeConfig) -> tuple[bytes, str]:
    """The file of a multipart upload, parsed as it streams in (parts over 1 MB spool to disk)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request as StarletteRequest

    try:
        form = await StarletteRequest(request.scope, receive).form(max_files=1, max_fields=8)
    except (RequestError, ClientGone):
        raise
    except Exception as exc:  # MultiPartException, malformed boundaries...
        raise RequestError(400, f"malformed multipart upload ({exc}); send the audio as field 'file'") from None
    try:
        up = form.get("file")
        if not isinstance(up, UploadFile):
            raise RequestError(400, "multipart upload without a file in field 'file'; send e.g. "
                                    "curl -F file=@clip.wav http://HOST/v1/predict")
        name = os.path.basename(up.filename or "") or "upload"
        if (up.size or 0) > cfg.max_bytes:
            raise RequestError(413, f"{name}: file larger than the {size_text(cfg.max_bytes)} limit")
        data = await up.read()
    finally:
        await form.close()
    if len(data) > cfg.max_bytes:
        raise RequestError(413, f"{name}: file larger than the {size_text(cfg.max_bytes)} limit")
    return data, name
