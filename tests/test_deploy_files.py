"""The Dockerfile and docker-compose.yml, checked without a Docker engine.

Structure of the compose file (services, GPU reservations, health checks, the settings
pointing at Redis, PostgreSQL and MinIO, volumes), and the commands the image runs are
real subcommands of the installed `lethe` console script.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LETHE_SERVICES = ("gateway", "worker-gpu0", "worker-gpu1")
WORKERS = ("worker-gpu0", "worker-gpu1")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def interpolated(value: str) -> str:
    """A compose value with `${VAR:-default}` / `${VAR:?message}` resolved as for a fresh shell."""
    def resolve(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3) or ""
        if op == ":-":
            return rest
        return {"LETHE_API_KEYS": "a-long-random-key:default:admin"}.get(name, "set")
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", resolve, str(value))


def settings_of(service: dict) -> dict[str, str]:
    return {k: interpolated(v) for k, v in service["environment"].items()}


def lethe_executable() -> str:
    beside_python = Path(sys.executable).parent / "lethe"
    return str(beside_python) if beside_python.exists() else shutil.which("lethe")


def test_every_part_is_a_service(services):
    assert {"gateway", "worker-gpu0", "worker-gpu1", "redis", "postgres", "minio", "minio-init"} <= set(services)


def test_each_worker_reserves_its_own_gpu(services):
    device_ids = []
    for name in WORKERS:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, name
        assert devices[0]["driver"] == "nvidia"
        assert "gpu" in devices[0]["capabilities"]
        device_ids += devices[0]["device_ids"]
    assert sorted(device_ids) == ["0", "1"]
    assert "deploy" not in services["gateway"]  # the gateway needs no GPU


def test_long_running_services_have_health_checks(services):
    for name in ("gateway", *WORKERS, "redis", "postgres", "minio"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    assert "/livez" in " ".join(services["gateway"]["healthcheck"]["test"])


def test_depends_on_waits_for_health_and_the_bucket(services):
    for name, service in services.items():
        for needed, rule in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on unknown {needed}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}, which has no health check"
    for name in LETHE_SERVICES:
        needs = services[name]["depends_on"]
        for part in ("redis", "postgres"):
            assert needs[part]["condition"] == "service_healthy", (name, part)
        assert needs["minio-init"]["condition"] == "service_completed_successfully", name
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_redis_persists_and_never_evicts(services):
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_settings_point_at_redis_postgres_and_minio(services):
    for name in LETHE_SERVICES:
        env = settings_of(services[name])
        database, broker = urlsplit(env["LETHE_DATABASE_URL"]), urlsplit(env["LETHE_BROKER_URL"])
        assert database.scheme.startswith("postgresql") and database.hostname == "postgres", name
        assert broker.scheme == "redis" and broker.hostname == "redis", name
        assert env["LETHE_STORAGE_URL"].startswith("s3://"), name
        assert urlsplit(env["LETHE_S3_ENDPOINT_URL"]).hostname == "minio", name
        assert env["LETHE_S3_ACCESS_KEY_ID"] and env["LETHE_S3_SECRET_ACCESS_KEY"], name


def test_credentials_match_the_servers(services):
    env = settings_of(services["gateway"])
    postgres = {k: interpolated(v) for k, v in services["postgres"]["environment"].items()}
    minio = {k: interpolated(v) for k, v in services["minio"]["environment"].items()}
    database = urlsplit(env["LETHE_DATABASE_URL"])
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    assert env["LETHE_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["LETHE_S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]


def test_the_bucket_created_is_the_bucket_used(services):
    bucket = urlsplit(settings_of(services["gateway"])["LETHE_STORAGE_URL"]).hostname
    init = " ".join(services["minio-init"]["command"])
    assert re.search(rf"mc mb (--ignore-existing )?\w+/{re.escape(bucket)}\b", init), init


def test_every_lethe_variable_is_a_real_setting(services):
    fields = set(Settings.model_fields)
    for name in LETHE_SERVICES:
        env = settings_of(services[name])
        unknown = {key for key in env if key.startswith("LETHE_") and key[6:].lower() not in fields}
        assert not unknown, f"{name}: not settings of service/settings.py: {unknown}"
        # and the values parse as the service would read them
        values = {key[6:].lower(): value for key, value in env.items() if key.startswith("LETHE_")}
        settings = Settings(**values)
        assert settings.broker_url == env["LETHE_BROKER_URL"]


def test_state_lives_on_named_volumes(compose, services):
    declared = set(compose["volumes"])
    mounts = {"redis": "/data", "postgres": "/var/lib/postgresql/data", "minio": "/data"}
    for name, path in mounts.items():
        volume, _, target = services[name]["volumes"][0].partition(":")
        assert volume in declared and target == path, name
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith(("/", ".", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    worker_volumes = {services[w]["volumes"][0].split(":")[0] for w in WORKERS}
    assert len(worker_volumes) == len(WORKERS)  # each worker its own caches and scratch folder


def test_a_stopped_worker_has_time_to_hand_its_job_over(services):
    # On SIGTERM the job saves and uploads its state (GBs for a whole UNet) before it exits.
    for name in WORKERS:
        grace = re.fullmatch(r"(\d+)(s|m)", services[name]["stop_grace_period"])
        assert grace, name
        assert int(grace[1]) * {"s": 1, "m": 60}[grace[2]] >= 120, name


def test_dockerfile_has_a_cuda_base_a_user_and_a_health_check(dockerfile):
    instructions = dict(dockerfile)
    base = instructions["ARG"].split("=", 1)[1] if "${" in instructions["FROM"] else instructions["FROM"]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and "runtime" in base
    users = [args for op, args in dockerfile if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "/livez" in instructions["HEALTHCHECK"]
    assert any(op == "RUN" and "pip install ." in args for op, args in dockerfile)


def test_dockerfile_copies_paths_that_exist(dockerfile):
    for op, args in dockerfile:
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerignore_keeps_the_venv_and_git_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored


def image_commands(dockerfile, services) -> dict[str, list[str]]:
    instructions = dict(dockerfile)
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    assert entrypoint == ["lethe"]
    commands = {"Dockerfile CMD": json.loads(instructions["CMD"])}
    for name in LETHE_SERVICES:
        command = services[name]["command"]
        commands[name] = command if isinstance(command, list) else shlex.split(command)
    return commands


def test_the_image_runs_real_lethe_subcommands(dockerfile, services):
    lethe = lethe_executable()
    assert lethe, "the lethe console script is not installed"
    for where, command in image_commands(dockerfile, services).items():
        subcommand, options = command[0], [word for word in command[1:] if word.startswith("--")]
        run = subprocess.run([lethe, subcommand, "--help"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert run.returncode == 0, f"{where}: lethe {subcommand} --help -> {run.returncode}: {run.stderr}"
        for option in options:
            assert option in run.stdout, f"{where}: lethe {subcommand} has no option {option}"


def test_the_readme_documents_every_setting_and_no_other():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`LETHE_([A-Z0-9_]+)`", section))
    client_only = {"URL", "API_KEY"}
    assert documented - client_only == {name.upper() for name in Settings.model_fields}
