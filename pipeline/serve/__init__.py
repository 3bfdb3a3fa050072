"""``layercut serve``: the HTTP API and the one-click web page.

    layercut serve [--host 127.0.0.1] [--port 8000] [--config FILE] [--set KEY=VALUE ...]
                   [--workers 1] [--max-upload-mb 25] [--max-pixels 40000000]
                   [--timeout-s 120] [--max-queue 8] [--max-connections 64]
                   [--body-idle-timeout-s 10] [--body-min-rate 1024]

Models load once, before the socket opens; the app itself is ``pipeline.serve.app.create_app``
and ``uvicorn_config`` the server settings that enforce ``ServeLimits`` at the connection level.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from pipeline.cli_args import ArgumentParser, add_config_arguments
from pipeline.serve.limits import MB, ServeLimits

__all__ = ["ServeLimits", "build_parser", "create_app", "main", "uvicorn_config"]


def create_app(*args, **kwargs):
    """``pipeline.serve.app.create_app`` (imported lazily: FastAPI is only needed to serve)."""
    from pipeline.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    defaults = ServeLimits()
    parser = ArgumentParser(
        prog="layercut serve", description="Serve the HTTP API and the web page."
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    add_config_arguments(parser)
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="inference threads (1 model set each)"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=defaults.max_upload_bytes / MB, help="MiB per upload"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=defaults.max_image_px, help="width × height limit"
    )
    parser.add_argument(
        "--timeout-s", type=float, default=defaults.timeout_s, help="seconds per request"
    )
    parser.add_argument(
        "--max-queue", type=int, default=defaults.max_queue, help="requests waiting beyond workers"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="open connections before new requests get 503",
    )
    parser.add_argument(
        "--body-idle-timeout-s",
        type=float,
        default=defaults.body_idle_timeout_s,
        help="longest pause within an upload (408 beyond)",
    )
    parser.add_argument(
        "--body-min-rate",
        type=float,
        default=defaults.body_min_bytes_per_s,
        metavar="BYTES_PER_S",
        help=f"slowest average upload accepted after {defaults.body_grace_s:g} s (408 below)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def uvicorn_config(app, host: str, port: int, limits: ServeLimits, log_level: str = "info"):
    """The ``uvicorn.Config`` that serves ``app`` with ``limits``' connection bounds: at most
    ``max_connections`` open connections (503 beyond), idle keep-alive connections closed after
    ``keep_alive_s``. The body bounds are enforced by the app (``pipeline.serve.upload``)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # uvicorn counts the arriving connection too: +1 lets max_connections be served at once
        limit_concurrency=limits.max_connections + 1,
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        h11_max_incomplete_event_size=64 * 1024,  # request line + headers
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted. Exit status: 0 after a clean stop, 1 when the models
    cannot be loaded, 2 for bad usage (unknown option, bad config key, bad limit)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 0 <= args.port <= 65535:  # before any model loads (0 = any free port)
        parser.error(f"argument --port: must be in 0..65535, got {args.port}")
    from pipeline.api import Remover
    from pipeline.config import load_config

    try:
        limits = ServeLimits(
            max_upload_bytes=int(args.max_upload_mb * MB),
            max_image_px=args.max_pixels,
            timeout_s=args.timeout_s,
            workers=args.workers,
            max_queue=args.max_queue,
            max_connections=args.max_connections,
            body_idle_timeout_s=args.body_idle_timeout_s,
            body_min_bytes_per_s=args.body_min_rate,
        )
        config = load_config(args.config, args.overrides, args.device)
    except ValueError as exc:
        print(f"layercut serve: error: {exc}", file=sys.stderr)
        return 2
    # the pixel limit of the decoder follows the stricter of the server and the config
    limits = dataclasses.replace(
        limits, max_image_px=min(limits.max_image_px, config.runtime.max_image_px)
    )
    try:
        removers = [Remover(config) for _ in range(limits.workers)]
        for remover in removers:
            remover.warm_up()  # load every model now, not on the first request
    except Exception as exc:  # weights missing, bad model name: one line, no traceback
        print(f"layercut serve: cannot load the models: {exc}", file=sys.stderr)
        return 1
    import uvicorn

    app = create_app(removers, limits)
    print(f"layercut serve: http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    server = uvicorn.Server(uvicorn_config(app, args.host, args.port, limits, args.log_level))
    server.run()
    return 0 if server.started else 1
