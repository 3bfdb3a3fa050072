"""Command line: ``layercut INPUT... -o OUT`` and the ``weights``, ``eval``, ``serve`` commands.

Exit status: 0 all inputs succeeded, 1 some failed (one line per failure on stderr naming the
file and the reason), 2 bad usage (unknown option, bad config key, no input).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli_args import ArgumentParser, add_config_arguments
from pipeline.outputs import FORMAT_NAMES
from pipeline.types import KeepMode

SUBCOMMANDS = ("weights", "eval", "serve")


class UsageError(Exception):
    """Bad usage: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="layercut",
        description="Remove the background and keep what matters: ranked instance layers.",
        epilog="Other commands: layercut weights {list,fetch NAME} | layercut eval ... | "
        "layercut serve ...",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    parser.add_argument(
        "--keep",
        choices=[m.value for m in KeepMode],
        default=None,
        help="main: main subjects + what they interact with (default); all: every portable "
        "instance; interacting: people and the objects they interact with",
    )
    parser.add_argument("--layers", action="store_true", help="write OUT/<name>/ ranked layers")
    parser.add_argument("--debug", action="store_true", help="write OUT/<name>.debug.png")
    add_config_arguments(parser)
    parser.add_argument("--format", choices=FORMAT_NAMES, default=None)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of failures")
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
    except KeyboardInterrupt:
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
    from pipeline.api import Remover
    from pipeline.batch import discover_inputs, output_names
    from pipeline.config import load_config
    from pipeline.imageio import ImageError
    from pipeline.weights import WeightsError

    files, missing = discover_inputs(args.inputs)
    if not files and missing:
        raise UsageError("; ".join(missing))
    overrides = list(args.overrides)
    if args.format:
        overrides.append(f"output.format={args.format}")
    if args.keep:
        overrides.append(f"select.keep={args.keep}")
    try:
        config = load_config(args.config, overrides, args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out_dir = Path(args.output)
    failures: list[str] = list(missing)
    for line in missing:
        print(line, file=sys.stderr)
    remover = Remover(config)
    try:
        remover.warm_up()
    except (WeightsError, ValueError, OSError) as exc:
        print(f"layercut: {exc}", file=sys.stderr)
        return 1

    start = time.perf_counter()
    done = 0
    progress = None
    if len(files) > 1 and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(files), unit="img", file=sys.stderr, dynamic_ncols=True)
    names = output_names(files, out_dir, config.output.format)
    for file in files:
        try:
            fallback = _process(remover, file, names[file], out_dir, args, files)
            done += 1
            if fallback:  # never silently: the result holds a candidate the policy dropped
                _fail(f"layercut: warning: {file}: {fallback}", progress)
        except ImageError as exc:
            failures.append(_fail(str(exc), progress))
        except Exception as exc:  # one bad file must never stop the batch
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failures.append(_fail(f"{file}: {type(exc).__name__}: {reason}", progress))
            if args.traceback:
                traceback.print_exc()
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(f"layercut: done {done}, failed {len(failures)}, {seconds:.1f} s", file=sys.stderr)
    return 1 if failures else 0


def _fail(line: str, progress) -> str:
    if progress is not None:
        progress.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)
    return line


def _process(remover, file: Path, stem: str, out_dir: Path, args, inputs: Sequence[Path]) -> str:
    """Write one input's outputs; returns ``Layers.fallback`` ("" unless the keep policy would
    have kept nothing and the best candidate was kept instead)."""
    from pipeline.batch import write_outputs
    from pipeline.imageio import load_image

    cfg = remover.config
    loaded = load_image(file, cfg.runtime.max_image_px)
    layers = remover.run(loaded.rgb, input_alpha=loaded.alpha, source=str(file))
    write_outputs(
        layers,
        out_dir,
        stem,
        fmt=cfg.output.format,
        png_compress_level=cfg.output.png_compress_level,
        webp_quality=cfg.output.webp_quality,
        with_layers=args.layers,
        with_debug=args.debug,
        protect=inputs,
    )
    return layers.fallback


if __name__ == "__main__":
    raise SystemExit(main())
