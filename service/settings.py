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

    # -- what one caller may take (service/limits.py) ------------------------------------------
    rate_limit: str = Field(
        "300/second;10000/minute",
        description="Requests per tenant on `/v1` routes, in the `limits` package's notation (`N/second`, "
        "`N/minute`, ...; several joined by `;`); 429 above. Empty: no limit.",
    )
    auth_failure_limit: str = Field(
        "30/minute",
        description="Requests with a missing or wrong API key per client address (as the server sees it), same "
        "notation; above it every request from that address answers 429, a right key too, until the window passes. "
        "Empty: no limit.",
    )
    rate_limit_storage_url: str = Field(
        "",
        description="Where the request counts are kept (`redis://host:6379/1`, `memory://`). Empty: the broker's "
        "Redis when the broker is Redis (every gateway shares the counts), else this process's memory.",
    )
    max_queued_jobs: int = Field(
        100, ge=0, description="Jobs one tenant may have queued at once; a submission above it answers 429. 0: no limit."
    )
    max_running_jobs: int = Field(
        0,
        ge=0,
        description="Jobs one tenant may have running at once; its other jobs wait in the queue while other "
        "tenants' jobs run. 0: no limit.",
    )
    max_job_cost: int = Field(
        2_000_000,
        ge=0,
        description="Largest cost of one job in UNet passes (README, Security); a costlier job answers 422 naming "
        "`hyperparameters`. 0: no limit.",
    )
    job_cost_limits: str = Field(
        "",
        description="Per-tenant overrides of `max_job_cost`, comma-separated `tenant:cost` (`lab:5000000,demo:0`; "
        "0: no limit).",
    )
    min_free_bytes: int = Field(
        1 << 30,
        ge=0,
        description="Free disk space `/readyz` wants in the data folder and in a local storage folder (503 below it). "
        "0: not checked.",
    )

    # -- webhooks (service/webhooks.py, workers/webhook_delivery.py) ------------------------------
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="The key that signs every webhook delivery (Standard Webhooks): `whsec_` and 24 to 64 random "
        "bytes in base64. Empty: a job with a `webhook` is refused (422).",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs whose host is (or resolves to) a private, loopback, link-local or "
        "multicast address. Off: such URLs are refused at submission and not posted to.",
    )
    webhook_poll_s: float = Field(0.5, gt=0, description="How often each worker looks for webhook deliveries due.")
    webhook_first_retry_s: float = Field(
        1.0, gt=0, description="Wait before a failed webhook delivery is tried again; doubled after each failure."
    )
    webhook_max_retry_s: float = Field(60.0, gt=0, description="Longest wait between two attempts of a delivery.")
    webhook_max_attempts: int = Field(
        1500, ge=1, description="Attempts of one delivery before it is given up (`failed`); the default, 60 s "
        "apart, lasts about a day."
    )
    webhook_give_up_after_s: float = Field(
        86_400.0, gt=0, description="A delivery still not delivered this long after its job ended is given up."
    )

    @field_validator("model_roots")
    @classmethod
    def _roots_are_absolute(cls, value: str) -> str:
        for root in _split_roots(value):
            if not os.path.isabs(root):
                raise ValueError(f"each model root must be an absolute path, but {root!r} is not")
        return value

    @field_validator("rate_limit", "auth_failure_limit")
    @classmethod
    def _rates_parse(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a rate such as 300/second or 20/minute;100/hour") from None
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_parses(cls, value: SecretStr) -> SecretStr:
        from service.webhooks import check_secret

        if value.get_secret_value():
            check_secret(value.get_secret_value())
        return value

    @field_validator("job_cost_limits")
    @classmethod
    def _cost_limits_parse(cls, value: str) -> str:
        parse_cost_limits(value)
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
    def job_cost_limit_by_tenant(self) -> dict[str, int]:
        return parse_cost_limits(self.job_cost_limits)

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


def parse_cost_limits(text: str) -> dict[str, int]:
    """{tenant: largest job cost} from `tenant:cost,...`; ValueError names a bad entry."""
    limits = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), 1):
        tenant, _, cost = entry.rpartition(":")
        if not tenant or not cost.isdigit():
            raise ValueError(f"job_cost_limits entry {position} must be tenant:cost (a whole number), got {entry!r}")
        limits[tenant] = int(cost)
    return limits
