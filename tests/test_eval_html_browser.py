"""The evaluation pages in a real browser window of 1280 × 900 px (Playwright + Debian's
Chromium, as in ``test_serve_browser.py``): wide tables scroll inside their box instead of
widening the page, the error map has a key, and the banner speaks to a user."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.eval.compare import compare_runs
from pipeline.eval.run import EvalOptions, evaluate, header_note
from pipeline.eval.thumbs import FALSE_POSITIVE_RGB, MISSED_RGB
from pipeline.fakes import FakeRemover
from tests.test_serve_browser import CHROMIUM, CHROMIUM_ARGS

HW = (300, 400)  # thumbnails of 256 px: five or six pictures per row outgrow 1280 px


def make_dataset(root: Path) -> Path:
    """Two items with pictures large enough for full-size thumbnails."""
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (*HW, 3), dtype=np.uint8)
    alpha = np.zeros(HW, np.uint8)
    alpha[60:240, 100:300] = 255
    inst = np.zeros(HW, np.uint8)
    inst[30:270, 40:200] = 1
    inst[150:280, 200:360] = 2
    for name, files in (("object", {"image": photo, "alpha": alpha}),
                        ("scene", {"image": photo, "instances": inst})):  # fmt: skip
        for key, array in files.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / name / f"{key}.png")
    items = [
        {"set": "s", "name": "object", "subclass": "simple_object", "gt_kind": "alpha",
         "files": {"image": "object/image.png", "alpha": "object/alpha.png"}},
        {"set": "s", "name": "scene", "subclass": "scene", "gt_kind": "instance_mask",
         "files": {"image": "scene/image.png", "instances": "scene/instances.png"},
         "instance_labels": {"1": "person", "2": "bicycle"},
         "roles": {"1": "main", "2": "interacting"}, "ranks": {"1": 1, "2": 2}},
    ]  # fmt: skip
    path = root / "manifest.json"
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalpages")
    dataset = make_dataset(root / "data")
    good = FakeRemover(keep_labels={"person", "bicycle", "object"})
    worse = FakeRemover(keep_labels={"person", "object"}, erode_px=3)
    evaluate(dataset, good, root / "a", EvalOptions(), log=None)
    evaluate(dataset, worse, root / "b", EvalOptions(), log=None)
    compare_runs(root / "a", root / "b", root / "cmp")
    return {"report": root / "a" / "report.html", "compare": root / "cmp" / "compare.html"}


def test_the_banner_speaks_to_a_user():
    note = header_note(EvalOptions(proposals="gt"))
    assert "evaluation machine" not in note and "cannot be downloaded" not in note
    assert "--proposals detector" in note


@pytest.mark.parametrize("name", ["report", "compare"])
def test_error_map_has_a_key_in_its_own_colours(pages, name):
    text = pages[name].read_text(encoding="utf-8")
    assert "maplegend" in text
    assert f"rgb{FALSE_POSITIVE_RGB}" in text and f"rgb{MISSED_RGB}" in text
    assert "not kept (missed)" in text and "not part of the ground truth" in text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
@pytest.mark.parametrize("name", ["report", "compare"])
def test_wide_tables_scroll_in_their_box_not_the_page(pages, name):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(pages[name].as_uri())
            page_width = page.evaluate("document.documentElement.scrollWidth")
            assert page_width <= 1280, f"{name}.html is {page_width} px wide"
            boxes = page.evaluate(
                "Array.from(document.querySelectorAll('table')).map(t => {"
                " const box = t.parentElement;"
                " return [t.id, box.className, t.scrollWidth, box.clientWidth,"
                " getComputedStyle(box).overflowX]; })"
            )
            items = next(b for b in boxes if b[0] == "items")
            assert items[2] > items[3]  # the contact sheet is wider than the window …
            assert items[1] == "scroll" and items[4] == "auto"  # … and scrolls in its box
        finally:
            browser.close()
