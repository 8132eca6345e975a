"""Extra request headers (REST) and call metadata (gRPC): ``--header "Name: value"``.

Headers carry secrets (API keys and tokens for a gateway in front of TF Serving), so a value is
never written anywhere by tfsload: a run spec written to a file keeps only the names (a literal
value becomes :data:`REDACTED`, which a spec refuses when read back), and no error message
quotes a value. A value written ``${VAR}`` is a reference instead: it is read from the
environment variable ``VAR`` of the Locust process when the users connect, so the secret stays
out of command lines (``--header 'x-api-key: ${API_KEY}'``, single-quoted) and spec files.

One name rule serves both protocols: letters, digits, ``-``, ``_`` and ``.`` (what HTTP allows
and gRPC metadata keys take, lowercased). Names that frame the request (Content-Length, Host,
TE, ...) or that gRPC reserves (``grpc-*``, binary ``*-bin`` keys) are refused, since tfsload
sets or cannot send them.
"""

from __future__ import annotations

import os
import re

REDACTED = "<redacted>"
NAME = re.compile(r"^[A-Za-z0-9._-]+$")
REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
VALUE = re.compile(r"^[\x20-\x7e]*$")  # printable ASCII: what gRPC metadata and HTTP both carry
RESERVED = frozenset(
    {
        "connection", "content-length", "content-type", "expect", "host", "keep-alive",
        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    }
)  # fmt: skip


def split(entry: str) -> tuple[str, str] | None:
    """``"Name: value"`` -> (name, value), or None when it is not of that form."""
    name, colon, value = entry.partition(":")
    name = name.strip()
    if not colon or not name:
        return None
    return name, value.strip()


def problem(index: int, entry: object) -> str | None:
    """What is wrong with the ``index``-th header entry, never quoting its value."""
    parsed = split(entry) if isinstance(entry, str) else None
    if parsed is None:
        return f"entry {index + 1} is not 'Name: value'"
    name, value = parsed
    lower = name.lower()
    if not NAME.match(name):
        return f"entry {index + 1}: a name has only letters, digits, '-', '_' and '.'"
    if lower in RESERVED or lower.startswith("grpc-") or lower.endswith("-bin"):
        return f"{name}: tfsload sets or cannot send this header"
    if value == REDACTED:
        return (
            f"{name}: its value was redacted when this spec was written; give it as ${{VAR}} "
            "and set VAR in the environment of the Locust processes"
        )
    if not VALUE.match(value):
        return f"{name}: a value has only printable ASCII characters"
    return None


def redact(entries: tuple[str, ...]) -> list[str]:
    """The entries as a file may keep them: references stay, literal values become REDACTED."""
    kept = []
    for entry in entries:
        name, value = split(entry) or (entry, "")
        kept.append(f"{name}: {value if REFERENCE.match(value) else REDACTED}")
    return kept


def resolve(entries: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, value) pairs with ``${VAR}`` references read from the environment.

    Raises ValueError naming the header and the variable when one is unset or unusable.
    """
    pairs = []
    for entry in entries:
        name, value = split(entry)
        reference = REFERENCE.match(value)
        if reference:
            variable = reference.group(1)
            value = os.environ.get(variable)
            if value is None:
                raise ValueError(f"{name}: environment variable {variable} is not set")
            value = value.strip()
            if not VALUE.match(value):
                raise ValueError(
                    f"{name}: environment variable {variable} has characters other than "
                    "printable ASCII"
                )
        pairs.append((name, value))
    return pairs
