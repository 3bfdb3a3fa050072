"""The Ray engine's parts that need no running cluster: worker sizing, the protect index (the
same decisions as checking every input, without the per-file cost), the temp-file clean-up of
a hard stop, and the command line's refusals (no Ray installed, standard input/output, Ray
options without ``--engine ray``). The engine itself runs on a real Ray cluster in
``tests/test_ray_engine.py``."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from pathlib import PurePosixPath

import pytest

from pipeline.batch import Job, OutputOptions, plan_batch, run_job
from pipeline.batch.protect import ProtectIndex
from pipeline.batch.ray_cluster import ClusterError, RaySettings, size_workers
from pipeline.batch.ray_engine import remove_temp_files
from pipeline.cli import main
from pipeline.fakes import FakeRemover
from tests.test_batch import photo_file


def node(cpu: float, gpu: float = 0.0) -> dict[str, float]:
    return {"CPU": cpu, "GPU": gpu} if gpu else {"CPU": cpu}


def cluster(*nodes):
    total: dict[str, float] = {}
    for n in nodes:
        for key, value in n.items():
            total[key] = total.get(key, 0.0) + value
    return total, list(nodes)


@pytest.mark.parametrize(
    "nodes, threads, device, settings, want",
    [
        ((node(2),), 0, "auto", RaySettings(), (2, 1, 0.0)),  # one 1-CPU worker per CPU
        ((node(8), node(4)), 2, "cpu", RaySettings(), (6, 2, 0.0)),  # runtime.threads each
        ((node(8), node(3)), 2, "auto", RaySettings(), (5, 2, 0.0)),  # whole workers per node
        ((node(16, 2), node(16, 1)), 4, "auto", RaySettings(), (3, 4, 1.0)),  # one per GPU
        ((node(16, 2),), 1, "cuda", RaySettings(gpus_per_worker=0.5), (4, 1, 0.5)),
        ((node(16, 2),), 1, "cpu", RaySettings(), (16, 1, 0.0)),  # --device cpu: CPU workers
        ((node(2),), 1, "auto", RaySettings(workers=5), (5, 1, 0.0)),  # --workers wins
    ],
)
def test_workers_follow_the_cluster_threads_and_gpus(nodes, threads, device, settings, want):
    total, nodes = cluster(*nodes)
    shape = size_workers(total, nodes, threads, device, settings)
    assert (shape.count, shape.cpus, shape.gpus) == want
    assert shape.device == ("cuda" if want[2] else "cpu")


@pytest.mark.parametrize(
    "nodes, threads, device, settings, message",
    [
        ((node(2),), 4, "auto", RaySettings(), "no node of the Ray cluster has 4 CPU"),
        ((node(8),), 1, "cuda", RaySettings(), "the Ray cluster has no GPU"),
        ((node(8, 1),), 1, "cpu", RaySettings(gpus_per_worker=1), "the device is cpu"),
        ((node(8, 1),), 1, "auto", RaySettings(gpus_per_worker=2), "1 GPU"),
        ((node(8, 4),), 1, "auto", RaySettings(gpus_per_worker=1.5), "must be whole"),
        ((node(8),), 1, "auto", RaySettings(workers=0), "--workers must be at least 1"),
    ],
)
def test_a_cluster_that_cannot_hold_a_worker_is_one_line(nodes, threads, device, settings, message):
    total, nodes = cluster(*nodes)
    with pytest.raises(ClusterError, match=message) as info:
        size_workers(total, nodes, threads, device, settings)
    assert "\n" not in str(info.value)


# -- the protect index: the same decision as every input, without checking every input ----------
def decisions(job, out_dir, options, inputs, index):
    """(run_job's error with every input as protect, with the index's short list)."""
    every = run_job(FakeRemover(), job, out_dir, options, inputs)
    short = run_job(FakeRemover(), job, out_dir, options, index.for_job(job, out_dir, options))
    return every.error, short.error


def test_a_first_run_checks_nothing_and_builds_no_index(tmp_path):
    for i in range(3):
        photo_file(tmp_path / "in" / f"p{i}.png")
    options = OutputOptions(layers=True, debug=True)
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), options)
    index = ProtectIndex(lambda: pytest.fail("the inputs were fetched for nothing"))
    for job in plan.jobs:
        assert index.for_job(job, plan.out_dir, options) == []
        assert run_job(FakeRemover(), job, plan.out_dir, options, []).ok


def test_an_output_that_is_an_input_is_found_as_checking_every_input_finds_it(tmp_path):
    inputs = [photo_file(tmp_path / "in" / f"p{i}.png") for i in range(3)]
    options = OutputOptions(layers=True, debug=True)
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), options)
    out = plan.out_dir
    out.mkdir(parents=True)  # planning creates nothing
    jobs = {job.source.name: job for job in plan.jobs}
    (out / "p0.png").symlink_to(inputs[0].resolve())  # the output is a link to an input
    os.link(inputs[1], out / "p1.debug.png")  # the debug file is a hard link to one
    (out / "p2").mkdir()
    inside = photo_file(out / "p2" / "held.png")  # an input inside the layer folder
    (out / "p3.png").write_bytes(b"an old output")  # exists, is no input
    index = ProtectIndex(inputs + [inside])
    every = [*inputs, inside]
    for name, found in (("p0.png", inputs[0]), ("p1.png", inputs[1]), ("p2.png", inside)):
        job = jobs[name]
        assert found in index.for_job(job, out, options)
        every_error, short_error = decisions(job, out, options, every, index)
        assert every_error and every_error == short_error  # refused, with the same line
    assert inputs[0].read_bytes()[:4] == b"\x89PNG" and inside.is_file()  # nothing overwritten
    stranger = Job(inputs[2], PurePosixPath("p3.png"))
    assert index.for_job(stranger, out, options) == []
    assert run_job(FakeRemover(), stranger, out, options, []).ok


def test_a_hard_stop_leaves_no_temp_file_and_puts_an_old_layer_folder_back(tmp_path):
    options = OutputOptions(layers=True, debug=True)
    photo_file(tmp_path / "in" / "a.png")
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), options)
    out, job = plan.out_dir, plan.jobs[0]
    out.mkdir(parents=True)  # planning creates nothing; a job's first write does
    (out / ".a.png.x1y2.tmp").write_bytes(b"half")
    (out / ".a.debug.png.x3.tmp").write_bytes(b"half")
    (out / ".a.x4.tmp").mkdir()
    (out / ".a.x4.tmp" / "01-person.png").write_bytes(b"half")
    (out / ".a.x5.old").mkdir()  # set aside by write_folder; the new folder never came
    (out / ".a.x5.old" / "layers.json").write_text("{}")
    (out / ".b.png.x6.tmp").write_bytes(b"another job's")
    remove_temp_files(job, out, options)
    assert sorted(os.listdir(out)) == [".b.png.x6.tmp", "a"]
    assert (out / "a" / "layers.json").read_text() == "{}"


# -- the command line --------------------------------------------------------------------------
def test_engine_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    photo_file(tmp_path / "in" / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # how Python reports a package as absent
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "layercut: error: --engine ray needs Ray: pip install 'layercut[ray]'"
    assert not (tmp_path / "out").exists()  # refused before planning


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-", "-o", "out.png", "--engine", "ray"], "works with the local engine only"),
        (["a.png", "-o", "-", "--engine", "ray"], "works with the local engine only"),
        (["a.png", "-o", "out", "--workers", "2"], "--workers needs --engine ray"),
        (["a.png", "-o", "out", "--ray-address", "auto"], "--ray-address needs --engine ray"),
        (["a.png", "-o", "out", "--ray-gpus-per-worker", "1"], "needs --engine ray"),
    ],
)
def test_engine_options_are_checked_first(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_progress_keeps_other_stderr_lines_whole_and_gives_stderr_back():
    import io

    from pipeline.batch.progress import Progress

    err, before = io.StringIO(), sys.stderr
    progress = Progress(3, quiet=False, err=err, status="starting workers")
    progress.advance()
    print("(raylet) a worker died", file=sys.stderr)  # as Ray prints its own messages
    progress.say("in/b.jpg: not an image")
    progress.close()
    assert sys.stderr is before
    lines = [line.strip() for line in err.getvalue().replace("\r", "\n").splitlines()]
    assert "(raylet) a worker died" in lines and "in/b.jpg: not an image" in lines
    assert any(line.startswith("starting workers:") for line in lines)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_ray_address_where_nothing_answers_is_one_line_at_once(tmp_path, monkeypatch, capsys):
    photo_file(tmp_path / "in" / "a.png")
    for key in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE"):
        monkeypatch.setenv(key, os.environ.get(key, "0" if "AUTH" not in key else "disabled"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    argv = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "ray"]
    assert main([*argv, "--ray-address", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - start < 30  # Ray alone would retry for minutes
    err = capsys.readouterr().err.strip()
    want = f"--ray-address 127.0.0.1:{port}: no Ray cluster answers (Connection refused)"
    assert err == f"layercut: error: {want}"
    assert main([*argv, "--ray-address", "nowhere"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
