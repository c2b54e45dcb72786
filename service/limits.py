"""What one caller may take: a rate of requests, a number of queued jobs, a cost per job.

- Request rates, counted by the `limits` package (sliding-window counters): per tenant on every
  `/v1` route (`LETHE_RATE_LIMIT`), and per client address for requests without a valid key
  (`LETHE_AUTH_FAILURE_LIMIT`). Past the second one, every request from that address is refused,
  a right key too, until the window moves on: otherwise an attacker would learn which guess was
  right from the one answer that is not a 429. Over a limit: 429 with `RateLimit-Limit`,
  `RateLimit-Remaining`, `RateLimit-Reset` and `Retry-After`. The counts live in Redis when the
  broker is Redis (every gateway shares them) and in this process's memory otherwise. A count
  store that does not answer lets requests through (logged): limits protect the service, they
  must not take it down.
- Queued jobs per tenant (`LETHE_MAX_QUEUED_JOBS`), checked at submission: 429.
- The cost of a job in UNet passes (`job_cost`), checked at submission against
  `LETHE_MAX_JOB_COST` or the tenant's own limit (`LETHE_JOB_COST_LIMITS`): 422 naming
  `hyperparameters`. Running jobs per tenant (`LETHE_MAX_RUNNING_JOBS`) are held back by the
  workers' claim (`service.jobs.claim_next`), not refused.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from anyio import to_thread
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.jobs import QUEUED
from service.models import Job
from service.problems import Problem, field_problem
from unlearning.methods import make_config
from unlearning.methods.base import MethodConfig
from unlearning.methods.adversarial import SEARCH_BATCH

log = logging.getLogger(__name__)

T = TypeVar("T")
KEY_PREFIX = "lethe-limits"
STORE_TIMEOUT_S = 0.5  # a request waits no longer than this for a count
QUIET_S = 60.0  # at most one warning a minute about a count store that does not answer
BLOCKED = "too many requests without a valid API key from this address"


# -- request rates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """The limit a request went past, and how long until the window lets one through."""

    item: RateLimitItem
    remaining: int
    reset_after_s: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.item.amount), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_after_s), "Retry-After": str(self.reset_after_s)}  # fmt: skip


class RateLimits:
    """The gateway's request counters (one per process, in `Parts`)."""

    def __init__(self, settings):
        self._storage = open_counter_storage(settings)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._per_tenant = _rates(settings.rate_limit)
        self._per_address = _rates(settings.auth_failure_limit)
        self._warned_at = -math.inf

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)`: inline when counts are in memory (microseconds), else in a worker
        thread, so that the event loop never waits on the count store's network."""
        if isinstance(self._storage, MemoryStorage):
            return function(*args)
        return await to_thread.run_sync(function, *args)

    def refuse_blocked_address(self, address: str) -> None:
        """429 if `address` already sent too many requests without a valid key."""
        for item in self._per_address:
            if not self._safely(lambda: self._limiter.test(item, "address", address)):
                raise self._too_many(item, ("address", address), BLOCKED, "Authorization")

    def count_auth_failure(self, address: str) -> None:
        """Count one request without a valid key from `address`; 429 if it goes past the limit."""
        for item in self._per_address:
            if not self._safely(lambda: self._limiter.hit(item, "address", address)):
                raise self._too_many(item, ("address", address), BLOCKED, "Authorization")

    def take_request(self, tenant: str) -> None:
        """Count one request of `tenant`; 429 if it goes past the tenant's rate."""
        for item in self._per_tenant:
            if not self._safely(lambda: self._limiter.hit(item, "tenant", tenant)):
                raise self._too_many(item, ("tenant", tenant), "too many requests for this tenant", "rate_limit")

    def _too_many(self, item: RateLimitItem, key: tuple[str, str], detail: str, field: str) -> Problem:
        refusal = self._refusal(item, *key)
        message = f"the limit is {item}; retry in {refusal.reset_after_s} s"
        return Problem(429, f"{detail}: {message}", [{"field": field, "message": message}], "rate_limited",
                       headers=refusal.headers())  # fmt: skip

    def _refusal(self, item: RateLimitItem, *key: str) -> Refusal:
        stats = self._safely(lambda: self._limiter.get_window_stats(item, *key), default=None)
        if stats is None:
            return Refusal(item, 0, item.get_expiry())
        return Refusal(item, max(0, stats.remaining), max(1, math.ceil(stats.reset_time - time.time())))

    def _safely(self, count: Callable[[], T], default: Any = True) -> T:
        try:
            return count()
        except Exception as error:  # the store is away: let the request through, say so now and then
            if time.monotonic() - self._warned_at > QUIET_S:
                self._warned_at = time.monotonic()
                log.warning("rate limits not applied: the count store does not answer (%s: %s)",
                            type(error).__name__, error)
            return default


def open_counter_storage(settings) -> Storage:
    """The store of the request counts: `rate_limit_storage_url`, else the broker's Redis, else memory."""
    url = settings.rate_limit_storage_url or (settings.broker_url if settings.broker_url.startswith("redis") else "")
    if not url or url.startswith("memory"):
        return MemoryStorage()
    return storage_from_string(url, key_prefix=KEY_PREFIX, socket_timeout=STORE_TIMEOUT_S,
                               socket_connect_timeout=STORE_TIMEOUT_S)  # fmt: skip


def _rates(text: str) -> list[RateLimitItem]:
    return parse_many(text) if text.strip() else []


# -- jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCost:
    """What a job costs, in UNet passes over one latent (a forward, or a forward and a backward,
    on one sample), from its method's full configuration (the defaults filled in):

        training    = steps x batch_size x (trained passes + frozen passes)
        data        = num_prompts x generation_steps x sets (2 for every method with stop_when_erased:
                      its check is fitted on the retain images too)
        evaluation  = eval_prompts x 2 (forget, retain) x generation_steps x 2 (before, after)
                      + erasure checks (with stop_when_erased: one before training and one every
                        stop_check_every steps, each stop_check_images x generation_steps per concept)

    where `sets` is 2 for a method that also trains on the retain set (rg, graddiff: retain
    latents to generate), else 1 (ga, esd); the trained passes are a forget and, for those, a
    retain pass per sample (and the empty prompt's beside it with retain_target 'guided':
    `trained_passes`); and the frozen passes are the forwards through the original weights that
    give a target (esd's two, the anchor's one or two, and in the robust mode as many again plus
    one, one for retain_target 'original' and two for 'guided': `frozen_passes`). The robust mode
    (`adversarial_steps`) adds to training steps x batch_size (the adversarial rows; twice with
    the anchor, which holds the empty prompt beside them) and searches x adversarial_steps x the
    search's batch, a search every `adversarial_every` steps.
    Classifier-free guidance doubles the passes of every sampler step; it is left out, as a
    constant factor.
    """

    training: int
    data: int
    evaluation: int

    @property
    def total(self) -> int:
        return self.training + self.data + self.evaluation

    def formula(self) -> str:
        return f"training {self.training:,} + data {self.data:,} + evaluation {self.evaluation:,}"


def job_cost(method: str, hyperparameters: dict[str, Any], concepts: int = 1) -> JobCost:
    """The cost of a job of `method` with these (valid) hyperparameters, erasing `concepts` concepts."""
    full = make_config(method, hyperparameters)
    config = full.to_dict()
    drawn_sets = 2 if full.draws_retain_set else 1
    return JobCost(
        training=config["steps"] * config["batch_size"] * (full.trained_passes + full.frozen_passes) + adversarial_cost(full),
        data=config["num_prompts"] * config["generation_steps"] * drawn_sets,
        evaluation=config["eval_prompts"] * 2 * config["generation_steps"] * 2 + erasure_check_cost(config, concepts),
    )


def erasure_check_cost(config: dict[str, Any], concepts: int) -> int:
    """The sampler passes of the erasure checks behind `stop_when_erased` (0 when it is unset)."""
    if config.get("stop_when_erased") is None:
        return 0
    checks = 1 + config["steps"] // config["stop_check_every"]
    return checks * config["stop_check_images"] * concepts * config["generation_steps"]


def adversarial_cost(full: MethodConfig) -> int:
    """The robust mode's training passes beyond the method's own (0 when it is off): the learned
    rows (`adversarial_passes`: with the anchor, the empty prompt held beside them) and the searches."""
    config = full.to_dict()
    if not config.get("adversarial_steps"):
        return 0
    searches = math.ceil(config["steps"] / config["adversarial_every"])
    rows = config["steps"] * config["batch_size"] * full.adversarial_passes
    return rows + searches * config["adversarial_steps"] * SEARCH_BATCH


def cost_limit(settings, tenant: str) -> int:
    """The largest job cost `tenant` may submit (0: no limit)."""
    return settings.job_cost_limit_by_tenant.get(tenant, settings.max_job_cost)


def check_job_cost(settings, tenant: str, method: str, hyperparameters: dict[str, Any], concepts: int = 1) -> None:
    """422 naming `hyperparameters` when the job costs more than the tenant may submit."""
    limit = cost_limit(settings, tenant)
    cost = job_cost(method, hyperparameters, concepts)
    if limit and cost.total > limit:
        raise field_problem(
            "hyperparameters",
            f"the job would cost {cost.total:,} UNet passes ({cost.formula()}), above this tenant's limit of "
            f"{limit:,}; lower steps, batch_size, num_prompts, generation_steps or stop_check_images",
            code="job_too_costly",
        )


def check_queue(session: Session, settings, tenant: str) -> None:
    """429 naming `max_queued_jobs` when `tenant` already has as many queued jobs as it may."""
    most = settings.max_queued_jobs
    if not most:
        return
    queued = session.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant, Job.status == QUEUED))
    if queued >= most:
        message = f"this tenant has {queued} queued jobs, the most it may have; submit again once one has started"
        raise Problem(429, f"max_queued_jobs: {message}", [{"field": "max_queued_jobs", "message": message}],
                      "too_many_queued_jobs")  # fmt: skip
