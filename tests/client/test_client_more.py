"""What a new user meets after `make run`: the printed curl commands, and the client's
`versions`, `follow` and `--version`, against a real `lethe serve` (tests/client/conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ADMIN_KEY, lethe_executable
from .test_client_commands import TINY, lethe, ok

pytestmark = pytest.mark.slow

RUN_DEMO = Path(__file__).parents[2] / "scripts" / "run-demo"


def printed_demo_commands() -> str:
    """The text scripts/run-demo prints for the user to paste (its AUTH= line to the end of the banner)."""
    lines = RUN_DEMO.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("AUTH="))
    banner = next(i for i in range(start, len(lines)) if lines[i].startswith("cat <<EOF"))
    end = next(i for i in range(banner + 1, len(lines)) if lines[i] == "EOF")
    script = "\n".join(lines[start:end + 1])
    env = {"PATH": os.environ["PATH"], "URL": "http://demo", "KEY": "demo-key", "LETHE_DATA_DIR": "/demo",
           "LETHE_BIN": "lethe"}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout


def paste(commands: list[str], server) -> subprocess.CompletedProcess:
    """Run pasted lines in bash with the user's two variables set for the live server."""
    env = {**os.environ, "LETHE_URL": server.url, "LETHE_API_KEY": ADMIN_KEY}
    return subprocess.run(["bash", "-c", "\n".join(commands)], env=env, capture_output=True, text=True, timeout=60)


def demo_lines(*prefixes: str) -> list[str]:
    text = printed_demo_commands()
    return [next(line for line in text.splitlines() if line.startswith(prefix)) for prefix in prefixes]


def test_the_printed_erase_command_shows_the_servers_message_on_a_422(live_server):
    pick, erase = demo_lines("PICK=", "JOB=")  # the test server has no `digits` model: 422 unknown_model
    run = paste([pick, erase, 'echo "exit=$?"'], live_server)
    assert "Traceback" not in run.stderr, run.stderr
    assert "no model named 'digits'" in run.stderr and "base_model.name" in run.stderr, run.stderr


def test_the_printed_commands_print_the_job_id_then_explain_a_job_without_a_result(live_server):
    pick, erase, version = demo_lines("PICK=", "JOB=", "VERSION=")
    cancel = 'curl -sS -X POST "$LETHE_URL/v1/jobs/$JOB/cancel" -H "Authorization: Bearer $LETHE_API_KEY" >/dev/null'
    run = paste([pick, erase.replace('"name": "digits"', '"name": "tiny"'), cancel, version], live_server)
    assert run.stdout.startswith("job_"), run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "status: cancel" in run.stderr, run.stderr


# -- the client: follow, versions, --version, losses, force ------------------------------------

@pytest.fixture(scope="module")
def chain(live_server, tmp_path_factory):
    """Model `chain`: a job erasing "seven" followed with `lethe follow`, then "three" with `erase --wait`
    and no audit."""
    from unlearning.tiny import build_tiny_pipeline

    # seed 2: weights of its own (test_client_commands damages the stored UNet of seed 1's)
    live_server.register("chain", build_tiny_pipeline(tmp_path_factory.mktemp("chain-model") / "tiny", seed=2))
    started = ok(lethe(live_server, "erase", "chain", "seven", *TINY), live_server)
    job_id = started.stdout.split()[0]
    followed = lethe(live_server, "follow", job_id)
    waited = lethe(live_server, "erase", "chain", "three", *TINY, "--audit", "off", "--wait")
    return job_id, followed, waited


def test_follow_attaches_to_a_started_job_until_it_ends(chain, live_server):
    job_id, followed, _ = chain
    ok(followed, live_server)
    assert f"{job_id} succeeded: chain version 2" in followed.stdout, followed.stdout
    assert "unlearning" in followed.stderr and "forget_loss=" in followed.stderr, followed.stderr
    # A random tiny model draws no seven: the audit's check says so, as a warning, before training.
    warning = "[warning] audit skipped: the original model does not seem to draw 'seven'"
    assert followed.stderr.index(warning) < followed.stderr.index("unlearning"), followed.stderr


def test_erase_wait_shows_the_losses_and_builds_the_chain(chain, live_server):
    waited = ok(chain[2], live_server)
    assert "chain version 3" in waited.stdout
    assert "forget_loss=" in waited.stderr and "retain_loss=" in waited.stderr, waited.stderr


def test_versions_lists_parent_concepts_and_method(chain, live_server):
    run = ok(lethe(live_server, "versions", "chain"))
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "PARENT", "CONCEPTS", "ERASED", "METHOD", "CREATED"]
    assert lines[1].split()[:5] == ["3", "2", "seven,", "three", "rg"], run.stdout
    assert lines[2].split()[:4] == ["2", "1", "seven", "rg"] and lines[3].split()[:4] == ["1", "-", "-", "-"]
    missing = lethe(live_server, "versions", "no-such-model")
    assert missing.returncode == 2 and "no model named" in missing.stderr


def test_version_shows_the_lineage_and_the_audit_or_why_it_could_not_run(chain, live_server):
    quick = ok(lethe(live_server, "version", "chain", "2")).stdout
    assert re.search(r"^concepts:\s+seven$", quick, re.M) and re.search(r"^family:\s+sd$", quick, re.M), quick
    assert re.search(r"^trainable:\s+unet$", quick, re.M), quick
    assert "audit: quick, not_applicable: audit skipped: the original model does not seem to draw 'seven'" in quick
    assert "audit: off" in ok(lethe(live_server, "version", "chain", "3")).stdout
    assert "audit: none" in ok(lethe(live_server, "version", "chain", "1")).stdout
    bad = lethe(live_server, "erase", "chain", "two", "--audit", "thorough")
    assert bad.returncode == 2 and "--audit" in bad.stderr


def test_erasing_again_needs_force(chain, live_server):
    refused = lethe(live_server, "erase", "chain", "Seven", *TINY)
    assert refused.returncode == 2 and "already erased" in refused.stderr, refused.stderr
    forced = ok(lethe(live_server, "erase", "chain", "Seven", *TINY, "--force"))
    ok(lethe(live_server, "cancel", forced.stdout.split()[0]))


def test_follow_of_an_unknown_job_is_the_servers_404(live_server):
    run = lethe(live_server, "follow", "job_00000000000000deadbeef")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr


def test_version_prints_the_package_version():
    import importlib.metadata

    run = subprocess.run([lethe_executable(), "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"lethe {importlib.metadata.version('lethe')}"
