"""Typed errors that servicers and engines raise; the interceptor maps them to status codes.

No code inspects an exception's text: the class says what happened, the message says it
to a person. Anything else that escapes a handler becomes INTERNAL with a generic message
(the details go to the log, not to the client).
"""

from __future__ import annotations

import grpc


class MiloError(Exception):
    """Base class: an error with a gRPC status code and a message for the caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retry_after_ms: int | None = None  # a hint for the caller: when to try again
    # A machine-readable cause finer than the status code (e.g. "context_length_exceeded"),
    # sent as the `milo-error-reason` trailer so that a front can name it to its clients.
    reason: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MiloError):
    """The request is malformed or asks for something this server cannot do."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ContextLengthExceeded(InvalidArgument):
    """The input does not fit in the model's context window (OpenAI's error code name)."""

    reason = "context_length_exceeded"


class NotFound(MiloError):
    """NOT_FOUND: the thing asked for does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(MiloError):
    """The server is not in a state to do this (e.g. model not loaded)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(MiloError):
    """UNAUTHENTICATED: the API key is missing or wrong."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(MiloError):
    """Queue full or a size limit reached; `retry_after_ms` is a hint for the caller."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class Unavailable(MiloError):
    """A dependency is down or the server is draining."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MiloError):
    """DEADLINE_EXCEEDED: the work did not finish in the time allowed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(MiloError):
    """CANCELLED: the work was cancelled before it finished."""

    code = grpc.StatusCode.CANCELLED


class UpstreamError(MiloError):
    """A service this one depends on failed: which service, its status code, its message
    (`details`, also in `message` after the service's name), its retry hint and its
    machine-readable reason, if it gave them."""

    def __init__(
        self,
        service: str,
        code: grpc.StatusCode,
        message: str,
        retry_after_ms: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{service}: {message}")
        self.code = code
        self.service = service
        self.details = message
        self.retry_after_ms = retry_after_ms
        self.reason = reason
