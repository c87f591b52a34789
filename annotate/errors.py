"""Errors the server answers with a 4xx status and a one-line JSON message (``{"error": "..."}``)."""

from __future__ import annotations

SESSION_GONE = "session_gone"  # the click session is unknown (server restarted) or closed: re-create it
STALE_REVISION = "stale_revision"  # the image was saved by someone else since the page opened it: reload, save again


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, the message is one line for the user.

    ``code`` (optional) is a stable machine-readable reason the page acts on (e.g. :data:`SESSION_GONE`:
    open the object's session again and replay its clicks), sent beside the message.
    """

    status = 400
    code: str | None = None

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message.splitlines()[0] if message else type(self).__name__)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class NotFoundError(RequestError):
    status = 404


class GoneError(RequestError):
    """A click session that expired (idle too long) or was closed."""

    status = 410
    code = SESSION_GONE


class ConflictError(RequestError):
    """Features of another model, or a state that does not allow the request."""

    status = 409


class TooLargeError(RequestError):
    status = 413


class ClientGoneError(RequestError):
    """The client disconnected before its answer was ready; its work was cancelled (nginx's 499)."""

    status = 499
