"""Command line: ``layercut INPUT... -o OUT`` and the ``weights``, ``eval``, ``serve`` commands.

The batch itself (inputs → jobs, one job, the local loop) is ``pipeline.batch``; this module
parses, checks everything it can before any model loads, and maps errors to exit statuses.

Exit status: 0 all inputs succeeded (or were skipped), 1 some failed (one line per failure on
stderr naming the file and the reason), 2 bad usage (unknown option, bad config value, no input,
an unusable ``-o``, ``--device cuda`` without CUDA), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pipeline.cli_args import ArgumentParser, add_config_arguments, add_engine_arguments
from pipeline.outputs import FORMAT_NAMES
from pipeline.types import KeepMode

SUBCOMMANDS = ("weights", "eval", "serve")
RAY_OPTIONS = ("ray_address", "workers", "ray_gpus_per_worker")  # only with --engine ray


class UsageError(Exception):
    """Bad usage: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="layercut",
        description="Remove the background and keep what matters: ranked instance layers.",
        epilog="Other commands: layercut weights {list,fetch NAME,quantize NAME} | "
        "layercut eval ... | layercut serve ...",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="files, folders (searched recursively) or globs; - reads one image from standard "
        "input",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="a folder: the input tree is kept below it (in/a/x.jpg given as in -> OUT/a/x.png); "
        "a file when OUT ends in the output format's extension (.png, .webp) and there is one "
        "input; - writes to standard output (the default when INPUT is -)",
    )
    parser.add_argument(
        "--keep",
        choices=[m.value for m in KeepMode],
        default=None,
        help="main: main subjects + what they interact with (default); all: every portable "
        "instance; interacting: people and the objects they interact with",
    )
    parser.add_argument(
        "--mask", action="store_true", help="write the alpha as a grey 8-bit PNG (mode L)"
    )
    parser.add_argument(
        "--background",
        metavar="COLOR|IMAGE|blur",
        help="lay the kept subjects over a colour ('#00ff00', white), an image file (scaled to "
        "cover) or a blurred copy of the photo; the output has no alpha",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose output exists already (resume a batch)",
    )
    parser.add_argument("--layers", action="store_true", help="write OUT/<name>/ ranked layers")
    parser.add_argument("--debug", action="store_true", help="write OUT/<name>.debug.png")
    add_config_arguments(parser)
    parser.add_argument("--format", choices=FORMAT_NAMES, default=None)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of failures")
    add_engine_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``layercut`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2); return, don't exit
        return int(exc.code or 0)
    try:
        return _remove(args)
    except UsageError as exc:
        print(f"layercut: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: files are written atomically, so none is left half done
        print("layercut: interrupted", file=sys.stderr)
        return 130


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "weights":
        from pipeline.weights_cli import main as weights_main

        return weights_main(argv, sys.stdout, sys.stderr)
    if name == "eval":
        from pipeline.eval.cli import main as eval_main

        return eval_main(argv)
    from pipeline.serve import main as serve_main

    return serve_main(argv)


def _remove(args: argparse.Namespace) -> int:
    from pipeline.batch import STDIO, PlanError, plan_batch

    output = args.output or (STDIO if args.inputs == [STDIO] else None)
    if output is None:
        raise UsageError("-o OUT is required: a folder, a file for one input, or - (stdout)")
    _check_engine(args, output)
    if args.inputs == [STDIO] and sys.stdin.isatty():
        raise UsageError("INPUT - reads an image from standard input, which is a terminal")
    if output == STDIO and sys.stdout.isatty():
        raise UsageError("-o - writes an image to standard output, which is a terminal")
    overrides = list(args.overrides)
    fmt = _output_format(args, output)
    if fmt:
        overrides.append(f"output.format={fmt}")
    if args.keep:
        overrides.append(f"select.keep={args.keep}")
    try:  # checks every value and the device (CUDA present) before any model loads
        config = _load_config(args, overrides)
        options = _output_options(args, config)
        plan = plan_batch(args.inputs, output, options, args.skip_existing)
    except (ValueError, PlanError) as exc:
        raise UsageError(str(exc)) from None
    if not plan.jobs and plan.missing:
        raise UsageError("; ".join(plan.missing))
    if not plan.jobs:
        if not args.quiet:
            print(
                f"layercut: nothing to do, skipped {len(plan.skipped)} (done before)",
                file=sys.stderr,
            )
        return 0
    return _run(config, plan, options, args)


def _check_engine(args: argparse.Namespace, output: str) -> None:
    """``--engine ray``: Ray installed, files in and out; its options only with it."""
    from pipeline.batch import STDIO

    if args.engine != "ray":
        given = [name for name in RAY_OPTIONS if getattr(args, name) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} needs --engine ray")
        return
    if STDIO in (output, *args.inputs):
        raise UsageError(
            "--engine ray reads files and writes a folder or file: standard input/output (-) "
            "works with the local engine only"
        )
    from pipeline.batch.ray_cluster import ray_missing

    if missing := ray_missing():
        raise UsageError(missing)


def _load_config(args: argparse.Namespace, overrides: list[str]):
    """The config; with ``--engine ray --device cuda`` the GPUs are the workers', not this
    machine's: the preset for CUDA, checked by the workers (a driver may have no GPU)."""
    from pipeline.config import load_config

    if args.engine == "ray" and args.device == "cuda":
        config = load_config(args.config or "quality", overrides, "cpu")
        return config.with_overrides({"runtime": {"device": "cuda"}})
    return load_config(args.config, overrides, args.device)


def _output_format(args: argparse.Namespace, output: str) -> str | None:
    """The output format asked for: ``--mask``, ``--format``, else ``-o FILE``'s extension;
    None leaves it to the config."""
    from pipeline.batch import format_for_output

    if args.mask:
        if args.format not in (None, "mask"):
            raise UsageError(f"--mask writes a grey PNG; it cannot be --format {args.format}")
        return "mask"
    return args.format or format_for_output(output)


def _output_options(args: argparse.Namespace, config):
    from pipeline.background import parse_background
    from pipeline.batch import OutputOptions

    out = config.output
    background = None
    if args.background is not None:  # read once here: a bad spec stops before any model loads
        background = parse_background(args.background, config.runtime.max_image_px)
    return OutputOptions(
        fmt=out.format,
        png_compress_level=out.png_compress_level,
        webp_quality=out.webp_quality,
        background=background,
        layers=args.layers,
        debug=args.debug,
        max_image_px=config.runtime.max_image_px,
    )


def _run(config, plan, options, args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _run_ray(config, plan, options, args)
    from pipeline.api import Remover
    from pipeline.batch import run_local
    from pipeline.batch.local import default_workers
    from pipeline.config import resolve_device
    from pipeline.weights import WeightsError

    workers = default_workers(len(plan.jobs), resolve_device(config.runtime.device))
    if workers > 1 and config.runtime.threads == 0:
        # photos side by side, each model pass on its share of the cores: on 2 cores two
        # one-thread map passes cost 15-25 % less CPU than one two-thread pass (README, "Speed")
        threads = max(1, (os.cpu_count() or 1) // workers)
        config = config.with_overrides({"runtime": {"threads": threads}})
    remover = Remover(config)
    try:
        remover.warm_up()
    except (WeightsError, ValueError, OSError) as exc:
        print(f"layercut: {exc}", file=sys.stderr)
        return 1
    return run_local(
        remover, plan, options, quiet=args.quiet, show_traceback=args.traceback, workers=workers
    )


def _run_ray(config, plan, options, args: argparse.Namespace) -> int:
    from pipeline.batch.ray_cluster import ClusterError, RaySettings
    from pipeline.batch.ray_engine import run_ray

    settings = RaySettings(args.ray_address, args.workers, args.ray_gpus_per_worker)
    try:
        return run_ray(
            config, plan, options, settings, quiet=args.quiet, show_traceback=args.traceback
        )
    except ClusterError as exc:
        raise UsageError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
