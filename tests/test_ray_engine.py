"""``layercut --engine ray`` on a real Ray cluster on 127.0.0.1 (no mocks): the same files as the
local engine, a broken file named with exit status 1, ``--skip-existing`` redoing only what is
missing, no temp file left; Ctrl-C finishing the photos in progress (exit 130), then a resume
during which a worker is killed: it is replaced and its photos are done anyway.

The networks have random weights (plumbing, never quality): a random YOLO at ``detect.conf=
1e-4`` (its top three proposals), no SAM, no map. One cluster (``ray start --head --block``)
serves the module; the Ctrl-C test runs the default instead (a private Ray instance the CLI
starts and stops). Every Ray process has a temporary HOME, so no token or session of this
machine's user is read or written.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="Ray is not installed (pip install -e '.[ray]')",
    ),
]

REPO = Path(__file__).resolve().parents[1]
# a random YOLO finds nothing at ordinary thresholds: its top proposals, kept even when cut by
# the frame, so the outputs have something to compare
RANDOM = ["--set", "detect.conf=0.0001", "--set", "detect.max_det=3"]
RANDOM += ["--set", "select.max_truncation_frac=1"]
RANDOM += ["--set", "saliency.model=none", "--set", "segment.model=none"]
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
RAY_MAIN = "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"


def asset(name: str) -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / name


def photo(path: Path, name: str, size: tuple[int, int], flip: bool = False) -> Path:
    """A resized (optionally mirrored) copy of one of Ultralytics' photos."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(asset(name)) as image:
        image = image.convert("RGB").resize(size)
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def env(checkpoints, tmp_path_factory):
    """The environment of every process here: random weights through the manifest, one weights
    cache, a temporary HOME, the checkout importable, Ray on loopback only."""
    root = tmp_path_factory.mktemp("ray_env")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LAYERCUT_", "RAY_"))}
    return {
        **keep,
        **LOOPBACK,
        "LAYERCUT_MANIFEST": str(checkpoints.manifest(["yolo11n-seg"])),
        "XDG_CACHE_HOME": str(root / "cache"),
        "HOME": str(root / "home"),
        "PYTHONPATH": str(REPO),
        "YOLO_AUTOINSTALL": "false",
    }


@pytest.fixture(scope="module")
def head(env):
    """A Ray cluster on 127.0.0.1 with 2 CPUs, its own session folder; stopped at the end.

    A Ray token is made first, as on a machine where Ray ran before (the private instance of
    the Ctrl-C test makes one anyway): the cluster then requires it, and the CLI finds it."""
    token = Path(env["HOME"]) / ".ray" / "auth_token"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text(os.urandom(32).hex())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="lcray", dir="/tmp")  # short: Ray's socket paths live here
    args = [sys.executable, "-c", RAY_MAIN, "start", "--head", "--block"]
    args += ["--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    args += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    log = open(Path(temp) / "start.log", "wb")  # noqa: SIM115 (closed at the end)
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed: {(Path(temp) / 'start.log').read_text()[-800:]}")
            time.sleep(0.5)
        yield address
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the whole group: gcs, raylet, workers
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        subprocess.run(["rm", "-rf", temp], check=False)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def cli(args, env, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args), *RANDOM],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def alpha_iou(a: Path, b: Path) -> float:
    """IoU of the two cut-outs' alpha > 127; both must keep something."""
    with Image.open(a) as x, Image.open(b) as y:
        ma, mb = np.asarray(x)[..., 3] > 127, np.asarray(y)[..., 3] > 127
    assert ma.any() and mb.any(), f"{a.name}: nothing kept, nothing to compare"
    return float((ma & mb).sum() / (ma | mb).sum())


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*.png")}


