"""Input hygiene: text fields refuse control characters (422 naming the field, nothing written);
job errors reach callers without server paths; the client prints old rows' control
characters escaped."""

import pytest

from service import jobs
from service.cli.client import main as lethe
from service.jobs import JobSpec
from tests.service.service_helpers import ADMIN, KEY_A
from tests.service.test_api_bad_input import GOOD, assert_problem, nothing_written

CONTROLS = {"NUL": "\x00", "ESC": "\x1b", "tab": "\t", "newline": "\n", "CR": "\r", "DEL": "\x7f",
            "CSI (C1)": "\x9b", "NEL (C1)": "\x85"}  # fmt: skip

TEXT_FIELDS = {
    "concepts[1]": lambda text: {"concepts": ["cat", f"van{text}gogh"]},
    "preserve[0]": lambda text: {"preserve": [f"claude{text}monet"]},
    "prompts.forget[0]": lambda text: {"prompts": {"forget": [f"a cat{text}"]}},
    "prompts.retain[1]": lambda text: {"prompts": {"retain": ["a dog", f"{text}a bird"]}},
    "base_model.name": lambda text: {"base_model": {"name": f"tiny{text}"}},
    "method": lambda text: {"method": f"rg{text}"},
    "metadata.ticket": lambda text: {"metadata": {"ticket": f"T-1{text}"}},
}


@pytest.mark.parametrize("character", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_a_control_character_is_refused_naming_the_field(shared_gateway, field, character):
    client, settings, store = shared_gateway
    response = client.post("/v1/jobs", json=GOOD | TEXT_FIELDS[field](character), headers=KEY_A)
    assert_problem(response, 422, field)
    message = response.json()["errors"][0]["message"]
    assert field == "base_model.name" or f"U+{ord(character):04X}" in message
    nothing_written(settings, store)


@pytest.mark.parametrize("character", ["\x00", "\x1b"])
def test_a_control_character_in_a_metadata_key_is_refused(shared_gateway, character):
    client, settings, store = shared_gateway
    response = client.post("/v1/jobs", json=GOOD | {"metadata": {f"k{character}": "v"}}, headers=KEY_A)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"].startswith("metadata.")
    nothing_written(settings, store)


@pytest.mark.parametrize("concept", ["cat\n", "\tcat", " cat\r\n"])
def test_controls_at_the_ends_are_refused_not_stripped(shared_gateway, concept):
    client, settings, store = shared_gateway
    assert_problem(client.post("/v1/jobs", json=GOOD | {"concepts": [concept]}, headers=KEY_A), 422, "concepts[0]")
    nothing_written(settings, store)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "tiny\x00", "source": {"path": "/srv/models/sd"}}, "name"),
    ({"name": "other", "source": {"path": "/srv/models/sd\x00"}}, "source.path"),
    ({"name": "other", "source": {"path": "/srv/models/\x1b[2Jsd"}}, "source.path"),
    ({"name": "other", "source": {"path": "/srv/models/sd"}, "tenant": "tenant-a\n"}, "tenant"),
])  # fmt: skip
def test_registration_refuses_control_characters(shared_gateway, body, field):
    client = shared_gateway[0]
    assert_problem(client.post("/v1/models", json=body, headers=ADMIN), 422, field)


def test_text_without_control_characters_is_kept_as_sent(client):
    body = GOOD | {"concepts": ["café", "梵高 style"], "preserve": ["Ünïcödé — ok"],
                   "prompts": {"forget": ["a cat on a mat, 8/10"]}, "metadata": {"ticket": "T-1 ✓"}}
    created = client.post("/v1/jobs", json=body, headers=KEY_A)
    assert created.status_code == 202, created.text
    job = client.get(f"/v1/jobs/{created.json()['id']}", headers=KEY_A).json()
    assert (job["concepts"], job["preserve"], job["metadata"]) == (body["concepts"], body["preserve"], body["metadata"])
    assert job["prompts"]["forget"] == ["a cat on a mat, 8/10"]


def test_a_job_error_reaches_the_caller_without_server_paths(client, store):
    job_id = client.post("/v1/jobs", json=GOOD, headers=KEY_A).json()["id"]
    jobs.claim(store, job_id, "w")
    message = ("failed on each of 3 attempts; last: FileNotFoundError: [Errno 2] No such file or directory: "
               "'/data/cache/versions/ab12/unet/diffusion_pytorch_model.safetensors' (step 3/10, loaded from /srv/models/sd)")
    jobs.finish(store, job_id, "failed", worker="w", error={"code": "internal", "message": message})

    shown = client.get(f"/v1/jobs/{job_id}", headers=KEY_A).json()["error"]
    assert shown == {"code": "internal", "message": "failed on each of 3 attempts; last: FileNotFoundError: [Errno 2] "
                                                    "No such file or directory: '<path>' (step 3/10, loaded from <path>)"}
    assert client.get("/v1/jobs", headers=KEY_A).json()["data"][0]["error"] == shown
    final = client.get(f"/v1/jobs/{job_id}/events", headers=KEY_A).json()["data"][-1]
    assert "/data/" not in final["message"] and "/srv/" not in final["message"] and "<path>" in final["message"]
    assert final["data"]["error"] == shown
    store.expire_all()
    assert "/data/cache" in jobs.get_job(store, job_id).error["message"]  # the row keeps it, for the operator


def test_the_client_prints_old_rows_control_characters_escaped(live_server, store, capsys):
    # A row written before the gateway refused control characters (or by another way in).
    spec = JobSpec(base_model="tiny", base_version=1, concepts=["\x1b]0;owned\x07cat", "dog\x1b[2J"], method="rg")
    job_id = jobs.create_job(store, "tenant-a", spec).id
    jobs.claim(store, job_id, "w")
    jobs.finish(store, job_id, "failed", worker="w", error={"code": "internal", "message": "bad\x1b[31m red\nline"})
    environ = {"LETHE_URL": f"http://127.0.0.1:{live_server}", "LETHE_API_KEY": "key-a"}

    assert lethe(["jobs"], environ) == 0
    assert lethe(["status", job_id], environ) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07cat, dog\\x1b[2J" in out
    assert "internal: bad\\x1b[31m red\\nline" in out
