"""Base models belong to a tenant: private ones are seen by their tenant alone, public ones by
every tenant; names are per tenant, public names shared; version numbers are per tenant.

The gateway runs on each database with five keys: three tenants, an admin key of tenant-a, and
an admin key of the operator's own tenant `ops`.
"""

import shutil
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from service import jobs, registry
from service.app import create_app
from service.db import make_engine, session_factory
from service.jobs import JobSpec
from service.models import Model
from service.settings import Settings
from service.storage import LocalStorage, open_storage
from tests.service.service_helpers import out_folder

KEYS = "key-a:tenant-a,key-b:tenant-b,key-c:tenant-c,key-admin-a:tenant-a:admin,key-ops:ops:admin"
A, B, C = ({"Authorization": f"Bearer key-{t}"} for t in "abc")
ADMIN_A = {"Authorization": "Bearer key-admin-a"}
OPS = {"Authorization": "Bearer key-ops"}


@pytest.fixture
def gateway(tmp_path, database_url):
    """(client, settings) of a gateway on a migrated database of each kind, no model registered."""
    # The model root: pytest's base temporary folder, where the tiny pipeline and the tests' copies lie.
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, api_keys=KEYS,
                        model_roots=str(tmp_path.parent))  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, settings


@pytest.fixture
def client(gateway):
    return gateway[0]


def register(client, key, name, folder, **fields):
    return client.post("/v1/models", json={"name": name, "source": {"path": str(folder)}} | fields, headers=key)


