"""The default pixel limit follows the machine's memory (issue 14, item 8): what the default
accepts, the pipeline finishes; a larger photo is refused from its header, in one line."""

from __future__ import annotations

import pytest

from pipeline import resources
from pipeline.cli import main
from pipeline.config import Config
from tests.badfiles import png_header_only


@pytest.mark.parametrize(
    "memory_gb, expected_mp",
    [(None, 150.0), (2, 1.0), (4, 4.0), (8, 12.0), (16, 28.0), (32, 60.0), (512, 150.0)],
)
def test_limit_follows_memory(memory_gb, expected_mp):
    memory = None if memory_gb is None else memory_gb * 10**9
    assert resources.max_image_px_for(memory) == pytest.approx(expected_mp * 1e6, rel=1e-9)


def test_config_default_is_this_machines_limit():
    limit = Config().runtime.max_image_px
    assert limit == resources.default_max_image_px()
    memory = resources.memory_limit_bytes()
    if memory is not None and limit > resources.MIN_DEFAULT_PX:  # the worst case fits
        assert resources.BASE_BYTES + limit * resources.BYTES_PER_PX <= 0.61 * memory


def test_cli_refuses_a_144_mp_photo_over_the_default_in_one_line(checkpoints, tmp_path, capsys):
    if Config().runtime.max_image_px >= 144_000_000:
        pytest.skip("this machine's memory lets the default take 144 MP")
    photo = tmp_path / "huge.png"
    photo.write_bytes(png_header_only(14_400, 10_000))
    weights = checkpoints.path("yolo11n-seg")
    argv = [str(photo), "-o", str(tmp_path / "out"), "--set", f"detect.weights={weights}"]
    code = main([*argv, "--set", "saliency.model=none"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    failure = [line for line in err if "huge.png" in line]
    assert len(failure) == 1 and "too large (144000000 px > limit" in failure[0]
    assert "runtime.max_image_px" in failure[0]
