"""What every ``layercut`` command shares on its command line: the parser (one-line errors, exit
status 2) and the arguments that configure the pipeline (``--config``, ``--set``, ``--device``);
and the batch's engine options (``--engine``, the Ray engine's resources).

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


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and the Ray engine's ``--ray-address``, ``--workers`` and
    ``--ray-gpus-per-worker`` (``pipeline.batch.ray_engine``; the ``ray`` extra)."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: one process, here (default); ray: Ray workers on this machine or a "
        "cluster (pip install 'layercut[ray]')",
    )
    group.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="a running Ray cluster's head, or auto (the one 'ray start' runs here); default: "
        "$RAY_ADDRESS, else a private Ray instance on 127.0.0.1 for this run",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="Ray workers (each loads the models once); default: as many as the cluster's "
        "CPUs (runtime.threads each, 1 if 0) or GPUs hold",
    )
    group.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        metavar="F",
        help="GPU share of each Ray worker (0.5: two workers per GPU; 0: CPU workers); "
        "default: 1 on a cluster with GPUs, else 0",
    )