def registered(client, key, name, folder, **fields) -> dict:
    answer = register(client, key, name, folder, **fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


def model_names(client, key) -> list[str]:
    return [m["name"] for m in client.get("/v1/models", headers=key).json()["data"]]


def post_job(client, key, model, version=None, concept="cat"):
    return client.post("/v1/jobs", json={"base_model": {"name": model, "version": version}, "concepts": [concept]}, headers=key)


def answer_of(response) -> tuple:
    """(status, problem code, fields named) of a problem answer."""
    body = response.json()
    return response.status_code, body["type"].rsplit(":", 1)[-1], [e["field"] for e in body.get("errors", [])]


def with_extra_file(tiny_pipeline, folder):
    """A copy of the tiny pipeline holding one more file, to tell two models of one name apart."""
    shutil.copytree(tiny_pipeline, folder)
    (folder / "README.md").write_text("the other one\n")
    return folder


V1_PATHS = ("/versions", "/versions/1", "/versions/1/files/model_index.json", "/versions/1/archive", "/versions/1/delta")


def test_a_private_base_is_its_tenant_alone(client, tiny_pipeline):
    assert registered(client, ADMIN_A, "sd", tiny_pipeline)["visibility"] == "private"
    assert model_names(client, A) == ["sd"] and model_names(client, B) == []
    for path in V1_PATHS[:4]:
        assert client.get(f"/v1/models/sd{path}", headers=A).status_code == 200, path
    # Tenant B gets what it gets for a model that does not exist at all.
    for path in V1_PATHS:
        theirs, nothing = client.get(f"/v1/models/sd{path}", headers=B), client.get(f"/v1/models/none{path}", headers=B)
        assert answer_of(theirs) == answer_of(nothing) and theirs.status_code == 404, path
        assert theirs.json()["detail"] == nothing.json()["detail"].replace("'none'", "'sd'"), path
    for version in (None, 1):
        refused = post_job(client, B, "sd", version)
        assert answer_of(refused) == answer_of(post_job(client, B, "none", version)) == (422, "unknown_model", ["base_model.name"])
    assert client.get("/v1/jobs", headers=B).json()["data"] == []
    assert post_job(client, A, "sd").status_code == 202


def test_a_public_base_is_seen_and_used_by_every_tenant(client, tiny_pipeline):
    assert registered(client, OPS, "shared", tiny_pipeline, visibility="public")["visibility"] == "public"
    for key in (A, B, C, OPS):
        listed = client.get("/v1/models", headers=key).json()["data"]
        assert [(m["name"], m["visibility"]) for m in listed] == [("shared", "public")]
        assert client.get("/v1/models/shared/versions/1/files/model_index.json", headers=key).status_code == 200
        assert post_job(client, key, "shared", 1).status_code == 202


def test_two_tenants_each_have_a_model_of_the_same_name(client, tiny_pipeline, tmp_path):
    registered(client, ADMIN_A, "sd15", tiny_pipeline)
    registered(client, OPS, "sd15", with_extra_file(tiny_pipeline, tmp_path / "other"), tenant="tenant-b")
    readme = "/v1/models/sd15/versions/1/files/README.md"
    assert client.get(readme, headers=B).content == b"the other one\n"
    assert client.get(readme, headers=A).status_code == 404  # tenant-a's sd15 has no such file
    assert client.get("/v1/models/sd15/versions", headers=OPS).status_code == 404  # neither is the operator's
    assert post_job(client, A, "sd15").status_code == post_job(client, B, "sd15").status_code == 202
    registered(client, OPS, "sd15", tiny_pipeline, tenant="tenant-c")
    assert model_names(client, C) == ["sd15"]


def test_a_public_name_is_one_no_tenant_may_have_another_model_under(client, tiny_pipeline):
    registered(client, ADMIN_A, "mine", tiny_pipeline)
    registered(client, OPS, "shared", tiny_pipeline, visibility="public")
    for key, fields in ((ADMIN_A, {}), (OPS, {"tenant": "tenant-b"}), (OPS, {"visibility": "public"})):
        taken = register(client, key, "shared", tiny_pipeline, **fields)
        assert answer_of(taken) == (409, "name_taken", ["name"]), fields
    # Nor may a public model take a name some tenant already has.
    assert answer_of(register(client, OPS, "mine", tiny_pipeline, visibility="public")) == (409, "name_taken", ["name"])
    assert model_names(client, A) == ["mine", "shared"] and model_names(client, B) == ["shared"]


def test_an_admin_registers_for_another_tenant_only_by_naming_it(client, tiny_pipeline):
    registered(client, ADMIN_A, "own", tiny_pipeline)
    registered(client, ADMIN_A, "given", tiny_pipeline, tenant="tenant-b")
    assert model_names(client, A) == ["own"] and model_names(client, B) == ["given"] and model_names(client, C) == []
    assert answer_of(register(client, ADMIN_A, "typo", tiny_pipeline, tenant="tenant-x")) == (422, "invalid_request", ["tenant"])
    assert answer_of(register(client, B, "self", tiny_pipeline, tenant="tenant-b"))[0] == 403
    assert answer_of(register(client, B, "pub", tiny_pipeline, visibility="public"))[0] == 403
    assert model_names(client, B) == ["given"]


def play_the_worker(store, settings, tiny_pipeline, tmp_path, job_id: str) -> None:
    """What a worker does once its erase is done: claim the job and publish its out folder."""
    job = jobs.claim(store, job_id, "worker-1")
    folder = out_folder(tiny_pipeline, tmp_path / job_id, job_id.encode())
    registry.publish_version(store, open_storage(settings), job.base_model, job.base_version, job_id, folder,
                             job.concepts, job.method, worker="worker-1")  # fmt: skip


def test_two_tenants_jobs_on_one_public_base_number_each_tenant_without_gaps(gateway, tiny_pipeline, tmp_path):
    client, settings = gateway
    registered(client, OPS, "tiny", tiny_pipeline, visibility="public")
    engine = make_engine(settings.database_url)
    made = {"tenant-a": [], "tenant-b": []}
    with session_factory(engine)() as store:
        for concept in ("cat", "dog", "owl"):  # in turn, each on its tenant's newest version: a chain per tenant
            for tenant, key in (("tenant-a", A), ("tenant-b", B)):
                job = post_job(client, key, "tiny", concept=concept).json()
                play_the_worker(store, settings, tiny_pipeline, tmp_path, job["id"])
                made[tenant].append(client.get(f"/v1/jobs/{job['id']}", headers=key).json())
    engine.dispose()
    for tenant, key in (("tenant-a", A), ("tenant-b", B)):
        assert [(j["base_model"]["version"], j["result"]["version"]) for j in made[tenant]] == [(1, 2), (2, 3), (3, 4)]
        versions = client.get("/v1/models/tiny/versions", headers=key).json()["data"]
        assert [(v["version"], v["parent"], v["visibility"]) for v in versions] == [
            (4, 3, "private"), (3, 2, "private"), (2, 1, "private"), (1, None, "public")]
        assert [v["job_id"] for v in versions[:3]] == [j["id"] for j in reversed(made[tenant])]
    assert [v["version"] for v in client.get("/v1/models/tiny/versions", headers=C).json()["data"]] == [1]


def sharing_no_file_with(tiny_pipeline, folder):
    """A copy of the tiny pipeline with a newline after every file: no file's bytes are the same."""
    shutil.copytree(tiny_pipeline, folder)
    for path in folder.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes() + b"\n")
    return folder


