"""Errors with TF Serving's status codes, and how each transport reports them.

Everything the server rejects is a :class:`ServingError` carrying a gRPC status code and TF
Serving's message; gRPC returns the code as is, REST maps it to the HTTP status TF Serving's
``http_server.cc`` uses.
"""

from __future__ import annotations

import grpc

# TF Serving's ToHTTPStatusCode().
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# TensorFlow's error codes are gRPC's codes, number for number.
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request failure: ``code`` is the gRPC status, ``message`` TF Serving's text."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The name TF Serving puts in the ``status`` label of ``request_count``."""
        return self.code.name

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC code for a TensorFlow error code (``tf.errors.OpError.error_code``)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
