"""Follow a job's Server-Sent Events until it ends, drawing its progress on stderr.

The gateway streams the job's events (`GET /v1/jobs/{id}/events`, `Accept:
text/event-stream`) and closes the stream when the job ends. If the stream breaks early,
we reconnect with `Last-Event-ID` and skip events already seen.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, TextIO

import httpx
from tqdm import tqdm

from .api import Api, ClientError
from .text import shown

FINISHED = {"succeeded", "failed", "cancelled"}
LOSSES = ("forget_loss", "retain_loss")  # what a `metrics` event's data carries every 10 steps
STREAM_TIMEOUT = httpx.Timeout(None, connect=10.0)  # a quiet job may send nothing for minutes


@dataclass
class ServerEvent:
    id: str | None = None
    event: str = "message"
    data_lines: list[str] = field(default_factory=list)

    def payload(self) -> dict:
        try:
            value = json.loads("\n".join(self.data_lines))
        except ValueError:
            return {"message": "\n".join(self.data_lines)}
        return value if isinstance(value, dict) else {"message": str(value)}


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events from text lines (the HTML living standard's field rules)."""
    event = ServerEvent()
    for line in lines:
        if not line:
            if event.data_lines:
                yield event
            event = ServerEvent(id=event.id)  # the last event id carries over
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            event.data_lines.append(value)
        elif name == "event":
            event.event = value
        elif name == "id":
            event.id = value
    if event.data_lines:
        yield event


class ProgressBar:
    """One tqdm bar per stage, plus the job's messages printed above it.

    Where the output is not a terminal (a log, a pipe), a plain line per progress event.
    """

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self.live = out.isatty()
        self.bar: tqdm | None = None
        self.stage: str | None = None
        self.eta = ""  # "ETA 1 min 05 s" from the newest progress event that had one
        self.losses = ""

    def show(self, event: dict) -> None:
        data = event.get("data") or {}
        stage = data.get("stage") or event.get("stage")
        step = data.get("step")
        total = data.get("total_steps") or data.get("total")
        if event.get("type") == "metrics" and losses_of(data):
            return self._show_losses(event.get("message") or "", losses_of(data))
        if event.get("type") == "progress" and isinstance(data.get("eta_seconds"), (int, float)):
            self.eta = f"ETA {duration(data['eta_seconds'])}"
        if not self.live:
            if event.get("type") == "progress" and stage:
                line = f"{stage} {step}/{total}" if total else stage
                self.say(f"{line}  {self.eta}" if self.eta else line)
            elif event.get("message"):
                self.say(f"[{event.get('level', 'info')}] {event['message']}")
            return
        if stage and stage != self.stage:
            self._start(stage, total)
        if self.bar is not None and isinstance(step, int):
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = step
            self._postfix()
        if event.get("type") != "progress" and event.get("message"):
            self.say(f"[{event.get('level', 'info')}] {event['message']}")

    def _show_losses(self, message: str, losses: str) -> None:
        """On the bar's postfix where there is a bar; else a line."""
        if self.live and self.bar is not None:
            self.losses = losses
            self._postfix()
        else:
            self.say(f"{message}  {losses}".strip())

    def _postfix(self) -> None:
        """The bar's postfix: the time left and the newest losses (it also redraws the bar)."""
        self.bar.set_postfix_str(shown("  ".join(filter(None, [self.eta, self.losses]))))

    def say(self, text: str) -> None:
        text = shown(text)  # the server's words: no terminal escapes
        if self.live:
            tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _start(self, stage: str, total) -> None:
        self.close()
        self.stage, self.losses = stage, ""
        size = shutil.get_terminal_size()  # 80x24 where the terminal reports 0x0
        self.bar = tqdm(total=total or None, desc=f"{shown(stage):<11}", unit="step", file=self.out,
                        ncols=min(size.columns, 100), nrows=size.lines, mininterval=0.1, leave=True)


def duration(seconds: float) -> str:
    """`45 s`, `3 min 05 s`, `2 h 04 min`: a time left or an estimate, as a person reads it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def losses_of(data: dict) -> str:
    """`forget_loss=0.123 retain_loss=0.0456` from a metrics event's data ("" without any)."""
    return " ".join(f"{name}={data[name]:.4g}" for name in LOSSES
                    if isinstance(data.get(name), (int, float)) and not isinstance(data.get(name), bool))


def follow(api: Api, job_id: str, bar: ProgressBar) -> dict:
    """Stream the job's events into the bar until the job is finished; return the job."""
    seen: set[str] = set()
    last_id: str | None = None
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            with api.stream(f"/v1/jobs/{job_id}/events", headers=headers, timeout=STREAM_TIMEOUT) as response:
                for event in parse_sse(response.iter_lines()):
                    if event.id is not None:
                        if event.id in seen:
                            continue
                        seen.add(event.id)
                        last_id = event.id
                    bar.show(event.payload())
        except ClientError as exc:
            if getattr(exc, "status", None):  # the server refused: not a broken stream
                raise
            bar.say(f"(event stream interrupted: {exc}; reconnecting)")
            time.sleep(1.0)
        job = api.get(f"/v1/jobs/{job_id}")
        if job.get("status") in FINISHED:
            bar.close()
            return job
        time.sleep(0.5)  # the stream ended before the job did: reconnect, gently
