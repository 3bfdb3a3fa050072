"""Receiving a request body: capped in size, bounded in time, before any inference slot is taken.

``read_upload`` returns the image bytes of a multipart ``file`` field or of the raw body. It
reads with ``read_body``, which enforces the body limits of ``ServeLimits`` (size, idle pause,
minimum average rate, total time) and raises ``ApiError`` 413/408, or ``ClientGone`` when the
client closes the connection mid-body (nobody is left to answer: the app logs one line).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from pipeline.serve.errors import ApiError
from pipeline.serve.limits import ServeLimits

# room for the multipart boundary and part headers around the file itself
MULTIPART_ENVELOPE_BYTES = 64 * 1024


class ClientGone(Exception):  # noqa: N818 (not an error of ours: the client left)
    """The client closed the connection before its body arrived; ``str()`` says how far."""


def is_multipart(request: Request) -> bool:
    """True for ``multipart/form-data`` in any letter case (media types are case-insensitive)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0]
    return media_type.strip().lower() == "multipart/form-data"


def _timed_out(detail: str) -> ApiError:
    return ApiError(408, "request timeout", detail, {"Connection": "close"})


async def read_body(request: Request, cap_bytes: int, limits: ServeLimits) -> bytes:
    """The whole request body, at most ``cap_bytes`` (413 as soon as more arrive).

    Raises ``ApiError`` 408 when no byte arrives for ``limits.body_idle_timeout_s``, when the
    average rate falls under ``limits.body_min_bytes_per_s`` after ``limits.body_grace_s``, or
    when the body takes longer than ``limits.timeout_s``; ``ClientGone`` when the client leaves.
    """
    too_big = ApiError(
        413, "upload too large", f"the upload exceeds this server's limit of {cap_bytes} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap_bytes:
        raise too_big
    body = bytearray()
    start = time.monotonic()
    chunks = request.stream().__aiter__()
    while True:
        elapsed = time.monotonic() - start
        wait_s = min(limits.body_idle_timeout_s, max(limits.timeout_s - elapsed, 0.0))
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), wait_s)
        except StopAsyncIteration:
            return bytes(body)
        except asyncio.TimeoutError:  # an alias of TimeoutError from 3.11
            what = "arrived" if elapsed + wait_s >= limits.timeout_s else "came for"
            raise _timed_out(
                f"the request body did not arrive in time: {len(body)} bytes in "
                f"{time.monotonic() - start:.1f} s, then nothing {what} "
                f"{wait_s:.1f} s (limits: {limits.body_idle_timeout_s:g} s idle, "
                f"{limits.timeout_s:g} s in all)"
            ) from None
        except ClientDisconnect:
            raise ClientGone(f"after {len(body)} of {declared or '?'} bytes") from None
        body += chunk
        if len(body) > cap_bytes:
            raise too_big
        elapsed = time.monotonic() - start
        if elapsed > limits.body_grace_s and len(body) < limits.body_min_bytes_per_s * elapsed:
            raise _timed_out(
                f"the request body arrives too slowly: {len(body)} bytes in {elapsed:.1f} s "
                f"(this server needs at least {limits.body_min_bytes_per_s:g} bytes/s after "
                f"{limits.body_grace_s:g} s)"
            )


async def read_upload(request: Request, limits: ServeLimits) -> bytes:
    """The image bytes of a multipart ``file`` field or of the raw body, at most
    ``limits.max_upload_bytes`` (see ``read_body`` for the other limits)."""
    multipart = is_multipart(request)
    max_bytes = limits.max_upload_bytes
    cap = max_bytes + (MULTIPART_ENVELOPE_BYTES if multipart else 0)
    body = await read_body(request, cap, limits)
    if not multipart:
        return body

    async def replay() -> dict[str, Any]:  # the body is already in memory: parse it from there
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(
                400,
                "missing file",
                "send the image as the multipart field 'file' or as the raw request body",
            )
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise ApiError(
            413, "upload too large", f"the upload exceeds this server's limit of {max_bytes} bytes"
        )
    return data
