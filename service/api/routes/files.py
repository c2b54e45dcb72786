"""Downloads: one file of a version (Range, ETag), the whole version as tar, the delta.

A route reads the version's rows and returns before the first byte is sent (its session is
closed then); the bytes are read from storage as the client takes them, each chunk in a
thread of the app's download pool, so a slow client holds no connection and no thread.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response, StreamingResponse

from service.api.deps import CallerDep, Parts, PartsDep, SessionDep
from service.api.routes.models import ModelNameParam, VersionParam, find_version
from service.archive import tar_stream
from service.downloads import Unsatisfiable, byte_range, etag_of, none_match
from service.problems import Problem

router = APIRouter(prefix="/v1/models/{name}/versions/{version}", tags=["downloads"])
DELTA = "delta.safetensors"
BINARY = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
FILE_RESPONSES = {
    200: {"description": "The file.", **BINARY},
    206: {"description": "The requested byte range.", **BINARY},
    304: {"description": "Not modified: the client's copy has this ETag."},
    416: {"description": "The range is outside the file."},
}


@dataclass
class Conditions:
    """The request headers that make a download partial or conditional."""

    range: str | None
    if_range: str | None
    if_none_match: str | None


async def conditions(
    range: Annotated[str | None, Header()] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Conditions:
    # No length or syntax checks here: what `service.downloads` cannot parse, it ignores (RFC 9110).
    return Conditions(range, if_range, if_none_match)


ConditionsDep = Annotated[Conditions, Depends(conditions)]


@router.get("/files/{path:path}", response_class=Response, responses=FILE_RESPONSES)
def download_file(
    name: ModelNameParam,
    version: VersionParam,
    path: str,
    session: SessionDep,
    parts: PartsDep,
    caller: CallerDep,
    conditional: ConditionsDep,
) -> Response:
    """One file of the version. Paths are looked up in the version's file list, never on disk."""
    found = _file(find_version(session, name, version, caller.tenant), path)
    return file_response(parts, found.path, found.sha256, found.size, conditional)


@router.get("/delta", response_class=Response, responses=FILE_RESPONSES)
def download_delta(
    name: ModelNameParam,
    version: VersionParam,
    session: SessionDep,
    parts: PartsDep,
    caller: CallerDep,
    conditional: ConditionsDep,
) -> Response:
    """Safetensors with only the UNet tensors that differ from the parent version."""
    found = find_version(session, name, version, caller.tenant)
    delta = next((f for f in found.files if f.path == DELTA), None)
    if delta is None:
        raise Problem(404, f"version {version} of {name!r} has no delta (it has no parent)", code="not_found")
    return file_response(parts, DELTA, delta.sha256, delta.size, conditional)


@router.get(
    "/archive",
    response_class=StreamingResponse,
    responses={200: {"description": "A tar of the diffusers folder.", "content": {"application/x-tar": {}}}},
)
def download_archive(
    name: ModelNameParam, version: VersionParam, session: SessionDep, parts: PartsDep, caller: CallerDep
) -> StreamingResponse:
    """The whole version as one tar stream of a folder `from_pretrained` loads once unpacked."""
    found = find_version(session, name, version, caller.tenant)
    root = f"{name}-v{version}"
    files = [(f.path, f.sha256, f.size) for f in found.files]
    headers = {"Content-Disposition": f'attachment; filename="{root}.tar"'}
    chunks = tar_stream(parts.storage, files, root, int(found.created_at))
    return StreamingResponse(in_threads(chunks, parts.download_reads), media_type="application/x-tar", headers=headers)


def file_response(parts: Parts, path: str, sha256: str, size: int, conditional: Conditions) -> Response:
    etag = etag_of(sha256)
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=31536000, immutable"}
    if none_match(conditional.if_none_match, etag):
        return Response(status_code=304, headers=headers)
    try:
        span = byte_range(conditional.range, conditional.if_range, etag, size)
    except Unsatisfiable:
        raise Problem(416, f"the range is outside the file ({size} bytes)", code="range_not_satisfiable",
                      headers={"Content-Range": f"bytes */{size}"}) from None  # fmt: skip
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if span is None:
        chunks = in_threads(parts.storage.read(sha256), parts.download_reads)
        return StreamingResponse(chunks, media_type=media_type, headers=headers | {"Content-Length": str(size)})
    start, end = span
    headers |= {"Content-Range": f"bytes {start}-{end - 1}/{size}", "Content-Length": str(end - start)}
    chunks = in_threads(parts.storage.read(sha256, start, end), parts.download_reads)
    return StreamingResponse(chunks, status_code=206, media_type=media_type, headers=headers)


async def in_threads(chunks: Iterator[bytes], limiter: CapacityLimiter) -> AsyncIterator[bytes]:
    """The chunks of a blocking iterator, each read in a thread of `limiter`; the iterator is closed at the end."""
    try:
        while (chunk := await to_thread.run_sync(next, chunks, None, limiter=limiter)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)  # generators (a file or an S3 body is closed with them)
        if close is not None:
            close()


def _file(version, path: str):
    found = next((f for f in version.files if f.path == path), None)
    if found is None:
        raise Problem(404, "no such file in this version", [{"field": "path", "message": "not a file of this version"}], "not_found")
    return found
