"""Config: dataclass defaults, TOML presets and --set overrides with type checks."""

from pathlib import Path

import pytest

from pipeline.config import CONFIGS_DIR, Config, load_config, parse_override


def test_presets_parse_and_differ():
    cpu = load_config("cpu", device="cpu")
    quality = load_config("quality", device="cpu")
    assert cpu.segment.model == "none"
    assert quality.segment.model.startswith("sam_vit")
    assert cpu.runtime.device == "cpu"


def test_every_preset_in_configs_is_valid():
    files = sorted(CONFIGS_DIR.glob("*.toml"))
    assert len(files) >= 2
    for file in files:
        assert isinstance(load_config(file, device="cpu"), Config), file


def test_overrides_are_typed():
    cfg = load_config(
        "cpu",
        [
            "detect.conf=0.05",
            "detect.max_det=7",
            "segment.model=mobile_sam",
            "detect.weights=/x/y.pt",
        ],
        device="cpu",
    )
    assert cfg.detect.conf == pytest.approx(0.05)
    assert cfg.detect.max_det == 7 and isinstance(cfg.detect.max_det, int)
    assert cfg.segment.model == "mobile_sam"
    assert cfg.detect.weights == "/x/y.pt"


@pytest.mark.parametrize(
    "override, message",
    [
        ("nosuch.key=1", "unknown config section 'nosuch'"),
        ("detect.nosuch=1", "unknown config key detect.nosuch"),
        ("detect.max_det=2.5", "must be an integer"),
        ("detect.conf=abc", "must be a number"),
        ("detectconf", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("cpu", [override], device="cpu")


def test_parse_override_keeps_strings_and_parses_toml_values():
    assert parse_override("a.b=true") == ("a", "b", True)
    assert parse_override("a.b=0.5") == ("a", "b", 0.5)
    assert parse_override("a.b=/some/path.pt") == ("a", "b", "/some/path.pt")


def test_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(ValueError, match="config file not found"):
        load_config(tmp_path / "nope.toml", device="cpu")
    bad = tmp_path / "bad.toml"
    bad.write_text("[detect\nconf = ", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad, device="cpu")


def test_bad_device():
    with pytest.raises(ValueError, match="device must be"):
        load_config("cpu", device="tpu")


def test_to_dict_round_trips_through_overrides():
    cfg = load_config("cpu", ["select.keep=all"], device="cpu")
    again = Config().with_overrides(cfg.to_dict())
    assert again == cfg
