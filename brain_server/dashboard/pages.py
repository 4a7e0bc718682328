"""`GET /` (the dashboard's page) and `GET /dashboard/{file}` (its script and style sheet): files shipped in the
package (`static/`), read once, served with the security headers (`sessions.SECURITY_HEADERS`). No token is needed
to load them: they hold nothing but code, and the page logs in before it reads anything."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..exceptions import NotFound
from ..sessions import SECURITY_HEADERS

STATIC = Path(__file__).parent / "static"
_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def page_routes() -> list[Route]:
    files = {name: ((STATIC / name).read_bytes(), media) for name, media in _FILES.items()}

    def serve(name: str) -> Response:
        found = files.get(name)
        if found is None or name == "index.html":
            raise NotFound(f"no dashboard file '{name}'")
        data, media = found
        return Response(data, media_type=media, headers=SECURITY_HEADERS)

    async def index(request: Request) -> Response:
        data, media = files["index.html"]
        return Response(data, media_type=media, headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        return serve(request.path_params["name"])

    return [
        Route("/", index, methods=["GET"]),
        Route("/dashboard/{name}", static, methods=["GET"]),
    ]
