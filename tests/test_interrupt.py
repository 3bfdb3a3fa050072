"""Ctrl-C during matting stops the run (issue 14, item 7).

A subprocess mattes in a loop through the product's ``MattingRefiner`` (pymatting, numba) and
gets a real SIGINT at a different moment each try. numba hands the interrupt back as a
``SystemError`` chained to it in most tries; the refine stage must turn it back into
``KeyboardInterrupt`` every time. Bounded: a few tries of about a second each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    from pipeline.config import RefineConfig
    from pipeline.stages.refine import MattingRefiner
    from pipeline.types import Instance

    h, w = 500, 700
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.dstack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 128)]).astype(np.uint8)
    mask = ((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2 < 1
    image[mask] = (230, 50, 30)
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    instance = Instance(id=0, xyxy=box, label="thing", class_id=0, det_score=1.0, mask=mask)
    refiner = MattingRefiner(RefineConfig(band_px=12))
    refiner.refine(image, instance)  # compiled and warm
    print("matting", flush=True)
    try:
        while True:
            refiner.refine(image, instance)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        print(f"swallowed: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(3)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX signals")
def test_sigint_during_matting_always_stops_with_keyboard_interrupt(tmp_path):
    outcomes = []
    for delay_s in (0.15, 0.4, 0.65, 0.9, 1.2, 1.5):
        child = subprocess.Popen(
            [sys.executable, "-c", HARNESS],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert child.stdout.readline().strip() == "matting"  # blocks until warm
            time.sleep(delay_s)
            child.send_signal(signal.SIGINT)
            rest, _ = child.communicate(timeout=30)
        finally:
            child.kill()
        outcomes.append((delay_s, child.returncode, rest.strip()))
    assert all(code == 130 for _, code, _ in outcomes), outcomes
