"""(a) Planning a batch: INPUT arguments and ``-o`` → a ``Plan`` of ``Job``s (see
``pipeline.batch`` for the naming rule). Nothing here loads a model or decodes an image."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.imageio import IMAGE_EXTENSIONS
from pipeline.outputs import FORMATS, get_format, same_file

STDIO = "-"  # INPUT: standard input; -o: standard output
STDIN_NAME = "<stdin>"  # how messages name standard input


class PlanError(ValueError):
    """Bad usage found while planning (``-o``, INPUT ``-``): one line, exit status 2."""


@dataclass(frozen=True)
class OutputOptions:
    """What each job writes. ``fmt``: a name of ``pipeline.outputs.FORMATS``; ``background``:
    ``pipeline.background.parse_background``'s result or None (keep the alpha); ``layers``,
    ``debug``: the ``--layers`` folder and the ``--debug`` file beside the output."""

    fmt: str = "png"
    png_compress_level: int = 1
    webp_quality: int = 90
    background: Any = None
    layers: bool = False
    debug: bool = False
    max_image_px: int = 150_000_000

    def encoder_options(self) -> dict[str, int]:
        return {"png_compress_level": self.png_compress_level, "webp_quality": self.webp_quality}


@dataclass(frozen=True)
class Input:
    """One input file and its path below the folder (or glob base) it was found in."""

    path: Path
    rel: PurePosixPath


@dataclass(frozen=True)
class Job:
    """One input (``source``; None: standard input) and its output relative to the plan's
    ``out_dir`` (``output``; None: standard output)."""

    source: Path | None
    output: PurePosixPath | None

    @property
    def name(self) -> str:
        return STDIN_NAME if self.source is None else str(self.source)

    def outputs(self, options: OutputOptions) -> list[PurePosixPath]:
        """Every file the job writes, relative to ``out_dir``, the output itself last."""
        if self.output is None:
            return []
        stem = self.output.with_suffix("")
        files = [stem / "layers.json"] if options.layers else []  # written last in its folder
        if options.debug:
            files.append(stem.with_name(f"{stem.name}.debug.png"))
        return [*files, self.output]


@dataclass(frozen=True)
class Plan:
    """``jobs`` to run, ``skipped`` ones (done already: ``--skip-existing``), one ``missing``
    line per INPUT that named nothing, every input file (``inputs``: never written over), and
    ``out_dir`` (None when writing to standard output)."""

    out_dir: Path | None
    jobs: tuple[Job, ...]
    skipped: tuple[Job, ...] = ()
    missing: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()


def format_for_output(output: str) -> str | None:
    """The output format ``-o FILE``'s extension names (``x.webp`` → ``webp``), or None."""
    suffix = Path(output).suffix.lower()
    for spec in FORMATS.values():  # the first entry with that extension: the cut-out, not a mask
        if spec.extension == suffix:
            return spec.name
    return None


def _target(output: str, fmt: str) -> tuple[str, Path | None]:
    """(``"stdout"`` | ``"file"`` | ``"folder"``, path) for ``-o``."""
    if output == STDIO:
        return "stdout", None
    path = Path(output)
    suffix = path.suffix.lower()
    file_like = suffix in IMAGE_EXTENSIONS or format_for_output(output) is not None
    if path.is_dir() or not file_like:
        return "folder", path
    extension = get_format(fmt).extension
    if suffix != extension:
        raise PlanError(
            f"-o {output}: the {get_format(fmt).title} output is written as {extension}; "
            f"name the file *{extension} or give a folder"
        )
    return "file", path


def plan_batch(
    inputs: Sequence[str], output: str, options: OutputOptions, skip_existing: bool = False
) -> Plan:
    """The jobs for INPUT arguments ``inputs`` and ``-o output`` (see the module docstring).

    Creates the output folder; raises ``PlanError`` for bad usage: ``-`` beside other inputs,
    ``-o FILE`` or ``-o -`` with several inputs, ``--layers``/``--debug`` to standard output,
    a background for a mask, an output that is an input, OUT an input folder, an unusable OUT.
    """
    spec = get_format(options.fmt)
    if spec.mode == "L" and options.background is not None:
        raise PlanError("a background has no effect on a mask output (--mask)")
    kind, out = _target(output, options.fmt)
    if kind == "stdout" and (options.layers or options.debug):
        raise PlanError("--layers and --debug write files: give -o a folder, not -")
    from_stdin = list(inputs) == [STDIO]
    if STDIO in inputs and not from_stdin:
        raise PlanError("'-' (standard input) must be the only INPUT")
    found, missing = ([], []) if from_stdin else discover_inputs(inputs, out, kind == "folder")
    files = tuple(item.path for item in found)
    sources: list[Path | None] = [None] if from_stdin else list(files)
    if kind != "folder" and len(sources) > 1:
        where = "standard output" if kind == "stdout" else f"the file {output}"
        raise PlanError(
            f"-o {output}: {len(sources)} inputs cannot all go to {where}; give a folder"
        )
    if kind == "stdout":
        return Plan(None, tuple(Job(s, None) for s in sources), (), tuple(missing), files)
    if kind == "file":
        out_dir = out.parent
        jobs = [Job(source, PurePosixPath(out.name)) for source in sources]
        if any(same_file(out, f) for f in files):
            raise PlanError(f"-o {output} is the input itself; an input is never written over")
    else:
        out_dir = out
        if from_stdin:
            names = [PurePosixPath(f"stdin{spec.extension}")]
        else:
            names = output_names(found, out, options.fmt)
        jobs = [Job(source, name) for source, name in zip(sources, names, strict=True)]
    _check_out_dir(out_dir, output)
    done = [j for j in jobs if skip_existing and _complete(j, out_dir, options)]
    todo = [j for j in jobs if j not in done]
    return Plan(out_dir, tuple(todo), tuple(done), tuple(missing), files)


