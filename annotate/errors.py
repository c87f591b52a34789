"""Errors the server answers with a 4xx status and a one-line JSON message (``{"error": "..."}``)."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, the message is one line for the user."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message.splitlines()[0] if message else type(self).__name__)
        if status is not None:
            self.status = status


class NotFoundError(RequestError):
    status = 404


class GoneError(RequestError):
    """A click session that expired (idle too long) or was closed."""

    status = 410


class ConflictError(RequestError):
    """Features of another model, or a state that does not allow the request."""

    status = 409


class TooLargeError(RequestError):
    status = 413
