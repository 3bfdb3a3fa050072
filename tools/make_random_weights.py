"""Write random-weight checkpoints of the real architectures plus a weights manifest.

Usage::

    python tools/make_random_weights.py OUT_DIR [--models yolo11n-seg mobile_sam sam_vit_b]
    LAYERCUT_MANIFEST=OUT_DIR/manifest.json layercut ...   # resolve weights from them

For tests and timing only: random weights give meaningless masks. The manifest has the format
of ``pipeline/models/weights.json`` with ``file://`` URLs, ``licence: test``, ``source: random
weights``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from pipeline.testing import DEFAULT_MODELS, RANDOM_MODELS, write_random_weights
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`: tools/ is no package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.testing import DEFAULT_MODELS, RANDOM_MODELS, write_random_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the checkpoints and manifest.json")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=RANDOM_MODELS,
        default=list(DEFAULT_MODELS),
        help=f"which checkpoints to build (default: {' '.join(DEFAULT_MODELS)})",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = write_random_weights(args.out_dir, args.models)
    seconds = time.perf_counter() - start
    print(f"wrote {len(args.models)} random-weight checkpoints and {manifest} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
