"""Targets: the servers under test, each reachable over REST and gRPC.

A targets file is TOML with one ``[[targets]]`` table per server::

    [[targets]]
    name = "tfs-cpu"                      # short id: stats rows are "<name> rest" / "<name> grpc"
    label = "TF Serving, CPU"             # what it is, shown in reports
    rest = "http://127.0.0.1:8501"
    grpc = "127.0.0.1:8500"               # or "grpc://127.0.0.1:8500"
    metrics = "http://127.0.0.1:8501/monitoring/prometheus/metrics"   # optional

The same table shape is used inside experiment files, so one parser serves both.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tfsload.core.errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
TARGET_KEYS = {"name", "label", "rest", "grpc", "metrics"}


@dataclass(frozen=True)
class Target:
    """One server under test."""

    name: str
    label: str
    rest: str | None
    grpc: str | None
    metrics: str | None = None

    def url(self, protocol: str) -> str | None:
        """The address for ``protocol`` ("rest" or "grpc"), or None if not served."""
        return self.rest if protocol == "rest" else self.grpc


def normalize_http(url: str, with_path: bool = False) -> str:
    """Check ``http[s]://host:port[/path]``; the REST base (``with_path=False``) has no path.

    Raises ValueError naming the URL otherwise.
    """
    parts = urlsplit(url)
    ok = parts.scheme in ("http", "https") and parts.hostname and parts.port is not None
    if not ok or (not with_path and parts.path.strip("/")):
        shape = "http://host:port/path" if with_path else "http://host:port"
        raise ValueError(f"{url!r} is not an {shape} URL")
    return url if with_path else url.rstrip("/")


def normalize_grpc(url: str) -> str:
    """``host:port`` from ``grpc://host:port`` or ``host:port``; ``grpcs://host:port`` (TLS)
    keeps its scheme. Raises ValueError otherwise."""
    secure = url.startswith("grpcs://")
    bare = url.removeprefix("grpcs://" if secure else "grpc://").rstrip("/")
    parts = urlsplit(f"//{bare}")
    if not parts.hostname or parts.port is None or parts.path:
        shapes = "host:port, grpc://host:port or grpcs://host:port"
        raise ValueError(f"{url!r} is not a {shapes} address")
    return f"grpcs://{bare}" if secure else bare


def parse_target(table: object, where: str, extra_keys: frozenset[str] = frozenset()) -> Target:
    """Validate one target table; ``where`` prefixes errors (e.g. ``file: targets[0]``).

    ``extra_keys`` are allowed but left to the caller (experiment files add launch settings).
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - TARGET_KEYS - extra_keys)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key")
    name = table.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{where}.name: required; letters, digits, '-' and '_', starting with a letter"
        )
    values: dict[str, str | None] = {}
    for key in ("label", "rest", "grpc", "metrics"):
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: must be a string")
        values[key] = value
    checks = {
        "rest": normalize_http,
        "grpc": normalize_grpc,
        "metrics": lambda url: normalize_http(url, with_path=True),
    }
    for key, check in checks.items():
        if values[key]:
            try:
                values[key] = check(values[key])
            except ValueError as exc:
                raise ConfigError(f"{where}.{key}: {exc}") from None
    if not values["rest"] and not values["grpc"]:
        raise ConfigError(f"{where}: needs a rest or a grpc address")
    return Target(name, values["label"] or name, values["rest"], values["grpc"], values["metrics"])


def parse_targets(
    tables: object, where: str, extra_keys: frozenset[str] = frozenset()
) -> list[Target]:
    """Validate a list of target tables, requiring unique names."""
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: needs at least one [[targets]] table")
    targets = [parse_target(t, f"{where}[{i}]", extra_keys) for i, t in enumerate(tables)]
    names = [t.name for t in targets]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{where}[{i}].name: {name!r} is used twice")
    return targets


def read_toml(path: Path) -> dict:
    """Parse a TOML file, turning every failure into a one-line ConfigError naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None


def load_targets(path: Path) -> list[Target]:
    """Read a targets file (see the module docstring)."""
    data = read_toml(path)
    unknown = sorted(set(data) - {"targets"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key")
    return parse_targets(data.get("targets"), f"{path}: targets")
