"""The `lethe` console script: one dispatcher, commands registered by their modules.

Each command module exposes `register(subcommands)`, which adds its parsers to the
argparse sub-parser group and sets `func=<callable(args) -> exit status>` on each one.
- `service.cli.server`: `serve`, `gateway`, `worker` (the running parts);
- `service.cli.client`: the client commands (`models`, `erase`, `jobs`, ...), when present.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata

COMMAND_MODULES = ("service.cli.server", "service.cli.client")


def _command_modules():
    for name in COMMAND_MODULES:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:  # a missing dependency inside the module is a real error
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lethe", description="Remove concepts from diffusion models.")
    parser.add_argument("--version", action="version", version=f"lethe {_package_version()}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.register(subcommands)
    return parser


def _package_version() -> str:
    try:
        return importlib.metadata.version("lethe")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0

