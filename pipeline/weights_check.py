"""Checking a weights file found on disk against what is known about it (``pipeline.weights``).

A manifest file found in ``$LAYERCUT_WEIGHTS`` or the cache is checked when it is first used in a
process: its size against the manifest's ``bytes``, then its digests against the published hash
(sha256, md5 or sha256 prefix) or, where nothing is published, against the sha256 recorded when
it was first used (``known_hashes.json``, trust on first use: recorded here when absent).

Hashing a 2.5 GB SAM file takes seconds, so a verdict is remembered: in the process, and in
``<cache>/verified.json`` keyed by the file's absolute path, size and modification time (ns),
together with what it was checked against. A file that changes (size or mtime), or a manifest
that changes its hash, is hashed again. The verdict file is only a cache: unreadable, it is
ignored; unwritable, the run goes on. Whoever can write the cache folder can also replace the
files and the first-use record in it, so it protects against corruption and against files
swapped in ``$LAYERCUT_WEIGHTS``, not against the owner of the cache.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from pipeline import download as dl

VERDICTS_FILE = "verified.json"
_LOCK = threading.Lock()
_SEEN: dict[tuple[str, int, int, str], bool] = {}  # (path, bytes, mtime_ns, expected) → ok


class ChecksumError(ValueError):
    """The file does not match its published or recorded hash; ``str()`` is one line."""


def expected_of(spec, recorded: str | None) -> str | None:
    """What ``spec``'s file is checked against: ``"sha256:…"``, ``"md5:…"``,
    ``"sha256-prefix:…"``, ``"recorded-sha256:…"`` (first use), or None (nothing known yet)."""
    if spec.sha256:
        return f"sha256:{spec.sha256}"
    if spec.md5:
        return f"md5:{spec.md5}"
    if spec.sha256_prefix:
        return f"sha256-prefix:{spec.sha256_prefix}"
    if recorded:
        return f"recorded-sha256:{recorded}"
    return None


def mismatch(expected: str, got: dl.Digests) -> str | None:
    """``"<kind> <expected>, got <actual>"`` when ``got`` fails ``expected``, else None."""
    kind, _, value = expected.partition(":")
    actual = {
        "sha256": got.sha256,
        "md5": got.md5,
        "sha256-prefix": got.sha256[: len(value)],
        "recorded-sha256": got.sha256,
    }[kind]
    if actual == value:
        return None
    what = "sha256 recorded on first use" if kind == "recorded-sha256" else kind
    return f"expected {what} {value}, got {actual}"


def hash_file(path: Path) -> dl.Digests:
    """Size, sha256 and md5 of a file, read once in 1 MiB chunks."""
    import hashlib

    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    n_bytes = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(dl.CHUNK_BYTES):
            sha256.update(chunk)
            md5.update(chunk)
            n_bytes += len(chunk)
    return dl.Digests(n_bytes=n_bytes, sha256=sha256.hexdigest(), md5=md5.hexdigest())


def _key(path: Path, expected: str) -> tuple[str, int, int, str]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)


def _load_verdicts(folder: Path) -> dict:
    try:
        data = json.loads((folder / VERDICTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached(folder: Path, key: tuple[str, int, int, str]) -> bool:
    entry = _load_verdicts(folder).get(key[0])
    return isinstance(entry, dict) and [
        entry.get("bytes"),
        entry.get("mtime_ns"),
        entry.get("expected"),
    ] == list(key[1:])


def remember(folder: Path, path: Path, expected: str) -> None:
    """Record that ``path`` (as it is now) matched ``expected``, in the process and in
    ``folder/verified.json`` (atomically; silently skipped when the folder is not writable)."""
    key = _key(path, expected)
    with _LOCK:
        _SEEN[key] = True
        verdicts = _load_verdicts(folder)
        verdicts[key[0]] = {"bytes": key[1], "mtime_ns": key[2], "expected": expected}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".verified.", suffix=".tmp", dir=folder)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(verdicts, out, indent=1, sort_keys=True)
            os.replace(tmp, folder / VERDICTS_FILE)
        except OSError:
            Path(tmp).unlink(missing_ok=True)


def verify(spec, path: Path, cache_folder: Path, recorded: str | None, fix: str) -> Path:
    """``path`` if it matches ``spec`` (see the module docstring), else ``ChecksumError``.

    ``recorded``: the first-use sha256 of ``spec.filename`` or None; when nothing is published
    or recorded, the file's sha256 is recorded now (``download.record_known_hash``). ``fix`` is
    appended to the error: what the user can do about it.
    """
    size = path.stat().st_size
    if spec.bytes is not None and size != spec.bytes:
        raise ChecksumError(
            f"{path}: checksum check failed for {spec.name}: size mismatch, {size} bytes, "
            f"expected {spec.bytes}: the file is truncated, corrupt or another version; {fix}"
        )
    expected = expected_of(spec, recorded)
    if expected is not None:
        key = _key(path, expected)
        if _SEEN.get(key) or _cached(cache_folder, key):
            _SEEN[key] = True
            return path
    got = hash_file(path)
    if expected is None:  # nothing published, nothing recorded: this first use is the record
        try:
            dl.record_known_hash(cache_folder, spec.filename, got.sha256)
        except OSError:  # a read-only cache: nothing to compare with yet, record next time
            return path
        expected = f"recorded-sha256:{got.sha256}"
    problem = mismatch(expected, got)
    if problem is not None:
        raise ChecksumError(
            f"{path}: checksum mismatch for {spec.name}: {problem}: the file is corrupt or "
            f"another version; {fix}"
        )
    remember(cache_folder, path, expected)
    return path
