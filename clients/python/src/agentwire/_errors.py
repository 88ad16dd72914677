from __future__ import annotations


class AgentwireError(Exception):
    """What went wrong talking to agentwire."""


class Refused(AgentwireError):
    """The server refused the request; `message` is its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class NetworkError(AgentwireError):
    """The network failed, even after retries."""


class ProtocolError(AgentwireError):
    """The server said something this SDK does not understand."""
