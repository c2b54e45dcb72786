"""The library's heavy imports in a thread, while the job reports that it is preparing.

torch, diffusers and transformers load lazily: tens of seconds the first time in a process on a
busy CPU, and each job runs in a fresh task child. Done inline, the job sat silent at `preparing
0/1` meanwhile; here they run beside the download of the base, and the job reports its progress
again every second until they are done. An import that fails fails again, with its traceback,
where the job imports the library itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class LibraryImport:
    def __init__(self):
        self.done = threading.Event()
        threading.Thread(target=self._run, name="lethe-library-import", daemon=True).start()

    def _run(self) -> None:
        try:
            from unlearning.pipeline import import_libraries

            import_libraries()
        except BaseException as error:  # noqa: BLE001  (the job's own import reports it)
            log.warning("importing the library ahead failed (%s: %s)", type(error).__name__, error)
        finally:
            self.done.set()

    def wait(self, report: Callable[[], None], every_s: float = 1.0) -> None:
        """Until the imports are over, calling `report` every `every_s` seconds."""
        while not self.done.wait(every_s):
            report()
