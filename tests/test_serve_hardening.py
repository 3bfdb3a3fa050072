"""The HTTP server under hostile clients, over real sockets on 127.0.0.1 (issue 14).

A real uvicorn server (the product's ``uvicorn_config``) runs in a thread around the real app with
``pipeline.fakes.FakeRemover`` (inference is not what is tested). Every loop is bounded; the
whole module runs in well under 30 s.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from PIL import Image

from pipeline.fakes import FakeRemover
from pipeline.serve import uvicorn_config
from pipeline.serve.app import create_app
from pipeline.serve.limits import ServeLimits

TRICKLE_HEADER = (
    b"POST /v1/remove HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
)


def png_bytes(h: int = 48, w: int = 64) -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.dstack([xx * 4, yy * 5, (xx + yy) % 256]).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@contextmanager
def serving(limits: ServeLimits, tmp_path) -> Iterator[int]:
    """The app on a free port of 127.0.0.1 (yields the port); stopped on exit."""
    import uvicorn

    app = create_app([FakeRemover()], limits, str(tmp_path))
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0, limits, "warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def trickle(port: int, stop_at: float, interval_s: float, outcome: list) -> None:
    """One slow upload: headers, then one body byte per ``interval_s`` until ``stop_at`` or
    until the server answers; appends the status line it got (or ``"none"``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(TRICKLE_HEADER)
            sock.settimeout(interval_s)
            while time.monotonic() < stop_at:
                try:
                    sock.sendall(b"x")
                    answer = sock.recv(200)
                except TimeoutError:
                    continue
                except OSError:  # reset by the server after its answer
                    break
                outcome.append(answer.split(b"\r\n", 1)[0].decode() or "closed")
                return
    except OSError as exc:
        outcome.append(f"error {exc}")
        return
    outcome.append("none")


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket's
    timeout per read)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def start_tricklers(port: int, count: int, seconds: float, interval_s: float):
    outcome: list[str] = []
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=trickle, args=(port, stop_at, interval_s, outcome), daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads, outcome


def test_a_dozen_trickling_uploads_do_not_keep_a_normal_request_from_its_answer(tmp_path):
    # One worker and no queue: a single admitted trickler would hold the only slot. The body
    # rate limits are off here, so only "admit after the body arrived" can let the request in.
    limits = ServeLimits(workers=1, max_queue=0, body_min_bytes_per_s=0, body_idle_timeout_s=10)
    with serving(limits, tmp_path) as port:
        threads, outcome = start_tricklers(port, count=12, seconds=6.0, interval_s=1.5)
        time.sleep(2.0)  # every trickler has sent its headers and a first byte
        start = time.monotonic()
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/remove",
            files={"file": ("a.png", png_bytes(), "image/png")},
            timeout=10,
        )
        waited_s = time.monotonic() - start
        for thread in threads:
            thread.join(10)
    print(f"12 trickling uploads, normal request answered in {waited_s:.2f} s")
    assert response.status_code == 200, response.text
    assert waited_s < 5.0
    assert outcome.count("none") == 12  # they were still trickling, unanswered, all along


def test_trickling_and_stalled_bodies_are_cut_off_with_408(tmp_path):
    limits = ServeLimits(body_grace_s=2.0, body_min_bytes_per_s=64, body_idle_timeout_s=2.0)
    with serving(limits, tmp_path) as port:
        threads, outcome = start_tricklers(port, count=3, seconds=8.0, interval_s=0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=8) as stalled:
            stalled.sendall(TRICKLE_HEADER)  # then nothing
            start = time.monotonic()
            stalled_answer = read_until_closed(stalled)
            stalled_s = time.monotonic() - start
        for thread in threads:
            thread.join(10)
    assert stalled_answer.startswith(b"HTTP/1.1 408"), stalled_answer[:200]
    assert b"request timeout" in stalled_answer and 1.5 < stalled_s < 5.0
    assert outcome == ["HTTP/1.1 408 Request Timeout"] * 3


def test_connections_beyond_the_cap_get_503_not_a_hang(tmp_path):
    limits = ServeLimits(max_connections=3, body_min_bytes_per_s=0, body_idle_timeout_s=10)
    with serving(limits, tmp_path) as port:
        threads, _ = start_tricklers(port, count=3, seconds=4.0, interval_s=0.5)
        time.sleep(1.0)
        start = time.monotonic()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/remove", content=b"x", timeout=5)
        answered_s = time.monotonic() - start
        for thread in threads:
            thread.join(10)
        after = httpx.post(f"http://127.0.0.1:{port}/v1/remove", content=png_bytes(), timeout=5)
    assert response.status_code == 503 and answered_s < 2.0
    assert after.status_code == 200  # the cap frees up as soon as the connections close


def test_a_client_leaving_mid_upload_logs_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with serving(ServeLimits(), tmp_path) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(TRICKLE_HEADER + b"x" * 100)
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while "closed the connection" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
    lines = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert len(lines) == 1 and "after 105 of 100000 bytes" in lines[0].getMessage()
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert health["admitted"] == 0


@pytest.mark.parametrize(
    "content_type", ["Multipart/Form-Data", "MULTIPART/FORM-DATA", "multipart/form-data"]
)
def test_multipart_media_type_in_any_case(tmp_path, content_type):
    boundary = "b0und"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with serving(ServeLimits(), tmp_path) as port:
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/remove",
            content=body,
            headers={"Content-Type": f"{content_type}; boundary={boundary}"},
            timeout=10,
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
