"""The client commands of `lethe`: models, versions, erase, follow, jobs, status, cancel, download.

They talk to a Lethe gateway over HTTP, configured by `LETHE_URL` (default
http://127.0.0.1:8000) and `LETHE_API_KEY`. A server error is printed as its problem
`detail` and field errors on stderr (exit status 2 for the caller's fault, 1 otherwise);
a failed job or a checksum mismatch also exits 1.

Every string the server sent is printed with its control characters escaped (`\\x1b`, `\\n`),
as `repr` writes them: the gateway refuses them in new input, but older rows may hold some,
and printed raw they would move the cursor, recolour or retitle the terminal (`--json`
output is JSON, which escapes them itself).

The dispatcher calls `register(subparsers)`; `main(argv, environ)` runs them on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

from .api import Api, ClientError
from .audit import audit_lines
from .download import Outcome, VersionDownload
from .progress import ProgressBar, duration, follow
from .text import shown

COMMANDS = ("models", "versions", "version", "erase", "follow", "jobs", "status", "cancel", "download")


# -- the commands --------------------------------------------------------------------------

def cmd_models(api: Api, args) -> int:
    models = api.get("/v1/models").get("data", [])
    if args.json:
        return _print_json(models)
    rows = [(m.get("name", "?"), _newest(m).get("version", "?"), m.get("visibility", "?"),
             ", ".join(_newest(m).get("concepts_erased") or []) or "-") for m in models]
    _print_table(("MODEL", "NEWEST", "VISIBILITY", "CONCEPTS ERASED"), rows)
    return 0


def cmd_versions(api: Api, args) -> int:
    versions = api.get(f"/v1/models/{quote(args.model, safe='')}/versions").get("data", [])
    if args.json:
        return _print_json(versions)
    rows = [(v.get("version", "?"), v.get("parent") or "-", ", ".join(v.get("concepts_erased") or []) or "-",
             v.get("method") or "-", _when(v.get("created_at"))) for v in versions]
    _print_table(("VERSION", "PARENT", "CONCEPTS ERASED", "METHOD", "CREATED"), rows)
    return 0


def cmd_version(api: Api, args) -> int:
    version = api.get(f"/v1/models/{quote(args.model, safe='')}/versions/{args.version}")
    if args.json:
        return _print_json(version)
    _print_version(version)
    return 0


def cmd_erase(api: Api, args) -> int:
    job = api.post("/v1/jobs", _job_body(args))
    if not args.wait:
        if args.json:
            return _print_json(job)
        print(shown(f"{job['id']} {job['status']}, {_estimate_of(job)}  (follow it: lethe follow {job['id']})"))
        return 0
    print(shown(f"{job['id']} {job['status']}, {_estimate_of(job)}"), file=sys.stderr)
    return _follow_to_end(api, job["id"], args.json)


def cmd_follow(api: Api, args) -> int:
    job = api.get(f"/v1/jobs/{args.job}")  # an unknown job: the server's 404, before any stream
    print(shown(f"{job['id']} {job['status']}"), file=sys.stderr)
    return _follow_to_end(api, job["id"], args.json)


def cmd_jobs(api: Api, args) -> int:
    page = api.get("/v1/jobs", status=args.status, limit=args.limit, after=args.after)
    jobs = page.get("data", [])
    if args.json:
        return _print_json(page)
    rows = [(j["id"], j["status"], _model_of(j), ", ".join(j.get("concepts") or []),
             _progress_of(j), _when(j.get("created_at"))) for j in jobs]
    _print_table(("JOB", "STATUS", "BASE", "CONCEPTS", "PROGRESS", "CREATED"), rows)
    if page.get("has_more") and jobs:
        print(shown(f"(more: lethe jobs --after {jobs[-1]['id']})"))
    return 0


def cmd_status(api: Api, args) -> int:
    job = api.get(f"/v1/jobs/{args.job}")
    if args.json:
        return _print_json(job)
    _print_job(job)
    return 0


def cmd_cancel(api: Api, args) -> int:
    job = api.post(f"/v1/jobs/{args.job}/cancel")
    if args.json:
        return _print_json(job)
    print(shown(f"{job['id']} {job['status']}"))
    return 0


def cmd_download(api: Api, args) -> int:
    directory = Path(args.directory)
    part = "adapter" if args.adapter else "delta" if args.delta else "all"
    download = VersionDownload(api, args.model, args.version, directory, report=_print_outcome, part=part)
    outcomes = download.run()
    bad = [o for o in outcomes if o.state == "mismatch"]
    if bad:
        print(f"{len(bad)} of {len(outcomes)} files failed the sha256 check; the bad parts were "
              "removed, run the command again", file=sys.stderr)
        return 1
    size = sum(o.entry.size for o in outcomes)
    what = {"all": "", "adapter": " (its LoRA adapter)", "delta": " (its delta)"}[part]
    print(shown(f"{args.model} version {args.version}{what}: {len(outcomes)} files, {_bytes(size)}, "
                 f"every sha256 checked, in {directory}"))
    if part == "adapter":
        print(shown(f"load it on the base: pipe.load_lora_weights({str(directory / 'lora')!r}); "
                     f"the *_kohya.safetensors file is for AUTOMATIC1111 and ComfyUI"))
    return 0


# -- pieces of the commands ----------------------------------------------------------------

def _follow_to_end(api: Api, job_id: str, as_json: bool) -> int:
    """The job's progress until it ends, then its outcome; the exit status of `erase --wait`."""
    bar = ProgressBar()
    try:
        job = follow(api, job_id, bar)
    except KeyboardInterrupt:
        bar.close()
        print("\n" + shown(f"stopped following {job_id}; it keeps running (lethe cancel {job_id} stops it)"),
              file=sys.stderr)
        return 130
    return _report_finished(job, as_json)


