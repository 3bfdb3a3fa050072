"""The batch's three parts without any model: planning (inputs → jobs, names, skip-existing, the
output folder never read), one job (``run_job`` with the fake pipeline, real files) and the
local loop (failures, summary, Ctrl-C). The same rules through the real CLI and networks are in
``tests/test_cli_rembg.py``."""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from pipeline.batch import (
    STDIN_NAME,
    Input,
    Job,
    OutputOptions,
    PlanError,
    discover_inputs,
    output_names,
    plan_batch,
    run_job,
    run_local,
)
from pipeline.fakes import FakeRemover
from pipeline.imageio import DECODED_TITLES


@pytest.fixture
def tree(tmp_path):
    for rel in ["a/x.jpg", "a/sub/y.PNG", "a/sub/deep/z.webp", "a/notes.txt", "a/.hidden.jpg"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"data")
    (tmp_path / "a" / ".git").mkdir()
    (tmp_path / "a" / ".git" / "w.jpg").write_bytes(b"data")  # hidden folder: skipped
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"data")
    return tmp_path


def rels(found):
    return [item.rel.as_posix() for item in found]


# -- (a) planning -------------------------------------------------------------------------------
def test_discover_folder_recursively_keeps_paths_below_the_folder(tree):
    found, errors = discover_inputs([str(tree / "a")])
    names = [item.path.relative_to(tree).as_posix() for item in found]
    assert names == ["a/sub/deep/z.webp", "a/sub/y.PNG", "a/x.jpg"]
    assert rels(found) == ["sub/deep/z.webp", "sub/y.PNG", "x.jpg"]
    assert errors == []
    (tree / "empty").mkdir()
    assert discover_inputs([str(tree / "empty")]) == (
        [],
        [f"{tree / 'empty'}: no image files in this folder"],
    )


def test_discover_globs_missing_and_duplicates(tree):
    args = [
        str(tree / "*" / "x.jpg"),
        str(tree / "a" / "**" / "*.png"),  # no match: the extension is upper-case on disk
        str(tree / "a" / "**" / "*.PNG"),
        str(tree / "a" / "x.jpg"),  # duplicate of a glob match
        str(tree / "a" / "notes.txt"),  # an explicit file is taken whatever its extension
        str(tree / "nope" / "*.jpg"),
        str(tree / "missing.jpg"),
    ]
    found, errors = discover_inputs(args)
    names = [item.path.relative_to(tree).as_posix() for item in found]
    assert names == ["a/notes.txt", "a/sub/y.PNG", "a/x.jpg", "b/x.jpg"]
    # a glob keeps the path below its fixed leading folders; a file argument only its name
    assert rels(found) == ["notes.txt", "sub/y.PNG", "a/x.jpg", "b/x.jpg"]
    assert errors == [
        f"{tree / 'a' / '**' / '*.png'}: no such file or no match",
        f"{tree / 'nope' / '*.jpg'}: no such file or no match",
        f"{tree / 'missing.jpg'}: no such file or no match",
    ]


def test_output_names_keep_the_tree_never_collide_nor_name_an_input(tree):
    found = [
        Input(tree / "a" / "x.jpg", PurePosixPath("x.jpg")),
        Input(tree / "a" / "x.png", PurePosixPath("x.png")),  # same stem, same folder
        Input(tree / "a" / "sub" / "y.PNG", PurePosixPath("sub/y.PNG")),
    ]
    names = output_names(found, tree / "out", "png")
    assert [n.as_posix() for n in names] == ["x.png", "x-2.png", "sub/y.png"]
    # OUT/x.png is an input: it gets -cutout (an input is never written over)
    beside = [Input(tree / "a" / "x.png", PurePosixPath("x.png"))]
    (tree / "a" / "x.png").write_bytes(b"data")
    assert output_names(beside, tree / "a", "png") == [PurePosixPath("x-cutout.png")]
    assert output_names(beside, tree / "a", "webp") == [PurePosixPath("x.webp")]


def test_plan_keeps_the_tree_and_never_reads_out_inside_the_input(tree):
    out = tree / "a" / "cut"
    (out / "sub").mkdir(parents=True)
    (out / "x.png").write_bytes(b"an earlier output")
    (out / "sub" / "y.png").write_bytes(b"an earlier output")
    plan = plan_batch([str(tree / "a")], str(out), OutputOptions())
    assert plan.out_dir == out
    assert [(j.source.relative_to(tree).as_posix(), j.output.as_posix()) for j in plan.jobs] == [
        ("a/sub/deep/z.webp", "sub/deep/z.png"),
        ("a/sub/y.PNG", "sub/y.png"),
        ("a/x.jpg", "x.png"),
    ]
    globbed = plan_batch([str(tree / "a" / "**")], str(out), OutputOptions())
    assert all(not j.source.is_relative_to(out) for j in globbed.jobs) and globbed.jobs
    with pytest.raises(PlanError, match="is the input folder"):
        plan_batch([str(tree / "a")], str(tree / "a"), OutputOptions())


def test_skip_existing_skips_only_complete_jobs(tree):
    out = tree / "out"
    options = OutputOptions(debug=True)
    (out / "sub").mkdir(parents=True)
    (out / "x.png").write_bytes(b"done")
    (out / "x.debug.png").write_bytes(b"done")
    (out / "sub" / "y.png").write_bytes(b"done, but its debug file is missing")
    plan = plan_batch([str(tree / "a")], str(out), options, skip_existing=True)
    assert [j.output.as_posix() for j in plan.skipped] == ["x.png"]
    assert [j.output.as_posix() for j in plan.jobs] == ["sub/deep/z.png", "sub/y.png"]
    assert len(plan_batch([str(tree / "a")], str(out), options).jobs) == 3  # without the flag


