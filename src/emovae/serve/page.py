"""The web page (``emovae/web/``: index.html, app.js, app.css) and the headers every answer carries so that a
page of another site cannot frame it or run script in its name: ``SecurityHeaders`` adds
Content-Security-Policy, X-Frame-Options, X-Content-Type-Options and Referrer-Policy.

The page's script and styles are files of their own, so its policy needs no 'unsafe-inline': only scripts and
styles from this service run, fetches go only to this service, and no site may put it in a frame."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from .docs import DOCS_STYLE

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: the files the page loads besides itself, with their content types
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
FRAME_AND_BASE = "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "media-src 'self' blob: mediastream:; " + FRAME_AND_BASE)
#: /docs has one inline <style>, allowed by its hash
DOCS_CSP = (f"default-src 'none'; style-src 'sha256-"
            f"{base64.b64encode(hashlib.sha256(DOCS_STYLE.encode()).digest()).decode()}'; " + FRAME_AND_BASE)
#: JSON answers and the rest: nothing to load, nothing to frame
API_CSP = "default-src 'none'; " + FRAME_AND_BASE
ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
          (b"referrer-policy", b"no-referrer")]


def read_page() -> dict[str, str]:
    """The page and its assets by name (``index.html``, ``app.js``, ``app.css``), read once per app."""
    return {name: (WEB_DIR / name).read_text(encoding="utf-8") for name in ("index.html", *ASSETS)}


class SecurityHeaders:
    """ASGI middleware: every answer gets X-Content-Type-Options: nosniff, X-Frame-Options: DENY and
    Referrer-Policy: no-referrer, and ``API_CSP`` unless the route set its own Content-Security-Policy (the
    page and /docs do). Outermost, so that refusals by the other policies carry them too."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(k, v) for k, v in ALWAYS if k not in names]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", API_CSP.encode()))
                message = {**message, "headers": headers + extra}
            await send(message)

        return await self.app(scope, receive, send_with_headers)
