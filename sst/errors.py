"""The errors a user can cause and fix: a bad path, file or value. utils.cli_main prints them as one line,
through `printable`, which also makes names read from files or the command line safe to print.

Kept apart from utils.py so that the modules everything else imports (config, datasets, fileio) import
nothing of the project but these.
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (bad path, file or value); printed as one line, exit 1."""


class ConfigError(UserError):
    """A bad INI file, section, key or value."""


class DataError(UserError):
    """A dataset or preprocessed file that is missing or not what was expected."""


class OutputError(UserError):
    """An output folder or file that cannot be written (a file in the way, read-only, disk full)."""


def printable(text: str, limit: int | None = 80) -> str:
    """`text` safe to print on one line: control and other unprintable characters (escape sequences, a
    file name's undecodable bytes) written as Python escapes, and cut to `limit` characters with "...".

    Names read from the command line or from files (run names, failure records) pass through here
    before they are printed, so that none can move the cursor, rewrite the terminal, or fail to encode.
    """
    text = str(text)
    out = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in text)
    return out if limit is None or len(out) <= limit else out[:limit - 3] + "..."
