"""Evaluation and regression reports (``layercut eval``).

Modules (each small, importable on its own):
- ``dataset``: manifest / folder reading and GT decoding (the manifest format is documented
  there);
- ``proposals``: ground-truth and jittered ground-truth instances;
- ``metrics_select``: IoU, boundary F, precision@1, SA-SOR;
- ``metrics_matting``: SAD, MSE, gradient and connectivity errors;
- ``rules``: baseline selection rules (a registry) and proposal oracles;
- ``aggregate``: metric directions and per-subclass aggregation;
- ``run``: the evaluation loop writing ``report.json`` / ``report.html``;
- ``report_html``, ``compare_html``, ``html_common``, ``thumbs``: the self-contained pages;
- ``compare``: two runs → deltas, worsened items, exit status;
- ``cli``: ``main(argv) -> int`` behind ``layercut eval``.
"""

from __future__ import annotations

__all__ = ["compare_runs", "evaluate", "main"]


def __getattr__(name: str):
    # lazy, so ``import pipeline.eval.metrics_select`` does not pull in the whole package
    if name == "evaluate":
        from pipeline.eval.run import evaluate

        return evaluate
    if name == "compare_runs":
        from pipeline.eval.compare import compare_runs

        return compare_runs
    if name == "main":
        from pipeline.eval.cli import main

        return main
    raise AttributeError(f"module 'pipeline.eval' has no attribute {name!r}")
