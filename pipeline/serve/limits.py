"""Resource limits of the HTTP server and the bounded admission gate that enforces the queue.

A request is *admitted* only after its whole body has arrived, so a slow or stalled upload never
holds a slot: the body must keep coming (no pause longer than ``body_idle_timeout_s``, on average
at least ``body_min_bytes_per_s`` once ``body_grace_s`` have passed, all of it within
``timeout_s``) or the request is answered 408 and the connection closed. Then at most ``workers``
run and ``max_queue`` wait; the next one is answered 503 with ``Retry-After`` at once. A slot is
given back when the inference job ends, not when the HTTP request ends: a request that timed out
still occupies its worker until the thread finishes (Python threads cannot be killed), so the
bound holds for real work, not only for open connections. ``max_connections`` caps the open
connections (uvicorn's ``limit_concurrency``: beyond it a new request is answered 503), so the
bodies being received are bounded too (at most ``max_connections × max_upload_bytes``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Limits of one server process (all overridable on the ``layercut serve`` command line).

    Attributes:
        max_upload_bytes: largest accepted image file (the multipart envelope may add a little).
        max_image_px: largest accepted width × height, read from the header before decoding, so
            a decompression bomb is refused without allocating its pixels.
        timeout_s: seconds from admission to the answer (waiting + decoding + inference +
            encoding); past it the client gets 504 and a job not yet started is cancelled. Also
            the most a body may take to arrive (408 beyond).
        workers: inference threads; each owns one model set (YOLO predictors are not
            thread-safe), and torch already uses every core inside one job.
        max_queue: admitted requests allowed to wait for a worker; more get 503.
        retry_after_s: the ``Retry-After`` value sent with 503.
        body_idle_timeout_s: longest pause allowed between two pieces of a request body (408).
        body_min_bytes_per_s: slowest average upload rate accepted once ``body_grace_s`` have
            passed (408 below it): a body trickled a byte at a time is cut off.
        body_grace_s: seconds an upload may start slowly before its rate is checked.
        max_connections: open connections (and running requests) before new requests get 503.
        keep_alive_s: seconds an idle keep-alive connection stays open.
    """

    max_upload_bytes: int = 25 * MB
    max_image_px: int = 40_000_000
    timeout_s: float = 120.0
    workers: int = 1
    max_queue: int = 8
    retry_after_s: int = 5
    body_idle_timeout_s: float = 10.0
    body_min_bytes_per_s: float = 1024.0
    body_grace_s: float = 10.0
    max_connections: int = 64
    keep_alive_s: float = 5.0

    def __post_init__(self) -> None:
        names = ("max_upload_bytes", "max_image_px", "workers", "retry_after_s", "max_connections")
        for name in names:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ServeLimits.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"ServeLimits.max_queue must be ≥ 0, got {self.max_queue}")
        for name in ("timeout_s", "body_idle_timeout_s", "keep_alive_s"):
            if not getattr(self, name) > 0:  # also refuses NaN
                raise ValueError(f"ServeLimits.{name} must be > 0, got {getattr(self, name)}")
        for name in ("body_min_bytes_per_s", "body_grace_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ServeLimits.{name} must be ≥ 0, got {getattr(self, name)}")

    @property
    def capacity(self) -> int:
        """Jobs that may exist at once: running plus waiting."""
        return self.workers + self.max_queue


class AdmissionGate:
    """A non-blocking counter of admitted jobs with a fixed capacity (thread-safe).

    ``try_enter`` never waits: the server must answer "busy" immediately, not queue the
    connection invisibly in the event loop.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self._count = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._count

    def try_enter(self) -> bool:
        """Take a slot if one is free; ``False`` when the gate is full."""
        with self._lock:
            if self._count >= self.capacity:
                return False
            self._count += 1
            return True

    def leave(self) -> None:
        """Give a slot back (called exactly once per successful ``try_enter``)."""
        with self._lock:
            if self._count <= 0:
                raise RuntimeError("AdmissionGate.leave called more often than try_enter")
            self._count -= 1
