"""(c) The local loop: every job of a plan, one after the other, in this process, with a
progress bar, one line per failure and a summary."""

from __future__ import annotations

import sys
import time
from typing import BinaryIO, TextIO

from pipeline.batch.job import run_job
from pipeline.batch.plan import OutputOptions, Plan


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
) -> int:
    """Run every job of ``plan`` here, one after the other; return the exit status (0 all
    done, 1 some input failed or named nothing). One line per failure, and per result the keep
    policy could only fill with a fallback, on ``stderr``, above the progress bar (shown for
    more than one job unless ``quiet``), then a summary line."""
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
    try:
        for job in plan.jobs:
            result = run_job(
                remover, job, plan.out_dir, options, plan.inputs, stdin=stdin, stdout=stdout
            )
            if result.ok:
                done += 1
                if result.warning:  # never silently: a candidate the policy dropped was kept
                    say(f"layercut: warning: {job.name}: {result.warning}")
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
