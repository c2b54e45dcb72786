"""What a new user meets after `make run`: the printed curl commands, and the client's
`versions`, `follow` and `--version`, against a real `lethe serve` (tests/client/conftest.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import ADMIN_KEY

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
