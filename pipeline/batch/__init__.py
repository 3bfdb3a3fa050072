"""A batch, in three parts that another engine (e.g. a cluster one) reuses as they are:

(a) planning, ``plan.plan_batch``: the INPUT arguments and ``-o`` → a ``Plan`` of ``Job``s
    (an input and its output path relative to ``Plan.out_dir``), with ``--skip-existing`` and
    the exclusion of OUT applied. Bad usage raises ``PlanError`` (exit status 2) before any
    model loads; ``-o`` is checked (and its folder created) here.
(b) one job, ``job.run_job``: decode, run a ``Remover``, write the job's files atomically;
    returns a ``JobResult`` (ok or a one-line error naming the input, seconds). It never raises
    for a bad input; Ctrl-C goes through and leaves no temp file
    (``pipeline.outputs.write_file``).
(c) the local loop, ``local.run_local``: progress bar, one line per failure, summary, exit
    status.

Inputs (``discover_inputs``): files, folders (searched recursively for ``IMAGE_EXTENSIONS``,
skipping hidden files and folders) and globs; ``-`` alone reads one image from standard input.

Outputs, ``-o OUT`` a folder: an input found in a folder argument keeps its path below that
folder (``in`` holding ``a/x.jpg`` → ``OUT/a/x.png``); a glob's matches keep their path below
the glob's fixed leading folders (``in/**/*.jpg`` → as for ``in``); a file argument gives
``OUT/<stem><ext>``. Two inputs that would share an output get ``-2``, ``-3`` … (``x.jpg`` and
``x.png`` in one folder); an output that would be an input gets ``-cutout``. ``--layers`` adds
the folder ``<output less ext>/``, ``--debug`` the file ``<output less ext>.debug.png``. OUT
must not be an input folder; when it lies inside one, nothing below OUT is taken as an input.

``-o FILE`` (an extension of the output format, ``.png`` / ``.webp``, and not an existing
folder): the one input is written there; ``-o -``: to standard output.
"""

from pipeline.batch.job import JobResult, run_job, write_job
from pipeline.batch.local import run_local
from pipeline.batch.plan import (
    STDIN_NAME,
    STDIO,
    Input,
    Job,
    OutputOptions,
    Plan,
    PlanError,
    discover_inputs,
    format_for_output,
    output_names,
    plan_batch,
)

__all__ = [
    "STDIN_NAME",
    "STDIO",
    "Input",
    "Job",
    "JobResult",
    "OutputOptions",
    "Plan",
    "PlanError",
    "discover_inputs",
    "format_for_output",
    "output_names",
    "plan_batch",
    "run_job",
    "run_local",
    "write_job",
]
