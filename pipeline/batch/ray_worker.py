"""The Ray engine's worker: one actor holds one ``Remover`` (its models load once, when the actor
starts) and runs one job per call with ``run_job``: it decodes the input, runs the pipeline and
writes the job's files atomically into OUT itself, so only paths and a small ``JobResult``
travel between the driver and the workers, never pixels.

This module imports no Ray: ``pipeline.batch.ray_engine`` wraps ``RayWorker`` with
``ray.remote`` on the driver, and Ray imports the class by name on each worker (layercut must be
installed there, the same version as on the driver).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.batch.job import JobResult, run_job
from pipeline.batch.plan import Job, OutputOptions
from pipeline.batch.protect import ProtectIndex


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its first line, or its type's name when it says nothing."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return text or type(exc).__name__


class RayWorker:
    """Runs jobs of one plan with one ``Remover`` built at start.

    Args:
        config: the driver's resolved ``pipeline.config.Config``.
        options: the plan's ``OutputOptions`` (a ``--background`` image travels once, here).
        out_dir: ``Plan.out_dir``, as the driver names it.
        cwd: the driver's working folder: relative INPUT and ``-o`` paths are read from there,
            so it must exist on every node at the same path (a shared folder).
        inputs: returns ``Plan.inputs`` (called only when an output exists already: see
            ``pipeline.batch.protect``).
        threads: CPU threads of this worker (its Ray ``num_cpus``): ``runtime.threads``.
        device: ``cpu``, or ``cuda`` for a worker given a GPU (or a share of one) by Ray.

    A worker that cannot start (weights missing on its node, no such folder, no CUDA) does not
    raise: ``ready()`` returns the reason in one line (the driver then stops it).
    """

    def __init__(
        self,
        config,
        options: OutputOptions,
        out_dir: Path,
        cwd: str,
        inputs: Callable[[], Sequence[Path]],
        threads: int,
        device: str,
    ) -> None:
        self.node = f"{socket.gethostname()} (pid {os.getpid()})"
        self.options = options
        self.out_dir = out_dir
        self.protect = ProtectIndex(inputs)
        self.remover = None
        self.error = ""
        try:
            self._start(config, cwd, threads, device)
        except Exception as exc:  # reported by ready(); the driver then stops this worker
            self.error = one_line(exc)

    def _start(self, config, cwd: str, threads: int, device: str) -> None:
        from pipeline.api import Remover

        if not os.path.isdir(cwd):
            raise ValueError(
                f"this node has no folder {cwd} (the driver's working folder): the inputs and "
                "OUT must be in a folder shared by every node, at the same path"
            )
        os.chdir(cwd)  # this process serves this actor only
        if not self.out_dir.is_dir():
            raise ValueError(
                f"this node has no output folder {self.out_dir}: OUT must be in a folder shared "
                "by every node, at the same path"
            )
        config = config.with_overrides({"runtime": {"threads": threads, "device": device}})
        remover = Remover(config)
        remover.warm_up()
        self.remover = remover

    def ready(self) -> tuple[str, str]:
        """(one-line reason this worker cannot run jobs, or ""; where it runs)."""
        return self.error, self.node

    def run(self, job: Job) -> tuple[JobResult, float]:
        """Run ``job`` (``run_job``: its files are written here, from this node); returns its
        result and the CPU seconds this process spent on it (every thread, Ray's included)."""
        if self.remover is None:
            raise RuntimeError(f"this worker did not start: {self.error}")
        cpu_s = time.process_time()
        protect = self.protect.for_job(job, self.out_dir, self.options)
        result = run_job(self.remover, job, self.out_dir, self.options, protect)
        return result, time.process_time() - cpu_s
