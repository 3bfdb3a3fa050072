"""Load test of ``layercut serve`` on loopback: latency, errors and the server's memory.

    python tools/loadtest.py --clients 4 --requests 200 --random-weights
    python tools/loadtest.py --clients 4 --requests 200 --app pipeline.fakes:fake_app
    python tools/loadtest.py --url http://127.0.0.1:8000 --server-pid 1234 --requests 200

It starts the server itself on 127.0.0.1 and a free port (``layercut serve`` with ``--config`` /
``--set``; ``--random-weights`` builds a random-weight YOLO11n-seg and points the weights store
at it, so the real pipeline runs without downloads; ``--app MODULE:FACTORY`` serves any app
factory through uvicorn, e.g. to measure the HTTP layer alone), then runs N client threads that
share a budget of requests and a wall-clock limit, both bounded. It prints p50/p95/max latency,
errors by status, throughput, and the server's resident memory (RSS, psutil) after 20, 50, 100,
150 and 200 requests: a server that leaks per request (rembg's known failure) grows steadily
between those points; a healthy one levels off after the first requests warm its allocators.
Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = (20, 50, 100, 150, 200)
MAX_CLIENTS, MAX_REQUESTS, MAX_SECONDS = 64, 5000, 3600


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients", type=int, default=4, help=f"concurrent clients (≤ {MAX_CLIENTS})"
    )
    parser.add_argument("--requests", type=int, default=200, help=f"total (≤ {MAX_REQUESTS})")
    parser.add_argument("--max-seconds", type=float, default=600, help="stop sending after this")
    parser.add_argument("--image", type=Path, help="photo to send (default: Ultralytics' bus.jpg)")
    parser.add_argument("--query", default="", help="query string, e.g. 'keep=all&format=webp'")
    parser.add_argument("--url", help="an already running server on loopback (with --server-pid)")
    parser.add_argument("--server-pid", type=int, help="its process id, to read its memory")
    parser.add_argument("--app", help="serve MODULE:FACTORY with uvicorn instead of layercut serve")
    parser.add_argument("--config", help="config file or preset for layercut serve")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="random-weight YOLO11n-seg, conf 1e-4, max_det 5, no SAM (plumbing and timing only)",
    )
    parser.add_argument("--serve-args", default="", help="extra arguments for layercut serve")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(args: argparse.Namespace, port: int, env: dict[str, str]) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port)]
    if args.app:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            args.app,
            *common,
            "--log-level",
            "warning",
        ]
    command = [sys.executable, "-m", "pipeline.cli", "serve", *common, "--log-level", "warning"]
    if args.config:
        command += ["--config", args.config]
    overrides = list(args.overrides)
    if args.random_weights:
        from pipeline.testing import write_random_weights

        folder = Path(tempfile.mkdtemp(prefix="layercut-loadtest-"))
        env["LAYERCUT_MANIFEST"] = str(write_random_weights(folder, ["yolo11n-seg"]))
        env["LAYERCUT_WEIGHTS"] = str(folder)
        env["LAYERCUT_OFFLINE"] = "1"
        overrides = [
            "detect.weights=yolo11n-seg",
            "detect.conf=0.0001",
            "detect.max_det=5",
            "segment.model=none",
            *overrides,
        ]
    for item in overrides:
        command += ["--set", item]
    return command + args.serve_args.split()


def _wait_healthy(url: str, process: subprocess.Popen | None, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"loadtest: the server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise SystemExit(f"loadtest: no answer from {url}/healthz within {seconds:.0f} s")


class Run:
    """Shared state of the client threads: the request budget, results and memory samples."""

    def __init__(self, total: int, deadline: float, pid: int):
        self.total = total
        self.deadline = deadline
        self.process = psutil.Process(pid)
        self.lock = threading.Lock()
        self.issued = 0
        self.latencies_s: list[float] = []
        self.statuses: dict[str, int] = {}
        self.rss_mb: dict[int, float] = {}

    def take(self) -> bool:
        with self.lock:
            if self.issued >= self.total or time.monotonic() > self.deadline:
                return False
            self.issued += 1
            return True

    def record(self, seconds: float, status: str) -> None:
        with self.lock:
            self.latencies_s.append(seconds)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            done = len(self.latencies_s)
            if done in CHECKPOINTS:
                self.rss_mb[done] = _rss_mb(self.process)


def _rss_mb(process: psutil.Process) -> float:
    """Resident memory of the server and its children, MiB."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _client(run: Run, url: str, body: bytes, content_type: str) -> None:
    while run.take():
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type}
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                response.read()
                status = str(response.status)
        except urllib.error.HTTPError as exc:
            exc.read()
            status = str(exc.code)
        except OSError as exc:
            status = type(exc).__name__
        run.record(time.perf_counter() - start, status)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 1 <= args.requests <= MAX_REQUESTS:
        raise SystemExit(f"loadtest: 1..{MAX_CLIENTS} clients and 1..{MAX_REQUESTS} requests")
    if not 0 < args.max_seconds <= MAX_SECONDS:
        raise SystemExit(f"loadtest: --max-seconds must be in (0, {MAX_SECONDS}]")
    image = args.image or _default_image()
    body = image.read_bytes()
    content_type = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
    process = None
    if args.url:
        host = urllib.parse.urlparse(args.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1") or not args.server_pid:
            raise SystemExit("loadtest: --url must be a loopback URL and needs --server-pid")
        base, pid = args.url.rstrip("/"), args.server_pid
    else:
        port = _free_port()
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        command = _server_command(args, port, env)
        print("loadtest: server:", " ".join(command), file=sys.stderr)
        process = subprocess.Popen(command, cwd=REPO, env=env)
        base, pid = f"http://127.0.0.1:{port}", process.pid
    try:
        _wait_healthy(base, process)
        url = f"{base}/v1/remove" + (f"?{args.query}" if args.query else "")
        rss_start = _rss_mb(psutil.Process(pid))
        run = Run(args.requests, time.monotonic() + args.max_seconds, pid)
        start = time.perf_counter()
        threads = [
            threading.Thread(target=_client, args=(run, url, body, content_type), daemon=True)
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - start
        rss_end = _rss_mb(psutil.Process(pid))
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    report = _report(args, image, run, wall_s, rss_start, rss_end)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0 if report["errors"] == 0 else 1


def _report(args, image: Path, run: Run, wall_s: float, rss_start: float, rss_end: float) -> dict:
    latencies = run.latencies_s
    errors = sum(n for status, n in run.statuses.items() if status != "200")
    return {
        "image": str(image),
        "query": args.query,
        "clients": args.clients,
        "requests": len(latencies),
        "errors": errors,
        "statuses": run.statuses,
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(len(latencies) / wall_s, 3) if wall_s else 0.0,
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(_percentile(latencies, 0.95), 3) if latencies else None,
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "rss_mb_before": round(rss_start, 1),
        "rss_mb_after_n": {str(n): round(mb, 1) for n, mb in sorted(run.rss_mb.items())},
        "rss_mb_end": round(rss_end, 1),
    }


def _print(report: dict) -> None:
    print(
        f"{report['requests']} requests, {report['clients']} clients, {report['wall_s']} s "
        f"({report['requests_per_s']} req/s); errors {report['errors']} {report['statuses']}"
    )
    print(
        f"latency p50 {report['latency_p50_s']} s · p95 {report['latency_p95_s']} s · "
        f"max {report['latency_max_s']} s"
    )
    points = " · ".join(f"after {n}: {mb} MiB" for n, mb in report["rss_mb_after_n"].items())
    print(f"server RSS before: {report['rss_mb_before']} MiB · {points}")


def _default_image() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


if __name__ == "__main__":
    sys.exit(main())
