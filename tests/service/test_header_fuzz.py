"""No request header value makes the gateway answer 5xx (issue 11).

Each header the gateway reads itself (Last-Event-ID, Range, If-Range, If-None-Match,
Idempotency-Key) gets any bytes a client could send, sent raw (bytes >= 0x80 included, as
a server decodes them: Latin-1), and the answer must be what the RFCs say: the header used,
ignored, or a 400 problem that names it.
"""

import re
from functools import partial

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.api.event_stream import LARGEST_EVENT_ID
from service.app import create_app
from tests.service.conftest import make_settings
from tests.service.service_helpers import KEY_A, UNET, start_gateway

EXAMPLES = 80
FILE = f"/v1/models/tiny/versions/1/files/{UNET}"
PROBLEM = "application/problem+json"
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# What a client could put in a header line: anything but the CR and LF that end it.
any_bytes = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
digits = st.one_of(st.just(""), st.integers(0, 10**25).map(str), st.text("0123456789", max_size=30))
# A superscript two (Python's isdigit() says yes), an Arabic-Indic three, signs, other bases.
tricky = st.sampled_from(["\xb2", "\u0663", "-1", "+1", " 7 ", "0x10", "1e3", "1_000", "99999999999999999999"])


def encoded(text: str) -> bytes:
    """One byte per character where Latin-1 has it (as a server reads it), else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def bytes_of(*strategies) -> st.SearchStrategy[bytes]:
    return st.one_of(any_bytes, *(s.map(encoded) for s in strategies))


class RawClient:
    """httpx on the app through its ASGI transport, which passes header bytes as they are
    (Starlette's TestClient re-encodes them as UTF-8), called from synchronous tests."""

    def __init__(self, app, portal):
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        self.portal = portal

    def get(self, path: str, headers: dict) -> httpx.Response:
        return self.portal.call(partial(self.http.get, path, headers=headers))

    def post(self, path: str, headers: dict, json=None) -> httpx.Response:
        return self.portal.call(partial(self.http.post, path, headers=headers, json=json))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, tiny_pipeline):
    """A client of a gateway on SQLite, the file's bytes and ETag, and a job that has ended
    (its event stream ends at once)."""
    gateway_settings = make_settings(tmp_path_factory.mktemp("fuzz") / "data")
    start_gateway(gateway_settings, tiny_pipeline).close()  # migrate, register `tiny`
    with start_blocking_portal() as portal:
        client = RawClient(create_app(gateway_settings), portal)
        job = client.post("/v1/jobs", KEY_A, {"base_model": {"name": "tiny"}, "concepts": ["cat"]}).json()
        assert client.post(f"/v1/jobs/{job['id']}/cancel", KEY_A).json()["status"] == "cancelled"
        whole = client.get(FILE, KEY_A)
        yield client, job["id"], whole.content, whole.headers["etag"]
        portal.call(client.http.aclose)


def assert_problem_naming(response, header: str) -> None:
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM, response.text
    assert response.json()["errors"][0]["field"] == header


@fuzz
@given(value=bytes_of(st.integers(-(10**22), 10**22).map(str), tricky))
@example(value=b"\xb2")
@example(value=b"99999999999999999999")
@example(value=str(LARGEST_EVENT_ID).encode())
def test_last_event_id(gateway, value):
    client, job_id, _, _ = gateway
    headers = KEY_A | {"Accept": "text/event-stream", "Last-Event-ID": value}
    response = client.get(f"/v1/jobs/{job_id}/events", headers=headers)
    text = value.decode("latin-1").strip()
    if text == "" or (re.fullmatch("[0-9]{1,19}", text) and int(text) <= LARGEST_EVENT_ID):
        assert response.status_code == 200 and response.text.rstrip().endswith('data: {"status": "cancelled"}')
    else:
        assert_problem_naming(response, "Last-Event-ID")


range_specs = st.builds(lambda first, last: f"{first}-{last}", digits, digits)
ranges = st.one_of(
    st.builds(lambda unit, spec: f"{unit}={spec}", st.sampled_from(["bytes", "Bytes", "BYTES", "bits", "", "bytes "]), range_specs),
    st.lists(range_specs, min_size=2, max_size=4).map(lambda specs: "bytes=" + ",".join(specs)),
    tricky.map(lambda t: f"bytes={t}-"),
)


@fuzz
@given(value=bytes_of(ranges))
@example(value=b"bytes=0-" + b"9" * 5000)
@example(value=b"bytes=" + b"0" * 5000 + b"1-2")
@example(value=b"bytes=-" + b"9" * 5000)
def test_range(gateway, value):
    client, _, data, _ = gateway
    response = client.get(FILE, headers=KEY_A | {"Range": value})
    assert response.status_code in (200, 206, 416), response.text
    if response.status_code == 200:
        assert response.content == data
    elif response.status_code == 206:
        first, last, size = map(int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers["content-range"]).groups())
        assert size == len(data) and response.content == data[first : last + 1] and response.content
    else:
        assert response.headers["content-type"] == PROBLEM and response.headers["content-range"] == f"bytes */{len(data)}"


@fuzz
@given(value=bytes_of(st.lists(st.sampled_from(['"x"', "W/", "*", ",", " ", '"', "W/\"x\""]), max_size=8).map("".join)))
def test_if_none_match(gateway, value):
    client, _, data, etag = gateway
    response = client.get(FILE, headers=KEY_A | {"If-None-Match": value})
    assert response.status_code in (200, 304)
    assert response.status_code == 304 or response.content == data


@fuzz
@given(value=bytes_of(st.sampled_from(["Sat, 29 Oct 1994 19:43:31 GMT", "W/", '"', "*"])))
def test_if_range(gateway, value):
    """An If-Range that is not the file's ETag means: the copy is stale, send all of it."""
    client, _, data, etag = gateway
    response = client.get(FILE, headers=KEY_A | {"Range": "bytes=10-", "If-Range": value})
    assert response.status_code in (200, 206)
    if value.decode("latin-1").strip() == etag:
        assert response.status_code == 206 and response.content == data[10:]
    else:
        assert response.status_code == 200 and response.content == data


def test_if_range_with_the_etag_resumes(gateway):
    client, _, data, etag = gateway
    response = client.get(FILE, headers=KEY_A | {"Range": "bytes=10-", "If-Range": etag.encode()})
    assert response.status_code == 206 and response.content == data[10:]


@fuzz
@given(value=bytes_of(st.text(st.characters(codec="ascii"), max_size=300)))
@example(value=b"k" * 255)
@example(value=b"k" * 256)
@example(value=b"\x00")
@example(value=b"")
def test_idempotency_key(gateway, value):
    client = gateway[0]
    body = {"base_model": {"name": "tiny"}, "concepts": ["fuzz"]}
    response = client.post("/v1/jobs", KEY_A | {"Idempotency-Key": value}, body)
    text = value.decode("latin-1").strip()
    if re.fullmatch("[\x20-\x7e]{1,255}", text):
        assert response.status_code in (200, 202), response.text
    else:
        assert_problem_naming(response, "Idempotency-Key")
