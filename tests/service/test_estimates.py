"""The estimator's arithmetic on made-up throughput records, the estimate at submission over
HTTP, and the ETA the running job's clock gives."""

from types import SimpleNamespace

import pytest

from service import estimates
from service.models import Throughput
from tests.service.service_helpers import KEY_A
from workers.stage_clock import StageClock

SMALL = {"steps": 10, "batch_size": 4, "num_prompts": 100, "generation_steps": 5, "eval_prompts": 8}


def made_up(base_version=1, parameters=1000, kind="cpu", **seconds_per_unit) -> Throughput:
    units = {stage: 10.0 for stage in seconds_per_unit}
    seconds = {stage: rate * 10.0 for stage, rate in seconds_per_unit.items()}
    return Throughput(worker_kind=kind, base_model="tiny", base_version=base_version, unet_parameters=parameters,
                      seconds=seconds, units=units, job_id="job_x", created_at=0.0)


def test_units_follow_the_hyperparameters_and_the_audit():
    units = estimates.units(estimates.Work("rg", SMALL, "quick", concepts=2))
    # rg draws a retain latent for each forget one: (min(10 x 4, 100) x 2 + 2 x 8 held out) x 5 sampler steps
    assert units["latents"] == (40 * 2 + 16) * 5 and units["setup:quick"] == 1
    assert units["unlearning:rg"] == 40 and units["evaluating"] == 2 * 2 * 4 * 5
    assert units["auditing:quick"] == 2 * 8 * 5 and (units["writing"], units["publishing"]) == (1, 1)
    esd = estimates.units(estimates.Work("esd", SMALL | {"num_prompts": 30}, "off"))
    assert esd["latents"] == (30 + 16) * 5 and not any(s.startswith("auditing") for s in esd) and "setup:off" in esd


def test_the_rate_is_the_median_of_the_newest_records_scaled_by_unet_size():
    records = [made_up(unlearning=r) for r in (1.0, 3.0, 2.0, 100.0, 100.0, 100.0)]  # newest first
    assert estimates.rates(records, 1000)["unlearning"] == 3.0  # the newest five: 1, 3, 2, 100, 100
    assert estimates.rates(records[:3], 2000)["unlearning"] == 4.0  # a UNet twice the size: twice the time
    assert estimates.rates([made_up(parameters=None, unlearning=2.0)], 2000)["unlearning"] == 2.0  # unknown: as is


def test_a_plan_needs_a_rate_for_every_stage_of_the_job():
    units = {"setup:quick": 1, "latents": 10, "unlearning": 4, "auditing:quick": 2}
    rates = {"setup:quick": 3.0, "latents": 0.5, "unlearning": 2.0, "auditing:quick": 3.0}
    assert estimates.plan(units, rates) == {"preparing": 8.0, "unlearning": 8.0, "auditing": 6.0}  # set-up + latents
    assert estimates.total(estimates.plan(units, rates)) == 22.0
    assert estimates.plan(units | {"auditing:full": 1}, rates) is None  # never measured: no estimate
    off = {"setup:off": 1, "latents": 10, "unlearning:esd": 2}
    rates = rates | {"unlearning:rg": 1.0, "unlearning:ga": 3.0}
    # the quick audit's set-up and the other methods' steps (their median) stand in
    assert estimates.plan(off, rates) == {"preparing": 8.0, "unlearning": 2 * 2.0}
    assert estimates.total(None) is None


def test_unet_parameters_from_the_weight_files():
    files = [SimpleNamespace(path=p, size=s) for p, s in [("unet/diffusion_pytorch_model.safetensors", 4000),
                                                             ("unet/diffusion_pytorch_model.fp16.safetensors", 2000),
                                                             ("vae/diffusion_pytorch_model.safetensors", 800)]]
    assert estimates.unet_parameters(files) == 1000
    assert estimates.unet_parameters(files[1:]) == 1000  # an fp16 variant alone: 2 bytes each
    assert estimates.unet_parameters(files[2:]) is None


