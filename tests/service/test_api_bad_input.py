"""Bad input: a problem+json naming the field, and nothing written, nothing enqueued."""

import pytest
from sqlalchemy import func, select

from service.models import IdempotencyKey, Job, JobEvent
from tests.service.service_helpers import ADMIN, KEY_A, broker_messages

GOOD = {"base_model": {"name": "tiny"}, "concepts": ["van gogh"]}


def with_(**changes):
    return GOOD | changes


def hp(**values):
    return with_(hyperparameters=values)


BAD_BODIES = [
    (with_(concepts=[]), "concepts"),
    (with_(concepts=["x"] * 11), "concepts"),
    (with_(concepts=["x" * 201]), "concepts[0]"),
    (with_(concepts=["   "]), "concepts[0]"),
    (with_(concepts="van gogh"), "concepts"),
    ({"base_model": {"name": "tiny"}}, "concepts"),
    ({"concepts": ["cat"]}, "base_model"),
    (with_(base_model={"name": "Bad Name"}), "base_model.name"),
    (with_(base_model={"name": "tiny", "version": 0}), "base_model.version"),
    (with_(base_model={"name": "nope"}), "base_model.name"),
    (with_(base_model={"name": "tiny", "version": 7}), "base_model.version"),
    (with_(method="sorcery"), "method"),
    (with_(method=""), "method"),
    (with_(preserve=["p"] * 51), "preserve"),
    (with_(prompts={"forget": ["x" * 501]}), "prompts.forget[0]"),
    (with_(prompts={"forget": [], "other": []}), "prompts.other"),
    (hp(steps=0), "hyperparameters.steps"),
    (hp(steps=10_001), "hyperparameters.steps"),
    (hp(steps="100"), "hyperparameters.steps"),
    (hp(steps=1.5), "hyperparameters.steps"),
    (hp(learning_rate=0), "hyperparameters.learning_rate"),
    (hp(learning_rate=0.1), "hyperparameters.learning_rate"),
    (hp(batch_size=0), "hyperparameters.batch_size"),
    (hp(batch_size=65), "hyperparameters.batch_size"),
    (hp(retain_weight=-1), "hyperparameters.retain_weight"),
    (hp(retain_weight=101), "hyperparameters.retain_weight"),
    (hp(forget_loss_ceiling=0), "hyperparameters.forget_loss_ceiling"),
    (hp(num_prompts=0), "hyperparameters.num_prompts"),
    (hp(num_prompts=10_001), "hyperparameters.num_prompts"),
    (hp(trainable="everything"), "hyperparameters.trainable"),
    (hp(no_such_setting=1), "hyperparameters.no_such_setting"),
    (with_(method="esd", hyperparameters={"negative_guidance": -1}), "hyperparameters.negative_guidance"),
    (hp(adversarial_every=0), "hyperparameters.adversarial_every"),  # a method's own setting reaches its check
    (hp(forget_target="descent"), "hyperparameters.forget_target"),
    (hp(retain_target="model"), "hyperparameters.retain_target"),
    (with_(method="esd", hyperparameters={"adversarial_steps": 50}), "hyperparameters.adversarial_steps"),
    (hp(guidance_scale=51.0), "hyperparameters.guidance_scale"),
    (with_(seed=-1), "seed"),
    (with_(seed=2**32), "seed"),
    (with_(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
    (with_(metadata={"k": "v" * 513}), "metadata.k"),
    (with_(metadata={"k": 1}), "metadata.k"),
    (with_(audit="thorough"), "audit"),
    (with_(audit=""), "audit"),
    (with_(audit=1), "audit"),
    (with_(surprise=True), "surprise"),
    ([1, 2], "body"),
]


@pytest.fixture
def gateway(shared_gateway):
    client, settings, store = shared_gateway
    nothing_written(settings, store)  # so far
    return shared_gateway


def nothing_written(settings, store):
    for table in (Job, JobEvent, IdempotencyKey):
        assert store.scalar(select(func.count()).select_from(table)) == 0
    assert broker_messages(settings) == 0


def assert_problem(response, status, field):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["instance"] and problem["title"]
    assert field in [e["field"] for e in problem["errors"]], problem
    assert "Traceback" not in response.text


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_each_bound_of_the_job_body(gateway, body, field):
    client, settings, store = gateway
    assert_problem(client.post("/v1/jobs", json=body, headers=KEY_A | {"Idempotency-Key": "k"}), 422, field)
    nothing_written(settings, store)


def test_malformed_json(gateway):
    client, settings, store = gateway
    response = client.post("/v1/jobs", content=b'{"concepts": [', headers=KEY_A | {"Content-Type": "application/json"})
    assert_problem(response, 400, "body")
    nothing_written(settings, store)


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body(gateway, chunked):
    client, settings, store = gateway
    body = b'{"concepts": ["' + b"x" * (settings.max_body_bytes + 1) + b'"]}'
    content = iter([body]) if chunked else body  # an iterator is sent without Content-Length
    response = client.post("/v1/jobs", content=content, headers=KEY_A | {"Content-Type": "application/json"})
    assert_problem(response, 413, "body")
    nothing_written(settings, store)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic a2V5LWE6"}])
def test_missing_or_wrong_key(gateway, headers):
    client, settings, store = gateway
    for method, path in [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/models"),
                         ("GET", "/v1/models/tiny/versions/1/files/model_index.json")]:  # fmt: skip
        response = client.request(method, path, json=GOOD if method == "POST" else None, headers=headers)
        assert_problem(response, 401, "Authorization")
        assert response.headers["www-authenticate"] == "Bearer"
    nothing_written(settings, store)


def test_admin_route_needs_an_admin_key(gateway, tiny_pipeline):
    client = gateway[0]
    body = {"name": "other", "source": {"path": str(tiny_pipeline)}}
    assert_problem(client.post("/v1/models", json=body, headers=KEY_A), 403, "Authorization")
    assert client.get("/v1/models/other/versions", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [({"name": "tiny", "source": {"path": "{tiny}"}}, 409, "name"),
     ({"name": "other", "source": {"path": "{tiny}/nowhere"}}, 422, "source.path"),
     ({"name": "other", "source": {"path": "{tiny}/unet"}}, 422, "source.path"),
     ({"name": "UPPER", "source": {"path": "{tiny}"}}, 422, "name"),
     ({"name": "other"}, 422, "source"),
     ({"name": "other", "source": {"path": "{tiny}"}, "visibility": "everyone"}, 422, "visibility"),
     ({"name": "other", "source": {"path": "{tiny}"}, "tenant": "nobody"}, 422, "tenant")],
)  # fmt: skip
def test_register_model_bad_input(gateway, tiny_pipeline, body, status, field):
    client = gateway[0]
    if "source" in body:  # a folder under the model root: what is wrong is the name or the folder, not where it is
        body = body | {"source": {"path": body["source"]["path"].format(tiny=tiny_pipeline)}}
    assert_problem(client.post("/v1/models", json=body, headers=ADMIN), status, field)
