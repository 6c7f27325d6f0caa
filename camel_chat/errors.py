"""The exceptions camel_chat raises for a user's mistake, and how commands report them.

    CamelChatError          any error a user can fix: bad flag, missing file, bad record
     ├── DataError          a data file or one of its records is wrong (names file + record)
     └── DownloadError      a dataset could not be fetched (names dataset + reason)

Commands catch `CamelChatError` in `main()` and print one line, never a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class CamelChatError(Exception):
    """An error the user can fix; its message says what and where."""


class DataError(CamelChatError):
    """A data file, or one record in it, is malformed."""

    def __init__(
        self, path: str | Path, reason: str, record: str | int | None = None, rule: str | None = None
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.record = record
        # a short slug ("invalid-utf8", "too-deep", ...) that a caller counting drops uses as the reason
        self.rule = rule
        where = self.path if record is None else f"{self.path} [record {record}]"
        super().__init__(f"{where}: {reason}")


class DownloadError(CamelChatError):
    """A dataset could not be downloaded."""

    def __init__(self, dataset: str, reason: str) -> None:
        self.dataset = dataset
        self.reason = reason
        super().__init__(f"{dataset}: {reason}")


def run_command(run: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None) -> int:
    """Call a command's `run(argv)` and turn a `CamelChatError` into one line on stderr, exit 2."""
    try:
        return run(argv) or 0
    except CamelChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
