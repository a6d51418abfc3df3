"""User-facing errors: one line, no traceback, exit code 2.

Raise `UsageError` for a bad option value and `InputError` for a bad file (name the file, the line
or key, and what was expected). The CLI turns both into `entload <cmd>: error: <message>` and exit 2.
"""


class EntloadError(Exception):
    """An error the user can fix; printed as one line."""

    exit_code = 2


class UsageError(EntloadError):
    """A command-line option has a value we cannot use."""


class InputError(EntloadError):
    """An input file (YAML, CSV, log, run folder) is missing or malformed."""