def _job_body(args) -> dict:
    body: dict = {"base_model": {"name": args.model}, "concepts": args.concepts}
    if args.version is not None:
        body["base_model"]["version"] = args.version
    if args.method:
        body["method"] = args.method
    if args.preserve:
        body["preserve"] = args.preserve
    if args.seed is not None:
        body["seed"] = args.seed
    hyperparameters = dict(args.set or [])
    if args.steps is not None:
        hyperparameters["steps"] = args.steps
    if hyperparameters:
        body["hyperparameters"] = hyperparameters
    if args.force:
        body["force"] = True
    if args.audit:
        body["audit"] = args.audit
    return body


def _report_finished(job: dict, as_json: bool) -> int:
    if as_json:
        _print_json(job)
    elif job["status"] == "succeeded":
        result = job.get("result") or {}
        model, version = result.get("model"), result.get("version")
        print(shown(f"{job['id']} succeeded: {model} version {version} "
                     f"(erased: {', '.join(job.get('concepts') or [])})"))
        print(shown(f"download it: lethe download {model} {version} ./{model}-v{version}"))
        print(shown(f"its audit: lethe version {model} {version}"))
        if (job.get("hyperparameters") or {}).get("trainable") == "lora":
            print(shown(f"its LoRA adapter alone: lethe download {model} {version} ./{model}-v{version}-lora --adapter"))
    if job["status"] == "succeeded":
        return 0
    error = job.get("error") or {}
    detail = f": {error.get('code')}: {error.get('message')}" if error else ""
    print(shown(f"{job['id']} {job['status']}{detail}"), file=sys.stderr)
    return 1


def _print_job(job: dict) -> None:
    error = job.get("error")
    result = job.get("result")
    fields = [
        ("job", job["id"]),
        ("status", job["status"]),
        ("base model", _model_of(job)),
        ("concepts", ", ".join(job.get("concepts") or [])),
        ("method", job.get("method", "")),
        ("progress", _progress_of(job)),
        ("estimate", _estimate_of(job)),
        ("created", _when(job.get("created_at"))),
        ("started", _when(job.get("started_at"))),
        ("finished", _when(job.get("finished_at"))),
    ]
    if error:
        fields.append(("error", f"{error.get('code')}: {error.get('message')}"))
    if result:
        fields.append(("result", f"{result.get('model')} version {result.get('version')}"))
    for name, value in fields:
        print(f"{name + ':':<12}{shown(value)}")


def _print_version(version: dict) -> None:
    files = version.get("files") or []
    fields = [
        ("version", f"{version.get('name')} version {version.get('version')}"),
        ("parent", version.get("parent") or "-"),
        ("job", version.get("job_id") or "-"),
        ("concepts", ", ".join(version.get("concepts_erased") or []) or "-"),
        ("method", version.get("method") or "-"),
        ("family", version.get("family") or "-"),
        ("trainable", version.get("trainable") or "-"),
        ("files", f"{len(files)}, {_bytes(sum(f.get('size', 0) for f in files))}"),
        ("created", _when(version.get("created_at"))),
    ]
    adapter = version.get("adapter")
    if adapter:
        fields.append(("adapter", f"{adapter.get('diffusers')} (diffusers), {adapter.get('kohya')} (kohya), "
                                  f"rank {adapter.get('rank')}"))
    for name, value in fields:
        print(f"{name + ':':<12}{shown(value)}")
    for line in audit_lines(version.get("evaluation")):
        print(shown(line))


def _print_outcome(outcome: Outcome) -> None:
    entry = outcome.entry
    if outcome.state == "mismatch":
        print(shown(f"sha256 mismatch: {entry.path}: expected {entry.sha256}, got {outcome.actual_sha256}"),
              file=sys.stderr)
        return
    note = {"present": "already present", "downloaded": "downloaded",
            "resumed": f"resumed at byte {outcome.resumed_at}"}[outcome.state]
    print(shown(f"  {entry.path}  {_bytes(entry.size)}  {note}"))


