"""The API's own reference: ``docs_page`` turns the OpenAPI schema into one self-contained HTML page (no
scripts, styles or fonts fetched from elsewhere, so it works offline and under a strict Content-Security-
Policy), and ``openapi_body`` describes ``POST /v1/predict``'s body, which FastAPI cannot infer because the
handler reads the raw stream."""

from __future__ import annotations

import html

from .config import ServeConfig
from .errors import size_text

MULTIPART = "multipart/form-data"
DOCS_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
              "code{background:#f3f3f3;padding:0 .2em}h2 code{font-size:1em}.m{font-weight:bold;color:#264}")


def openapi_body(cfg: ServeConfig) -> dict:
    """The OpenAPI ``requestBody`` of ``POST /v1/predict``: a multipart field ``file`` or the raw file."""
    return {"requestBody": {"required": True, "description": (
        f"An audio file (WAV, FLAC or OGG; at most {size_text(cfg.max_bytes)} and {cfg.max_seconds:g} s): "
        "multipart field 'file', or the file itself as the body with its audio/* content type."),
        "content": {
            MULTIPART: {"schema": {"type": "object", "required": ["file"],
                                   "properties": {"file": {"type": "string", "format": "binary"}}}},
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/flac": {"schema": {"type": "string", "format": "binary"}},
            "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}}


def docs_page(openapi: dict) -> str:
    """A self-contained HTML reference of the API (no scripts, styles or fonts fetched from elsewhere, so it
    works offline), made from the OpenAPI schema; the schema itself is at /openapi.json."""
    e = html.escape
    info = openapi.get("info", {})
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(info.get('title', 'API'))} "
             f"API</title><style>{DOCS_STYLE}</style>"
             f"</head><body><h1>{e(info.get('title', 'API'))} {e(str(info.get('version', '')))}</h1>"
             f"<p>{e(info.get('description', ''))}</p><p>Machine-readable schema: "
             "<a href='openapi.json'>openapi.json</a>. Errors are JSON <code>{\"error\": \"...\"}</code>.</p>"]
    for path, ops in openapi.get("paths", {}).items():
        for method, op in ops.items():
            parts.append(f"<h2><span class='m'>{e(method.upper())}</span> <code>{e(path)}</code></h2>"
                         f"<p><b>{e(op.get('summary', ''))}</b></p><p>{e(op.get('description', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<ul>" + "".join(
                    f"<li><code>{e(p.get('name', ''))}</code> ({e(p.get('in', ''))}"
                    f"{', required' if p.get('required') else ''})</li>" for p in params) + "</ul>")
            body = op.get("requestBody")
            if body:
                types = ", ".join(f"<code>{e(t)}</code>" for t in body.get("content", {}))
                parts.append(f"<p>Body: {e(body.get('description', ''))} Types: {types}.</p>")
    parts.append("</body></html>")
    return "".join(parts)
