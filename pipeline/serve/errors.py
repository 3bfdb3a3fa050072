"""The one error shape every endpoint answers with: ``{"error": "...", "detail": "..."}``."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """An error with its HTTP status: ``error`` is a short stable phrase a program can match,
    ``detail`` a one-line human explanation."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}
