"""Weights store: manifest, lookup order, verified atomic download, TOFU, and the CLI.

Offline: every download is a file:// URL into a temporary cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from pipeline import weights
from pipeline.weights import (
    MANIFEST_PATH,
    WeightsError,
    cache_dir,
    fetch,
    load_manifest,
    resolve,
    weight_status,
)
from pipeline.weights_cli import main as cli_weights

SHARED = Path(os.environ.get("LAYERCUT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
PAYLOAD = os.urandom(1_500_000)  # > 1 MiB so the download loop runs more than one chunk


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Isolated cache and weights folder; no inherited LAYERCUT_* settings."""
    for var in ("LAYERCUT_WEIGHTS", "LAYERCUT_OFFLINE", "LAYERCUT_MANIFEST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def make_source(folder: Path, name: str = "upstream.pt", data: bytes = PAYLOAD) -> Path:
    """The 'server' side: a file reachable through a file:// URL."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def write_manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"version": 1, "weights": entries}), encoding="utf-8")
    return path


def entry(source: Path, name: str = "tiny", **overrides) -> dict:
    """A manifest entry for ``source`` with its real sha256 and size unless overridden."""
    data = source.read_bytes()
    base = {
        "name": name,
        "filename": f"{name}.pt",
        "url": source.as_uri(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "licence": "test",
        "stage": "detect",
        "source": "test fixture",
    }
    base.update(overrides)
    return base


def manifest_for(tmp_path: Path, *entries: dict) -> dict:
    return load_manifest(write_manifest(tmp_path / "manifest.json", list(entries)))


def test_explicit_path_is_used_as_given(env):
    local = make_source(env / "mine", "whatever.onnx")
    assert resolve(str(local), manifest={}) == local
    with pytest.raises(WeightsError, match=r"weights file not found: .*nope\.pth$"):
        resolve(str(env / "nope.pth"), manifest={})


def test_filename_of_a_manifest_entry_is_a_path_and_the_error_names_the_entry(env):
    manifest = manifest_for(env, entry(make_source(env / "srv")))
    with pytest.raises(WeightsError, match=r"not found: tiny\.pt \(the manifest name 'tiny'"):
        resolve("tiny.pt", manifest=manifest)


def test_name_found_in_layercut_weights_before_cache_without_download(env, monkeypatch):
    source = make_source(env / "srv")
    manifest = manifest_for(env, entry(source, url="file:///nonexistent/never-read.pt"))
    folder = env / "weights"
    folder.mkdir()
    (folder / "tiny.pt").write_bytes(PAYLOAD)
    cache_dir().mkdir(parents=True)
    (cache_dir() / "tiny.pt").write_bytes(PAYLOAD)
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(folder))
    assert resolve("tiny", manifest=manifest) == folder / "tiny.pt"


def test_found_file_with_wrong_size_is_rejected(env, monkeypatch):
    manifest = manifest_for(env, entry(make_source(env / "srv")))
    folder = env / "weights"
    folder.mkdir()
    (folder / "tiny.pt").write_bytes(PAYLOAD[:1000])  # truncated copy
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(folder))
    with pytest.raises(
        WeightsError, match=r"size mismatch, 1000 bytes, expected 1500000.*fetch tiny --force"
    ):
        resolve("tiny", manifest=manifest)


def test_download_with_correct_sha256_lands_in_cache_without_part(env):
    manifest = manifest_for(env, entry(make_source(env / "srv")))
    path = resolve("tiny", manifest=manifest, progress=False)
    assert path == env / "xdg" / "layercut" / "tiny.pt"
    assert path.read_bytes() == PAYLOAD
    # no .part, no TOFU record; the verdict of the check made while downloading
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.pt", "verified.json"]


def test_checksum_mismatch_raises_and_leaves_nothing(env):
    bad = entry(make_source(env / "srv"), sha256="0" * 64)
    manifest = manifest_for(env, bad)
    with pytest.raises(WeightsError) as info:
        resolve("tiny", manifest=manifest, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert f"expected sha256 {'0' * 64}, got {hashlib.sha256(PAYLOAD).hexdigest()}" in message
    assert list(cache_dir().iterdir()) == []


@pytest.mark.parametrize(
    "hashes, ok",
    [
        ({"sha256": None, "md5": hashlib.md5(PAYLOAD).hexdigest()}, True),
        ({"sha256": None, "md5": "f" * 32}, False),
        ({"sha256": None, "sha256_prefix": hashlib.sha256(PAYLOAD).hexdigest()[:8]}, True),
        ({"sha256": None, "sha256_prefix": "deadbeef"}, False),
        ({"bytes": len(PAYLOAD) + 1}, False),
    ],
)
def test_md5_prefix_and_size_are_verified(env, hashes, ok):
    manifest = manifest_for(env, entry(make_source(env / "srv"), **hashes))
    if ok:
        assert resolve("tiny", manifest=manifest, progress=False).read_bytes() == PAYLOAD
    else:
        with pytest.raises(WeightsError, match="checksum mismatch for tiny.pt"):
            resolve("tiny", manifest=manifest, progress=False)
        assert list(cache_dir().iterdir()) == []


def test_offline_missing_file_names_file_folders_and_command(env, monkeypatch):
    manifest = manifest_for(env, entry(make_source(env / "srv")))
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(env / "weights"))
    with pytest.raises(WeightsError) as info:
        resolve("tiny", manifest=manifest)
    message = str(info.value)
    assert "\n" not in message
    assert "tiny.pt" in message and "LAYERCUT_OFFLINE=1" in message
    assert str(env / "weights") in message and str(cache_dir()) in message
    assert "layercut weights fetch tiny" in message
    assert not cache_dir().exists()


def test_failed_download_is_one_line_with_the_fetch_command(env):
    manifest = manifest_for(env, entry(make_source(env / "srv"), url=(env / "gone.pt").as_uri()))
    with pytest.raises(WeightsError, match=r"download from file://.*gone\.pt failed: .*fetch tiny"):
        resolve("tiny", manifest=manifest, progress=False)
    assert list(cache_dir().iterdir()) == []


def test_stale_part_is_never_used_and_is_replaced(env, monkeypatch):
    manifest = manifest_for(env, entry(make_source(env / "srv")))
    cache_dir().mkdir(parents=True)
    part = cache_dir() / "tiny.pt.part"
    part.write_bytes(b"half a download" * 10_000)  # larger than nothing, wrong content
    monkeypatch.setenv("LAYERCUT_OFFLINE", "1")
    with pytest.raises(WeightsError, match="not found"):
        resolve("tiny", manifest=manifest)
    monkeypatch.delenv("LAYERCUT_OFFLINE")
    path = resolve("tiny", manifest=manifest, progress=False)
    assert path.read_bytes() == PAYLOAD
    # the download used a part file of its own, never the stale one, and left none behind
    assert part.read_bytes() == b"half a download" * 10_000
    assert sorted(p.name for p in cache_dir().iterdir()) == [
        "tiny.pt",
        "tiny.pt.part",
        "verified.json",
    ]


def test_tofu_records_hash_then_detects_a_changed_upstream_on_force(env):
    source = make_source(env / "srv")
    manifest = manifest_for(env, entry(source, sha256=None, bytes=None))
    assert weight_status(manifest)[0]["hash_status"] == "unknown until first download"
    path = fetch("tiny", manifest=manifest, progress=False)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    known = json.loads((cache_dir() / "known_hashes.json").read_text())
    assert known == {"tiny.pt": digest}
    status = weight_status(manifest)[0]
    assert status["hash_status"] == f"trust on first use: recorded {digest[:16]}"
    assert status["path"] == path
    assert fetch("tiny", force=True, manifest=manifest, progress=False) == path  # same bytes: ok

    source.write_bytes(PAYLOAD[::-1])  # the "upstream" now serves different bytes
    with pytest.raises(WeightsError, match=f"expected sha256 recorded on first use {digest}"):
        fetch("tiny", force=True, manifest=manifest, progress=False)
    assert path.read_bytes() == PAYLOAD  # the verified file stays
    listed = sorted(p.name for p in cache_dir().iterdir())
    assert listed == ["known_hashes.json", "tiny.pt", "verified.json"]


def test_unknown_name_lists_known_names(env):
    manifest = manifest_for(env, entry(make_source(env / "srv")))
    with pytest.raises(WeightsError, match=r"unknown weights name 'nosuch'; known names: tiny"):
        resolve("nosuch", manifest=manifest)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"sha256": "TODO"}, "sha256 must be lowercase hex"),
        ({"md5": "abc"}, "md5 must be lowercase hex"),
        ({"filename": "../escape.pt"}, "plain file name"),
        ({"url": "http://example.com/x.pt"}, "https:// or file://"),
        ({"stage": "nosuch"}, "stage must be one of"),
        ({"colour": "red"}, r"unknown keys \['colour'\]"),
    ],
)
def test_malformed_manifest_entries_are_rejected(env, override, message):
    path = write_manifest(env / "m.json", [entry(make_source(env / "srv"), **override)])
    with pytest.raises(WeightsError, match=message):
        load_manifest(path)


def test_cache_dir_and_manifest_env(env, monkeypatch):
    assert cache_dir() == env / "xdg" / "layercut"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "layercut"
    path = write_manifest(env / "m.json", [entry(make_source(env / "srv"), name="viaenv")])
    monkeypatch.setenv("LAYERCUT_MANIFEST", str(path))
    assert list(load_manifest()) == ["viaenv"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_weights(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_list_shows_every_name_and_marks_cached(env, monkeypatch):
    source = make_source(env / "srv")
    path = write_manifest(env / "m.json", [entry(source, name="aaa"), entry(source, name="bbb")])
    monkeypatch.setenv("LAYERCUT_MANIFEST", str(path))
    assert run_cli(["fetch", "bbb", "--no-progress"]) == (0, f"{cache_dir() / 'bbb.pt'}\n", "")
    code, out, err = run_cli(["list"])
    assert code == 0 and err == ""
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"aaa", "bbb"}
    assert re.search(r"\b1\.5\s+test\s+detect\s+no\s+published sha256$", rows["aaa"])
    assert f"yes: {cache_dir() / 'bbb.pt'}" in rows["bbb"]


def test_cli_failures_are_one_line_with_exit_codes(env, monkeypatch):
    path = write_manifest(env / "m.json", [entry(make_source(env / "srv"))])
    monkeypatch.setenv("LAYERCUT_MANIFEST", str(path))
    code, out, err = run_cli(["fetch", "nosuch"])
    assert (code, out) == (1, "") and err.count("\n") == 1 and "known names: tiny" in err
    for argv in ([], ["frobnicate"], ["fetch"], ["list", "--bogus"]):
        code, out, err = run_cli(argv)
        assert (code, out) == (2, ""), argv
        assert err.count("\n") == 1 and "usage: layercut weights" in err, argv


def test_cli_help_is_help_not_an_error(capsys):
    code, out, err = run_cli(["--help"])
    assert code == 0 and err == ""
    assert "usage: layercut weights" in out and "list" in out and "fetch" in out
    code, out, err = run_cli(["fetch", "--help"])
    assert code == 0 and "--force" in out and "NAME" in out
    from pipeline.cli import main

    assert main(["weights", "--help"]) == 0  # through the layercut command too
    assert "fetch" in capsys.readouterr().out


def test_real_manifest_is_complete_and_has_no_placeholder_hashes():
    raw = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))["weights"]
    specs = load_manifest(MANIFEST_PATH)
    required = {"yolo11n-seg", "yolo11s-seg", "yolov8n-seg", "mobile_sam"}
    required |= {"sam_vit_b", "sam_vit_l", "sam_vit_h", "isnet-general-use"}
    assert required <= set(specs)
    for item in raw:  # the raw JSON, so a missing key cannot hide behind a dataclass default
        assert item["url"].startswith("https://"), item["name"]
        assert item["licence"] and item["stage"] in weights.STAGES and item["source"], item["name"]
        assert item["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", item["sha256"]), item
        assert "md5" not in item or re.fullmatch(r"[0-9a-f]{32}", item["md5"]), item
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):  # upstream names carry the md5 prefix
        suffix = specs[name].filename.rsplit("_", 1)[1].removesuffix(".pth")
        assert specs[name].md5.startswith(suffix), name


@pytest.mark.skipif(
    not (SHARED / "weights" / "yolov8n-seg_int8.onnx").is_file(),
    reason=f"real weights folder absent: {SHARED / 'weights'} (set LAYERCUT_SHARED)",
)
def test_real_weights_file_through_the_store(env, monkeypatch):
    real = SHARED / "weights" / "yolov8n-seg_int8.onnx"
    # sha256 prefix as listed in ../shared/weights/SOURCES.md
    spec = entry(real, name="yolov8n-seg-int8", sha256=None, sha256_prefix="a892891617cbadd3")
    spec["filename"] = real.name
    manifest = manifest_for(env, spec)
    monkeypatch.setenv("LAYERCUT_WEIGHTS", str(real.parent))
    assert resolve("yolov8n-seg-int8", manifest=manifest) == real  # found, nothing copied
    monkeypatch.delenv("LAYERCUT_WEIGHTS")
    copied = fetch("yolov8n-seg-int8", manifest=manifest, progress=False)
    assert copied.parent == cache_dir() and copied.stat().st_size == real.stat().st_size
