"""TLS material of a run, read and checked before any load: one line naming the flag and file.

Both transports load their files through :func:`client_context`, with Python's ``ssl``: REST
uses the context for its connections, gRPC only to learn, before the run, that grpcio will
accept the same PEM files (grpcio itself would only fail at the first call, as UNAVAILABLE).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from tfsload.core.errors import ConfigError


@dataclass(frozen=True)
class PemFile:
    """A PEM file given by ``flag``."""

    flag: str
    path: str

    def read(self) -> bytes:
        try:
            return Path(self.path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{self.flag}: {self.path}: no such file") from None
        except OSError as exc:
            problem = exc.strerror or str(exc)
            raise ConfigError(f"{self.flag}: {self.path}: cannot read ({problem})") from None


def client_context(
    ca: PemFile | None = None,
    cert: PemFile | None = None,
    key: PemFile | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client context trusting ``ca`` (else the system's roots), presenting ``cert`` and
    ``key`` when given; ``verify=False`` checks neither the certificate nor the host name."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if ca is not None:
        ca.read()
        try:
            context.load_verify_locations(cafile=ca.path)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{ca.flag}: {ca.path}: no PEM certificates ({exc})") from None
    if cert is not None and key is not None:
        cert.read()
        key.read()
        try:
            context.load_cert_chain(cert.path, key.path)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"{cert.flag}: {cert.path} with {key.path}: not a PEM certificate and its "
                f"private key ({exc})"
            ) from None
    return context
