"""Request and response bodies. Every request field is bounded; unknown fields are refused.

Every string a caller sends is one line of text (`single_line`): control characters (C0, with
NUL, tab, newline and ESC; DEL; C1) are refused wherever they are, before any stripping, so
that no stored concept, prompt, name or metadata can drive a terminal that prints it later.

Method-specific hyperparameters beyond the common ones are checked by
`unlearning.methods.validate` (no torch), which names the field it rejects.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from unlearning.audit import AUDIT_MODES, DEFAULT_AUDIT
from unlearning.methods import DEFAULT_METHOD
from unlearning.methods.base import MODULE_NAME, TRAINABLE_SETS, MethodConfig

NAME_PATTERN = r"^[a-z0-9._-]{1,64}$"
MAX_CONCEPTS, MAX_PRESERVE, MAX_PROMPTS, MAX_METADATA = 10, 50, 5000, 16

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def refuse_control_characters(value: Any) -> Any:
    """`value` unchanged, unless it is a string holding a control character."""
    found = CONTROL_CHARACTER.search(value) if isinstance(value, str) else None
    if found:
        raise ValueError(f"must be one line of text without control characters, but holds "
                         f"U+{ord(found.group()):04X} at position {found.start()}")
    return value


def single_line(**constraints) -> Any:
    """A string with these `StringConstraints` and no control character (checked on the raw input)."""
    # The validator comes after the constraints so that it wraps them: it sees the value as sent.
    return Annotated[str, StringConstraints(**constraints), BeforeValidator(refuse_control_characters)]


ModelName = single_line(pattern=NAME_PATTERN, min_length=1, max_length=64)
Concept = single_line(strip_whitespace=True, min_length=1, max_length=200)
Prompt = single_line(strip_whitespace=True, min_length=1, max_length=500)
MetaKey = single_line(min_length=1, max_length=64)
MetaValue = single_line(max_length=512)
MethodId = single_line(min_length=1, max_length=32)
ServerPath = single_line(min_length=1, max_length=4096)
LayerName = single_line(pattern=f"^{MODULE_NAME.pattern}$", min_length=1, max_length=200)
Tenant = single_line(min_length=1, max_length=64)
Visibility = Literal["private", "public"]
AuditMode = Literal[AUDIT_MODES]

T = TypeVar("T")


class Body(BaseModel):
    # strict: JSON types as written (no "5" for 5, no true for 1); extra: unknown fields are errors.
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests ----------------------------------------------------------------------------------


class BaseModelRef(Body):
    name: ModelName
    version: int | None = Field(None, ge=1, le=1_000_000, description="Default: the newest version.")


class Prompts(Body):
    forget: list[Prompt] = Field(default_factory=list, max_length=MAX_PROMPTS)
    retain: list[Prompt] = Field(default_factory=list, max_length=MAX_PROMPTS)


class Hyperparameters(Body):
    """The common settings, bounded here; a method's own settings are checked by the method."""

    model_config = ConfigDict(extra="allow", strict=True)

    steps: int | None = Field(None, ge=1, le=10_000)
    learning_rate: float | None = Field(None, gt=0, le=1e-2)
    batch_size: int | None = Field(None, ge=1, le=64)
    retain_weight: float | None = Field(None, gt=0, le=100)
    forget_loss_ceiling: float | None = Field(None, gt=0, le=100)
    num_prompts: int | None = Field(None, ge=1, le=10_000)
    trainable: Literal[TRAINABLE_SETS] | None = Field(
        None, description="unet (all), cross_attention, cross_attention_keys (their key projections only), "
                          "cross_attention_keys_values (their key and value projections), or "
                          "lora: a low-rank adapter, fused into the version's UNet and also kept as its own files "
                          "(the version's `adapter`).")
    lora_rank: int | None = Field(None, ge=MethodConfig.BOUNDS["lora_rank"][0], le=MethodConfig.BOUNDS["lora_rank"][1])
    lora_target_modules: list[LayerName] | None = Field(None, min_length=1, max_length=MethodConfig.MAX_TARGETS)


WebhookEvent = Literal["succeeded", "failed", "cancelled"]  # service.webhooks.EVENTS
WebhookUrl = single_line(min_length=1, max_length=2048)


def _distinct(events: list[str]) -> list[str]:
    if len(set(events)) != len(events):
        raise ValueError("must not name an event twice")
    return events


class Webhook(Body):
    url: WebhookUrl = Field(description="http(s); no credentials; a public host unless the server allows "
                                        "private ones. Each delivery is signed (Standard Webhooks).")
    events: Annotated[list[WebhookEvent], AfterValidator(_distinct)] = Field(
        default_factory=lambda: ["succeeded", "failed", "cancelled"], min_length=1, max_length=3,
        description="The job's terminal statuses to be told of (default: all three).")


