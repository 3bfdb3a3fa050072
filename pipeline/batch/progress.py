"""The progress of a batch on the terminal: a bar, lines above it, nothing torn by other output.
Used by the Ray engine's driver; the local loop keeps its own bar (``pipeline.batch.local``)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """A batch's progress bar on ``err`` (for more than one job, unless ``quiet``), with lines
    written above it (``say``). While the bar is shown, anything else written to
    ``sys.stderr`` (a library's warning, Ray's messages about its workers) goes above it too,
    rather than through it; ``close`` puts ``sys.stderr`` back.

    Args:
        total: the number of jobs.
        quiet: no bar (lines are still written).
        err: where the bar and the lines go.
        status: a word or two before the bar until ``status("")`` (e.g. "starting workers").
    """

    def __init__(self, total: int, quiet: bool, err: TextIO, status: str = "") -> None:
        self.err = err
        self.quiet = quiet
        self.progress = None
        self._stderr = None
        if total > 1 and not quiet:
            from tqdm import tqdm

            self.progress = tqdm(total=total, unit="img", file=err, dynamic_ncols=True)
            self.progress.set_description_str(status)
            self._stderr, sys.stderr = sys.stderr, _AboveBar(err)

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress.write(line, file=self.err)
        else:
            print(line, file=self.err)

    def status(self, text: str) -> None:
        if self.progress is not None:
            self.progress.set_description_str(text)

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.update(1)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self._stderr is not None:
            sys.stderr, self._stderr = self._stderr, None


class _AboveBar:
    """A stderr whose lines are written above the progress bar, not through it."""

    def __init__(self, err: TextIO) -> None:
        self.err = err

    def write(self, text: str) -> int:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.err):
            return self.err.write(text)

    def flush(self) -> None:
        self.err.flush()

    def __getattr__(self, name: str):
        return getattr(self.err, name)
