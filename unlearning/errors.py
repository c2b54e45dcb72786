"""The library's exceptions.

LetheError
 ├── InvalidInput (also a ValueError): the caller's input is wrong; `.field` names it.
 │    └── NotAPipeline: a folder is not a Stable Diffusion pipeline; `.missing` lists what is absent.
 └── Stopped: `should_stop()` asked the loop to end; the last saved state is kept.
"""

from __future__ import annotations


class LetheError(Exception):
    """Base of every error the library raises on purpose."""


class InvalidInput(LetheError, ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotAPipeline(InvalidInput):
    def __init__(self, path, missing: list[str]):
        super().__init__("base", f"{path} is not a Stable Diffusion pipeline folder: missing {', '.join(missing)}")
        self.missing = missing


class Stopped(LetheError):
    def __init__(self, step: int):
        super().__init__(f"stopped at step {step} on request")
        self.step = step
