"""--dry-run prints the plan without loading a model; schedules and mixes come from presets too."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import read_frames
from vidiff import run as run_module
from vidiff.cli import cli
from vidiff.settings.presets import load_preset

SCHEDULED_PRESET = """\
description = "Wood turning to marble"
prompt = "0:a wooden carving | 6:a marble statue"
mix = ["gold leaf:0:0, 6:0.3"]
strength = "0:0.3, 0.25s:0.6"
seed = "0:7, 4:8"
interpolation = "smooth"
steps = 4
"""


@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("--dry-run must not load a model")

    monkeypatch.setattr(run_module, "load_parts", refuse)


def test_dry_run_prints_the_plan_and_loads_nothing(clips, tmp_path, no_model_loading):
    output = tmp_path / "out.mp4"
    args = ["stylize", str(clips["plain"]), str(output), "--prompt", "0:a wooden carving | 1s:a marble statue",
            "--strength", "0:0.3, 4:0.7", "--seed", "0:1, 3:2", "--mix", "a frog:0.5", "--max-side", "32",
            "--dry-run"]  # fmt: skip

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "frames     6 " in out  # 0.25 s at 24 fps
    assert "size       32x24" in out
    assert "--strength: 0: 0.3, 4: 0.7" in out
    assert "--seed: 0: 1, 3: 2" in out
    assert "--prompt: 0: 'a wooden carving', 24 (1s): 'a marble statue'" in out
    assert "--mix" not in out  # a constant weight is not a schedule
    # a keyframe past the last frame (frame 5) is warned about
    assert "--prompt keyframe 1s falls after the last frame (5)" in out
    assert not output.exists() and not Path(f"{output}.vidiff").exists()


def test_dry_run_without_schedules_says_so_and_still_checks_the_output(clips, tmp_path, no_model_loading):
    output = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(output), "--prompt", "x", "--dry-run"])
    assert result.exit_code == 0 and "keyframes  none" in result.stdout
    output.write_bytes(b"an earlier result")
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(output), "--prompt", "x", "--dry-run"])
    assert result.exit_code == 2 and "--overwrite" in result.stderr


def test_a_preset_holds_schedules_and_mixes(clips, tmp_path, no_model_loading):
    preset = tmp_path / "travel.toml"
    preset.write_text(SCHEDULED_PRESET, encoding="utf-8")
    assert load_preset(str(preset)).settings["mix"] == ["gold leaf:0:0, 6:0.3"]

    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(tmp_path / "o.mp4"), "--preset",
                                      str(preset), "--dry-run"])  # fmt: skip

    assert result.exit_code == 0, (result.output, result.exception)
    assert "(smooth between them" in result.stdout
    assert "--strength: 0: 0.3, 6 (0.25s): 0.6" in result.stdout
    assert "--mix 'gold leaf': 0: 0, 6: 0.3" in result.stdout
    # `vidiff presets FILE` shows them as TOML that reads back
    shown = CliRunner().invoke(cli, ["presets", str(preset)])
    assert 'mix = ["gold leaf:0:0, 6:0.3"]' in shown.stdout and 'strength = "0:0.3, 0.25s:0.6"' in shown.stdout


def test_a_bad_keyframe_in_a_preset_names_the_file_and_key(tmp_path):
    preset = tmp_path / "broken.toml"
    preset.write_text('prompt = "x"\nstrength = "0:0.3, 48:"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["presets", str(preset)])
    assert result.exit_code == 2
    assert f"{preset}: strength = '0:0.3, 48:': keyframe 2" in result.stderr


def test_a_scheduled_run_end_to_end_warns_of_keyframes_past_the_end(clips, tmp_path, tiny, caplog):
    from vidiff import stylize_video

    output = tmp_path / "scheduled.mp4"
    with caplog.at_level(logging.WARNING, logger="vidiff"):
        result = stylize_video(clips["plain"], output, parts=tiny, prompt="0:a | 3:b", strength="0:0.3, 99:0.9",
                               mix=("c:0:0, 5:0.5",), seed="0:1, 2:2", steps=4, max_side=32)  # fmt: skip
    assert result.frames == 6 and len(read_frames(output)) == 6
    warnings = [r.getMessage() for r in caplog.records if "falls after the last frame" in r.getMessage()]
    assert len(warnings) == 1 and "--strength keyframe 99" in warnings[0]
