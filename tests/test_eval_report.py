"""The evaluation loop, report.json / report.html and compare mode, driven by
``pipeline.fakes.FakeRemover`` (real ``Layers``, no network) on a 3-item synthetic dataset; plus
reading the real eval manifest when ../shared is present."""

from __future__ import annotations

import base64
import io
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import Config
from pipeline.eval import cli
from pipeline.eval.compare import compare_runs, parse_threshold
from pipeline.eval.dataset import load_dataset, load_ground_truth
from pipeline.eval.metrics_matting import unknown_region
from pipeline.eval.proposals import gt_proposals, make_proposals
from pipeline.eval.run import EvalOptions, evaluate
from pipeline.fakes import FakeRemover

SHARED = Path(os.environ.get("LAYERCUT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
HW = (48, 64)


# -- a 3-item synthetic dataset ----------------------------------------------------------------
def save(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path.name


def make_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    photo = (rng.integers(0, 255, (*HW, 3))).astype(np.uint8)
    # 1. a simple object on a plain background: hard alpha square + a trimap around its edge
    alpha = np.zeros(HW, np.uint8)
    alpha[12:36, 16:48] = 255
    trimap = np.zeros(HW, np.uint8)
    trimap[10:38, 14:50] = 128
    trimap[14:34, 18:46] = 255
    # 2. a scene: person (1, main), bicycle (2, interacting), distractor (3); ranks by area
    inst = np.zeros(HW, np.uint8)
    inst[5:40, 5:25] = 1
    inst[20:45, 25:45] = 2
    inst[2:10, 50:60] = 3
    for name, files in (
        ("object", {"image": photo, "alpha": alpha, "trimap": trimap}),
        ("scene", {"image": photo, "instances": inst}),
        ("smoke", {"image": photo[:40]}),  # a different size, no GT
    ):
        for key, array in files.items():
            save(root / name / f"{key}.png", array)
    manifest = {
        "items": [
            {
                "set": "synthetic",
                "name": "object",
                "subclass": "simple_object",
                "gt_kind": "alpha",
                "files": {
                    "image": "object/image.png",
                    "alpha": "object/alpha.png",
                    "trimap": "object/trimap.png",
                },
            },
            {
                "set": "synthetic",
                "name": "scene",
                "subclass": "scene",
                "gt_kind": "instance_mask",
                "files": {"image": "scene/image.png", "instances": "scene/instances.png"},
                "instance_labels": {"1": "person", "2": "bicycle", "3": "dog"},
                "roles": {"1": "main", "2": "interacting", "3": "distractor"},
                "ranks": {"1": 1, "2": 2, "3": 3},
            },
            {
                "set": "smoke",
                "name": "smoke",
                "gt_kind": "none",
                "files": {"image": "smoke/image.png"},
            },
        ]
    }
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data")


GOOD = {"person", "bicycle", "object"}


def run_eval(dataset, out, remover, **options):
    return evaluate(dataset, remover, out, EvalOptions(**options), log=None)


# -- dataset and proposals -----------------------------------------------------------------
def test_dataset_reads_manifest_extensions(dataset):
    items = load_dataset(dataset)
    assert [it.subclass for it in items] == ["simple_object", "scene", "smoke"]
    gt = load_ground_truth(items[1])
    assert gt.instance_ids == (1, 2, 3)
    assert gt.main_ids == (1, 2)  # roles main + interacting; the distractor is not main
    assert gt.main_mask.sum() == ((gt.instance_map == 1) | (gt.instance_map == 2)).sum()
    proposals = gt_proposals(items[1], gt)
    assert [p.label for p in proposals] == ["person", "bicycle", "dog"]
    assert all(p.source == "gt" and p.det_score == 1.0 for p in proposals)
    object_gt = load_ground_truth(items[0])
    assert len(gt_proposals(items[0], object_gt)) == 1  # one instance per main-object alpha
    assert make_proposals("gt", items[2], load_ground_truth(items[2])) == []
    assert make_proposals("detector", items[0], object_gt) is None


def test_dataset_from_a_plain_folder(tmp_path):
    for name in ("b.jpg", "a.png"):
        Image.new("RGB", (8, 6)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    items = load_dataset(tmp_path)
    assert [it.name for it in items] == ["a", "b"]
    assert all(it.gt_kind == "none" and it.subclass == tmp_path.name for it in items)


def test_dataset_errors_name_the_problem(tmp_path, dataset):
    with pytest.raises(ValueError, match="not found"):
        load_dataset(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"items": [{"name": "x", "files": {}}]}))
    with pytest.raises(ValueError, match="files.image"):
        load_dataset(bad)
    items = load_dataset(dataset)
    small = Image.new("L", (5, 5))
    small.save(items[0].alpha)
    with pytest.raises(ValueError, match="alpha.png has shape"):
        load_ground_truth(items[0])


# -- the report ------------------------------------------------------------------------------
class PageParser(HTMLParser):
    """Collects table ids with their body row counts and every <img> src."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, int] = {}
        self.headers: dict[str, list[str]] = {}
        self.images: list[str] = []
        self.scripts = 0
        self._table = None
        self._in_body = self._in_th = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = 0
            self.headers[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table] += 1
        elif tag == "th":
            self._in_th = True
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th and self._table is not None:
            self.headers[self._table].append(data)


def test_report_json_metrics_per_item_subclass_and_overall(dataset, tmp_path):
    remover = FakeRemover(keep_labels=GOOD)
    report = run_eval(dataset, tmp_path / "run", remover)
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["by_subclass"].keys() == {"simple_object", "scene", "smoke"}
    assert {"overall", "by_subclass", "items", "config"} <= on_disk.keys()
    assert on_disk["config"] == Config().to_dict()
    assert "without a detector" in on_disk["meta"]["note"]
    items = {it["name"]: it for it in report["items"]}
    scene = items["scene"]["metrics"]
    assert scene["iou"] == 1.0 and scene["p_at_1"] == 1.0
    assert scene["sa_sor"] == pytest.approx(1.0)  # area order = GT rank order
    assert scene["iou_rule_largest"] == pytest.approx(700 / 1200)  # the person alone
    assert scene["iou_rule_all"] == pytest.approx(1200 / 1280)  # + the distractor (80 px)
    assert scene["iou_oracle_union"] == 1.0
    obj = items["object"]["metrics"]
    assert obj["iou"] == 1.0 and obj["sad"] == 0.0 and obj["conn"] == 0.0
    assert "p_at_1" not in obj  # a single GT instance: no ranking to judge
    assert obj["seconds"] == 0.02 and obj["seconds_features"] == 0.01
    assert items["smoke"]["status"] == "no_gt" and items["smoke"]["metrics"] == {}
    assert remover.calls[0][0].source == "gt"  # the pipeline got GT instances
    overall = on_disk["overall"]
    assert overall["n_items"] == 3 and overall["n_failed"] == 0
    assert overall["iou"] == 1.0  # mean over the two items with a main region
    assert "sad" not in on_disk["by_subclass"]["scene"]  # no alpha GT in that subclass


def test_report_html_has_tables_and_embedded_images(dataset, tmp_path):
    run_eval(dataset, tmp_path / "run", FakeRemover(keep_labels=GOOD))
    text = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    page = PageParser()
    page.feed(text)
    assert page.tables["subclasses"] == 4  # three subclasses + overall
    assert page.tables["items"] == 3
    for column in ("iou", "sad", "photo", "GT", "result", "error map", "debug"):
        assert column in page.headers["items"]
    # 2 items × 5 pictures + the no-GT item's photo; all inline, none fetched from elsewhere
    assert len(page.images) == 11
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    thumb = Image.open(io.BytesIO(base64.b64decode(page.images[0].split(",", 1)[1])))
    assert thumb.size == (64, 48)
    assert page.scripts == 1 and "sortable" in text


def test_failing_item_is_recorded_and_the_run_goes_on(dataset, tmp_path):
    remover = FakeRemover(keep_labels=GOOD, fail_on_shape=HW)
    report = run_eval(dataset, tmp_path / "run", remover, proposals="gt-jittered", seed=3)
    statuses = {it["name"]: it["status"] for it in report["items"]}
    assert statuses == {"object": "failed", "scene": "failed", "smoke": "no_gt"}
    assert "RuntimeError: stage exploded" in report["items"][0]["error"]
    assert report["overall"]["n_failed"] == 2
    assert (tmp_path / "run" / "report.html").is_file()


def test_jittered_proposals_are_degraded_and_reproducible(dataset, tmp_path):
    first = run_eval(dataset, tmp_path / "a", FakeRemover(), proposals="gt-jittered", seed=5)
    again = run_eval(dataset, tmp_path / "b", FakeRemover(), proposals="gt-jittered", seed=5)
    iou_a = [it["metrics"].get("iou") for it in first["items"]]
    assert iou_a == [it["metrics"].get("iou") for it in again["items"]]
    assert 0.5 < iou_a[0] < 1.0


# -- compare ---------------------------------------------------------------------------------
def test_compare_flags_a_deliberately_worsened_run(dataset, tmp_path):
    run_eval(dataset, tmp_path / "a", FakeRemover(keep_labels=GOOD))
    # B forgets the bicycle (selection worse) and shrinks its mattes (matting worse)
    run_eval(dataset, tmp_path / "b", FakeRemover(keep_labels={"person", "object"}, erode_px=2))
    result = compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "cmp")
    assert result.exit_status == 1
    worse = {(d.group, d.metric) for d in result.worse_groups}
    assert {("scene", "iou"), ("simple_object", "sad"), ("overall", "iou")} <= worse
    assert [d.worse for d in result.items] == [True, True, False]  # worse items first
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["exit_status"] == 1 and "scene:iou" in data["worse_groups"]
    page = PageParser()
    page.feed((tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8"))
    assert page.tables["deltas"] >= 4 and page.tables["items"] == 3
    assert "A result" in page.headers["items"] and "B result" in page.headers["items"]
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    # the same run against itself passes; the CLI gives CI the same answer
    assert compare_runs(tmp_path / "a", tmp_path / "a", tmp_path / "same").exit_status == 0
    argv = ["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c2")]
    assert cli.main(argv) == 1


def test_compare_threshold_override_can_tolerate_the_change(dataset, tmp_path):
    run_eval(dataset, tmp_path / "a", FakeRemover(keep_labels=GOOD))
    run_eval(dataset, tmp_path / "b", FakeRemover(keep_labels=GOOD, erode_px=1))
    strict = compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "c1")
    assert {d.metric for d in strict.worse_groups} >= {"sad"}
    loose = ["sad=1e9%", "mse=1e9%", "grad=1e9%", "conn=1e9%", "iou=1", "boundary_f=1"]
    assert (
        compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "c2", overrides=loose).exit_status
        == 0
    )
    assert parse_threshold("sad=10%")[1].relative
    with pytest.raises(ValueError, match="not a metric"):
        parse_threshold("n_instances=1")


# -- CLI --------------------------------------------------------------------------------------
def test_cli_eval_uses_the_remover_and_prints_the_table(dataset, tmp_path, monkeypatch, capsys):
    built = []
    monkeypatch.setattr(
        "pipeline.eval.run.build_remover", lambda *a, **k: built.append(a) or FakeRemover()
    )
    argv = [str(dataset), "-o", str(tmp_path / "run"), "--limit", "2", "--device", "cpu"]
    assert cli.main([*argv, "--set", "detect.conf=0.3"]) == 0
    assert built == [(None, ["detect.conf=0.3"], "cpu")]  # the shared config arguments
    out = capsys.readouterr().out
    assert "simple_object" in out and "scene" in out and "smoke" not in out
    assert json.loads((tmp_path / "run" / "report.json").read_text())["meta"]["limit"] == 2


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["x.json", "-o", str(tmp_path), "--device", "tpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "layercut eval: error: argument --device" in err
    assert cli.main(["-o", str(tmp_path)]) == 2
    assert cli.main([str(tmp_path / "missing.json"), "-o", str(tmp_path / "x")]) == 2
    assert "dataset not found" in capsys.readouterr().err


# -- the real evaluation data (skipped without ../shared) -------------------------------------
def test_real_manifest_conventions():
    manifest_path = SHARED / "data" / "eval" / "manifest.json"
    if not manifest_path.is_file():
        pytest.skip(f"real eval data not found at {manifest_path} (set LAYERCUT_SHARED)")
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    items = {it.name: it for it in load_dataset(manifest_path)}
    # every entry is read, once (the count grows as data is added: never hard-code it)
    assert len(items) == len(raw["items"]) == raw["count"]
    kinds = {"alpha", "pseudo_alpha", "binary_mask", "instance_mask", "trimap_only", "none"}
    for entry in raw["items"]:
        item = items[entry["name"]]
        assert item.gt_kind == entry["gt_kind"] in kinds, item.name
        assert item.image.is_file(), item.name
        assert item.alpha is None or item.gt_kind == "alpha", item.name  # pseudo GT never GT
        for path in (item.alpha, item.mask, item.trimap, item.instances):
            if path is not None:  # 8-bit single-channel PNGs at the photo's size
                with Image.open(path) as img:
                    assert (img.format, img.mode) == ("PNG", "L"), path
                    assert list(img.size) == entry["size_wh"], path
    grabcut = [e for e in raw["items"] if e["set"] == "grabcut"]
    assert grabcut and all(e.get("ignore_value") == 128 for e in grabcut)
    bike = load_ground_truth(items["cutie_bike_00000"])
    assert bike.instance_ids == (1, 2) and bike.main_ids == (1, 2)
    lemur_item = items["lemur"]
    assert lemur_item.alpha is None  # pseudo GT is never read as GT
    lemur = load_ground_truth(lemur_item)
    unknown = unknown_region(np.zeros(lemur.hw, np.float32), lemur.trimap)
    assert unknown.sum() == (lemur.trimap == 102).sum() > 0
    assert items["doll"].subclass == "alphamatting_test_trimaps"
    # GrabCut's 128 band is neither main region nor background
    banded = [it for it in items.values() if it.set_name == "grabcut"]
    assert all(it.ignore_value == 128 for it in banded)
    gt = next(g for g in map(load_ground_truth, banded) if g.ignore is not None)
    assert gt.ignore.any() and not (gt.ignore & gt.main_mask).any()


# -- the real Layers container satisfies the protocol the loop reads ----------------------------
def test_item_metrics_read_the_real_layers_container(dataset):
    from types import SimpleNamespace

    from pipeline.eval.run import item_metrics
    from pipeline.layers import Layers
    from pipeline.types import Decision, KeepMode, Matte, Role

    item = load_dataset(dataset)[1]
    gt = load_ground_truth(item)
    instances = [
        p.replace(score=float(p.area_px)) for p in gt_proposals(item, gt)
    ]  # person 700, bicycle 500, dog 80

    def select_fn(ranked, keep):
        roles = [Role.DROPPED if inst.label == "dog" else Role.MAIN for inst in ranked]
        return SimpleNamespace(
            decisions=[Decision(role, "test") for role in roles], ambiguity=0.25, alternatives=()
        )

    def refine_fn(image, inst):
        return Matte(inst.mask.astype(np.float32), image.copy(), 0, 0)

    layers = Layers(
        gt.image, instances, KeepMode.MAIN, select_fn, refine_fn, timings_s={"total": 1.5}
    )
    metrics = item_metrics(item, gt, layers)
    assert metrics["iou"] == 1.0 and metrics["p_at_1"] == 1.0
    assert metrics["sa_sor"] == pytest.approx(1.0)
    assert metrics["n_instances"] == 3 and metrics["n_kept"] == 2
    assert metrics["ambiguity"] == 0.25 and metrics["seconds"] == 1.5
