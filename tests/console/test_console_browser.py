"""The web console in a real browser against a real `lethe serve`.

Sign in, submit an erasure on the tiny pipeline, follow it on its page (event stream), cancel
jobs queued behind it (jobs list polling, the cancel button), watch it finish in the jobs list,
read its loss chart, open the version it made (lineage, figures, labelled grids that load, a download
through a Blob URL), and read /docs and /redoc with no request leaving loopback. Also: a
keyboard-only sign-in, and a refused field shown next to its input.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import missing_browser

pytestmark = pytest.mark.slow
if reason := missing_browser():
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402  (after the skip: it may be missing)

# Small enough for seconds on a CPU; 20 steps give two `metrics` events (every 10 steps).
TINY_SETTINGS = {"steps": "20", "batch_size": "2", "num_prompts": "4", "generation_steps": "2",
                 "generation_batch_size": "4", "eval_prompts": "4"}
JOB_TIMEOUT_MS = 90_000
PHONE = {"width": 390, "height": 844}


class PageLog:
    """Every URL a page requested, and every error its scripts met (CSP refusals among them)."""

    def __init__(self, page):
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def off_loopback(self) -> list[str]:
        return [url for url in self.urls if urlsplit(url).scheme not in ("blob", "data")
                and urlsplit(url).hostname != "127.0.0.1"]


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)  # a shared 2-core machine can be slow; a failure still fails
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()


def sign_in(page, server, key):
    page.goto(f"{server.url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Jobs")).to_be_visible()


def test_erase_watch_and_inspect_the_version(context, page, live_server, admin_key, artifacts):
    """A tiny job from the form to its version. Its page stays open in one tab (the event stream);
    in another, two jobs queued behind it are cancelled, one through the API while the jobs list
    shows it (the list polls), one with the job page's button; then it finishes in the list."""
    log = PageLog(page)
    sign_in(page, live_server, admin_key)
    job_id = submit_through_the_form(page, artifacts)
    queued = [submit_through_the_api(live_server, admin_key) for _ in range(2)]  # behind it: one worker

    other_tab = context.new_page()
    other_log = PageLog(other_tab)
    sign_in(other_tab, live_server, admin_key)  # a tab's sessionStorage is its own
    cancel_two_queued_jobs(other_tab, live_server, admin_key, queued, artifacts)
    watch_it_finish_in_the_jobs_list(other_tab, job_id, artifacts)

    # The first tab drew the job page a moment after the job was made and has not moved since:
    # all it shows now came on the event stream.
    expect(page.get_by_role("row").filter(has_text="job succeeded")).to_have_count(1)
    expect(page.locator(".live .progress-line .status")).to_have_text("succeeded")
    chart = page.locator("svg.loss-chart")
    expect(chart.locator(".series-forget circle")).to_have_count(2)  # steps 10 and 20
    expect(chart.locator(".series-retain circle")).to_have_count(2)
    expect(page.get_by_role("button", name="Cancel this job")).to_have_count(0)  # it has ended
    page.screenshot(path=artifacts / "job.png", full_page=True)

    page.get_by_role("link", name="tiny v2").first.click()
    check_the_version_page(page, artifacts)
    check_a_download(page, live_server, admin_key)
    page.set_viewport_size(PHONE)
    page.screenshot(path=artifacts / "version-phone.png", full_page=True)
    assert not log.off_loopback() and not other_log.off_loopback()
    assert not log.errors and not other_log.errors


def submit_through_the_form(page, artifacts) -> str:
    page.get_by_role("link", name="New job").click()
    expect(page.get_by_label("steps", exact=True)).to_be_visible()  # the method's settings came from /v1/methods
    page.get_by_label("Base model").select_option("tiny")
    page.get_by_label("Concepts to erase").fill("van gogh")
    for name, value in TINY_SETTINGS.items():
        page.get_by_label(name, exact=True).fill(value)
    page.screenshot(path=artifacts / "new-job.png", full_page=True)
    page.get_by_role("button", name="Start the erasure").click()
    expect(page).to_have_url(re.compile(r"#/jobs/job_"))
    expect(page.locator(".live .progress-line .status")).to_be_visible()
    return page.url.rsplit("/", 1)[1]


def submit_through_the_api(server, key) -> str:
    body = {"base_model": {"name": "tiny"}, "concepts": ["cat"], "hyperparameters": {"steps": 10_000}}
    return httpx.post(f"{server.url}/v1/jobs", headers=auth(key), json=body).json()["id"]


