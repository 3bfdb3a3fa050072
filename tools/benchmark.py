"""Per-stage median time and peak memory of the pipeline for one image size and preset.

    python tools/benchmark.py --preset cpu --mp 1 --runs 5
    python tools/benchmark.py --preset cpu --mp 1 4 --runs 5 --out reports/bench.json

Random weights of the real architectures are used unless ``--real`` is given (then the weights
the preset names must resolve through the weights store): the cost of a forward pass does not
depend on weight values, but a random detector finds nothing at ordinary thresholds, so the
benchmark sets ``detect.conf`` low and ``detect.max_det`` to ``--instances`` to drive the later
stages with a realistic number of instances. The photo is a real one (bus.jpg shipped with
Ultralytics, or ``--image``) resized to the requested megapixels. The salient map has no random
twin: without ``--real`` it is ``../shared/weights/isnet_medium.onnx``, or off (said on stderr)
when that file is absent.

Peak memory is the process's resident set size sampled every 2 ms while a stage runs (MB above
the RSS at the stage's start, and the absolute peak).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.api import Remover  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.outputs import encode  # noqa: E402

MB = 1024 * 1024
SHARED_ISNET = Path(__file__).resolve().parent.parent.parent / "shared/weights/isnet_medium.onnx"


class Meter:
    """Wall time and peak RSS of a ``with`` block (RSS sampled every 2 ms in a thread)."""

    def __init__(self):
        self.process = psutil.Process()
        self.seconds = 0.0
        self.peak_rss_mb = 0.0
        self.extra_mb = 0.0

    def __enter__(self):
        self._stop = threading.Event()
        self._base = self.process.memory_info().rss
        self._peak = self._base

        def sample():
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, self.process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self.process.memory_info().rss)
        self.peak_rss_mb = self._peak / MB
        self.extra_mb = (self._peak - self._base) / MB


def default_photo() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


def photo_at(path: Path, megapixels: float) -> np.ndarray:
    """The photo resized (aspect kept) to about ``megapixels`` million pixels, H×W×3 uint8."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = (megapixels * 1e6 / (img.width * img.height)) ** 0.5
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return np.asarray(img.resize(size, Image.Resampling.BICUBIC))


def random_weight_overrides(preset: str, folder: Path, instances: int) -> list[str]:
    """Build random-weight checkpoints for what the preset uses; overrides pointing at them."""
    from pipeline.testing import build_random

    config = load_config(preset, device="cpu")
    models = ["yolo11n-seg"]
    if config.segment.model != "none":
        models.append(config.segment.model)
    paths = {name: build_random(name, folder) for name in models}
    overrides = [
        f"detect.weights={paths['yolo11n-seg']}",
        "detect.conf=0.0001",
        f"detect.max_det={instances}",
        "detect.min_area_frac=0",
    ]
    if config.segment.model != "none":
        overrides.append(f"segment.weights={paths[config.segment.model]}")
    if config.saliency.model != "none":
        overrides.append(map_override())
    return overrides


def map_override() -> str:
    """The salient map's setting for a run without the weights store: ISNet has no random
    twin here, so the real file of ``../shared/weights`` (its cost is what matters), else the
    map off, said on stderr so that a table without it is not taken for one with it."""
    isnet = SHARED_ISNET
    if isnet.is_file():
        return f"saliency.weights={isnet}"
    print(f"benchmark: {isnet} absent: the salient map is off", file=sys.stderr)
    return "saliency.model=none"


def bench_once(remover: Remover, image: np.ndarray, fmt: str) -> dict[str, Meter]:
    """Run the pipeline with a Meter around each of its stages (``Remover.run``'s
    ``around_stage`` hook), then composite and encode; returns stage name → Meter."""
    cfg = remover.config
    meters: dict[str, Meter] = {}

    def stage(name):
        meters[name] = Meter()
        return meters[name]

    layers = remover.run(image, around_stage=stage)
    with stage("composite"):
        rgba = layers.composite()
    with stage("encode"):
        encode(
            rgba,
            fmt,
            png_compress_level=cfg.output.png_compress_level,
            webp_quality=cfg.output.webp_quality,
        )
    meters["_kept"] = len(layers.kept_layers())  # type: ignore[assignment]
    meters["_instances"] = len(layers)  # type: ignore[assignment]
    return meters


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = list(args.set)
        if not args.real:
            overrides = random_weight_overrides(args.preset, Path(tmp), args.instances) + overrides
        config = load_config(args.preset, overrides, device=args.device)
        remover = Remover(config)
        remover.warm_up()
        photo = Path(args.image) if args.image else default_photo()
        for megapixels in args.mp:
            image = photo_at(photo, megapixels)
            bench_once(remover, image, config.output.format)  # warm-up: lazy inits, caches
            runs = [bench_once(remover, image, config.output.format) for _ in range(args.runs)]
            stages = [k for k in runs[0] if not k.startswith("_")]
            totals = [sum(r[s].seconds for s in stages) for r in runs]
            row = {
                "preset": args.preset,
                "megapixels": round(image.shape[0] * image.shape[1] / 1e6, 2),
                "size_wh": [image.shape[1], image.shape[0]],
                "runs": args.runs,
                "instances": runs[0]["_instances"],
                "kept": runs[0]["_kept"],
                "torch_threads": _torch_threads(),
                "total_median_s": statistics.median(totals),
                "stages": {
                    s: {
                        "median_s": statistics.median(r[s].seconds for r in runs),
                        "peak_extra_mb": max(r[s].extra_mb for r in runs),
                        "peak_rss_mb": max(r[s].peak_rss_mb for r in runs),
                    }
                    for s in stages
                },
            }
            rows.append(row)
            print_row(row)
    return rows


def _torch_threads() -> int | None:
    """torch's CPU threads, or None when nothing imported torch (ONNX models on the CPU)."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.get_num_threads()


def print_row(row: dict) -> None:
    w, h = row["size_wh"]
    print(
        f"\npreset {row['preset']}  {w}×{h} ({row['megapixels']} MP)  runs {row['runs']}  "
        f"instances {row['instances']} (kept {row['kept']})  torch threads {row['torch_threads']}"
    )
    print("| stage | median s | share | peak extra MB | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    total = row["total_median_s"]
    for name, s in row["stages"].items():
        share = s["median_s"] / total if total else 0.0
        print(
            f"| {name} | {s['median_s']:.3f} | {share:.0%} | {s['peak_extra_mb']:.0f} "
            f"| {s['peak_rss_mb']:.0f} |"
        )
    print(f"| **total** | **{total:.3f}** | | | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="preset name or TOML path")
    parser.add_argument("--mp", type=float, nargs="+", default=[1.0], help="megapixels")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instances", type=int, default=10, help="max_det for random weights")
    parser.add_argument("--image", help="photo to resize (default: Ultralytics' bus.jpg)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real", action="store_true", help="use the preset's real weights")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="also save the rows as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("LAYERCUT_OFFLINE", "1")
    rows = run(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1), encoding="utf-8")
        print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
