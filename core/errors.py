"""The error every layer raises for a problem the user fixes in what they asked for.

A wrong spec field, a model that cannot be loaded, a bad option: the command line prints the message
(which names the file, field or setting) and exits 2, without a traceback. Errors about one input
never take this form: they become rejects (core.records.Reject).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Something the user asked for cannot be done as asked; the message says what to change."""
