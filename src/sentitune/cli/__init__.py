"""Command line: a thin shell over the Python API.

Every verb calls the function of the same name in `sentitune` with options of the same
names. Run settings (`train`, `data`, `compare`) are generated from the config
dataclasses (same names, same help, same choices), so the CLI, YAML presets and the saved
config.yaml can never drift apart. Conventions, the same in every verb:

- one flag per concept (`--data` everywhere; older spellings still work, unlisted);
- booleans are `--x/--no-x` (the older `--x true|false` still works);
- an optional setting takes `none` to clear a preset's value (`--train-samples none`:
  every row);
- flags and free texts may come in any order.

User mistakes print one line and exit 2; nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from sentitune import console
from sentitune.cli.flags import alias, boolean_flags, boolean_words
from sentitune.cli.parsers import build_parser
from sentitune.errors import SentituneError

__all__ = ["build_parser", "main", "parse"]


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse with flags and free texts in any order (argparse's intermixed parsing, per
    verb, since it does not mix with subcommands)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if not argv or argv[0] not in commands.choices:
        return parser.parse_args(argv)  # --help, --version, or an error listing the verbs
    sub = commands.choices[argv[0]]
    rest = [alias(arg) for arg in boolean_words(argv[1:], boolean_flags(sub))]
    # A verb with actions (`labels add`) lets each action parse; its flags still go anywhere.
    nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
    args = sub.parse_args(rest) if nested else sub.parse_intermixed_args(rest)
    args.command = argv[0]
    return args


def _show_warning(message, *_args, **_kwargs) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, or a mistake already explained
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings(), console.cli_spelling():
            # Each warning once, as one line on stderr; library deprecations are not the
            # user's business.
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.showwarning = _show_warning
            code = args.func(args)  # a command may return an exit status, e.g. failed checks
    except SentituneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code or 0

