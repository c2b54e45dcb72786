"""The database tables (SQLAlchemy 2 typed models).

Times are Unix seconds as floats: the API speaks Unix seconds, and a float compares the
same way on SQLite and PostgreSQL (no time zone handling to get wrong).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


PUBLIC = "public"
PRIVATE = "private"
IS_PUBLIC = text("visibility = 'public'")


class Model(Base):
    """A registered base (its version 1) and the versions jobs made from it.

    `private`: only the owner tenant sees it; `public`: every tenant does. Names are per
    tenant, with public names in a namespace every tenant shares: a public model's name is
    unique among all models, a private model's name among its owner's models and the public
    ones (the registry checks the part across owners; these constraints hold the rest).
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("owner", "name", name="uq_models_owner_name"),
        Index("uq_models_public_name", "name", unique=True, sqlite_where=IS_PUBLIC, postgresql_where=IS_PUBLIC),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    # The tenant it belongs to; None: registered before models had owners (all public).
    owner: Mapped[str | None] = mapped_column(String(64))
    visibility: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)


class Blob(Base):
    """A file's content, stored once under its sha256 whatever the number of versions using it."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)


class ModelVersion(Base):
    """An immutable version: visible only once its row is committed with status `ready`.

    Numbered per line: version 1 is the base (no tenant); a tenant's jobs number theirs 2, 3, ...
    whatever other tenants' jobs do, so `(model_id, tenant, version)` is unique.
    """

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "tenant", "version", name="uq_model_versions_line"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    parent: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    # None: the registered base, seen by whoever sees the model; otherwise the tenant of the job.
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    # Unique: a job publishes at most one version, even when its publish is retried.
    job_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    concepts_erased: Mapped[list[str]] = mapped_column(JSON)
    method: Mapped[str | None] = mapped_column(String(32))
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    # The pipeline family (`unlearning.families`: "sd", "sdxl"); None: published before versions recorded it.
    family: Mapped[str | None] = mapped_column(String(16))
    # What the job trained (unlearning.methods.base.TRAINABLE_SETS: "unet", "cross_attention", ...); None for a base,
    # and for versions published before this was recorded.
    trainable: Mapped[str | None] = mapped_column(String(32))
    # A LoRA erasure's adapter (the manifest's `lora` record): its two files' paths in this version, rank, ...
    adapter: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    model: Mapped[Model] = relationship(lazy="joined")
    files: Mapped[list[VersionFile]] = relationship(
        order_by="VersionFile.path", lazy="selectin", cascade="all, delete-orphan"
    )


class VersionFile(Base):
    """One file of a version: its relative path and the blob holding its bytes."""

    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """An unlearning job: its request, its state machine, its lease and its outcome."""

    __tablename__ = "jobs"

    # `job_` + 12 hex digits of milliseconds + 10 random hex: ids sort by creation time.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # how many times it has started
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    enqueued_at: Mapped[float | None] = mapped_column(Float)  # last publish of its message
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)

    base_model: Mapped[str] = mapped_column(String(64))
    base_version: Mapped[int] = mapped_column(Integer)
    concepts: Mapped[list[str]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(32))
    preserve: Mapped[list[str]] = mapped_column(JSON)
    prompts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)

    progress_stage: Mapped[str | None] = mapped_column(String(32))
    progress_step: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The caller's webhook subscription, {"url": ..., "events": [...]}; None: none.
    webhook: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # quick, full or off; None: the library's default (quick).
    audit: Mapped[str | None] = mapped_column(String(8))
    # Seconds the job was expected to take when it was submitted; None: no estimate.
    estimated_seconds: Mapped[float | None] = mapped_column(Float)


class JobEvent(Base):
    """Append-only log of a job: progress, messages, metrics."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IdempotencyKey(Base):
    """A tenant's Idempotency-Key: the hash of the first body, and its job once created.

    A row without a job is a request still in flight (409 for a second one).
    """

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[float] = mapped_column(Float)


class WebhookDelivery(Base):
    """One event of a job to post to its webhook, written in the transaction that ended the job.

    `pending` until a post answers 2xx (`delivered`) or the retries run out (`failed`). A worker
    takes it for one attempt by setting `claimed_until` in one atomic UPDATE. Its id is the
    `webhook-id` header, the same on every attempt, so that a receiver can drop duplicates.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))  # job.succeeded, job.failed, job.cancelled
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class WebhookAttempt(Base):
    """One post of a delivery: when, how long, and the receiver's status code or the error."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class Throughput(Base):
    """What one succeeded job measured: each stage's seconds and units of work (service/estimates.py),
    on its worker kind (the device: `cpu`, or the GPU's name) and its base version."""

    __tablename__ = "throughput"
    __table_args__ = (Index("ix_throughput_base", "base_model", "base_version", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    job_id: Mapped[str] = mapped_column(String(40))
    worker_kind: Mapped[str] = mapped_column(String(128))
    base_model: Mapped[str] = mapped_column(String(64))
    base_version: Mapped[int] = mapped_column(Integer)
    unet_parameters: Mapped[int | None] = mapped_column(BigInteger)  # None: its size was not known
    seconds: Mapped[dict[str, Any]] = mapped_column(JSON)  # {stage: wall seconds}
    units: Mapped[dict[str, Any]] = mapped_column(JSON)  # {stage: units of work}
