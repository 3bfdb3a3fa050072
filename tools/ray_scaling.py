"""Photos per second of ``layercut --engine ray`` with 1 and 2 workers against the local engine on
the same folder, the Ray engine's overhead per job, and a paper estimate for a large batch.

Each run is a whole ``python -m pipeline.cli`` process on a fresh output folder; the variants
alternate (local, ray-1, ray-2, local, …) so that a change in the machine's load hits them
alike, and the report gives medians over ``--rounds``. Times come from the CLI's own summary
line: the local loop's seconds (after the models loaded) and the Ray run's seconds less the
time it took to start its workers (a private Ray instance on 127.0.0.1, then one model load per
worker), so "per photo" is the steady state and "start" what each run paid once.

The overhead per job: the same engines on ``--jobs`` broken files (each fails at once in the
decoder), so what is left is what the engine spends around a job (Ray: a task sent, a
``JobResult`` back).

Usage (from the repository root; everything after ``--`` goes to every run)::

    python tools/ray_scaling.py --photos 20 --rounds 3 -- \\
        --set detect.weights=../shared/weights/yolov8n-seg_int8.onnx --set detect.imgsz=320 \\
        --set saliency.model=isnet --set saliency.weights=../shared/weights/isnet_medium.onnx
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAVIS = "../shared/data/eval/davis2016_val/*/image.jpg"
# name → CLI arguments; ray-1x2: one worker with both cores as threads (as the local engine)
VARIANTS = {
    "local": [],
    "local-1t": ["--set", "runtime.threads=1"],
    "ray-1": ["--engine", "ray", "--workers", "1"],
    "ray-1x2": ["--engine", "ray", "--workers", "1", "--set", "runtime.threads=2"],
    "ray-2": ["--engine", "ray", "--workers", "2"],
}
SUMMARY = re.compile(
    r"layercut: done (\d+)(?:, skipped \d+ \(done before\))?, failed (\d+), ([\d.]+) s"
)
STARTING = re.compile(r"([\d.]+) s of it starting them")
WORKER_CPU = re.compile(r"\(([\d.]+) CPU s each\)")


def run_once(
    python: str, inputs: Path, variant: list[str], extra: list[str], niceness: int | None = 0
) -> dict:
    """One CLI process on ``inputs`` → wall seconds, the summary's figures, the load.

    ``niceness``: of the Ray workers (None: Ray's default, 15, which yields the CPU to every
    other process of the machine; 0: the priority of the local engine's process)."""
    out = Path(tempfile.mkdtemp(prefix="ray-scaling-out-"))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "YOLO_AUTOINSTALL": "false"}
    if niceness is not None:
        env["RAY_worker_niceness"] = str(niceness)  # read by each worker Ray starts
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-m", "pipeline.cli", str(inputs), "-o", str(out), *variant, *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - start
    cpu_s = _children_cpu_s() - cpu_before
    out_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if SUMMARY.search(line)]
    if not lines:
        raise SystemExit(f"no summary (exit {proc.returncode}): {proc.stderr[-600:]}")
    done, failed, seconds = SUMMARY.search(lines[-1]).groups()
    starting = STARTING.search(lines[-1])
    start_s = float(starting.group(1)) if starting else 0.0
    worker_cpu = WORKER_CPU.search(lines[-1])
    return {
        "exit": proc.returncode,
        "wall_s": wall,
        "done": int(done),
        "failed": int(failed),
        "loop_s": float(seconds) - start_s,  # the steady part: after models loaded
        "start_s": start_s if starting else wall - float(seconds),
        "cpu_s": cpu_s,  # the CLI process (local engine: everything; Ray: the driver)
        "worker_cpu_s": float(worker_cpu.group(1)) if worker_cpu else None,  # per photo
        "out_bytes": out_bytes,
        "load": (load_before + os.getloadavg()[0]) / 2,
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_table(runs: dict[str, list[dict]], jobs: int, key: str = "done") -> list[str]:
    rows = [
        "| variant | runs | wall s | start s | s per job (steady) | jobs/s (steady) | "
        "jobs/s (wall) | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, items in runs.items():
        if not items:
            continue

        def med(field: str, items=items) -> float:
            return statistics.median(r[field] for r in items)

        per = statistics.median(r["loop_s"] / max(r[key], 1) for r in items)
        rows.append(
            f"| {name} | {len(items)} | {med('wall_s'):.1f} | {med('start_s'):.1f} | "
            f"{per:.4g} | {1 / per:.4g} | {jobs / med('wall_s'):.4g} | {med('load'):.1f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=DAVIS, help="glob of the photos (default: DAVIS)")
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    default = ["local", "ray-1", "ray-2"]
    parser.add_argument("--variants", nargs="+", default=default, choices=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2000, help="broken files for the overhead")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--ray-niceness",
        type=int,
        default=0,
        help="the Ray workers' niceness (Ray's default is 15: on a busy machine they then "
        "yield to every other process, the local engine does not); -1: Ray's default",
    )
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    photos = sorted(glob.glob(args.images))[: args.photos]
    if len(photos) < args.photos:
        raise SystemExit(f"{args.images}: {len(photos)} photos, {args.photos} asked for")
    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    try:
        inputs = work / "photos"
        inputs.mkdir()
        for i, path in enumerate(photos):  # DAVIS names every frame image.jpg: name them apart
            (inputs / f"{i:03d}-{Path(path).parent.name}.jpg").symlink_to(Path(path).resolve())
        in_bytes = sum(Path(p).stat().st_size for p in photos)
        broken = work / "broken"
        broken.mkdir()
        for i in range(args.jobs):
            (broken / f"b{i:05d}.jpg").write_bytes(b"not an image")
        nice = None if args.ray_niceness < 0 else args.ray_niceness
        runs: dict[str, list[dict]] = {name: [] for name in args.variants}
        overhead: dict[str, list[dict]] = {"local": [], "ray-2": []}
        for r in range(args.rounds):
            for name in args.variants:
                runs[name].append(run_once(args.python, inputs, VARIANTS[name], extra, nice))
                print(f"round {r + 1} {name}: {json.dumps(runs[name][-1])}", flush=True)
            for name in overhead:  # jobs that fail at once: what remains is the engine's share
                overhead[name].append(run_once(args.python, broken, VARIANTS[name], extra, nice))
                print(f"round {r + 1} overhead {name}: {json.dumps(overhead[name][-1])}")
        print(f"\n{len(photos)} photos ({in_bytes / len(photos) / 1e3:.0f} kB each on average), "
              f"{args.rounds} rounds, medians:")  # fmt: skip
        print("\n".join(median_table(runs, len(photos))))
        out_bytes = statistics.median(r["out_bytes"] for r in runs[args.variants[0]])
        print(f"outputs: {out_bytes / len(photos) / 1e3:.0f} kB per photo")
        print(f"\noverhead: {args.jobs} broken files, medians:")
        print("\n".join(median_table(overhead, args.jobs, key="failed")))
        print("\nCPU seconds per photo (medians):")
        for name, items in runs.items():
            if name.startswith("ray"):  # the workers' own count, from the summary
                values = [r["worker_cpu_s"] for r in items]
            elif name == "local":  # the process's, less a run that loads the same models
                values = [
                    (r["cpu_s"] - o["cpu_s"]) / r["done"]
                    for r, o in zip(items, overhead["local"], strict=False)
                ]
            else:
                continue
            print(f"- {name}: {statistics.median(values):.2f}")
        if args.json:
            args.json.write_text(json.dumps({"photos": runs, "overhead": overhead}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
