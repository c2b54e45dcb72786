"""HTTP download rules for immutable blobs: byte ranges, strong ETags, conditional requests.

A version's files never change, so the ETag is the file's sha256 and every validator is strong.
No header value makes these functions raise, except a Range that asks for bytes the file
does not have (`Unsatisfiable`, 416): whatever they cannot parse they ignore (RFC 9110 14.2,
13.1.2, 13.1.5), which means "send the whole file".
"""

from __future__ import annotations

import re

RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
BEYOND_ANY_FILE = 10**18  # what a position of more digits than that means


class Unsatisfiable(Exception):
    """The Range asks for bytes the file does not have (416)."""


def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def none_match(if_none_match: str | None, etag: str) -> bool:
    """True when If-None-Match names this ETag (weak comparison, RFC 9110 13.1.2) or is `*`."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def byte_range(range_header: str | None, if_range: str | None, etag: str, size: int) -> tuple[int, int] | None:
    """[start, end) to send, or None for the whole file.

    Only one range is served; a multi-range or malformed header is ignored (RFC 9110 allows
    it). If-Range that is not this exact ETag (strong comparison; dates are never strong here)
    means: the client's copy is stale, send it whole.
    """
    if not range_header or (if_range is not None and if_range.strip() != etag):
        return None
    match = RANGE.fullmatch(range_header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = (_position(group) for group in match.groups())
    if first is None:  # the last N bytes
        if last == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - last), size
    if last is not None and last < first:
        return None  # invalid range: ignored
    if first >= size:
        raise Unsatisfiable
    return first, size if last is None else min(last + 1, size)


def _position(digits: str) -> int | None:
    """A byte position of the Range header; any number of digits, never a slow int()."""
    if digits == "":
        return None
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 18 else BEYOND_ANY_FILE
