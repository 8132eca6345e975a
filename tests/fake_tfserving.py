"""A small TF-Serving-like REST server whose latency follows a law the test chooses.

The searches' tests need targets whose answer is known in advance: latency that stays put, that
grows on a schedule, or that jumps once the arrival rate passes a known value. The real stand-in
cannot promise any of that on a shared 2-core machine, so these tests use this server: it
answers ``POST /v1/models/<name>:predict`` with one ``[p, 1 - p]`` row per row sent (what the
Locust users check) and ``GET /v1/models/<name>`` with TF Serving's AVAILABLE status, after
``latency(now, rate)`` seconds, where ``rate`` is the arrival rate of the step of load under
way. A test that runs the steps in its own process tells the server each step's rate as it
begins (:meth:`FakeServer.new_step`): measured from arrivals, a knee within a few per cent
could not be told apart from the users' start-up burst or the catch-up after a stall of this
shared machine, and slow answers, by holding the users, cause the very bursts that keep the
answers slow. Otherwise the rate is the predicts per second since the step began (a pause
between predicts longer than ``QUIET_S`` begins one), over at least a second. Waiting costs no
CPU (asyncio), so the generator is not starved.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from tfsload.core.processes import free_port

Latency = Callable[[float, float], float]
MIN_SPAN_S = 1.0
QUIET_S = 1.0  # a pause this long between predicts starts a new step
STATUS = {
    "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


def steady(seconds: float) -> Latency:
    return lambda _now, _rate: seconds


def doubling_every(seconds: float, period: float) -> Latency:
    """``seconds`` at first, twice that after ``period`` seconds, four times after two..."""
    start = time.monotonic()
    return lambda now, _rate: seconds * 2 ** int((now - start) / period)


def knee_at(rate: float, fast: float, slow: float) -> Latency:
    """``fast`` while predicts arrive at most at ``rate`` per second, else ``slow``."""
    return lambda _now, recent: fast if recent <= rate else slow


class FakeServer:
    def __init__(self, latency: Latency) -> None:
        self.latency = latency
        self.port = free_port()
        self.arrivals = 0  # since the step began
        self.last_arrival = float("-inf")
        self.declared_rate: float | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.started = time.monotonic()

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_step(self, rate: float | None = None) -> None:
        """A step of load begins, at ``rate`` if it is known: the previous one's arrivals must
        not count towards its rate."""
        self.arrivals = 0
        self.started = time.monotonic()
        self.declared_rate = rate

    async def predict(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        if self.declared_rate is None and now - self.last_arrival > QUIET_S:
            self.new_step()
        self.arrivals += 1
        self.last_arrival = now
        body = json.loads(await request.read())
        rate = self.declared_rate
        if rate is None:
            rate = self.arrivals / max(now - self.started, MIN_SPAN_S)
        delay = self.latency(now, rate)
        await asyncio.sleep(delay)
        rows = [[0.25, 0.75] for _ in body["instances"]]
        return web.json_response({"predictions": rows})

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response(STATUS)

    def serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post(r"/v1/models/{name}:predict", self.predict)
        app.router.add_get("/v1/models/{name}", self.status)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024)
        self.loop.run_until_complete(site.start())
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()


@contextmanager
def fake_server(latency: Latency) -> Iterator[FakeServer]:
    """Serve in a background thread for the ``with`` block."""
    server = FakeServer(latency)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    server.ready.wait(10)
    try:
        yield server
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
        thread.join(10)
