"""(b) One job: decode one input, run a ``Remover`` on it, write its files atomically, and
report a ``JobResult``. The same function serves the local loop and any other engine."""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.batch.plan import STDIN_NAME, Job, OutputOptions
from pipeline.outputs import encode, write_file, write_folder

NOTHING_FOUND = "nothing found (no detection, no salient region): the result is empty"


@dataclass(frozen=True)
class JobResult:
    """``ok``; else ``error``, one line naming the input, and ``detail`` (the traceback).
    ``warning``: ``Layers.fallback`` of a done job (the keep policy would have kept nothing and
    the best candidate was kept instead), ``NOTHING_FOUND`` when there was no candidate at all
    (the output is fully transparent), else ""."""

    job: Job
    ok: bool
    seconds: float
    error: str = ""
    detail: str = ""
    written: tuple[Path, ...] = ()
    warning: str = ""

    def warning_line(self) -> str:
        """The line every engine prints for ``warning`` (never silently: a candidate the
        policy dropped was kept, or nothing was found), "" when there is none."""
        return f"layercut: warning: {self.job.name}: {self.warning}" if self.warning else ""


def run_job(
    remover,
    job: Job,
    out_dir: Path | None,
    options: OutputOptions,
    protect: Sequence[Path] = (),
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> JobResult:
    """Run ``remover`` (a ``pipeline.api.Remover``) on one job and write its files (atomically,
    never over one of ``protect``; the output itself last). Any failure becomes a ``JobResult``
    with one line naming the input; ``KeyboardInterrupt`` is not caught."""
    start = time.perf_counter()
    try:
        loaded = _load(job, options.max_image_px, stdin)
        layers = remover.run(loaded.rgb, input_alpha=loaded.alpha, source=job.name)
        written = write_job(layers, job, out_dir, options, protect, stdout)
    except Exception as exc:  # one bad input never stops a batch
        seconds = time.perf_counter() - start
        return JobResult(job, False, seconds, _one_line(job, exc), traceback.format_exc())
    seconds = time.perf_counter() - start
    # never silently empty: a photo where neither the detector nor the map found anything
    warning = layers.fallback or ("" if len(layers) else NOTHING_FOUND)
    return JobResult(job, True, seconds, written=tuple(written), warning=warning)


def _one_line(job: Job, exc: Exception) -> str:
    from pipeline.imageio import ImageError

    if isinstance(exc, ImageError):
        return str(exc)  # "<file>: <reason>" already
    reason = (str(exc).splitlines() or [""])[0]
    return f"{job.name}: {type(exc).__name__}{': ' + reason if reason else ''}"


def _load(job: Job, max_image_px: int, stdin: BinaryIO | None):
    """The job's ``pipeline.imageio.LoadedImage``; standard input goes through a temp file
    (deleted whatever happens) so it is decoded exactly as a file is."""
    from pipeline.imageio import ImageError, load_image

    if job.source is not None:
        return load_image(job.source, max_image_px)
    data = (stdin or sys.stdin.buffer).read()
    with tempfile.NamedTemporaryFile(prefix="layercut-stdin-", suffix=".img") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return load_image(Path(tmp.name), max_image_px)
        except ImageError as exc:
            raise ImageError(STDIN_NAME, exc.reason.replace(tmp.name, STDIN_NAME)) from None


def write_job(
    layers,
    job: Job,
    out_dir: Path | None,
    options: OutputOptions,
    protect: Sequence[Path] = (),
    stdout: BinaryIO | None = None,
) -> list[Path]:
    """Write one result (a ``pipeline.layers.Layers``): the output (the composite in
    ``options.fmt``, over ``options.background`` when set), and with ``options.layers`` /
    ``options.debug`` the layer folder and the debug view. Returns the paths written."""
    encoder = options.encoder_options()
    data = encode(layers.composite(background=options.background), options.fmt, **encoder)
    if job.output is None:
        out = stdout or sys.stdout.buffer
        out.write(data)
        out.flush()
        return []
    if out_dir is None:
        raise ValueError(f"{job.name}: a job writing {job.output} needs an output folder")
    path = out_dir / job.output
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    written = []
    if options.layers:
        written += write_folder(stem, layers.files(options.fmt, **encoder), protect)
    if options.debug:
        debug = encode(layers.debug_view(), "png", **encoder)  # H×W×3: an opaque RGB PNG
        written.append(write_file(stem.with_name(f"{stem.name}.debug.png"), debug, protect))
    written.append(write_file(path, data, protect))  # last: it marks the job done
    return written
