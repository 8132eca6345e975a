"""Faults on demand: added latency, errors, dropped calls, malformed answers and a pause.

A load tester is used when servers misbehave, so the stand-in can misbehave on purpose, for
testing clients and the suite itself. All of it is off by default and set with ``--fault_*``
flags (stand-in only); the start-up line names what is in force. The faults touch predict calls
only (status, metadata and metrics stay honest, so readiness checks keep working), except the
pause, which stops the whole server as a stalled process would:

- ``--fault_latency``: added before the model runs, ``50ms`` (fixed), ``exp:50ms`` (exponential
  with that mean) or ``uniform:10ms-90ms``; units ``us``, ``ms``, ``s``.
- ``--fault_error_rate`` / ``--fault_error_code``: that share of predicts fails with the code
  (``429``, ``500``, ``503``, ``504`` or the gRPC names ``RESOURCE_EXHAUSTED``, ``INTERNAL``,
  ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``UNKNOWN``); REST gets the HTTP status TF Serving
  maps the code to.
- ``--fault_drop_rate``: REST closes the connection without an answer; gRPC has no handle on
  its connection from a call, so the call fails with UNAVAILABLE, as a dropped connection does.
- ``--fault_malformed_rate``: REST answers 200 with the first half of the JSON; gRPC answers
  bytes that are not a PredictResponse (the client fails to parse them).
- ``--fault_pause_s`` / ``--fault_pause_after_s``: once, that long after the model is ready,
  no call is answered for the pause's length; calls already in flight are held too.
- ``--fault_seed``: the draws' seed, for reproducible runs.

One uniform draw per predict decides error, drop or malformed (so the rates add up to at most 1).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass

from tfsload.core.errors import ConfigError

log = logging.getLogger("standin")

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(us|ms|s)")
# --fault_error_code values -> gRPC code names (REST answers the HTTP status of that code).
ERROR_CODES = {
    "429": "RESOURCE_EXHAUSTED",
    "500": "INTERNAL",
    "503": "UNAVAILABLE",
    "504": "DEADLINE_EXCEEDED",
    **{
        name: name
        for name in (
            "RESOURCE_EXHAUSTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DEADLINE_EXCEEDED",
            "UNKNOWN",
        )
    },
}
DROP = "drop"
MALFORMED = "malformed"


def parse_duration(text: str, flag: str) -> float:
    """``50ms`` -> 0.05 (seconds); a unit is required."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{flag}: {text!r} is not a duration (a number with us, ms or s)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Latency:
    """Added latency: ``fixed`` (``low``), ``exp`` (mean ``low``) or ``uniform`` (low..high)."""

    kind: str
    low: float
    high: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1 / self.low) if self.low > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return self.low


def parse_latency(text: str) -> Latency | None:
    flag = "--fault_latency"
    if not text:
        return None
    kind, _, rest = text.partition(":")
    if not rest:
        return Latency("fixed", parse_duration(text, flag))
    if kind == "exp":
        return Latency("exp", parse_duration(rest, flag))
    if kind == "uniform":
        low, sep, high = rest.partition("-")
        if not sep:
            raise ConfigError(f"{flag}: uniform needs LOW-HIGH, e.g. uniform:10ms-90ms")
        latency = Latency("uniform", parse_duration(low, flag), parse_duration(high, flag))
        if latency.high < latency.low:
            raise ConfigError(f"{flag}: {text!r} has its high end below its low end")
        return latency
    raise ConfigError(f"{flag}: {text!r} is not 50ms, exp:MEAN or uniform:LOW-HIGH (e.g. exp:20ms)")


