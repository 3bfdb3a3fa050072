"""``layercut serve``: the HTTP API and the one-click web page.

    layercut serve [--host 127.0.0.1] [--port 8000] [--config FILE] [--set KEY=VALUE ...]
                   [--workers 1] [--max-upload-mb 25] [--max-pixels 40000000]
                   [--timeout-s 120] [--max-queue 8]

Models load once, before the socket opens; the app itself is ``pipeline.serve.app.create_app``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from pipeline.cli_args import ArgumentParser, add_config_arguments
from pipeline.serve.limits import MB, ServeLimits

__all__ = ["ServeLimits", "build_parser", "create_app", "main"]


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
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted. Exit status: 0 after a clean stop, 1 when the models
    cannot be loaded, 2 for bad usage (unknown option, bad config key, bad limit)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from pipeline.api import Remover
    from pipeline.config import load_config

    try:
        limits = ServeLimits(
            max_upload_bytes=int(args.max_upload_mb * MB),
            max_image_px=args.max_pixels,
            timeout_s=args.timeout_s,
            workers=args.workers,
            max_queue=args.max_queue,
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
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
