"""Helpers shared by the command-line entry points: data-root option and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from retinalight.errors import RetinalightError

DATA_ROOT_HELP = "folder holding DRIVE/ and CHASE_DB1/ (default: $RETINALIGHT_DATA, else ./data)"


def resolve_data_root(value: str | os.PathLike | None = None) -> Path:
    """--data-root, else $RETINALIGHT_DATA, else ./data."""
    return Path(value or os.environ.get("RETINALIGHT_DATA") or "data").expanduser()


def add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, metavar="DIR", help=DATA_ROOT_HELP)


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run an entry point; user errors become one line on stderr (exit 2), Ctrl-C exits 130."""
    try:
        code = main(argv)
    except RetinalightError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