class SaysWhenAllIsStored:
    """The real storage; `all_stored` is set once `files` files have been stored through it."""

    def __init__(self, storage, files: int):
        self.storage, self.left, self.all_stored = storage, files, threading.Event()

    def put_file(self, path):
        stored = self.storage.put_file(path)
        self.left -= 1
        if self.left == 0:
            self.all_stored.set()
        return stored


def returned_or_raised(call):
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the test looks at what was raised
        return error


def in_threads(calls) -> list:
    """Run each call in its own thread at once: what it returned, or what it raised."""
    results = [None] * len(calls)

    def run(index, call):
        results[index] = returned_or_raised(call)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_a_registration_waits_for_one_of_a_clashing_name_to_commit(database_url, tiny_pipeline, tmp_path):
    """A public `race` holds its insert uncommitted while a private `race` registers: the second
    passes the first name check (nothing committed yet), then must wait for the first and refuse."""
    engine = make_engine(database_url)
    storage = LocalStorage(tmp_path / "storage")
    # No file in common: a blob row both insert would make the second wait for the first anyway.
    other = sharing_no_file_with(tiny_pipeline, tmp_path / "other")
    second_storage = SaysWhenAllIsStored(storage, files=sum(1 for p in other.rglob("*") if p.is_file()))
    outcome = {}

    def register_the_second():
        with session_factory(engine)() as session:
            outcome["second"] = returned_or_raised(lambda: registry.register_base(
                session, second_storage, "race", other, owner="tenant-a", visibility="private"))

    second = threading.Thread(target=register_the_second)

    def before_the_first_commits(session):
        inserted = any(isinstance(row, Model) for row in session.identity_map.values())
        if inserted and second.ident is None:
            second.start()
            assert second_storage.all_stored.wait(30)
            second.join(1.0)  # from its upload to its insert and name check, unless it waits for the first

    with session_factory(engine)() as first:
        event.listen(first, "before_commit", before_the_first_commits)
        registry.register_base(first, storage, "race", tiny_pipeline, owner="ops", visibility="public")
    second.join(60)
    assert isinstance(outcome["second"], registry.NameTaken), outcome
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Model).where(Model.name == "race")) == 1
    engine.dispose()


def test_concurrent_publishes_of_two_tenants_number_each_line_without_gaps(database_url, tiny_pipeline, tmp_path):
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    storage = LocalStorage(tmp_path / "storage")
    spec = JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg")
    with sessions() as session:
        registry.register_base(session, storage, "tiny", tiny_pipeline, owner=None, visibility="public")
        made = [(tenant, jobs.create_job(session, tenant, spec).id) for tenant in ("tenant-a", "tenant-b") * 3]
    folders = {job_id: out_folder(tiny_pipeline, tmp_path / job_id, job_id.encode()) for _, job_id in made}

    def publish(job_id):
        with sessions() as session:
            return registry.publish_version(session, storage, "tiny", 1, job_id, folders[job_id], ["cat"], "rg")

    published = in_threads([lambda job_id=job_id: publish(job_id) for _, job_id in made])
    assert all(not isinstance(p, Exception) for p in published), published
    with sessions() as session:
        for tenant in ("tenant-a", "tenant-b"):
            versions = registry.list_versions(session, tenant=tenant, name="tiny")
            assert [v.version for v in versions] == [4, 3, 2, 1]
            assert {v.job_id for v in versions[:3]} == {job_id for owner, job_id in made if owner == tenant}
    engine.dispose()