def test_same_files_as_local_a_broken_file_named_and_a_resume(
    env, head, tmp_path, monkeypatch, capsys
):
    photo(tmp_path / "in" / "bus.jpg", "bus.jpg", (150, 200))
    photo(tmp_path / "in" / "zidane.jpg", "zidane.jpg", (240, 135))
    photo(tmp_path / "in" / "sub" / "bus.jpg", "bus.jpg", (150, 200), flip=True)
    (tmp_path / "in" / "broken.jpg").write_text("not an image")
    for key in ("LAYERCUT_MANIFEST", "XDG_CACHE_HOME", "YOLO_AUTOINSTALL"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("LAYERCUT_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)  # relative paths, as the Ray run below gets them
    extra = ["--layers", "--debug", "-q"]
    assert main(["in", "-o", "local", *extra, *RANDOM]) == 1
    local_lines = capsys.readouterr().err.splitlines()

    ray_run = cli(
        ["in", "-o", "dist", "--engine", "ray", "--ray-address", head, *extra], env, tmp_path
    )
    assert ray_run.returncode == 1, ray_run.stderr
    broken = [line for line in ray_run.stderr.splitlines() if "broken.jpg" in line]
    assert broken and broken[0].startswith("in/broken.jpg: not an image"), ray_run.stderr
    assert broken == [line for line in local_lines if "broken.jpg" in line]  # the same line
    local, dist = tmp_path / "local", tmp_path / "dist"
    assert files(dist) == files(local)  # outputs, debug views, layer folders; no temp file
    assert {"bus.png", "zidane.png", "sub/bus.png", "sub/bus/layers.json"} <= files(dist)
    for name in ("bus.png", "zidane.png", "sub/bus.png"):
        assert alpha_iou(local / name, dist / name) >= 0.99, name

    before = mtimes(dist)
    (dist / "zidane.png").unlink()
    (dist / "sub" / "bus.png").unlink()
    resumed = cli(
        [
            "in",
            "-o",
            "dist",
            "--engine",
            "ray",
            "--ray-address",
            head,
            *extra[:2],
            "--skip-existing",
        ],
        env,
        tmp_path,
    )
    assert resumed.returncode == 1, resumed.stderr  # the broken file fails again
    summary = resumed.stderr.strip().splitlines()[-1]
    assert summary.startswith("layercut: done 2, skipped 1 (done before), failed 1, "), summary
    assert re.search(r"photos/s \(\d+\.\d+ CPU s each\) on 2 workers \(1 CPU each\)", summary)
    after = mtimes(dist)
    redone = {name for name in after if after[name] != before.get(name)}
    assert {"zidane.png", "sub/bus.png"} <= redone
    assert not any(name.startswith("bus") for name in redone)  # bus.png, bus/*, bus.debug.png
    assert files(dist) == files(local)


def test_device_cuda_means_the_clusters_gpus_and_this_one_has_none(env, head, tmp_path):
    photo(tmp_path / "in" / "bus.jpg", "bus.jpg", (150, 200))
    args = ["in", "-o", "out", "--engine", "ray", "--ray-address", head, "--device", "cuda"]
    run = cli(args, env, tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == "layercut: error: --device cuda: the Ray cluster has no GPU"


KILLER = """
import os, sys, time
from pipeline.batch.ray_cluster import prepare_environment
prepare_environment(sys.argv[1])
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
out, before = sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 180
while sum(n.endswith(".png") and not n.startswith(".") for n in os.listdir(out)) <= before:
    assert time.monotonic() < deadline
    time.sleep(0.05)
named = [a for a in ray.util.list_named_actors(all_namespaces=True)
         if a["name"].startswith("layercut-")]
ray.kill(ray.get_actor(named[0]["name"], namespace=named[0]["namespace"]), no_restart=True)
print("killed", named[0]["name"])
"""


def test_ctrl_c_then_a_resume_that_outlives_a_killed_worker(env, head, tmp_path):
    """Ctrl-C: the photos in progress finish, exit 130; ``--skip-existing`` does the rest,
    although one of its workers is killed (as the kernel kills one for memory) on the way."""
    for i in range(16):
        photo(tmp_path / "many" / f"p{i:02d}.jpg", "zidane.jpg", (480, 270), flip=bool(i % 2))
    out = tmp_path / "out"
    proc = subprocess.Popen(  # the default: a private Ray instance, started and stopped by it
        [sys.executable, "-m", "pipeline.cli", "many", "-o", "out", "--engine", "ray", *RANDOM],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not (out.is_dir() and any(out.glob("*.png"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "layercut: stopping: finishing the" in err and "layercut: interrupted" in err
    done = mtimes(out)
    assert 0 < len(done) < 16
    assert files(out) == set(done)  # complete files only, no temp file

    killer = subprocess.Popen(
        [sys.executable, "-c", KILLER, head, str(out), str(len(done))],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    resumed = cli(
        ["many", "-o", "out", "--engine", "ray", "--ray-address", head, "--skip-existing"],
        env,
        tmp_path,
    )
    said, _ = killer.communicate(timeout=60)
    assert killer.returncode == 0 and said.startswith("killed layercut-"), said
    assert resumed.returncode == 0, resumed.stderr
    assert "layercut: a worker died (" in resumed.stderr and "starting another" in resumed.stderr
    assert f"skipped {len(done)} (done before)" in resumed.stderr
    after = mtimes(out)
    assert len(after) == 16 and all(after[name] == t for name, t in done.items())
    assert files(out) == set(after)
