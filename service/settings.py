"""Every setting of the service, read once at the process edge (`Settings()`) and passed in.

Each field is set by an environment variable named `LETHE_<FIELD>` (upper case). Nothing in
the service reads the environment at import time; tests build `Settings(...)` directly.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LETHE_", extra="ignore")

    # -- where things live ------------------------------------------------------------------
    data_dir: Path = Field(
        Path(".lethe"),
        description="Root of the embedded database, storage, broker folders, caches and job work folders.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the database. Empty: a SQLite file `<data_dir>/lethe.db`. "
        "Distributed: `postgresql+psycopg://user@host/db`.",
    )
    broker_url: str = Field(
        "filesystem://",
        description="Celery broker. `filesystem://` (or empty): the serverless transport on local disk "
        "under `<data_dir>/broker/`. Distributed: `redis://host:6379/0`.",
    )
    storage_url: str = Field(
        "",
        description="Where version files are kept, as content-addressed blobs. Empty: the folder "
        "`<data_dir>/storage`. A path or `file:///path`: that folder. `s3://bucket/prefix`: any "
        "S3-compatible store (see the `s3_*` settings).",
    )
    s3_endpoint_url: str = Field("", description="Endpoint of the S3-compatible store (empty: AWS).")
    s3_region: str = Field("us-east-1", description="Region name passed to the S3 client.")
    s3_access_key_id: str = Field("", description="S3 access key id (empty: boto3's usual lookup).")
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="S3 secret access key.")

    # -- who may call -------------------------------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated `key:tenant` or `key:tenant:admin`. A key may be given as its "
        "hash, `sha256-<64 hex>`, so that no plain key sits in the configuration. Kept hashed in memory.",
    )
    model_roots: str = Field(
        "",
        description="Comma-separated absolute folders under which an admin may register a base model by server "
        "path (`POST /v1/models`); the path is resolved (symbolic links, `..`) before the check. Empty: "
        "registration by path is refused.",
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="The token `GET /metrics` requires as `Authorization: Bearer <token>` (401 without it). "
        "Empty: `/metrics` answers 404.",
    )

    # -- bounds -------------------------------------------------------------------------------
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest request body accepted (413 above).")
    max_attempts: int = Field(3, ge=1, description="How many times a job may start before it fails for good.")
    heartbeat_s: float = Field(10.0, gt=0, description="How often a worker renews its lease on a running job.")
    lease_s: float = Field(
        60.0, gt=0, description="A running job whose heartbeat is older than this is stale: it goes back to queued."
    )
    republish_after_s: float = Field(
        60.0, gt=0, description="A queued job published longer ago than this, and still unclaimed, is published again."
    )
    reconcile_interval_s: float = Field(15.0, gt=0, description="How often the reconciler looks for stale jobs.")
    idempotency_wait_s: float = Field(
        60.0,
        gt=0,
        description="An Idempotency-Key whose first request has not finished after this long is "
        "considered abandoned and may be used again.",
    )
    sse_poll_s: float = Field(0.5, gt=0, description="How often an event stream looks for new events.")

    @field_validator("model_roots")
    @classmethod
    def _roots_are_absolute(cls, value: str) -> str:
        for root in _split_roots(value):
            if not os.path.isabs(root):
                raise ValueError(f"each model root must be an absolute path, but {root!r} is not")
        return value

    @model_validator(mode="after")
    def _fill_defaults_from_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'lethe.db').absolute()}"
        if not self.storage_url:
            self.storage_url = str((self.data_dir / "storage").absolute())
        return self

    @property
    def model_root_paths(self) -> tuple[Path, ...]:
        """The folders of `model_roots`, as given (not yet resolved)."""
        return tuple(Path(root) for root in _split_roots(self.model_roots))

    @property
    def cache_dir(self) -> Path:
        """Latents cache shared by jobs on the same base model."""
        return self.data_dir / "cache"

    @property
    def work_dir(self) -> Path:
        """Per-job folders: resumable state and the output folder before publishing."""
        return self.data_dir / "work"


def _split_roots(value: str) -> list[str]:
    return [root.strip() for root in value.split(",") if root.strip()]
