"""The web page in a real browser: Playwright drives Debian's Chromium headless (no browser
download). Upload a photo, click, wait, switch a layer off, check the composed canvas changed
where that layer was (and nowhere else) and the layer's label says so, switch the keep mode,
choose a background, download the cut-out and the mask. Also: nothing shows before an upload,
an error clears the previous result, switching an occluder off leaves no ghost of it, and the
console stays free of errors (no 404 for the icon).

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


def _serve(remover):
    """Run the app around ``remover`` on a free loopback port; yields its URL."""
    app = create_app([remover])
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


@pytest.fixture(scope="module")
def server_url():
    yield from _serve(FakeRemover())


@pytest.fixture(scope="module")
def halo_server_url():
    """Mattes with a soft ring reaching into touching neighbours (as a real matting does)."""
    yield from _serve(FakeRemover(halo_px=3))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


class Console:
    """Every console error, page error and failed response of a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )


def _run(page, photo: Path) -> None:
    page.set_input_files("#file", str(photo))
    page.click("#run")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)


def _recomposed(page, action) -> None:
    composed = int(page.evaluate("document.body.dataset.composed"))
    action()
    page.wait_for_function(f"Number(document.body.dataset.composed) > {composed}")


def _downloaded(page, button: str, target, mode: str) -> np.ndarray:
    """Click ``button``, save the file the page offers to ``target``; its pixels in ``mode``."""
    with page.expect_download() as info:
        page.click(button)
    info.value.save_as(target)
    with Image.open(target) as image:
        return np.asarray(image.convert(mode))


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


def test_upload_click_toggle_switch_mode_download(server_url, browser, tmp_path):
    photo = _photo_path()
    with Image.open(photo) as image:
        w, h = image.size
    masks = fake_masks(h, w)
    person, bag, dog = (_inside_only(masks, k) for k in ("person", "bag", "dog"))
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    console = Console(page)
    page.goto(server_url + "/")
    page.wait_for_load_state("networkidle")  # the icon request has been answered
    # before any upload only the picker shows: no progress bar, no result
    assert not page.locator("#progress-box").is_visible()
    assert not page.locator("#result-panel").is_visible()
    _run(page, photo)

    before = _canvas_rgba(page)
    assert before.shape == (h, w, 4)
    kept = masks["person"] | masks["bag"]  # keep=main: subject + what it interacts with
    assert (before[..., 3][kept] == 255).all() and (before[..., 3][~kept] == 0).all()
    assert page.locator("#layers li").count() == 4
    assert page.locator("#ambiguity").is_visible()  # the fake says 0.6 with 2 choices
    assert page.locator("#alternatives button").count() == 2
    # alternatives name layers by rank: person #1 + bag #3, dog #2
    labels = page.locator("#alternatives button").all_inner_texts()
    assert labels == ["#1 person + #3 bag", "#2 dog"]

    first = page.locator('#layers li[data-rank="1"]')  # the person
    assert "main · shown" in first.inner_text()
    _recomposed(page, lambda: first.locator("input.toggle").uncheck())
    after = _canvas_rgba(page)
    changed = np.any(after != before, axis=2)
    assert after[person][3] == 0 and after[bag][3] == 255
    assert not changed[~masks["person"]].any()  # only where the person was
    assert changed[masks["person"] & ~masks["bag"]].all()
    # the label follows the switch: still the policy's "main", now hidden by the user
    assert "main · hidden by you" in first.inner_text()
    assert "off" in (first.get_attribute("class") or "")
    dog_item = page.locator('#layers li[data-rank="2"]')
    _recomposed(page, lambda: dog_item.locator("input.toggle").check())
    assert "dropped · shown by you" in dog_item.inner_text()
    _recomposed(page, lambda: dog_item.locator("input.toggle").uncheck())
    assert "dropped · hidden" in dog_item.inner_text() and "by you" not in dog_item.inner_text()

    page.check("#debug")
    assert page.locator("#overlay").is_visible()
    page.select_option("#keep", "all")
    assert _canvas_rgba(page)[dog][3] == 255  # keep=all adds the dog, no request
    page.select_option("#keep", "main")
    _recomposed(page, lambda: first.locator("input.toggle").uncheck())

    # a background: the layers over a colour, then over the photo blurred; no alpha left
    _recomposed(page, lambda: page.fill("#background-colour", "#00ff00"))
    green = _canvas_rgba(page)
    assert (green[..., 3] == 255).all()
    assert tuple(green[person]) == (0, 255, 0, 255) and tuple(green[bag][:3]) != (0, 255, 0)
    _recomposed(page, lambda: page.check('input[name="background"][value="blur"]'))
    blurred = _canvas_rgba(page)
    assert (blurred[..., 3] == 255).all() and tuple(blurred[person][:3]) != (0, 255, 0)
    _save_screenshot(page)

    mask = _downloaded(page, "#download-mask", tmp_path / "mask.png", "L")
    assert mask.shape == (h, w)
    assert mask[person] == 0 and mask[bag] == 255 and mask[dog] == 0

    _recomposed(page, lambda: page.check('input[name="background"][value=""]'))
    downloaded = _downloaded(page, "#download", tmp_path / "download.png", "RGBA")
    assert downloaded.shape == (h, w, 4)
    assert downloaded[person][3] == 0 and downloaded[bag][3] == 255
    assert console.errors == []
    page.close()


def test_switching_an_occluder_off_leaves_no_ghost(halo_server_url, browser):
    photo = _photo_path()
    with Image.open(photo) as image:
        w, h = image.size
    masks = fake_masks(h, w)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = Console(page)
    page.goto(halo_server_url + "/")
    _run(page, photo)
    alpha = _canvas_rgba(page)[..., 3]
    assert (alpha[masks["person"]] == 255).all()
    # the bag's soft edge lies over the person it touches (both on: covered anyway)
    _recomposed(page, lambda: page.locator('#layers li[data-rank="1"] input.toggle').uncheck())
    alpha = _canvas_rgba(page)[..., 3]
    assert (alpha[masks["person"]] == 0).all()  # nothing of the person stays behind
    assert (alpha[masks["bag"]] == 255).all()
    assert console.errors == []
    page.close()


def test_an_error_clears_the_previous_result(server_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server_url + "/")
    _run(page, _photo_path())
    assert page.locator("#download").is_visible()
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    page.set_input_files("#file", str(text))
    page.click("#run")
    page.wait_for_selector("body[data-state=error]", timeout=60_000)
    assert page.locator("#error").is_visible()
    assert page.locator("#error").inner_text().strip()  # the server's one-line reason
    # the previous photo's result is gone: nothing to download under the new file's name
    assert not page.locator("#result-panel").is_visible()
    assert not page.locator("#download").is_visible()
    assert not page.locator("#progress-box").is_visible()
    page.close()


def _save_screenshot(page) -> None:
    folder = Path(os.environ.get("LAYERCUT_ARTIFACTS", REPO / "reports" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "serve_page.png"), full_page=True)