def cancel_two_queued_jobs(page, server, key, job_ids, artifacts):
    by_api, by_button = job_ids
    page.get_by_role("link", name="Jobs", exact=True).click()
    status = page.get_by_role("row").filter(has=page.get_by_role("link", name=by_api)).locator(".status")
    expect(status).to_have_text("queued")
    page.screenshot(path=artifacts / "jobs-running.png", full_page=True)
    httpx.post(f"{server.url}/v1/jobs/{by_api}/cancel", headers=auth(key))
    expect(status).to_have_text("cancelled")  # the list polls while a job is unfinished

    page.get_by_role("link", name=by_button).click()
    page.get_by_role("button", name="Cancel this job").click()
    expect(page.locator(".live .progress-line .status")).to_have_text("cancelled", timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Cancel this job")).to_have_count(0)


def watch_it_finish_in_the_jobs_list(page, job_id, artifacts):
    page.get_by_role("link", name="Jobs", exact=True).click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=job_id))
    expect(row.locator(".status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(row.get_by_role("link", name="tiny v2")).to_be_visible()
    page.screenshot(path=artifacts / "jobs-done.png", full_page=True)


def check_the_version_page(page, artifacts):
    expect(page.get_by_role("heading", level=1, name="tiny version 2")).to_be_visible()
    lineage = page.locator("section", has=page.get_by_role("heading", name="Lineage"))
    expect(lineage.get_by_role("link", name="version 1")).to_be_visible()
    expect(lineage).to_contain_text("van gogh")
    expect(lineage).to_contain_text("Stable Diffusion 1.x / 2.x")
    audit = page.locator("section", has=page.get_by_role("heading", name="Audit", exact=True))
    expect(audit).to_contain_text("does not seem to draw 'van gogh'")  # a random tiny model draws nothing
    for caption in ("forget prompts, before", "forget prompts, after", "retain prompts, before", "retain prompts, after"):
        expect(page.locator("figure.grid figcaption", has_text=caption)).to_have_count(1)
    grids = page.locator("figure.grid img")
    expect(grids).to_have_count(4)
    wait_until(page, "[...document.querySelectorAll('figure.grid img')].every(i => i.complete && i.naturalWidth > 0)")
    sizes = grids.evaluate_all("images => images.map(i => [i.naturalWidth, i.getBoundingClientRect().height])")
    assert all(width > 0 and shown >= 64 for width, shown in sizes), sizes  # tiny grids are scaled up to be seen
    expect(page.locator("ol.prompts").first.locator("li")).to_have_count(4)
    expect(page.locator("table.numbers")).to_contain_text("forget loss")
    page.screenshot(path=artifacts / "version.png", full_page=True)


def check_a_download(page, server, key):
    files = httpx.get(f"{server.url}/v1/models/tiny/versions/2", headers=auth(key)).json()["files"]
    delta = next(f for f in files if f["path"] == "delta.safetensors")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the delta (.safetensors)").click()
    assert download.value.suggested_filename == "tiny-v2-delta.safetensors"
    assert Path(download.value.path()).stat().st_size == delta["size"]


def test_a_refused_field_is_shown_next_to_its_input(page, live_server, admin_key):
    sign_in(page, live_server, admin_key)
    page.goto(f"{live_server.url}/console/#/new")
    page.get_by_label("Concepts to erase").fill("   ")  # passes `required`, but holds no concept
    page.get_by_role("button", name="Start the erasure").click()
    summary = page.get_by_role("alert").filter(has_text="The job was not started")
    expect(summary).to_be_visible()
    expect(page.get_by_label("Concepts to erase")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#concepts-error")).not_to_be_empty()


def test_keyboard_only_sign_in(page, live_server, admin_key):
    page.goto(f"{live_server.url}/console/")
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "api-key":
            break
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.keyboard.type(admin_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Jobs")).to_be_visible()


def test_wrong_key_is_refused(page, live_server):
    page.goto(f"{live_server.url}/console/")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The server does not know this key.")
    assert page.evaluate("sessionStorage.length") == 0


@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .opblock"), ("/redoc", "[data-section-id]")])
def test_api_docs_render_offline(page, live_server, artifacts, path, rendered):
    log = PageLog(page)
    page.goto(f"{live_server.url}{path}")
    expect(page.locator(rendered).first).to_be_visible()
    expect(page.get_by_text("POST /v1/jobs").or_(page.get_by_text("/v1/jobs", exact=True)).first).to_be_attached()
    page.screenshot(path=artifacts / f"{path.strip('/')}.png")
    assert log.urls and not log.off_loopback(), log.off_loopback()


def test_root_and_console_lead_to_the_console(live_server):
    for path in ("/", "/console"):
        answer = httpx.get(f"{live_server.url}{path}")
        assert answer.status_code == 307 and answer.headers["location"] == "/console/"
    page = httpx.get(f"{live_server.url}/console/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]


def wait_until(page, expression: str, timeout_s: float = 15.0) -> None:
    """Poll a JavaScript expression until it is true (page.wait_for_function polls through eval,
    which the console's Content-Security-Policy refuses, as it should)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true after {timeout_s} s: {expression}"
        time.sleep(0.1)


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}
