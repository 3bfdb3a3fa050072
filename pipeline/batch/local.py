"""(c) The local loop: every job of a plan in this process, with a progress bar, one line per
failure and a summary.

With ``workers`` > 1 the jobs run as a pipeline: that many photos are in flight at once, each in
its own thread, sharing one ``Remover`` (its stateful stages take one image at a time; see
``pipeline.api.Remover``). While one photo is in the salient map's onnxruntime pass, another is
detected, matted or encoded: onnxruntime, numpy, numba and Pillow's encoders release the GIL, so
both cores stay busy. Results are reported in plan order, so the files written, the failure
lines and the exit status are those of the one-by-one loop; at most ``workers`` photos are held
in memory at once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, TextIO

from pipeline.batch.job import JobResult, run_job
from pipeline.batch.plan import Job, OutputOptions, Plan


def default_workers(jobs: int, device: str = "cpu") -> int:
    """Photos in flight for a local batch of ``jobs`` photos: 2 on a CPU with at least two
    cores (one photo's map pass beside the other's detection, matting and encoding), else 1.
    On a GPU the models already run in parallel: 1."""
    if device.startswith("cuda") or jobs < 2:
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def run_local(
    remover,
    plan: Plan,
    options: OutputOptions,
    *,
    quiet: bool = False,
    show_traceback: bool = False,
    stderr: TextIO | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    workers: int = 1,
) -> int:
    """Run every job of ``plan`` here, ``workers`` at a time (see the module docstring); return
    the exit status (0 all done, 1 some input failed or named nothing). One line per failure,
    and per result the keep policy could only fill with a fallback, on ``stderr``, in plan
    order, above the progress bar (shown for more than one job unless ``quiet``), then a
    summary line."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    err = stderr or sys.stderr
    progress = None
    if len(plan.jobs) > 1 and not quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(plan.jobs), unit="img", file=err, dynamic_ncols=True)

    def say(line: str) -> None:
        if progress is not None:
            progress.write(line, file=err)
        else:
            print(line, file=err)

    for line in plan.missing:
        say(line)
    failed = len(plan.missing)
    done = 0
    start = time.perf_counter()

    def one(job: Job) -> JobResult:
        return run_job(remover, job, plan.out_dir, options, plan.inputs, stdin=stdin, stdout=stdout)

    try:
        for result in in_order(one, plan.jobs, workers):
            if result.ok:
                done += 1
                if result.warning:
                    say(result.warning_line())
            else:
                failed += 1
                say(result.error)
                if show_traceback:
                    say(result.detail.rstrip())
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start
    if not quiet:
        per = f", {seconds / done:.2f} s per photo" if done else ""
        skipped = f", skipped {len(plan.skipped)} (done before)" if plan.skipped else ""
        print(f"layercut: done {done}{skipped}, failed {failed}, {seconds:.1f} s{per}", file=err)
    return 1 if failed else 0


def in_order(
    fn: Callable[[Job], JobResult], jobs: Sequence[Job], workers: int
) -> Iterator[JobResult]:
    """``fn(job)`` for every job, yielded in the order of ``jobs``, with up to ``workers`` calls
    running at once in threads (``workers`` = 1: one after the other, in this thread).

    A worker starts the next job only while fewer than ``2 × workers`` started jobs wait to be
    yielded, so a slow photo never lets the others run far ahead (the results held are small:
    ``run_job`` has written each photo's files). An exception from ``fn``
    (``KeyboardInterrupt`` included: ``run_job`` turns every other failure into a result) stops
    the workers taking new jobs; those running finish (their files are complete: written
    atomically), then it is raised here, as in the one-by-one loop. Ctrl-C while waiting does
    the same.
    """
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            yield fn(job)
        return
    state = _Pipeline(fn, jobs, workers)
    threads = [
        threading.Thread(target=state.work, name=f"layercut-job-{k}", daemon=True)
        for k in range(min(workers, len(jobs)))
    ]
    for thread in threads:
        thread.start()
    try:
        for index in range(len(jobs)):
            yield state.take(index)
    finally:
        state.stop()
        for thread in threads:
            thread.join()


class _Pipeline:
    """Shared state of ``in_order``'s workers: the next job to start, finished results by index,
    and the first exception raised."""

    def __init__(self, fn: Callable[[Job], JobResult], jobs: Sequence[Job], workers: int):
        self.fn = fn
        self.jobs = jobs
        self.ahead = 2 * workers  # jobs started and not yet yielded, at most
        self.changed = threading.Condition()
        self.next_index = 0  # the next job a worker starts
        self.yielded = 0  # results handed out so far
        self.results: dict[int, JobResult] = {}
        self.error: BaseException | None = None
        self.error_index = 0  # the job that raised it; those before it still finish
        self.stopped = False

    def work(self) -> None:
        while True:
            with self.changed:
                while not self.stopped and self.next_index - self.yielded >= self.ahead:
                    self.changed.wait()
                if self.stopped or self.next_index >= len(self.jobs):
                    return
                index = self.next_index
                self.next_index += 1
            try:
                result = self.fn(self.jobs[index])
            except BaseException as exc:  # KeyboardInterrupt from a job: stop and re-raise there
                with self.changed:
                    if self.error is None or index < self.error_index:
                        self.error, self.error_index = exc, index
                    self.stopped = True
                    self.changed.notify_all()
                return
            with self.changed:
                self.results[index] = result
                self.changed.notify_all()

    def take(self, index: int) -> JobResult:
        with self.changed:
            while index not in self.results and not (
                self.error is not None and index >= self.error_index
            ):
                self.changed.wait()
            if index not in self.results:
                raise self.error  # type: ignore[misc]
            self.yielded = index + 1
            self.changed.notify_all()
            return self.results.pop(index)

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
