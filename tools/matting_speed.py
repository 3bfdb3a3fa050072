"""Median time of the refine stage on a synthetic photo with one subject.

    python tools/matting_speed.py                       # 12 MP, matting and none, 5 runs
    python tools/matting_speed.py --mp 12 --runs 3 --methods matting closed_form rembg

The photo is ``--mp`` megapixels at 4:3 with one elliptical subject covering about a quarter of
the frame (a yellow object with a soft 6 px edge over a blue, lightly textured background);
the mask is the subject's alpha thresholded at 0.5. One untimed warm-up run per method pays
numba's compilation (pymatting), so the table is the steady-state cost per instance.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import RefineConfig  # noqa: E402
from pipeline.stages.refine import METHODS, MattingRefiner, build_refiner  # noqa: E402
from pipeline.types import Instance  # noqa: E402


def synthetic_photo(megapixels: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image H×W×3 uint8, alpha H×W float32)`` at 4:3 with one elliptical subject."""
    h = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    w = int(round(h * 4 / 3))
    yy, xx = np.ogrid[:h, :w]
    ry, rx = 0.37 * h, 0.2 * w
    radius = np.sqrt(((yy - h / 2) / ry) ** 2 + ((xx - w / 2) / rx) ** 2, dtype=np.float32)
    edge_px = 6.0
    alpha = np.clip((1.0 - radius) * min(rx, ry) / edge_px + 0.5, 0, 1).astype(np.float32)
    rng = np.random.default_rng(seed)
    background = np.array([20, 60, 160], np.float32) + rng.normal(0, 6, (h, w, 3))
    subject = np.array([230, 200, 40], np.float32)
    a = alpha[..., None]
    image = np.clip(a * subject + (1 - a) * background, 0, 255).astype(np.uint8)
    return image, alpha


def time_method(refiner, image, instance, runs: int) -> list[float]:
    """Seconds per ``refiner.refine`` call, ``runs`` times after one warm-up call."""
    refiner.refine(image, instance)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        refiner.refine(image, instance)
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp", type=float, default=12.0, help="photo size in megapixels")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["matting", "none"], choices=METHODS)
    parser.add_argument("--max-solve-px", type=int, default=RefineConfig().max_solve_px)
    args = parser.parse_args(argv)

    image, alpha = synthetic_photo(args.mp)
    mask = alpha >= 0.5
    instance = Instance(0, [0, 0, image.shape[1], image.shape[0]], "object", -1, 1.0, mask)
    print(
        f"photo {image.shape[1]}×{image.shape[0]} ({image.shape[0] * image.shape[1] / 1e6:.1f}"
        f" MP), subject {mask.mean():.0%} of the frame, {args.runs} runs after a warm-up"
    )
    print(
        f"{'method':<22} {'median s':>9} {'min s':>7} {'max s':>7} {'solve scale':>12} "
        f"{'SAD/1000':>9}"
    )
    for method in args.methods:
        config = RefineConfig(method=method, max_solve_px=args.max_solve_px)
        variants = [(method, build_refiner(config))]
        if method == "matting":
            variants.append(("matting bilinear", MattingRefiner(config, upsample="bilinear")))
        for name, refiner in variants:
            seconds = time_method(refiner, image, instance, args.runs)
            matte = refiner.refine(image, instance)
            error = float(np.abs(matte.full_alpha(alpha.shape) - alpha).sum()) / 1000
            scale = getattr(refiner, "last_scale", 1.0)
            print(
                f"{name:<22} {statistics.median(seconds):>9.2f} {min(seconds):>7.2f} "
                f"{max(seconds):>7.2f} {scale:>12.2f} {error:>9.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
