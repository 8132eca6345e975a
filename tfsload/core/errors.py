"""User-facing configuration errors.

Every bad input (a file, a key in it, a flag) is reported as one line that names where the
problem is, and the program exits non-zero before any load is sent.
"""


class ConfigError(Exception):
    """A bad file, key or flag; ``str(err)`` is the whole one-line message."""
