"""`python -m unlearning.canvas train --out models/canvas` and `... check --model models/canvas`."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..digits.train import add_training_options, configured
from .train import DEFAULTS, train


def _train(args) -> int:
    command = "python -m unlearning.canvas " + shlex.join(sys.argv[1:])
    train(args.out, configured(args, DEFAULTS), command=command)
    return 0


def _check(args) -> int:
    from .check import check

    return 0 if check(args.model, args.per_pair, args.seed, args.all_templates) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearning.canvas")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the canvas model into a pipeline folder")
    train_parser.add_argument("--out", required=True)
    add_training_options(train_parser)
    check = commands.add_parser("check", help="does the model draw the digit and the style asked for?")
    check.add_argument("--model", default="models/canvas")
    check.add_argument("--per-pair", type=int, default=10, help="images per style x digit pair")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--all-templates", action="store_true", help="also the other training and held-out phrasings")
    args = parser.parse_args(argv)
    return _train(args) if args.command == "train" else _check(args)


if __name__ == "__main__":
    sys.exit(main())
