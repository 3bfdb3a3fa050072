"""Which inputs one job could overwrite: the short ``protect`` list for ``run_job``.

``pipeline.outputs.write_file`` / ``write_folder`` compare the path they write with every path
of ``protect`` (``same_file``: the resolved paths, then ``os.path.samefile``; a layer folder is
refused when an input lies inside it). With all the inputs of a batch as ``protect`` that costs
O(inputs) per written file — about 30 µs per input on this project's machine, so 30 s per file
for a batch of a million photos. ``ProtectIndex.for_job`` returns only the inputs that those
checks could match, so ``run_job`` decides exactly as it would with every input:

- a path that does not exist yet cannot be an existing input, nor a folder holding one: a job
  whose files do not exist yet (a first run) gets an empty list, and no index is built;
- for a path that exists, the inputs with the same resolved path or the same (device, inode),
  and, for the ``--layers`` folder, the inputs whose resolved path lies below it, found in an
  index built on first need (one ``resolve`` and ``stat`` per input, once per process).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.batch.plan import Job, OutputOptions


class ProtectIndex:
    """The inputs of a plan, indexed by resolved path and by (device, inode) on first need.

    Args:
        inputs: every input file of the plan (``Plan.inputs``), or a callable returning them
            (called once, on first need: a worker fetches the list only when it needs it).
    """

    def __init__(self, inputs: Sequence[Path] | Callable[[], Sequence[Path]]) -> None:
        self._source = inputs
        self._by_path: dict[str, list[Path]] | None = None
        self._by_inode: dict[tuple[int, int], list[Path]] = {}
        self._sorted: list[str] = []  # resolved paths, sorted: the inputs below a folder

    def _index(self) -> dict[str, list[Path]]:
        """Inputs by resolved path (built on the first call, with ``_by_inode``)."""
        if self._by_path is not None:
            return self._by_path
        inputs = self._source() if callable(self._source) else self._source
        self._by_path = {}
        for path in inputs:
            path = Path(path)
            try:
                resolved = str(path.resolve())
            except (OSError, RuntimeError):  # RuntimeError: a symlink loop
                resolved = str(path.absolute())
            self._by_path.setdefault(resolved, []).append(path)
            try:
                st = os.stat(path)
            except OSError:
                continue
            self._by_inode.setdefault((st.st_dev, st.st_ino), []).append(path)
        self._sorted = sorted(self._by_path)
        return self._by_path

    def same_files(self, path: Path) -> list[Path]:
        """The inputs ``same_file(path, input)`` is true for (none when ``path`` is absent)."""
        if not os.path.lexists(path):
            return []
        by_path = self._index()
        found = []
        try:
            found += by_path.get(str(Path(path).resolve()), [])
        except (OSError, RuntimeError):
            pass
        try:
            st = os.stat(path)
            found += self._by_inode.get((st.st_dev, st.st_ino), [])
        except OSError:
            pass
        return found

    def inside(self, folder: Path) -> list[Path]:
        """The inputs whose resolved path lies below ``folder`` (none when it is absent)."""
        if not os.path.lexists(folder):
            return []
        by_path = self._index()
        try:
            root = str(Path(folder).resolve())
        except (OSError, RuntimeError):
            return []
        found = list(by_path.get(root, []))
        prefix = root.rstrip("/") + "/"
        at = bisect.bisect_left(self._sorted, prefix)
        while at < len(self._sorted) and self._sorted[at].startswith(prefix):
            found += by_path[self._sorted[at]]
            at += 1
        return found

    def for_job(self, job: Job, out_dir: Path | None, options: OutputOptions) -> list[Path]:
        """The inputs ``job``'s files could be (``run_job``'s ``protect``), each listed once."""
        if job.output is None or out_dir is None:
            return []  # standard output: no file is written
        found: list[Path] = []
        stem = (out_dir / job.output).with_suffix("")
        for rel in job.outputs(options):
            path = out_dir / rel
            if options.layers and path.parent == stem:
                continue  # a file of the layer folder: written in a new temp folder
            found += self.same_files(path)
        if options.layers:
            found += self.inside(stem)
        return list(dict.fromkeys(found))
