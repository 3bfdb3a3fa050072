"""A batch on the command line: which files the INPUT arguments name, what each output is
called, and which files one input's result is written to.

Naming rule: ``OUT/<stem><ext>`` per input (``<ext>`` of the output format), made unique with
``-2``, ``-3`` … when two inputs share a stem, and ``-cutout`` where the name would be one of
the inputs (an input is never overwritten). ``--layers`` adds the folder ``OUT/<stem>/`` and
``--debug`` the file ``OUT/<stem>.debug.png``.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.imageio import IMAGE_EXTENSIONS
from pipeline.outputs import get_format, save_image


# -- inputs -------------------------------------------------------------------------------------
def discover_inputs(args: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand INPUT arguments into (sorted unique files, one error line per empty argument).

    A file is taken whatever its extension (the loader then says if it is not an image). A
    folder is searched recursively for image extensions (``IMAGE_EXTENSIONS``, any case),
    skipping hidden files (``.name``: macOS ``._`` forks, our own temp files). A glob (``*``,
    ``?``, ``[…]``; ``**`` recursive) keeps the image files it matches and searches the folders it
    matches. Duplicates (same resolved path) are listed once, with the first spelling seen.
    """
    found: dict[Path, Path] = {}
    errors: list[str] = []
    for arg in args:
        matches = _expand(arg)
        if not matches:
            path = Path(arg)
            if path.is_dir():
                errors.append(f"{arg}: no image files in this folder")
            else:
                errors.append(f"{arg}: no such file or no match")
            continue
        for match in matches:
            found.setdefault(match.resolve(), match)
    return sorted(found.values(), key=lambda p: str(p)), errors


def _expand(arg: str) -> list[Path]:
    path = Path(arg)
    if path.is_file():
        return [path]
    if path.is_dir():
        return _images_under(path)
    if not glob.has_magic(arg):
        return []
    matches: list[Path] = []
    for name in sorted(glob.glob(arg, recursive=True)):
        match = Path(name)
        if match.is_dir():
            matches.extend(_images_under(match))
        elif match.is_file() and match.suffix.lower() in IMAGE_EXTENSIONS:
            matches.append(match)
    return matches


def _images_under(folder: Path) -> list[Path]:
    """The image files below ``folder``, recursively, skipping hidden files and hidden folders."""
    found = []
    for p in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in p.relative_to(folder).parts)
        if not hidden and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            found.append(p)
    return sorted(found)


# -- outputs ------------------------------------------------------------------------------------
def output_names(files: Sequence[Path], out_dir: Path, fmt: str) -> dict[Path, str]:
    """Output stem per input (see the module docstring): the file stem, made unique with
    ``-2``, ``-3`` … on clashes, and ``-cutout`` where ``OUT/<stem><ext>`` would be one of the
    inputs. Deterministic for a given (sorted) list of files."""
    extension = get_format(fmt).extension
    inputs = {f.resolve() for f in files}
    names: dict[Path, str] = {}
    used: set[str] = set()
    for file in files:
        stem = file.stem
        if (out_dir / f"{stem}{extension}").resolve() in inputs:
            stem = f"{stem}-cutout"
        n = 1
        while (candidate := stem if n == 1 else f"{stem}-{n}") in used:
            n += 1
        used.add(candidate)
        names[file] = candidate
    return names


def write_outputs(
    layers,
    out_dir: Path,
    stem: str,
    *,
    fmt: str,
    png_compress_level: int,
    webp_quality: int,
    with_layers: bool = False,
    with_debug: bool = False,
    protect: Sequence[Path] = (),
) -> list[Path]:
    """Write one input's result (a ``pipeline.layers.Layers``): ``OUT/<stem><ext>`` (the
    composite), with ``with_layers`` the folder ``OUT/<stem>/`` (``Layers.save``), with
    ``with_debug`` ``OUT/<stem>.debug.png``; never over one of ``protect``. Returns the paths."""
    options = {"png_compress_level": png_compress_level, "webp_quality": webp_quality}
    extension = get_format(fmt).extension
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        save_image(
            out_dir / f"{stem}{extension}", layers.composite(), fmt, **options, protect=protect
        )
    ]
    if with_layers:
        written += layers.save(out_dir / stem, fmt, **options, protect=protect)
    if with_debug:
        debug = layers.debug_view()  # H×W×3, written as opaque RGBA like the other outputs
        rgba = np.dstack([debug, np.full(debug.shape[:2], 255, np.uint8)])
        written.append(
            save_image(out_dir / f"{stem}.debug.png", rgba, "png", **options, protect=protect)
        )
    return written
