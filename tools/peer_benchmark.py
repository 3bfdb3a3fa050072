"""layercut against rembg on the same folder with the same ISNet model file: whole processes,
alternated (layercut, rembg, layercut, rembg …) in one run, so both see the same machine load.

    python tools/peer_benchmark.py --isnet ../shared/weights/isnet_medium.onnx \\
        --set detect.weights=../shared/weights/yolov8n-seg_int8.onnx --set detect.imgsz=320 \\
        --rounds 3 --out reports/peer.json

Without a folder argument the 20 DAVIS frames of ``../shared/data/eval/davis2016_val`` are used
(as in ``../shared/checks/speed-vs-rembg``). rembg is the ``rembg`` command given by ``--rembg``,
else the one on PATH (``pip install -e '.[peer]'`` or a venv of its own, e.g.
``python -m venv ~/.cache/layercut-peer-rembg && ~/.cache/layercut-peer-rembg/bin/pip install
'rembg[cpu,cli]==2.0.86'``), else that venv's. It runs ``rembg p -m dis_custom`` with the
model file; layercut runs ``layercut FOLDER -o OUT -q --set saliency.model=isnet --set
saliency.weights=FILE`` (the default preset: map and matting on) plus the ``--set`` options.

Printed and saved: per tool the median wall time, photos per second and median peak RSS (the
process tree's resident memory, sampled every 20 ms), the layercut/rembg wall ratio of each
round and its median, and the load average around each run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PEER_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "layercut-peer-rembg"


def find_rembg(given: str | None) -> list[str]:
    """The rembg command: ``given``, else ``rembg`` on PATH, else the peer venv's."""
    if given:
        return shlex.split(given)
    on_path = shutil.which("rembg")
    if on_path:
        return [on_path]
    venv = PEER_VENV / "bin" / "rembg"
    if venv.is_file():
        return [str(venv)]
    raise SystemExit(
        "no rembg command: pass --rembg, pip install -e '.[peer]', or create "
        f"{PEER_VENV} (see this tool's docstring)"
    )


def davis_folder(work: Path) -> Path:
    """The 20 DAVIS val frames copied into ``work/in`` as ``<item>.jpg``."""
    source = SHARED / "data" / "eval" / "davis2016_val"
    if not source.is_dir():
        raise SystemExit(f"no folder given and {source} is absent")
    folder = work / "in"
    folder.mkdir()
    for item in sorted(p for p in source.iterdir() if (p / "image.jpg").is_file()):
        shutil.copyfile(item / "image.jpg", folder / f"{item.name}.jpg")
    return folder


def measured(command: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``command``; wall seconds, peak RSS of its process tree (MB), load averages."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.02)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"failed ({process.returncode}): {shlex.join(command)}\n{tail}")
    return {
        "wall_s": seconds,
        "peak_rss_mb": peak / 2**20,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="photos (default: the 20 DAVIS val frames)")
    parser.add_argument("--isnet", required=True, help="the ISNet .onnx file both tools run")
    parser.add_argument("--rembg", help="rembg command (default: on PATH, else the peer venv)")
    parser.add_argument("--layercut", help="layercut command (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--out", help="save the runs and the summary as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    isnet = Path(args.isnet).resolve()
    if not isnet.is_file():
        parser.error(f"--isnet {isnet}: no such file")
    rembg = find_rembg(args.rembg)
    ours = shlex.split(args.layercut) if args.layercut else [sys.executable, "-m", "pipeline.cli"]
    env = {**os.environ, "YOLO_AUTOINSTALL": "false", "LAYERCUT_OFFLINE": "1"}
    if not args.layercut:
        env["PYTHONPATH"] = str(REPO)
    settings = ["saliency.model=isnet", f"saliency.weights={isnet}", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="layercut-peer-") as tmp:
        work = Path(tmp)
        folder = Path(args.folder).resolve() if args.folder else davis_folder(work)
        photos = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        # rembg takes a model path only inside its models folder (U2NET_HOME): a copy there
        (work / "u2net").mkdir()
        peer_model = work / "u2net" / isnet.name
        shutil.copyfile(isnet, peer_model)
        peer_extra = json.dumps({"model_path": str(peer_model)})
        commands = {
            "layercut": lambda out: [
                *ours, str(folder), "-o", str(out), "-q",
                *[part for s in settings for part in ("--set", s)],
            ],
            "rembg": lambda out: [*rembg, "p", "-m", "dis_custom", "-x", peer_extra,
                                  str(folder), str(out)],
        }  # fmt: skip
        env["U2NET_HOME"] = str(work / "u2net")
        runs: dict[str, list[dict]] = {"layercut": [], "rembg": []}
        for round_index in range(args.rounds):
            for tool, command in commands.items():
                out = work / f"out-{tool}"
                shutil.rmtree(out, ignore_errors=True)
                run = measured(command(out), env, work / f"{tool}.log")
                written = sum(1 for p in out.rglob("*.png"))
                if written < photos:
                    raise SystemExit(f"{tool} wrote {written} of {photos} outputs")
                runs[tool].append(run)
                print(
                    f"round {round_index + 1} {tool}: {run['wall_s']:.1f} s, peak RSS "
                    f"{run['peak_rss_mb']:.0f} MB, load {run['load_before']:.1f}"
                    f"→{run['load_after']:.1f}",
                    flush=True,
                )
    pairs = list(zip(runs["layercut"], runs["rembg"], strict=True))
    ratios = [a["wall_s"] / b["wall_s"] for a, b in pairs]
    summary = {
        tool: {
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
            "photos_per_s": photos / statistics.median(r["wall_s"] for r in rs),
            "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in rs),
        }
        for tool, rs in runs.items()
    }
    summary["wall_ratio_median"] = statistics.median(ratios)
    summary["rss_ratio_median"] = statistics.median(
        a["peak_rss_mb"] / b["peak_rss_mb"] for a, b in pairs
    )
    print(f"\n{photos} photos, {args.rounds} rounds, {os.cpu_count()} cores")
    print("| tool | median wall | photos/s | median peak RSS |")
    print("|---|---:|---:|---:|")
    for tool in runs:
        s = summary[tool]
        print(
            f"| {tool} | {s['wall_s_median']:.1f} s | {s['photos_per_s']:.2f} "
            f"| {s['peak_rss_mb_median']:.0f} MB |"
        )
    print(
        f"wall ratio layercut/rembg per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {summary['wall_ratio_median']:.2f}; peak RSS ratio median "
        f"{summary['rss_ratio_median']:.2f}"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        report = {"photos": photos, "cores": os.cpu_count(), "runs": runs, "summary": summary}
        report["ratios"] = ratios
        report["layercut_settings"] = settings
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
