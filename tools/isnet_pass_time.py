"""Time of one ISNet pass as layercut runs it, per file: the map's model loaded as
``IsnetSaliency`` loads it (float16 widened, only the map kept) on a given number of threads,
one warm-up pass, then the median wall and CPU time of ``--runs`` passes on a fixed input.

    python tools/isnet_pass_time.py ../shared/weights/isnet_medium.onnx \\
        ~/.cache/layercut/int8/isnet_medium.*.int8.onnx --threads 1 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.stages.saliency import IsnetSaliency  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="ISNet .onnx files")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    image = np.random.default_rng(0).integers(0, 256, (480, 854, 3), dtype=np.uint8)
    for path in args.models:
        model = IsnetSaliency(path, threads=args.threads)
        model.predict(image)  # warm-up: the first pass allocates the arena
        walls, cpus = [], []
        for _ in range(args.runs):
            wall, cpu = time.perf_counter(), time.process_time()
            model.predict(image)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        print(
            f"{path.name}: median {statistics.median(walls):.3f} s wall, "
            f"{statistics.median(cpus):.3f} s CPU per pass ({args.threads} thread(s), "
            f"{args.runs} runs: {', '.join(f'{w:.3f}' for w in walls)})"
        )


if __name__ == "__main__":
    main()
