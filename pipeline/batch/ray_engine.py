"""(d) The Ray engine: the jobs of a plan run by a pool of Ray actors, on one machine or a cluster
(``layercut INPUT... -o OUT --engine ray [--ray-address HOST:PORT] [--workers N]``).

The same plan (``plan_batch``: naming, ``--skip-existing``, OUT never read) and the same job
(``run_job``: decode, run, write atomically) as the local loop, so outputs, names, failures and
exit status are the same. What differs:

- Workers are Ray actors (``pipeline.batch.ray_worker.RayWorker``), each with its own
  ``Remover``: models load once per worker, when it starts. Each takes ``runtime.threads`` CPUs
  (1 when 0) and, on GPU nodes, a GPU or a share of one (``--ray-gpus-per-worker``).
- The driver (this process) sends jobs (two paths each) and gets ``JobResult``s back; the worker
  decodes the input and writes the files into OUT itself, so OUT and the inputs must be in a
  folder every node sees at the same path (the driver's working folder too, for relative
  paths). Pixels never travel through Ray.
- Back-pressure: at most ``IN_FLIGHT_PER_WORKER`` jobs per worker are submitted at a time (one
  running, one queued so the worker never waits for the driver); the rest wait in the driver as
  paths, so memory stays flat on any batch length.
- A worker that dies (killed for memory, a crash in a native library) is replaced (up to
  ``MAX_RESTARTS`` times per worker); its jobs are tried once more, then reported failed,
  naming the file.
- Ctrl-C: no new job starts; the jobs in progress finish (their files are complete), then exit
  status 130. A second Ctrl-C stops the workers at once and removes their temp files. A rerun
  with ``--skip-existing`` does what is left.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from pipeline.batch.job import JobResult
from pipeline.batch.plan import Job, OutputOptions, Plan
from pipeline.batch.progress import Progress
from pipeline.batch.ray_cluster import (
    RaySettings,
    WorkerShape,
    cluster_resources,
    connect,
    size_workers,
)
from pipeline.batch.ray_worker import RayWorker, one_line

IN_FLIGHT_PER_WORKER = 2
MAX_RESTARTS = 3  # workers started again in one slot after a death
TRIES_PER_JOB = 2  # a job whose worker died is tried once more, then reported failed
WAIT_NOTE_S = 60.0  # no worker has started after this long: say what the cluster lacks


class _FetchInputs:
    """Returns ``Plan.inputs`` on a worker, from the object store (fetched only when needed)."""

    def __init__(self, ref) -> None:
        self.ref = ref  # an attribute, not an argument: Ray passes it on unresolved

    def __call__(self):
        import ray

        return ray.get(self.ref)


def run_ray(
    config,
    plan: Plan,
    options: OutputOptions,
    settings: RaySettings,
    *,
    quiet: bool = False,
    show_traceback: bool = False,
    stderr: TextIO | None = None,
) -> int:
    """Run every job of ``plan`` on Ray workers; return the exit status like ``run_local``
    (0 all done, 1 some input failed or no worker could start). ``ClusterError`` (exit status
    2) when the cluster cannot be reached or holds no worker; ``KeyboardInterrupt`` after a
    Ctrl-C, once the jobs in progress are finished (or stopped, on a second Ctrl-C)."""
    err = stderr or sys.stderr
    start = time.perf_counter()
    connect(settings.address)  # before the first ``import ray``: it sets Ray's environment
    import ray

    try:
        total, nodes = cluster_resources()
        shape = size_workers(total, nodes, config.runtime.threads, config.runtime.device, settings)
        shape = replace(shape, count=min(shape.count, len(plan.jobs)))  # no idle model loads
        progress = Progress(len(plan.jobs), quiet, err, status="starting workers")
        driver = _Driver(ray, plan, options, shape, progress)
        driver.show_traceback = show_traceback
        # Planning creates nothing; the workers check that OUT exists on their node (a folder
        # every node shares), so the driver makes it once the cluster is there.
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            driver.start_workers(config)
            return driver.run(start)
        finally:
            driver.close()
    finally:
        ray.shutdown()  # stops a private instance; the workers end with this driver anyway


class _Driver:
    """Submits jobs to ready workers (at most ``IN_FLIGHT_PER_WORKER`` each) and collects
    their ``JobResult``s, in the order they finish."""

    def __init__(self, ray, plan: Plan, options: OutputOptions, shape: WorkerShape, report):
        self.ray = ray
        self.plan = plan
        self.options = options
        self.shape = shape
        self.report = report
        self.show_traceback = False
        self.queue: deque[Job] = deque(plan.jobs)
        self.actors: list = []
        self.starting: dict = {}  # ready() ref → worker index
        self.ready: list[int] = []  # workers that run jobs
        self.inflight: dict = {}  # run() ref → (worker index, actor, job)
        self.load: Counter[int] = Counter()
        self.restarts: Counter[int] = Counter()
        self.tries: Counter[Job] = Counter()
        self.start_errors: list[str] = []
        self.done = 0
        self.cpu_s = 0.0  # CPU seconds the workers spent on the jobs done
        self.failed = len(plan.missing)
        self.started_s: float | None = None
        self.stopping = False
        self._remote = None  # RayWorker as a Ray actor class, and its arguments
        self._args: tuple = ()
        self._run_id = uuid.uuid4().hex[:8]  # names the actors of this run

    def start_workers(self, config) -> None:
        ray = self.ray
        self._remote = ray.remote(RayWorker)
        self._args = (
            config, self.options, self.plan.out_dir, os.getcwd(),
            _FetchInputs(ray.put(list(self.plan.inputs))), self.shape.cpus, self.shape.device,
        )  # fmt: skip
        for i in range(self.shape.count):
            self.actors.append(None)
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        """Start the worker of slot ``i`` (again, after a death: ``restarts``)."""
        actor = self._remote.options(
            num_cpus=self.shape.cpus,
            num_gpus=self.shape.gpus,
            name=f"layercut-{self._run_id}-{i}-{self.restarts[i]}",
        ).remote(*self._args)
        self.actors[i] = actor
        self.starting[actor.ready.remote()] = i

    def run(self, start: float) -> int:
        for line in self.plan.missing:
            self.report.say(line)
        waited = False
        try:
            while self.queue or self.inflight:
                self._submit()
                refs = [*self.inflight, *self.starting]
                if not refs:
                    if self.started_s is None:
                        return 1  # no worker could start: each said why already
                    self._fail_rest()
                    break
                finished, rest = self.ray.wait(refs, num_returns=1, timeout=WAIT_NOTE_S)
                if not finished and not self.ready and not waited:
                    waited = True
                    self.report.say(self._waiting_note())
                if finished and rest:  # and every other one done by now: one pass for all
                    finished += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in finished:
                    self._collect(ref)
        except KeyboardInterrupt:
            self._stop()
            self._summary(start)
            raise
        self._summary(start)
        return 1 if self.failed else 0

    def _submit(self) -> None:
        for level in range(IN_FLIGHT_PER_WORKER):  # one job to each worker, then a second
            for i in self.ready:
                if self.queue and self.load[i] <= level:
                    job = self.queue.popleft()
                    actor = self.actors[i]
                    self.inflight[actor.run.remote(job)] = (i, actor, job)
                    self.load[i] += 1

    def _collect(self, ref) -> None:
        if ref in self.starting:
            self._started(self.starting.pop(ref), ref)
            return
        i, actor, job = self.inflight.pop(ref)
        if actor is self.actors[i]:
            self.load[i] -= 1
        try:
            result, cpu_s = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self._worker_died(i, actor, job, exc)
            return
        except Exception as exc:  # anything else Ray raises fails this job alone
            result, cpu_s = JobResult(job, False, 0.0, f"{job.name}: {one_line(exc)}"), 0.0
        if result.ok:
            self.cpu_s += cpu_s
        self._count(result)

    def _count(self, result: JobResult) -> None:
        if result.ok:
            self.done += 1
            if result.warning:
                self.report.say(result.warning_line())
        else:
            self.failed += 1
            self.report.say(result.error)
            if self.show_traceback and result.detail:
                self.report.say(result.detail.rstrip())
        self.report.advance()

    def _started(self, i: int, ref) -> None:
        try:
            error, node = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            error, node = f"it died while starting ({one_line(exc)})", "?"
        if error:
            self.start_errors.append(error)
            self.report.say(f"layercut: a worker on {node} did not start: {error}")
            self.ray.kill(self.actors[i], no_restart=True)
            return
        self.ready.append(i)
        if self.started_s is None:
            self.started_s = time.perf_counter()
            self.report.status("")

    def _worker_died(self, i: int, actor, job: Job, exc: Exception) -> None:
        """The worker running ``job`` died (killed for memory, a crash): start another in its
        slot (``MAX_RESTARTS`` times) and try ``job`` once more (``TRIES_PER_JOB``)."""
        if actor is self.actors[i] and not self.stopping:  # its first job to report it
            if i in self.ready:
                self.ready.remove(i)
            self.load[i] = 0
            again = self.restarts[i] < MAX_RESTARTS
            self.report.say(
                f"layercut: a worker died ({type(exc).__name__}: {one_line(exc)[:120]}); "
                + ("starting another" if again else f"not replaced after {MAX_RESTARTS} deaths")
            )
            if again:
                self.restarts[i] += 1
                self._spawn(i)
        self.tries[job] += 1
        if self.tries[job] < TRIES_PER_JOB and not self.stopping:
            self.queue.appendleft(job)
            return
        reason = f"the Ray worker running it died ({type(exc).__name__})"
        self._count(JobResult(job, False, 0.0, f"{job.name}: {reason}", str(exc)))

    def _fail_rest(self) -> None:
        why = self.start_errors[-1] if self.start_errors else "every worker died"
        while self.queue:
            job = self.queue.popleft()
            self._count(JobResult(job, False, 0.0, f"{job.name}: no Ray worker left ({why})"))

    def _waiting_note(self) -> str:
        total, _ = cluster_resources()
        return (
            f"layercut: no worker has started after {WAIT_NOTE_S:.0f} s (the cluster has "
            f"{total.get('CPU', 0):g} CPU and {total.get('GPU', 0):g} GPU; asked for "
            f"{self.shape.describe()}); still waiting"
        )

    def _stop(self) -> None:
        """First Ctrl-C: no new job; the ones in flight finish. Second: stop them at once."""
        self.stopping = True
        self.queue.clear()
        if not self.inflight:
            return
        self.report.say(
            f"layercut: stopping: finishing the {len(self.inflight)} photos in progress "
            "(Ctrl-C again to stop at once)"
        )
        try:
            while self.inflight:
                finished, _ = self.ray.wait(list(self.inflight), num_returns=1)
                for ref in finished:
                    self._collect(ref)
        except KeyboardInterrupt:
            jobs = [job for _, _, job in self.inflight.values()]
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
            self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=10)
            for job in jobs:
                remove_temp_files(job, self.plan.out_dir, self.options)

    def _summary(self, start: float) -> None:
        self.report.close()
        if self.report.quiet:
            return
        seconds = time.perf_counter() - start
        skipped = f", skipped {len(self.plan.skipped)} (done before)" if self.plan.skipped else ""
        rate = ""
        if self.done:
            rate = f", {self.done / seconds:.2f} photos/s ({self.cpu_s / self.done:.2f} CPU s each)"
        setup = ""
        if self.started_s is not None:
            setup = f", {self.started_s - start:.1f} s of it starting them"
        self.report.say(
            f"layercut: done {self.done}{skipped}, failed {self.failed}, {seconds:.1f} s{rate} "
            f"on {self.shape.describe()}{setup}"
        )

    def close(self) -> None:
        self.report.close()
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # gone already: nothing to stop
                pass


def remove_temp_files(job: Job, out_dir: Path | None, options: OutputOptions) -> None:
    """Remove what a worker stopped while writing ``job`` may leave: the temp files and
    folders ``pipeline.outputs`` writes beside each file (``.<name>.*.tmp``), and a layer
    folder it had set aside (``.<name>.*.old``: put back when the new one is not in place)."""
    if job.output is None or out_dir is None:
        return
    stem = (out_dir / job.output).with_suffix("")
    paths = [out_dir / rel for rel in job.outputs(options)]
    for path in [*paths, stem]:
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
    for old in stem.parent.glob(f".{stem.name}.*.old"):
        if not os.path.lexists(stem):
            os.rename(old, stem)
        else:
            shutil.rmtree(old, ignore_errors=True)
