"""The errors a user can cause and fix: a bad path, file or value. utils.cli_main prints them as one line.

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