@dataclass(frozen=True)
class FaultConfig:
    """The ``--fault_*`` flags, checked."""

    latency: Latency | None = None
    latency_text: str = ""
    error_rate: float = 0.0
    error_code: str = "UNAVAILABLE"  # a gRPC status code name
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    pause_s: float = 0.0
    pause_after_s: float = 0.0
    seed: int | None = None

    @property
    def active(self) -> bool:
        return bool(
            self.latency or self.error_rate or self.drop_rate or self.malformed_rate or self.pause_s
        )

    def describe(self) -> str:
        """The faults in force, for the start-up line."""
        if not self.active:
            return "off"
        parts = []
        if self.latency:
            parts.append(f"latency={self.latency_text}")
        if self.error_rate:
            parts.append(f"error_rate={self.error_rate:g} ({self.error_code})")
        if self.drop_rate:
            parts.append(f"drop_rate={self.drop_rate:g}")
        if self.malformed_rate:
            parts.append(f"malformed_rate={self.malformed_rate:g}")
        if self.pause_s:
            parts.append(f"pause {self.pause_s:g} s after {self.pause_after_s:g} s")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return " ".join(parts)


def parse_faults(values: dict) -> FaultConfig:
    """FaultConfig from the ``fault_*`` flag values; raises ConfigError naming the flag."""
    for name in ("fault_error_rate", "fault_drop_rate", "fault_malformed_rate"):
        if not 0.0 <= values[name] <= 1.0:
            raise ConfigError(f"--{name}: must be between 0 and 1, got {values[name]:g}")
    total = values["fault_error_rate"] + values["fault_drop_rate"] + values["fault_malformed_rate"]
    if total > 1.0:
        raise ConfigError(
            "--fault_error_rate, --fault_drop_rate and --fault_malformed_rate add up to "
            f"{total:g}, more than 1"
        )
    for name in ("fault_pause_s", "fault_pause_after_s"):
        if not values[name] >= 0.0:  # also refuses NaN
            raise ConfigError(f"--{name}: must not be negative, got {values[name]:g}")
    if values["fault_pause_after_s"] and not values["fault_pause_s"]:
        raise ConfigError("--fault_pause_after_s is set without --fault_pause_s")
    code = values["fault_error_code"].strip().upper()
    if code not in ERROR_CODES:
        raise ConfigError(
            f"--fault_error_code: {values['fault_error_code']!r} is not one of "
            + ", ".join(ERROR_CODES)
        )
    return FaultConfig(
        latency=parse_latency(values["fault_latency"]),
        latency_text=values["fault_latency"],
        error_rate=values["fault_error_rate"],
        error_code=ERROR_CODES[code],
        drop_rate=values["fault_drop_rate"],
        malformed_rate=values["fault_malformed_rate"],
        pause_s=values["fault_pause_s"],
        pause_after_s=values["fault_pause_after_s"],
        seed=values["fault_seed"],
    )


class Faults:
    """The faults of one server, on its event loop."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._running = asyncio.Event()
        self._running.set()

    def start(self) -> None:
        """The model is ready: schedule the pause, if any."""
        if self.config.pause_s > 0:
            asyncio.get_running_loop().call_later(self.config.pause_after_s, self._pause)

    def _pause(self) -> None:
        log.warning("fault: pausing for %g s (--fault_pause_s)", self.config.pause_s)
        self._running.clear()
        asyncio.get_running_loop().call_later(self.config.pause_s, self._resume)

    def _resume(self) -> None:
        log.warning("fault: pause over")
        self._running.set()

    async def gate(self) -> None:
        """Wait while the server is paused."""
        if not self._running.is_set():
            await self._running.wait()

    async def predict(self) -> str | None:
        """One predict's faults: waits the added latency, then raises the injected error or
        returns DROP, MALFORMED or None."""
        config = self.config
        if config.latency is not None:
            await asyncio.sleep(config.latency.draw(self._rng))
        if not (config.error_rate or config.drop_rate or config.malformed_rate):
            return None
        draw = self._rng.random()
        if draw < config.error_rate:
            import grpc

            from standin.status import ServingError

            raise ServingError(
                grpc.StatusCode[config.error_code],
                f"Injected fault: {config.error_code} (stand-in --fault_error_rate="
                f"{config.error_rate:g})",
            )
        draw -= config.error_rate
        if draw < config.drop_rate:
            return DROP
        if draw - config.drop_rate < config.malformed_rate:
            return MALFORMED
        return None
