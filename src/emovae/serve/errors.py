"""The service's HTTP errors (the package's own, such as ``AudioError``, are in ``emovae.errors``):
``RequestError`` carries a status and a message naming the problem and the fix, sent as ``{"error": ...}``;
``ClientGone`` says the client left before its body was in."""

from __future__ import annotations


class RequestError(Exception):
    """A bad request: its status and a message naming the problem and the fix (sent as JSON)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class ClientGone(Exception):
    """The client closed the connection before its body was in."""

    def __init__(self, received: int):
        super().__init__(f"client disconnected after {received} bytes")
        self.received = received


def size_text(n: int) -> str:
    """A byte count as people read it in an error message: ``10.5 MB`` or ``900 bytes``."""
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"
