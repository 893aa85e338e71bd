"""The dashboard's pages over HTTP: ``/`` (the trader page), ``/operator`` (the operator
page), ``/ui/...`` (their scripts and style sheet) and ``/ui/vendor/...`` (the vendored chart
libraries), all read once from the package data (``derivex.ui``) into memory when the
gateway is built; every gateway worker serves the same bytes. The JSON index that ``/`` used
to answer is at ``/index.json``, and still at ``/`` for a request that accepts
``application/json`` but not ``text/html``.

The HTML carries a Content-Security-Policy that allows only this origin (scripts, styles,
images, and ``connect-src 'self'`` for the WebSocket), so a page cannot reach anything off
the machine even by mistake. Unknown paths answer 404; no path is ever joined onto the file
system at request time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from derivex.ui import STATIC_DIR, VENDOR_DIR

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE
}
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: page path -> file in ``static/``
PAGES = {"/": "trader.html", "/operator": "operator.html"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _load(directory: Path, prefix: str) -> dict[str, tuple[bytes, str]]:
    """Every file under ``directory`` by its URL (``prefix`` + relative path), with its
    content type. Cost: reads the files once (about 300 KB in all)."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in _TYPES and "__pycache__" not in path.parts:
            url = prefix + path.relative_to(directory).as_posix()
            files[url] = (path.read_bytes(), _TYPES[path.suffix])
    return files


def wants_json(request: web.Request) -> bool:
    """Whether the client asked for JSON rather than a page (``Accept`` names
    ``application/json`` and not ``text/html``; scripts and curl's ``*/*`` get the page)."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


class Pages:
    """The page and file routes of one gateway (see the module docstring)."""

    def __init__(self, index: Handler) -> None:
        self.index = index
        self.files = _load(STATIC_DIR, "/ui/")
        self.files.update(_load(VENDOR_DIR, "/ui/vendor/"))

    def install(self, router: web.UrlDispatcher) -> None:
        router.add_route("GET", "/", self._page)
        router.add_route("GET", "/operator", self._page)
        router.add_route("GET", "/index.json", self.index)
        router.add_route("GET", "/ui/{path:.+}", self._file)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/" and wants_json(request):
            return await self.index(request)
        body, content_type = self.files["/ui/" + PAGES[request.path]]
        return web.Response(
            body=body,
            headers={
                "Content-Type": content_type,
                "Content-Security-Policy": CSP,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _file(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.path)
        if found is None:
            raise web.HTTPNotFound(text="no such file")
        body, content_type = found
        return web.Response(
            body=body,
            headers={
                "Content-Type": content_type,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )
