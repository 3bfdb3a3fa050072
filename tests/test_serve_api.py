"""HTTP API, in-process: results, the ZIP and JSON forms, bad input, limits and the queue.

Most tests drive the app with ``pipeline.fakes.FakeRemover``: it returns a real
``pipeline.layers.Layers`` built from hand-made instances whose geometry is known, so the tests
can check pixels. One test runs
the real ``Remover`` with random-weight checkpoints of the real architectures (plumbing only).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import zipfile

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.config import Config
from pipeline.fakes import FakeRemover, fake_masks
from pipeline.serve import main as serve_main
from pipeline.serve.app import create_app
from pipeline.serve.limits import AdmissionGate, ServeLimits
from tests.badfiles import png_header_only
from tests.checkpoints import MAP_OFF


# ---------------------------------------------------------------- helpers
def photo(h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth colour gradient, ``H×W×3 uint8``."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256]).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **options)
    return out.getvalue()


def rgba_of(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image.convert("RGBA"))


def assert_error(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error and body["detail"], body
    return body


@pytest.fixture
def upload_dir(tmp_path):
    path = tmp_path / "uploads"
    path.mkdir()
    return path


@pytest.fixture
def client(upload_dir):
    app = create_app([FakeRemover()], ServeLimits(max_upload_bytes=200_000), str(upload_dir))
    with TestClient(app) as test_client:
        yield test_client
    assert list(upload_dir.iterdir()) == []  # no temp file left behind, whatever happened


# ---------------------------------------------------------------- good input
def test_multipart_upload_returns_the_composite_of_the_kept_layers(client):
    image = photo()
    response = client.post("/v1/remove", files={"file": ("a.png", encoded(image), "image/png")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-layercut-keep"] == "main"
    assert response.headers["x-layercut-layers"] == "4"
    rgba = rgba_of(response.content)
    masks = fake_masks(*image.shape[:2])
    assert rgba.shape == (96, 128, 4)
    kept = masks["person"] | masks["bag"]  # main subject + the object it interacts with
    assert (rgba[..., 3][kept] == 255).all()
    assert (rgba[..., 3][~kept] == 0).all()
    assert np.array_equal(rgba[..., :3][kept], image[kept])


def test_raw_body_keep_all_and_webp(client):
    image = photo()
    response = client.post(
        "/v1/remove?keep=all&format=webp",
        content=encoded(image, "JPEG", quality=95),
        headers={"content-type": "image/jpeg"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    alpha = rgba_of(response.content)[..., 3]
    masks = fake_masks(96, 128)
    assert (alpha[masks["dog"]] == 255).all()  # keep=all adds the dog
    assert (alpha[masks["cup"]] == 0).all()  # the tiny corner cup is never portable


def test_layers_zip_manifest_matches_the_pngs(client):
    image = photo()
    response = client.post("/v1/remove?layers=true", content=encoded(image))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("layers.json"))
    names = set(archive.namelist())
    files = [entry["file"] for entry in manifest["layers"]]
    assert names == {*files, "composite.png", "layers.json"}
    assert [entry["rank"] for entry in manifest["layers"]] == [1, 2, 3, 4]
    assert [entry["label"] for entry in manifest["layers"]] == ["person", "dog", "bag", "cup"]
    masks = fake_masks(96, 128)
    for entry in manifest["layers"]:
        alpha = rgba_of(archive.read(entry["file"]))[..., 3]
        assert np.array_equal(alpha > 0, masks[entry["label"]]), entry["file"]
        assert entry["area_px"] == int(masks[entry["label"]].sum())
    assert [entry["role"] for entry in manifest["layers"]] == [
        "main",
        "dropped",
        "interacting",
        "dropped",
    ]


def test_json_document_recomposes_to_the_server_composite(client):
    """The page's contract: composing the enabled crops reproduces ``format=png``."""
    data = encoded(photo())
    doc = client.post("/v1/remove?format=json", content=data).json()
    composite = rgba_of(client.post("/v1/remove", content=data).content)
    assert set(doc["modes"]) == {"main", "all", "interacting"}
    assert doc["modes"]["all"]["enabled"] == [True, True, True, False]
    # alternatives name layers by rank: person (id 0) #1, dog (id 2) #2, bag (id 1) #3
    assert doc["ambiguous"] is True and doc["alternatives"] == [[1, 3], [2]]
    assert doc["modes"]["main"]["alternatives"] == [[1, 3], [2]]
    hw = (doc["height"], doc["width"])
    enabled = doc["modes"]["main"]["enabled"]
    masks = []
    for entry in doc["layers"]:  # each layer's instance mask, placed
        crop = rgba_of(base64.b64decode(entry["mask_png"]))[..., 0] > 127
        mask = np.zeros(hw, bool)
        y0, x0 = entry["mask_y0"], entry["mask_x0"]
        mask[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        assert mask.any()
        masks.append(mask)
    hidden = np.logical_or.reduce([m for m, on in zip(masks, enabled, strict=True) if not on])
    keep_out = np.ones(hw, np.float32)
    for entry, on, mask in zip(doc["layers"], enabled, masks, strict=True):
        crop = rgba_of(base64.b64decode(entry["png"]))
        assert crop.shape == (entry["crop_height"], entry["crop_width"], 4)
        if on:  # a soft edge stays off hidden layers' masks (the page does the same)
            y0, x0 = entry["y0"], entry["x0"]
            sl = (slice(y0, y0 + crop.shape[0]), slice(x0, x0 + crop.shape[1]))
            allowed = mask[sl] | ~hidden[sl]
            keep_out[sl] *= 1 - np.where(allowed, crop[..., 3] / 255.0, 0.0)
    alpha = np.round((1 - keep_out) * 255).astype(np.uint8)
    assert np.array_equal(alpha, composite[..., 3])


def test_debug_view_is_returned_when_asked(client):
    pytest.importorskip("pipeline.viz", reason="pipeline.viz is not in this checkout yet")
    response = client.post("/v1/remove?debug=true", content=encoded(photo()))
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG" and image.size[0] >= 128


# ---------------------------------------------------------------- bad input
def test_text_file_is_415(client):
    response = client.post(
        "/v1/remove", files={"file": ("notes.txt", b"hello\n" * 50, "text/plain")}
    )
    body = assert_error(response, 415, "unsupported media type")
    assert "not an image" in body["detail"]


def test_truncated_jpeg_is_400_without_leaking_the_temp_path(client):
    data = encoded(photo(), "JPEG", quality=90)
    response = client.post("/v1/remove", content=data[: len(data) // 2])
    body = assert_error(response, 400, "bad image")
    assert "layercut-upload-" not in body["detail"]


def test_oversize_upload_is_413_raw_and_multipart(client):
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8)
    data = encoded(big)  # noise does not compress: ≈ 480 kB > the 200 kB limit
    assert len(data) > 200_000
    assert_error(client.post("/v1/remove", content=data), 413, "upload too large")
    files = {"file": ("big.png", data, "image/png")}
    assert_error(client.post("/v1/remove", files=files), 413, "upload too large")


def test_pixel_bombs_are_413_before_decoding(upload_dir):
    remover = FakeRemover()
    app = create_app([remover], ServeLimits(max_image_px=1_000_000), str(upload_dir))
    with TestClient(app) as client:
        body = assert_error(
            client.post("/v1/remove", content=png_header_only(2000, 1000)), 413, "image too large"
        )
        assert "2000×1000" in body["detail"]
        # beyond Pillow's own bomb limit (2 × 89.5 MP): refused by Pillow's header check
        huge = png_header_only(30_000, 30_000)
        assert_error(client.post("/v1/remove", content=huge), 413, "image too large")
    assert remover.calls == [] and list(upload_dir.iterdir()) == []


def test_missing_file_field_empty_body_and_bad_query(client):
    response = client.post("/v1/remove", files={"other": ("a.png", encoded(photo()), "image/png")})
    assert_error(response, 400, "missing file")
    assert_error(client.post("/v1/remove", content=b""), 400, "empty upload")
    body = assert_error(
        client.post("/v1/remove?keep=everything", content=encoded(photo())),
        422,
        "invalid parameter",
    )
    assert "keep" in body["detail"]
    assert_error(client.get("/v1/nothing"), 404, "not found")


def test_pipeline_failure_is_a_json_500(upload_dir):
    class Broken(FakeRemover):
        def run(self, *args, **kwargs):
            raise RuntimeError("model exploded\nsecond line")

    app = create_app([Broken()], tmp_dir=str(upload_dir))
    with TestClient(app, raise_server_exceptions=False) as client:
        body = assert_error(
            client.post("/v1/remove", content=encoded(photo())), 500, "internal error"
        )
    assert body["detail"] == "RuntimeError: model exploded"


# ---------------------------------------------------------------- queue and timeout
async def _busy_server_scenario(upload_dir, timeout_s: float, hold_s: float = 0.0):
    release = threading.Event()
    remover = FakeRemover(release=release)
    limits = ServeLimits(workers=1, max_queue=0, timeout_s=timeout_s, retry_after_s=7)
    app = create_app([remover], limits, str(upload_dir))
    transport = httpx.ASGITransport(app=app)
    data = encoded(photo())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        first = asyncio.create_task(http.post("/v1/remove", content=data))
        while not remover.started.is_set():  # the worker is now busy with the first request
            await asyncio.sleep(0.01)
        second = await http.post("/v1/remove", content=data)
        health = (await http.get("/healthz")).json()
        await asyncio.sleep(hold_s)  # keep the worker busy past the request's timeout
        release.set()
        first_response = await first
        for _ in range(200):  # the slot is freed when the worker thread ends
            if app.state.serve.gate.in_use == 0:
                break
            await asyncio.sleep(0.01)
        third = await http.post("/v1/remove", content=data)
    return first_response, second, third, health, app.state.serve.gate.in_use


def test_queue_full_answers_503_with_retry_after(upload_dir):
    first, second, third, health, in_use = asyncio.run(_busy_server_scenario(upload_dir, 30.0))
    assert first.status_code == 200
    assert_error(second, 503, "server busy")
    assert second.headers["retry-after"] == "7"
    assert health == {"status": "ok", "admitted": 1, "capacity": 1}
    assert third.status_code == 200 and in_use == 0
    assert list(upload_dir.iterdir()) == []


def test_timeout_is_504_and_the_slot_returns_when_the_worker_ends(upload_dir):
    first, _second, third, _health, in_use = asyncio.run(
        _busy_server_scenario(upload_dir, timeout_s=0.3, hold_s=0.6)
    )
    assert_error(first, 504, "timeout")
    assert third.status_code == 200 and in_use == 0


def test_admission_gate_and_limits_validation():
    gate = AdmissionGate(2)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.in_use == 1 and gate.try_enter()
    with pytest.raises(ValueError, match="workers"):
        ServeLimits(workers=0)
    with pytest.raises(ValueError, match="one remover per worker"):
        create_app([FakeRemover()], ServeLimits(workers=2))


# ---------------------------------------------------------------- the real pipeline
_STAGE_MODULES = ("pipeline.imageio", "pipeline.features", "pipeline.stages.select", "pipeline.viz")


def test_real_remover_with_random_weights(checkpoints, tmp_path, monkeypatch, upload_dir):
    """Plumbing through the real stages (random-weight YOLO11n-seg, no SAM, pymatting): the
    image and the ZIP come back with consistent shapes and files. Never a quality check."""
    for module in _STAGE_MODULES:
        pytest.importorskip(module, reason=f"{module} is not in this checkout yet")
    from pipeline.api import Remover

    monkeypatch.setenv("LAYERCUT_MANIFEST", str(checkpoints.manifest(["yolo11n-seg"])))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LAYERCUT_WEIGHTS", raising=False)
    monkeypatch.delenv("LAYERCUT_OFFLINE", raising=False)
    # a random YOLO finds nothing at ordinary thresholds: take its top few proposals instead
    overrides = ["detect.conf=0.0001", "detect.max_det=3", "segment.model=none"]
    remover = Remover.from_config("cpu", [*overrides, MAP_OFF[1]], device="cpu")
    remover.warm_up()
    data = encoded(photo(120, 160), "JPEG", quality=92)
    with TestClient(create_app([remover], tmp_dir=str(upload_dir))) as client:
        single = client.post("/v1/remove", files={"file": ("p.jpg", data, "image/jpeg")})
        assert single.status_code == 200, single.text
        assert rgba_of(single.content).shape == (120, 160, 4)
        zipped = client.post("/v1/remove?layers=true&keep=all", content=data)
        assert zipped.status_code == 200, zipped.text
    archive = zipfile.ZipFile(io.BytesIO(zipped.content))
    manifest = json.loads(archive.read("layers.json"))
    assert 1 <= len(manifest["layers"]) <= 3 and manifest["keep"] == "all"
    for entry in manifest["layers"]:
        assert rgba_of(archive.read(entry["file"])).shape == (120, 160, 4)
    assert {"detect", "features", "rank", "total"} <= set(manifest["timings_s"])


# ---------------------------------------------------------------- other endpoints and CLI
def test_models_health_docs_and_page(client):
    models = client.get("/v1/models").json()
    assert models["keep_modes"] == ["main", "all", "interacting"]
    assert models["limits"]["max_upload_bytes"] == 200_000
    assert models["config"]["detect"]["weights"] == Config().detect.weights
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/remove"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/*" in body
    assert "format=json" in spec["paths"]["/v1/remove"]["post"]["description"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "Remove background" in page.text
    assert client.get("/static/app.js").status_code == 200
    icon = client.get("/favicon.ico")  # browsers ask for it: no 404 in the console
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert 'rel="icon"' in page.text and client.get("/static/favicon.svg").status_code == 200


def test_serve_main_rejects_bad_usage(capsys):
    assert serve_main(["--set", "detect.nope=1"]) == 2
    assert "detect.nope" in capsys.readouterr().err
    assert serve_main(["--workers", "0"]) == 2
    assert serve_main(["--set", "detect.weights=/nonexistent/x.pt"]) == 1  # models load first
    assert "cannot load the models" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        serve_main(["--bogus"])
    assert exc.value.code == 2
