"""Which failures of a job no retry can mend, so that the job fails at once with a clear code.

- `no_space`: the disk (or the quota) is full: an `OSError` with errno ENOSPC or EDQUOT, at any
  stage (the latents cache, a saved state, the out folder, the versions' storage when it
  publishes), also when another error wraps it or only its text says so (torch's file writer
  reports a full disk as a RuntimeError).
- `invalid_base_model`: the base version's files cannot be loaded: the safetensors or pickle
  reader refuses them. (What the library itself refuses arrives as its `InvalidInput` and
  `NotAPipeline`, already callers' errors with their own codes.)
Anything else may be transient (a database or store that does not answer, a worker lost) and
is retried, up to `max_attempts`.
"""

from __future__ import annotations

import errno
import pickle
from collections.abc import Iterator

NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
NO_SPACE_TEXTS = (
    "no space left on device",  # strerror(ENOSPC)
    "disk quota exceeded",  # strerror(EDQUOT)
    "database or disk is full",  # SQLite's SQLITE_FULL
)


def permanent_failure(error: BaseException) -> dict | None:
    """`{"code": ..., "message": ...}` for a failure that retrying cannot mend, else None."""
    for cause in causes(error):
        if _is_no_space(cause):
            return {"code": "no_space", "message": f"no space left on the server's disk: {_describe(cause)}"}
        if _is_unreadable_weights(cause):
            return {"code": "invalid_base_model", "message": f"the base model's files cannot be loaded: "
                                                             f"{_describe(cause)}"}  # fmt: skip
    return None


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and the errors it was raised from or while handling, each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _is_no_space(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    text = str(error).lower()
    return any(marker in text for marker in NO_SPACE_TEXTS)


def _is_unreadable_weights(error: BaseException) -> bool:
    return isinstance(error, pickle.UnpicklingError) or type(error).__name__ == "SafetensorError"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]
