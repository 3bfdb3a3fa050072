"""How large an image this machine can take: the default of ``runtime.max_image_px``.

Peak memory of one ``layercut photo.jpg -o out --layers --keep all`` run grows linearly with the
pixel count. Measured on this project's 2-core machine (``/usr/bin/time -f %M``, 2, 6, 12 and
24 MP upscaled copies of ``bus.jpg``; README, "Security"):

- real detector (yolov8n-seg int8 ONNX), its own detections: 1.24 → 2.64 GB, ≈ 63 bytes/px;
- worst case: a random-weight yolo11n-seg at ``detect.conf=0.0001``, so ``max_det`` = 30
  instances, every one kept, matted and written as a full-size layer: 1.62 → 8.20 GB,
  ≈ 300 bytes/px over ≈ 1.0 GB of models and libraries.

The default limit is what the worst case fits in ``MEMORY_SHARE`` of the memory this process may
use (physical memory, a cgroup limit, ``ulimit -v``/``-d``, whichever is smallest), so that what
the default accepts, it finishes, with room left for the rest of the machine; it is clamped to
[``MIN_DEFAULT_PX``, ``MAX_DEFAULT_PX``] (the upper bound is the decompression-bomb cap).
"""

from __future__ import annotations

import os
from pathlib import Path

BYTES_PER_PX = 300  # worst case measured above (30 kept instances, --layers)
BASE_BYTES = 1_200_000_000  # models, libraries and interpreter, rounded up from ≈ 1.0-1.1 GB
MEMORY_SHARE = 0.6
MIN_DEFAULT_PX = 1_000_000
MAX_DEFAULT_PX = 150_000_000
_CGROUP_FILES = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def memory_limit_bytes() -> int | None:
    """Bytes of memory this process may use: the smallest of physical memory, the cgroup limit
    and the address-space/data rlimits that are set; None when none can be read."""
    limits: list[int] = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in _CGROUP_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            limits.append(int(text))
    try:
        import resource

        for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            soft, _ = resource.getrlimit(which)
            if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
                limits.append(int(soft))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def max_image_px_for(memory_bytes: int | None) -> int:
    """The largest width × height whose worst-case run fits ``MEMORY_SHARE`` of
    ``memory_bytes``, clamped to [``MIN_DEFAULT_PX``, ``MAX_DEFAULT_PX``]; ``MAX_DEFAULT_PX``
    when the memory is unknown."""
    if memory_bytes is None:
        return MAX_DEFAULT_PX
    fits = (MEMORY_SHARE * memory_bytes - BASE_BYTES) / BYTES_PER_PX
    return int(min(max(fits, MIN_DEFAULT_PX), MAX_DEFAULT_PX))


def default_max_image_px() -> int:
    """``max_image_px_for(memory_limit_bytes())``: this machine's default pixel limit."""
    return max_image_px_for(memory_limit_bytes())
