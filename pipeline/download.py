"""Low-level download and hashing for the weights store (``pipeline.weights`` is the public API).

Nothing here knows about manifests or user-facing errors: a failed transfer raises ``OSError``
(``urllib.error.URLError`` is one), and ``pipeline.weights`` turns that into a one-line
``WeightsError``. Only ``https://`` and ``file://`` URLs are fetched: plain ``http://`` would let
anyone on the path swap a file whose hash is only recorded on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

ALLOWED_SCHEMES = ("https", "file")
CHUNK_BYTES = 1 << 20  # 1 MiB reads: large enough for throughput, small enough for a smooth bar
TIMEOUT_SECONDS = 60.0  # per socket operation, not for the whole transfer
KNOWN_HASHES_FILE = "known_hashes.json"


@dataclass(frozen=True)
class Digests:
    """Size and hex digests (lowercase) of a file's bytes."""

    n_bytes: int
    sha256: str
    md5: str


def url_scheme(url: str) -> str:
    """Lower-case scheme of ``url`` (``"https"``, ``"file"`` …), empty string when there is none."""
    return urllib.parse.urlsplit(url).scheme.lower()


def stream_to_file(url: str, dest: Path, *, total_bytes: int | None, progress: bool) -> Digests:
    """Copy ``url`` into ``dest`` (created or truncated) and return what was written.

    ``total_bytes`` sizes the progress bar when the server sends no Content-Length. The bar goes
    to stderr so stdout stays machine-readable. Raises ``OSError`` on any transfer failure and
    ``ValueError`` for a scheme other than https/file.
    """
    scheme = url_scheme(url)
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url} (use https:// or file://)")
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    n_bytes = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else total_bytes
        # "wb" truncates: a stale .part from an interrupted run is overwritten, never resumed.
        with (
            open(dest, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name.removesuffix(".part"),
                file=sys.stderr,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                sha256.update(chunk)
                md5.update(chunk)
                n_bytes += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())  # the bytes must be on disk before os.replace publishes them
    return Digests(n_bytes=n_bytes, sha256=sha256.hexdigest(), md5=md5.hexdigest())


def load_known_hashes(folder: Path) -> dict[str, str]:
    """Trust-on-first-use record ``{filename: sha256}`` in ``folder``; empty when absent.

    Raises ``ValueError`` naming the file when it exists but is not a JSON object of strings,
    because silently ignoring it would silently disable the check.
    """
    path = folder / KNOWN_HASHES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path} must be a JSON object mapping file names to sha256 strings")
    return data


def record_known_hash(folder: Path, filename: str, sha256: str) -> None:
    """Add or replace ``filename``'s sha256 in the record, atomically (temp file + os.replace)."""
    hashes = load_known_hashes(folder)
    hashes[filename] = sha256
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".known_hashes.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(hashes, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, folder / KNOWN_HASHES_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
