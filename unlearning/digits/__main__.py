"""`python -m unlearning.digits train --out models/digits` and `... check --model models/digits`."""

from __future__ import annotations

import argparse
import shlex
import sys

from .classifier import held_out_accuracy
from .prompts import TEMPLATES, TEST_TEMPLATES
from .sampling import accuracy_by_digit, accuracy_table, draw_digits, load_pipeline
from .train import TrainingConfig, add_training_options, configured, train

MEAN_TARGET, EACH_TARGET = 0.80, 0.60


def _train(args) -> int:
    command = "python -m unlearning.digits " + shlex.join(sys.argv[1:])
    train(args.out, configured(args, TrainingConfig()), command=command)
    return 0


def _check(args) -> int:
    print(f"judge accuracy on its held-out real digits: {held_out_accuracy():.4f}")
    pipe = load_pipeline(args.model)
    templates = TEMPLATES + TEST_TEMPLATES if args.all_templates else TEMPLATES[:1]
    passed = True
    for template in templates:
        accuracy = accuracy_by_digit(draw_digits(pipe, range(10), args.per_digit, args.seed, template))
        mean = sum(accuracy.values()) / len(accuracy)
        print(f"\nprompt {template!r}, {args.per_digit} images per digit, seed {args.seed}\n")
        print(accuracy_table(accuracy))
        if template == TEMPLATES[0]:
            passed = mean >= MEAN_TARGET and min(accuracy.values()) >= EACH_TARGET
    print(f"\ntargets (mean >= {MEAN_TARGET}, each >= {EACH_TARGET}) on {TEMPLATES[0]!r}: {'met' if passed else 'NOT met'}")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearning.digits")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the digits model into a pipeline folder")
    train_parser.add_argument("--out", required=True)
    add_training_options(train_parser)
    check = commands.add_parser("check", help="does the model draw the digit asked for?")
    check.add_argument("--model", default="models/digits")
    check.add_argument("--per-digit", type=int, default=50)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--all-templates", action="store_true", help="also the other training and held-out phrasings")
    args = parser.parse_args(argv)
    return _train(args) if args.command == "train" else _check(args)


if __name__ == "__main__":
    sys.exit(main())
