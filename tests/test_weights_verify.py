"""Weights found on disk are checked (issue 14, item 5) and the store's messages help (issue 13).

A file found in ``$LAYERCUT_WEIGHTS`` or the cache is checked against its published hash, or the
sha256 recorded on its first use, the first time a process uses it; the verdict is cached by
path, size and mtime. Offline, with ``file://`` sources and temporary folders only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import download as dl
from pipeline import weights_check
from pipeline.weights import MANIFEST_PATH, WeightsError, cache_dir, fetch, load_manifest, resolve
from pipeline.weights_cli import main as cli_weights

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = os.urandom(300_000)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    for var in ("LAYERCUT_WEIGHTS", "LAYERCUT_OFFLINE", "LAYERCUT_MANIFEST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    weights_check._SEEN.clear()  # each test is a fresh process as far as verdicts go
    return tmp_path


def manifest(tmp_path: Path, source: Path, **overrides) -> dict:
    data = source.read_bytes()
    item = {
        "name": "tiny",
        "filename": "tiny.pt",
        "url": source.as_uri(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "licence": "test",
        "stage": "saliency",
        "source": "test fixture",
        **overrides,
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "weights": [item]}), encoding="utf-8")
    return load_manifest(path)


def put(folder: Path, data: bytes, name: str = "tiny.pt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def test_corrupt_isnet_in_layercut_weights_is_refused_by_the_cli(checkpoints, tmp_path):
    """The real manifest, the real CLI: a truncated isnet-general-use.onnx in $LAYERCUT_WEIGHTS
    stops the run before any image, in one line naming the file and the check."""
    store = tmp_path / "store"
    bad = put(store, os.urandom(2_000_000), "isnet-general-use.onnx")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo)
    env = {
        **os.environ,
        "LAYERCUT_OFFLINE": "1",
        "LAYERCUT_WEIGHTS": str(store),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    env.pop("LAYERCUT_MANIFEST", None)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", str(photo), "-o", str(tmp_path / "out")]
        + ["--set", f"detect.weights={checkpoints.path('yolo11n-seg')}"]
        + ["--set", "saliency.model=isnet", "--set", "saliency.weights=isnet-general-use"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(bad) in lines[0] and "checksum" in lines[0] and "178648008" in lines[0]
    assert "--set saliency.weights=PATH" in lines[0]
    assert not (tmp_path / "out" / "photo.png").exists()


def test_found_file_with_the_right_size_but_wrong_bytes_is_refused(env, monkeypatch):
    specs = manifest(env, put(env / "srv", PAYLOAD), sha256=None, md5="0" * 32)
    folder = env / "weights"
    bad = put(folder, PAYLOAD)  # right size, md5 published as zeros: a mismatch
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(folder))
    with pytest.raises(WeightsError, match=rf"{bad}: checksum mismatch for tiny: expected md5 0+"):
        resolve("tiny", manifest=specs)


def test_first_use_is_recorded_and_a_tampered_file_is_refused(env, monkeypatch):
    specs = manifest(env, put(env / "srv", PAYLOAD), sha256=None, bytes=None)
    folder = env / "weights"
    found = put(folder, PAYLOAD)
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(folder))
    assert resolve("tiny", manifest=specs) == found
    known = json.loads((cache_dir() / "known_hashes.json").read_text())
    assert known == {"tiny.pt": hashlib.sha256(PAYLOAD).hexdigest()}
    weights_check._SEEN.clear()  # a later process
    tampered = bytearray(PAYLOAD)
    tampered[1000] ^= 1
    found.write_bytes(bytes(tampered))  # same size, new mtime
    with pytest.raises(WeightsError, match="expected sha256 recorded on first use"):
        resolve("tiny", manifest=specs)


def test_verdict_is_cached_by_size_and_mtime(env, monkeypatch):
    specs = manifest(env, put(env / "srv", PAYLOAD))
    folder = env / "weights"
    found = put(folder, PAYLOAD)
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(folder))
    hashed = []
    real_hash = weights_check.hash_file
    monkeypatch.setattr(weights_check, "hash_file", lambda p: hashed.append(p) or real_hash(p))
    assert resolve("tiny", manifest=specs) == found and len(hashed) == 1
    weights_check._SEEN.clear()  # a later process: the verdict comes from verified.json
    assert resolve("tiny", manifest=specs) == found and len(hashed) == 1
    verdicts = json.loads((cache_dir() / "verified.json").read_text())
    assert verdicts[str(found.resolve())]["bytes"] == len(PAYLOAD)
    os.utime(found, ns=(found.stat().st_atime_ns, found.stat().st_mtime_ns + 10**9))
    weights_check._SEEN.clear()
    assert resolve("tiny", manifest=specs) == found and len(hashed) == 2  # changed: hashed again


def test_two_concurrent_fetches_of_one_name_use_their_own_part_files(env, monkeypatch):
    specs = manifest(env, put(env / "srv", PAYLOAD))
    both_started = threading.Barrier(2, timeout=20)
    parts: list[Path] = []
    real_stream = dl.stream_to_file

    def stream(url, dest, **kwargs):
        parts.append(Path(dest))
        both_started.wait()  # both downloads are in flight at once
        return real_stream(url, dest, **kwargs)

    monkeypatch.setattr(dl, "stream_to_file", stream)
    results: list[object] = []

    def run() -> None:
        try:
            results.append(fetch("tiny", force=True, manifest=specs, progress=False))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [cache_dir() / "tiny.pt"] * 2
    assert len(set(parts)) == 2 and all(p.parent == cache_dir() for p in parts)
    assert (cache_dir() / "tiny.pt").read_bytes() == PAYLOAD
    assert not list(cache_dir().glob("*.part"))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_weights(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def test_offline_messages_say_what_to_do_without_going_in_circles(env, monkeypatch):
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")
    code, out, err = run_cli(["fetch", "isnet-general-use"])
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "layercut weights fetch" not in err  # the command that just failed
    assert "$LAYERCUT_WEIGHTS" in err and "--set saliency.weights=PATH" in err
    assert "https://github.com/danielgatis/rembg/releases/download/v0.0.0/" in err
    with pytest.raises(WeightsError) as info:
        resolve("yolo11n-seg")
    message = str(info.value)
    assert "`layercut weights fetch yolo11n-seg`" in message  # from another command: say it
    assert "$LAYERCUT_WEIGHTS" in message and "--set detect.weights=PATH" in message


def test_weights_list_shows_sizes(env):
    code, out, err = run_cli(["list"])
    assert code == 0 and err == ""
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    specs = load_manifest(MANIFEST_PATH)
    assert set(rows) == set(specs)
    assert rows["sam_vit_b"] == "375.0" and rows["isnet-general-use"] == "178.6"
    unknown = sorted(name for name, mb in rows.items() if mb == "unknown")
    assert unknown == sorted(name for name, spec in specs.items() if spec.bytes is None)
    assert len(unknown) <= 2  # only where no size is published (see each entry's source)
