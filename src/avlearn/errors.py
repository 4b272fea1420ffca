"""User-facing errors. The CLI prints these as one line (no traceback) and exits with status 2."""

from __future__ import annotations


class AvlearnError(Exception):
    """An error the user can fix: the message says what is wrong and what to do."""


class ConfigError(AvlearnError):
    """A bad config key, value or override."""


class DataError(AvlearnError):
    """A dataset or annotation file that cannot be used as it is (names the file, line and field)."""
