"""The web page in a real browser: Playwright drives Debian's Chromium headless (no browser
download). Upload a photo, click, wait, switch a layer off, check the composed canvas changed
where that layer was (and nowhere else), switch the keep mode, download.

The server runs in a thread on loopback with ``FakeRemover`` (a real ``Layers`` with known
geometry), so pixels can be checked; the page is what is under test here. A screenshot is saved
to ``$LAYERCUT_ARTIFACTS`` (default ``reports/test-artifacts/``, ignored by git).
"""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.fakes import FakeRemover, fake_masks
from pipeline.serve.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt install)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
uvicorn = pytest.importorskip("uvicorn", reason="needs uvicorn")


def _photo_path() -> Path:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    if not path.is_file():
        pytest.skip(f"the photo shipped with ultralytics is missing: {path}")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    app = create_app([FakeRemover()])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _canvas_rgba(page) -> np.ndarray:
    url = page.evaluate("document.getElementById('result').toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


def _inside_only(masks: dict[str, np.ndarray], label: str) -> tuple[int, int]:
    """(y, x) of a pixel of ``label`` that no other mask covers, near the mask's centre."""
    others = np.zeros_like(masks[label])
    for name, mask in masks.items():
        if name != label:
            others |= mask
    ys, xs = np.nonzero(masks[label] & ~others)
    i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(ys[i]), int(xs[i])


def test_upload_click_toggle_switch_mode_download(server_url, tmp_path):
    photo = _photo_path()
    with Image.open(photo) as image:
        w, h = image.size
    masks = fake_masks(h, w)
    person, bag, dog = (_inside_only(masks, k) for k in ("person", "bag", "dog"))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server_url + "/")
            page.set_input_files("#file", str(photo))
            page.click("#run")
            page.wait_for_selector("body[data-state=done]", timeout=60_000)

            before = _canvas_rgba(page)
            assert before.shape == (h, w, 4)
            kept = masks["person"] | masks["bag"]  # keep=main: subject + what it interacts with
            assert (before[..., 3][kept] == 255).all() and (before[..., 3][~kept] == 0).all()
            assert page.locator("#layers li").count() == 4
            assert page.locator("#ambiguity").is_visible()  # the fake says 0.6 with 2 choices
            assert page.locator("#alternatives button").count() == 2

            composed = int(page.evaluate("document.body.dataset.composed"))
            page.locator('#layers li[data-rank="1"] input.toggle').uncheck()  # the person
            page.wait_for_function(f"Number(document.body.dataset.composed) > {composed}")
            after = _canvas_rgba(page)
            changed = np.any(after != before, axis=2)
            assert after[person][3] == 0 and after[bag][3] == 255
            assert not changed[~masks["person"]].any()  # only where the person was
            assert changed[masks["person"] & ~masks["bag"]].all()

            page.check("#debug")
            assert page.locator("#overlay").is_visible()
            page.select_option("#keep", "all")
            assert _canvas_rgba(page)[dog][3] == 255  # keep=all adds the dog, no request
            page.select_option("#keep", "main")
            page.locator('#layers li[data-rank="1"] input.toggle').uncheck()
            _save_screenshot(page)

            with page.expect_download() as info:
                page.click("#download")
            target = tmp_path / "download.png"
            info.value.save_as(target)
            with Image.open(target) as image:
                downloaded = np.asarray(image.convert("RGBA"))
            assert downloaded.shape == (h, w, 4)
            assert downloaded[person][3] == 0 and downloaded[bag][3] == 255
            assert errors == []
        finally:
            browser.close()


def _save_screenshot(page) -> None:
    folder = Path(os.environ.get("LAYERCUT_ARTIFACTS", REPO / "reports" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "serve_page.png"), full_page=True)
