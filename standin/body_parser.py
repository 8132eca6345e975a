"""REST predict bodies to tensors, off the event loop REST and gRPC share.

Python's JSON parser holds the interpreter lock for the whole of a body, so a thread would not
keep a big body from stalling every other request: a 4 MB body held the loop for seconds. Bodies
larger than ``INLINE_BYTES`` are therefore parsed and checked in worker processes (spawned, not
forked: the server process runs TensorFlow's threads), which send back only the tensors, or the
error. Small bodies, the common case, are parsed on the loop, where they take well under a
millisecond and need no hand-off. Either way the same function does the work, so the answers
(and TF Serving's order of checks) do not depend on a body's size.

A big body never exists as one piece in the server process either: as it arrives, each chunk
is written to a temporary file (a system call per chunk, without the interpreter lock), and the
worker reads the file. Joining or pickling a body of tens of megabytes would hold the lock, and
so the loop, for tens of milliseconds.

A worker that dies (killed, out of memory) is replaced; the request it was parsing fails with
INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import grpc

from standin.limits import Limits
from standin.rest_json import parse_body, request_tensors
from standin.servable import DEFAULT_SIGNATURE, TensorSpec
from standin.status import ServingError, invalid

log = logging.getLogger("standin")

INLINE_BYTES = 64 * 1024
PR_SET_PDEATHSIG = 1

# signature key -> input alias -> spec, for the servable the request names (None: no servable).
Signatures = dict[str, dict[str, TensorSpec]]


def decode_body(body: bytes, signatures: Signatures | None, limits: Limits | None) -> tuple:
    """Parse and check one predict body, in TF Serving's order.

    Returns ``("parsed",)`` when ``signatures`` is None (the JSON is fine; the caller reports
    why there is no servable), ``("ok", signature_name, tensors, row_format)``, or
    ``("error", code_name, message)``. Never raises: it may run in another process.
    """
    try:
        doc = parse_body(body)  # JSON errors come before the model lookup, as in TF Serving
        if signatures is None:
            return ("parsed",)
        signature_name = doc.get("signature_name", "")
        key = signature_name or DEFAULT_SIGNATURE
        specs = signatures.get(key)
        if specs is None:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        tensors, rows = request_tensors(doc, specs, signature_name, limits)
        return ("ok", signature_name, tensors, rows)
    except ServingError as exc:
        return ("error", exc.code.name, exc.message)
    except RecursionError:
        return ("error", "INVALID_ARGUMENT", "JSON Value nested too deeply")
    except Exception as exc:  # a bug: the caller logs one line and answers 500
        return ("error", "INTERNAL", f"{type(exc).__name__}: {exc}")


def _worker_decode(path: str, signatures: Signatures | None, limits: Limits | None) -> tuple:
    """In a worker: decode the body the server spilled to ``path``."""
    try:
        with open(path, "rb") as file:
            body = file.read()
    except OSError as exc:  # the request was abandoned and its file removed
        return ("error", "CANCELLED", f"Request body is gone: {exc.strerror}")
    result = decode_body(body, signatures, limits)
    del body
    _trim()
    return result


class Body:
    """A request body as it arrives: kept in memory up to ``INLINE_BYTES``, then spilled to
    an unlinked-on-close temporary file that a worker process reads."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0
        self.path: str | None = None
        self._fd: int | None = None

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._fd is None and self.size <= INLINE_BYTES:
            self._chunks.append(chunk)
            return
        if self._fd is None:
            self._fd, self.path = tempfile.mkstemp(prefix="standin-body-")
            pending, self._chunks = self._chunks, []
            for part in pending:
                self._write(part)
        self._write(chunk)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def inline(self) -> bytes | None:
        """The body, when it is small enough to be parsed on the loop."""
        return b"".join(self._chunks) if self._fd is None else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None


def _trim() -> None:
    """Hand freed heap back to the system after a big body (glibc only; else a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _worker_init() -> None:
    """A worker ends with the server, however the server ends; Ctrl-C is the server's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _ready() -> bool:
    return True


class BodyParser:
    """Decodes predict bodies: small ones inline, larger ones in ``workers`` processes."""

    def __init__(self, workers: int) -> None:
        self._workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
        )

    async def start(self) -> None:
        """Start the worker processes now, so the first big body does not wait for them."""
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _ready) for _ in range(self._workers))
        )

    async def decode(
        self, body: Body, signatures: Signatures | None, limits: Limits | None
    ) -> tuple:
        """:func:`decode_body`'s result for ``body``, decoded inline or by a worker."""
        data = body.inline()
        if data is not None:
            return decode_body(data, signatures, limits)
        if self._pool is None:  # not started (tests of the REST layer alone)
            with open(body.path, "rb") as file:
                return decode_body(file.read(), signatures, limits)
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, _worker_decode, body.path, signatures, limits
            )
        except BrokenProcessPool:
            if self._pool is pool:
                log.warning("a body parser process stopped; starting a new one")
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            return (
                "error",
                grpc.StatusCode.INTERNAL.name,
                "The stand-in's body parser process stopped while parsing this request",
            )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
