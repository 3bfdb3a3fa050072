"""Config values are checked when the config is built, in one line naming the key and what is
allowed, and the three commands that take ``--set`` stop with exit status 2 before any model
loads."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
from PIL import Image

from pipeline import config as config_module
from pipeline.config import (
    Config,
    KeepName,
    OutputConfig,
    RefineConfig,
    SaliencyConfig,
    SelectConfig,
    load_config,
)
from pipeline.types import KeepMode

BAD_OVERRIDES = [
    ("output.format=gif", "config output.format must be one of png, webp, mask; got 'gif'"),
    (
        "select.keep=everything",
        "config select.keep must be one of main, all, interacting; got 'everything'",
    ),
    ("refine.method=foo", "config refine.method must be one of matting, closed_form, rembg, none"),
    ("refine.estimator=knn", "config refine.estimator must be one of shared, closed_form"),
    ("segment.model=bar", "config segment.model must be one of none, mobile_sam, sam_vit_b"),
    ("saliency.model=x", "config saliency.model must be one of none, isnet; got 'x'"),
    ("rank.model=no_such_ranker", "config rank.model must be prior, a ranker JSON path or"),
    ("detect.conf=nan", "config detect.conf must be a number in [0, 1]; got nan"),
    ("detect.conf=-0.1", "config detect.conf must be a number in [0, 1]; got -0.1"),
    ("select.min_area_frac=inf", "config select.min_area_frac must be a number in [0, 1]"),
    ("select.main_rel_score=-1", "config select.main_rel_score must be a number >= 0; got -1.0"),
    ("output.png_compress_level=42", "config output.png_compress_level must be an integer in"),
    ("output.webp_quality=101", "config output.webp_quality must be an integer in [0, 100]"),
    ("refine.max_solve_px=-5", "config refine.max_solve_px must be an integer >= 1; got -5"),
    ("runtime.device=tpu", "config runtime.device must be one of auto, cpu, cuda; got 'tpu'"),
    ("runtime.threads=-1", "config runtime.threads must be an integer >= 0; got -1"),
    ("select.absorb_threshold=0", "config select.absorb_threshold must be a number in (0, 0.5]"),
    ("saliency.absorb_threshold=0.2", "config key saliency.absorb_threshold is now select."),
    ("saliency.absorb_min_share=0.3", "config key saliency.absorb_min_share is now select."),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES)
def test_a_bad_value_fails_when_the_config_loads_naming_the_key(override, message):
    with pytest.raises(ValueError) as caught:
        load_config("cpu", [override], device="cpu")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="config output.format must be one of png, webp, mask"):
        OutputConfig(format="gif")
    with pytest.raises(ValueError, match="config select.keep must be one of"):
        dataclasses.replace(SelectConfig(), keep="everything")
    with pytest.raises(ValueError, match="config refine.band_frac must be a number >= 0"):
        RefineConfig(band_frac=float("nan"))
    with pytest.raises(ValueError, match="config saliency.input_px must be an integer >= 32"):
        SaliencyConfig(input_px=2.5)
    with pytest.raises(ValueError, match="config select must be a SelectConfig"):
        Config(select={"keep": "all"})
    assert RefineConfig(max_solve_px=250_000.0).max_solve_px == 250_000  # whole floats: int
    assert isinstance(RefineConfig(max_solve_px=250_000.0).max_solve_px, int)


def test_range_edges_and_the_absorb_settings_live_in_select(tmp_path):
    cfg = load_config(
        "cpu",
        [
            "output.png_compress_level=0",
            "output.webp_quality=100",
            "select.absorb_threshold=0.5",
            "select.absorb_min_share=1",
            "select.max_truncation_frac=1",
        ],
        device="cpu",
    )
    assert cfg.select.absorb_threshold == 0.5 and cfg.select.absorb_min_share == 1.0
    assert not hasattr(cfg.saliency, "absorb_threshold")
    old = tmp_path / "old.toml"
    old.write_text("[saliency]\nabsorb_min_share = 0.4\n", encoding="utf-8")
    with pytest.raises(ValueError, match="saliency.absorb_min_share is now select.absorb_min"):
        load_config(old, device="cpu")


def test_choices_are_declared_once_and_the_stages_use_them():
    from pipeline.stages import refine, segment

    assert set(typing.get_args(KeepName)) == {mode.value for mode in KeepMode}
    assert segment.SEGMENTER_NAMES == typing.get_args(config_module.SegmentModel)
    assert refine.METHODS == typing.get_args(config_module.RefineMethod)
    assert refine.ESTIMATORS == typing.get_args(config_module.MattingEstimator)


# -- the commands: exit status 2 and the one line, before any weights are looked up ------------
@pytest.fixture
def no_weights(monkeypatch):
    """Fails the test if anything asks the weights store for a file."""
    import pipeline.weights

    def resolve(*args, **kwargs):
        raise AssertionError(f"weights looked up before the config was checked: {args}")

    monkeypatch.setattr(pipeline.weights, "resolve", resolve)


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("override, message", [BAD_OVERRIDES[0], BAD_OVERRIDES[1]])
@pytest.mark.parametrize("command", ["remove", "serve", "eval"])
def test_every_command_exits_2_on_a_bad_set(
    command, override, message, photo_dir, tmp_path, no_weights, capsys
):
    from pipeline.cli import main

    argv = {
        "remove": [str(photo_dir / "a.png"), "-o", str(tmp_path / "out"), "--device", "cpu"],
        "serve": ["serve", "--device", "cpu"],
        "eval": ["eval", str(photo_dir), "-o", str(tmp_path / "run")],
    }[command]
    assert main([*argv, "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
