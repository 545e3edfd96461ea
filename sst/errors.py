"""The errors a user can cause and fix: a bad path, file or value. utils.cli_main prints them as one line,
through `printable`, which also makes names read from files or the command line safe to print.

Kept apart from utils.py so that the modules everything else imports (config, datasets, fileio) import
nothing of the project but these.
"""
from __future__ import annotations

import sys


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


def warn(text: str) -> None:
    """One `warning:` line on standard error, `text` escaped as `printable` escapes it (a file or folder name
    from a received folder cannot move the cursor or retitle the terminal)."""
    print(f"warning: {printable(text, limit=None)}", file=sys.stderr)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")   # what a spreadsheet reads as a formula (OWASP, CSV injection)


def csv_text(text: str) -> str:
    """A text cell safe to open in a spreadsheet, following OWASP's advice on CSV injection: a cell that
    starts with = + - @, a tab or a carriage return is prefixed with a single quote, which spreadsheets show
    as text and do not evaluate. Numbers are written by their writers as numbers and never pass here (a
    negative difference stays -0.53); csv.writer quotes what needs quoting. Control characters are escaped
    as `printable` escapes them (`cat results.csv` is a terminal too)."""
    text = printable(text, limit=None)
    return "'" + text if text.startswith(FORMULA_START) else text
