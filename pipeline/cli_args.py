"""What every ``layercut`` command shares on its command line: the parser (one-line errors, exit
status 2) and the arguments that configure the pipeline (``--config``, ``--set``, ``--device``).

Used by ``layercut``, ``layercut serve``, ``layercut weights`` and ``layercut eval``; it imports
nothing from them, so none of them imports another to get these.
"""

from __future__ import annotations

import argparse

DEVICES = ("cpu", "cuda", "auto")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr
    (``"<prog>: error: <message>"``, then ``"; <hint>"`` when a ``hint`` is given) and exit
    status 2, without argparse's multi-line usage block."""

    def __init__(self, *args, hint: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str):  # argparse prints usage and exits 2; keep the 2, one line
        hint = f"; {self.hint}" if self.hint else ""
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE|PRESET``, ``--set KEY=VALUE`` (repeatable, into ``overrides``) and
    ``--device {cpu,cuda,auto}``: how every command that builds a pipeline is configured."""
    parser.add_argument("--config", metavar="FILE", help="TOML config or preset name (cpu, ...)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set detect.conf=0.3 (repeatable)",
    )
    parser.add_argument("--device", choices=DEVICES, default=None)