def test_records_of_the_same_base_first_then_any_base(session):
    session.add_all([made_up(base_version=2, kind="cpu", unlearning=5.0), made_up(base_version=1, unlearning=1.0)])
    session.commit()
    same, is_same = estimates.usable_records(session, "tiny", 2)
    assert is_same and [r.base_version for r in same] == [2]
    other, is_same = estimates.usable_records(session, "tiny", 3)
    assert not is_same and len(other) == 2


def test_the_clock_times_the_stages_and_counts_down_by_the_stage_rate():
    now = [0.0]
    clock = StageClock({"preparing": 10.0, "evaluating": 4.0, "unlearning": 20.0, "auditing": 6.0, "writing": 1.0,
                        "publishing": 1.0}, now=lambda: now[0])
    clock.progress("preparing", 0, 1)
    assert clock.eta() == 10 + 2 + 20 + 2 + 6 + 1 + 1
    now[0] = 1.0
    clock.mark("latents")  # the library said it starts on the latents
    now[0] = 4.0
    clock.progress("evaluating", 0, 2)
    now[0] = 5.0
    clock.progress("unlearning", 0, 100)
    now[0] = 10.0
    clock.progress("unlearning", 50, 100)  # 5 s for half the steps: 5 s more, whatever the plan said
    assert clock.eta() == pytest.approx(5 + 2 + 6 + 1 + 1)
    now[0] = 15.0
    clock.progress("evaluating", 1, 2)
    clock.stop()
    assert clock.seconds == {"setup": 1.0, "latents": 3.0, "evaluating": 1.0, "unlearning": 10.0}
    assert StageClock(None).eta() is None
    resumed = StageClock({"unlearning": 100.0}, now=lambda: now[0])
    resumed.progress("unlearning", 60, 100)  # its state saved at step 60
    now[0] = 17.0
    resumed.progress("unlearning", 80, 100)  # 2 s for 20 steps
    assert resumed.eta() == pytest.approx(2.0)


def test_a_job_gets_an_estimate_once_a_job_on_its_base_has_been_measured(client, store):
    body = {"base_model": {"name": "tiny"}, "concepts": ["van gogh"], "hyperparameters": SMALL, "audit": "off"}
    first = client.post("/v1/jobs", json=body, headers=KEY_A).json()
    assert (first["estimated_seconds"], first["estimated_finish_at"]) == (None, None)
    store.add(made_up(parameters=None, latents=0.01, evaluating=0.02, writing=1.0, publishing=2.0,
                      **{"setup:off": 3.0, "unlearning:rg": 0.5}))
    store.commit()
    job = client.post("/v1/jobs", json=body, headers=KEY_A).json()
    assert job["estimated_seconds"] == pytest.approx(3.0 + 96 * 5 * 0.01 + 40 * 0.5 + 80 * 0.02 + 1.0 + 2.0)
    quick = client.post("/v1/jobs", json=body | {"audit": "quick"}, headers=KEY_A).json()
    assert quick["estimated_seconds"] is None  # no quick audit measured yet


def test_a_run_with_erasure_checks_records_no_unlearning_rate():
    """It may stop before its steps and its checks draw images besides: seconds per step would be wrong."""
    from workers.reporting import Reporter
    from workers.throughput import measured_units

    reporter = Reporter(set_progress=lambda *a: None, add_event=lambda *a: None)
    reporter.on_event("message", "erasure check every 10 steps", {"erasure_check_every": 10, "original": {"red": 1.0}})
    work = estimates.Work("rg", SMALL, "off")
    assert reporter.erasure_checked and "unlearning:rg" in measured_units(work, None)
    assert "unlearning:rg" not in measured_units(work, None, reporter.erasure_checked)
    assert measured_units(work, 7, True)["latents"] == 7 * 5