def _check_out_dir(out_dir: Path, output: str) -> None:
    """``PlanError`` naming ``-o`` when ``out_dir`` cannot be a writable folder. Nothing is
    created here: a run that fails before its first photo (a model that does not load) leaves
    no empty folder behind; the jobs create it when they write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PlanError(f"-o {output}: {out_dir} exists and is not a folder")
    existing = out_dir
    while not existing.exists():  # the nearest folder that exists decides
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise PlanError(f"-o {output}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise PlanError(f"-o {output}: cannot create the folder {out_dir} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "the folder" if existing == out_dir else "its parent"
        raise PlanError(f"-o {output}: {where} {existing} is not writable")


def _complete(job: Job, out_dir: Path, options: OutputOptions) -> bool:
    """True when every file of ``job`` exists (files are written atomically, the output last)."""
    return job.output is not None and all((out_dir / p).is_file() for p in job.outputs(options))


def discover_inputs(
    args: Sequence[str], out_dir: Path | None = None, exclude_out: bool = True
) -> tuple[list[Input], list[str]]:
    """Expand INPUT arguments into (``Input``s sorted by path, one error line per argument
    that named nothing).

    A file is taken whatever its extension (the loader then says if it is not an image). A
    folder is searched recursively for image extensions (``IMAGE_EXTENSIONS``, any case),
    skipping hidden files and folders (``.name``: macOS ``._`` forks, our own temp files). A
    glob (``*``, ``?``, ``[…]``; ``**`` recursive) keeps the image files it matches and searches
    the folders it matches. With ``out_dir`` and ``exclude_out``, nothing below ``out_dir`` is
    found in a folder or by a glob, and ``PlanError`` is raised when ``out_dir`` is itself a
    folder argument or a glob's base. Duplicates (same resolved path) are listed once, with the
    first spelling seen.
    """
    skip = out_dir.resolve() if out_dir is not None and exclude_out else None
    found: dict[Path, Input] = {}
    errors: list[str] = []
    for arg in args:
        path = Path(arg)
        folder = path if path.is_dir() else _glob_base(path) if glob.has_magic(arg) else None
        if skip is not None and folder is not None and folder.resolve() == skip:
            raise PlanError(
                f"-o {out_dir} is the input folder of {arg}: its outputs would be read as "
                "inputs by the next run; give another folder"
            )
        matches = _expand(arg, skip)
        if not matches:
            what = "no image files in this folder" if path.is_dir() else "no such file or no match"
            errors.append(f"{arg}: {what}")
        for match in matches:
            found.setdefault(match.path.resolve(), match)
    return sorted(found.values(), key=lambda item: str(item.path)), errors


def _expand(arg: str, skip: Path | None) -> list[Input]:
    path = Path(arg)
    if path.is_file():
        return [Input(path, PurePosixPath(path.name))]
    if path.is_dir():
        return _images_under(path, path, skip)
    if not glob.has_magic(arg):
        return []
    base = _glob_base(path)
    matches: list[Input] = []
    for name in sorted(glob.glob(arg, recursive=True)):
        match = Path(name)
        if _below(match, skip):
            continue
        if match.is_dir():
            matches.extend(_images_under(match, base, skip))
        elif match.is_file() and match.suffix.lower() in IMAGE_EXTENSIONS:
            matches.append(Input(match, PurePosixPath(match.relative_to(base).as_posix())))
    return matches


def _glob_base(pattern: Path) -> Path:
    """The folder a glob starts from: its parts before the first one with a wildcard."""
    parts = []
    for part in pattern.parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _below(path: Path, root: Path | None) -> bool:
    return root is not None and path.resolve().is_relative_to(root)


def _images_under(folder: Path, base: Path, skip: Path | None) -> list[Input]:
    """The image files below ``folder`` (hidden ones, and ``skip``, left out), with their path
    relative to ``base``. Symlinked folders are not followed (no loops)."""
    found = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _below(here / d, skip)]
        for name in names:
            p = here / name
            if not name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                found.append(Input(p, PurePosixPath(p.relative_to(base).as_posix())))
    return sorted(found, key=lambda item: str(item.path))


def output_names(found: Sequence[Input], out_dir: Path, fmt: str) -> list[PurePosixPath]:
    """Each input's output relative to ``out_dir`` (see the module docstring): its ``rel`` with
    the format's extension, ``-cutout`` where that would be an input, ``-2``, ``-3`` … on
    clashes. Deterministic for a given (sorted) list."""
    extension = get_format(fmt).extension
    inputs = {item.path.resolve() for item in found}
    names: list[PurePosixPath] = []
    used: set[PurePosixPath] = set()
    for item in found:
        rel = item.rel.with_suffix(extension)
        stem = rel.stem
        if (out_dir / rel).resolve() in inputs:
            stem = f"{stem}-cutout"
        n = 1
        while (name := rel.with_name(f"{stem}{'' if n == 1 else f'-{n}'}{extension}")) in used:
            n += 1
        used.add(name)
        names.append(name)
    return names
