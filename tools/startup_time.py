"""What a user waits for on the command line: ``layercut --help``, the first result for one photo
(start-up, imports, model loading, the run, the file), and the time per photo in a batch.

    python tools/startup_time.py                       # random weights, this checkout
    python tools/startup_time.py --layercut .venv/bin/layercut --runs 5 --batch 8
    python tools/startup_time.py --set detect.weights=../shared/weights/yolov8n-seg_int8.onnx \
        --set detect.imgsz=320

Each figure is the wall time of a whole ``layercut`` process (``subprocess``), the median of
``--runs`` runs. Per photo in a batch = (batch wall time − first-result wall time) / (batch − 1):
what one more photo costs once the models are loaded. The photo is Ultralytics' bus.jpg resized
to ``--mp`` megapixels. Without ``--set detect.weights=…`` random-weight checkpoints of the real
architectures are built and resolved through a temporary weights manifest (a forward pass costs
the same whatever the weights; the detector then takes its ``--instances`` best proposals).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def bus_photo() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


def write_photo(path: Path, megapixels: float) -> tuple[int, int]:
    """bus.jpg resized to ``megapixels`` (aspect kept), saved as JPEG; returns (width, height)."""
    with Image.open(bus_photo()) as img:
        scale = (megapixels * 1e6 / (img.width * img.height)) ** 0.5
        size = (round(img.width * scale), round(img.height * scale))
        img.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
    return size


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process; its stderr is shown when it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"failed ({done.returncode}): {shlex.join(map(str, command))}\n{done.stderr}"
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layercut", help="the layercut command (default: this checkout)")
    parser.add_argument("--mp", type=float, default=1.0, help="photo size in megapixels")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--batch", type=int, default=6, help="photos in the batch run")
    parser.add_argument("--instances", type=int, default=10, help="random detector: proposals")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    if args.batch < 2 or args.runs < 1:
        parser.error("--batch must be at least 2 and --runs at least 1")
    command = (
        shlex.split(args.layercut) if args.layercut else [sys.executable, "-m", "pipeline.cli"]
    )
    env = {**os.environ, "YOLO_AUTOINSTALL": "false"}
    if not args.layercut:  # this checkout's code; an installed command uses its own
        env["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryDirectory(prefix="layercut-startup-") as tmp:
        work = Path(tmp)
        overrides = list(args.overrides)
        if not any(o.startswith("detect.weights=") for o in overrides):
            sys.path.insert(0, str(REPO))
            from pipeline.testing import write_random_weights

            env["LAYERCUT_MANIFEST"] = str(write_random_weights(work / "w", ["yolo11n-seg"]))
            env["XDG_CACHE_HOME"] = str(work / "cache")
            overrides += ["detect.conf=0.0001", f"detect.max_det={args.instances}"]
        if not any(o.startswith("saliency.") for o in overrides):
            sys.path.insert(0, str(REPO))
            from tools.benchmark import map_override

            overrides.append(map_override())
        settings = [part for o in overrides for part in ("--set", o)]
        (work / "batch").mkdir()
        width, height = write_photo(work / "batch" / "p01.jpg", args.mp)
        for i in range(2, args.batch + 1):
            (work / "batch" / f"p{i:02d}.jpg").write_bytes(
                (work / "batch" / "p01.jpg").read_bytes()
            )
        one = work / "batch" / "p01.jpg"
        timed([*command, one, "-o", work / "warm.png", "-q", *settings], env)  # caches, page cache
        help_s = [timed([*command, "--help"], env) for _ in range(args.runs)]
        first_s = [
            timed([*command, one, "-o", work / f"one{i}.png", "-q", *settings], env)
            for i in range(args.runs)
        ]
        batch_s = [
            timed([*command, work / "batch", "-o", work / f"out{i}", "-q", *settings], env)
            for i in range(max(1, args.runs // 2))
        ]
    first = statistics.median(first_s)
    batch = statistics.median(batch_s)
    print(
        f"command: {shlex.join(map(str, command))}; photo {width}×{height}; {os.cpu_count()} cores"
    )
    print("| what | median wall time |")
    print("|---|---:|")
    print(f"| `layercut --help` ({args.runs} runs) | {statistics.median(help_s):.2f} s |")
    print(f"| first result, one {args.mp:g} MP photo ({args.runs} runs) | {first:.2f} s |")
    print(f"| batch of {args.batch} photos ({len(batch_s)} runs) | {batch:.2f} s |")
    print(
        f"| per photo in the batch, after the first | {(batch - first) / (args.batch - 1):.2f} s |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
