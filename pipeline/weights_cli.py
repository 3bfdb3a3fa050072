"""``layercut weights list`` | ``layercut weights fetch NAME [--force] [--no-progress]`` |
``layercut weights quantize NAME_OR_PATH [--photos DIR] [--force]`` (the int8 ISNet,
``pipeline.stages.isnet_int8``; used with ``--set saliency.precision=int8``).

Exit status 0 ok, 1 failure (one line on stderr, no traceback), 2 bad usage (one line);
``--help`` prints the help and exits 0.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

from pipeline.cli_args import ArgumentParser
from pipeline.imageio import IMAGE_EXTENSIONS
from pipeline.weights import WeightsError, fetch, resolve, weight_status

USAGE_HINT = "usage: layercut weights list | fetch NAME [--force] | quantize NAME_OR_PATH"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="layercut weights",
        description="List the pretrained weights layercut knows, or fetch one into the cache.",
        hint=USAGE_HINT,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    sub.add_parser(
        "list",
        help="every manifest entry: size, licence, stage, where it is cached, how it is checked",
        hint=USAGE_HINT,
    )
    fetch_parser = sub.add_parser(
        "fetch", help="download NAME into the cache (verified)", hint=USAGE_HINT
    )
    fetch_parser.add_argument("name", metavar="NAME", help="a name from `layercut weights list`")
    fetch_parser.add_argument("--force", action="store_true", help="download again")
    fetch_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    quantize_parser = sub.add_parser(
        "quantize",
        help="build the int8 ISNet of NAME_OR_PATH into the cache (needs the onnx package)",
        hint=USAGE_HINT,
    )
    quantize_parser.add_argument(
        "weights", metavar="NAME_OR_PATH", help="the ISNet weights, as saliency.weights names them"
    )
    quantize_parser.add_argument(
        "--photos",
        metavar="DIR",
        help="calibration photos (a folder); default: the ranges shipped for isnet_medium.onnx",
    )
    quantize_parser.add_argument("--force", action="store_true", help="build it again")
    return parser


def quantize_command(weights: str, photos: str | None, force: bool) -> Path:
    """The int8 file built from ``weights`` (a manifest name or a path, resolved and checked as
    ``saliency.weights`` is); ``photos``: a folder of calibration photos or None."""
    from pipeline.stages.isnet_int8 import quantize

    found: list[Path] = []
    if photos is not None:
        folder = Path(photos)
        if not folder.is_dir():
            raise WeightsError(f"--photos: not a folder: {folder}")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise WeightsError(f"--photos: no images in {folder}")
    return quantize(resolve(weights), found, force=force)


def table(rows: list[dict]) -> list[str]:
    """``weight_status()`` rows as aligned text lines, a header first."""
    header = ("name", "MB", "licence", "stage", "cached", "hash")
    lines = []
    for row in rows:
        size = row["bytes"] or (row["path"].stat().st_size if row["path"] else None)
        cached = f"yes: {row['path']}" if row["path"] else "no"
        mb = f"{size / 1e6:.1f}" if size else "unknown"  # not published, not downloaded yet
        lines.append((row["name"], mb, row["licence"], row["stage"], cached, row["hash_status"]))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header) - 1)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
        for r in [header, *lines]
    ]


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Entry point of ``layercut weights``; returns the exit status."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):  # --help and usage errors
            args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or bad usage (2): return, don't exit
        return int(exc.code or 0)
    try:
        if args.command == "list":
            for line in table(weight_status()):
                print(line.rstrip(), file=stdout)
        elif args.command == "quantize":
            print(quantize_command(args.weights, args.photos, args.force), file=stdout)
        else:
            path = fetch(args.name, force=args.force, progress=not args.no_progress)
            print(path, file=stdout)
    except WeightsError as exc:
        print(f"layercut weights: {exc}", file=stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