@pytest.mark.parametrize(
    ("inputs", "output", "options", "message"),
    [
        (["a"], "one.png", OutputOptions(), "3 inputs cannot all go to the file"),
        (["a/x.jpg"], "one.jpg", OutputOptions(), "written as .png"),
        (["a/x.jpg"], "one.png", OutputOptions(fmt="webp"), "written as .webp"),
        (["a/x.jpg", "-"], "out", OutputOptions(), "must be the only INPUT"),
        (["a/x.jpg"], "-", OutputOptions(layers=True), "write files"),
        (["a"], "-", OutputOptions(), "cannot all go to standard output"),
        (["a/x.jpg"], "out", OutputOptions(fmt="mask", background="white"), "mask"),
        (["a/x.jpg"], "a/notes.txt", OutputOptions(), "exists and is not a folder"),
        (["a/x.jpg"], "a/notes.txt/sub", OutputOptions(), "cannot create the folder"),
    ],
)
def test_bad_usage_is_one_plan_error(tree, monkeypatch, inputs, output, options, message):
    monkeypatch.chdir(tree)
    with pytest.raises(PlanError, match=message):
        plan_batch(inputs, output, options)


def test_output_file_stdout_and_stdin_jobs(tree):
    plan = plan_batch([str(tree / "a" / "x.jpg")], str(tree / "o" / "one.png"), OutputOptions())
    assert plan.out_dir == tree / "o" and not plan.out_dir.exists()  # made by the first write
    assert plan.jobs == (Job(tree / "a" / "x.jpg", PurePosixPath("one.png")),)
    assert plan_batch(["-"], "-", OutputOptions()).jobs == (Job(None, None),)
    stdin_plan = plan_batch(["-"], str(tree / "o"), OutputOptions(fmt="webp"))
    assert stdin_plan.jobs == (Job(None, PurePosixPath("stdin.webp")),)
    assert Job(None, None).name == STDIN_NAME
    with pytest.raises(PlanError, match="is the input itself"):
        y = str(tree / "a" / "sub" / "y.PNG")
        plan_batch([y], y, OutputOptions())


# -- (b) one job and (c) the local loop ---------------------------------------------------------
def photo_file(path: Path, h: int = 60, w: int = 80) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_run_job_writes_every_file_and_reports_a_bad_input_in_one_line(tmp_path):
    photo_file(tmp_path / "in" / "good.png")
    bad = tmp_path / "in" / "bad.jpg"
    bad.write_bytes(b"not an image")
    options = OutputOptions(layers=True, debug=True)
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), options)
    results = [run_job(FakeRemover(), job, plan.out_dir, options) for job in plan.jobs]
    assert [r.ok for r in results] == [False, True]
    unknown = f"not an image in a supported format (unrecognised data; decoded: {DECODED_TITLES})"
    assert results[0].error == f"{bad}: {unknown}"
    assert "\n" not in results[0].error and results[0].seconds >= 0
    written = {p.relative_to(tmp_path / "out").as_posix() for p in results[1].written}
    assert {"good.png", "good.debug.png", "good/layers.json", "good/composite.png"} <= written
    assert results[1].written[-1] == tmp_path / "out" / "good.png"  # the output last
    with Image.open(tmp_path / "out" / "good.png") as image:
        assert image.mode == "RGBA" and image.size == (80, 60)


def test_run_job_from_stdin_to_stdout(tmp_path):
    data = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(data, "PNG")
    out = io.BytesIO()
    options = OutputOptions(fmt="mask")
    job = Job(None, None)
    result = run_job(
        FakeRemover(), job, None, options, stdin=io.BytesIO(data.getvalue()), stdout=out
    )
    assert result.ok, result.error
    with Image.open(io.BytesIO(out.getvalue())) as image:
        assert image.mode == "L" and image.size == (50, 40)
    failed = run_job(FakeRemover(), job, None, options, stdin=io.BytesIO(b"junk"), stdout=out)
    assert failed.error.startswith(f"{STDIN_NAME}: not an image")


def test_local_loop_goes_on_after_a_failure_and_sums_up(tmp_path):
    for name in ("a.png", "c.png"):
        photo_file(tmp_path / "in" / name)
    (tmp_path / "in" / "b.png").write_bytes(b"")
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), OutputOptions())
    err = io.StringIO()
    assert run_local(FakeRemover(), plan, OutputOptions(), stderr=err) == 1
    lines = [line for line in err.getvalue().splitlines() if "b.png" in line]
    assert lines == [f"{tmp_path / 'in' / 'b.png'}: empty file (0 bytes)"]
    assert "done 2, failed 1" in err.getvalue()
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "c.png"]


def test_ctrl_c_stops_the_loop_and_leaves_no_temp_file(tmp_path, monkeypatch):
    for name in ("a.png", "b.png"):
        photo_file(tmp_path / "in" / name)
    plan = plan_batch([str(tmp_path / "in")], str(tmp_path / "out"), OutputOptions())

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)  # Ctrl-C while the first file is written
    with pytest.raises(KeyboardInterrupt):
        run_local(FakeRemover(), plan, OutputOptions(), stderr=io.StringIO())
    assert os.listdir(tmp_path / "out") == []
