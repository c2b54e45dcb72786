"""The web console: static HTML, CSS and JavaScript served at /console, with `/` sent there.

The pages hold no data: their scripts call the same authenticated JSON routes as the
`lethe` client, with the API key the person signs in with (kept in sessionStorage). So the
console adds no second way to read anything, and its files are served without auth.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

PREFIX = "/console"
# The pages load only their own files and talk only to their own origin: a script injected
# through some shown text could neither load more code nor send the key anywhere else.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgraded server's pages are seen at once
}


class ConsoleFiles(StaticFiles):
    """The console's files (shipped inside the package), each answered with `HEADERS`."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the console at /console/ and send / and /console there."""
    app.mount(PREFIX, ConsoleFiles(packages=[("service.console", "static")], html=True), name="console")
    for path in ("/", PREFIX):
        app.add_api_route(path, _to_console, methods=["GET"], include_in_schema=False)


async def _to_console() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)