class JobCreate(Body):
    base_model: BaseModelRef
    concepts: list[Concept] = Field(min_length=1, max_length=MAX_CONCEPTS)
    method: MethodId = Field(DEFAULT_METHOD, description="One of unlearning.methods.METHOD_IDS.")
    preserve: list[Concept] = Field(default_factory=list, max_length=MAX_PRESERVE)
    prompts: Prompts | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    metadata: dict[MetaKey, MetaValue] = Field(default_factory=dict, max_length=MAX_METADATA)
    webhook: Webhook | None = Field(None, description="Post a signed event to this URL when the job ends.")
    force: bool = Field(False, description="Erase again a concept the base version has already erased "
                                           "(refused with 409 `already_erased` otherwise).")
    audit: AuditMode | None = Field(None, description=f"How thoroughly the version is audited after training: quick, "
                                                      f"full or off; null: the default, {DEFAULT_AUDIT}. The report "
                                                      "is the version's `evaluation.audit`.")


class ModelSource(Body):
    path: ServerPath = Field(description="A diffusers folder on the server, under one of its model roots.")


class ModelCreate(Body):
    name: ModelName = Field(description="Unique among the models of its tenant and the public ones; "
                                        "a public model's name, among all models.")
    source: ModelSource
    visibility: Visibility = Field("private", description="private: only its tenant sees the model, its "
                                   "versions and may run jobs on it; public: every tenant does.")
    tenant: Tenant | None = Field(None, description="The tenant the model belongs to (default: the admin's own).")


# -- responses ---------------------------------------------------------------------------------


class FilePublic(BaseModel):
    path: str
    size: int
    sha256: str


class AdapterPublic(BaseModel):
    """A LoRA erasure's adapter: two files of the version holding the same low-rank weights."""

    diffusers: str = Field(description="Path of the file `pipe.load_lora_weights` loads (diffusers' format).")
    kohya: str = Field(description="Path of the single file AUTOMATIC1111 and ComfyUI load (kohya's format).")
    rank: int
    alpha: float = Field(description="The adapter's alpha; its scale is alpha / rank.")
    target_modules: list[str] = Field(description="The UNet layers it adapts, as peft matches them.")


class VersionPublic(BaseModel):
    object: Literal["model.version"] = "model.version"
    name: str
    version: int
    parent: int | None
    status: str
    job_id: str | None
    concepts_erased: list[str]
    method: str | None
    family: str | None = Field(description="The pipeline family: sd (Stable Diffusion 1.x and 2.x) or sdxl; "
                                           "null for a version published before versions recorded it.")
    trainable: str | None = Field(description="What the job trained: unet, cross_attention, cross_attention_keys, "
                                              "cross_attention_keys_values or lora; null for a base.")
    adapter: AdapterPublic | None = Field(description="A LoRA erasure's adapter files (trainable lora); null otherwise.")
    created_at: int
    files: list[FilePublic]
    evaluation: dict[str, Any] | None
    visibility: Visibility = Field(description="public: every tenant sees this version (a public base); "
                                               "private: only your tenant does.")


class ModelPublic(BaseModel):
    object: Literal["model"] = "model"
    name: str
    visibility: Visibility
    created_at: int
    newest_version: VersionPublic


class BaseModelPublic(BaseModel):
    name: str
    version: int


class Progress(BaseModel):
    stage: str
    step: int
    total_steps: int


class JobError(BaseModel):
    code: str
    message: str


class JobResult(BaseModel):
    model: str
    version: int


class JobPublic(BaseModel):
    object: Literal["unlearning.job"] = "unlearning.job"
    id: str
    status: Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
    created_at: int
    started_at: int | None
    finished_at: int | None
    attempt: int
    base_model: BaseModelPublic
    concepts: list[str]
    method: str
    preserve: list[str]
    prompts: dict[str, list[str]] | None
    hyperparameters: dict[str, Any]
    seed: int
    progress: Progress | None
    error: JobError | None
    result: JobResult | None
    metadata: dict[str, str]
    webhook: Webhook | None = Field(None, description="The job's webhook subscription; null: none.")
    audit: AuditMode | None = Field(None, description=f"The audit asked for; null: the default ({DEFAULT_AUDIT}).")
    estimated_seconds: float | None = Field(
        None, description="How long the job should run once started, estimated at submission from the throughput "
                          "the newest succeeded jobs measured on this base (or on other bases, scaled by UNet size) "
                          "and this job's settings. Null when there was nothing to go by: no job of its kind "
                          "(with its audit level) had succeeded on this server yet.")
    estimated_finish_at: int | None = Field(
        None, description="started_at + estimated_seconds, once the job is running; null otherwise. The progress "
                          "events' `eta_seconds` follow the job's actual pace.")


class EventPublic(BaseModel):
    object: Literal["unlearning.job.event"] = "unlearning.job.event"
    id: int
    created_at: int
    level: str
    type: str
    message: str
    data: dict[str, Any] | None


class WebhookAttemptPublic(BaseModel):
    at: float = Field(description="When the post started (Unix seconds).")
    duration_s: float
    status_code: int | None = Field(description="The receiver's answer; null when none came (see `error`).")
    error: str | None


class WebhookDeliveryPublic(BaseModel):
    object: Literal["webhook.delivery"] = "webhook.delivery"
    id: str = Field(description="The `webhook-id` header, the same on every attempt.")
    event: str = Field(description="job.succeeded, job.failed or job.cancelled")
    url: str
    status: Literal["pending", "delivered", "failed"]
    created_at: int
    next_attempt_at: int | None = Field(description="When a pending delivery is tried next; null otherwise.")
    attempts: list[WebhookAttemptPublic]


class ListOf(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
