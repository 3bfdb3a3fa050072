"""The pipelined local batch (``run_local(..., workers=2)``, ``batch.local.in_order``): the same
files, failure lines and exit status as the one-by-one loop, results in plan order, at most
``workers`` photos in flight, and a job's Ctrl-C stops the batch."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.batch import OutputOptions, plan_batch, run_local
from pipeline.batch.local import default_workers, in_order
from pipeline.fakes import FakeRemover


def photo(path, size_hw=(40, 50), value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size_hw, 3), value, np.uint8)).save(path)


def outputs(folder):
    return {
        p.relative_to(folder).as_posix(): np.asarray(Image.open(p)).tobytes()
        for p in sorted(folder.rglob("*.png"))
    }


def test_two_workers_write_the_same_files_and_report_failures_in_plan_order(tmp_path):
    for k in range(6):
        photo(tmp_path / "in" / f"p{k}.png", value=20 * k)
    (tmp_path / "in" / "p2.png").write_bytes(b"")  # a failure in the middle
    (tmp_path / "in" / "p4.png").write_bytes(b"not an image")
    photo(tmp_path / "in" / "sub" / "q.png", size_hw=(30, 20))
    results = {}
    for workers in (1, 2):
        plan = plan_batch([str(tmp_path / "in")], str(tmp_path / f"out{workers}"), OutputOptions())
        err = io.StringIO()
        code = run_local(FakeRemover(), plan, OutputOptions(), stderr=err, workers=workers)
        lines = [line for line in err.getvalue().splitlines() if line.startswith(str(tmp_path))]
        results[workers] = (code, lines, outputs(tmp_path / f"out{workers}"))
    assert results[1][0] == results[2][0] == 1
    assert results[2][1] == results[1][1] and len(results[1][1]) == 2
    assert results[2][1][0].startswith(str(tmp_path / "in" / "p2.png"))
    assert results[2][2] == results[1][2] and len(results[1][2]) == 5


def test_results_come_in_order_whatever_finishes_first():
    def slow_first(job):
        time.sleep(0.2 if job == 0 else 0.01)
        return job

    assert list(in_order(slow_first, list(range(7)), 2)) == list(range(7))


def test_at_most_workers_jobs_run_at_once_and_none_runs_far_ahead():
    lock = threading.Lock()
    running, most, started = [0], [0], []

    def job(k):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            started.append(k)
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return k

    results = in_order(job, list(range(12)), 2)
    assert next(results) == 0
    time.sleep(0.3)  # the consumer stalls: workers must not start the whole batch meanwhile
    assert len(started) <= 1 + 2 * 2
    assert list(results) == list(range(1, 12))
    assert most[0] == 2


def test_an_interrupt_in_a_job_stops_the_batch_and_is_raised_in_order():
    started = []

    def job(k):
        started.append(k)
        if k == 3:
            raise KeyboardInterrupt
        time.sleep(0.01)
        return k

    seen = []
    with pytest.raises(KeyboardInterrupt):
        for result in in_order(job, list(range(40)), 2):
            seen.append(result)
    assert seen == [0, 1, 2]
    assert max(started) < 3 + 2 * 2 + 1  # no new job after the interrupt


def test_ctrl_c_in_a_pipelined_batch_leaves_no_temp_file(tmp_path, monkeypatch):
    for name in ("a.png", "b.png", "c.png"):
        photo(tmp_path / "in" / name)
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), OutputOptions())

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)  # Ctrl-C while files are written
    with pytest.raises(KeyboardInterrupt):
        run_local(FakeRemover(), plan, OutputOptions(), stderr=io.StringIO(), workers=2)
    assert os.listdir(tmp_path / "out") == []


def test_workers_is_checked_and_defaults_follow_the_batch():
    with pytest.raises(ValueError, match="workers"):
        run_local(FakeRemover(), None, OutputOptions(), workers=0)  # type: ignore[arg-type]
    assert default_workers(1) == 1  # one photo: all cores on it
    assert default_workers(5, "cuda") == 1
    assert default_workers(5) == (2 if (os.cpu_count() or 1) >= 2 else 1)