def _newest(model: dict) -> dict:
    for key in ("newest_version", "latest_version", "latest", "newest"):
        if isinstance(model.get(key), dict):
            return model[key]
    return model


def _model_of(job: dict) -> str:
    base = job.get("base_model") or {}
    return f"{base.get('name')} v{base.get('version')}"


def _progress_of(job: dict) -> str:
    if job.get("status") == "succeeded":
        return "done"
    progress = job.get("progress") or {}
    if not progress.get("stage"):
        return "-"
    if progress.get("total_steps"):
        return f"{progress['stage']} {progress.get('step', 0)}/{progress['total_steps']}"
    return progress["stage"]


def _estimate_of(job: dict) -> str:
    """`about 3 min 05 s (finish about 12:40:02)`, or why there is no estimate."""
    seconds = job.get("estimated_seconds")
    if not isinstance(seconds, (int, float)):
        return "no estimate yet (no job like it has finished on this server)"
    finish = job.get("estimated_finish_at")
    return f"about {duration(seconds)}" + (f" (finish about {_when(finish)})" if finish else " once started")


def _when(timestamp) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def _print_table(header: tuple, rows: list[tuple]) -> None:
    table = [tuple(str(c) for c in header)] + [tuple(shown(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _print_json(value) -> int:
    print(json.dumps(value, indent=2))
    return 0


# -- the command line ----------------------------------------------------------------------

def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _run(command, args, environ: Mapping[str, str] | None = None) -> int:
    """Run one client command; report every failure in a line or two, never a traceback."""
    api = Api.from_environ(os.environ if environ is None else environ)
    try:
        return command(api, args)
    except ClientError as exc:  # its lines hold the server's problem detail and field errors
        print("\n".join(shown(line) for line in f"lethe: {exc}".split("\n")), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the local side of a download: disk full, no permission
        print(f"lethe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nlethe: interrupted (a download resumes where it stopped when run again)", file=sys.stderr)
        return 130
    finally:
        api.close()


def register(subparsers) -> None:
    """Add the client commands to the `lethe` dispatcher; each sets `func(args) -> int`."""
    def add(name, command, help):
        parser = subparsers.add_parser(name, help=help, description=help)
        parser.add_argument("--json", action="store_true", help="print the server's JSON")
        parser.set_defaults(func=partial(_run, command))
        return parser

    add("models", cmd_models, "list the models and their newest versions")
    add("versions", cmd_versions, "list a model's versions: parent, concepts erased, method, created"
        ).add_argument("model", metavar="MODEL")
    version = add("version", cmd_version, "show a version: its lineage, family, adapter and audit figures")
    version.add_argument("model", metavar="MODEL")
    version.add_argument("version", metavar="VERSION", type=int)

    erase = add("erase", cmd_erase, "start a job that erases concepts from a model")
    erase.add_argument("model", help="the base model's name")
    erase.add_argument("concepts", nargs="+", metavar="CONCEPT", help="a concept to erase")
    erase.add_argument("--version", type=int, help="the base version (default: the newest)")
    erase.add_argument("--method", help="rg (default), graddiff, ga or esd")
    erase.add_argument("--preserve", nargs="+", metavar="CONCEPT", help="concepts to keep intact")
    erase.add_argument("--steps", type=int, help="training steps")
    erase.add_argument("--seed", type=int, help="random seed")
    erase.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                       help="any other hyperparameter, e.g. --set learning_rate=1e-5 (repeatable)")
    erase.add_argument("--force", action="store_true",
                       help="erase a concept the base version has already erased (refused otherwise)")
    erase.add_argument("--audit", choices=("quick", "full", "off"),
                       help="how thoroughly the version is audited after training (default: quick)")
    erase.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    add("follow", cmd_follow, "follow a queued or running job with a progress bar until it ends "
        "(exit status as erase --wait)").add_argument("job", metavar="JOB")

    jobs = add("jobs", cmd_jobs, "list jobs, newest first")
    jobs.add_argument("--status", help="only jobs in this status")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    jobs.add_argument("--after", metavar="JOB", help="the page after this job")

    add("status", cmd_status, "show a job").add_argument("job", metavar="JOB")
    add("cancel", cmd_cancel, "cancel a job").add_argument("job", metavar="JOB")

    download = add("download", cmd_download, "download a version's files, resuming, checking every sha256")
    download.add_argument("model", metavar="MODEL")
    download.add_argument("version", metavar="VERSION", type=int)
    download.add_argument("directory", metavar="DIR")
    only = download.add_mutually_exclusive_group()
    only.add_argument("--adapter", action="store_true",
                      help="only the LoRA adapter files (lora/) of a version made with trainable lora")
    only.add_argument("--delta", action="store_true",
                      help="only the delta against the parent version (delta.safetensors) and manifest.json")


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lethe", description="Lethe client")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args, environ=environ)


if __name__ == "__main__":
    sys.exit(main())
