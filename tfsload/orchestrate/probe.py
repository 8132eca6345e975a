"""Ask a target what it is before loading it: reachable? model AVAILABLE? TF Serving or stand-in?

A report must never present stand-in numbers as TF Serving's. The stand-in marks every REST
response with ``Server: tfsload-standin/<version>``; TF Serving answers the same status request
without that mark. A gRPC address is only checked for a listening socket, because the status RPC
would need the gRPC stack in the runner for no extra information.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

STANDIN_SERVER_PREFIX = "tfsload-standin/"


@dataclass(frozen=True)
class ServerInfo:
    """What a probe learned; ``error`` is None when the model is AVAILABLE."""

    kind: str  # "standin", "tfserving" or "unknown"
    version: str | None
    state: str | None
    error: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def model_status(rest: str, model_name: str, timeout: float = 5.0) -> ServerInfo:
    """GET ``/v1/models/<name>`` and classify the server from its answer."""
    url = f"{rest}/v1/models/{model_name}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            server = response.headers.get("Server", "")
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()[:200]
        return ServerInfo("unknown", None, None, f"GET {url}: HTTP {exc.code} {detail}")
    except (urllib.error.URLError, OSError) as exc:
        return ServerInfo("unknown", None, None, f"GET {url}: {getattr(exc, 'reason', exc)}")
    try:
        statuses = json.loads(body)["model_version_status"]
        state = statuses[0]["state"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ServerInfo("unknown", None, None, f"GET {url}: not a TF Serving model status")
    if server.startswith(STANDIN_SERVER_PREFIX):
        kind, version = "standin", server.removeprefix(STANDIN_SERVER_PREFIX)
    else:
        kind, version = "tfserving", None
    error = None if state == "AVAILABLE" else f"model {model_name!r} is {state}, not AVAILABLE"
    return ServerInfo(kind, version, state, error)


def port_open(address: str, timeout: float = 5.0) -> str | None:
    """None if ``host:port`` (or ``grpcs://host:port``) accepts a TCP connection, else why."""
    host, _, port = address.removeprefix("grpcs://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"connect {address}: {exc.strerror or exc}"
