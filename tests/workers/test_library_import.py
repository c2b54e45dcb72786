"""The library's heavy imports run in a thread while the job keeps reporting."""

from __future__ import annotations

import sys

from workers.library_import import LibraryImport


def test_the_library_is_imported_in_a_thread_and_the_wait_reports_until_it_is():
    reports = []
    LibraryImport().wait(lambda: reports.append("preparing 0/1"), every_s=0.01)
    assert {"unlearning.api", "diffusers", "torch"} <= set(sys.modules)
    assert sys.modules["diffusers"].StableDiffusionXLPipeline  # each family's pipeline class is loaded
    assert all(report == "preparing 0/1" for report in reports)
