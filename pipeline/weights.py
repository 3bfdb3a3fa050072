"""Weights store: manifest, lookup and verified download (the command: ``pipeline.weights_cli``).

Pretrained weights are never committed. ``pipeline/models/weights.json`` lists each file's
official URL, the hash the upstream publishes (sha256, md5 or a sha256 prefix) or ``null``, its
size when known, licence and pipeline stage. ``resolve(name_or_path)`` returns a local file:

1. a string that names an existing file, contains a path separator or ends in a weights suffix
   (.pt .pth .onnx .safetensors) is a local path, used as given;
2. otherwise a manifest name, looked up in ``$LAYERCUT_WEIGHTS`` (a folder), then the cache
   (``$XDG_CACHE_HOME/layercut``, else ``~/.cache/layercut``);
3. otherwise downloaded into the cache (unless ``LAYERCUT_OFFLINE=1``): streamed into a
   temporary ``.<filename>.<random>.part`` (unique: two fetches of one name never share it) with
   a progress bar on stderr, checked, then moved into place with ``os.replace`` so a
   half-written file is never seen under the real name.

A file found in step 2 is checked when it is first used in a process (``pipeline.weights_check``):
its size and its published hash, or the sha256 recorded when it was first used; the verdict is
cached by path, size and mtime in ``<cache>/verified.json``. Where the upstream publishes no hash,
the sha256 of the first download or first use is recorded in ``<cache>/known_hashes.json``
(trust on first use) and later downloads and uses must match it. A path given explicitly (step
1) is the user's own file and is used as given.

Loading is the stage adapters' job: they pass the returned path to ``YOLO(path)`` / the SAM
builders (so no library downloads behind our back) and must call ``torch.load(...,
weights_only=True)`` wherever the library allows it, since a .pt/.pth file is a pickle that can
run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, fields
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pipeline import download as dl
from pipeline import weights_check

# shipped inside the package (pyproject's package-data): a wheel install reads this same file
MANIFEST_PATH = files("pipeline") / "models" / "weights.json"
WEIGHT_SUFFIXES = (".pt", ".pth", ".onnx", ".safetensors")
STAGES = ("detect", "segment", "saliency")
# the config key that takes a local file instead of a manifest name, per stage
STAGE_KEYS = {
    "detect": "detect.weights",
    "segment": "segment.weights",
    "saliency": "saliency.weights",
}
_HEX = re.compile(r"[0-9a-f]+")


class WeightsError(RuntimeError):
    """A weights file is missing, unknown, corrupt or cannot be fetched; str() is one line."""


@dataclass(frozen=True)
class WeightSpec:
    """One manifest entry. Hashes are lowercase hex or None (None = not published upstream)."""

    name: str
    filename: str  # plain file name, no folders: it is joined to the search folders
    url: str  # https:// (file:// in test manifests)
    sha256: str | None
    bytes: int | None  # exact size in bytes, None when unknown
    licence: str
    stage: str  # detect | segment | saliency
    source: str  # where the url / hash / size were published
    md5: str | None = None  # when that is what the upstream publishes (e.g. rembg via pooch)
    sha256_prefix: str | None = None  # torch.hub style "name-<sha256 prefix>.ext" filenames


def _hex_or_none(entry: dict, key: str, lengths: range, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) not in lengths or not _HEX.fullmatch(value):
        raise WeightsError(f"{where}: {key} must be lowercase hex of length {lengths.start}")
    return value


def _parse_entry(entry: Any, where: str) -> WeightSpec:
    if not isinstance(entry, dict):
        raise WeightsError(f"{where}: each entry must be a JSON object")
    known = {f.name for f in fields(WeightSpec)}
    extra = sorted(set(entry) - known)
    missing = sorted(k for k in ("name", "filename", "url", "licence", "stage") if k not in entry)
    if extra or missing:
        raise WeightsError(f"{where}: unknown keys {extra}, missing keys {missing}")
    filename = entry["filename"]
    if not isinstance(filename, str) or Path(filename).name != filename or filename in ("", ".."):
        raise WeightsError(f"{where}: filename must be a plain file name, got {filename!r}")
    if entry["stage"] not in STAGES:
        raise WeightsError(f"{where}: stage must be one of {', '.join(STAGES)}")
    if dl.url_scheme(str(entry["url"])) not in dl.ALLOWED_SCHEMES:
        raise WeightsError(f"{where}: url must start with https:// or file://")
    n_bytes = entry.get("bytes")
    if n_bytes is not None and (not isinstance(n_bytes, int) or n_bytes <= 0):
        raise WeightsError(f"{where}: bytes must be a positive integer or null")
    return WeightSpec(
        name=str(entry["name"]),
        filename=filename,
        url=str(entry["url"]),
        sha256=_hex_or_none(entry, "sha256", range(64, 65), where),
        bytes=n_bytes,
        licence=str(entry["licence"]),
        stage=entry["stage"],
        source=str(entry.get("source", "")),
        md5=_hex_or_none(entry, "md5", range(32, 33), where),
        sha256_prefix=_hex_or_none(entry, "sha256_prefix", range(6, 64), where),
    )


def load_manifest(path: str | Path | Traversable | None = None) -> dict[str, WeightSpec]:
    """Entries by name from ``path``, else ``$LAYERCUT_MANIFEST``, else ``MANIFEST_PATH``
    (``pipeline/models/weights.json`` of the installed package).

    Raises WeightsError naming the file and the entry when it is unreadable or malformed.
    """
    if path is None:
        path = os.environ.get("LAYERCUT_MANIFEST") or MANIFEST_PATH
    path = Path(path) if isinstance(path, str) else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read weights manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != 1 or "weights" not in data:
        raise WeightsError(f"weights manifest {path}: expected {{'version': 1, 'weights': [...]}}")
    specs: dict[str, WeightSpec] = {}
    for i, entry in enumerate(data["weights"]):
        spec = _parse_entry(entry, f"weights manifest {path} entry {i}")
        if spec.name in specs:
            raise WeightsError(f"weights manifest {path}: duplicate name {spec.name!r}")
        specs[spec.name] = spec
    return specs


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/layercut``, else ``~/.cache/layercut`` (not created here)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "layercut"


def derived_path(source: Path, folder: str, suffix: str, version: int = 1) -> Path:
    """``<cache>/<folder>/<stem>.<digest><suffix>``: where a file made from the weights file
    ``source`` is kept. The digest covers the resolved path, size and modification time of
    ``source`` and ``version`` (of the recipe), so a changed source or recipe never reuses an
    old file, and finding it costs no hashing."""
    source = Path(source).resolve()
    stat = source.stat()
    key = f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{version}".encode()
    return cache_dir() / folder / f"{source.stem}.{hashlib.sha256(key).hexdigest()[:16]}{suffix}"


def _search_dirs() -> list[Path]:
    """Folders searched for a manifest name, in order: $LAYERCUT_WEIGHTS, then the cache."""
    dirs = [Path(os.environ["LAYERCUT_WEIGHTS"])] if os.environ.get("LAYERCUT_WEIGHTS") else []
    return [*dirs, cache_dir()]


def _offline() -> bool:
    return os.environ.get("LAYERCUT_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _is_local_path(text: str) -> bool:
    separators = {"/", os.sep, os.altsep or "/"}
    return (
        Path(text).expanduser().is_file()
        or any(sep in text for sep in separators)
        or text.lower().endswith(WEIGHT_SUFFIXES)
    )


def _replace_hint(spec: WeightSpec, path: Path) -> str:
    searched_first = "" if path.parent == cache_dir() else " (the cache is searched after it)"
    return (
        f"delete or replace {path}{searched_first}; `layercut weights fetch {spec.name} --force` "
        f"downloads a verified copy into the cache, or give a file of your own with "
        f"--set {STAGE_KEYS[spec.stage]}=PATH"
    )


def _check_found(spec: WeightSpec, path: Path) -> Path:
    """``path`` if it passes its size and hash check (``weights_check.verify``)."""
    recorded = _known_hashes(cache_dir()).get(spec.filename)
    try:
        return weights_check.verify(spec, path, cache_dir(), recorded, _replace_hint(spec, path))
    except weights_check.ChecksumError as exc:
        raise WeightsError(str(exc)) from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None


def _find(spec: WeightSpec) -> Path | None:
    """First folder holding ``spec.filename`` (never a ``.part``), or None."""
    for folder in _search_dirs():
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    return None


def _missing_message(spec: WeightSpec, reason: str, fetching: bool = False) -> str:
    """One line: what is missing, where it was looked for, why it was not downloaded, and what
    to do. ``fetching``: the message answers ``layercut weights fetch`` itself, so it does not
    send the user back to that command."""
    searched = ", ".join(str(d) for d in _search_dirs())
    get_it = (
        f"download {spec.url} elsewhere"
        if fetching
        else f"run `layercut weights fetch {spec.name}` where there is internet access"
    )
    return (
        f"weights file {spec.filename} ({spec.name}) not found in {searched}; {reason}; "
        f"{get_it} and put the file in $LAYERCUT_WEIGHTS (a folder), or give a local file "
        f"with --set {STAGE_KEYS[spec.stage]}=PATH"
    )


def _lookup(name: str, manifest: dict[str, WeightSpec]) -> WeightSpec:
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "(manifest is empty)"
        raise WeightsError(f"unknown weights name {name!r}; known names: {known}")
    return manifest[name]


def _verify(spec: WeightSpec, got: dl.Digests, recorded: str | None) -> None:
    """Raise WeightsError (expected vs got) unless the download matches everything known."""
    checks = [
        ("size", str(spec.bytes) if spec.bytes else None, str(got.n_bytes)),
        ("sha256", spec.sha256, got.sha256),
        ("md5", spec.md5, got.md5),
        ("sha256 recorded on first use", recorded, got.sha256),
    ]
    if spec.sha256_prefix:
        checks.append(("sha256 prefix", spec.sha256_prefix, got.sha256[: len(spec.sha256_prefix)]))
    for what, expected, actual in checks:
        if expected is not None and expected != actual:
            hint = (
                f" (if the upstream really changed the file, delete its entry from "
                f"{cache_dir() / dl.KNOWN_HASHES_FILE})"
                if what.startswith("sha256 recorded")
                else ""
            )
            raise WeightsError(
                f"checksum mismatch for {spec.filename} from {spec.url}: expected {what} "
                f"{expected}, got {actual}; the download was deleted{hint}"
            )


def _known_hashes(folder: Path) -> dict[str, str]:
    try:
        return dl.load_known_hashes(folder)
    except ValueError as exc:  # a broken record must not silently disable the check
        raise WeightsError(f"{exc}; fix or delete it") from exc


def _download(spec: WeightSpec, progress: bool, fetching: bool = False) -> Path:
    """Download into the cache via a unique ``.part`` file, verify, then os.replace it into
    place. ``fetching``: called by ``layercut weights fetch`` (see ``_missing_message``)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.filename
    recorded = _known_hashes(folder).get(spec.filename)
    # unique per call: two concurrent fetches of one name never write into the same file
    fd, part_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=folder)
    os.close(fd)
    part = Path(part_name)
    try:
        got = dl.stream_to_file(spec.url, part, total_bytes=spec.bytes, progress=progress)
        _verify(spec, got, recorded)
        os.chmod(part, 0o644)  # mkstemp makes 0600; a weights file is an ordinary file
        os.replace(part, target)  # atomic: readers see the old file or the verified new one
    except (OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        detail = " ".join(str(getattr(exc, "reason", exc)).split())  # one line
        reason = f"download from {spec.url} failed: {detail}"
        raise WeightsError(_missing_message(spec, reason, fetching)) from exc
    except BaseException:  # checksum mismatch, Ctrl-C: never leave a .part that looks usable
        part.unlink(missing_ok=True)
        raise
    if not (spec.sha256 or spec.md5 or spec.sha256_prefix) and recorded is None:
        dl.record_known_hash(folder, spec.filename, got.sha256)
        recorded = got.sha256
    # checked just now: its first use in this or a later process need not hash it again
    weights_check.remember(folder, target, weights_check.expected_of(spec, recorded))
    return target


def _name_hint(path: Path, manifest: dict[str, WeightSpec] | None) -> str:
    """Hint for a missing path such as "yolo11n-seg.pt": the manifest name that fetches it."""
    try:
        specs = load_manifest() if manifest is None else manifest
    except WeightsError:  # only a hint: the missing file is the error to report
        return ""
    names = [s.name for s in specs.values() if s.filename == path.name]
    return f" (the manifest name {names[0]!r} would fetch it)" if names else ""


def resolve(
    name_or_path: str,
    *,
    manifest: dict[str, WeightSpec] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Local path of the weights named by ``name_or_path`` (see the module docstring).

    Raises WeightsError: local path missing; unknown name (lists the known ones); file absent
    and not downloadable (offline, ``download=False`` or a failed download: names the file, the
    folders searched and the fetch command); size or checksum mismatch.
    """
    text = str(name_or_path).strip()
    if _is_local_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}{_name_hint(path, manifest)}")
        return path
    spec = _lookup(text, load_manifest() if manifest is None else manifest)
    return _resolve_spec(spec, download, progress)


def _resolve_spec(spec: WeightSpec, download: bool, progress: bool, fetching: bool = False):
    found = _find(spec)
    if found is not None:
        return _check_found(spec, found)
    if _offline():
        reason = "LAYERCUT_OFFLINE=1 forbids downloading"
        raise WeightsError(_missing_message(spec, reason, fetching))
    if not download:
        raise WeightsError(_missing_message(spec, "downloading was not allowed", fetching))
    return _download(spec, progress, fetching)


def fetch(
    name: str,
    *,
    force: bool = False,
    progress: bool = True,
    manifest: dict[str, WeightSpec] | None = None,
) -> Path:
    """Make sure manifest entry ``name`` is available locally; ``force`` downloads it again.

    A forced download is verified before it replaces the cached file, so a bad download leaves
    the previous file untouched. Raises WeightsError as ``resolve`` does.
    """
    spec = _lookup(name, load_manifest() if manifest is None else manifest)
    if not force:
        return _resolve_spec(spec, True, progress, fetching=True)
    if _offline():
        reason = "LAYERCUT_OFFLINE=1 forbids downloading"
        raise WeightsError(_missing_message(spec, reason, fetching=True))
    return _download(spec, progress, fetching=True)


def _hash_status(spec: WeightSpec, recorded: dict[str, str]) -> str:
    if spec.sha256:
        return "published sha256"
    if spec.md5:
        return "published md5"
    if spec.sha256_prefix:
        return "published sha256 prefix"
    if spec.filename in recorded:
        return f"trust on first use: recorded {recorded[spec.filename][:16]}"
    return "unknown until first download"


def weight_status(manifest: dict[str, WeightSpec] | None = None) -> list[dict]:
    """One dict per manifest entry: name, filename, bytes, licence, stage, path, hash_status.

    ``path`` is the file found in $LAYERCUT_WEIGHTS or the cache (a Path) or None.
    """
    specs = load_manifest() if manifest is None else manifest
    recorded = _known_hashes(cache_dir())
    return [
        {
            "name": spec.name,
            "filename": spec.filename,
            "bytes": spec.bytes,
            "licence": spec.licence,
            "stage": spec.stage,
            "path": _find(spec),
            "hash_status": _hash_status(spec, recorded),
        }
        for spec in specs.values()
    ]
