"""An ASGI middleware refusing request bodies over a size limit with a 413 problem.

Bodies are small JSON documents, so the body is read here (up to the limit) and replayed
to the app: a body sent without Content-Length is bounded as well as one declaring it.
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import JSONResponse

from service.problems import MEDIA_TYPE


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope, receive, send):
        detail = f"the body is larger than {self.max_bytes} bytes"
        body = {
            "type": "urn:lethe:problem:body_too_large", "title": HTTPStatus(413).phrase, "status": 413,
            "detail": detail, "instance": scope["path"], "errors": [{"field": "body", "message": detail}],
        }  # fmt: skip
        await JSONResponse(body, status_code=413, media_type=MEDIA_TYPE, headers={"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()  # then wait for the disconnect, as the server would
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
