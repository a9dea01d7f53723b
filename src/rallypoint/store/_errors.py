"""The exception tree of the rendezvous store.

::

    RallypointError (rallypoint.errors)
    └── StoreError                      base of everything the store raises on purpose
        ├── StoreConnectionError        the connection failed, was lost or was closed
        │   └── StoreTimeoutError       no reply within the deadline (connect or request)
        ├── StoreAuthError              the server refused the handshake (reason in message)
        ├── StoreProtocolError          a frame broke the wire format (wire.ProtocolError)
        │   └── FrameTooLargeError      a message would not fit in one frame
        ├── StoreSecretError            the shared secret could not be read
        └── StoreRequestError           the server rejected one request; ``.code`` says why
            ├── LeaseNotFoundError      the lease expired, was revoked or never existed
            └── RevisionCompactedError  a watch asked for history the server no longer keeps

Foreign exceptions (``OSError``, ``EOFError``, ``asyncio.IncompleteReadError``,
``UnicodeDecodeError``, ``json.JSONDecodeError``) are translated once, where they enter
(the client's socket boundary, or the codec), with ``raise ... from exc``.
"""

from __future__ import annotations

import enum

from rallypoint.errors import RallypointError


class ErrorCode(enum.Enum):
    """Why the server rejected one request; travels in ``ErrorReply.code``."""

    INVALID_ARGUMENT = "invalid_argument"
    LEASE_NOT_FOUND = "lease_not_found"
    NOT_AN_INTEGER = "not_an_integer"
    COMPACTED = "compacted"
    WATCH_NOT_FOUND = "watch_not_found"
    TOO_LARGE = "too_large"
    NO_SPACE = "no_space"


class StoreError(RallypointError):
    """Base class of every error the store raises on purpose."""


class StoreConnectionError(StoreError):
    """The connection to the store failed, was lost, or was closed by us."""


class StoreTimeoutError(StoreConnectionError):
    """The store did not answer within the deadline."""


class StoreAuthError(StoreError):
    """The store refused our handshake: wrong secret, wrong run id, or a bad Hello."""


class StoreProtocolError(StoreError):
    """A frame violated the wire format (size, UTF-8, JSON, type or fields)."""


class FrameTooLargeError(StoreProtocolError):
    """A message (or a frame's length prefix) exceeds the maximum frame size."""


class StoreSecretError(StoreError):
    """The shared secret could not be read from its file or environment variable."""


class StoreRequestError(StoreError):
    """The store rejected one request; the connection stays usable.

    Attributes:
        code: the machine-readable reason.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class LeaseNotFoundError(StoreRequestError):
    """The lease expired, was revoked, or never existed."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.LEASE_NOT_FOUND, message)


class RevisionCompactedError(StoreRequestError):
    """A watch asked to replay history older than the server keeps; re-read instead."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.COMPACTED, message)


def request_error(code: ErrorCode, message: str) -> StoreRequestError:
    """Build the most specific exception for an error code.

    Args:
        code: the reason the server gave.
        message: the server's human-readable explanation.

    Returns:
        An instance of the matching ``StoreRequestError`` subclass.
    """
    if code is ErrorCode.LEASE_NOT_FOUND:
        return LeaseNotFoundError(message)
    if code is ErrorCode.COMPACTED:
        return RevisionCompactedError(message)
    return StoreRequestError(code, message)
